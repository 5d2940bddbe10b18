//! Automatic failover through etcd (`kv replica --etcd URL --cluster NAME`).

#[path = "../common/mod.rs"]
mod common;

mod harness;
