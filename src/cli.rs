//! The command line (`kv primary ...`, `kv replica ...`): parse it, start the node through
//! [`server::start`], print the ready banner, then run the shell or wait for
//! SIGINT/SIGTERM, and stop the node.
//!
//! Where things are printed: the banner and command list go to stdout under an
//! interactive shell and in service mode (`--no-shell`), and to stderr when the shell
//! reads a pipe, so a script's stdout holds nothing but the results of its commands (and,
//! with `--join`, the line reporting the first sync).

use crate::auth::Secret;
use crate::cluster::{ClusterConfig, DEFAULT_LEASE_TTL, MAX_LEASE_TTL, MIN_LEASE_TTL};
use crate::error::{Error, Result};
use crate::net::tls::TlsFiles;
use crate::node::budget::DEFAULT_CLIENT_MEMORY_MIB;
use crate::node::durability::{Durability, DEFAULT_MAX_LAG, DEFAULT_SYNC_TIMEOUT};
use crate::node::retention::DEFAULT_LOG_RETAIN;
use crate::server::{self, default_listen, Config};
use crate::shell::{self, Shell};
use crate::store::Role;
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::info;

/// kv: a replicated, durable key-value store.
#[derive(Debug, Parser)]
#[command(name = "kv", version, about, long_about = None)]
pub struct Cli {
    /// Which node to run.
    #[command(subcommand)]
    pub command: NodeCommand,
}

/// The two roles.
#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run a primary: takes writes; replicas connect to it (default 127.0.0.1:8080).
    Primary(NodeArgs),
    /// Run a replica: joins a primary, serves reads locally (default 127.0.0.1:8081).
    Replica(ReplicaArgs),
}

/// Options both roles take.
#[derive(Debug, Args)]
pub struct NodeArgs {
    /// SQLite database file (created if missing). Without it, data lives in memory only.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Address for the replication port. Loopback by default; port 0 picks a free port.
    /// Another machine's reach needs --auth-file (or --insecure).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve Redis clients (RESP2: redis-cli, client libraries) on this address. Off unless
    /// given; off loopback it needs --auth-file (or --insecure).
    #[arg(long, value_name = "ADDR")]
    pub resp: Option<String>,
    /// Run without the interactive shell (service mode): log to stderr, stop on SIGINT/SIGTERM.
    #[arg(long)]
    pub no_shell: bool,
    /// Keep the newest N log entries (at least 1). A replica further behind than that
    /// gets a full resync instead of the missing entries.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_RETAIN,
          value_parser = at_least_one)]
    pub log_retain: u64,
    /// Memory for client requests being received or waiting to be written, in MiB, for
    /// the whole node. Beyond it kv stops reading from clients until writes commit.
    #[arg(long, value_name = "MIB", default_value_t = DEFAULT_CLIENT_MEMORY_MIB as u64,
          value_parser = at_least_one)]
    pub max_client_memory: u64,
    /// While this node is the primary: refuse writes (-NOREPLICAS) while fewer than N
    /// replicas acked within --min-replicas-max-lag. 0: off.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub min_replicas_to_write: usize,
    /// How recent a replica's last ack must be, in seconds, to count for
    /// --min-replicas-to-write (an idle healthy replica acks every second).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_MAX_LAG.as_secs(),
          value_parser = at_least_one)]
    pub min_replicas_max_lag: u64,
    /// While this node is the primary: acknowledge a write only once N replicas hold it
    /// durably too. 0: off (replication is asynchronous).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sync_replicas: usize,
    /// How long a write waits for --sync-replicas before it fails (committed here, not
    /// confirmed), in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SYNC_TIMEOUT.as_secs(),
          value_parser = at_least_one)]
    pub sync_timeout: u64,
    /// A file holding the deployment's shared secret, on one line (at least 16
    /// characters; the file readable by its owner only). Clients must then `AUTH` with
    /// it. Generate one with `openssl rand -hex 32`; never put it on the command line.
    #[arg(long, value_name = "PATH")]
    pub auth_file: Option<PathBuf>,
    /// Listen on addresses other machines can reach without --auth-file (a warning
    /// instead of a refusal). The links and clients are then unauthenticated.
    #[arg(long)]
    pub insecure: bool,
    /// Threads serving clients and replicas [default: one per core]. On a machine whose
    /// cores are busy with other work (clients, say), fewer can serve more.
    #[arg(long, value_name = "N", value_parser = thread_count)]
    pub threads: Option<usize>,
    /// TLS on both ports.
    #[command(flatten)]
    pub tls: TlsArgs,
    /// Cluster membership (automatic failover through etcd).
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// TLS on both ports: all three files, or none.
#[derive(Debug, Args)]
pub struct TlsArgs {
    /// This node's certificate (PEM, signed by --tls-ca). With it, both ports speak TLS
    /// only; replicas check that it names the host they --join.
    #[arg(long, value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM; not readable by others).
    #[arg(long, value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// The deployment's CA certificate (PEM): nodes verify each other, and clients that
    /// send a certificate, against it. Replication links are mutual TLS.
    #[arg(long, value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,
    /// Require every client of the client port to present a certificate signed by
    /// --tls-ca (otherwise one is optional).
    #[arg(long)]
    pub tls_auth_clients: bool,
}

impl TlsArgs {
    fn files(&self) -> TlsFiles {
        TlsFiles {
            cert: self.tls_cert.clone(),
            key: self.tls_key.clone(),
            ca: self.tls_ca.clone(),
            auth_clients: self.tls_auth_clients,
        }
    }
}

/// Options of a cluster member (automatic failover through etcd).
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Join a cluster whose primary etcd chooses: etcd client URLs (http://HOST:PORT),
    /// comma-separated. The node follows the primary key's holder and campaigns when it
    /// is vacant. Needs --cluster; replaces --join. Only on `kv replica`.
    #[arg(
        long,
        value_name = "URL[,URL...]",
        value_delimiter = ',',
        requires = "cluster"
    )]
    pub etcd: Vec<String>,
    /// The cluster's name: its keys live under /kv/NAME/ in etcd.
    #[arg(long, value_name = "NAME", requires = "etcd", value_parser = cluster_name)]
    pub cluster: Option<String>,
    /// The etcd lease's TTL in seconds (2 to 300): a primary that cannot renew it stops
    /// accepting writes within half of it, and another node takes over after it.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_LEASE_TTL.as_secs(),
          value_parser = lease_ttl)]
    pub lease_ttl: u64,
}

/// Options of `kv replica`.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// Options both roles take.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Join this primary at start-up and keep following it; a bare --join means localhost:8080.
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, default_missing_value = "localhost:8080",
          conflicts_with = "etcd")]
    pub join: Option<String>,
}

/// A whole number of at least 1, in words a user can act on.
fn at_least_one(text: &str) -> std::result::Result<u64, String> {
    match text.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// Most `--threads`: more than the machine's cores only costs memory and switches.
const MAX_THREADS: usize = 256;

fn thread_count(text: &str) -> std::result::Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_THREADS).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be 1 to {MAX_THREADS}")),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

/// A cluster name: letters, digits, `-`, `_` and `.` (it becomes part of etcd keys).
fn cluster_name(text: &str) -> std::result::Result<String, String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    match !text.is_empty() && text.len() <= 64 && text.chars().all(allowed) {
        true => Ok(text.to_string()),
        false => Err("use 1 to 64 letters, digits, '-', '_' or '.'".into()),
    }
}

/// A lease TTL from [`MIN_LEASE_TTL`] to [`MAX_LEASE_TTL`].
fn lease_ttl(text: &str) -> std::result::Result<u64, String> {
    let (min, max) = (MIN_LEASE_TTL.as_secs(), MAX_LEASE_TTL.as_secs());
    match text.parse::<u64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        Ok(_) => Err(format!("must be from {min} to {max}")),
        Err(_) => Err(format!("'{text}' is not a whole number")),
    }
}

impl Cli {
    fn parts(&self) -> (Role, &NodeArgs, Option<&str>) {
        match &self.command {
            NodeCommand::Primary(args) => (Role::Primary, args, None),
            NodeCommand::Replica(args) => (Role::Replica, &args.node, args.join.as_deref()),
        }
    }

    /// What [`server::start`] needs, or why the command line cannot work.
    pub fn config(&self) -> Result<Config> {
        let (role, args, join) = self.parts();
        let mib = usize::try_from(args.max_client_memory).unwrap_or(usize::MAX);
        Ok(Config {
            role,
            db: args.db.clone(),
            listen: args
                .listen
                .clone()
                .unwrap_or_else(|| default_listen(role).to_string()),
            resp: args.resp.clone(),
            log_retain: args.log_retain,
            client_memory: mib.saturating_mul(1024 * 1024),
            join: join.map(String::from),
            durability: Durability {
                min_replicas_to_write: args.min_replicas_to_write,
                min_replicas_max_lag: Duration::from_secs(args.min_replicas_max_lag),
                sync_replicas: args.sync_replicas,
                sync_timeout: Duration::from_secs(args.sync_timeout),
            },
            cluster: cluster_config(role, &args.cluster)?,
            auth: args
                .auth_file
                .as_deref()
                .map(Secret::load)
                .transpose()?
                .map(Arc::new),
            tls: args.tls.files().load()?,
            insecure: args.insecure,
        })
    }
}

/// The cluster a node joins, if any. `kv primary --etcd` is refused: in a cluster etcd
/// chooses the primary, so every member starts the same way.
fn cluster_config(role: Role, args: &ClusterArgs) -> Result<Option<ClusterConfig>> {
    let Some(name) = &args.cluster else {
        return Ok(None);
    };
    if role == Role::Primary {
        return Err(Error::Invalid(
            "in a cluster etcd chooses the primary: start every member, this one too, with \
             `kv replica --etcd URL --cluster NAME`"
                .into(),
        ));
    }
    Ok(Some(ClusterConfig {
        endpoints: args.etcd.clone(),
        name: name.clone(),
        ttl: Duration::from_secs(args.lease_ttl),
    }))
}

/// Sends logs to stderr, filtered by `RUST_LOG`; by default `warn` under the shell (to keep
/// the terminal readable) and `info` in service mode.
pub fn init_logging(cli: &Cli) {
    let default = if cli.parts().1.no_shell {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Runs the node the command line describes until the shell ends or a signal arrives.
pub fn run(cli: Cli) -> Result<()> {
    return_large_buffers_to_the_os();
    let config = cli.config()?;
    let (_, args, _) = cli.parts();
    let no_shell = args.no_shell;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads);
    }
    let runtime = runtime.enable_all().build()?;
    let started = server::start(&config, &runtime)?;
    let node = started.node;
    // Service mode stops on signals; the shell leaves them at their defaults (Ctrl-C is
    // the line editor's).
    let stop_signals = match no_shell {
        true => Some(runtime.block_on(async { StopSignals::install() })?),
        false => None,
    };
    let interactive = std::io::stdin().is_terminal();
    let banner = shell::banner(
        config.role,
        started.listen_addr.port(),
        started.client_addr.map(|addr| addr.port()),
        !no_shell,
    );
    match no_shell || interactive {
        true => println!("{banner}"),
        false => eprintln!("{banner}"),
    }
    // The first sync's line, printed whenever it comes (between the shell's lines).
    let (announce, announcements) = mpsc::channel::<String>();
    if let Some(first_sync) = started.first_sync {
        runtime.spawn(async move {
            if let Ok(Ok(report)) = first_sync.await {
                let _ = announce.send(report.line());
            }
        });
    }
    let outcome = if let Some(signals) = stop_signals {
        std::thread::spawn(move || announcements.iter().for_each(|line| println!("{line}")));
        runtime.block_on(signals.wait())
    } else {
        let shell = Shell::new(std::sync::Arc::clone(&node), runtime.handle().clone())
            .with_progress(interactive);
        shell::input::run(&shell, interactive, announcements)
    };
    // A cluster member gives up its lease first: its writes stop, and the others elect
    // a new primary at once rather than after the TTL.
    if let Some(agent) = started.cluster {
        agent.stop();
    }
    runtime.block_on(node.stop());
    runtime.shutdown_timeout(Duration::from_secs(2));
    info!("{} stopped", node.role());
    outcome
}

/// Makes every allocation of 128 KiB or more its own mapping, given back to the system
/// when freed. kv's large buffers (request arguments up to 8 MiB, replies, snapshot
/// chunks) come and go; glibc's malloc otherwise raises this threshold after the first
/// large free and keeps later large buffers in its heaps, where freed memory stays
/// resident: under a flood of 8 MiB writes with a 16 MiB client budget, 223 MiB peak
/// against 63 MiB with the threshold fixed. A process-wide setting: the binary's to make.
fn return_large_buffers_to_the_os() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes a malloc tunable; called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}

/// SIGINT and SIGTERM handlers, installed before the node says it is ready, so a signal
/// sent right after the banner stops it cleanly instead of killing it.
struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    fn install() -> Result<Self> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn wait(mut self) -> Result<()> {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        info!("stop signal received; shutting down");
        Ok(())
    }
}
