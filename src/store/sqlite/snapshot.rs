//! Consistent views of a SQLite store: a snapshot of the whole contents, and a cursor over
//! the keys of a prefix. Each is one read transaction on its own connection, pinned until
//! it is dropped, read in key order by key ranges (`key > last`), so memory is bounded by
//! the chunk or page size whatever the database's size.

use super::lineage::{checksum_at, read_lineage};
use super::rows::{head, query_keys, read_record, sql_now, SqlKey};
use crate::error::{Error, Result};
use crate::store::{fill_chunk, Bytes, KeyCursor, Record, Snapshot, SnapshotInfo};
use rusqlite::{params, Connection};

/// A snapshot held open as a read transaction on its own connection; chunks are read by
/// key ranges (`key > last`), so memory is bounded by the chunk size.
pub(super) struct SqliteSnapshot {
    conn: Connection,
    info: SnapshotInfo,
    last_key: Option<Bytes>,
}

impl SqliteSnapshot {
    /// Starts the read transaction on `conn` and reads the view's seq, history and size.
    pub(super) fn begin(conn: Connection) -> Result<Self> {
        // The read transaction starts at the first read and pins this view until dropped.
        conn.execute_batch("BEGIN DEFERRED")?;
        let keys: i64 = conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0))?;
        let lineage = read_lineage(&conn)?;
        let seq = head(&conn)?;
        let info = SnapshotInfo {
            history_id: lineage.history_id,
            seq,
            keys: keys.max(0) as u64,
            fork: lineage.fork,
            checksum: checksum_at(&conn, seq)?,
            epoch: lineage.epoch,
        };
        Ok(SqliteSnapshot {
            conn,
            info,
            last_key: None,
        })
    }
}

impl Snapshot for SqliteSnapshot {
    fn info(&self) -> &SnapshotInfo {
        &self.info
    }

    fn next_chunk(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Record>> {
        let limit = max_entries.max(1) as i64;
        let mut stmt;
        let mut rows = match &self.last_key {
            None => {
                stmt = self.conn.prepare_cached(
                    "SELECT key, value, expires_at FROM kv ORDER BY key LIMIT ?1",
                )?;
                stmt.query(params![limit])?
            }
            Some(last) => {
                stmt = self.conn.prepare_cached(
                    "SELECT key, value, expires_at FROM kv WHERE key > ?1 ORDER BY key LIMIT ?2",
                )?;
                stmt.query(params![SqlKey(last), limit])?
            }
        };
        // A row peeked but not taken by `fill_chunk` is read again by the next chunk's
        // query (`key > last`).
        let mut pairs = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(read_record(row).map_err(Error::from)),
            Ok(None) => None,
            Err(e) => Some(Err(Error::from(e))),
        })
        .peekable();
        let chunk = fill_chunk(&mut pairs, max_entries, max_bytes)?;
        if let Some(record) = chunk.last() {
            self.last_key = Some(record.key.clone());
        }
        Ok(chunk)
    }
}

/// The keys of one prefix, held open as a read transaction on its own connection, at
/// one time: a key that expires while it is read is in every pass or in none.
pub(super) struct SqliteKeyCursor {
    conn: Connection,
    prefix: Bytes,
    last_key: Option<Bytes>,
    now: i64,
}

impl SqliteKeyCursor {
    /// Starts the read transaction on `conn`: the view is pinned from here on.
    pub(super) fn begin(conn: Connection, prefix: &[u8]) -> Result<Self> {
        conn.execute_batch("BEGIN DEFERRED")?;
        conn.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
        Ok(SqliteKeyCursor {
            conn,
            prefix: prefix.to_vec(),
            last_key: None,
            now: sql_now(),
        })
    }
}

impl KeyCursor for SqliteKeyCursor {
    fn next_page(&mut self, max: usize) -> Result<Vec<Bytes>> {
        let after = self.last_key.as_deref();
        let page = query_keys(&self.conn, &self.prefix, after, max, self.now)?;
        if let Some(key) = page.last() {
            self.last_key = Some(key.clone());
        }
        Ok(page)
    }

    fn rewind(&mut self) {
        self.last_key = None;
    }
}
