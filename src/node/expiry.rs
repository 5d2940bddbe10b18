//! The primary's sweep of expired keys: a background task that, while the node is the
//! primary, finds keys whose expiry has passed (oldest first, through the store's index on
//! `expires_at`) and deletes them through the writer, each logged as a delete so replicas
//! and the log stay exact. Reads on every node already hide such keys from their expiry
//! on; the sweep is what removes the rows. It runs at most every [`SWEEP_INTERVAL`] (Redis
//! runs its active expiry ten times a second too), batch by batch while there is more.

use super::compute::Outcome;
use super::Node;
use crate::error::Error;
use crate::store::{now_ms, Role};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// How often the sweep looks for expired keys.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(100);

/// Most keys deleted per write.
pub const SWEEP_BATCH: usize = 1000;

/// Sweeps `node`'s expired keys while it is the primary, until it shuts down.
pub async fn run(node: Arc<Node>) {
    let shutdown = node.replication().shutdown_token().clone();
    loop {
        if node.role() == Role::Primary && !sweep(&node).await {
            return;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
        }
    }
}

/// Deletes what has expired, batch by batch; false once the node is stopping.
async fn sweep(node: &Node) -> bool {
    loop {
        let now = now_ms();
        let found = node
            .replication()
            .blocking(move |store| store.expired_keys(now, SWEEP_BATCH))
            .await;
        let keys = match found {
            Ok(keys) if keys.is_empty() => return true,
            Ok(keys) => keys,
            Err(e) if e.is_shutdown() => return false,
            Err(e) => {
                warn!("the expiry sweep could not read expired keys (will retry): {e}");
                return true;
            }
        };
        let full = keys.len() == SWEEP_BATCH;
        match node.purge_expired(keys).await {
            Ok(Outcome::Int(removed)) => debug!("deleted {removed} expired keys"),
            Ok(_) => {}
            Err(e) if e.is_shutdown() => return false,
            // Demoted or fenced: the new primary's sweep deletes them; reads hide them
            // meanwhile.
            Err(Error::ReadOnly(_) | Error::Fenced(_)) => return true,
            Err(e) => {
                warn!("the expiry sweep failed (will retry): {e}");
                return true;
            }
        }
        if !full {
            return true;
        }
        // Let other writes in between batches.
        tokio::task::yield_now().await;
    }
}
