//! A running node's shared core, used by both roles: the store, the head-seq watch that
//! wakes replication senders, the write path (group commit on a writer thread, see
//! [`writer`]), and the status of downstream replicas and (on a replica) of the upstream
//! link. [`crate::primary`] and [`crate::replica`] build one; the shell, the replication
//! tasks and the listeners all hold an `Arc<Node>`.

pub mod retention;
pub mod status;
pub mod writer;

use crate::error::{Error, Result};
use crate::locks::lock;
use crate::store::{KvStore, Op, Role};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
pub use writer::PendingWrite;
use writer::Writer;

/// State of a replica's link to its upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Never told to join anything.
    Idle,
    /// Dialling the upstream.
    Connecting,
    /// Receiving a snapshot or catching up.
    Syncing,
    /// Caught up; receiving live entries.
    Streaming,
    /// The link failed or closed.
    Down,
}

impl LinkState {
    /// The word shown by `STATUS`.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Idle => "idle",
            LinkState::Connecting => "connecting",
            LinkState::Syncing => "syncing",
            LinkState::Streaming => "streaming",
            LinkState::Down => "down",
        }
    }
}

/// What a replica knows about its upstream link.
#[derive(Clone, Debug)]
pub struct LinkStatus {
    /// The `host:port` joined, if any.
    pub upstream: Option<String>,
    /// Current state.
    pub state: LinkState,
    /// The upstream's head seq as last heard.
    pub upstream_seq: u64,
    /// Kind and reason of the last resync, e.g. `full resync: new replica`.
    pub last_resync: Option<String>,
    /// Why the link last went down.
    pub last_error: Option<String>,
    /// While a snapshot streams in: (keys received, keys in the snapshot).
    pub snapshot: Option<(u64, u64)>,
}

/// What an upstream knows about one connected replica.
#[derive(Clone, Debug)]
pub struct DownstreamStatus {
    /// The replica's self-chosen id.
    pub node_id: String,
    /// The address the replica serves on, as it reported it.
    pub replica_addr: String,
    /// The address its connection comes from.
    pub peer: SocketAddr,
    /// Everything up to this seq is durable on the replica.
    pub acked_seq: u64,
    /// When the last ack arrived.
    pub last_ack: Instant,
}

/// The shared core of a running node.
pub struct Node {
    store: Arc<dyn KvStore>,
    role: Role,
    node_id: String,
    listen_addr: SocketAddr,
    head: watch::Sender<u64>,
    /// The group-commit writer thread; primaries only (see [`Node::new`]).
    writer: Option<Writer>,
    downstreams: Mutex<BTreeMap<u64, DownstreamStatus>>,
    next_downstream: AtomicU64,
    history_reset: Mutex<CancellationToken>,
    link: Mutex<LinkStatus>,
    shutdown: CancellationToken,
}

impl Node {
    /// A node serving `store` in `role`, whose replication listener is bound to
    /// `listen_addr`. `head_seq` is the store's current head.
    ///
    /// A primary starts its writer thread here; a replica has none, because it never
    /// writes through [`Node::write`] (it applies its upstream's entries, and refuses
    /// writes before they would reach a writer). Starting it eagerly rather than on the
    /// first write keeps the write path free of a lock or a once-cell, at the cost of one
    /// idle thread on a primary that is never written to.
    pub fn new(
        store: Arc<dyn KvStore>,
        role: Role,
        listen_addr: SocketAddr,
        head_seq: u64,
    ) -> Self {
        let head = watch::Sender::new(head_seq);
        let writer =
            (role == Role::Primary).then(|| Writer::start(Arc::clone(&store), head.clone()));
        Node {
            store,
            role,
            node_id: format!("{:016x}", rand::random::<u64>()),
            listen_addr,
            head,
            writer,
            downstreams: Mutex::new(BTreeMap::new()),
            next_downstream: AtomicU64::new(1),
            history_reset: Mutex::new(CancellationToken::new()),
            link: Mutex::new(LinkStatus {
                upstream: None,
                state: LinkState::Idle,
                upstream_seq: 0,
                last_resync: None,
                last_error: None,
                snapshot: None,
            }),
            shutdown: CancellationToken::new(),
        }
    }

    /// The store, for blocking calls from a non-async thread (the shell).
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// A random id for this process, sent in `Join`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The bound replication address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen_addr
    }

    /// Cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// Runs `f` on the store in the blocking pool, off the async runtime's threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KvStore) -> Result<T> + Send + 'static,
    {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(store.as_ref())).await?
    }

    /// A primary write of one op: [`Node::write_all`] of `vec![op]`. Returns the new seq,
    /// or `None` for a delete of an absent key.
    pub async fn write(&self, op: Op) -> Result<Option<u64>> {
        let seqs = self.write_all(vec![op]).await?;
        match seqs.as_slice() {
            [seq] => Ok(*seq),
            _ => Err(Error::Invalid("the write path lost the op's seq".into())),
        }
    }

    /// The one write path of a primary: commits `ops` atomically (one transaction,
    /// consecutive seqs, in order), grouped with the other writes waiting at the same
    /// moment, and returns once they are durable and the senders are woken. Returns each
    /// op's seq, `None` for a delete of a key absent at that point. Replicas refuse.
    pub async fn write_all(&self, ops: Vec<Op>) -> Result<Vec<Option<u64>>> {
        if ops.is_empty() && self.role == Role::Primary {
            return Ok(Vec::new());
        }
        self.start_write(ops).await?.durable().await
    }

    /// Queues an atomic write without waiting for it: a client pipelining writes queues
    /// them all, so they share one commit, and collects the results in order later.
    pub async fn start_write(&self, ops: Vec<Op>) -> Result<PendingWrite> {
        if self.role != Role::Primary {
            return Err(Error::ReadOnly(
                "replicas do not accept writes; write on the primary".into(),
            ));
        }
        // Every primary has a writer (see `Node::new`).
        let Some(writer) = &self.writer else {
            return Err(Error::Shutdown);
        };
        writer.submit(ops).await
    }

    /// How many transactions the write path has committed: with group commit, fewer than
    /// the writes when writes overlap. 0 on a replica.
    pub fn commits(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::commits)
    }

    /// Records that the store's head reached `seq`, waking senders waiting at the head.
    pub fn notify_head(&self, seq: u64) {
        advance_head(&self.head, seq);
    }

    /// Sets the head after the store's history was replaced (a snapshot install), where
    /// it may move backwards.
    pub fn reset_head(&self, seq: u64) {
        self.head.send_replace(seq);
    }

    /// A receiver of the head seq, for senders waiting at the head.
    pub fn subscribe_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// A token cancelled when this node's contents are replaced by a snapshot: connections
    /// streaming the old history to chained replicas must then end.
    pub fn history_reset_token(&self) -> CancellationToken {
        lock(&self.history_reset).child_token()
    }

    /// Ends every downstream stream of the old history (after a snapshot install).
    pub fn reset_history(&self) {
        let old = std::mem::replace(&mut *lock(&self.history_reset), CancellationToken::new());
        old.cancel();
    }

    /// Registers a connected replica; it is listed until [`Node::remove_downstream`].
    pub fn add_downstream(&self, status: DownstreamStatus) -> u64 {
        let id = self.next_downstream.fetch_add(1, Ordering::Relaxed);
        lock(&self.downstreams).insert(id, status);
        id
    }

    /// Records an ack from a connected replica.
    pub fn record_ack(&self, id: u64, seq: u64) {
        if let Some(status) = lock(&self.downstreams).get_mut(&id) {
            status.acked_seq = status.acked_seq.max(seq);
            status.last_ack = Instant::now();
        }
    }

    /// Forgets a replica whose connection ended.
    pub fn remove_downstream(&self, id: u64) {
        lock(&self.downstreams).remove(&id);
    }

    /// The connected replicas.
    pub fn downstreams(&self) -> Vec<DownstreamStatus> {
        lock(&self.downstreams).values().cloned().collect()
    }

    /// The upstream link's status (replica).
    pub fn link(&self) -> LinkStatus {
        lock(&self.link).clone()
    }

    /// Changes the upstream link's status.
    pub fn update_link(&self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut lock(&self.link));
    }
}

/// Moves `head` forward to `seq` (never back), waking its receivers if it moved.
fn advance_head(head: &watch::Sender<u64>, seq: u64) {
    head.send_if_modified(|head| {
        let newer = seq > *head;
        if newer {
            *head = seq;
        }
        newer
    });
}

#[cfg(test)]
mod tests;
