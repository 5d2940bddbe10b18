//! The SQL behind the store: the head, meta rows, writing one operation with its log row
//! (and a primary's batch of them), reading log rows back as entries (refusing rows that
//! break the schema's rules), key range scans, and the content digest.

use crate::error::{Error, Result};
use crate::store::history::{next_checksum, ChainRule};
use crate::store::{
    new_history_id, new_node_id, now_ms, prefix_upper_bound, Bytes, ContentDigest, ContentHasher,
    LogEntry, Op, Pair, Record, Role,
};
use rusqlite::types::{FromSql, FromSqlResult, ToSqlOutput, ValueRef};
use rusqlite::{params, Connection, OptionalExtension, ToSql, TransactionBehavior};
use std::collections::BTreeMap;

/// The head: the newest logged seq, or the applied seq of a replica whose log is empty.
const HEAD_SQL: &str = "SELECT max(coalesce((SELECT max(seq) FROM log), 0), \
     coalesce((SELECT CAST(value AS INTEGER) FROM meta WHERE name = 'applied_seq'), 0))";

pub(super) fn init_meta(conn: &mut Connection, role: Role) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('role', ?1)",
        [role.as_str()],
    )?;
    tx.execute(
        "INSERT OR IGNORE INTO meta (name, value) VALUES ('node_id', ?1)",
        [new_node_id()],
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

pub(super) fn head(conn: &Connection) -> Result<u64> {
    let head: i64 = conn.query_row(HEAD_SQL, [], |row| row.get(0))?;
    Ok(head.max(0) as u64)
}

/// `seq` as a SQLite integer; seqs beyond [`MAX_SEQ`](super::MAX_SEQ) are refused, never wrapped.
pub(super) fn sql_seq(seq: u64) -> Result<i64> {
    i64::try_from(seq)
        .map_err(|_| Error::Invalid(format!("seq {seq} is beyond the largest kv supports")))
}

pub(super) fn get_meta(conn: &Connection, name: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
            row.get(0)
        })
        .optional()?)
}

pub(super) fn set_meta(conn: &Connection, name: &str, value: &str) -> Result<()> {
    conn.execute(
        "INSERT INTO meta (name, value) VALUES (?1, ?2) \
         ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        [name, value],
    )?;
    Ok(())
}

/// Removes a `meta` row, if present.
pub(super) fn delete_meta(conn: &Connection, name: &str) -> Result<()> {
    conn.execute("DELETE FROM meta WHERE name = ?1", [name])?;
    Ok(())
}

/// Applies `op` to `kv`. Returns false for a delete of an absent key (nothing changed).
pub(super) fn change_kv(conn: &Connection, op: &Op) -> Result<bool> {
    match op {
        Op::Put {
            key,
            value,
            expires_at,
        } => {
            conn.prepare_cached(
                "INSERT INTO kv (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at",
            )?
            .execute(params![SqlKey(key), SqlValue(value), sql_time(*expires_at)])?;
            Ok(true)
        }
        Op::Delete { key } => {
            let removed = conn
                .prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([SqlKey(key)])?;
            Ok(removed > 0)
        }
    }
}

/// Applies to `kv` the net effect of `entries`: each key's last op, in key order. Inside
/// one transaction that leaves the same rows as applying every op in turn, and a backlog
/// applied in key order changes each page once, in order, where seq order would jump
/// across the whole table for every entry.
pub(super) fn apply_net_effect(conn: &Connection, entries: &[LogEntry]) -> Result<()> {
    let mut last: BTreeMap<&[u8], &Op> = BTreeMap::new();
    for entry in entries {
        last.insert(entry.op.key(), &entry.op);
    }
    for op in last.into_values() {
        change_kv(conn, op)?;
    }
    Ok(())
}

/// Logs `op` at `seq` with the running checksum after `*checksum` (continued by `rule`),
/// which it advances.
pub(super) fn log_op(
    conn: &Connection,
    seq: u64,
    op: &Op,
    checksum: &mut Option<u64>,
    rule: ChainRule,
) -> Result<()> {
    let next = next_checksum(*checksum, seq, op, rule);
    let (kind, value, expires_at) = match op {
        Op::Put {
            value, expires_at, ..
        } => ("put", Some(value), *expires_at),
        Op::Delete { .. } => ("del", None, None),
    };
    conn.prepare_cached(
        "INSERT INTO log (seq, op, key, value, checksum, expires_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        sql_seq(seq)?,
        kind,
        SqlKey(op.key()),
        value.map(|value| SqlValue(value)),
        next.map(|c| c as i64),
        sql_time(expires_at)
    ])?;
    *checksum = next;
    Ok(())
}

/// Appends `ops` in order as primary writes numbered from `*next`, which advances past
/// each logged op, chaining the log checksum from `*checksum`. Returns each op's seq
/// (`None`: a delete of an absent key, not logged).
pub(super) fn append_ops(
    conn: &Connection,
    next: &mut u64,
    checksum: &mut Option<u64>,
    ops: &[Op],
) -> Result<Vec<Option<u64>>> {
    ops.iter()
        .map(|op| {
            let seq = *next;
            if !change_kv(conn, op)? {
                return Ok(None);
            }
            log_op(conn, seq, op, checksum, ChainRule::Restart)?;
            *next += 1;
            Ok(Some(seq))
        })
        .collect()
}

/// The content digest (see [`KvStore::digest`]), read in one transaction on `conn`, the
/// rows streamed one at a time.
pub(super) fn digest_on(conn: &Connection) -> Result<ContentDigest> {
    let tx = conn.unchecked_transaction()?;
    let seq = head(&tx)?;
    let mut hasher = ContentHasher::default();
    let mut stmt = tx.prepare_cached("SELECT key, value, expires_at FROM kv ORDER BY key")?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        hasher.add_record(&read_record(row)?);
    }
    Ok(ContentDigest {
        seq,
        hex: hasher.finish(),
    })
}

/// A `log` row as stored: seq, op, key, value, expires_at.
pub(super) type LogRow = (i64, String, Bytes, Option<Bytes>, Option<i64>);

/// Reads `seq, op, key, value, expires_at`, the first five columns.
pub(super) fn read_log_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<LogRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        bytes_at(row, 2)?,
        row.get::<_, Option<RowBytes>>(3)?.map(|value| value.0),
        row.get(4)?,
    ))
}

/// Reads `key, value, expires_at`, the first three columns.
pub(super) fn read_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<Record> {
    Ok(Record {
        key: bytes_at(row, 0)?,
        value: bytes_at(row, 1)?,
        expires_at: row.get::<_, Option<i64>>(2)?.map(stored_time),
    })
}

/// A key as SQLite stores it: TEXT holding its bytes, UTF-8 or not. One storage class
/// for every key keeps one order in the primary key's index, byte order (SQLite sorts
/// every TEXT before every BLOB, so a BLOB key would sort after all the text ones), the
/// order the memory backend and the replication stream use too.
pub(super) struct SqlKey<'a>(pub(super) &'a [u8]);

impl ToSql for SqlKey<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(ValueRef::Text(self.0)))
    }
}

/// A value as SQLite stores it: TEXT when it is UTF-8, so `sqlite3` shows text as text;
/// a BLOB otherwise.
pub(super) struct SqlValue<'a>(pub(super) &'a [u8]);

impl ToSql for SqlValue<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match std::str::from_utf8(self.0) {
            Ok(_) => ValueRef::Text(self.0),
            Err(_) => ValueRef::Blob(self.0),
        }))
    }
}

/// A key or value read back: the bytes of a TEXT or a BLOB.
pub(super) struct RowBytes(pub(super) Bytes);

impl FromSql for RowBytes {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        value.as_bytes().map(|bytes| RowBytes(bytes.to_vec()))
    }
}

/// Column `index` of `row` as bytes.
pub(super) fn bytes_at(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Bytes> {
    Ok(row.get::<_, RowBytes>(index)?.0)
}

/// An expiry as SQLite stores it: a signed 64-bit integer (times past its range, some
/// 292 million years away, are kept at its largest).
pub(super) fn sql_time(at: Option<u64>) -> Option<i64> {
    at.map(|at| i64::try_from(at).unwrap_or(i64::MAX))
}

/// A stored expiry as kv reads it: a negative one (written by hand) is long past.
pub(super) fn stored_time(at: i64) -> u64 {
    u64::try_from(at).unwrap_or(0)
}

/// A log row as an entry; a row that breaks the schema's rules (a `put` without a value,
/// a negative seq) is an error, never guessed at, so replicas are not sent a wrong change.
pub(super) fn log_entry((seq, kind, key, value, expires_at): LogRow) -> Result<LogEntry> {
    let op = match (kind.as_str(), value) {
        ("put", Some(value)) => Op::Put {
            key,
            value,
            expires_at: expires_at.map(stored_time),
        },
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

/// `SELECT columns FROM kv` over the live keys (see [`LIVE`], the time bound as ?3) from
/// ?1 up to (excluding) the end of `prefix`'s range, bound as ?2 when there is one.
/// Separate statements instead of `?2 IS NULL OR`, so SQLite uses the primary key for
/// both ends of the range.
pub(super) fn range_sql(columns: &str, prefix: &[u8], tail: &str) -> (String, Option<Bytes>) {
    let upper = prefix_upper_bound(prefix);
    let bound = if upper.is_some() {
        "key < ?2"
    } else {
        "?2 IS NULL"
    };
    let sql = format!(
        "SELECT {columns} FROM kv WHERE key >= ?1 AND {bound} AND {}{tail}",
        live("?3")
    );
    (sql, upper)
}

/// The condition of a row that has not expired at the time bound as `now`.
pub(super) fn live(now: &str) -> String {
    format!("(expires_at IS NULL OR expires_at > {now})")
}

/// The current time as the queries above bind it.
pub(super) fn sql_now() -> i64 {
    sql_time(Some(now_ms())).unwrap_or(i64::MAX)
}

/// Up to `limit` rows (read by `row`, whose first column is the key) of the keys starting
/// with `prefix` that sort after `after` (if given), in key order, live at `now`.
fn query_range<T>(
    conn: &Connection,
    columns: &str,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    now: i64,
    row: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<(Bytes, T)>,
) -> Result<Vec<(Bytes, T)>> {
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
    let (sql, upper) = range_sql(columns, prefix, " ORDER BY key LIMIT ?4");
    let mut stmt = conn.prepare_cached(&sql)?;
    let upper = upper.as_deref().map(SqlKey);
    let rows = stmt.query_map(params![SqlKey(lower), upper, now, rows_wanted], row)?;
    let mut found = Vec::new();
    for item in rows {
        let item = item?;
        if Some(item.0.as_slice()) == after {
            continue;
        }
        found.push(item);
        if found.len() == limit {
            break;
        }
    }
    Ok(found)
}

/// Pairs in a key range (see [`query_range`]).
pub(super) fn query_pairs(
    conn: &Connection,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
) -> Result<Vec<Pair>> {
    query_range(conn, "key, value", prefix, after, limit, sql_now(), |row| {
        Ok((bytes_at(row, 0)?, bytes_at(row, 1)?))
    })
}

/// Keys in a key range (see [`query_range`]) live at `now`, without reading their values.
pub(super) fn query_keys(
    conn: &Connection,
    prefix: &[u8],
    after: Option<&[u8]>,
    limit: usize,
    now: i64,
) -> Result<Vec<Bytes>> {
    let keys = query_range(conn, "key", prefix, after, limit, now, |row| {
        Ok((bytes_at(row, 0)?, ()))
    })?;
    Ok(keys.into_iter().map(|(key, ())| key).collect())
}
