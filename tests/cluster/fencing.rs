//! The primary cut off from etcd only (each node reaches etcd through its own proxy; the
//! primary's is blackholed, its links to the other nodes stay up): it refuses writes within
//! the lease TTL of the cut, another node takes over, and a `SET` sent to every node every
//! few tens of milliseconds is never accepted by two nodes in the same round, nor by the
//! old primary once it refused one or once the new one accepted one; nor do two nodes say
//! `role:master` in the same round. Once etcd is back the old primary rejoins as a replica
//! and converges.

use crate::client::{assert_held_everywhere, Reply};
use crate::common::PATIENCE;
use crate::sampler::{proxied_cluster, Sampler, FENCE_MARGIN};
use crate::support::{serial, LEASE_TTL, POLL};
use std::time::{Duration, Instant};

#[test]
fn a_primary_cut_off_from_etcd_refuses_writes_within_the_ttl_and_another_takes_over() {
    let _serial = serial();
    let (mut cluster, proxies) = proxied_cluster("fencing");
    let old = cluster.wait_settled(PATIENCE);
    let mut sampler = Sampler::new(&cluster);
    for _ in 0..10 {
        let replies = sampler.round();
        assert_eq!(
            Sampler::accepted(&replies),
            [old],
            "before the cut: {replies:?}\n{}",
            cluster.describe()
        );
        std::thread::sleep(POLL);
    }

    proxies[old].blackhole(true);
    let cut = Instant::now();
    let mut fenced: Option<Duration> = None;
    let mut taken_over: Option<(usize, Duration)> = None;
    let mut old_last_ok = Duration::ZERO;
    let mut accepted_by_new = Vec::new();
    let mut rounds = 0;
    while taken_over.is_none_or(|(_, at)| cut.elapsed() < at + LEASE_TTL)
        && cut.elapsed() < PATIENCE
    {
        let replies = sampler.round();
        let at = cut.elapsed();
        rounds += 1;
        let oks = Sampler::accepted(&replies);
        assert!(
            oks.len() <= 1 && Sampler::masters(&replies) <= 1,
            "{at:?} after the cut, nodes {oks:?} all accepted a write, or several said \
             role:master: {replies:?}\n{}",
            cluster.describe()
        );
        match replies[old].reply {
            Reply::Ok => {
                assert!(
                    fenced.is_none() && taken_over.is_none(),
                    "the old primary accepted a write {at:?} after the cut, after it \
                     refused one ({fenced:?}) or another took over ({taken_over:?})"
                );
                old_last_ok = at;
            }
            Reply::ReadOnly(_) if fenced.is_none() => fenced = Some(at),
            _ => {}
        }
        if let Some(&new) = oks.first().filter(|&&i| i != old) {
            taken_over.get_or_insert((new, at));
            let key = &replies[new].key;
            accepted_by_new.push((key.clone(), key.clone()));
        }
        std::thread::sleep(POLL);
    }
    let fenced = fenced.unwrap_or_else(|| {
        panic!(
            "the cut-off primary never refused a write:\n{}",
            cluster.describe()
        )
    });
    assert!(
        fenced <= LEASE_TTL + FENCE_MARGIN,
        "the cut-off primary refused writes only {fenced:?} after the cut (last OK at \
         {old_last_ok:?}):\n{}",
        cluster.describe()
    );
    let (new, took_over) = taken_over.unwrap_or_else(|| {
        panic!(
            "no other node accepted writes within {PATIENCE:?}:\n{}",
            cluster.describe()
        )
    });
    eprintln!(
        "fencing: {rounds} rounds; old primary's last OK {old_last_ok:?} after the cut, \
         refused from {fenced:?}; {} accepting from {took_over:?}",
        cluster.nodes[new].name
    );

    proxies[old].blackhole(false);
    cluster.wait_follows(old, new, PATIENCE);
    assert_eq!(
        cluster.wait_settled(PATIENCE),
        new,
        "{}",
        cluster.describe()
    );
    cluster.wait_converged();
    let what = "writes the new primary acknowledged";
    assert_held_everywhere(&cluster.nodes, &accepted_by_new, what);
}
