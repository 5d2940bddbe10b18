//! Automatic failover through etcd: a cluster member registers itself under
//! `/kv/NAME/`, follows whoever holds the primary key, and campaigns for it when it is
//! vacant. The election's rules are plain code in [`election`]; the etcd calls in
//! [`etcd`]; the keys and what they say in [`keys`]; the loops that read etcd, keep the
//! lease alive and drive the node in [`agent`].

pub mod agent;
pub mod election;
pub mod etcd;
pub mod keys;

use std::time::Duration;

/// How often a member reads its cluster's state (and so how fast it notices a change).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The lease TTL unless `--lease-ttl` says otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The shortest lease TTL kv takes (etcd raises shorter ones to about this anyway).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// The longest lease TTL kv takes: beyond it a dead primary would go unnoticed for long.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(300);

/// Where a member finds etcd and its cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The cluster's name: its keys live under `/kv/NAME/`.
    pub name: String,
    /// The lease TTL.
    pub ttl: Duration,
}
