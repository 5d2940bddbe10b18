//! A file's role follows promotion: a promoted replica's file records role primary, its
//! new history and its fork, and `kv primary --db` on it starts with the data, the same
//! history, the fork in `INFO replication`, and the seqs continuing. `PROMOTE` on a
//! primary is an `ERR`. A plain replica's file is still refused as a primary, with one
//! line on stderr that points to promotion, and is left unchanged.

use crate::common::run_with_input;
use crate::support::{
    assert_info_forked, assert_promoted, fork_meta, history, promote_in_shell, put_many,
    status_field, wait_seq, Cluster,
};

#[test]
fn a_promoted_file_restarts_as_a_primary_with_its_new_history() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    put_many(&mut p, "k", "v", 0..10);
    wait_seq(&mut r1, 10);
    let old = history(&cluster.db("p.db"));
    p.kill();

    promote_in_shell(&mut r1);
    let again = r1.command("PROMOTE");
    assert!(again.starts_with("ERR"), "PROMOTE on a primary: {again}");
    assert_eq!(r1.command("PUT after 1"), "OK after = 1");
    let new = assert_promoted(&cluster.db("r1.db"), &old, 10);
    assert_eq!(status_field(&mut r1, "history"), Some(new.clone()));
    r1.send("EXIT");
    assert_eq!(r1.wait_exit(), Some(0), "{}", r1.stderr_text());
    drop(r1);
    assert_eq!(assert_promoted(&cluster.db("r1.db"), &old, 10), new);

    let mut restarted = cluster.primary("r1.db", "127.0.0.1:0");
    assert_eq!(restarted.command("GET k007"), "k007 -> v7");
    assert_eq!(restarted.command("GET after"), "after -> 1");
    assert_eq!(
        status_field(&mut restarted, "role").as_deref(),
        Some("primary")
    );
    assert_eq!(status_field(&mut restarted, "history"), Some(new.clone()));
    assert_eq!(
        status_field(&mut restarted, "head_seq").as_deref(),
        Some("11")
    );
    assert_info_forked(&restarted, &new, &old, "11");
    assert_eq!(restarted.command("PUT later 2"), "OK later = 2");
    assert_eq!(
        status_field(&mut restarted, "head_seq").as_deref(),
        Some("12")
    );
}

#[test]
fn a_replica_file_is_refused_as_a_primary_with_a_hint_to_promote() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r = cluster.replica("r.db", &p.addr(), "Snapshot received");
    put_many(&mut p, "k", "v", 0..3);
    wait_seq(&mut r, 3);
    r.send("EXIT");
    assert_eq!(r.wait_exit(), Some(0), "{}", r.stderr_text());
    drop(r);
    let db = cluster.db("r.db");
    let before = std::fs::read(&db).expect("read r.db");

    let db_arg = db.display().to_string();
    let (status, _, stderr) = run_with_input(
        &["primary", "--db", &db_arg, "--listen", "127.0.0.1:0"],
        b"",
    );
    assert_ne!(
        status,
        Some(0),
        "a replica's file started as a primary: {stderr}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    assert!(
        lines[0].to_lowercase().contains("promote"),
        "the refusal should say how to promote: {stderr:?}"
    );
    assert_eq!(
        std::fs::read(&db).expect("read r.db"),
        before,
        "r.db changed"
    );
    let meta = fork_meta(&db);
    assert_eq!(meta.role.as_deref(), Some("replica"), "{meta:?}");
    assert_eq!(meta.prev_history_id, None, "{meta:?}");
}
