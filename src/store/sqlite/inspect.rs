//! Read-only checks made before a database file is opened for writing, so that a file kv
//! must not use (a text file, another application's SQLite database, a kv database of a
//! newer schema or of the other role) is refused with a clear reason and left byte for
//! byte unchanged: nothing here writes, not even the switch to WAL.

use crate::error::{Error, Result};
use crate::store::Role;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::io::Read;
use std::path::Path;

/// The schema version this build creates and understands (`PRAGMA user_version`).
pub const LATEST_SCHEMA_VERSION: i64 = 3;

/// The 16-byte header every SQLite 3 database file starts with.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// The tables a kv database has.
const KV_TABLES: [&str; 3] = ["kv", "log", "meta"];

/// Checks, without writing anything, that `path` is absent, empty, an empty SQLite
/// database, or a kv database of a known schema version and of `role` (with `demote`, a
/// replica also accepts a primary's file: it will follow an upstream from now on).
pub fn inspect(path: &Path, role: Role, demote: bool) -> Result<()> {
    let refuse = |reason: String| Error::Database {
        path: path.to_path_buf(),
        reason,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("cannot read: {e}"))),
    };
    if meta.is_dir() {
        return Err(refuse("is a directory, not a database file".into()));
    }
    if has_hot_journal(path) {
        // Opening it for writing would roll that transaction back inside a file that may
        // not be ours; reading it `immutable` would not even see it.
        return Err(refuse(
            "has an unfinished transaction (a -journal file beside it); \
             let its own application or sqlite3 recover it first"
                .into(),
        ));
    }
    if meta.len() == 0 {
        return Ok(());
    }
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    std::fs::File::open(path)
        .and_then(|f| f.take(SQLITE_HEADER.len() as u64).read_to_end(&mut header))
        .map_err(|e| refuse(format!("cannot read: {e}")))?;
    if header != SQLITE_HEADER {
        return Err(refuse(
            "not a kv database (not a SQLite file at all); refusing to touch it".into(),
        ));
    }
    let conn = open_untouched(path).map_err(|e| refuse(format!("cannot open: {e}")))?;
    check_schema(&conn, role, demote).map_err(refuse)
}

/// `path` plus `suffix`, for SQLite's side files.
pub(super) fn side_file(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut side = path.as_os_str().to_owned();
    side.push(suffix);
    side.into()
}

/// Whether a non-empty rollback journal sits beside `path`. kv databases use WAL and
/// never have one.
fn has_hot_journal(path: &Path) -> bool {
    std::fs::metadata(side_file(path, "-journal")).is_ok_and(|m| m.len() > 0)
}

/// Opens `path` read-only without creating anything beside it. Without a `-wal` file the
/// database file alone is the whole truth, so it is opened `immutable` (no locks, no
/// `-shm`); with one (a running or crashed node), a plain read-only open reads it too.
fn open_untouched(path: &Path) -> rusqlite::Result<Connection> {
    if side_file(path, "-wal").exists() {
        return Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY);
    }
    let uri = format!("file:{}?immutable=1", uri_path(path));
    Connection::open_with_flags(
        uri,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI,
    )
}

/// Percent-encodes a path for a `file:` URI (RFC 3986 unreserved characters and `/` stay).
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The reason `conn` is not a usable kv database for `role`, if it is not.
fn check_schema(conn: &Connection, role: Role, demote: bool) -> Result<(), String> {
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(|e| format!("not a readable SQLite database: {e}"))?;
    let tables = table_names(conn).map_err(|e| format!("not a readable SQLite database: {e}"))?;
    if version == 0 && tables.is_empty() {
        return Ok(()); // An empty SQLite file: kv may initialise it.
    }
    let is_kv = version > 0 && KV_TABLES.iter().all(|t| tables.iter().any(|n| n == t));
    if !is_kv {
        let holds = match tables.is_empty() {
            true => format!("no tables, but another application's schema version {version}"),
            false => format!("tables: {}", tables.join(", ")),
        };
        return Err(format!(
            "not a kv database (it holds {holds}); refusing to touch it"
        ));
    }
    if version > LATEST_SCHEMA_VERSION {
        return Err(format!(
            "kv schema version {version} is newer than this kv supports \
             ({LATEST_SCHEMA_VERSION}); use a newer kv"
        ));
    }
    let stored_role: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE name = 'role'", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|e| format!("unreadable meta table: {e}"))?;
    match (stored_role.as_deref(), role) {
        (Some("replica"), Role::Primary) => Err(
            "is a replica database; to make it a primary, promote it: start it with \
             `kv replica --db FILE`, then PROMOTE in its shell or REPLICAOF NO ONE on its \
             client port"
                .into(),
        ),
        (Some("primary"), Role::Replica) if !demote => Err(
            "is a primary database; to make it a replica, give the upstream to follow \
             (`kv replica --db FILE --join HOST:PORT`): it then demotes, and any write it \
             holds that the upstream lacks is kept in its `diverged` table"
                .into(),
        ),
        (Some(stored), _) if stored != "primary" && stored != "replica" => {
            Err(format!("has an unknown role '{stored}' in its meta table"))
        }
        _ => Ok(()),
    }
}

fn table_names(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")?;
    let names = stmt.query_map([], |row| row.get(0))?;
    names.collect()
}
