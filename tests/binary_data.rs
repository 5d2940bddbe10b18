//! Keys and values that are not UTF-8, end to end with real processes: stored as the design
//! says (a value as TEXT when it is UTF-8 and as a BLOB otherwise, a key as TEXT holding
//! its bytes), replicated by snapshot and by the live stream byte for byte, and printed by
//! the shell with `\xNN` escapes.

mod common;

use common::{wait_until, KvProcess};
use redis::Connection;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(15);

fn connect(node: &KvProcess) -> Connection {
    redis::Client::open(node.redis_url())
        .and_then(|client| client.get_connection())
        .expect("connect to the client port")
}

fn set(con: &mut Connection, key: &[u8], value: &[u8]) {
    let () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(con)
        .expect("SET");
}

fn get(con: &mut Connection, key: &[u8]) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

/// Every row of `kv` as SQLite holds it: the key's and value's bytes in hex and their
/// storage classes.
fn stored_rows(db: &Path) -> Vec<(String, String, String, String)> {
    let conn = rusqlite::Connection::open(db).expect("open");
    let mut stmt = conn
        .prepare("SELECT hex(key), typeof(key), hex(value), typeof(value) FROM kv ORDER BY key")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query");
    rows.map(|row| row.expect("row")).collect()
}

#[test]
fn binary_keys_and_values_are_stored_replicated_and_shown() {
    let dir = TempDir::new().expect("tempdir");
    let (primary_db, replica_db) = (dir.path().join("p.db"), dir.path().join("r.db"));
    let mut primary = KvProcess::primary_with_clients(&primary_db, &[]);
    let mut on_primary = connect(&primary);
    set(&mut on_primary, b"k\xff", b"\x00\xfe");
    set(&mut on_primary, b"text", "h\u{e9}llo".as_bytes());
    set(&mut on_primary, b"bin-value", b"\xff");

    // The first rows arrive by snapshot, the next by the live stream.
    let replica =
        KvProcess::synced_replica(&replica_db, &primary.addr(), &["--resp", "127.0.0.1:0"]);
    set(&mut on_primary, b"live\x80", b"\x81\x00");
    let mut on_replica = connect(&replica);
    let arrived = wait_until(PATIENCE, || {
        get(&mut on_replica, b"live\x80").as_deref() == Some(&b"\x81\x00"[..])
    });
    assert!(arrived, "the live write never reached the replica");
    assert_eq!(
        get(&mut on_replica, b"k\xff").as_deref(),
        Some(&b"\x00\xfe"[..])
    );

    let rows = stored_rows(&primary_db);
    let expected = [
        ("62696E2D76616C7565", "text", "FF", "blob"),
        ("6BFF", "text", "00FE", "blob"),
        ("6C69766580", "text", "8100", "blob"),
        ("74657874", "text", "68C3A96C6C6F", "text"),
    ];
    let expected: Vec<(String, String, String, String)> = expected
        .iter()
        .map(|(k, kt, v, vt)| (k.to_string(), kt.to_string(), v.to_string(), vt.to_string()))
        .collect();
    assert_eq!(
        rows, expected,
        "keys are TEXT holding their bytes; values BLOB unless UTF-8"
    );
    let converged = wait_until(PATIENCE, || stored_rows(&replica_db) == rows);
    assert!(
        converged,
        "the replica holds {:?}",
        stored_rows(&replica_db)
    );

    // The shell prints text as text and other bytes as \xNN.
    assert_eq!(primary.command("GET bin-value"), "bin-value -> \\xff");
    assert_eq!(primary.command("GET text"), "text -> h\u{e9}llo");
    let keys = primary.command_lines("KEYS");
    assert_eq!(keys, ["bin-value", "k\\xff", "live\\x80", "text"]);
}
