//! A running node: its role, a state machine that promotion and re-pointing change at
//! run time ([`role`]), its store, its replication state ([`Replication`]: downstream
//! replicas, the upstream link's status and fence), the controller of its link to an
//! upstream ([`ReplicaLink`]), the write path (group commit on a writer thread, see
//! [`writer`]) and the memory budget of its client connections ([`budget`]). The shell,
//! the client port and the replication tasks all hold an `Arc<Node>` or its
//! [`Replication`].

pub mod budget;
pub mod compute;
pub mod durability;
pub mod expiry;
pub mod failover;
pub mod lease;
pub mod retention;
pub mod role;
pub mod status;
pub mod writer;

use crate::error::{Error, Result};
use crate::locks::lock;
use crate::replication::receiver::SyncReport;
use crate::replication::{LinkMode, LinkStatus, ReplicaLink, Replication};
use crate::store::history::short_id;
use crate::store::{check_key_size, Bytes, KvStore, Op, Position, Role, Unfenced};
use budget::{Charge, MemoryBudget};
use compute::{Change, Outcome};
pub use durability::{Durability, PendingWrite};
use failover::FailoverState;
use lease::WriteLease;
use role::{plan, RoleRequest};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::info;
use writer::Writer;

/// How long a stopping node waits for its links to say goodbye.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A running node.
pub struct Node {
    role: Mutex<Role>,
    /// Held while the role changes, so two requests never interleave; counts the changes,
    /// so undoing one can tell whether another came after it.
    changing: Mutex<u64>,
    repl: Arc<Replication>,
    /// The group-commit writer thread.
    writer: Writer,
    /// Which upstream the node follows, while it is a replica.
    link: ReplicaLink,
    budget: MemoryBudget,
    /// What a write waits for; `CONFIG SET` changes the `min-replicas-*` part at run time.
    durability: Mutex<Durability>,
    /// Keys the expiry sweep deleted since the node started (`INFO stats`).
    expired_keys: AtomicU64,
    /// Every write passes it (shared) on its way to the writer; `FAILOVER` closes it
    /// (exclusive), so writes wait while it hands over, and none slips past its head.
    write_gate: tokio::sync::RwLock<()>,
    /// Where a `FAILOVER` stands.
    failover_state: watch::Sender<FailoverState>,
    /// Held by the one `FAILOVER` running.
    failing_over: tokio::sync::Mutex<()>,
    /// In a cluster: whether this node holds the primary key, with a lease fresh enough
    /// to write (checked on every write); off outside a cluster.
    lease: Arc<WriteLease>,
}

/// A request to follow an upstream, as [`Node::follow`] started it: its first sync, and
/// what [`Node::undo_follow`] needs to put the node back if that fails.
pub struct Following {
    /// The link's first sync (or why it failed).
    pub first_sync: oneshot::Receiver<Result<SyncReport>>,
    /// The role change this was (see `Node::changing`).
    change: u64,
    /// The role before.
    was: Role,
    /// The upstream followed before, if any.
    previous: Option<String>,
    /// The history before.
    history: Option<String>,
}

/// What a promotion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Promotion {
    /// The node was already the primary.
    AlreadyPrimary,
    /// The node is now the primary of the new history at this position.
    Promoted(Position),
}

impl Promotion {
    /// The shell's line for it.
    pub fn line(&self) -> String {
        match self {
            Promotion::AlreadyPrimary => "this node is already the primary".into(),
            Promotion::Promoted(position) => {
                let id = position.history_id.as_deref().unwrap_or_default();
                match &position.fork {
                    Some(fork) => format!(
                        "Promoted: new history {}… continues {}… after seq {}; accepting writes",
                        short_id(id),
                        short_id(&fork.prev_history_id),
                        fork.seq
                    ),
                    None => format!("Promoted: new history {}…; accepting writes", short_id(id)),
                }
            }
        }
    }
}

impl Node {
    /// A node serving `store` in the role stored with it, whose replication listener is
    /// bound to `listen_addr`, running its tasks on `runtime`, with `client_memory` bytes
    /// of budget for client requests, writing only while `lease` allows
    /// ([`WriteLease::off`] outside a cluster).
    ///
    /// Every node starts its writer thread, because a replica may be promoted at any
    /// time; a replica's writes are refused before they would reach it.
    pub fn new(
        store: Arc<dyn KvStore>,
        listen_addr: SocketAddr,
        runtime: Handle,
        client_memory: usize,
        lease: WriteLease,
    ) -> Result<Self> {
        let role = store.role()?;
        let repl = Arc::new(Replication::new(Arc::clone(&store), listen_addr)?);
        let lease = Arc::new(lease);
        let writer = Writer::start(store, repl.head_sender(), Arc::clone(&lease));
        let link = ReplicaLink::new(Arc::clone(&repl), runtime);
        Ok(Node {
            role: Mutex::new(role),
            changing: Mutex::new(0),
            repl,
            writer,
            link,
            budget: MemoryBudget::new(client_memory),
            durability: Mutex::new(Durability::default()),
            expired_keys: AtomicU64::new(0),
            write_gate: tokio::sync::RwLock::new(()),
            failover_state: watch::Sender::new(FailoverState::NoFailover),
            failing_over: tokio::sync::Mutex::new(()),
            lease,
        })
    }

    /// The node with these durability options (what a write waits for while it is the
    /// primary).
    pub fn with_durability(self, durability: Durability) -> Self {
        *lock(&self.durability) = durability;
        self
    }

    /// The durability options, as they are now.
    pub fn durability(&self) -> Durability {
        *lock(&self.durability)
    }

    /// Changes the durability options for the writes that follow (`CONFIG SET`).
    pub fn set_durability(&self, durability: Durability) {
        *lock(&self.durability) = durability;
    }

    /// The node's standing in its cluster (off outside one).
    pub fn lease(&self) -> &WriteLease {
        &self.lease
    }

    /// Refuses a role change by hand (`PROMOTE`, `JOIN`, `REPLICAOF`) in a cluster, where
    /// etcd chooses the primary.
    pub fn check_manual_role_change(&self) -> Result<()> {
        match self.lease.cluster() {
            Some(name) => Err(Error::Invalid(format!(
                "this node is in cluster {name}, whose primary etcd chooses; use FAILOVER on \
                 the primary to move the role"
            ))),
            None => Ok(()),
        }
    }

    /// Where a `FAILOVER` stands.
    pub fn failover_state(&self) -> FailoverState {
        *self.failover_state.borrow()
    }

    /// Promotes a replica (`REPLICAOF NO ONE`, `PROMOTE`): stops following, then, in one
    /// transaction, starts a new history that forks from the current one at the applied
    /// seq and stores the primary role. Writes are accepted from then on; replicas
    /// chained below this node rejoin and continue across the fork. Blocking (SQLite).
    pub fn promote(&self) -> Result<Promotion> {
        self.promote_if_at(None, None)
    }

    /// A promotion its upstream asked for (`FAILOVER`): only if this node holds exactly
    /// `seq`, where the upstream paused; otherwise it follows that upstream again.
    pub fn promote_at(&self, seq: u64) -> Result<Promotion> {
        self.promote_if_at(Some(seq), None)
    }

    /// A cluster election won: a new history of fencing epoch `epoch` (see
    /// [`Self::promote`]). Writes still wait for the lease ([`WriteLease::take_office`]).
    pub fn promote_in_epoch(&self, epoch: u64) -> Result<Promotion> {
        self.promote_if_at(None, Some(epoch))
    }

    /// Stops taking writes (a primary is demoted) and stops following (a cluster member
    /// that lost the primary key, or waits for an election). Blocking (SQLite).
    pub fn stand_down(&self) -> Result<()> {
        let mut changing = lock(&self.changing);
        self.lease.leave_office();
        let steps = plan(self.role(), &RoleRequest::StandDown);
        *changing += 1;
        if steps.demote {
            self.demote()?;
            info!("stood down: no longer the primary");
        }
        if steps.stop_link {
            self.link.stop();
            self.repl.update_link(|link| *link = LinkStatus::default());
        }
        Ok(())
    }

    /// Refuses writes from now on (in memory first, then in the file).
    fn demote(&self) -> Result<()> {
        *lock(&self.role) = Role::Replica;
        self.lease.leave_office();
        if let Err(e) = self.store().set_role(Role::Replica) {
            *lock(&self.role) = Role::Primary;
            return Err(e);
        }
        Ok(())
    }

    fn promote_if_at(&self, expected: Option<u64>, epoch: Option<u64>) -> Result<Promotion> {
        let mut changing = lock(&self.changing);
        let steps = plan(self.role(), &RoleRequest::Promote);
        if !steps.promote {
            return Ok(Promotion::AlreadyPrimary);
        }
        *changing += 1;
        let previous = self.link.following();
        if steps.stop_link {
            self.link.stop();
        }
        let promoted = match (expected, self.store().head_seq()) {
            (Some(seq), Ok(head)) if head != seq => Err(Error::Invalid(format!(
                "asked to promote at seq {seq}, but this node holds up to {head}"
            ))),
            _ => self.store().promote(&Unfenced, epoch),
        };
        let position = match promoted {
            Ok(position) => position,
            Err(e) => {
                // Still a replica, with its history unchanged: follow what it followed.
                self.link.resume(previous);
                return Err(e);
            }
        };
        self.repl.update_link(|link| *link = LinkStatus::default());
        // Streams of the old history to chained replicas end (they rejoin across the
        // fork) before the first write of the new one can reach them.
        self.repl.reset_history();
        *lock(&self.role) = Role::Primary;
        let promotion = Promotion::Promoted(position);
        info!("{}", promotion.line());
        Ok(promotion)
    }

    /// Follows `upstream` (`REPLICAOF host port`, `JOIN`, `--join`), replacing any current
    /// link; a primary is demoted first: from then on it refuses writes, and a write
    /// already queued is refused by the store. Blocking (SQLite).
    pub fn follow(&self, upstream: String, mode: LinkMode) -> Result<Following> {
        let mut changing = lock(&self.changing);
        let was = self.role();
        let previous = self.link.following();
        let history = self.store().history_id()?;
        let steps = plan(was, &RoleRequest::Follow);
        *changing += 1;
        if steps.demote {
            self.demote()?;
            info!("demoted to a replica: following {upstream}");
        }
        Ok(Following {
            first_sync: self.link.follow(upstream, mode),
            change: *changing,
            was,
            previous,
            history,
        })
    }

    /// After a `JOIN` that failed before its first sync: follow the previous upstream
    /// again, or, for a node that was the primary, become the primary again. Only if no
    /// other role change came since and nothing was installed (its history is unchanged);
    /// returns whether it undid anything. Blocking.
    pub fn undo_follow(&self, following: &Following) -> Result<bool> {
        let changing = lock(&self.changing);
        if *changing != following.change {
            return Ok(false);
        }
        if following.was == Role::Primary {
            self.link.stop();
            if self.store().history_id()? != following.history {
                return Ok(false);
            }
            self.repl.update_link(|link| *link = LinkStatus::default());
            self.store().set_role(Role::Primary)?;
            *lock(&self.role) = Role::Primary;
            return Ok(true);
        }
        self.link.resume(following.previous.clone());
        Ok(true)
    }

    /// The store, for blocking calls from a non-async thread (the shell).
    pub fn store(&self) -> &Arc<dyn KvStore> {
        self.repl.store()
    }

    /// The node's role now.
    pub fn role(&self) -> Role {
        *lock(&self.role)
    }

    /// The replication state: downstream replicas, the upstream link's status, the head.
    pub fn replication(&self) -> &Arc<Replication> {
        &self.repl
    }

    /// The controller of the link to an upstream.
    pub fn link(&self) -> &ReplicaLink {
        &self.link
    }

    /// The memory budget of client requests.
    pub fn budget(&self) -> &MemoryBudget {
        &self.budget
    }

    /// Cancelled when the node shuts down.
    pub fn shutdown_token(&self) -> &CancellationToken {
        self.repl.shutdown_token()
    }

    /// Stops the node's tasks, giving its replication links a moment to say goodbye.
    pub async fn stop(&self) {
        self.repl.stop(STOP_GRACE).await;
    }

    /// Runs `f` on the store in the blocking pool, off the async runtime's threads.
    pub async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&dyn KvStore) -> Result<T> + Send + 'static,
    {
        self.repl.blocking(f).await
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
        if ops.is_empty() && self.role() == Role::Primary {
            return Ok(Vec::new());
        }
        self.start_write(ops, Charge::default())
            .await?
            .durable()
            .await
    }

    /// Queues an atomic write without waiting for it: a client pipelining writes queues
    /// them all, so they share one commit, and collects the results in order later. The
    /// write holds `charge` on the memory budget until it is committed. Keys and values
    /// beyond kv's limits are refused here, before anything is stored.
    pub async fn start_write(&self, ops: Vec<Op>, charge: Charge) -> Result<PendingWrite> {
        // Held until the write is queued: a FAILOVER waits for it, then measures its head.
        let _gate = self.write_gate.read().await;
        self.check_writable()?;
        ops.iter().try_for_each(Op::check_size)?;
        let downstreams = self.repl.downstreams();
        let durability = self.durability();
        durability.check_before_write(downstreams)?;
        let commit = self.writer.submit(ops, charge).await?;
        Ok(durability.pending(commit, downstreams))
    }

    /// Queues `change` (see [`compute`]) like [`start_write`](Self::start_write): the
    /// writer resolves it against the data when its batch commits. Its outcome arrives on
    /// the receiver, and means something once the write is durable.
    pub async fn start_change(
        &self,
        change: Change,
        charge: Charge,
    ) -> Result<(PendingWrite, oneshot::Receiver<Outcome>)> {
        let _gate = self.write_gate.read().await;
        self.check_writable()?;
        change.keys().into_iter().try_for_each(check_key_size)?;
        let downstreams = self.repl.downstreams();
        let durability = self.durability();
        durability.check_before_write(downstreams)?;
        let (commit, outcome) = self.writer.submit_change(change, charge).await?;
        Ok((durability.pending(commit, downstreams), outcome))
    }

    /// Commits `change` (see [`compute`]) and returns its outcome once durable.
    pub async fn change(&self, change: Change) -> Result<Outcome> {
        let (pending, outcome) = self.start_change(change, Charge::default()).await?;
        pending.durable().await?;
        outcome.await.map_err(|_| Error::Shutdown)
    }

    /// The sweep's delete of expired keys (see [`expiry`]): a [`Change::Purge`] of `keys`,
    /// like [`change`](Self::change), but neither refused for missing replicas
    /// (`--min-replicas-to-write`) nor waiting for synchronous ones: deleting what has
    /// already expired takes nothing a client could read, as Redis's expiry does not wait
    /// for replicas either. Returns how many keys it deleted.
    pub async fn purge_expired(&self, keys: Vec<Bytes>) -> Result<Outcome> {
        let (commit, outcome) = {
            let _gate = self.write_gate.read().await;
            self.check_writable()?;
            let purge = Change::Purge { keys };
            self.writer.submit_change(purge, Charge::default()).await?
        };
        commit.durable().await?;
        let outcome = outcome.await.map_err(|_| Error::Shutdown)?;
        if let Outcome::Int(removed) = outcome {
            let removed = u64::try_from(removed).unwrap_or(0);
            self.expired_keys.fetch_add(removed, Ordering::Relaxed);
        }
        Ok(outcome)
    }

    /// How many keys the expiry sweep deleted since the node started.
    pub fn expired_keys(&self) -> u64 {
        self.expired_keys.load(Ordering::Relaxed)
    }

    /// Refuses writes where this node may not take them: on a replica, or on a cluster
    /// primary whose lease lapsed.
    fn check_writable(&self) -> Result<()> {
        if self.role() != Role::Primary {
            return Err(Error::ReadOnly(
                "replicas do not accept writes; write on the primary".into(),
            ));
        }
        self.lease.check_write()
    }

    /// How many transactions the write path has committed: with group commit, fewer than
    /// the writes when writes overlap. 0 on a node that was never written to.
    pub fn commits(&self) -> u64 {
        self.writer.commits()
    }
}

#[cfg(test)]
mod tests;
