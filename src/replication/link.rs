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
    /// shell, start-up): it may wait for a commit of the old link to finish. The receiver reports the first sync. With
    /// `retry_before_sync`, the link keeps retrying until the upstream answers (start-up
    /// `--join`); without, the first failure is reported and it stops.
    pub fn follow(
        &self,
        upstream: String,
        retry_before_sync: bool,
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
            retry_before_sync,
            cancel,
            generation,
        );
        self.repl.tasks().spawn_on(link, &self.runtime);
        first_sync
    }

    /// The upstream the replica follows (or last tried to), if any.
    pub fn following(&self) -> Option<String> {
        lock(&self.current).as_ref().map(|f| f.upstream.clone())
    }

    /// After a failed `JOIN`: follow `previous` again (retrying until it answers), so a
    /// mistyped address does not silently stop replication.
    pub fn resume(&self, previous: Option<String>) {
        match previous {
            Some(upstream) => drop(self.follow(upstream, true)),
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
