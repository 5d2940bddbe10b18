//! The database file as a user sees it with `sqlite3`: the documented `kv`, `log` and
//! `meta` tables after writes and after a restart (data and seq survive; seq does not
//! restart), and files kv must refuse untouched (a text file, another application's
//! SQLite database, a kv database of a newer schema or of the other role).

mod common;

use common::{kv_rows, log_rows, log_seqs, meta, run_with_input};
use rusqlite::Connection;
use std::path::Path;
use tempfile::TempDir;

fn script(db: &Path, input: &str) -> Vec<String> {
    let db = db.display().to_string();
    let (code, stdout, stderr) = run_with_input(
        &["primary", "--db", &db, "--listen", "127.0.0.1:0"],
        input.as_bytes(),
    );
    assert_eq!(code, Some(0), "stderr: {stderr}");
    stdout.lines().map(String::from).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn tables_hold_data_log_and_meta_and_survive_a_restart() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("primary.db");
    let out = script(
        &db,
        "PUT a 1\nPUT b 2\nPUT a 10\nDEL b\nDEL missing\nPUT s hello world\n",
    );
    assert_eq!(
        out,
        [
            "OK a = 1",
            "OK b = 2",
            "OK a = 10",
            "OK b deleted",
            "missing -> Not found",
            "OK s = hello world"
        ]
    );
    assert_eq!(kv_rows(&db), pairs(&[("a", "10"), ("s", "hello world")]));
    let put = |seq, key: &str, value: &str| {
        (
            seq,
            "put".to_string(),
            key.to_string(),
            Some(value.to_string()),
        )
    };
    assert_eq!(
        log_rows(&db),
        vec![
            put(1, "a", "1"),
            put(2, "b", "2"),
            put(3, "a", "10"),
            (4, "del".into(), "b".into(), None),
            put(5, "s", "hello world"),
        ],
        "one log row per committed write; the delete of a missing key logs nothing"
    );
    assert_eq!(meta(&db, "role").as_deref(), Some("primary"));
    let history = meta(&db, "history_id").expect("history id");
    assert_eq!(history.len(), 32);
    assert!(history.chars().all(|c| c.is_ascii_hexdigit()), "{history}");
    let conn = Connection::open(&db).expect("open");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3);
    // Every log row carries the running checksum; nothing diverged on a lone primary.
    let checksums: Vec<Option<i64>> = conn
        .prepare("SELECT checksum FROM log ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(checksums.len(), 5);
    let distinct: std::collections::HashSet<_> = checksums.iter().flatten().collect();
    assert_eq!(distinct.len(), 5, "{checksums:?}");
    let diverged: i64 = conn
        .query_row("SELECT count(*) FROM diverged", [], |r| r.get(0))
        .expect("diverged table");
    assert_eq!(diverged, 0);
    drop(conn);

    // Restart: data is there, the history is the same, and seq continues.
    let out = script(&db, "GET a\nGET s\nPUT c 3\n");
    assert_eq!(out, ["a -> 10", "s -> hello world", "OK c = 3"]);
    assert_eq!(log_seqs(&db), vec![1, 2, 3, 4, 5, 6]);
    assert_eq!(meta(&db, "history_id"), Some(history));
}

/// Runs a node on `file` and checks it refuses with one line naming the file and `reason`,
/// leaving the file byte for byte as it was and creating no WAL, shared-memory or journal
/// file beside it.
fn assert_refused_untouched(role: &str, file: &Path, reason: &str) {
    let before = std::fs::read(file).expect("read before");
    let path = file.display().to_string();
    let side_files: Vec<(String, bool)> = ["-wal", "-shm", "-journal"]
        .iter()
        .map(|suffix| format!("{path}{suffix}"))
        .map(|side| {
            let existed = Path::new(&side).exists();
            (side, existed)
        })
        .collect();
    let (code, stdout, stderr) = run_with_input(
        &[role, "--db", &path, "--listen", "127.0.0.1:0"],
        b"PUT a 1\n",
    );
    assert_ne!(code, Some(0), "{path} must be refused; stdout: {stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&path), "{stderr} should name {path}");
    assert!(stderr.contains(reason), "{stderr} should say {reason:?}");
    assert!(!stdout.contains("ready"), "must not start: {stdout}");
    assert_eq!(
        std::fs::read(file).expect("read after"),
        before,
        "{path} was modified"
    );
    for (side, existed) in side_files {
        assert!(existed || !Path::new(&side).exists(), "{side} was created");
    }
}

#[test]
fn a_text_file_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "these are my notes, not a database\n").expect("write");
    assert_refused_untouched("primary", &file, "not a kv database");
    let tiny = dir.path().join("tiny");
    std::fs::write(&tiny, "x").expect("write");
    assert_refused_untouched("replica", &tiny, "not a kv database");
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("app.db");
    let conn = Connection::open(&file).expect("create");
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ada');")
        .expect("populate");
    drop(conn);
    assert_refused_untouched(
        "primary",
        &file,
        "not a kv database (it holds tables: users)",
    );
}

#[test]
fn an_empty_database_of_another_applications_schema_is_refused_saying_so() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("other.db");
    let conn = Connection::open(&file).expect("create");
    conn.execute_batch("PRAGMA user_version = 7;")
        .expect("set version");
    drop(conn);
    assert_refused_untouched(
        "primary",
        &file,
        "not a kv database (it holds no tables, but another application's schema version 7)",
    );
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("future.db");
    script(&file, "PUT a 1\n");
    let conn = Connection::open(&file).expect("open");
    conn.execute_batch("PRAGMA user_version = 99; PRAGMA journal_mode = DELETE;")
        .expect("bump version");
    drop(conn);
    assert_refused_untouched("primary", &file, "schema version 99 is newer");
}

#[test]
fn a_database_of_the_other_role_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("p.db");
    // Left in WAL mode, as a primary that stopped leaves it.
    script(&file, "PUT a 1\n");
    assert_refused_untouched("replica", &file, "is a primary database");
    assert_eq!(kv_rows(&file), pairs(&[("a", "1")]));
}

#[test]
fn an_empty_file_becomes_a_new_database() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("empty.db");
    std::fs::write(&file, b"").expect("touch");
    assert_eq!(script(&file, "PUT a 1\n"), ["OK a = 1"]);
    assert_eq!(kv_rows(&file), pairs(&[("a", "1")]));
}

#[test]
fn a_database_with_an_unfinished_transaction_is_refused_untouched() {
    let dir = TempDir::new().expect("tempdir");
    let file = dir.path().join("crashed.db");
    drop(Connection::open(&file).expect("create"));
    let journal = dir.path().join("crashed.db-journal");
    std::fs::write(&journal, vec![0xd9u8; 512]).expect("journal");
    let before = std::fs::read(&journal).expect("read journal");
    assert_refused_untouched("primary", &file, "unfinished transaction");
    assert_eq!(std::fs::read(&journal).expect("journal after"), before);
}

#[test]
fn a_version_1_database_is_migrated_and_its_new_rows_carry_checksums() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("v1.db");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch(include_str!("../migrations/0001_init.sql"))
        .expect("version 1 schema");
    conn.execute_batch(
        "PRAGMA user_version = 1;
         INSERT INTO meta VALUES ('role', 'primary'), ('history_id', '0123456789abcdef0123456789abcdef');
         INSERT INTO kv VALUES ('a', '1'), ('b', '2');
         INSERT INTO log VALUES (1, 'put', 'a', '1'), (2, 'put', 'b', '2');",
    )
    .expect("version 1 rows");
    drop(conn);

    let out = script(&db, "GET a\nPUT c 3\n");
    assert_eq!(out, ["a -> 1", "OK c = 3"]);
    let conn = Connection::open(&db).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let checksums: Vec<(i64, Option<i64>)> = conn
        .prepare("SELECT seq, checksum FROM log ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(
        checksums[..2],
        [(1, None), (2, None)],
        "old rows stay as they were"
    );
    assert!(checksums[2].1.is_some(), "{checksums:?}");
    assert_eq!(
        meta(&db, "history_id").as_deref(),
        Some("0123456789abcdef0123456789abcdef")
    );
}

#[test]
fn a_version_2_database_gains_expiry_and_select_star_stays_readable() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("v2.db");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch(include_str!("../migrations/0001_init.sql"))
        .expect("version 1 schema");
    conn.execute_batch(include_str!("../migrations/0002_history.sql"))
        .expect("version 2 schema");
    conn.execute_batch(
        "PRAGMA user_version = 2;
         INSERT INTO meta VALUES ('role', 'primary'), ('history_id', '0123456789abcdef0123456789abcdef');
         INSERT INTO kv VALUES ('a', '1'), ('b', '2');
         INSERT INTO log VALUES (1, 'put', 'a', '1', NULL), (2, 'put', 'b', '2', NULL);",
    )
    .expect("version 2 rows");
    drop(conn);

    let out = script(&db, "GET a\nEXPIRE b 100\nTTL a\n");
    assert_eq!(out[0], "a -> 1");
    assert_eq!(out[1], "OK b expires in 100 s");
    assert_eq!(out[2], "a -> no expiry");
    let conn = Connection::open(&db).expect("open");
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 3);
    let rows: Vec<(String, String, Option<i64>)> = conn
        .prepare("SELECT * FROM kv ORDER BY key")
        .expect("select *")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows[0], ("a".into(), "1".into(), None));
    let expires_at = rows[1].2.expect("b expires");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    assert!(
        (now + 90_000..=now + 100_000).contains(&expires_at),
        "{expires_at} is not about 100 s after {now}"
    );
    let logged: Option<i64> = conn
        .query_row("SELECT expires_at FROM log WHERE seq = 3", [], |r| r.get(0))
        .expect("the EXPIRE's log row");
    assert_eq!(logged, Some(expires_at), "the time is logged with the put");
}
