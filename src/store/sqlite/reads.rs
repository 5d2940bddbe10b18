//! The point reads of a SQLite store: a key's live value (alone or a batch of them in one
//! transaction), its stored row or expiry whatever the time, and the expiry index's
//! questions (what has expired, how many keys expire).

use super::rows::{bytes_at, sql_now, sql_time, stored_time, SqlKey};
use crate::error::Result;
use crate::store::{values_up_to, Bytes, Stored};
use rusqlite::{params, Connection, OptionalExtension};

/// A point read of a live key (the time bound as ?2).
const GET_VALUE: &str =
    "SELECT value FROM kv WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)";

/// The value of `key` if it is live.
pub(super) fn get(conn: &Connection, key: &[u8]) -> Result<Option<Bytes>> {
    Ok(conn
        .prepare_cached(GET_VALUE)?
        .query_row(params![SqlKey(key), sql_now()], |row| bytes_at(row, 0))
        .optional()?)
}

/// The live values of `keys`, up to `max_bytes` (see `KvStore::get_many`), in one read
/// transaction: each statement on its own would take and drop the WAL read lock (two
/// fcntl calls) and check the WAL index again.
pub(super) fn get_many(
    conn: &Connection,
    keys: &[&[u8]],
    max_bytes: usize,
) -> Result<Vec<Option<Bytes>>> {
    let tx = conn.unchecked_transaction()?;
    let values = {
        let mut statement = tx.prepare_cached(GET_VALUE)?;
        let now = sql_now();
        values_up_to(keys, max_bytes, |key| {
            Ok(statement
                .query_row(params![SqlKey(key), now], |row| bytes_at(row, 0))
                .optional()?)
        })?
    };
    tx.commit()?;
    Ok(values)
}

/// `key`'s row, expired or not.
pub(super) fn get_stored(conn: &Connection, key: &[u8]) -> Result<Option<Stored>> {
    Ok(conn
        .prepare_cached("SELECT value, expires_at FROM kv WHERE key = ?1")?
        .query_row([SqlKey(key)], |row| {
            Ok(Stored {
                value: bytes_at(row, 0)?,
                expires_at: row.get::<_, Option<i64>>(1)?.map(stored_time),
            })
        })
        .optional()?)
}

/// Whether `key` has a row, and its expiry.
pub(super) fn row_expiry(conn: &Connection, key: &[u8]) -> Result<Option<Option<u64>>> {
    Ok(conn
        .prepare_cached("SELECT expires_at FROM kv WHERE key = ?1")?
        .query_row([SqlKey(key)], |row| {
            Ok(row.get::<_, Option<i64>>(0)?.map(stored_time))
        })
        .optional()?)
}

/// Up to `limit` keys expired at `now`, oldest first, through the partial index.
pub(super) fn expired_keys(conn: &Connection, now: u64, limit: usize) -> Result<Vec<Bytes>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = conn
        .prepare_cached("SELECT key FROM kv WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2")?;
    let keys = stmt.query_map(params![sql_time(Some(now)), limit], |row| bytes_at(row, 0))?;
    Ok(keys.collect::<rusqlite::Result<Vec<Bytes>>>()?)
}

/// How many live keys have an expiry.
pub(super) fn count_expiring(conn: &Connection) -> Result<u64> {
    let n: i64 = conn.query_row(
        "SELECT count(*) FROM kv WHERE expires_at > ?1",
        [sql_now()],
        |row| row.get(0),
    )?;
    Ok(n.max(0) as u64)
}
