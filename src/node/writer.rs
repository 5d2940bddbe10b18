//! Group commit: a primary's one write path. Every write — from the shell, clients and
//! pipelines alike — is a request on a bounded queue read by one dedicated writer thread
//! (a plain `std::thread`: SQLite is blocking and must not run on the async runtime).
//!
//! The thread blocks for a request, then takes every request already waiting (up to
//! [`MAX_BATCH_REQUESTS`] requests or about [`MAX_BATCH_OPS`] ops) and commits them all
//! with [`KvStore::append_batch`]: one transaction, one fsync. Seqs follow the queue's
//! order, and a request's ops (an MSET) get consecutive seqs in the same transaction. A
//! lone writer is committed at once, with no timer: batches form only from writes that
//! arrive while the previous transaction is committing, so grouping adds no latency.
//!
//! Each request is answered only after its transaction committed, and the head watch is
//! advanced before the answers go out, so a caller that got its seq also sees the head
//! at or past it. If the transaction fails, every request in it gets the error: none of
//! them was stored. The queue is bounded in requests ([`QUEUE_CAPACITY`]), and each
//! client request carries its [`Charge`] on the node's memory budget until it is
//! committed, so a flood of writers waits (asynchronously) instead of growing memory. The
//! thread ends when the [`Writer`] is dropped (its queue closes) after committing what was
//! queued; the drop waits for it, so the thread's handle on the store is gone once the
//! node is (a SQLite file then closes cleanly).

use super::budget::Charge;
use super::compute::{Change, Outcome};
use super::lease::WriteLease;
use crate::error::{Error, Result};
use crate::replication::advance_head;
use crate::store::{BatchSeqs, KvStore, Op};
use batch::{Request, Resolved, Work};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::sync::{oneshot, watch};
use tracing::error;

mod batch;

/// Requests that may wait for the writer before senders have to wait too.
pub const QUEUE_CAPACITY: usize = 4096;

/// Bytes of resolved writes past which a batch commits and leaves the rest of its
/// requests to the next transaction.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;

/// Most requests committed in one transaction.
pub const MAX_BATCH_REQUESTS: usize = 1000;

/// A batch stops taking requests once it holds this many ops (a request is never split,
/// so one large request may exceed it).
pub const MAX_BATCH_OPS: usize = 10_000;

/// Each op's seq (`None`: a delete of an absent key), or why nothing was stored.
type Reply = Result<Vec<Option<u64>>>;

/// What the writer thread works with.
struct Committer {
    store: Arc<dyn KvStore>,
    /// Checked before every commit: a cluster primary whose lease lapsed commits nothing.
    lease: Arc<WriteLease>,
    head: watch::Sender<u64>,
    commits: Arc<AtomicU64>,
}

/// A queued write: resolves to each op's seq once its transaction is durable.
#[derive(Debug)]
pub struct PendingWrite(oneshot::Receiver<Reply>);

impl PendingWrite {
    /// Waits until the write is durable (or failed, storing nothing).
    pub async fn durable(self) -> Result<Vec<Option<u64>>> {
        // No answer means the writer thread is gone: the node is shutting down.
        self.0.await.map_err(|_| Error::Shutdown)?
    }
}

/// The handle of a running writer thread: submits requests and counts commits.
pub struct Writer {
    /// `None` only while dropping, to close the queue before joining the thread.
    queue: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread for `store`, advancing `head` after each commit, and
    /// committing only while `lease` allows writes. If the thread cannot be started, the
    /// failure is logged and every write is refused.
    pub fn start(
        store: Arc<dyn KvStore>,
        head: watch::Sender<u64>,
        lease: Arc<WriteLease>,
    ) -> Self {
        let (queue, requests) = mpsc::channel(QUEUE_CAPACITY);
        let commits = Arc::new(AtomicU64::new(0));
        let committer = Committer {
            store,
            lease,
            head,
            commits: Arc::clone(&commits),
        };
        let spawned = std::thread::Builder::new()
            .name("kv-writer".into())
            .spawn(move || committer.run(requests));
        // On failure the closure, and the receiving end with it, is dropped: the queue is
        // closed and every write gets `Error::Shutdown`.
        let thread = spawned
            .inspect_err(|e| error!("cannot start the writer thread; writes are refused: {e}"))
            .ok();
        Writer {
            queue: Some(queue),
            thread,
            commits,
        }
    }

    /// Queues `ops` to be committed atomically, grouped with whatever other writes are
    /// waiting, holding `charge` until then; the returned [`PendingWrite`] resolves once
    /// the transaction is durable. Writes queued one after another commit in that order.
    /// Waits (without blocking a thread) while the queue is full.
    pub async fn submit(&self, ops: Vec<Op>, charge: Charge) -> Result<PendingWrite> {
        let (reply, replied) = oneshot::channel();
        let Some(queue) = &self.queue else {
            return Err(Error::Shutdown);
        };
        let request = Request {
            work: Work::Ops(ops),
            reply,
            charge,
        };
        queue.send(request).await.map_err(|_| Error::Shutdown)?;
        Ok(PendingWrite(replied))
    }

    /// Queues `change` like [`submit`](Self::submit); its outcome arrives on the returned
    /// receiver before the write is durable, and means something only once it is.
    pub async fn submit_change(
        &self,
        change: Change,
        charge: Charge,
    ) -> Result<(PendingWrite, oneshot::Receiver<Outcome>)> {
        let (reply, replied) = oneshot::channel();
        let (outcome, outcome_rx) = oneshot::channel();
        let Some(queue) = &self.queue else {
            return Err(Error::Shutdown);
        };
        let request = Request {
            work: Work::Change(change, outcome),
            reply,
            charge,
        };
        queue.send(request).await.map_err(|_| Error::Shutdown)?;
        Ok((PendingWrite(replied), outcome_rx))
    }

    /// How many transactions the writer has committed.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has committed what was queued.
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            // The thread never panics (a panicking store is caught in `append`).
            let _ = thread.join();
        }
    }
}

impl Committer {
    /// The thread's loop: until the queue closes, commit whatever is waiting.
    fn run(self, mut requests: Receiver<Request>) {
        while let Some(first) = requests.blocking_recv() {
            let mut batch = gather(&mut requests, first);
            // Changes may write far more than they carry: a batch whose resolved writes
            // pass MAX_BATCH_BYTES commits, and the rest of it follows in the next.
            while !batch.is_empty() {
                let (resolved, rest) = Resolved::from(self.store.as_ref(), batch, MAX_BATCH_BYTES);
                self.commit(resolved);
                batch = rest;
            }
        }
    }

    /// Commits a resolved batch in one transaction, advances the head, then answers
    /// every request: the refused changes too, only now, as their refusal may rest on
    /// earlier writes of the batch (which, if the transaction fails, never happened).
    fn commit(&self, batch: Resolved) {
        let Resolved {
            ops,
            replies,
            charges,
            refused,
        } = batch;
        if ops.is_empty() {
            // Nothing written before them: their refusals rest on committed data.
            for (reply, why) in refused {
                let _ = reply.send(Err(why));
            }
            return;
        }
        let appended = self.append(&ops);
        // Committed (or failed): the requests' memory goes back to the budget.
        drop(ops);
        drop(charges);
        // A cluster primary whose lease lapsed during the commit (a stalled fsync, a
        // paused process) may no longer be the only one writing: the write is stored
        // here, but neither sent on nor confirmed (if another node took over, it ends up
        // in `diverged` when this one follows it).
        let appended = appended.and_then(|seqs| match self.lease.check_write() {
            Ok(()) => Ok(seqs),
            Err(Error::Fenced(reason)) => Err(Error::NotConfirmed(format!(
                "the write was committed on this node, but {reason}; it is not sent to \
                 replicas and may be discarded"
            ))),
            Err(other) => Err(other),
        });
        match appended {
            Ok(seqs) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                if let Some(&max) = seqs.iter().flatten().flatten().max() {
                    advance_head(&self.head, max);
                }
                // A caller that went away (a cancelled write) still had its write stored.
                for (reply, seqs) in replies.into_iter().zip(seqs) {
                    let _ = reply.send(Ok(seqs));
                }
                for (reply, why) in refused {
                    let _ = reply.send(Err(why));
                }
            }
            Err(err) => {
                let refused = refused.into_iter().map(|(reply, _)| reply);
                for reply in replies.into_iter().chain(refused) {
                    let _ = reply.send(Err(copy_error(&err)));
                }
            }
        }
    }

    /// `append_batch`, with a panic in the store turned into an error for the batch (its
    /// transaction rolled back while unwinding), so the writer thread survives it.
    fn append(&self, ops: &[Vec<Op>]) -> Result<BatchSeqs> {
        self.lease.check_write()?;
        catch_unwind(AssertUnwindSafe(|| self.store.append_batch(ops))).unwrap_or_else(|_| {
            Err(Error::Io(std::io::Error::other(
                "the store failed unexpectedly during a write",
            )))
        })
    }
}

/// `first` and every request already queued behind it, up to the batch limits.
fn gather(requests: &mut Receiver<Request>, first: Request) -> Vec<Request> {
    let mut ops = first.work.size();
    let mut batch = vec![first];
    while batch.len() < MAX_BATCH_REQUESTS && ops < MAX_BATCH_OPS {
        let Ok(next) = requests.try_recv() else {
            break;
        };
        ops += next.work.size();
        batch.push(next);
    }
    batch
}

/// A copy of `err` for each request of a failed batch (`Error` is not `Clone`): the same
/// variant where it holds plain data, otherwise an I/O error with the same message.
fn copy_error(err: &Error) -> Error {
    match err {
        Error::Unwritable { path, reason } => Error::Unwritable {
            path: path.clone(),
            reason: reason.clone(),
        },
        Error::Invalid(message) => Error::Invalid(message.clone()),
        Error::Corrupt(message) => Error::Corrupt(message.clone()),
        Error::ReadOnly(message) => Error::ReadOnly(message.clone()),
        Error::Fenced(message) => Error::Fenced(message.clone()),
        Error::NotConfirmed(message) => Error::NotConfirmed(message.clone()),
        Error::Shutdown => Error::Shutdown,
        other => Error::Io(std::io::Error::other(other.to_string())),
    }
}
