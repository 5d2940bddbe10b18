//! The book's primary/replica session, driven through pipes against the real binary, for
//! every pairing of backends: SQLite and in-memory primaries, SQLite and in-memory replicas.

mod common;

use common::{kv_rows, wait_until, KvProcess, PATIENCE};
use tempfile::TempDir;

/// `--db PATH` arguments for a node, or none for the in-memory store.
fn db_args(dir: &TempDir, name: Option<&str>) -> Vec<String> {
    match name {
        Some(name) => vec!["--db".into(), dir.path().join(name).display().to_string()],
        None => Vec::new(),
    }
}

fn start(role: &str, db: &[String]) -> KvProcess {
    let mut args = vec![role, "--listen", "127.0.0.1:0"];
    args.extend(db.iter().map(String::as_str));
    KvProcess::start(&args)
}

fn book_session(primary_db: Option<&str>, replica_db: Option<&str>) {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = start("primary", &db_args(&dir, primary_db));
    assert_eq!(primary.command("PUT a 1"), "OK a = 1");
    assert_eq!(primary.command("PUT b 2"), "OK b = 2");
    assert_eq!(primary.command("GET a"), "a -> 1");
    assert_eq!(primary.command("GET zz"), "zz -> Not found");

    let mut replica = start("replica", &db_args(&dir, replica_db));
    assert_eq!(replica.command("GET a"), "a -> Not found");
    assert_eq!(
        replica.command(&format!("JOIN {}", primary.addr())),
        "Snapshot received"
    );
    assert_eq!(replica.command("GET a"), "a -> 1");
    assert_eq!(replica.command("GET b"), "b -> 2");

    assert_eq!(primary.command("PUT c 3"), "OK c = 3");
    let live = wait_until(PATIENCE, || replica.command("GET c") == "c -> 3");
    assert!(live, "the live write never reached the replica");
    assert!(replica.command("PUT d 4").starts_with("ERR "));

    if let Some(name) = replica_db {
        let expected: Vec<(String, String)> = [("a", "1"), ("b", "2"), ("c", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(kv_rows(&dir.path().join(name)), expected);
    }
    replica.send("EXIT");
    assert_eq!(
        replica.wait_exit(),
        Some(0),
        "EXIT ends the replica successfully"
    );
}

#[test]
fn sqlite_primary_to_sqlite_replica() {
    book_session(Some("primary.db"), Some("r1.db"));
}

#[test]
fn memory_primary_to_memory_replica() {
    book_session(None, None);
}

#[test]
fn memory_replica_joins_sqlite_primary() {
    book_session(Some("primary.db"), None);
}

#[test]
fn sqlite_replica_joins_memory_primary() {
    book_session(None, Some("r1.db"));
}

#[test]
fn bare_join_flag_syncs_at_start_up() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = start("primary", &db_args(&dir, Some("p.db")));
    assert_eq!(
        primary.command("PUT greeting hello world"),
        "OK greeting = hello world"
    );
    let join = primary.addr();
    let mut replica = KvProcess::synced_replica(&dir.path().join("r1.db"), &join, &[]);
    assert_eq!(replica.command("GET greeting"), "greeting -> hello world");
    let status = replica.command_lines("STATUS");
    assert!(status.contains(&format!("primary: {join}")), "{status:?}");
    assert!(
        status.contains(&"link: streaming".to_string()),
        "{status:?}"
    );
    let primary_status = primary.command_lines("STATUS");
    assert!(
        primary_status.contains(&"replicas: 1".to_string()),
        "{primary_status:?}"
    );
}
