//! The durable backend: one SQLite file in WAL mode with `synchronous=FULL` (but for a
//! replica's applied batches, flushed behind them by [`KvStore::sync`]), holding the
//! documented `kv`, `log` and `meta` tables. Writes go through one writer connection;
//! reads and snapshots use their own read-only connections, so they never wait behind a
//! write and see a consistent state. Opening a file is checked read-only first (see
//! [`inspect`]) so that a foreign file is refused without a byte of it changing.
//!
//! Every write goes through [`SqliteStore::write_in`]: one transaction that commits only if
//! the database's path still names the file the writer opened (see
//! [`files::OpenFiles::check`]), and whose storage faults (disk full, read-only or failing
//! filesystem) are reported naming the file.

mod files;
mod inspect;
mod lineage;
mod lock;
mod reads;
mod rows;
mod snapshot;

use files::{storage_error, OpenFiles};
pub use inspect::{inspect, LATEST_SCHEMA_VERSION};
use lineage::{
    checksum_at, install_lineage, read_diverged, read_lineage, read_role, require_primary,
    save_diverged, set_log_base,
};
use lock::FileLock;
use rows::{
    append_ops, apply_net_effect, bytes_at, digest_on, get_meta, head, init_meta, live, log_entry,
    log_op, query_keys, query_pairs, range_sql, read_log_row, set_meta, sql_now, sql_seq, sql_time,
    SqlKey, SqlValue,
};
use snapshot::{SqliteKeyCursor, SqliteSnapshot};

use super::history::ChainRule;
use super::{
    check_continues, fill_log_batch, BatchSeqs, Bytes, ChunkSource, CommitFence, ContentDigest,
    DivergedEntry, KeyCursor, KvStore, Lineage, LogEntry, Op, Pair, Position, Role, Snapshot,
    SnapshotTarget, Stored, Unfenced,
};
use crate::error::{Error, Result};
use crate::locks::lock;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use rusqlite_migration::{Migrations, M};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema, one plain `.sql` file per version, applied in order.
const MIGRATIONS: &[M<'static>] = &[
    M::up(include_str!("../../migrations/0001_init.sql")),
    M::up(include_str!("../../migrations/0002_history.sql")),
    M::up(include_str!("../../migrations/0003_expiry.sql")),
];

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes the `-wal` file is truncated to after a checkpoint (`journal_size_limit`).
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

/// Idle read connections kept for reuse.
const READER_POOL: usize = 8;

/// A [`KvStore`] in a SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    // Declared before `writer` so the read-only connections close first: only the last
    // connection to close checkpoints the WAL and removes the -wal and -shm files, and a
    // read-only one cannot.
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
    /// The files the writer opened, as they were when it opened them.
    files: OpenFiles,
    /// The writer's `synchronous` setting: FULL (each commit flushed) but for
    /// [`KvStore::apply_unsynced`]. Changed only while the writer is locked.
    flush_each_commit: AtomicBool,
    /// This node's exclusive hold on the file; declared last, so it is released only
    /// after every connection has closed (and the last one checkpointed the WAL).
    _lock: FileLock,
}

impl SqliteStore {
    /// Open (or create) the database at `path` for `role`: take the file's lock (refused
    /// while another node has it open), refuse foreign, newer-schema or other-role files
    /// untouched, then migrate, switch to WAL, and give a new primary its history id.
    pub fn open(path: &Path, role: Role) -> Result<Self> {
        Self::open_as(path, role, false)
    }

    /// [`open`](Self::open) as a replica that is about to follow an upstream: a primary's
    /// file is accepted too, and demoted (`meta.role` becomes `replica`).
    pub fn open_demoting(path: &Path) -> Result<Self> {
        Self::open_as(path, Role::Replica, true)
    }

    fn open_as(path: &Path, role: Role, demote: bool) -> Result<Self> {
        let lock = FileLock::acquire(path)?;
        inspect(path, role, demote)?;
        let cannot = |e: rusqlite::Error| {
            let hint = match e.sqlite_error_code() {
                Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly) => {
                    "; kv must write it and create its -wal and -shm files beside it \
                     (is its directory missing or not writable, or its filesystem read-only?)"
                }
                _ => "",
            };
            Error::Database {
                path: path.to_path_buf(),
                reason: format!("cannot open: {e}{hint}"),
            }
        };
        let mut conn = Connection::open(path).map_err(cannot)?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(cannot)?;
        // Without WAL, a snapshot's long read would block every write; refuse instead.
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::Database {
                path: path.to_path_buf(),
                reason: format!("cannot switch to WAL mode (journal_mode stays {mode})"),
            });
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        // A burst of large writes grows the -wal file; give the space back once it has
        // been checkpointed, instead of keeping the largest size it ever reached.
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        init_meta(&mut conn, role)?;
        if demote {
            set_meta(&conn, "role", Role::Replica.as_str())?;
        }
        let files = OpenFiles::record(path)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(conn),
            files,
            flush_each_commit: AtomicBool::new(true),
            _lock: lock,
        })
    }

    fn open_reader(&self) -> Result<Connection> {
        // A new connection opens the path, which must still name the writer's file.
        self.files.check(&self.path)?;
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        Ok(conn)
    }

    /// Runs `f` on a pooled read-only connection.
    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let conn = match pooled {
            Some(conn) => conn,
            // The path no longer names the open file: read through the writer, which
            // still has it (a reader opened now would see another file, or none).
            None if self.files.check(&self.path).is_err() => return f(&self.writer()),
            None => self.open_reader()?,
        };
        let result = f(&conn);
        let mut pool = lock(&self.readers);
        if pool.len() < READER_POOL {
            pool.push(conn);
        }
        result
    }

    fn writer(&self) -> MutexGuard<'_, Connection> {
        lock(&self.writer)
    }

    /// [`write_fenced`](Self::write_fenced) for writes nothing can supersede.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        self.write_fenced(&Unfenced, f)
    }

    /// [`write_in`](Self::write_in), the commit flushed to the disk.
    fn write_fenced<T>(
        &self,
        fence: &dyn CommitFence,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        self.write_in(fence, true, f)
    }

    /// Sets the writer's `synchronous` to FULL (`flush`) or NORMAL, if it is not already.
    fn set_flush(&self, conn: &Connection, flush: bool) -> Result<()> {
        if self.flush_each_commit.load(Ordering::Relaxed) != flush {
            let mode = if flush { "FULL" } else { "NORMAL" };
            conn.pragma_update(None, "synchronous", mode)
                .map_err(|e| storage_error(&self.path, e))?;
            self.flush_each_commit.store(flush, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The one write path: runs `f` in an immediate transaction on the writer and commits
    /// it through `fence`, unless [`OpenFiles::check`] finds the file gone (only checked
    /// when `f` changed rows: a transaction that changes nothing acknowledges nothing). On
    /// any error, or a fence that refuses, the transaction is rolled back, and a storage
    /// fault names the file. The commit is flushed to the disk if `flush`; otherwise it
    /// is durable once [`OpenFiles::sync_wal`] has run after it.
    fn write_in<T>(
        &self,
        fence: &dyn CommitFence,
        flush: bool,
        f: impl FnOnce(&Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.writer();
        self.set_flush(&conn, flush)?;
        let before = conn.total_changes();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| storage_error(&self.path, e))?;
        let value = f(&tx).map_err(|e| match e {
            Error::Sqlite(e) => storage_error(&self.path, e),
            other => other,
        })?;
        if tx.total_changes() != before {
            self.files.check(&self.path)?;
        }
        // Dropped uncommitted (rolled back) if the fence refuses.
        let mut tx = Some(tx);
        fence.commit_if_current(&mut || match tx.take() {
            Some(tx) => tx.commit().map_err(|e| storage_error(&self.path, e)),
            None => Ok(()),
        })?;
        Ok(value)
    }

    /// A replica's write of `entries` (see [`KvStore::apply_fenced`]), flushed if `flush`.
    fn apply_in(&self, entries: &[LogEntry], fence: &dyn CommitFence, flush: bool) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        self.write_in(fence, flush, |tx| {
            let head = head(tx)?;
            check_continues(head, entries)?;
            let mut checksum = checksum_at(tx, head)?;
            apply_net_effect(tx, entries)?;
            for entry in entries {
                // A replica logs every entry, including deletes of keys it does not hold,
                // so its log stays contiguous for replicas chained behind it.
                log_op(
                    tx,
                    entry.seq,
                    &entry.op,
                    &mut checksum,
                    ChainRule::Propagate,
                )?;
            }
            set_meta(tx, "applied_seq", &last.seq.to_string())
        })
    }
}

impl KvStore for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        self.read(|conn| reads::get(conn, key))
    }

    fn get_stored(&self, key: &[u8]) -> Result<Option<Stored>> {
        self.read(|conn| reads::get_stored(conn, key))
    }

    fn row_expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>> {
        self.read(|conn| reads::row_expiry(conn, key))
    }

    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<Bytes>> {
        self.read(|conn| reads::expired_keys(conn, now, limit))
    }

    fn count_expiring(&self) -> Result<u64> {
        self.read(reads::count_expiring)
    }

    fn get_many(&self, keys: &[&[u8]], max_bytes: usize) -> Result<Vec<Option<Bytes>>> {
        self.read(|conn| reads::get_many(conn, keys, max_bytes))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Pair>> {
        self.read(|conn| query_pairs(conn, prefix, after, limit))
    }

    fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Bytes>> {
        self.read(|conn| query_keys(conn, prefix, after, limit, sql_now()))
    }

    fn key_cursor(&self, prefix: &[u8]) -> Result<Box<dyn KeyCursor>> {
        let conn = self.open_reader()?;
        Ok(Box::new(SqliteKeyCursor::begin(conn, prefix)?))
    }

    fn count(&self, prefix: &[u8]) -> Result<u64> {
        let (sql, upper) = range_sql("count(*)", prefix, "");
        self.read(|conn| {
            let bounds = params![SqlKey(prefix), upper.as_deref().map(SqlKey), sql_now()];
            let n: i64 = conn.query_row(&sql, bounds, |row| row.get(0))?;
            Ok(n as u64)
        })
    }

    fn nth_key(&self, index: u64) -> Result<Option<Bytes>> {
        let offset = i64::try_from(index).unwrap_or(i64::MAX);
        self.read(|conn| {
            let key = conn
                .query_row(
                    &format!(
                        "SELECT key FROM kv WHERE {} ORDER BY key LIMIT 1 OFFSET ?1",
                        live("?2")
                    ),
                    params![offset, sql_now()],
                    |row| bytes_at(row, 0),
                )
                .optional()?;
            Ok(key)
        })
    }

    fn append_batch(&self, requests: &[Vec<Op>]) -> Result<BatchSeqs> {
        self.write(|tx| {
            require_primary(tx)?;
            let head = head(tx)?;
            let mut checksum = checksum_at(tx, head)?;
            let mut next = head + 1;
            requests
                .iter()
                .map(|ops| append_ops(tx, &mut next, &mut checksum, ops))
                .collect()
        })
    }

    fn apply_fenced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()> {
        self.apply_in(entries, fence, true)
    }

    fn apply_unsynced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()> {
        self.apply_in(entries, fence, false)
    }

    fn sync(&self) -> Result<()> {
        self.files.sync_wal(&self.path)
    }

    fn position(&self) -> Result<Position> {
        self.read(|conn| {
            // One read transaction, so the three values describe the same state.
            let tx = conn.unchecked_transaction()?;
            let oldest: Option<i64> = tx.query_row("SELECT min(seq) FROM log", [], |r| r.get(0))?;
            let lineage = read_lineage(&tx)?;
            let head = head(&tx)?;
            Ok(Position {
                history_id: lineage.history_id,
                head,
                oldest_log: oldest.map(|s| s.max(0) as u64),
                fork: lineage.fork,
                checksum: checksum_at(&tx, head)?,
                epoch: lineage.epoch,
            })
        })
    }

    fn head_seq(&self) -> Result<u64> {
        self.read(head)
    }

    fn log_batch(&self, after: u64, max_entries: usize, max_bytes: usize) -> Result<Vec<LogEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, op, key, value, expires_at FROM log WHERE seq > ?1 \
                 ORDER BY seq LIMIT ?2",
            )?;
            let after = after.min(i64::MAX as u64) as i64;
            let limit = i64::try_from(max_entries).unwrap_or(i64::MAX);
            let rows = stmt.query_map(params![after, limit], read_log_row)?;
            fill_log_batch(rows.map(|row| log_entry(row?)), max_entries, max_bytes)
        })
    }

    fn trim_log(&self, keep: u64, batch: usize) -> Result<u64> {
        // Saturate: `u64::MAX as i64` is -1, which would delete the whole log.
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.write(|tx| {
            // The newest row this batch removes; its checksum becomes the log's base, so
            // the checksum just before the oldest kept row stays known.
            let last: Option<i64> = tx.query_row(
                "SELECT max(seq) FROM (SELECT seq FROM log WHERE seq <= \
                 (SELECT max(seq) FROM log) - ?1 ORDER BY seq LIMIT ?2)",
                params![keep, batch as i64],
                |row| row.get(0),
            )?;
            let Some(last) = last else {
                return Ok(0);
            };
            let checksum = checksum_at(tx, last as u64)?;
            set_log_base(tx, last as u64, checksum)?;
            let removed = tx.execute("DELETE FROM log WHERE seq <= ?1", [last])?;
            Ok(removed as u64)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        // Through `open_reader`: refused, naming the file, if it was removed or replaced.
        let conn = self.open_reader()?;
        Ok(Box::new(SqliteSnapshot::begin(conn)?))
    }

    fn install_snapshot_fenced(
        &self,
        target: &SnapshotTarget,
        chunks: &mut ChunkSource<'_>,
        fence: &dyn CommitFence,
    ) -> Result<u64> {
        sql_seq(target.seq)?;
        self.write_fenced(fence, |tx| {
            if let Some(after) = target.keep_diverged_after {
                save_diverged(tx, after)?;
            }
            tx.execute_batch("DELETE FROM kv; DELETE FROM log;")?;
            let mut count = 0;
            while let Some(chunk) = chunks()? {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3)",
                )?;
                for record in &chunk {
                    insert.execute(params![
                        SqlKey(&record.key),
                        SqlValue(&record.value),
                        sql_time(record.expires_at)
                    ])?;
                }
                count += chunk.len() as u64;
            }
            install_lineage(tx, target)?;
            set_meta(tx, "applied_seq", &target.seq.to_string())?;
            Ok(count)
        })
    }

    fn role(&self) -> Result<Role> {
        self.read(read_role)
    }

    fn promote(&self, fence: &dyn CommitFence, epoch: Option<u64>) -> Result<Position> {
        self.write_fenced(fence, |tx| lineage::promote(tx, epoch))
    }

    fn set_role(&self, role: Role) -> Result<()> {
        self.write(|tx| set_meta(tx, "role", role.as_str()))
    }

    fn adopt_history(&self, lineage: &Lineage, fence: &dyn CommitFence) -> Result<()> {
        self.write_fenced(fence, |tx| lineage::adopt(tx, lineage))
    }

    fn checksum_at(&self, seq: u64) -> Result<Option<u64>> {
        self.read(|conn| {
            let tx = conn.unchecked_transaction()?;
            checksum_at(&tx, seq)
        })
    }

    fn diverged(&self) -> Result<Vec<DivergedEntry>> {
        self.read(read_diverged)
    }

    fn history_id(&self) -> Result<Option<String>> {
        self.meta("history_id")
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(|conn| get_meta(conn, name))
    }

    /// Through [`read`](Self::read) rather than a snapshot, so that it still works (on the
    /// writer) once the file was removed: `STATUS` and `DIGEST` use it.
    fn digest(&self) -> Result<ContentDigest> {
        self.read(digest_on)
    }
}

#[cfg(test)]
mod tests;
