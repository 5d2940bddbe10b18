//! A replica's link to its upstream: its status (shown by `STATUS` and `INFO`), and the
//! controller that starts, replaces and stops it ([`ReplicaLink`], driven by `--join` and
//! the shell's `JOIN`). Replacing a link cancels the old one and advances the
//! [`LinkFence`](super::LinkFence), so nothing the old link still has in flight commits.

use super::receiver::{run_link, SyncReport};
use super::Replication;
use crate::error::Result;
use crate::locks::lock;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// State of a replica's link to its upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LinkState {
    /// Never told to join anything (start without `--join`, before a `JOIN`).
    #[default]
    Idle,
    /// Dialling the upstream.
    Connecting,
    /// Receiving a snapshot or catching up.
    Syncing,
    /// Synced; receiving the log as the upstream sends it.
    Streaming,
    /// The link failed or closed; it reconnects by itself.
    Down,
    /// The upstream offered a history unrelated to this node's data on a reconnect: the
    /// node kept its data and stopped following until told again (`JOIN`, `REPLICAOF`).
    Stopped,
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
            LinkState::Stopped => "stopped",
        }
    }
}

/// What a replica knows about its upstream link.
#[derive(Clone, Debug, Default)]
pub struct LinkStatus {
    /// The `host:port` joined, if any.
    pub upstream: Option<String>,
    /// Current state.
    pub state: LinkState,
    /// The upstream's head as it last told it on the current connection (`None` until it
    /// has; reset with every connection).
    pub upstream_head: Option<u64>,
    /// When the last log entry arrived on the current connection.
    pub last_entry_at: Option<Instant>,
    /// Kind and reason of the last resync, e.g. `full resync: new replica`.
    pub last_resync: Option<String>,
    /// Why the link last went down.
    pub last_error: Option<String>,
    /// While a snapshot streams in: (keys received, keys in the snapshot).
    pub snapshot: Option<(u64, u64)>,
}

impl LinkStatus {
    /// Records that the upstream's head is at least `seq` (told by a heartbeat, or
    /// implied by a snapshot or an entry).
    pub fn saw_head(&mut self, seq: u64) {
        self.upstream_head = Some(self.upstream_head.unwrap_or(0).max(seq));
    }

    /// Entries the replica at `applied` is behind its upstream, as far as it knows.
    pub fn lag(&self, applied: u64) -> Option<u64> {
        self.upstream_head.map(|head| head.saturating_sub(applied))
    }
}

/// Who asked a link to follow its upstream, which decides how it treats failures and
/// unrelated histories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkMode {
    /// The shell's `JOIN`: the operator waits; the first failure is reported and the link
    /// stops. Until it first syncs, it may replace the node's data with any history.
    Join,
    /// A start with `--join`, or `REPLICAOF host port`: retries until the upstream answers.
    /// Until it first syncs, it may replace the node's data with any history.
    Start,
    /// Following again the upstream a failed `JOIN` replaced: retries, and never adopts an
    /// unrelated history (nobody asked for one).
    Resume,
    /// A primary following the replica it hands over to (`FAILOVER`): retries, and never
    /// adopts an unrelated history (the target continues this node's own).
    Handoff,
}

impl LinkMode {
    /// Whether a failure before the first sync is retried rather than reported.
    pub fn retries_before_sync(self) -> bool {
        self != LinkMode::Join
    }

    /// Whether the operator named this upstream, so that its first sync may replace the
    /// node's data with an unrelated history.
    pub fn operator_chose(self) -> bool {
        matches!(self, LinkMode::Join | LinkMode::Start)
    }
}

/// Controls which upstream a replica follows.
pub struct ReplicaLink {
    repl: Arc<Replication>,
    runtime: Handle,
    current: Mutex<Option<Following>>,
}

/// The link currently running.
struct Following {
    upstream: String,
    cancel: CancellationToken,
}

impl ReplicaLink {
    /// A link controller for `repl`, spawning its tasks on `runtime`.
    pub fn new(repl: Arc<Replication>, runtime: Handle) -> Self {
        ReplicaLink {
            repl,
            runtime,
            current: Mutex::new(None),
        }
    }

    /// Starts following `upstream`, replacing any previous link (whose writes still in
    /// flight are then refused by the fence). Called from a thread that may block (the
    /// shell, start-up): it may wait for a commit of the old link to finish. The receiver
    /// reports the first sync; `mode` says how failures and unrelated histories are met.
    pub fn follow(
        &self,
        upstream: String,
        mode: LinkMode,
    ) -> oneshot::Receiver<Result<SyncReport>> {
        let cancel = self.repl.shutdown_token().child_token();
        let following = Following {
            upstream: upstream.clone(),
            cancel: cancel.clone(),
        };
        // The generation is taken under the same lock, so two follows at once cannot
        // leave the cancelled link with the newer generation.
        let generation = {
            let mut current = lock(&self.current);
            if let Some(previous) = current.replace(following) {
                previous.cancel.cancel();
            }
            self.repl.fence().advance()
        };
        let (report, first_sync) = oneshot::channel();
        let link = run_link(
            Arc::clone(&self.repl),
            upstream,
            Some(report),
            mode,
            cancel,
            generation,
        );
        self.repl.tasks().spawn_on(link, &self.runtime);
        first_sync
    }

    /// Stops following: cancels the current link and advances the fence, which waits for
    /// a commit of that link in progress and refuses any later one. Blocking.
    pub fn stop(&self) {
        let mut current = lock(&self.current);
        if let Some(following) = current.take() {
            following.cancel.cancel();
        }
        self.repl.fence().advance();
    }

    /// The upstream the replica follows, or tries to, if any: not one whose link stopped
    /// at an unrelated history.
    pub fn following(&self) -> Option<String> {
        if self.repl.link().state == LinkState::Stopped {
            return None;
        }
        lock(&self.current).as_ref().map(|f| f.upstream.clone())
    }

    /// After a failed `JOIN`: follow `previous` again (retrying until it answers), so a
    /// mistyped address does not silently stop replication.
    pub fn resume(&self, previous: Option<String>) {
        match previous {
            Some(upstream) => drop(self.follow(upstream, LinkMode::Resume)),
            None => {
                if let Some(failed) = lock(&self.current).take() {
                    failed.cancel.cancel();
                }
                self.repl.update_link(|link| {
                    *link = LinkStatus {
                        last_error: link.last_error.take(),
                        ..LinkStatus::default()
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
