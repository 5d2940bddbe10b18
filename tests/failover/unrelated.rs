//! An unrelated history is never adopted silently: a replica whose primary is replaced by
//! a fresh one (a new, empty database on the same address) reconnects by itself and
//! refuses it. It keeps its data and keeps serving reads (same digest), `STATUS` shows
//! `link: stopped` and a `last_error` naming the unrelated history and `JOIN`, and it does
//! not try again, not even after a mistyped `JOIN` fails. An explicit `JOIN` then
//! replaces its contents with the new primary's.

use crate::common::{wait_until, KvProcess, PATIENCE};
use crate::support::{
    assert_converged, history, put_many, status_field, stderr_count, wait_seq, Cluster,
};
use std::time::Duration;

/// How long the refusing replica is watched for reconnection attempts: its backoff starts
/// at 100 ms, so a replica still reconnecting would try several times meanwhile.
const WATCH: Duration = Duration::from_secs(2);
const WATCH_SAMPLES: u32 = 20;

/// A replica that synced 10 writes of a primary, now killed: the cluster, the primary's
/// address, the replica, and its digest.
fn replica_of_a_killed_primary() -> (Cluster, String, KvProcess, String) {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let addr = p.addr();
    put_many(&mut p, "a", "x", 0..10);
    let mut r = cluster.replica("r.db", &addr, "Snapshot received");
    wait_seq(&mut r, 10);
    let digest = r.command("DIGEST");
    p.kill();
    (cluster, addr, r, digest)
}

#[test]
fn a_replica_refuses_an_unrelated_history_until_told_to_join_it() {
    let (cluster, addr, mut r, digest) = replica_of_a_killed_primary();
    let old = history(&cluster.db("r.db"));

    // A fresh primary, a new history, on the same address.
    let mut fresh = cluster.primary("fresh.db", &addr);
    put_many(&mut fresh, "b", "y", 0..5);
    let new = history(&cluster.db("fresh.db"));
    assert_ne!(new, old);

    let mut status = Vec::new();
    let stopped = wait_until(PATIENCE, || {
        status = r.command_lines("STATUS");
        status.iter().any(|l| l == "link: stopped")
    });
    assert!(
        stopped,
        "never stopped: {status:?}; stderr:\n{}",
        r.stderr_text()
    );
    let error = status
        .iter()
        .find_map(|l| l.strip_prefix("last_error: "))
        .unwrap_or_else(|| panic!("no last_error: {status:?}"));
    assert!(error.contains("unrelated history"), "{error}");
    assert!(
        error.contains("JOIN"),
        "the error should say how to accept it: {error}"
    );

    // Its data is untouched and still served.
    assert_eq!(r.command("GET a003"), "a003 -> x3");
    assert_eq!(r.command("GET b000"), "b000 -> Not found");
    assert_eq!(r.command("DIGEST"), digest);
    assert_eq!(history(&cluster.db("r.db")), old);

    // It does not reconnect: the fresh primary sees no new replica connection.
    let seen = wait_until(PATIENCE, || {
        stderr_count(&fresh, "replica connection from") >= 1
    });
    assert!(
        seen,
        "the refused connection never ended: {}",
        fresh.stderr_text()
    );
    let connections = stderr_count(&fresh, "replica connection from");
    // A mistyped JOIN fails and leaves it as it was: stopped, not following anything
    // (resuming the link it had would adopt the unrelated history after all).
    let typo = r.command("JOIN 127.0.0.1:1");
    assert!(typo.starts_with("ERR JOIN 127.0.0.1:1 failed"), "{typo}");
    assert!(!typo.contains("still following"), "{typo}");
    for _ in 0..WATCH_SAMPLES {
        // Pacing the samples of a window in which nothing may happen.
        std::thread::sleep(WATCH / WATCH_SAMPLES);
        assert_eq!(
            stderr_count(&fresh, "replica connection from"),
            connections,
            "the replica reconnected: {}",
            fresh.stderr_text()
        );
    }
    assert_eq!(r.command("DIGEST"), digest);
    assert_eq!(history(&cluster.db("r.db")), old);

    // An explicit JOIN accepts the new history.
    assert_eq!(r.command(&format!("JOIN {addr}")), "Snapshot received");
    assert_converged(&mut [&mut fresh, &mut r], 5);
    assert_eq!(r.command("GET a003"), "a003 -> Not found");
    assert_eq!(r.command("GET b004"), "b004 -> y4");
    assert_eq!(history(&cluster.db("r.db")), new);
    assert_eq!(status_field(&mut r, "link").as_deref(), Some("streaming"));
}

/// A failed `JOIN` puts the replica back on the upstream it followed; if that address
/// then answers with an unrelated history, the resumed link refuses it too: nobody asked
/// for that history.
#[test]
fn a_link_resumed_after_a_failed_join_refuses_an_unrelated_history() {
    let (cluster, addr, mut r, digest) = replica_of_a_killed_primary();

    let typo = r.command("JOIN 127.0.0.1:1");
    assert!(
        typo.ends_with(&format!("; still following {addr}")),
        "{typo}"
    );
    let mut fresh = cluster.primary("fresh.db", &addr);
    put_many(&mut fresh, "b", "y", 0..5);
    let mut status = Vec::new();
    let stopped = wait_until(PATIENCE, || {
        status = r.command_lines("STATUS");
        status.iter().any(|l| l == "link: stopped")
    });
    assert!(stopped, "{status:?}; stderr:\n{}", r.stderr_text());
    assert_eq!(r.command("DIGEST"), digest);
    assert_eq!(r.command("GET b000"), "b000 -> Not found");
}
