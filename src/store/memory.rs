//! The in-memory backend: the book's `HashMap`, grown into an ordered map with a numbered
//! log so it speaks the same protocol as the SQLite backend. Nothing survives a restart.

use super::{
    check_continues, fill_chunk, fill_log_batch, new_history_id, new_node_id, prefix_upper_bound,
    BatchSeqs, ChunkSource, CommitFence, KeyCursor, KvStore, LogEntry, Op, Pair, Position, Role,
    Snapshot, SnapshotInfo, MAX_SEQ,
};
use crate::error::{Error, Result};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A [`KvStore`] held entirely in memory.
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    data: BTreeMap<String, String>,
    /// Contiguous log entries, oldest first.
    log: VecDeque<LogEntry>,
    head: u64,
    meta: HashMap<String, String>,
}

impl MemoryStore {
    /// An empty store for `role`. A primary gets a fresh history id at once; a replica gets
    /// its primary's with its first snapshot.
    pub fn new(role: Role) -> Self {
        let mut inner = Inner::default();
        inner.meta.insert("role".into(), role.as_str().into());
        inner.meta.insert("node_id".into(), new_node_id());
        if role == Role::Primary {
            inner.meta.insert("history_id".into(), new_history_id());
        }
        MemoryStore {
            inner: RwLock::new(inner),
        }
    }

    // A panic while holding the lock cannot leave `Inner` half-updated (every mutation is
    // a few infallible map operations), so a poisoned lock is still safe to use.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn commit(&mut self, entry: LogEntry) {
        match &entry.op {
            Op::Put { key, value } => {
                self.data.insert(key.clone(), value.clone());
            }
            Op::Delete { key } => {
                self.data.remove(key);
            }
        }
        self.head = entry.seq;
        self.log.push_back(entry);
    }

    /// Numbers the ops of `requests` as consecutive appends would, changing nothing:
    /// the entries to commit, and each op's seq per request.
    fn plan(&self, requests: &[Vec<Op>]) -> Result<(Vec<LogEntry>, BatchSeqs)> {
        // Whether each key the batch touched exists, as the batch so far leaves it.
        let mut present = HashMap::new();
        let mut entries = Vec::new();
        let mut seqs = Vec::with_capacity(requests.len());
        for ops in requests {
            let mut request = Vec::with_capacity(ops.len());
            for op in ops {
                request.push(self.plan_op(op, &mut present, &mut entries)?);
            }
            seqs.push(request);
        }
        Ok((entries, seqs))
    }

    /// Plans one op after `entries`: its seq, or `None` for a delete of an absent key.
    fn plan_op<'a>(
        &self,
        op: &'a Op,
        present: &mut HashMap<&'a str, bool>,
        entries: &mut Vec<LogEntry>,
    ) -> Result<Option<u64>> {
        let key = op.key();
        let existed = match present.get(key) {
            Some(&existed) => existed,
            None => self.data.contains_key(key),
        };
        let is_put = matches!(op, Op::Put { .. });
        present.insert(key, is_put);
        if !existed && !is_put {
            return Ok(None);
        }
        let seq = self.head + entries.len() as u64 + 1;
        if seq > MAX_SEQ {
            return Err(Error::Invalid("the seq space is exhausted".into()));
        }
        entries.push(LogEntry {
            seq,
            op: op.clone(),
        });
        Ok(Some(seq))
    }

    fn prefix_range<'a>(
        &'a self,
        prefix: &str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a String)> + 'a {
        let upper = prefix_upper_bound(prefix);
        let lower = match (after, &upper) {
            // An `after` at or past the end of the prefix's range selects nothing; an empty
            // `[upper, upper)` range, because `BTreeMap::range` panics when start > end.
            (Some(after), Some(upper)) if after >= upper.as_str() => Bound::Included(upper.clone()),
            (Some(after), _) if after >= prefix => Bound::Excluded(after.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);
        self.data.range((lower, upper))
    }
}

impl KvStore for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        Ok(self.read().data.get(key).cloned())
    }

    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Pair>> {
        let inner = self.read();
        Ok(inner
            .prefix_range(prefix, after)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let inner = self.read();
        Ok(inner
            .prefix_range(prefix, after)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn key_cursor(&self, prefix: &str) -> Result<Box<dyn KeyCursor>> {
        // A copy of the keys, as `snapshot` copies the pairs: the view stays consistent
        // without holding the lock while a client reads the reply.
        let keys: Vec<String> = self
            .read()
            .prefix_range(prefix, None)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(Box::new(MemoryKeyCursor { keys, next: 0 }))
    }

    fn count(&self, prefix: &str) -> Result<u64> {
        if prefix.is_empty() {
            return Ok(self.read().data.len() as u64);
        }
        Ok(self.read().prefix_range(prefix, None).count() as u64)
    }

    fn append_batch(&self, requests: &[Vec<Op>]) -> Result<BatchSeqs> {
        // Under one write lock: numbered first, committed only if the whole batch can be,
        // so a failure changes nothing and readers never see part of a batch.
        let mut inner = self.write();
        let (entries, seqs) = inner.plan(requests)?;
        for entry in entries {
            inner.commit(entry);
        }
        Ok(seqs)
    }

    fn apply_fenced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()> {
        let mut inner = self.write();
        check_continues(inner.head, entries)?;
        fence.commit_if_current(&mut || {
            for entry in entries {
                inner.commit(entry.clone());
            }
            if let Some(last) = entries.last() {
                inner
                    .meta
                    .insert("applied_seq".into(), last.seq.to_string());
            }
            Ok(())
        })
    }

    fn position(&self) -> Result<Position> {
        let inner = self.read();
        Ok(Position {
            history_id: inner.meta.get("history_id").cloned(),
            head: inner.head,
            oldest_log: inner.log.front().map(|e| e.seq),
        })
    }

    fn head_seq(&self) -> Result<u64> {
        Ok(self.read().head)
    }

    fn log_batch(&self, after: u64, max_entries: usize, max_bytes: usize) -> Result<Vec<LogEntry>> {
        let inner = self.read();
        let Some(first) = inner.log.front().map(|e| e.seq) else {
            return Ok(Vec::new());
        };
        // The log is contiguous, so the entry with seq `after + 1` sits at a known index.
        let start =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let entries = inner.log.iter().skip(start).cloned().map(Ok);
        fill_log_batch(entries, max_entries, max_bytes)
    }

    fn trim_log(&self, keep: u64, batch: usize) -> Result<u64> {
        let keep = keep.max(1);
        let mut inner = self.write();
        let excess = (inner.log.len() as u64).saturating_sub(keep);
        let remove = excess.min(batch as u64);
        inner.log.drain(..remove as usize);
        Ok(remove)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        let inner = self.read();
        // A copy: the memory backend trades memory for simplicity (the SQLite backend
        // streams from a read transaction instead).
        let entries: Vec<Pair> = inner
            .data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Box::new(MemorySnapshot {
            info: SnapshotInfo {
                history_id: inner.meta.get("history_id").cloned(),
                seq: inner.head,
                keys: inner.data.len() as u64,
            },
            entries: entries
                .into_iter()
                .map(Ok as fn(Pair) -> Result<Pair>)
                .peekable(),
        }))
    }

    fn install_snapshot_fenced(
        &self,
        history_id: &str,
        seq: u64,
        chunks: &mut ChunkSource<'_>,
        fence: &dyn CommitFence,
    ) -> Result<u64> {
        // Build the new map aside, then swap: readers see the old map or the new one.
        let mut data = BTreeMap::new();
        while let Some(chunk) = chunks()? {
            data.extend(chunk);
        }
        let count = data.len() as u64;
        let mut inner = self.write();
        let mut data = Some(data);
        fence.commit_if_current(&mut || {
            inner.data = data.take().unwrap_or_default();
            inner.log.clear();
            inner.head = seq;
            inner.meta.insert("history_id".into(), history_id.into());
            inner.meta.insert("applied_seq".into(), seq.to_string());
            Ok(())
        })?;
        Ok(count)
    }

    fn history_id(&self) -> Result<Option<String>> {
        self.meta("history_id")
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self.read().meta.get(name).cloned())
    }
}

/// The snapshot's pairs, as the fallible source [`fill_chunk`] reads.
type PairSource =
    std::iter::Peekable<std::iter::Map<std::vec::IntoIter<Pair>, fn(Pair) -> Result<Pair>>>;

struct MemorySnapshot {
    info: SnapshotInfo,
    entries: PairSource,
}

impl Snapshot for MemorySnapshot {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn next_chunk(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Pair>> {
        fill_chunk(&mut self.entries, max_entries, max_bytes)
    }
}

struct MemoryKeyCursor {
    keys: Vec<String>,
    next: usize,
}

impl KeyCursor for MemoryKeyCursor {
    fn next_page(&mut self, max: usize) -> Result<Vec<String>> {
        let end = self.next.saturating_add(max).min(self.keys.len());
        let page = self.keys[self.next..end].to_vec();
        self.next = end;
        Ok(page)
    }

    fn rewind(&mut self) {
        self.next = 0;
    }
}
