//! The replicas connected to this node (its downstreams): who each is, how far it has been
//! sent and how far it has acknowledged in *this* history, and when it was last heard
//! from. The upstream's sender registers each connection ([`Downstreams::register`]);
//! `WAIT`, `STATUS` and `INFO` read the registry; every ack that moves a replica forward
//! wakes whoever waits for acks (a watch, no polling).
//!
//! An acked position counts only what the replica holds of this node's history: it starts
//! at the replica's seq for a partial resync and at 0 for a full one (until the snapshot
//! is installed and acked), and it never exceeds what was actually sent on this
//! connection, so a replica that claims more (its seq of another history) is not counted.

use crate::locks::lock;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Who a connected replica is, as it introduced itself.
#[derive(Clone, Debug)]
pub struct ReplicaIdentity {
    /// The replica's node id (made once per database, so it survives restarts).
    pub node_id: String,
    /// The address the replica serves on, as it reported it.
    pub replica_addr: String,
    /// The address its connection comes from.
    pub peer: SocketAddr,
}

/// What an upstream knows about one connected replica, at one moment.
#[derive(Clone, Debug)]
pub struct DownstreamStatus {
    /// Who it is.
    pub identity: ReplicaIdentity,
    /// Everything up to this seq of this node's history is durable on the replica.
    pub acked_seq: u64,
    /// The last seq sent to it (entries, or the snapshot's seq once the snapshot is sent).
    pub sent_seq: u64,
    /// When it was last heard from (an ack or a heartbeat).
    pub last_heard: Instant,
    /// When it last acked (`None` until it has synced on this connection).
    pub last_ack: Option<Instant>,
}

/// One registered replica connection.
struct Downstream {
    identity: ReplicaIdentity,
    sent: AtomicU64,
    acked: watch::Sender<u64>,
    last_heard: Mutex<Instant>,
    last_ack: Mutex<Option<Instant>>,
    /// Set by `FAILOVER`: tell this replica to promote itself at this seq.
    promote: watch::Sender<Option<u64>>,
    /// The history epoch it was registered in (see [`Downstreams::new_epoch`]).
    epoch: u64,
}

/// The registry shared by the sender tasks and the readers of replica state.
#[derive(Default)]
struct Registry {
    replicas: Mutex<BTreeMap<u64, Arc<Downstream>>>,
    next_id: AtomicU64,
    /// Bumped whenever an acked position moves or a replica comes or goes.
    changes: watch::Sender<u64>,
    /// Bumped whenever this node's history changes: acks of a later epoch say nothing
    /// about writes of an earlier one.
    epoch: AtomicU64,
    /// A promotion `FAILOVER` asked for (replica node id, seq), also for connections the
    /// replica makes after it was asked.
    pending_promotion: Mutex<Option<(String, u64)>>,
}

/// The replicas connected to this node; cheap to clone (one shared registry).
#[derive(Clone, Default)]
pub struct Downstreams {
    registry: Arc<Registry>,
}

/// A replica's registration, held by the task serving its connection: it records what is
/// sent and acked, and removes the replica from the registry when dropped.
pub struct Registration {
    id: u64,
    downstream: Arc<Downstream>,
    registry: Arc<Registry>,
}

impl Downstreams {
    /// Registers a replica connection whose acked and sent positions both start at
    /// `start` (its seq for a partial resync, 0 for a full one).
    pub fn register(&self, identity: ReplicaIdentity, start: u64) -> Registration {
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        let pending = lock(&self.registry.pending_promotion)
            .as_ref()
            .filter(|(node_id, _)| *node_id == identity.node_id)
            .map(|(_, seq)| *seq);
        let downstream = Arc::new(Downstream {
            identity,
            sent: AtomicU64::new(start),
            acked: watch::Sender::new(start),
            last_heard: Mutex::new(Instant::now()),
            last_ack: Mutex::new(None),
            promote: watch::Sender::new(pending),
            epoch: self.epoch(),
        });
        lock(&self.registry.replicas).insert(id, Arc::clone(&downstream));
        self.registry.changed();
        Registration {
            id,
            downstream,
            registry: Arc::clone(&self.registry),
        }
    }

    /// The connected replicas, in the order they connected.
    pub fn list(&self) -> Vec<DownstreamStatus> {
        let replicas = lock(&self.registry.replicas);
        replicas.values().map(|d| d.status()).collect()
    }

    /// The current history epoch.
    pub fn epoch(&self) -> u64 {
        self.registry.epoch.load(Ordering::SeqCst)
    }

    /// This node's history changed (a snapshot installed, a fork adopted, a promotion):
    /// waits for acks of the old history end, and replicas registered from now on count
    /// only for writes of the new one.
    pub fn new_epoch(&self) {
        self.registry.epoch.fetch_add(1, Ordering::SeqCst);
        self.registry.changed();
    }

    /// How many replicas have acknowledged `seq` of this epoch's history, each counted
    /// once however many connections it has (a replica that reconnected while its old
    /// connection is not yet declared dead is one replica, by its node id).
    pub fn count_acked(&self, seq: u64) -> usize {
        self.count_acked_in(seq, self.epoch())
    }

    fn count_acked_in(&self, seq: u64, epoch: u64) -> usize {
        self.count_replicas(|d| d.epoch == epoch && *d.acked.borrow() >= seq)
    }

    /// How many replicas have a connection that `counts`, each counted once by node id.
    fn count_replicas(&self, counts: impl Fn(&Downstream) -> bool) -> usize {
        let replicas = lock(&self.registry.replicas);
        let counted: BTreeSet<&str> = replicas
            .values()
            .filter(|d| counts(d))
            .map(|d| d.identity.node_id.as_str())
            .collect();
        counted.len()
    }

    /// How many replicas acked within `max_lag` (Redis's "good replicas" of
    /// `min-replicas-max-lag`), each counted once. A replica acks only once it has synced,
    /// and an idle one acks every second, so a healthy replica always counts.
    pub fn count_good(&self, max_lag: Duration) -> usize {
        self.count_replicas(|d| lock(&d.last_ack).is_some_and(|at| at.elapsed() <= max_lag))
    }

    /// Waits until the replica `node_id` acked `seq` or `deadline` passes; returns its
    /// acked position then (0 when it is not connected).
    pub async fn wait_for_replica(
        &self,
        node_id: &str,
        seq: u64,
        deadline: tokio::time::Instant,
    ) -> u64 {
        let acked = || self.acked_by(node_id);
        self.watch_until(Some(deadline), acked, |&acked| acked >= seq)
            .await
    }

    /// The furthest position replica `node_id` acked, over its connections.
    fn acked_by(&self, node_id: &str) -> u64 {
        let replicas = lock(&self.registry.replicas);
        replicas
            .values()
            .filter(|d| d.identity.node_id == node_id)
            .map(|d| *d.acked.borrow())
            .max()
            .unwrap_or(0)
    }

    /// Tells replica `node_id` to promote itself at `seq` (`FAILOVER`), on each of its
    /// connections, and on any it makes until [`clear_promotion`](Self::clear_promotion);
    /// false if it is not connected now.
    pub fn request_promotion(&self, node_id: &str, seq: u64) -> bool {
        *lock(&self.registry.pending_promotion) = Some((node_id.to_string(), seq));
        let replicas = lock(&self.registry.replicas);
        let mut asked = false;
        for d in replicas.values().filter(|d| d.identity.node_id == node_id) {
            d.promote.send_replace(Some(seq));
            asked = true;
        }
        asked
    }

    /// Forgets the promotion asked for (the `FAILOVER` ended).
    pub fn clear_promotion(&self) {
        *lock(&self.registry.pending_promotion) = None;
    }

    /// Waits until `wanted` replicas have acknowledged `seq`, or until `deadline` (none:
    /// no limit); returns how many had then. Woken by acks, not by polling.
    /// Acks count only in history `epoch`; once the history changed, the wait ends.
    pub async fn wait_for_acks(
        &self,
        (seq, epoch): (u64, u64),
        wanted: usize,
        deadline: Option<tokio::time::Instant>,
    ) -> usize {
        let count = || self.count_acked_in(seq, epoch);
        let done = |&count: &usize| count >= wanted || self.epoch() != epoch;
        self.watch_until(deadline, count, done).await
    }

    /// Reads `state` again on every change of the registry (acks, replicas coming and
    /// going, a new epoch) until it is `done` or `deadline` (none: no limit) passes;
    /// returns the last reading. Woken by the changes watch, not by polling.
    async fn watch_until<T>(
        &self,
        deadline: Option<tokio::time::Instant>,
        state: impl Fn() -> T,
        done: impl Fn(&T) -> bool,
    ) -> T {
        let mut changes = self.registry.changes.subscribe();
        loop {
            // Marked seen before reading, so a change after the reading still wakes us.
            changes.borrow_and_update();
            let now = state();
            if done(&now) {
                return now;
            }
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, changes.changed())
                    .await
                    .ok(),
                None => Some(changes.changed().await),
            };
            if !matches!(changed, Some(Ok(()))) {
                return state();
            }
        }
    }
}

impl Registry {
    fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Downstream {
    fn status(&self) -> DownstreamStatus {
        DownstreamStatus {
            identity: self.identity.clone(),
            acked_seq: *self.acked.borrow(),
            sent_seq: self.sent.load(Ordering::Relaxed),
            last_heard: *lock(&self.last_heard),
            last_ack: *lock(&self.last_ack),
        }
    }
}

impl Registration {
    /// Records that everything up to `seq` has been sent (a log entry, or a whole snapshot
    /// at `seq`).
    pub fn sent(&self, seq: u64) {
        self.downstream.sent.fetch_max(seq, Ordering::Relaxed);
    }

    /// Records an ack of `seq` from the replica, clamped to what was sent; returns the
    /// acked position.
    pub fn ack(&self, seq: u64) -> u64 {
        self.heard();
        *lock(&self.downstream.last_ack) = Some(Instant::now());
        let seq = seq.min(self.downstream.sent.load(Ordering::Relaxed));
        let moved = self.downstream.acked.send_if_modified(|acked| {
            let newer = seq > *acked;
            if newer {
                *acked = seq;
            }
            newer
        });
        if moved {
            self.registry.changed();
        }
        *self.downstream.acked.borrow()
    }

    /// Records that the replica was heard from (any message).
    pub fn heard(&self) {
        *lock(&self.downstream.last_heard) = Instant::now();
    }

    /// A receiver of the promotion `FAILOVER` asks of this replica, for the sender.
    pub fn promotion(&self) -> watch::Receiver<Option<u64>> {
        self.downstream.promote.subscribe()
    }

    /// A receiver of this replica's acked position, for the sender's window.
    pub fn acked(&self) -> watch::Receiver<u64> {
        self.downstream.acked.subscribe()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        lock(&self.registry.replicas).remove(&self.id);
        self.registry.changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> ReplicaIdentity {
        ReplicaIdentity {
            node_id: "n".into(),
            replica_addr: "127.0.0.1:1".into(),
            peer: SocketAddr::from(([127, 0, 0, 1], 2)),
        }
    }

    #[test]
    fn a_full_resync_counts_nothing_until_the_snapshot_is_sent_and_acked() {
        let downstreams = Downstreams::default();
        let replica = downstreams.register(identity(), 0);
        // A replica of another history claims seq 500 before it holds anything.
        assert_eq!(replica.ack(500), 0, "nothing was sent: nothing is acked");
        assert_eq!(downstreams.count_acked(1), 0);
        replica.sent(40); // the snapshot at 40 is sent...
        assert_eq!(downstreams.count_acked(1), 0, "...but not yet acked");
        assert_eq!(replica.ack(500), 40, "an ack never exceeds what was sent");
        assert_eq!(downstreams.count_acked(40), 1);
        assert_eq!(downstreams.count_acked(41), 0);
        drop(replica);
        assert!(downstreams.list().is_empty());
    }

    #[test]
    fn a_replica_with_two_connections_counts_once() {
        let downstreams = Downstreams::default();
        let old = downstreams.register(identity(), 9);
        let new = downstreams.register(identity(), 9);
        assert_eq!(downstreams.count_acked(9), 1, "the same node id");
        assert_eq!(downstreams.list().len(), 2, "both connections are listed");
        drop((old, new));
    }

    #[test]
    fn a_partial_resync_starts_at_the_replicas_seq() {
        let downstreams = Downstreams::default();
        let _replica = downstreams.register(identity(), 7);
        assert_eq!(downstreams.count_acked(7), 1);
        assert_eq!(downstreams.count_acked(8), 0);
    }

    #[tokio::test]
    async fn waiting_for_acks_wakes_on_an_ack_and_gives_up_at_the_deadline() {
        let downstreams = Downstreams::default();
        let replica = downstreams.register(identity(), 0);
        replica.sent(5);
        let waiter = {
            let downstreams = downstreams.clone();
            tokio::spawn(async move { downstreams.wait_for_acks((5, 0), 1, None).await })
        };
        tokio::task::yield_now().await;
        replica.ack(5);
        assert_eq!(waiter.await.expect("waiter"), 1);
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
        assert_eq!(downstreams.wait_for_acks((6, 0), 1, Some(soon)).await, 0);
    }

    #[tokio::test]
    async fn acks_of_a_later_history_do_not_confirm_a_write_of_an_earlier_one() {
        let downstreams = Downstreams::default();
        let epoch = downstreams.epoch();
        let waiter = {
            let downstreams = downstreams.clone();
            tokio::spawn(async move { downstreams.wait_for_acks((2, epoch), 1, None).await })
        };
        tokio::task::yield_now().await;
        // The history changes (a snapshot installed): the wait ends unconfirmed, and a
        // replica of the new history acking far past seq 2 counts for nothing old.
        downstreams.new_epoch();
        assert_eq!(waiter.await.expect("waiter"), 0);
        let replica = downstreams.register(identity(), 0);
        replica.sent(6);
        replica.ack(6);
        assert_eq!(downstreams.count_acked(2), 1);
        let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
        assert_eq!(
            downstreams.wait_for_acks((2, epoch), 1, Some(soon)).await,
            0
        );
    }
}
