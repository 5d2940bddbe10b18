//! Watching every node at once while etcd is cut off: a cluster whose nodes each reach etcd
//! through their own proxy (so one node, or all, can be cut off from it alone), and a
//! sampler that sends every node a `SET` and an `INFO replication` per round, to check
//! that no two nodes accept writes, or say `role:master`, at the same moment.

use crate::client::{connect, set, Reply};
use crate::common::etcd::Etcd;
use crate::common::proxy::Proxy;
use crate::support::Cluster;
use std::time::Duration;

/// How late past the TTL a cut-off primary may still accept a write (scheduling, the
/// sampling round itself).
pub const FENCE_MARGIN: Duration = Duration::from_secs(1);

/// A connection to every node's client port, sending one `SET` to each per round.
pub struct Sampler {
    ports: Vec<u16>,
    cons: Vec<Option<redis::Connection>>,
    round: usize,
}

impl Sampler {
    pub fn new(cluster: &Cluster) -> Sampler {
        let ports: Vec<u16> = cluster.nodes.iter().map(|n| n.resp_port()).collect();
        Sampler {
            cons: ports.iter().map(|_| None).collect(),
            ports,
            round: 0,
        }
    }

    /// `SET sample-{round}-{node}` (the key as its value), then `INFO replication`, on every
    /// node in turn.
    pub fn round(&mut self) -> Vec<Sample> {
        self.round += 1;
        let mut replies = Vec::new();
        for (i, con) in self.cons.iter_mut().enumerate() {
            let key = format!("sample-{:05}-{i}", self.round);
            if con.is_none() {
                *con = connect(self.ports[i], Duration::from_secs(1));
            }
            let (reply, master) = match con.as_mut() {
                Some(c) => (set(c, &key, &key), role_is_master(c)),
                None => (Reply::Down("cannot connect".into()), false),
            };
            if matches!(reply, Reply::Down(_)) {
                // A reply that timed out must not be taken for the next one.
                *con = None;
            }
            replies.push(Sample { key, reply, master });
        }
        replies
    }

    /// The nodes that accepted their `SET` in a round.
    pub fn accepted(replies: &[Sample]) -> Vec<usize> {
        (0..replies.len())
            .filter(|&i| replies[i].reply == Reply::Ok)
            .collect()
    }

    /// How many nodes said `role:master` in a round.
    pub fn masters(replies: &[Sample]) -> usize {
        replies.iter().filter(|s| s.master).count()
    }
}

/// One node's part of a sampling round.
#[derive(Debug)]
pub struct Sample {
    pub key: String,
    pub reply: Reply,
    /// Whether its `INFO replication` said `role:master` right after the `SET`.
    pub master: bool,
}

/// Whether `INFO replication` on `con` says `role:master`.
fn role_is_master(con: &mut redis::Connection) -> bool {
    let info: redis::RedisResult<String> = redis::cmd("INFO").arg("replication").query(con);
    info.is_ok_and(|text| text.lines().any(|l| l.trim_end() == "role:master"))
}

/// A fresh etcd and three nodes, each reaching it through its own proxy (returned in node
/// order).
pub fn proxied_cluster(name: &str) -> (Cluster, Vec<Proxy>) {
    let etcd = Etcd::start();
    let proxies: Vec<Proxy> = (0..3).map(|_| Proxy::new(&etcd.addr())).collect();
    let urls: Vec<String> = proxies
        .iter()
        .map(|p| format!("http://{}", p.addr))
        .collect();
    (Cluster::start_with(etcd, name, &urls, &[]), proxies)
}
