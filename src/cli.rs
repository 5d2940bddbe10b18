//! The command line (`kv primary ...`, `kv replica ...`) and the start-up sequence it
//! drives: open the store, bind the replication port, start the node, print the ready
//! banner, then run the shell or wait for SIGINT/SIGTERM.

use crate::error::{Error, Result};
use crate::node::retention::{self, DEFAULT_LOG_RETAIN};
use crate::node::Node;
use crate::replica::ReplicaLink;
use crate::replication::receiver::SyncReport;
use crate::shell::{self, Shell};
use crate::store::{KvStore, MemoryStore, Role, SqliteStore};
use clap::{Args, Parser, Subcommand};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{info, warn};

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
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve Redis clients (RESP2: redis-cli, client libraries) on this address. Off unless
    /// given; loopback is advised (there is no authentication).
    #[arg(long, value_name = "ADDR")]
    pub resp: Option<String>,
    /// Run without the interactive shell (service mode): log to stderr, stop on SIGINT/SIGTERM.
    #[arg(long)]
    pub no_shell: bool,
    /// Keep the newest N log entries (at least 1). A replica further behind than that
    /// gets a full resync instead of the missing entries.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_LOG_RETAIN,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub log_retain: u64,
}

/// Options of `kv replica`.
#[derive(Debug, Args)]
pub struct ReplicaArgs {
    /// Options both roles take.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Join this primary at start-up and keep following it; a bare --join means localhost:8080.
    #[arg(long, value_name = "HOST:PORT", num_args = 0..=1, default_missing_value = "localhost:8080")]
    pub join: Option<String>,
}

impl Cli {
    fn parts(&self) -> (Role, &NodeArgs, Option<&str>) {
        match &self.command {
            NodeCommand::Primary(args) => (Role::Primary, args, None),
            NodeCommand::Replica(args) => (Role::Replica, &args.node, args.join.as_deref()),
        }
    }
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

fn default_listen(role: Role) -> &'static str {
    match role {
        Role::Primary => "127.0.0.1:8080",
        Role::Replica => "127.0.0.1:8081",
    }
}

/// Opens the node's store: SQLite at `db`, or memory.
pub fn open_store(db: Option<&std::path::Path>, role: Role) -> Result<Arc<dyn KvStore>> {
    Ok(match db {
        Some(path) => Arc::new(SqliteStore::open(path, role)?),
        None => Arc::new(MemoryStore::new(role)),
    })
}

async fn bind(addr: &str) -> Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::Invalid(format!(
            "cannot listen on {addr}: {e} (expected a free HOST:PORT)"
        ))
    })
}

/// Runs the node the command line describes until the shell ends or a signal arrives.
pub fn run(cli: Cli) -> Result<()> {
    let (role, args, join) = cli.parts();
    if let Some(upstream) = join {
        shell::validate_addr(upstream).map_err(|e| Error::Invalid(format!("--join: {e}")))?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let store = open_store(args.db.as_deref(), role)?;
    let listen = args.listen.as_deref().unwrap_or(default_listen(role));
    let listener = runtime.block_on(bind(listen))?;
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        warn!("listening on {local}: replication links are not authenticated; keep this port on a trusted network");
    }
    let node = Arc::new(Node::new(
        Arc::clone(&store),
        role,
        local,
        store.head_seq()?,
    ));
    runtime.spawn(crate::primary::serve(Arc::clone(&node), listener));
    runtime.spawn(retention::run(Arc::clone(&node), args.log_retain));
    let clients_port = match &args.resp {
        Some(addr) => {
            let clients = runtime.block_on(bind(addr))?;
            let client_addr = clients.local_addr()?;
            if !client_addr.ip().is_loopback() {
                warn!("clients on {client_addr}: the Redis port has no authentication; keep it on a trusted network");
            }
            let port = client_addr.port();
            runtime.spawn(crate::resp::serve(Arc::clone(&node), clients));
            Some(port)
        }
        None => None,
    };
    let link = (role == Role::Replica).then(|| {
        Arc::new(ReplicaLink::new(
            Arc::clone(&node),
            runtime.handle().clone(),
        ))
    });

    // Service mode stops on signals; the shell leaves them at their defaults (Ctrl-C is
    // the line editor's).
    let stop_signals = match args.no_shell {
        true => Some(runtime.block_on(async { StopSignals::install() })?),
        false => None,
    };
    println!("{}", shell::ready_line(role, local.port()));
    if let Some(port) = clients_port {
        println!("Clients (Redis protocol) on port {port}");
    }
    if !args.no_shell {
        println!("{}", shell::command_help(role));
    }
    info!("{role} ready on {local}, data in {}", store.location());
    if let (Some(link), Some(upstream)) = (&link, join) {
        let first_sync = link.follow(upstream.to_string(), true);
        runtime.spawn(async move {
            if let Ok(Ok(report)) = first_sync.await {
                match report {
                    SyncReport::Snapshot { .. } => println!("Snapshot received"),
                    SyncReport::Resumed { from_seq } => {
                        println!("Resumed after seq {from_seq} (partial resync)")
                    }
                }
            }
        });
    }

    let outcome = if let Some(signals) = stop_signals {
        runtime.block_on(signals.wait())
    } else {
        let interactive = std::io::stdin().is_terminal();
        let shell = Shell::new(Arc::clone(&node), link, runtime.handle().clone())
            .with_progress(interactive);
        shell::input::run(&shell, interactive)
    };
    node.shutdown_token().cancel();
    runtime.shutdown_timeout(Duration::from_secs(2));
    info!("{role} stopped");
    outcome
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
