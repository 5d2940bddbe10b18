//! The durable backend: one SQLite file in WAL mode with `synchronous=FULL`, holding the
//! documented `kv`, `log` and `meta` tables. Writes go through one writer connection;
//! reads and snapshots use their own read-only connections, so they never wait behind a
//! write and see a consistent state. Opening a file is checked read-only first (see
//! [`inspect`]) so that a foreign file is refused without a byte of it changing.
//!
//! Every write goes through [`SqliteStore::write`]: one transaction that commits only if
//! the database's path still names the file the writer opened (see
//! [`SqliteStore::check_files`]), and whose storage faults (disk full, read-only or failing
//! filesystem) are reported naming the file.

mod inspect;

use inspect::side_file;
pub use inspect::{inspect, LATEST_SCHEMA_VERSION};

use super::{
    check_continues, fill_chunk, new_history_id, prefix_upper_bound, ChunkSource, ContentDigest,
    ContentHasher, KvStore, LogEntry, Op, Pair, Position, Role, Snapshot,
};
use crate::error::{Error, Result};
use crate::locks::lock;
use rusqlite::{
    params, Connection, ErrorCode, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use rusqlite_migration::{Migrations, M};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The schema, one plain `.sql` file per version, applied in order.
const MIGRATIONS: &[M<'static>] = &[M::up(include_str!("../../migrations/0001_init.sql"))];

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle read connections kept for reuse.
const READER_POOL: usize = 8;

/// The head: the newest logged seq, or the applied seq of a replica whose log is empty.
const HEAD_SQL: &str = "SELECT max(coalesce((SELECT max(seq) FROM log), 0), \
     coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'applied_seq'), 0))";

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
}

/// A file's identity: (device, inode).
type FileId = (u64, u64);

fn file_id(path: &Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// The database file and its write-ahead log as the writer opened them. While the writer
/// is open, SQLite never removes or recreates either, so a different identity at a path
/// means someone else removed, moved or replaced the file.
struct OpenFiles {
    db: FileId,
    /// SQLite names the log after the database's real path (symlinks resolved).
    wal_path: PathBuf,
    wal: FileId,
}

impl SqliteStore {
    /// Open (or create) the database at `path` for `role`: refuse foreign, newer-schema or
    /// other-role files untouched, then migrate, switch to WAL, and give a new primary its
    /// history id.
    pub fn open(path: &Path, role: Role) -> Result<Self> {
        inspect(path, role)?;
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
        Migrations::from_slice(MIGRATIONS).to_latest(&mut conn)?;
        init_meta(&mut conn, role)?;
        // Both files exist now: the writer keeps the log open from its first transaction.
        let identify = |file: &Path| {
            file_id(file).map_err(|e| Error::Database {
                path: path.to_path_buf(),
                reason: format!("cannot check {}: {e}", file.display()),
            })
        };
        let real_path = std::fs::canonicalize(path).map_err(|e| Error::Database {
            path: path.to_path_buf(),
            reason: format!("cannot resolve: {e}"),
        })?;
        let wal_path = side_file(&real_path, "-wal");
        let files = OpenFiles {
            db: identify(path)?,
            wal: identify(&wal_path)?,
            wal_path,
        };
        Ok(SqliteStore {
            path: path.to_path_buf(),
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(conn),
            files,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_reader(&self) -> Result<Connection> {
        // A new connection opens the path, which must still name the writer's file.
        self.check_files()?;
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
            None if self.check_files().is_err() => return f(&self.writer()),
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

    /// The one write path: runs `f` in an immediate transaction on the writer and commits
    /// it, unless [`check_files`](Self::check_files) finds the file gone (only checked when
    /// `f` changed rows: a transaction that changes nothing acknowledges nothing). On any
    /// error the transaction is rolled back, and a storage fault names the file.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let mut conn = self.writer();
        let before = conn.total_changes();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.storage_error(e))?;
        let value = f(&tx).map_err(|e| match e {
            Error::Sqlite(e) => self.storage_error(e),
            other => other,
        })?;
        if tx.total_changes() != before {
            self.check_files()?;
        }
        tx.commit().map_err(|e| self.storage_error(e))?;
        Ok(value)
    }

    /// Checks that the database's path and its `-wal` still name the files the writer has
    /// open: two `stat`s, noise next to the fsync of a commit. Once a file is removed (or
    /// moved away, or replaced), SQLite carries on writing to the unlinked file, so every
    /// write acknowledged from then on would vanish when kv exits (the database file), or
    /// at the next crash (the `-wal`).
    ///
    /// The node then keeps running, refusing every write with this error, rather than
    /// exiting: like a database whose disk went read-only, it keeps serving reads of the
    /// data it still has open, and that open file is the only copy of everything
    /// acknowledged before the removal (recoverable from `/proc/<pid>/fd` while kv runs);
    /// exiting would discard it, and a supervisor restarting kv would bring it up on a
    /// new, empty database. Writes resume by themselves if the file is moved back.
    fn check_files(&self) -> Result<()> {
        let files = &self.files;
        for (path, id) in [(&self.path, files.db), (&files.wal_path, files.wal)] {
            let reason = match file_id(path) {
                Ok(now) if now == id => continue,
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    format!("cannot be checked ({e}); the write was not committed")
                }
                _ => "was removed or replaced while kv had it open; kv no longer writes to \
                      it (writes would go to a removed file and be lost) and serves reads \
                      from the copy it has open"
                    .to_string(),
            };
            return Err(Error::Unwritable {
                path: path.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// `e`, naming the database file when it is a fault of the file or its filesystem.
    fn storage_error(&self, e: rusqlite::Error) -> Error {
        let Some(code) = e.sqlite_error() else {
            return Error::Sqlite(e);
        };
        let hint = match code.code {
            ErrorCode::DiskFull => "free space on its filesystem",
            ErrorCode::SystemIoFailure | ErrorCode::ReadOnly | ErrorCode::CannotOpen => {
                "is its filesystem read-only, full or failing?"
            }
            _ => return Error::Sqlite(e),
        };
        Error::Unwritable {
            path: self.path.clone(),
            reason: format!(
                "cannot be written: {e} (SQLite code {}); {hint}",
                code.extended_code
            ),
        }
    }
}

fn init_meta(conn: &mut Connection, role: Role) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('role', ?1)",
        [role.as_str()],
    )?;
    if role == Role::Primary {
        tx.execute(
            "INSERT OR IGNORE INTO meta (name, value) VALUES ('history_id', ?1)",
            [new_history_id()],
        )?;
    }
    tx.commit()?;
    Ok(())
}

fn head(conn: &Connection) -> Result<u64> {
    let head: i64 = conn.query_row(HEAD_SQL, [], |row| row.get(0))?;
    Ok(head.max(0) as u64)
}

/// `seq` as a SQLite integer; seqs beyond [`MAX_SEQ`](super::MAX_SEQ) are refused, never wrapped.
fn sql_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq)
        .map_err(|_| Error::Invalid(format!("seq {seq} is beyond the largest kv supports")))
}

fn get_meta(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()?)
}

fn set_meta(conn: &Connection, name: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [name, value],
    )?;
    Ok(())
}

/// Applies `op` to `kv` and logs it at `seq`. Returns false for a delete of an absent key.
fn write_op(conn: &Connection, seq: u64, op: &Op) -> Result<bool> {
    let (kind, key, value) = match op {
        Op::Put { key, value } => {
            conn.prepare_cached(
                "INSERT INTO kv (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
            ("put", key, Some(value))
        }
        Op::Delete { key } => {
            let removed = conn
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([key])?;
            if removed == 0 {
                return Ok(false);
            }
            ("del", key, None)
        }
    };
    conn.prepare_cached("INSERT INTO log (seq, op, key, value) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![sql_seq(seq)?, kind, key, value])?;
    Ok(true)
}

/// The content digest (see [`KvStore::digest`]), read in one transaction on `conn`, the
/// rows streamed one at a time.
fn digest_on(conn: &Connection) -> Result<ContentDigest> {
    let tx = conn.unchecked_transaction()?;
    let seq = head(&tx)?;
    let mut hasher = ContentHasher::default();
    let mut stmt = tx.prepare_cached("SELECT key, value FROM kv ORDER BY key")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let (key, value): (String, String) = (row.get(0)?, row.get(1)?);
        hasher.add(&key, &value);
    }
    Ok(ContentDigest {
        seq,
        hex: hasher.finish(),
    })
}

/// A `log` row as stored: seq, op, key, value.
type LogRow = (i64, String, String, Option<String>);

fn read_log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

/// A log row as an entry; a row that breaks the schema's rules (a `put` without a value,
/// a negative seq) is an error, never guessed at, so replicas are not sent a wrong change.
fn log_entry((seq, kind, key, value): LogRow) -> Result<LogEntry> {
    let op = match (kind.as_str(), value) {
        ("put", Some(value)) => Op::Put { key, value },
        ("del", _) => Op::Delete { key },
        (kind, _) => {
            return Err(Error::Corrupt(format!(
                "log row {seq} is a '{kind}' that cannot be replayed"
            )))
        }
    };
    let seq = u64::try_from(seq).map_err(|_| Error::Corrupt(format!("log row with seq {seq}")))?;
    Ok(LogEntry { seq, op })
}

/// `SELECT columns FROM kv` over the keys from ?1 up to (excluding) the end of `prefix`'s
/// range, bound as ?2 when there is one. Separate statements instead of `?2 IS NULL OR`,
/// so SQLite uses the primary key for both ends of the range.
fn range_sql(columns: &str, prefix: &str, tail: &str) -> (String, Option<String>) {
    let upper = prefix_upper_bound(prefix);
    let bound = if upper.is_some() {
        "key < ?2"
    } else {
        "?2 IS NULL"
    };
    let sql = format!("SELECT {columns} FROM kv WHERE key >= ?1 AND {bound}{tail}");
    (sql, upper)
}

fn query_pairs(
    conn: &Connection,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Pair>> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let lower = match after {
        Some(after) if after >= prefix => after,
        _ => prefix,
    };
    // `key >= lower` also admits `after` itself; it is filtered below, hence one row more
    // than `limit` (saturating: `usize::MAX as i64 + 1` would be `LIMIT 0`).
    let rows_wanted = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
    let (sql, upper) = range_sql("key, value", prefix, " ORDER BY key LIMIT ?3");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![lower, upper, rows_wanted], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
    })?;
    let mut pairs = Vec::new();
    for row in rows {
        let pair = row?;
        if Some(pair.0.as_str()) == after {
            continue;
        }
        pairs.push(pair);
        if pairs.len() == limit {
            break;
        }
    }
    Ok(pairs)
}

impl KvStore for SqliteStore {
    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn get(&self, key: &str) -> Result<Option<String>> {
        self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT value FROM kv WHERE key = ?1")?
                .query_row([key], |row| row.get(0))
                .optional()?)
        })
    }

    fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Pair>> {
        self.read(|conn| query_pairs(conn, prefix, after, limit))
    }

    fn count(&self, prefix: &str) -> Result<u64> {
        let (sql, upper) = range_sql("count(*)", prefix, "");
        self.read(|conn| {
            let n: i64 = conn.query_row(&sql, params![prefix, upper], |row| row.get(0))?;
            Ok(n as u64)
        })
    }

    fn append(&self, op: &Op) -> Result<Option<u64>> {
        self.write(|tx| {
            let seq = head(tx)? + 1;
            Ok(write_op(tx, seq, op)?.then_some(seq))
        })
    }

    fn apply(&self, entries: &[LogEntry]) -> Result<()> {
        let Some(last) = entries.last() else {
            return Ok(());
        };
        self.write(|tx| {
            check_continues(head(tx)?, entries)?;
            for entry in entries {
                // A replica logs every entry, including deletes of keys it does not hold,
                // so its log stays contiguous for replicas chained behind it.
                if !write_op(tx, entry.seq, &entry.op)? {
                    tx.prepare_cached(
                        "INSERT INTO log (seq, op, key, value) VALUES (?1, 'del', ?2, NULL)",
                    )?
                    .execute(params![sql_seq(entry.seq)?, entry.op.key()])?;
                }
            }
            set_meta(tx, "applied_seq", &last.seq.to_string())
        })
    }

    fn position(&self) -> Result<Position> {
        self.read(|conn| {
            // One read transaction, so the three values describe the same state.
            let tx = conn.unchecked_transaction()?;
            let oldest: Option<i64> = tx.query_row("SELECT min(seq) FROM log", [], |r| r.get(0))?;
            Ok(Position {
                history_id: get_meta(&tx, "history_id")?,
                head: head(&tx)?,
                oldest_log: oldest.map(|s| s.max(0) as u64),
            })
        })
    }

    fn head_seq(&self) -> Result<u64> {
        self.read(head)
    }

    fn oldest_log_seq(&self) -> Result<Option<u64>> {
        self.read(|conn| {
            let seq: Option<i64> = conn.query_row("SELECT min(seq) FROM log", [], |r| r.get(0))?;
            Ok(seq.map(|s| s as u64))
        })
    }

    fn log_since(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, op, key, value FROM log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let after = after.min(i64::MAX as u64) as i64;
            let rows = stmt.query_map(params![after, limit as i64], read_log_row)?;
            rows.map(|row| log_entry(row?)).collect()
        })
    }

    fn trim_log(&self, keep: u64, batch: usize) -> Result<u64> {
        // Saturate: `u64::MAX as i64` is -1, which would delete the whole log.
        let keep = i64::try_from(keep.max(1)).unwrap_or(i64::MAX);
        self.write(|tx| {
            let removed = tx.execute(
                "DELETE FROM log WHERE seq IN (SELECT seq FROM log WHERE seq <= \
                 (SELECT max(seq) FROM log) - ?1 ORDER BY seq LIMIT ?2)",
                params![keep, batch as i64],
            )?;
            Ok(removed as u64)
        })
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        // Through `open_reader`: refused, naming the file, if it was removed or replaced.
        let conn = self.open_reader()?;
        // The read transaction starts at the first read and pins this view until dropped.
        conn.execute_batch("BEGIN DEFERRED")?;
        let seq = head(&conn)?;
        let history_id = get_meta(&conn, "history_id")?;
        let total: i64 = conn.query_row("SELECT count(*) FROM kv", [], |row| row.get(0))?;
        Ok(Box::new(SqliteSnapshot {
            conn,
            history_id,
            seq,
            total: total as u64,
            last_key: None,
        }))
    }

    fn install_snapshot(
        &self,
        history_id: &str,
        seq: u64,
        chunks: &mut ChunkSource<'_>,
    ) -> Result<u64> {
        sql_seq(seq)?;
        self.write(|tx| {
            tx.execute_batch("DELETE FROM kv; DELETE FROM log;")?;
            let mut count = 0;
            while let Some(chunk) = chunks()? {
                let mut insert =
                    tx.prepare_cached("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
                for (key, value) in &chunk {
                    insert.execute([key, value])?;
                }
                count += chunk.len() as u64;
            }
            set_meta(tx, "history_id", history_id)?;
            set_meta(tx, "applied_seq", &seq.to_string())?;
            Ok(count)
        })
    }

    fn history_id(&self) -> Result<Option<String>> {
        self.meta("history_id")
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        self.read(|conn| get_meta(conn, name))
    }

    fn set_meta(&self, name: &str, value: &str) -> Result<()> {
        self.write(|tx| set_meta(tx, name, value))
    }

    /// Through [`read`](Self::read) rather than a snapshot, so that it still works (on the
    /// writer) once the file was removed: `STATUS` and `DIGEST` use it.
    fn digest(&self) -> Result<ContentDigest> {
        self.read(digest_on)
    }
}

/// A snapshot held open as a read transaction on its own connection; chunks are read by
/// key ranges (`key > last`), so memory is bounded by the chunk size.
struct SqliteSnapshot {
    conn: Connection,
    history_id: Option<String>,
    seq: u64,
    total: u64,
    last_key: Option<String>,
}

impl Snapshot for SqliteSnapshot {
    fn history_id(&self) -> Option<&str> {
        self.history_id.as_deref()
    }

    fn seq(&self) -> u64 {
        self.seq
    }

    fn key_count(&self) -> u64 {
        self.total
    }

    fn next_chunk(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Pair>> {
        let limit = max_entries.max(1) as i64;
        let mut stmt;
        let mut rows = match &self.last_key {
            None => {
                stmt = self
                    .conn
                    .prepare_cached("SELECT key, value FROM kv ORDER BY key LIMIT ?1")?;
                stmt.query(params![limit])?
            }
            Some(last) => {
                stmt = self.conn.prepare_cached(
                    "SELECT key, value FROM kv WHERE key > ?1 ORDER BY key LIMIT ?2",
                )?;
                stmt.query(params![last, limit])?
            }
        };
        let pairs = std::iter::from_fn(|| match rows.next() {
            Ok(Some(row)) => Some(
                row.get(0)
                    .and_then(|k| Ok((k, row.get(1)?)))
                    .map_err(Error::from),
            ),
            Ok(None) => None,
            Err(e) => Some(Err(Error::from(e))),
        });
        let chunk = fill_chunk(pairs, max_entries, max_bytes)?;
        if let Some((key, _)) = chunk.last() {
            self.last_key = Some(key.clone());
        }
        Ok(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_is_durable_and_in_wal_mode() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("p.db"), Role::Primary).expect("open");
        let conn = store.writer();
        let synchronous: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(synchronous, 2, "synchronous must be FULL");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("pragma");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_replaced_file_refuses_writes_and_is_read_through_the_writer() {
        let dir = tempfile::TempDir::new().expect("tempdir");
        let path = dir.path().join("p.db");
        let store = SqliteStore::open(&path, Role::Primary).expect("open");
        let put = |key: &str| Op::Put {
            key: key.into(),
            value: "1".into(),
        };
        store.append(&put("a")).expect("append");
        // Another kv database in its place, and no pooled reader opened before.
        let other = dir.path().join("other.db");
        SqliteStore::open(&other, Role::Primary)
            .and_then(|s| s.append(&put("x")))
            .expect("other database");
        std::fs::rename(&other, &path).expect("replace");
        lock(&store.readers).clear();

        let err = store
            .append(&put("b"))
            .expect_err("a write to a replaced file");
        assert!(
            matches!(&err, Error::Unwritable { path: p, .. } if *p == path)
                && err.to_string().contains("was removed or replaced"),
            "{err}"
        );
        assert!(store.set_meta("role", "replica").is_err());
        assert_eq!(
            store
                .trim_log(1, 10)
                .expect("trimming nothing writes nothing"),
            0
        );
        assert_eq!(store.get("a").expect("get"), Some("1".into()));
        assert_eq!(store.get("x").expect("get"), None, "read the other file");
        assert_eq!(store.digest().expect("digest").seq, 1);
        assert!(store.snapshot().is_err(), "a snapshot of the other file");
        assert!(lock(&store.readers).is_empty(), "a reader opened the path");
    }
}
