//! The `STATUS` report of a node: what it is, where its data lives, where its history
//! stands, and how its replication links are doing.

use super::Node;
use crate::error::Result;
use crate::replication::{LinkState, LinkStatus};
use crate::store::Role;
use std::fmt::Write as _;

/// Renders the status as `name: value` lines.
pub fn render(node: &Node) -> Result<String> {
    let store = node.store();
    let position = store.position()?;
    let head = position.head;
    let mut text = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(text, "{name}: {value}");
    };
    line("role", &node.role());
    line("database", &store.location());
    line(
        "history",
        &position
            .history_id
            .clone()
            .unwrap_or_else(|| "none (never synced)".into()),
    );
    if let Some(fork) = &position.fork {
        line(
            "forked_from",
            &format!("{} after seq {}", fork.prev_history_id, fork.seq),
        );
    }
    match node.role() {
        Role::Primary => line("head_seq", &head),
        Role::Replica => line("applied_seq", &head),
    }
    line("keys", &store.count(b"")?);
    let digest = store.digest()?;
    line("digest", &format!("{} (seq {})", digest.hex, digest.seq));
    line("listening", &node.replication().listen_addr());
    if let Some(cluster) = node.lease().status() {
        line(
            "cluster",
            &format!("{} (epoch {})", cluster.name, position.epoch),
        );
        let etcd = match (&cluster.etcd_error, cluster.etcd_ok) {
            (_, true) => "ok".to_string(),
            (Some(error), false) => format!("unreachable ({error}); serving reads"),
            (None, false) => "not reached yet".to_string(),
        };
        line("etcd", &etcd);
        if let Some(left) = cluster.lease_remaining {
            line(
                "lease",
                &format!(
                    "writes accepted for {:.1} s more without a renewal (TTL {} s)",
                    left.as_secs_f64(),
                    cluster.ttl.as_secs()
                ),
            );
        }
        line("election", &cluster.activity);
    }
    if node.role() == Role::Replica {
        let link = node.replication().link();
        line(
            "primary",
            &link
                .upstream
                .as_deref()
                .unwrap_or("none (use JOIN host:port)"),
        );
        line("link", &link.state.as_str());
        if link.state != LinkState::Idle {
            line("lag", &lag(&link, head));
        }
        if let Some(resync) = &link.last_resync {
            line("last_resync", resync);
        }
        if let Some(error) = &link.last_error {
            line("last_error", error);
        }
    }
    let downstreams = node.replication().downstreams().list();
    line("replicas", &downstreams.len());
    for replica in downstreams {
        let _ = writeln!(
            text,
            "- {} (from {}): acked_seq {}, lag {} entries, last heard {:.1} s ago",
            replica.identity.replica_addr,
            replica.identity.peer,
            replica.acked_seq,
            head.saturating_sub(replica.acked_seq),
            replica.last_heard.elapsed().as_secs_f64()
        );
    }
    text.pop();
    Ok(text)
}

/// `N entries (last entry received T s ago)`, or why the lag is not known yet.
fn lag(link: &LinkStatus, applied: u64) -> String {
    let Some(entries) = link.lag(applied) else {
        return "unknown (the upstream has not told its head yet)".into();
    };
    match link.last_entry_at {
        Some(at) => format!(
            "{entries} entries (last entry received {:.1} s ago)",
            at.elapsed().as_secs_f64()
        ),
        None => format!("{entries} entries (no entry received on this connection yet)"),
    }
}
