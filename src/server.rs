//! Starting a node, the wiring `kv primary` and `kv replica` share, as a library entry that
//! the command line calls and tests can call in-process: open the store, bind the ports
//! (port 0 picks a free one), build the [`Node`], start its tasks (replication port, log
//! retention, client port) and, with an upstream, its link. Stopping is
//! [`Node::stop`]: links and connections end, and replicas are told why.

use crate::auth::Secret;
use crate::cluster::agent::{self as cluster_agent, ClusterAgent};
use crate::cluster::ClusterConfig;
use crate::error::{Error, Result};
use crate::net::tls::Tls;
use crate::net::validate_addr;
use crate::node::lease::WriteLease;
use crate::node::{failover, retention};
use crate::node::{Durability, Node};
use crate::replication::receiver::SyncReport;
use crate::replication::{sender, LinkMode};
use crate::store::{KvStore, MemoryStore, Role, SqliteStore};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tracing::{info, warn};

/// What to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// The node's role.
    pub role: Role,
    /// The SQLite file; `None` keeps the data in memory.
    pub db: Option<PathBuf>,
    /// The replication port's address.
    pub listen: String,
    /// The client (Redis protocol) port's address, if any.
    pub resp: Option<String>,
    /// Log entries kept (at least 1).
    pub log_retain: u64,
    /// Bytes of client requests buffered at once, node-wide.
    pub client_memory: usize,
    /// The upstream a replica follows from the start, if any.
    pub join: Option<String>,
    /// What a write waits for while this node is the primary.
    pub durability: Durability,
    /// The cluster this node is a member of, whose primary etcd chooses (`--etcd`).
    pub cluster: Option<ClusterConfig>,
    /// The shared secret clients must prove (`--auth-file`).
    pub auth: Option<Arc<Secret>>,
    /// TLS on both ports (`--tls-cert`, `--tls-key`, `--tls-ca`), if any.
    pub tls: Option<Arc<Tls>>,
    /// Whether the operator accepts ports reachable from other machines without the
    /// protection they need (`--insecure`).
    pub insecure: bool,
}

/// A started node and where it listens.
pub struct Started {
    /// The node.
    pub node: Arc<Node>,
    /// The bound replication address.
    pub listen_addr: SocketAddr,
    /// The bound client address, with `--resp`.
    pub client_addr: Option<SocketAddr>,
    /// The first sync of the `--join` link, once it happens.
    pub first_sync: Option<oneshot::Receiver<Result<SyncReport>>>,
    /// The cluster agent, in a cluster: stop it (giving up the lease) before the node.
    pub cluster: Option<ClusterAgent>,
}

/// The default replication address of each role (loopback only).
pub fn default_listen(role: Role) -> &'static str {
    match role {
        Role::Primary => "127.0.0.1:8080",
        Role::Replica => "127.0.0.1:8081",
    }
}

/// Opens the node's store: SQLite at `db`, or memory. A replica that is given an
/// upstream (`joining`) accepts a primary's file too, and demotes it.
pub fn open_store(
    db: Option<&std::path::Path>,
    role: Role,
    joining: bool,
) -> Result<Arc<dyn KvStore>> {
    Ok(match db {
        Some(path) if role == Role::Replica && joining => {
            Arc::new(SqliteStore::open_demoting(path)?)
        }
        Some(path) => Arc::new(SqliteStore::open(path, role)?),
        None => Arc::new(MemoryStore::new(role)),
    })
}

/// [`exposed`] for the addresses of the command line that are IP literals.
fn check_exposure(config: &Config) -> Result<()> {
    let protected = config.auth.is_some();
    if let Ok(addr) = config.listen.parse::<SocketAddr>() {
        exposed("--listen", addr, protected, config.insecure)?;
    }
    if let Some(Ok(addr)) = config.resp.as_deref().map(str::parse::<SocketAddr>) {
        exposed("--resp", addr, protected, config.insecure)?;
    }
    Ok(())
}

/// Refuses a port bound where other machines can reach it without the protection it
/// needs (`protected`), unless the operator said `--insecure` (then a warning).
fn exposed(option: &str, addr: SocketAddr, protected: bool, insecure: bool) -> Result<()> {
    if addr.ip().is_loopback() || protected {
        return Ok(());
    }
    let what = match option {
        "--resp" => "any client that reaches it could read and write every key",
        _ => {
            "anyone who reaches it could copy every key as a replica, or feed this node as \
              its upstream"
        }
    };
    if insecure {
        warn!("{option} {addr} is reachable from other machines and {what}; running anyway (--insecure)");
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "refusing {option} {addr}: it is reachable from other machines and {what}: add \
         --auth-file (and TLS), keep it on 127.0.0.1, or say --insecure if this network is \
         trusted"
    )))
}

/// Warns of a port other machines can reach that speaks plain text: the secret's proof
/// cannot be replayed, but every key and value (and `AUTH`'s secret) crosses the network
/// as it is.
fn warn_plain_text(option: &str, addr: SocketAddr, tls: bool) {
    if !addr.ip().is_loopback() && !tls {
        warn!(
            "{option} {addr} is reachable from other machines without TLS: data (and AUTH's \
             secret) cross the network in plain text; add --tls-cert, --tls-key and --tls-ca"
        );
    }
}

/// A port once bound: refused if exposed without protection ([`exposed`]), warned of if
/// it speaks plain text to other machines ([`warn_plain_text`]).
fn check_bound(option: &str, addr: SocketAddr, config: &Config) -> Result<()> {
    exposed(option, addr, config.auth.is_some(), config.insecure)?;
    warn_plain_text(option, addr, config.tls.is_some());
    Ok(())
}

async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::Invalid(format!(
            "cannot listen on {addr}: {e} (expected a free HOST:PORT)"
        ))
    })
}

/// Starts a node as `config` says, its tasks on `runtime`.
pub fn start(config: &Config, runtime: &Runtime) -> Result<Started> {
    if let Some(upstream) = &config.join {
        validate_addr(upstream).map_err(|e| Error::Invalid(format!("--join: {e}")))?;
    }
    if let Some(cluster) = &config.cluster {
        crate::cluster::etcd::check_endpoints(&cluster.endpoints)?;
    }
    // A cluster member starts as a replica, even from a primary's file: it takes writes
    // only once it wins the primary key.
    let following = config.join.is_some() || config.cluster.is_some();
    // An exposed address is refused before anything is bound or opened (a name that
    // resolves to one is refused once bound, below).
    check_exposure(config)?;
    let store = open_store(config.db.as_deref(), config.role, following)?;
    let listener = runtime.block_on(bind(&config.listen))?;
    let listen_addr = listener.local_addr()?;
    if config.cluster.is_some() && listen_addr.ip().is_unspecified() {
        return Err(Error::Invalid(format!(
            "--listen {listen_addr}: a cluster member publishes its replication address for \
             the others to follow, so give the address they reach it at, not a wildcard"
        )));
    }
    check_bound("--listen", listen_addr, config)?;
    let clients = match &config.resp {
        Some(addr) => Some(runtime.block_on(bind(addr))?),
        None => None,
    };
    if let Some(clients) = &clients {
        check_bound("--resp", clients.local_addr()?, config)?;
    }
    let (lease, handoffs) = match &config.cluster {
        Some(cluster) => {
            let (lease, handoffs) = WriteLease::for_cluster(&cluster.name, cluster.ttl);
            (lease, Some(handoffs))
        }
        None => (WriteLease::off(), None),
    };
    let node = Arc::new(
        Node::new(
            Arc::clone(&store),
            listen_addr,
            runtime.handle().clone(),
            config.client_memory,
            lease,
        )?
        .with_durability(config.durability),
    );
    let repl = Arc::clone(node.replication());
    if let Some(secret) = &config.auth {
        repl.require_secret(Arc::clone(secret));
    }
    if let Some(tls) = &config.tls {
        repl.require_tls(Arc::clone(tls));
    }
    runtime.spawn(sender::serve(Arc::clone(&repl), listener));
    runtime.spawn(retention::run(repl, config.log_retain));
    runtime.spawn(crate::node::expiry::run(Arc::clone(&node)));
    runtime.spawn(failover::serve_promotions(Arc::clone(&node)));
    let client_addr = match clients {
        Some(clients) => {
            let addr = clients.local_addr()?;
            let auth = config.auth.clone();
            let tls = config.tls.clone();
            runtime.spawn(crate::resp::serve(Arc::clone(&node), clients, auth, tls));
            Some(addr)
        }
        None => None,
    };
    let first_sync = match &config.join {
        Some(upstream) => Some(node.follow(upstream.clone(), LinkMode::Start)?.first_sync),
        None => None,
    };
    let cluster = match (&config.cluster, handoffs) {
        (Some(cluster), Some(handoffs)) => Some(cluster_agent::start(
            Arc::clone(&node),
            cluster,
            client_addr,
            handoffs,
        )?),
        _ => None,
    };
    info!(
        "{} ready on {listen_addr}{}, data in {}",
        config.role,
        match (&config.tls, &config.auth) {
            (Some(_), Some(_)) => " (TLS, shared secret)",
            (Some(_), None) => " (TLS)",
            (None, Some(_)) => " (shared secret)",
            (None, None) => "",
        },
        store.location()
    );
    Ok(Started {
        node,
        listen_addr,
        client_addr,
        first_sync,
        cluster,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::Promotion;
    use crate::store::Op;

    fn config(role: Role, join: Option<String>) -> Config {
        Config {
            role,
            db: None,
            listen: "127.0.0.1:0".into(),
            resp: None,
            log_retain: 1000,
            client_memory: 1 << 20,
            join,
            durability: Durability::default(),
            cluster: None,
            auth: None,
            tls: None,
            insecure: false,
        }
    }

    #[test]
    fn only_loopback_or_protected_ports_start_without_insecure() {
        let loopback: SocketAddr = "127.0.0.1:6379".parse().expect("addr");
        let v6_loopback: SocketAddr = "[::1]:6379".parse().expect("addr");
        let wildcard: SocketAddr = "0.0.0.0:6379".parse().expect("addr");
        let lan: SocketAddr = "10.1.2.3:8080".parse().expect("addr");
        assert!(exposed("--resp", loopback, false, false).is_ok());
        assert!(exposed("--listen", v6_loopback, false, false).is_ok());
        let refused = exposed("--resp", wildcard, false, false).expect_err("refused");
        assert!(refused.to_string().contains("add --auth-file"), "{refused}");
        assert!(
            exposed("--resp", wildcard, true, false).is_ok(),
            "a secret protects it"
        );
        let refused = exposed("--listen", lan, false, false).expect_err("refused");
        assert!(refused.to_string().contains("--insecure"), "{refused}");
        assert!(
            exposed("--listen", lan, true, false).is_ok(),
            "a secret protects it"
        );
        assert!(
            exposed("--listen", lan, false, true).is_ok(),
            "the operator means it"
        );
    }

    fn put(key: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: "v".into(),
            expires_at: None,
        }
    }

    /// The library entry, in-process: a primary and a replica on port 0, then a failover.
    #[test]
    fn nodes_started_in_process_replicate_and_fail_over() {
        let runtime = Runtime::new().expect("runtime");
        let primary = start(&config(Role::Primary, None), &runtime).expect("primary");
        runtime
            .block_on(primary.node.write(put("a")))
            .expect("write");
        let upstream = primary.listen_addr.to_string();
        let replica = start(&config(Role::Replica, Some(upstream)), &runtime).expect("replica");
        let first_sync = replica.first_sync.expect("a --join link");
        let report = runtime.block_on(first_sync).expect("report").expect("sync");
        assert_eq!(report, SyncReport::Snapshot { seq: 1, keys: 1 });
        runtime.block_on(primary.node.stop());

        let Promotion::Promoted(position) = replica.node.promote().expect("promote") else {
            panic!("a replica is promoted");
        };
        assert_eq!(position.fork.map(|fork| fork.seq), Some(1));
        let seq = runtime
            .block_on(replica.node.write(put("b")))
            .expect("write");
        assert_eq!(seq, Some(2));
        runtime.block_on(replica.node.stop());
    }
}
