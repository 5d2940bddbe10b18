//! Replication: the state a node keeps about it ([`Replication`]), the decisions as plain
//! code that tests call without sockets ([`plan_sync`], the replica's [`Receiver`], the
//! upstream's [`InFlight`] window, the [`LinkFence`]), and the tasks that drive them over
//! TCP: [`sender`] (an upstream serving one replica: snapshot or log, then live entries)
//! and [`receiver`] (a replica's link to its upstream), started by a [`ReplicaLink`].
//!
//! A node is an upstream to the replicas connected to it ([`Downstreams`]) whatever its
//! role, and a replica follows at most one upstream ([`LinkStatus`]).

mod acks;
mod backoff;
pub mod downstreams;
pub mod fence;
mod handshake;
pub mod link;
pub mod link_auth;
mod machine;
mod plan;
pub mod receiver;
mod report;
pub mod sender;
pub mod window;

pub use backoff::Backoff;
pub use downstreams::{DownstreamStatus, Downstreams};
pub use fence::LinkFence;
pub use link::{LinkMode, LinkState, LinkStatus, ReplicaLink};
pub use machine::{Receiver, Step};
pub use plan::{
    decide, first_look, plan_sync, Bisection, Crossing, Divergence, FirstLook, FullResyncReason,
    JoinerState, SyncPlan, UpstreamState,
};
pub use window::InFlight;

use crate::auth::Secret;
use crate::error::Result;
use crate::locks::lock;
use crate::net::tls::Tls;
use crate::store::{new_node_id, KvStore};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How long a new connection may take to send its `Join`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An idle link carries a heartbeat this often, in both directions: a replica acks its
/// applied seq at least this often, and an upstream tells its head at least this often.
pub const PING_INTERVAL: Duration = Duration::from_secs(1);
/// A peer from which nothing at all arrives for this long is treated as dead.
pub const DEAD_PEER: Duration = Duration::from_secs(5);
/// How long a replica waits for its upstream to accept a connection.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Most log entries an upstream reads from its store in one go...
pub const LOG_BATCH: usize = 1000;
/// ...and at most about this many bytes of them (one larger entry goes alone); a replica
/// applies at most this many bytes of entries in one transaction, too.
pub const LOG_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// Most log entries a replica applies in one transaction: as many as have arrived. A
/// replica catching up applies its backlog in few large transactions, each writing a
/// page changed by many entries once, not once per thousand entries.
pub const APPLY_BATCH: usize = 65_536;

/// A node's replication state, shared by its upstream side (the replicas it serves) and
/// its replica side (the link it follows): the store both sides read and write, the head
/// watch that wakes senders, the registry of downstream replicas, the upstream link's
/// status and fence, and the tasks to wait for when the node stops.
pub struct Replication {
    store: Arc<dyn KvStore>,
    node_id: String,
    listen_addr: SocketAddr,
    head: watch::Sender<u64>,
    history_reset: Mutex<CancellationToken>,
    downstreams: Downstreams,
    link: Mutex<LinkStatus>,
    fence: LinkFence,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Promotions the upstream asked for (`FAILOVER`), for the node to carry out.
    promotions: watch::Sender<Option<u64>>,
    /// The shared secret both ends of every link prove (`--auth-file`), set once at start.
    secret: OnceLock<Arc<Secret>>,
    /// TLS on every replication link (`--tls-*`), set once at start.
    tls: OnceLock<Arc<Tls>>,
}

impl Replication {
    /// The replication state of a node serving `store`, whose replication listener is
    /// bound to `listen_addr`; the head watch starts at the store's head.
    pub fn new(store: Arc<dyn KvStore>, listen_addr: SocketAddr) -> Result<Self> {
        let head = watch::Sender::new(store.head_seq()?);
        let node_id = store.meta("node_id")?.unwrap_or_else(new_node_id);
        Ok(Replication {
            store,
            node_id,
            listen_addr,
            head,
            history_reset: Mutex::new(CancellationToken::new()),
            downstreams: Downstreams::default(),
            link: Mutex::new(LinkStatus::default()),
            fence: LinkFence::default(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            promotions: watch::Sender::new(None),
            secret: OnceLock::new(),
            tls: OnceLock::new(),
        })
    }

    /// Requires `secret` on every replication link from now on (both ends prove it; see
    /// [`link_auth`]). Set once, at start, before any link runs.
    pub fn require_secret(&self, secret: Arc<Secret>) {
        let _ = self.secret.set(secret);
    }

    /// The shared secret links prove, if any.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.get().map(Arc::as_ref)
    }

    /// Speaks TLS on every replication link from now on, both ways (mutual).
    pub fn require_tls(&self, tls: Arc<Tls>) {
        let _ = self.tls.set(tls);
    }

    /// The TLS setup of links, if any.
    pub fn tls(&self) -> Option<&Tls> {
        self.tls.get().map(Arc::as_ref)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn KvStore> {
        &self.store
    }

    /// This node's id (`meta.node_id`), sent in `Join`: an upstream counts a replica once
    /// however many connections it has.
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

    /// The node's connection tasks: waited for (briefly) when it stops, so that links can
    /// say goodbye.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
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

    /// The head watch's sender, for the primary's writer.
    pub fn head_sender(&self) -> watch::Sender<u64> {
        self.head.clone()
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
        self.downstreams.new_epoch();
    }

    /// The replicas connected to this node.
    pub fn downstreams(&self) -> &Downstreams {
        &self.downstreams
    }

    /// The upstream link's status (replica).
    pub fn link(&self) -> LinkStatus {
        lock(&self.link).clone()
    }

    /// Changes the upstream link's status.
    pub fn update_link(&self, change: impl FnOnce(&mut LinkStatus)) {
        change(&mut lock(&self.link));
    }

    /// The fence that keeps a replaced link from writing.
    pub fn fence(&self) -> &LinkFence {
        &self.fence
    }

    /// Records that the upstream handed over at `seq` (`FAILOVER`): the node, which
    /// watches [`promotions`](Self::promotions), promotes itself.
    pub fn request_promotion(&self, seq: u64) {
        self.promotions.send_replace(Some(seq));
    }

    /// A receiver of the promotions the upstream asked for.
    pub fn promotions(&self) -> watch::Receiver<Option<u64>> {
        self.promotions.subscribe()
    }

    /// Stops the node's replication: cancels every link and connection, and waits up to
    /// `grace` for them to end (an upstream tells its replicas it is stopping).
    pub async fn stop(&self, grace: Duration) {
        self.shutdown.cancel();
        self.tasks.close();
        let _ = tokio::time::timeout(grace, self.tasks.wait()).await;
    }
}

/// Moves `head` forward to `seq` (never back), waking its receivers if it moved.
pub fn advance_head(head: &watch::Sender<u64>, seq: u64) {
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
