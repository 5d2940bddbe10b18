//! Unit tests of the SQLite store's internals.

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

/// An unsynced apply commits with `synchronous=NORMAL`; every other write still flushes.
#[test]
fn only_an_unsynced_apply_skips_the_flush() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("r.db"), Role::Replica).expect("open");
    let synchronous = |store: &SqliteStore| -> i64 {
        let conn = store.writer();
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("pragma")
    };
    let entry = |seq: u64| LogEntry {
        seq,
        op: Op::Put {
            key: format!("k{seq}").into_bytes(),
            value: "v".into(),
            expires_at: None,
        },
    };
    store.apply_unsynced(&[entry(1)], &Unfenced).expect("apply");
    assert_eq!(synchronous(&store), 1, "NORMAL for the unsynced apply");
    store.sync().expect("sync");
    store.apply(&[entry(2)]).expect("apply");
    assert_eq!(synchronous(&store), 2, "FULL again for every other write");
    assert_eq!(store.head_seq().expect("head"), 2);
}

#[test]
fn a_replaced_file_refuses_writes_and_is_read_through_the_writer() {
    let dir = tempfile::TempDir::new().expect("tempdir");
    let path = dir.path().join("p.db");
    let store = SqliteStore::open(&path, Role::Primary).expect("open");
    let put = |key: &str| Op::Put {
        key: key.into(),
        value: "1".into(),
        expires_at: None,
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
    let entry = LogEntry {
        seq: 2,
        op: put("r"),
    };
    assert!(store.apply(&[entry]).is_err(), "no write of any kind");
    assert_eq!(
        store
            .trim_log(1, 10)
            .expect("trimming nothing writes nothing"),
        0
    );
    assert_eq!(store.get(b"a").expect("get"), Some("1".into()));
    assert_eq!(store.get(b"x").expect("get"), None, "read the other file");
    assert_eq!(store.digest().expect("digest").seq, 1);
    assert!(store.snapshot().is_err(), "a snapshot of the other file");
    assert!(lock(&store.readers).is_empty(), "a reader opened the path");
}
