//! Automatic failover through etcd: a cluster member registers itself under
//! `/kv/NAME/`, follows whoever holds the primary key, and campaigns for it when it is
//! vacant. The election's rules are plain code in [`election`]; the etcd calls in
//! [`etcd`]; the loops that read etcd, keep the lease alive and drive the node in
//! [`agent`].

pub mod agent;
pub mod election;
pub mod etcd;
