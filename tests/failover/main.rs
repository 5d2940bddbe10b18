//! Failover: promotion of a replica (`REPLICAOF NO ONE`, `SLAVEOF NO ONE`, the shell's
//! `PROMOTE`) and re-pointing of any node (`REPLICAOF host port`, the shell's `JOIN`),
//! against real `kv` processes, SQLite files and TCP links.
//!
//! A promotion starts a new history that records its fork (`meta.prev_history_id`,
//! `meta.fork_seq`), so nodes that followed the old history up to the fork continue by
//! partial resync; a node holding writes past the fork (an old primary's unreplicated
//! writes, or a replica of a primary restored from a backup) gets a full resync that first
//! keeps those writes in its `diverged` table; an unrelated history is never adopted
//! without an explicit `JOIN`; and a promotion is one transaction, whatever moment a
//! SIGKILL lands.
//!
//! The modules: `promotion` (promotion under writes with two replicas and the old primary
//! rejoining; a planned switchover and back), `divergence` (the old primary's unreplicated
//! writes, new primary behind or ahead of it), `backup` (a primary restored from a backup:
//! same seq, different contents), `chain` (a chained replica across a promotion; a replica
//! that stopped before the fork), `restart` (a promoted file restarts as a primary; a
//! replica's file is refused as one), `crash` (SIGKILL during `REPLICAOF NO ONE`),
//! `unrelated` (an unrelated history is refused until `JOIN`) and `info` (the `INFO
//! replication` history fields); `support` holds the helpers.

#[path = "../common/mod.rs"]
mod common;

mod backup;
mod chain;
mod crash;
mod divergence;
mod handoff;
mod info;
mod promotion;
mod restart;
mod support;
mod unrelated;
