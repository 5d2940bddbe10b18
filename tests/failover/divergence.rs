//! A divergent old primary: writes it acknowledged but never replicated (its replica was
//! partitioned off by the test proxy) are past the fork when the replica is promoted. When
//! it comes back as the new primary's replica it gets a full resync whose reason says so
//! (`full resync: diverged: 50 entries after seq 20 of history ...`, on stderr and in
//! `STATUS` `last_resync`), and the 50 entries are first kept in its own `diverged` table
//! (exact keys, values, seqs and old history id); none of them is on the new primary, and
//! both end with the same digest. Two variants: the new primary's head still below the old
//! primary's (no writes after the promotion), and past it (80 writes).

use crate::common::proxy::Proxy;
use crate::common::{wait_until, KvProcess, PATIENCE};
use crate::support::{
    assert_converged, assert_diverged, assert_promoted, count_keys, history, promote_in_shell,
    put_many, status_field, wait_seq, Cluster,
};

/// Writes replicated before the partition: seqs 1..=20, the fork.
const SHARED: usize = 20;
/// Writes the old primary acknowledges during the partition: seqs 21..=70.
const LOST: usize = 50;

/// Partitions `replica` off: no byte moves, then every open connection is closed, so
/// nothing written from now on can reach it (its reconnections hang in the blackhole).
fn cut_off(proxy: &Proxy, replica: &mut KvProcess) {
    proxy.blackhole(true);
    proxy.cut();
    let cut_off = wait_until(PATIENCE, || {
        replica
            .command_lines("STATUS")
            .iter()
            .any(|l| l.starts_with("link: ") && l != "link: streaming")
    });
    assert!(
        cut_off,
        "the replica never lost its link: {:?}",
        replica.command_lines("STATUS")
    );
}

/// Cuts `replica` off, has the old primary `p` acknowledge the [`LOST`] writes, and
/// kills it (SIGKILL).
fn acknowledge_unreplicated_writes(mut p: KvProcess, proxy: Proxy, replica: &mut KvProcess) {
    cut_off(&proxy, replica);
    put_many(&mut p, "lost", "gone", 0..LOST);
    p.kill();
}

fn divergent_old_primary_rejoins(writes_after_promotion: usize) {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let proxy = Proxy::new(&p.addr());
    let mut r1 = cluster.replica("r1.db", &proxy.addr, "Snapshot received");
    put_many(&mut p, "base", "b", 0..SHARED);
    wait_seq(&mut r1, SHARED as u64);
    let old = history(&cluster.db("p.db"));

    acknowledge_unreplicated_writes(p, proxy, &mut r1);

    promote_in_shell(&mut r1);
    let new = assert_promoted(&cluster.db("r1.db"), &old, SHARED as u64);
    put_many(&mut r1, "new", "n", 0..writes_after_promotion);
    let head = (SHARED + writes_after_promotion) as u64;
    wait_seq(&mut r1, head);

    // The old primary comes back as r1's replica, directly.
    let mut p = cluster.replica("p.db", &r1.addr(), "Snapshot received");
    let reason = format!("full resync: diverged: {LOST} entries after seq {SHARED} of history");
    let line = p.stderr_line(|l| l.contains("full resync: diverged:"));
    assert!(line.contains(&reason), "{line:?} lacks {reason:?}");
    let last_resync = status_field(&mut p, "last_resync").unwrap_or_default();
    assert!(
        last_resync.contains(&format!("diverged: {LOST} entries after seq {SHARED}")),
        "STATUS last_resync: {last_resync:?}"
    );
    assert_diverged(
        &cluster.db("p.db"),
        &old,
        SHARED as i64 + 1,
        ("lost", "gone"),
        0..LOST,
    );

    // None of the lost writes is anywhere now; both nodes hold r1's history.
    for i in [0, LOST / 2, LOST - 1] {
        let key = format!("lost{i:03}");
        assert_eq!(
            r1.command(&format!("GET {key}")),
            format!("{key} -> Not found")
        );
        assert_eq!(
            p.command(&format!("GET {key}")),
            format!("{key} -> Not found")
        );
    }
    assert_eq!(count_keys(&cluster.db("r1.db"), "lost"), 0);
    assert_converged(&mut [&mut r1, &mut p], head);
    assert_eq!(count_keys(&cluster.db("p.db"), "lost"), 0);
    assert_eq!(count_keys(&cluster.db("p.db"), "base"), SHARED as i64);
    assert_eq!(
        count_keys(&cluster.db("p.db"), "new"),
        writes_after_promotion as i64
    );
    assert_eq!(history(&cluster.db("p.db")), new);

    // It follows from then on.
    put_many(&mut r1, "later", "l", 0..5);
    assert_converged(&mut [&mut r1, &mut p], head + 5);
}

#[test]
fn a_divergent_old_primary_rejoining_a_new_primary_behind_it_keeps_its_lost_writes_aside() {
    divergent_old_primary_rejoins(0);
}

#[test]
fn a_divergent_old_primary_rejoining_a_new_primary_past_it_keeps_its_lost_writes_aside() {
    divergent_old_primary_rejoins(80);
}

/// Two failovers while the old primary is away: r1 is promoted (history B forks A), then
/// r2, r1's replica, is promoted (history C forks B). kv records one fork, so to the old
/// primary C is an unrelated history: it does not adopt it by itself, and when the
/// operator points it there, the full resync first keeps every entry its log holds
/// (its unreplicated writes among them) in `diverged`.
#[test]
fn an_old_primary_two_promotions_behind_keeps_its_whole_log_aside() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let proxy = Proxy::new(&p.addr());
    let mut r1 = cluster.replica("r1.db", &proxy.addr, "Snapshot received");
    let mut r2 = cluster.replica("r2.db", &r1.addr(), "Snapshot received");
    put_many(&mut p, "base", "b", 0..SHARED);
    wait_seq(&mut r2, SHARED as u64);
    let old = history(&cluster.db("p.db"));
    acknowledge_unreplicated_writes(p, proxy, &mut r1);

    promote_in_shell(&mut r1);
    put_many(&mut r1, "b_only", "x", 0..3);
    wait_seq(&mut r2, SHARED as u64 + 3);
    promote_in_shell(&mut r2);
    drop(r1);
    put_many(&mut r2, "c_only", "y", 0..4);

    let mut p = cluster.replica("p.db", &r2.addr(), "Snapshot received");
    let line = p.stderr_line(|l| l.contains("full resync: new history"));
    assert!(line.contains("full resync: new history"), "{line}");
    let kept = crate::support::diverged_rows(&cluster.db("p.db"));
    let lost: Vec<&str> = kept
        .iter()
        .filter(|row| row.key.starts_with("lost"))
        .map(|row| row.key.as_str())
        .collect();
    assert_eq!(lost.len(), LOST, "{kept:?}");
    assert!(kept.iter().all(|row| row.history_id == old), "{kept:?}");
    assert_eq!(count_keys(&cluster.db("p.db"), "lost"), 0);
    assert_converged(&mut [&mut r2, &mut p], SHARED as u64 + 7);
}
