//! SIGKILL of the primary of a three-node cluster under a writer: another node becomes
//! primary within the lease TTL plus a few seconds, the third follows it, writes go on
//! there, and the killed node, restarted with the same command line, rejoins as a replica
//! of the new primary with the same contents.

use crate::client::assert_held_everywhere;
use crate::common::{wait_until, PATIENCE};
use crate::support::{serial, Cluster};
use crate::writer::{Plan, Writers};
use std::time::Duration;

#[test]
fn sigkill_of_the_primary_under_writes_elects_another_and_the_killed_node_rejoins() {
    let _serial = serial();
    let mut cluster = Cluster::start("sigkill", 3, &[]);
    let old = cluster.wait_settled(PATIENCE);
    let old_epoch = cluster.nodes[old].info().expect("INFO").epoch();
    let plan = Plan {
        threads: 1,
        max_writes: 3_000,
        max_time: Duration::from_secs(30),
        pace: Duration::from_millis(5),
    };
    let writers = Writers::start(&cluster.ports(), "a", plan);
    let writing = wait_until(PATIENCE, || writers.count() >= 100);
    assert!(
        writing,
        "the writer never got going:\n{}",
        cluster.describe()
    );

    cluster.kill(old);
    let others: Vec<usize> = (0..3).filter(|&i| i != old).collect();
    let (new, took) = cluster.wait_master_among(&others, PATIENCE);
    eprintln!(
        "sigkill: {} primary {took:?} after the SIGKILL",
        cluster.nodes[new].name
    );
    let third = others.iter().copied().find(|&i| i != new).expect("third");
    cluster.wait_follows(third, new, PATIENCE);
    let new_epoch = cluster.nodes[new].info().expect("INFO").epoch();
    assert!(
        new_epoch > old_epoch,
        "kv_cluster_epoch {old_epoch} before the election, {new_epoch} after"
    );
    let new_port = cluster.nodes[new].resp_port();
    let written = wait_until(PATIENCE, || writers.count_by(new_port) >= 50);
    assert!(
        written,
        "the new primary acknowledged {} writes:\n{}",
        writers.count_by(new_port),
        cluster.describe()
    );

    cluster.restart(old);
    cluster.wait_follows(old, new, PATIENCE);
    let acks = writers.stop();
    assert_eq!(
        cluster.wait_settled(PATIENCE),
        new,
        "{}",
        cluster.describe()
    );
    let digest = cluster.wait_converged();

    // Writes the killed primary acknowledged may be lost (replication is asynchronous);
    // those of the new primary may not.
    let after: Vec<(String, String)> = acks
        .iter()
        .filter(|a| a.port == new_port)
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect();
    assert_held_everywhere(
        &cluster.nodes,
        &after,
        "writes the new primary acknowledged",
    );
    eprintln!(
        "sigkill: {} acknowledged, {} by the new primary; digest {digest}",
        acks.len(),
        after.len()
    );
}
