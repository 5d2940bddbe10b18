//! The SQL of histories: reading a store's lineage (`meta.history_id`, `prev_history_id`,
//! `fork_seq`), the log's running checksum at a seq, the role check of a primary write,
//! promotion, adopting an upstream's lineage, and saving diverged log entries.

use super::rows::{
    delete_meta, get_meta, head, log_entry, read_log_row, set_meta, sql_seq, SqlKey, SqlValue,
};
use crate::error::{Error, Result};
use crate::store::history::history_at;
use crate::store::{new_history_id, DivergedEntry, Fork, Lineage, Position, Role, SnapshotTarget};
use rusqlite::{params, Connection, OptionalExtension};

/// The store's history and fork, read on `conn` (inside the caller's transaction).
pub(super) fn read_lineage(conn: &Connection) -> Result<Lineage> {
    let fork = match (
        get_meta(conn, "prev_history_id")?,
        get_meta(conn, "fork_seq")?,
    ) {
        (Some(prev_history_id), Some(_)) => Some(Fork {
            prev_history_id,
            seq: meta_number(conn, "fork_seq")?,
            epoch: meta_number(conn, "fork_epoch")?,
        }),
        _ => None,
    };
    let epoch = meta_number(conn, "epoch")?;
    Ok(Lineage {
        history_id: get_meta(conn, "history_id")?,
        fork,
        epoch,
    })
}

/// A number kept in `meta` (0 when absent).
fn meta_number(conn: &Connection, name: &str) -> Result<u64> {
    match get_meta(conn, name)? {
        Some(text) => text
            .parse()
            .map_err(|_| Error::Corrupt(format!("meta.{name} is not a number: {text:?}"))),
        None => Ok(0),
    }
}

/// Writes `history_id`, its fork (or clears the fork) and its epoch into `meta`.
fn write_lineage(
    conn: &Connection,
    history_id: &str,
    fork: Option<&Fork>,
    epoch: u64,
) -> Result<()> {
    set_meta(conn, "history_id", history_id)?;
    match epoch {
        0 => delete_meta(conn, "epoch")?,
        epoch => set_meta(conn, "epoch", &epoch.to_string())?,
    }
    match fork {
        Some(fork) => {
            set_meta(conn, "prev_history_id", &fork.prev_history_id)?;
            set_meta(conn, "fork_seq", &fork.seq.to_string())?;
            set_meta(conn, "fork_epoch", &fork.epoch.to_string())?;
        }
        None => {
            delete_meta(conn, "prev_history_id")?;
            delete_meta(conn, "fork_seq")?;
            delete_meta(conn, "fork_epoch")?;
        }
    }
    Ok(())
}

/// The log's checksum after `seq`: its row's, or, for the seq the log continues from (a
/// snapshot's, or the last trimmed row's: `meta.base_seq`), the one recorded with it.
/// `Some(0)` at seq 0.
pub(super) fn checksum_at(conn: &Connection, seq: u64) -> Result<Option<u64>> {
    if seq == 0 {
        return Ok(Some(0));
    }
    let row: Option<Option<i64>> = conn
        .prepare_cached("SELECT checksum FROM log WHERE seq = ?1")?
        .query_row([sql_seq(seq)?], |row| row.get(0))
        .optional()?;
    match row {
        Some(checksum) => Ok(checksum.map(|c| c as u64)),
        None if get_meta(conn, "base_seq")?.as_deref() == Some(&seq.to_string()) => {
            Ok(get_meta(conn, "base_checksum")?.and_then(|c| c.parse().ok()))
        }
        None => Ok(None),
    }
}

/// Records that the log continues from `seq`, whose checksum is `checksum`.
pub(super) fn set_log_base(conn: &Connection, seq: u64, checksum: Option<u64>) -> Result<()> {
    set_meta(conn, "base_seq", &seq.to_string())?;
    match checksum {
        Some(checksum) => set_meta(conn, "base_checksum", &checksum.to_string()),
        None => delete_meta(conn, "base_checksum"),
    }
}

/// Refuses a primary write on a store that is no longer a primary (demoted while the write
/// waited): checked inside the write's transaction, so no write lands after a demotion.
pub(super) fn require_primary(conn: &Connection) -> Result<()> {
    match get_meta(conn, "role")?.as_deref() {
        Some("primary") => Ok(()),
        _ => Err(Error::ReadOnly(
            "this node is now a replica; write on its primary".into(),
        )),
    }
}

/// The stored role.
pub(super) fn read_role(conn: &Connection) -> Result<Role> {
    match get_meta(conn, "role")?.as_deref() {
        Some("primary") => Ok(Role::Primary),
        Some("replica") => Ok(Role::Replica),
        other => Err(Error::Corrupt(format!("meta.role is {other:?}"))),
    }
}

/// Promotion, inside the caller's transaction: a new history forking from the current one
/// at its head, in `epoch` (or the current one's), and the primary role. Returns the new
/// position.
pub(super) fn promote(conn: &Connection, epoch: Option<u64>) -> Result<Position> {
    let old = read_lineage(conn)?;
    let epoch = epoch.unwrap_or(old.epoch);
    let head = head(conn)?;
    let fork = old.history_id.map(|prev_history_id| Fork {
        prev_history_id,
        seq: head,
        epoch: old.epoch,
    });
    let history_id = new_history_id();
    write_lineage(conn, &history_id, fork.as_ref(), epoch)?;
    set_meta(conn, "role", Role::Primary.as_str())?;
    Ok(Position {
        history_id: Some(history_id),
        head,
        oldest_log: None,
        fork,
        checksum: checksum_at(conn, head)?,
        epoch,
    })
}

/// A replica adopting its upstream's lineage (a partial resync across a fork).
pub(super) fn adopt(conn: &Connection, lineage: &Lineage) -> Result<()> {
    let Some(history_id) = &lineage.history_id else {
        return Err(Error::Invalid(
            "cannot adopt a history without an id".into(),
        ));
    };
    write_lineage(conn, history_id, lineage.fork.as_ref(), lineage.epoch)
}

/// The lineage of an installed snapshot, and its checksum as the log's base.
pub(super) fn install_lineage(conn: &Connection, target: &SnapshotTarget) -> Result<()> {
    write_lineage(conn, &target.history_id, target.fork.as_ref(), target.epoch)?;
    set_log_base(conn, target.seq, target.checksum)
}

/// Copies the log entries after `after` into `diverged`, each labelled with the history
/// it belonged to (the previous one up to the fork).
pub(super) fn save_diverged(conn: &Connection, after: u64) -> Result<()> {
    let lineage = read_lineage(conn)?;
    let rows = {
        let mut stmt = conn.prepare_cached(
            "SELECT seq, op, key, value, expires_at FROM log WHERE seq > ?1 ORDER BY seq",
        )?;
        let rows = stmt.query_map([sql_seq(after)?], read_log_row)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    let mut insert = conn.prepare_cached(
        "INSERT INTO diverged (history_id, seq, op, key, value, expires_at, saved_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, datetime('now'))",
    )?;
    for (seq, op, key, value, expires_at) in rows {
        let history = history_at(&lineage, seq.max(0) as u64);
        let (key, value) = (SqlKey(&key), value.as_deref().map(SqlValue));
        insert.execute(params![history, seq, op, key, value, expires_at])?;
    }
    Ok(())
}

/// The entries in `diverged`, in the order they were saved.
pub(super) fn read_diverged(conn: &Connection) -> Result<Vec<DivergedEntry>> {
    // The log row's columns first, so `read_log_row` reads them as it reads `log`.
    let mut stmt = conn.prepare_cached(
        "SELECT seq, op, key, value, expires_at, history_id FROM diverged ORDER BY rowid",
    )?;
    let rows = stmt.query_map([], |row| Ok((read_log_row(row)?, row.get::<_, String>(5)?)))?;
    rows.map(|row| {
        let (raw, history_id) = row?;
        Ok(DivergedEntry {
            history_id,
            entry: log_entry(raw)?,
        })
    })
    .collect()
}
