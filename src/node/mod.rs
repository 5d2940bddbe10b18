//! A running node: its role, its store, the replication state it shares with its links
//! ([`Replication`]), its link to an upstream (replicas: [`ReplicaLink`]), the write path
//! of a primary (group commit on a writer thread, see [`writer`]) and the memory budget of
//! its client connections ([`budget`]). The shell, the client port and the replication
//! tasks all hold an `Arc<Node>` or its [`Replication`].

pub mod budget;
pub mod retention;
pub mod status;
pub mod writer;

use crate::error::{Error, Result};
use crate::replication::{ReplicaLink, Replication};
use crate::store::{KvStore, Op, Role};
use budget::{Charge, MemoryBudget};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
pub use writer::PendingWrite;
use writer::Writer;

/// How long a stopping node waits for its links to say goodbye.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A running node.
pub struct Node {
    role: Role,
    repl: Arc<Replication>,
    /// The group-commit writer thread; primaries only (see [`Node::new`]).
    writer: Option<Writer>,
    /// The link to an upstream; replicas only.
    link: Option<ReplicaLink>,
    budget: MemoryBudget,
}

impl Node {
    /// A node serving `store` in `role`, whose replication listener is bound to
    /// `listen_addr`, running its tasks on `runtime`, with `client_memory` bytes of budget
    /// for client requests.
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
        runtime: Handle,
        client_memory: usize,
    ) -> Result<Self> {
        let repl = Arc::new(Replication::new(Arc::clone(&store), listen_addr)?);
        let writer = (role == Role::Primary).then(|| Writer::start(store, repl.head_sender()));
        let link = (role == Role::Replica).then(|| ReplicaLink::new(Arc::clone(&repl), runtime));
        Ok(Node {
            role,
            repl,
            writer,
            link,
            budget: MemoryBudget::new(client_memory),
        })
    }

    /// The store, for blocking calls from a non-async thread (the shell).
    pub fn store(&self) -> &Arc<dyn KvStore> {
        self.repl.store()
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The replication state: downstream replicas, the upstream link's status, the head.
    pub fn replication(&self) -> &Arc<Replication> {
        &self.repl
    }

    /// The link to an upstream (replicas only).
    pub fn link(&self) -> Option<&ReplicaLink> {
        self.link.as_ref()
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
        if ops.is_empty() && self.role == Role::Primary {
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
        if self.role != Role::Primary {
            return Err(Error::ReadOnly(
                "replicas do not accept writes; write on the primary".into(),
            ));
        }
        ops.iter().try_for_each(Op::check_size)?;
        // Every primary has a writer (see `Node::new`).
        let Some(writer) = &self.writer else {
            return Err(Error::Shutdown);
        };
        writer.submit(ops, charge).await
    }

    /// How many transactions the write path has committed: with group commit, fewer than
    /// the writes when writes overlap. 0 on a replica.
    #[cfg(test)]
    pub fn commits(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::commits)
    }
}

#[cfg(test)]
mod tests;
