//! Log retention: a background task that keeps the newest `keep` log entries (never fewer
//! than one) and deletes older ones in small batches, each its own short transaction, so
//! trimming never holds the writer for long. A replica that needs trimmed entries gets a
//! full resync instead of a partial one.

use crate::replication::Replication;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, warn};

/// Default number of log entries kept (`--log-retain`).
pub const DEFAULT_LOG_RETAIN: u64 = 1_000_000;

/// Most log rows deleted per transaction.
pub const TRIM_BATCH: usize = 1000;

/// How often the task checks the log when nothing woke it.
const TRIM_INTERVAL: Duration = Duration::from_secs(1);

/// Trims `node`'s log to the newest `keep` entries until the node shuts down: after every
/// burst of writes (at most once per [`TRIM_INTERVAL`]), batch by batch.
pub async fn run(node: Arc<Replication>, keep: u64) {
    let shutdown = node.shutdown_token().clone();
    loop {
        loop {
            match node
                .blocking(move |store| store.trim_log(keep, TRIM_BATCH))
                .await
            {
                Ok(removed) if removed as usize == TRIM_BATCH => {
                    debug!("trimmed {removed} log entries; more to go");
                    // Let writes in between batches.
                    tokio::task::yield_now().await;
                }
                Ok(_) => break,
                // The node is stopping: not a failure.
                Err(e) if e.is_shutdown() => return,
                Err(e) => {
                    warn!("log trimming failed (will retry): {e}");
                    break;
                }
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(TRIM_INTERVAL) => {}
        }
    }
}
