//! A replica node: serves reads from its own store, follows one upstream through a
//! [`ReplicaLink`] (started by `--join` or the shell's `JOIN`), and serves the same
//! replication protocol on its own port so that replicas can chain. It never accepts
//! writes from whoever connects.

use crate::error::{Error, Result};
use crate::locks::lock;
use crate::node::Node;
use crate::replication::receiver::{run_link, SyncReport};
use std::sync::{Arc, Mutex};
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

/// Controls which upstream a replica follows.
pub struct ReplicaLink {
    node: Arc<Node>,
    runtime: Handle,
    current: Mutex<Option<Following>>,
}

/// The link currently running.
struct Following {
    upstream: String,
    cancel: CancellationToken,
}

impl ReplicaLink {
    /// A link controller for `node`, spawning its tasks on `runtime`.
    pub fn new(node: Arc<Node>, runtime: Handle) -> Self {
        ReplicaLink {
            node,
            runtime,
            current: Mutex::new(None),
        }
    }

    /// Starts following `upstream`, replacing any previous link. The receiver reports the
    /// first sync. With `retry_before_sync`, the link keeps retrying until the upstream
    /// answers (start-up `--join`); without, the first failure is reported and it stops.
    pub fn follow(
        &self,
        upstream: String,
        retry_before_sync: bool,
    ) -> oneshot::Receiver<Result<SyncReport>> {
        let cancel = self.node.shutdown_token().child_token();
        let following = Following {
            upstream: upstream.clone(),
            cancel: cancel.clone(),
        };
        if let Some(previous) = lock(&self.current).replace(following) {
            previous.cancel.cancel();
        }
        let (report, first_sync) = oneshot::channel();
        let node = Arc::clone(&self.node);
        self.runtime.spawn(run_link(
            node,
            upstream,
            Some(report),
            retry_before_sync,
            cancel,
        ));
        first_sync
    }

    /// The upstream the replica follows (or last tried to), if any.
    pub fn following(&self) -> Option<String> {
        lock(&self.current).as_ref().map(|f| f.upstream.clone())
    }

    /// Joins `upstream` and waits until the snapshot is applied (or the resume accepted).
    /// If that fails, the replica goes back to following its previous upstream.
    pub async fn join(&self, upstream: String) -> Result<SyncReport> {
        let previous = self.following();
        let first_sync = self.follow(upstream, false);
        let outcome = first_sync
            .await
            .map_err(|_| Error::Shutdown)
            .and_then(|r| r);
        if outcome.is_err() {
            self.resume(previous);
        }
        outcome
    }

    /// After a failed `JOIN`: follow `previous` again (retrying until it answers), so a
    /// mistyped address does not silently stop replication.
    pub fn resume(&self, previous: Option<String>) {
        match previous {
            Some(upstream) => drop(self.follow(upstream, true)),
            None => drop(lock(&self.current).take()),
        }
    }
}
