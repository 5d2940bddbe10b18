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
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Connections and commands, for `INFO clients` and `INFO stats`.
    pub counts: Arc<ClientCounts>,
}

/// What the client port has served.
#[derive(Default)]
pub struct ClientCounts {
    connected: AtomicU64,
    received: AtomicU64,
    commands: AtomicU64,
}

impl ClientCounts {
    /// Counts a connection until the returned guard drops.
    pub fn connection(self: &Arc<Self>) -> Connected {
        self.connected.fetch_add(1, Ordering::Relaxed);
        self.received.fetch_add(1, Ordering::Relaxed);
        Connected(Arc::clone(self))
    }

    /// Counts a command.
    pub fn command(&self) {
        self.commands.fetch_add(1, Ordering::Relaxed);
    }
}

/// A connection counted in [`ClientCounts`] while it lives.
pub struct Connected(Arc<ClientCounts>);

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Renders `INFO [section ...]`; no section, or `all`/`everything`/`default`, gives
/// every section. An unknown section gives nothing, as in Redis.
pub fn render(node: &Node, facts: &ServerFacts, sections: &[String]) -> Result<String> {
    let sections: Vec<String> = sections.iter().map(|s| s.to_ascii_lowercase()).collect();
    let every = sections.is_empty()
        || sections
            .iter()
            .any(|s| matches!(s.as_str(), "all" | "everything" | "default"));
    let wanted = |name: &str| every || sections.iter().any(|s| s == name);
    let mut text = String::new();
    if wanted("server") {
        server(&mut text, facts);
    }
    if wanted("clients") {
        let connected = facts.counts.connected.load(Ordering::Relaxed);
        let _ = write!(
            text,
            "# Clients\r\nconnected_clients:{connected}\r\nmaxclients:{}\r\n\
             blocked_clients:0\r\n\r\n",
            super::MAX_CLIENTS
        );
    }
    if wanted("memory") {
        memory(&mut text);
    }
    if wanted("stats") {
        let _ = write!(
            text,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             expired_keys:{}\r\nevicted_keys:0\r\nkv_commits:{}\r\n\r\n",
            facts.counts.received.load(Ordering::Relaxed),
            facts.counts.commands.load(Ordering::Relaxed),
            node.expired_keys(),
            node.commits()
        );
    }
    if wanted("replication") {
        replication(&mut text, node)?;
    }
    if wanted("keyspace") {
        let keys = node.store().count(b"")?;
        let expires = node.store().count_expiring()?;
        let _ = write!(
            text,
            "# Keyspace\r\ndb0:keys={keys},expires={expires},avg_ttl=0\r\n\r\n"
        );
    }
    if text.is_empty() {
        return Ok(text);
    }
    Ok(text.trim_end().to_string() + "\r\n")
}

/// The process's resident memory (kv has no allocator statistics of its own; SQLite's
/// page cache is part of it). kv never evicts keys.
fn memory(text: &mut String) {
    let pages = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0);
    let rss = pages * 4096;
    let _ = write!(
        text,
        "# Memory\r\nused_memory:{rss}\r\nused_memory_human:{:.2}M\r\n\
         used_memory_rss:{rss}\r\nmaxmemory:0\r\nmaxmemory_policy:noeviction\r\n\r\n",
        rss as f64 / (1024.0 * 1024.0)
    );
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
