//! `FAILOVER` in a cluster: under a writer, the primary hands the key to the replica it
//! names once that replica caught up; the target becomes primary in a new epoch, the old
//! primary and the third node follow it, and no write either of them acknowledged is
//! lost (the old primary continues by partial resync, nothing diverged).

use crate::client::assert_held_everywhere;
use crate::common::{wait_until, PATIENCE};
use crate::support::{serial, Cluster};
use crate::writer::{Plan, Writers};
use std::time::Duration;

#[test]
fn failover_hands_the_key_to_the_named_replica_and_loses_no_write() {
    let _serial = serial();
    let mut cluster = Cluster::start("handoff", 3, &[]);
    let old = cluster.wait_settled(PATIENCE);
    let old_epoch = cluster.nodes[old].info().expect("INFO").epoch();
    let target = (old + 1) % 3;
    let plan = Plan {
        threads: 2,
        max_writes: 3_000,
        max_time: Duration::from_secs(30),
        pace: Duration::from_millis(5),
    };
    let writers = Writers::start(&cluster.ports(), "h", plan);
    let writing = wait_until(PATIENCE, || writers.count() >= 100);
    assert!(
        writing,
        "the writers never got going:\n{}",
        cluster.describe()
    );

    let target_repl = cluster.nodes[target].repl_port().to_string();
    let reply: redis::RedisResult<String> = redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(&target_repl)
        .arg("TIMEOUT")
        .arg(10_000)
        .query(&mut cluster.nodes[old].connect());
    assert_eq!(reply.as_deref(), Ok("OK"), "{}", cluster.describe());

    let (new, _) = cluster.wait_master_among(&[target], PATIENCE);
    let third = (0..3).find(|&i| i != old && i != target).expect("third");
    cluster.wait_follows(old, new, PATIENCE);
    cluster.wait_follows(third, new, PATIENCE);
    let new_epoch = cluster.nodes[new].info().expect("INFO").epoch();
    assert!(new_epoch > old_epoch, "epoch {old_epoch} then {new_epoch}");
    let new_port = cluster.nodes[new].resp_port();
    let written = wait_until(PATIENCE, || writers.count_by(new_port) >= 50);
    assert!(
        written,
        "no writes on the new primary:\n{}",
        cluster.describe()
    );

    let acks = writers.stop();
    cluster.wait_converged();
    let acknowledged: Vec<(String, String)> = acks
        .iter()
        .map(|a| (a.key.clone(), a.value.clone()))
        .collect();
    assert_held_everywhere(&cluster.nodes, &acknowledged, "acknowledged writes");
    let stderr = cluster.nodes[old].stderr_text();
    assert!(
        !stderr.contains("diverged"),
        "the old primary diverged:\n{stderr}"
    );
}
