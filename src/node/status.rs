//! The `STATUS` report of a node: what it is, where its data lives, where its history
//! stands, and how its replication links are doing.

use super::{LinkState, Node};
use crate::error::Result;
use crate::store::Role;
use std::fmt::Write as _;

/// Renders the status as `name: value` lines.
pub fn render(node: &Node) -> Result<String> {
    let store = node.store();
    let head = store.head_seq()?;
    let mut text = String::new();
    let mut line = |name: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(text, "{name}: {value}");
    };
    line("role", &node.role());
    line("database", &store.location());
    line(
        "history",
        &store
            .history_id()?
            .unwrap_or_else(|| "none (never synced)".into()),
    );
    match node.role() {
        Role::Primary => line("head_seq", &head),
        Role::Replica => line("applied_seq", &head),
    }
    line("keys", &store.count("")?);
    let digest = store.digest()?;
    line("digest", &format!("{} (seq {})", digest.hex, digest.seq));
    line("listening", &node.listen_addr());
    if node.role() == Role::Replica {
        let link = node.link();
        line(
            "primary",
            &link
                .upstream
                .as_deref()
                .unwrap_or("none (use JOIN host:port)"),
        );
        line("link", &link.state.as_str());
        if link.state != LinkState::Idle {
            line(
                "lag",
                &format!("{} entries", link.upstream_seq.saturating_sub(head)),
            );
        }
        if let Some(resync) = &link.last_resync {
            line("last_resync", resync);
        }
        if let Some(error) = &link.last_error {
            line("last_error", error);
        }
    }
    let downstreams = node.downstreams();
    line("replicas", &downstreams.len());
    for replica in downstreams {
        let _ = writeln!(
            text,
            "- {} (from {}): acked_seq {}, lag {} entries, last ack {:.1} s ago",
            replica.replica_addr,
            replica.peer,
            replica.acked_seq,
            head.saturating_sub(replica.acked_seq),
            replica.last_ack.elapsed().as_secs_f64()
        );
    }
    text.pop();
    Ok(text)
}
