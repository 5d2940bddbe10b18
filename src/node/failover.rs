//! A planned handoff that loses nothing (`FAILOVER` on the client port or in the shell):
//! the primary pauses its writes (they wait at the write gate), lets everything already
//! queued commit, waits until the target replica acked that head, tells it to promote
//! itself (a `Promote` message on its replication link), then demotes itself to follow
//! it. Writes that waited, and any later write, then get `-READONLY`; if the target does
//! not catch up in time, the handoff is abandoned and writes resume. The replica's side:
//! [`serve_promotions`] promotes a node whose upstream asked it to. In a cluster the
//! primary key moves instead: once the target caught up, the cluster agent gives the key
//! up naming the target, which wins it; nobody is promoted by a message.

use super::budget::Charge;
use super::Node;
use crate::error::{Error, Result};
use crate::replication::{DownstreamStatus, LinkMode};
use crate::store::Role;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How long `FAILOVER` waits for its target by default (Redis waits without limit unless
/// given `TIMEOUT`; a bound keeps a forgotten handoff from pausing writes for good).
pub const DEFAULT_FAILOVER_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a handoff stands, as `INFO replication` shows it (`master_failover_state`,
/// Redis's words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailoverState {
    /// No handoff running.
    #[default]
    NoFailover,
    /// Writes paused; waiting for the target to ack the head.
    WaitingForSync,
    /// The target was told to promote itself; this node is switching to follow it.
    FailoverInProgress,
}

impl FailoverState {
    /// Redis's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverState::NoFailover => "no-failover",
            FailoverState::WaitingForSync => "waiting-for-sync",
            FailoverState::FailoverInProgress => "failover-in-progress",
        }
    }
}

/// Sets the failover state back to no-failover when dropped.
struct StateReset<'a>(&'a tokio::sync::watch::Sender<FailoverState>);

impl Drop for StateReset<'_> {
    fn drop(&mut self) {
        self.0.send_replace(FailoverState::NoFailover);
    }
}

/// The replica a handoff goes to: the one at `target` (its replication address, as
/// `INFO replication` and `STATUS` list it), or else the one that acked furthest.
pub fn choose_target(
    replicas: &[DownstreamStatus],
    target: Option<&str>,
) -> Result<DownstreamStatus> {
    let chosen = match target {
        Some(addr) => replicas.iter().find(|r| r.identity.replica_addr == addr),
        None => replicas.iter().max_by_key(|r| r.acked_seq),
    };
    match (chosen, target) {
        (Some(replica), _) => Ok(replica.clone()),
        (None, Some(addr)) => Err(Error::Invalid(format!(
            "FAILOVER target {addr} is not a replica of this node"
        ))),
        (None, None) => Err(Error::Invalid(
            "FAILOVER requires connected replicas".into(),
        )),
    }
}

impl Node {
    /// Hands the primary role to a replica (the one at `target`, or the most caught up)
    /// without losing a write, waiting up to `timeout` for it to catch up. Returns the new
    /// primary's replication address.
    pub async fn failover(
        self: &Arc<Self>,
        target: Option<&str>,
        timeout: Duration,
    ) -> Result<String> {
        let Ok(_one_at_a_time) = self.failing_over.try_lock() else {
            return Err(Error::Invalid("FAILOVER already in progress".into()));
        };
        if self.role() != Role::Primary {
            return Err(Error::Invalid(
                "FAILOVER is for a primary; this node is a replica".into(),
            ));
        }
        let chosen = choose_target(&self.replication().downstreams().list(), target)?;
        let addr = chosen.identity.replica_addr.clone();
        info!("FAILOVER to {addr}: pausing writes");
        // Back to no-failover however this ends, even if the future is dropped.
        let _state = StateReset(&self.failover_state);
        self.failover_state
            .send_replace(FailoverState::WaitingForSync);
        // Writes wait here (the gate) from now until the handoff ends either way.
        let deadline = tokio::time::Instant::now() + timeout;
        let outcome = match tokio::time::timeout_at(deadline, self.write_gate.write()).await {
            Ok(_gate) => self.hand_over(&chosen, timeout, deadline).await,
            Err(_) => Err(Error::Invalid(
                "FAILOVER could not pause writes within its timeout".into(),
            )),
        };
        self.replication().downstreams().clear_promotion();
        match &outcome {
            Ok(()) => info!("FAILOVER done: {addr} is the primary; this node follows it"),
            Err(e) => warn!("FAILOVER to {addr} failed: {e}"),
        }
        outcome.map(|()| addr)
    }

    async fn hand_over(
        self: &Arc<Self>,
        target: &DownstreamStatus,
        timeout: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<()> {
        let (node_id, addr) = (&target.identity.node_id, &target.identity.replica_addr);
        // Every write queued before the gate closed commits before this empty one.
        self.writer
            .submit(Vec::new(), Charge::default())
            .await?
            .durable()
            .await?;
        let (head, history) = self
            .blocking(|store| Ok((store.head_seq()?, store.history_id()?)))
            .await?;
        // Cancelled when this node's history changes: when it adopts the target's.
        let replaced = self.replication().history_reset_token();
        let downstreams = self.replication().downstreams();
        let acked = downstreams.wait_for_replica(node_id, head, deadline).await;
        if acked < head {
            return Err(Error::Invalid(format!(
                "FAILOVER target {addr} did not catch up within {} ms (it acked seq {acked} \
                 of {head}); the handoff is abandoned and writes resume",
                timeout.as_millis()
            )));
        }
        self.failover_state
            .send_replace(FailoverState::FailoverInProgress);
        if self.lease.cluster().is_some() {
            // In a cluster the key moves: the agent gives it up naming the target, and
            // stands this node down; the target wins it and this node follows it.
            self.lease.hand_over(node_id, deadline).await?;
        } else {
            self.ask_to_promote(target, head).await?;
        }
        // Done once this node holds the target's new history (which continues ours).
        if !self
            .adopts_new_history(replaced, history, deadline + timeout)
            .await?
        {
            return Err(Error::Invalid(format!(
                "FAILOVER target {addr} was told to take over but this node has not seen its \
                 new history yet; this node is a replica following it"
            )));
        }
        Ok(())
    }

    /// Outside a cluster: demotes this node to follow `target`, then asks `target` (on
    /// its replication link) to promote itself at `head`.
    async fn ask_to_promote(self: &Arc<Self>, target: &DownstreamStatus, head: u64) -> Result<()> {
        let (node_id, addr) = (&target.identity.node_id, &target.identity.replica_addr);
        let downstreams = self.replication().downstreams();
        // Demoted first: once the target is asked to promote, this node never takes a write
        // again. (Until then, a failure leaves it the primary.)
        let node = Arc::clone(self);
        let upstream = addr.clone();
        let following =
            tokio::task::spawn_blocking(move || node.follow(upstream, LinkMode::Handoff)).await??;
        if !downstreams.request_promotion(node_id, head) {
            let undone = self.blocking_undo(following).await?;
            return Err(Error::Invalid(format!(
                "FAILOVER target {addr} disconnected; the handoff is abandoned{}",
                if undone { " and writes resume" } else { "" }
            )));
        }
        Ok(())
    }

    /// Waits, woken by `replaced` (this node's history-reset token), until its history is
    /// no longer `old`, up to `deadline`.
    async fn adopts_new_history(
        &self,
        mut replaced: CancellationToken,
        old: Option<String>,
        deadline: tokio::time::Instant,
    ) -> Result<bool> {
        loop {
            if tokio::time::timeout_at(deadline, replaced.cancelled())
                .await
                .is_err()
            {
                return Ok(false);
            }
            // Taken before looking, so a change right after the look still wakes us.
            let next = self.replication().history_reset_token();
            if self.blocking(|store| store.history_id()).await? != old {
                return Ok(true);
            }
            replaced = next;
        }
    }

    /// Undoes the demotion of a handoff that could not ask its target to promote.
    async fn blocking_undo(self: &Arc<Self>, following: super::Following) -> Result<bool> {
        let node = Arc::clone(self);
        tokio::task::spawn_blocking(move || node.undo_follow(&following)).await?
    }
}

/// The replica's side of `FAILOVER`: promotes `node` whenever its upstream asks it to
/// (the `Promote` message), until the node shuts down.
pub async fn serve_promotions(node: Arc<Node>) {
    let mut requests = node.replication().promotions();
    let shutdown = node.shutdown_token().clone();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = requests.changed() => if changed.is_err() { return },
        }
        let Some(seq) = *requests.borrow_and_update() else {
            continue;
        };
        if let Err(e) = node.check_manual_role_change() {
            warn!("an upstream asked this node to promote itself; refused: {e}");
            continue;
        }
        let promoting = Arc::clone(&node);
        match tokio::task::spawn_blocking(move || promoting.promote_at(seq)).await {
            Ok(Ok(promotion)) => info!("FAILOVER at seq {seq}: {}", promotion.line()),
            Ok(Err(e)) => warn!("FAILOVER at seq {seq}: the promotion failed: {e}"),
            Err(e) => warn!("FAILOVER at seq {seq}: the promotion did not run: {e}"),
        }
    }
}
