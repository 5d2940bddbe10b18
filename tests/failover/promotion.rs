//! Promotion through the client port, and everyone else following the new primary without
//! a snapshot: a primary with two replicas takes 300 writes from a writer thread and is
//! SIGKILLed once both replicas hold them; `REPLICAOF NO ONE` on r1 starts a new history
//! forked after seq 300 (meta and `INFO replication` say so); `REPLICAOF` on r2 and a
//! restart of the old primary as r1's replica both continue by partial resync; all three
//! end with the same digest. Then a planned switchover and back with both nodes up:
//! `REPLICAOF host port` demotes a live primary (it answers `-READONLY` from then on) and
//! `JOIN` in a primary's shell demotes it too, each continuing by partial resync.

use crate::common::{wait_until, PATIENCE};
use crate::support::{
    assert_converged, assert_info_forked, assert_promoted, history, info, info_field,
    promote_in_shell, raw_reply, redis, replicaof, replicaof_no_one, set_many, stderr_count,
    stderr_line_with, wait_seq, Cluster,
};

#[test]
fn promotion_under_writes_keeps_the_replicas_and_the_old_primary_on_partial_resync() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    let mut r2 = cluster.replica("r2.db", &p.addr(), "Snapshot received");

    // 300 writes from another thread while both replicas stream them.
    let mut con = redis(&p);
    let writer = std::thread::spawn(move || set_many(&mut con, "w", 0..300));
    writer.join().expect("writer thread");
    assert_eq!(info_field(&p, "master_repl_offset"), "300");
    for replica in [&r1, &r2] {
        let caught_up = wait_until(PATIENCE, || {
            info(replica).get("slave_repl_offset").map(String::as_str) == Some("300")
        });
        assert!(caught_up, "replica behind: {:?}", info(replica));
    }
    let old = history(&cluster.db("p.db"));
    assert_eq!(
        info_field(&r1, "master_replid"),
        old,
        "a replica shows its history"
    );
    p.kill();

    // r1 becomes the primary of a new history forked after seq 300.
    assert_eq!(replicaof_no_one(&r1), "OK");
    let new = assert_promoted(&cluster.db("r1.db"), &old, 300);
    assert_info_forked(&r1, &new, &old, "301");

    // r2 follows r1 and continues after seq 300: no snapshot.
    let r2_full_resyncs = stderr_count(&r2, "full resync");
    assert_eq!(replicaof(&r2, &r1), "OK");
    stderr_line_with(
        &r2,
        "partial resync: history",
        &["continues", "resuming after seq 300"],
    );
    let following = wait_until(PATIENCE, || {
        let fields = info(&r2);
        fields.get("role").map(String::as_str) == Some("slave")
            && fields.get("master_replid") == Some(&new)
    });
    assert!(following, "r2 does not follow r1: {:?}", info(&r2));

    // New writes on r1, then the old primary comes back as r1's replica: its head is
    // the fork, so it continues by partial resync too.
    set_many(&mut redis(&r1), "after", 0..20);
    assert_eq!(info_field(&r1, "master_repl_offset"), "320");
    let mut p = cluster.replica("p.db", &r1.addr(), "Resumed after seq 300 (partial resync)");
    stderr_line_with(&p, "partial resync: history", &["continues"]);
    assert_converged(&mut [&mut r1, &mut r2, &mut p], 320);
    assert_eq!(
        stderr_count(&r2, "full resync"),
        r2_full_resyncs,
        "r2 got a snapshot after the promotion: {}",
        r2.stderr_text()
    );
    assert_eq!(
        stderr_count(&p, "full resync"),
        0,
        "the old primary got a snapshot: {}",
        p.stderr_text()
    );
    assert_eq!(history(&cluster.db("p.db")), new);
    assert_eq!(history(&cluster.db("r2.db")), new);
    assert_eq!(info_field(&p, "role"), "slave");
}

#[test]
fn a_switchover_and_back_demotes_each_live_primary_without_a_snapshot() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    set_many(&mut redis(&p), "k", 0..30);
    wait_seq(&mut r1, 30);
    let first = history(&cluster.db("p.db"));

    // Switch over: r1 takes the writes, p follows it (SLAVEOF is REPLICAOF's old name).
    let reply: String = redis::cmd("SLAVEOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut redis(&r1))
        .expect("SLAVEOF NO ONE");
    assert_eq!(reply, "OK");
    let second = assert_promoted(&cluster.db("r1.db"), &first, 30);
    assert_eq!(replicaof_no_one(&r1), "OK", "already a primary: no change");
    assert_eq!(history(&cluster.db("r1.db")), second);
    // Counted from here: p logged r1's first sync (a snapshot) as its upstream.
    let p_full_resyncs = stderr_count(&p, "full resync");
    assert_eq!(replicaof(&p, &r1), "OK");
    let refused = raw_reply(&p, b"SET late x\r\n");
    assert!(
        refused.starts_with("-READONLY "),
        "a demoted primary must refuse writes: {refused:?}"
    );
    stderr_line_with(
        &p,
        "partial resync: history",
        &["continues", "resuming after seq 30"],
    );
    let following = wait_until(PATIENCE, || {
        let fields = info(&p);
        fields.get("role").map(String::as_str) == Some("slave")
            && fields.get("master_replid") == Some(&second)
    });
    assert!(following, "p does not follow r1: {:?}", info(&p));
    set_many(&mut redis(&r1), "s", 0..10);
    assert_converged(&mut [&mut r1, &mut p], 40);
    assert_eq!(p.command("GET late"), "late -> Not found");

    // And back, through the shells: PROMOTE on p, JOIN in r1's (primary) shell.
    promote_in_shell(&mut p);
    let third = assert_promoted(&cluster.db("p.db"), &second, 40);
    assert_ne!(third, first);
    let r1_full_resyncs = stderr_count(&r1, "full resync");
    assert_eq!(
        r1.command(&format!("JOIN {}", p.addr())),
        "Resumed after seq 40 (partial resync)"
    );
    assert_eq!(p.command("PUT back 1"), "OK back = 1");
    assert_converged(&mut [&mut r1, &mut p], 41);
    assert_eq!(r1.command("GET back"), "back -> 1");
    assert!(
        r1.command("PUT nope 1").starts_with("ERR"),
        "a demoted primary's shell refuses writes"
    );
    let fields = info(&r1);
    assert_eq!(
        fields.get("role").map(String::as_str),
        Some("slave"),
        "{fields:?}"
    );
    assert_eq!(fields.get("master_replid"), Some(&third), "{fields:?}");
    assert_eq!(
        stderr_count(&p, "full resync"),
        p_full_resyncs,
        "a snapshot between p and r1: {}",
        p.stderr_text()
    );
    assert_eq!(
        stderr_count(&r1, "full resync"),
        r1_full_resyncs,
        "r1 got a snapshot when it joined p: {}",
        r1.stderr_text()
    );
}
