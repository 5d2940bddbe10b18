//! Elections without faults: three empty nodes started at once elect exactly one primary,
//! which stays the only one, and agree on the cluster epoch; after SIGKILL of all three,
//! the same command lines elect a primary again with every acknowledged write intact.

use crate::client::{assert_held_everywhere, missing, set, Reply};
use crate::common::{wait_until, PATIENCE};
use crate::durability::SYNC;
use crate::support::{serial, write_all, Cluster, LEASE_TTL, POLL};
use std::time::{Duration, Instant};

#[test]
fn a_fresh_cluster_elects_exactly_one_primary_and_agrees_on_its_epoch() {
    let _serial = serial();
    let cluster = Cluster::start("fresh", 3, &[]);
    let primary = cluster.wait_settled(PATIENCE);
    let held = Instant::now();
    let mut samples = 0;
    while held.elapsed() < Duration::from_secs(3) {
        let masters = cluster.masters();
        assert!(
            masters.iter().all(|&i| i == primary),
            "{:?} after the election of {}, role:master on {masters:?}:\n{}",
            held.elapsed(),
            cluster.nodes[primary].name,
            cluster.describe()
        );
        samples += 1;
        std::thread::sleep(POLL);
    }
    assert_eq!(cluster.settled(), Some(primary), "{}", cluster.describe());

    let infos: Vec<_> = cluster
        .infos()
        .into_iter()
        .map(|i| i.expect("INFO"))
        .collect();
    let epochs: Vec<u64> = infos.iter().map(|i| i.epoch()).collect();
    assert!(
        epochs.iter().all(|&e| e == epochs[0] && e > 0),
        "kv_cluster_epoch of each node: {epochs:?}"
    );
    let ttl_ms = LEASE_TTL.as_millis() as u64;
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(info.get("kv_cluster"), Some("fresh"), "{info:?}");
        assert_eq!(info.get("kv_etcd"), Some("ok"), "{info:?}");
        let remaining: u64 = info.field("kv_lease_remaining_ms").parse().expect("ms");
        match i == primary {
            true => assert!(remaining > 0 && remaining <= ttl_ms, "{info:?}"),
            false => assert_eq!(remaining, 0, "{info:?}"),
        }
    }
    eprintln!(
        "fresh: one primary over {samples} samples; epoch {}",
        epochs[0]
    );
}

#[test]
fn after_sigkill_of_every_node_the_same_commands_elect_a_primary_with_the_data_intact() {
    let _serial = serial();
    let mut cluster = Cluster::start("restart", 3, &SYNC);
    let primary = cluster.wait_settled(PATIENCE);
    let written = write_all(&cluster, primary, "f", 200);

    for i in 0..3 {
        cluster.kill(i);
    }
    for i in 0..3 {
        cluster.restart(i);
    }
    let restarted = Instant::now();
    let primary = cluster.wait_settled(PATIENCE);
    eprintln!(
        "restart: {} primary {:?} after the restart",
        cluster.nodes[primary].name,
        restarted.elapsed()
    );
    let mut con = cluster.nodes[primary].connect();
    let lost = missing(&mut con, &written);
    assert!(lost.is_empty(), "lost on the new primary: {lost:?}");
    let accepted = wait_until(PATIENCE, || set(&mut con, "after", "1") == Reply::Ok);
    assert!(
        accepted,
        "no write accepted after the restart:\n{}",
        cluster.describe()
    );
    cluster.wait_converged();
    assert_held_everywhere(
        &cluster.nodes,
        &written,
        "writes acknowledged before the kill",
    );
}
