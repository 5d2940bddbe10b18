//! Automatic failover through etcd: every node started with `kv replica --etcd URL
//! --cluster NAME --lease-ttl 2`, the one holding `/kv/NAME/primary` (bound to its lease)
//! primary, the others following it; against a real etcd (`common::etcd`), real `kv`
//! processes, SQLite files, SIGKILL and a TCP proxy in front of etcd.
//!
//! What must hold: at most one node accepts writes at any moment; a primary that cannot
//! renew its lease refuses writes (`-READONLY`) within the TTL; when the primary dies
//! another takes over within the TTL plus a few seconds and the rest follow it; a
//! restarted node rejoins as a replica and converges; no write acknowledged with
//! `--sync-replicas 1` is lost across automatic failovers.
//!
//! The modules: `harness` (the etcd guard itself), `election` (a fresh cluster elects
//! exactly one primary; a whole-cluster restart), `sigkill` (SIGKILL of the primary under
//! a writer), `fencing` (the primary cut off from etcd only), `outage` (etcd unreachable
//! from every node, then back), `handoff` (`FAILOVER` under a writer), `durability` (20 writers across rounds of SIGKILL with
//! `--sync-replicas 1`), `takeover` (a member of an older history waits for one of the newest; of two
//! survivors the more advanced wins; a primary that exits cleanly is replaced before its
//! lease could expire), `cli` (refused command lines; an unreachable etcd at start);
//! `support`, `client`, `sampler` and `writer` hold the helpers.

#[path = "../common/mod.rs"]
mod common;

mod cli;
mod client;
mod durability;
mod election;
mod fencing;
mod handoff;
mod harness;
mod outage;
mod sampler;
mod sigkill;
mod support;
mod takeover;
mod writer;
