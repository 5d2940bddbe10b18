//! Waiting for a `JOIN` to finish, with a progress bar (keys received of total, on
//! stderr) once a snapshot has taken longer than a second. Only an interactive shell
//! shows it; scripts get nothing but the result line.

use crate::error::{Error, Result};
use crate::node::Node;
use crate::replication::receiver::SyncReport;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Syncs shorter than this show no progress bar.
const QUIET_FOR: Duration = Duration::from_secs(1);

/// How often the bar is refreshed.
const TICK: Duration = Duration::from_millis(100);

/// Blocks until `first_sync` reports, drawing progress from `node`'s link status if `show`.
pub fn wait_for_sync(
    runtime: &Handle,
    node: &Node,
    first_sync: &mut oneshot::Receiver<Result<SyncReport>>,
    show: bool,
) -> Result<SyncReport> {
    let started = Instant::now();
    let mut bar: Option<ProgressBar> = None;
    let outcome = loop {
        // The timer must be created inside the runtime: this thread is not one of its own.
        let waited = runtime.block_on(async { tokio::time::timeout(TICK, &mut *first_sync).await });
        match waited {
            Ok(outcome) => break outcome.map_err(|_| Error::Shutdown).and_then(|r| r),
            Err(_) if show && started.elapsed() >= QUIET_FOR => {
                if let Some((received, total)) = node.replication().link().snapshot {
                    bar.get_or_insert_with(|| new_bar(total))
                        .set_position(received);
                }
            }
            Err(_) => {}
        }
    };
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcome
}

fn new_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("snapshot {bar:40} {pos}/{len} keys, eta {eta}")
    {
        bar.set_style(style);
    }
    bar
}
