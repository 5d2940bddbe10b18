//! The `INFO` reply: Redis's section and field names where they apply, so tools that read
//! `INFO replication` (role, connected replicas and their offsets, link status) work
//! against kv. Offsets are kv's seqs.

use super::auth::AuthThrottle;
use crate::auth::Secret;
use crate::error::Result;
use crate::node::Node;
use crate::replication::LinkState;
use crate::store::{Role, NO_HISTORY};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

/// The version of Redis whose protocol and field names kv follows, for clients that
/// look at `redis_version`.
pub const REDIS_COMPATIBLE_VERSION: &str = "7.0.0";

/// What `INFO` needs besides the node.
pub struct ServerFacts {
    /// When the node started.
    pub started: Instant,
    /// The client port.
    pub port: u16,
    /// The secret clients must prove with `AUTH` (`--auth-file`), if any.
    pub secret: Option<Arc<Secret>>,
    /// Failed `AUTH` attempts per peer, on this port.
    pub throttle: AuthThrottle,
}

/// Renders `INFO [section]`; `None` or `all`/`everything`/`default` give every section.
pub fn render(node: &Node, facts: &ServerFacts, section: Option<&str>) -> Result<String> {
    let section = section.map(str::to_ascii_lowercase);
    let wanted = |name: &str| match section.as_deref() {
        None | Some("all" | "everything" | "default") => true,
        Some(s) => s == name,
    };
    let mut text = String::new();
    if wanted("server") {
        server(&mut text, facts);
    }
    if wanted("replication") {
        replication(&mut text, node)?;
    }
    if wanted("keyspace") {
        let keys = node.store().count("")?;
        let _ = write!(
            text,
            "# Keyspace\r\ndb0:keys={keys},expires=0,avg_ttl=0\r\n\r\n"
        );
    }
    Ok(text.trim_end().to_string() + "\r\n")
}

fn server(text: &mut String, facts: &ServerFacts) {
    let _ = write!(
        text,
        "# Server\r\nredis_version:{REDIS_COMPATIBLE_VERSION}\r\nkv_version:{}\r\n\
         redis_mode:standalone\r\nprocess_id:{}\r\ntcp_port:{}\r\nuptime_in_seconds:{}\r\n\r\n",
        env!("CARGO_PKG_VERSION"),
        std::process::id(),
        facts.port,
        facts.started.elapsed().as_secs()
    );
}

fn replication(text: &mut String, node: &Node) -> Result<()> {
    let position = node.store().position()?;
    let head = position.head;
    text.push_str("# Replication\r\n");
    // A cluster member is the master only while it may write: not while it promotes
    // itself after winning, nor once its lease went stale.
    let master = node.role() == Role::Primary && node.lease().check_write().is_ok();
    if !master {
        let link = node.replication().link();
        let (host, port) = link
            .upstream
            .as_deref()
            .and_then(|u| u.rsplit_once(':'))
            .unwrap_or(("", "0"));
        let up = link.state == LinkState::Streaming;
        let syncing = link.state == LinkState::Syncing;
        let _ = write!(
            text,
            "role:slave\r\nmaster_host:{host}\r\nmaster_port:{port}\r\n\
             master_link_status:{}\r\nmaster_sync_in_progress:{}\r\nslave_repl_offset:{head}\r\n\
             slave_read_only:1\r\n",
            if up { "up" } else { "down" },
            u8::from(syncing)
        );
        let _ = write!(text, "kv_link_state:{}\r\n", link.state.as_str());
        if let Some(error) = &link.last_error {
            let _ = write!(text, "kv_link_last_error:{}\r\n", one_line(error));
        }
    } else {
        text.push_str("role:master\r\n");
    }
    if let Some(cluster) = node.lease().status() {
        let lease_ms = cluster.lease_remaining.map_or(0, |left| left.as_millis());
        let _ = write!(
            text,
            "kv_cluster:{}\r\nkv_cluster_epoch:{}\r\nkv_etcd:{}\r\n\
             kv_lease_remaining_ms:{lease_ms}\r\nkv_cluster_state:{}\r\n",
            cluster.name,
            position.epoch,
            if cluster.etcd_ok { "ok" } else { "unreachable" },
            one_line(&cluster.activity)
        );
    }
    let downstreams = node.replication().downstreams();
    let replicas = downstreams.list();
    let _ = write!(text, "connected_slaves:{}\r\n", replicas.len());
    let durability = node.durability();
    if durability.min_replicas_to_write > 0 {
        let good = downstreams.count_good(durability.min_replicas_max_lag);
        let _ = write!(text, "min_slaves_good_slaves:{good}\r\n");
    }
    for (i, replica) in replicas.iter().enumerate() {
        let addr = &replica.identity.replica_addr;
        let (ip, port) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
        let _ = write!(
            text,
            "slave{i}:ip={ip},port={port},state=online,offset={},lag={}\r\n",
            replica.acked_seq,
            replica.last_heard.elapsed().as_secs()
        );
    }
    // Redis's two replication ids (PSYNC2): kv's history id, and the history it forked
    // from, with the first offset that belongs to the new one.
    let (replid2, second_offset) = match &position.fork {
        Some(fork) => (
            fork.prev_history_id.as_str(),
            fork.seq.saturating_add(1).to_string(),
        ),
        None => (NO_HISTORY, "-1".to_string()),
    };
    let _ = write!(
        text,
        "master_failover_state:{}\r\n",
        node.failover_state().as_str()
    );
    let _ = write!(
        text,
        "master_replid:{}\r\nmaster_replid2:{replid2}\r\nmaster_repl_offset:{head}\r\n\
         second_repl_offset:{second_offset}\r\n\r\n",
        position.history_id.as_deref().unwrap_or(NO_HISTORY)
    );
    Ok(())
}

/// `text` on one line: an INFO field cannot hold a line break.
fn one_line(text: &str) -> String {
    text.replace(['\r', '\n'], " ")
}
