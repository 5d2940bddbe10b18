//! The memory backend's consistent views: a snapshot and a key cursor, each a copy taken
//! under the read lock, so the view stays consistent without holding the lock while a
//! client reads it.

use crate::error::Result;
use crate::store::{fill_chunk, Bytes, KeyCursor, Record, Snapshot, SnapshotInfo};

/// The snapshot's rows, as the fallible source [`fill_chunk`] reads.
pub(super) type PairSource =
    std::iter::Peekable<std::iter::Map<std::vec::IntoIter<Record>, fn(Record) -> Result<Record>>>;

/// A snapshot of the memory backend: a copy of its rows.
pub(super) struct MemorySnapshot {
    pub(super) info: SnapshotInfo,
    pub(super) entries: PairSource,
}

impl Snapshot for MemorySnapshot {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn next_chunk(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Record>> {
        fill_chunk(&mut self.entries, max_entries, max_bytes)
    }
}

/// A key cursor of the memory backend: a copy of the keys.
pub(super) struct MemoryKeyCursor {
    pub(super) keys: Vec<Bytes>,
    pub(super) next: usize,
}

impl KeyCursor for MemoryKeyCursor {
    fn next_page(&mut self, max: usize) -> Result<Vec<Bytes>> {
        let end = self.next.saturating_add(max).min(self.keys.len());
        let page = self.keys[self.next..end].to_vec();
        self.next = end;
        Ok(page)
    }

    fn rewind(&mut self) {
        self.next = 0;
    }
}
