//! etcd unreachable from every node (every node's proxy blackholed): within the lease TTL
//! no node accepts writes, and none does while the outage lasts; every node reports
//! `kv_etcd:unreachable` but keeps serving reads. Once etcd is reachable again one node
//! becomes primary, the others follow it, and every write acknowledged before is there.

use crate::client::{assert_held_everywhere, get, set, Info, Reply};
use crate::common::{wait_until, PATIENCE};
use crate::sampler::{proxied_cluster, Sampler, FENCE_MARGIN};
use crate::support::{serial, write_all, LEASE_TTL, POLL};
use std::time::Instant;

#[test]
fn with_etcd_unreachable_from_every_node_none_accepts_writes_until_it_is_back() {
    let _serial = serial();
    let (mut cluster, proxies) = proxied_cluster("outage");
    let old = cluster.wait_settled(PATIENCE);
    let written = write_all(&cluster, old, "o", 50);
    cluster.wait_converged();

    proxies.iter().for_each(|p| p.blackhole(true));
    let cut = Instant::now();
    let mut sampler = Sampler::new(&cluster);
    let mut refused_from = None;
    while cut.elapsed() < LEASE_TTL * 3 {
        let replies = sampler.round();
        let at = cut.elapsed();
        let accepted = Sampler::accepted(&replies);
        assert!(
            accepted.is_empty() || (accepted == [old] && refused_from.is_none()),
            "{at:?} into the outage, {accepted:?} accepted a write (all refused from \
             {refused_from:?}): {replies:?}\n{}",
            cluster.describe()
        );
        if accepted.is_empty() {
            refused_from.get_or_insert(at);
        }
        std::thread::sleep(POLL);
    }
    let refused_from = refused_from.expect("refused");
    assert!(
        refused_from <= LEASE_TTL + FENCE_MARGIN,
        "the primary accepted writes until {refused_from:?} into the outage"
    );
    for node in &cluster.nodes {
        let port = node.resp_port();
        let mut info = None;
        let reported = wait_until(PATIENCE, || {
            info = Info::of(port);
            info.as_ref()
                .is_some_and(|i| i.get("kv_etcd") == Some("unreachable"))
        });
        assert!(reported, "{}: {info:?}", node.name);
        let value = get(&mut node.connect(), &written[0].0);
        assert_eq!(value, Some(written[0].1.clone()), "a read on {}", node.name);
    }

    proxies.iter().for_each(|p| p.blackhole(false));
    let restored = Instant::now();
    let primary = cluster.wait_settled(PATIENCE);
    eprintln!(
        "outage: writes refused from {refused_from:?}; {} primary {:?} after etcd came back",
        cluster.nodes[primary].name,
        restored.elapsed()
    );
    for node in &cluster.nodes {
        // Each member registers again (its lease expired meanwhile) within a tick or two.
        let mut info = None;
        let answered = wait_until(PATIENCE, || {
            info = node.info();
            info.as_ref()
                .is_some_and(|i| i.get("kv_etcd") == Some("ok"))
        });
        assert!(answered, "{}: {info:?}", node.name);
    }
    let mut con = cluster.nodes[primary].connect();
    assert_eq!(set(&mut con, "after", "1"), Reply::Ok);
    cluster.wait_converged();
    assert_held_everywhere(&cluster.nodes, &written, "writes made before the outage");
}
