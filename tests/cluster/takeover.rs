//! Who may take over: a member whose history is older than the cluster's newest does not
//! become primary while a member of the newest history may still come back (it lacks
//! writes that were acknowledged; it waits three TTLs longer than an up-to-date member
//! would, even when it is the only one left), and the member of the newest history wins
//! once it is back; of two
//! survivors the more advanced wins, so a write acknowledged with `--sync-replicas 1` by
//! only one of them is kept; a primary that stops cleanly gives its lease back, so another
//! takes over without waiting for the lease to expire.

use crate::client::{assert_held_everywhere, missing, set, Reply};
use crate::common::{wait_until, PATIENCE};
use crate::durability::SYNC;
use crate::support::{serial, write_all, Cluster, LEASE_TTL, POLL};
use std::time::Instant;

#[test]
fn a_member_of_an_older_history_waits_for_one_of_the_newest_even_alone() {
    let _serial = serial();
    let mut cluster = Cluster::start("stale", 3, &[]);
    let first = cluster.wait_settled(PATIENCE);
    let (stale, heir) = match first {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    write_all(&cluster, first, "a", 20);
    cluster.wait_converged();
    cluster.kill(stale);
    write_all(&cluster, first, "b", 20);

    // `heir` takes over in a new epoch and acknowledges writes `stale` never saw.
    cluster.kill(first);
    cluster.wait_master_among(&[heir], PATIENCE);
    let newest = write_all(&cluster, heir, "c", 20);
    let epoch = cluster.nodes[heir].info().expect("INFO").epoch();
    cluster.kill(heir);

    // Alone and up to date, `stale` would campaign one TTL after its start plus a settling
    // time (under 3 s in all). Being of an older epoch, it waits three TTLs more (6 s, on
    // top of the settling time) from when it first sees the key vacant: watched for 2.5
    // TTLs from its restart, it must not take office.
    cluster.restart(stale);
    let restarted = Instant::now();
    let mut con = cluster.nodes[stale].connect();
    let stale_epoch = cluster.nodes[stale].info().expect("INFO").epoch();
    assert!(
        stale_epoch < epoch,
        "epoch {stale_epoch} is not older than {epoch}"
    );
    while restarted.elapsed() < LEASE_TTL * 5 / 2 {
        let info = cluster.nodes[stale]
            .info()
            .expect("INFO of the stale member");
        let reply = set(&mut con, "stale", "1");
        assert!(
            !info.is_master() && matches!(reply, Reply::ReadOnly(_)),
            "{:?} after its restart the member of epoch {stale_epoch} (the cluster's newest: \
             {epoch}) says {:?} and answers {reply:?}:\n{}",
            restarted.elapsed(),
            info.get("role"),
            cluster.describe()
        );
        std::thread::sleep(POLL);
    }

    // Once `heir` is back, it wins, `stale` follows it, and nothing acknowledged is gone.
    cluster.restart(heir);
    cluster.restart(first);
    assert_eq!(
        cluster.wait_settled(PATIENCE),
        heir,
        "{}",
        cluster.describe()
    );
    cluster.wait_converged();
    assert_held_everywhere(&cluster.nodes, &newest, "writes of the newest epoch");
}

/// Sends `signal` to node `i`.
fn signal(cluster: &Cluster, i: usize, signal: libc::c_int) {
    let pid = cluster.nodes[i].process().pid();
    // SAFETY: kill(2) on a child process this test started and still owns.
    let sent = unsafe { libc::kill(pid as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({pid}, {signal})");
}

#[test]
fn of_two_survivors_the_more_advanced_wins_with_every_acknowledged_write() {
    let _serial = serial();
    let mut cluster = Cluster::start("advanced", 3, &SYNC);
    let primary = cluster.wait_settled(PATIENCE);
    let (behind, ahead) = match primary {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    write_all(&cluster, primary, "a", 20);
    cluster.wait_converged();

    // While `behind` is stopped, 10 MiB of writes are acknowledged through `ahead`; the
    // primary's flow window (4 MiB in flight per replica) keeps most of them from even
    // waiting in `behind`'s socket. `behind` is stopped for well under the lease TTL.
    signal(&cluster, behind, libc::SIGSTOP);
    let mut con = cluster.nodes[primary].connect();
    let value = "x".repeat(64 * 1024);
    let acknowledged: Vec<(String, String)> = (0..160)
        .map(|i| (format!("big{i:03}"), value.clone()))
        .collect();
    for (key, value) in &acknowledged {
        let reply = set(&mut con, key, value);
        assert_eq!(reply, Reply::Ok, "SET {key}:\n{}", cluster.describe());
    }
    cluster.kill(primary);
    signal(&cluster, behind, libc::SIGCONT);

    let (winner, took) = cluster.wait_master_among(&[behind, ahead], PATIENCE);
    assert_eq!(
        winner,
        ahead,
        "the member that missed acknowledged writes won ({took:?} after the kill):\n{}",
        cluster.describe()
    );
    let lost = missing(&mut cluster.nodes[ahead].connect(), &acknowledged);
    assert!(lost.is_empty(), "{} keys lost", lost.len());
    cluster.wait_follows(behind, ahead, PATIENCE);
    cluster.restart(primary);
    assert_eq!(
        cluster.wait_settled(PATIENCE),
        ahead,
        "{}",
        cluster.describe()
    );
    cluster.wait_converged();
    for node in &cluster.nodes {
        let lost = missing(&mut node.connect(), &acknowledged);
        assert!(lost.is_empty(), "{} lacks {} keys", node.name, lost.len());
    }
}

#[test]
fn a_primary_that_exits_cleanly_is_replaced_without_waiting_for_its_lease() {
    let _serial = serial();
    let mut cluster = Cluster::start("clean-exit", 3, &[]);
    let old = cluster.wait_settled(PATIENCE);
    let status = cluster.exit(old);
    assert_eq!(status, Some(0), "EXIT:\n{}", cluster.describe());
    let stopped = Instant::now();
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let (new, took) = cluster.wait_master_among(&others, PATIENCE);
    eprintln!(
        "clean-exit: {} primary {took:?} after the old one exited",
        cluster.nodes[new].name
    );
    assert!(
        took < LEASE_TTL,
        "a new primary only {took:?} after a clean exit: the lease was not given back?\n{}",
        cluster.describe()
    );
    let mut con = cluster.nodes[new].connect();
    let accepted = wait_until(PATIENCE, || set(&mut con, "after", "1") == Reply::Ok);
    assert!(accepted, "{:?}:\n{}", stopped.elapsed(), cluster.describe());
}
