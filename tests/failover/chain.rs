//! Replicas below and behind a promotion: a chained replica (P → r1 → r3) keeps following
//! r1 when r1 is promoted (shell `PROMOTE`): it reconnects by itself, continues by partial
//! resync across the fork and receives r1's new writes. A replica that stopped at seq 10,
//! before the fork at seq 40, restarts against the promoted node and resumes after its
//! own seq 10: only entries 11.. travel (its log stays contiguous from seq 1, so no
//! snapshot replaced it).

use crate::support::{
    assert_converged, assert_promoted, history, log_seqs_ro, promote_in_shell, put_many,
    status_field, stderr_count, stderr_line_with, wait_seq, Cluster,
};

#[test]
fn a_chained_replica_keeps_following_its_upstream_across_a_promotion() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    let mut r3 = cluster.replica("r3.db", &r1.addr(), "Snapshot received");
    put_many(&mut p, "k", "v", 0..40);
    wait_seq(&mut r3, 40);
    let old = history(&cluster.db("p.db"));
    let r3_full_resyncs = stderr_count(&r3, "full resync");
    p.kill();

    promote_in_shell(&mut r1);
    let new = assert_promoted(&cluster.db("r1.db"), &old, 40);
    stderr_line_with(
        &r3,
        "partial resync: history",
        &["continues", "resuming after seq 40"],
    );
    put_many(&mut r1, "after", "a", 0..10);
    assert_converged(&mut [&mut r1, &mut r3], 50);
    assert_eq!(r3.command("GET after009"), "after009 -> a9");
    assert_eq!(history(&cluster.db("r3.db")), new);
    assert_eq!(
        stderr_count(&r3, "full resync"),
        r3_full_resyncs,
        "r3 got a snapshot: {}",
        r3.stderr_text()
    );
    assert_eq!(status_field(&mut r3, "primary"), Some(r1.addr()));
    assert_eq!(status_field(&mut r3, "link").as_deref(), Some("streaming"));
}

#[test]
fn a_replica_that_stopped_before_the_fork_resumes_after_its_own_seq() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    let mut r4 = cluster.replica("r4.db", &p.addr(), "Snapshot received");
    put_many(&mut p, "k", "v", 0..10);
    wait_seq(&mut r4, 10);
    r4.kill();
    put_many(&mut p, "k", "v", 10..40);
    wait_seq(&mut r1, 40);
    let old = history(&cluster.db("p.db"));
    p.kill();

    promote_in_shell(&mut r1);
    assert_promoted(&cluster.db("r1.db"), &old, 40);
    put_many(&mut r1, "after", "a", 0..5);

    let mut r4 = cluster.replica("r4.db", &r1.addr(), "Resumed after seq 10 (partial resync)");
    stderr_line_with(
        &r4,
        "partial resync: history",
        &["continues", "resuming after seq 10"],
    );
    assert_converged(&mut [&mut r1, &mut r4], 45);
    assert_eq!(
        log_seqs_ro(&cluster.db("r4.db")),
        (1..=45).collect::<Vec<i64>>(),
        "r4's log: entries 1..=10 before, 11..=45 after the restart, no snapshot"
    );
}
