//! No acknowledged write lost across automatic failovers with `--sync-replicas 1`: 20
//! writers follow the primary while, every round, the primary is SIGKILLed at a random
//! moment, another takes over, and the killed node is restarted with the same command line
//! and follows it again; at the end every node holds every `+OK`'d write with its value,
//! and all three have the same digest.

use crate::client::missing;
use crate::common::soak::{rounds, seeded_rng, Summary};
use crate::common::{wait_until, PATIENCE};
use crate::support::{serial, Cluster};
use crate::writer::{Plan, Writers};
use rand::RngExt;
use std::time::Duration;

/// `--sync-replicas 1 --sync-timeout 5`.
pub const SYNC: [&str; 4] = ["--sync-replicas", "1", "--sync-timeout", "5"];

#[test]
fn with_sync_replicas_no_acknowledged_write_is_lost_across_automatic_failovers() {
    let _serial = serial();
    let (seed, mut rng) = seeded_rng("cluster_failover");
    let mut summary = Summary {
        rounds: rounds(3),
        ..Summary::default()
    };
    let mut cluster = Cluster::start("durability", 3, &SYNC);
    let mut primary = cluster.wait_settled(PATIENCE);
    let plan = Plan {
        threads: 20,
        max_writes: 5_000,
        max_time: Duration::from_secs(60 + 40 * summary.rounds as u64),
        pace: Duration::from_millis(10),
    };
    let writers = Writers::start(&cluster.ports(), "c", plan);
    for round in 0..summary.rounds {
        wait_for_writes(&cluster, &writers, primary, round);
        // The moment of the kill, not a wait for something to happen.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..600)));
        cluster.kill(primary);
        summary.kills += 1;
        let others: Vec<usize> = (0..3).filter(|&i| i != primary).collect();
        let (new, took) = cluster.wait_master_among(&others, PATIENCE);
        cluster.restart(primary);
        cluster.wait_follows(primary, new, PATIENCE);
        assert_eq!(
            cluster.wait_settled(PATIENCE),
            new,
            "{}",
            cluster.describe()
        );
        eprintln!(
            "round {round}: {} killed, {} primary after {took:?}, {} acknowledged so far",
            cluster.nodes[primary].name,
            cluster.nodes[new].name,
            writers.count()
        );
        primary = new;
    }
    wait_for_writes(&cluster, &writers, primary, summary.rounds);
    let acks = writers.stop();
    cluster.wait_converged();

    let expected: Vec<(String, String)> = acks
        .iter()
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect();
    summary.acknowledged = expected.len();
    for node in &cluster.nodes {
        let lost = missing(&mut node.connect(), &expected);
        for (key, value, held) in lost.iter().take(10) {
            eprintln!(
                "seed {seed}: {key} = {value} acknowledged, {} has {held:?}",
                node.name
            );
        }
        summary.lost = summary.lost.max(lost.len());
    }
    summary.report("cluster_failover");
    assert_eq!(
        summary.lost,
        0,
        "seed {seed}: acknowledged writes lost:\n{}",
        cluster.describe()
    );
}

/// Waits until the writers got 20 more writes acknowledged by `primary`.
fn wait_for_writes(cluster: &Cluster, writers: &Writers, primary: usize, round: usize) {
    let port = cluster.nodes[primary].resp_port();
    let before = writers.count_by(port);
    let writing = wait_until(PATIENCE, || writers.count_by(port) >= before + 20);
    assert!(
        writing,
        "round {round}: {} acknowledged {} writes:\n{}",
        cluster.nodes[primary].name,
        writers.count_by(port) - before,
        cluster.describe()
    );
}
