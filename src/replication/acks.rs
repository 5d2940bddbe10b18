//! What a replica tells its upstream: the seq it holds durably. Applied batches are
//! visible to the replica's clients as soon as they commit; [`sync_applied`] flushes the
//! store behind them, off the runtime, and only then publishes the seq that [`send_acks`]
//! sends and moves the head that replicas chained behind this one are streamed up to.
//! Acks count for `WAIT`, synchronous replication and `FAILOVER`, so an acked entry
//! survives a power loss on the replica; an entry applied and not yet flushed may not,
//! and the replica then fetches it again from its upstream, which held it durably before
//! sending it. No replica chained behind has it either, so none is ever ahead of this one.

use super::{Replication, PING_INTERVAL};
use crate::connection::MessageWriter;
use crate::error::Result;
use crate::protocol::Message;
use std::sync::Arc;
use tokio::io::AsyncWrite;
use tokio::sync::watch;

/// Publishes in `durable` each seq of `applied` once the store has been flushed after it
/// was applied. A flush covers every batch committed before it began, so a burst of
/// batches costs one flush, and applying goes on while the disk works.
pub(super) async fn sync_applied(
    repl: &Arc<Replication>,
    mut applied: watch::Receiver<Option<u64>>,
    durable: watch::Sender<Option<u64>>,
) -> Result<()> {
    loop {
        if applied.changed().await.is_err() {
            // The receiving side ended; its result decides the outcome.
            std::future::pending::<()>().await;
        }
        // Read before the flush: every commit up to this seq returned before it starts.
        let Some(seq) = *applied.borrow_and_update() else {
            continue;
        };
        repl.blocking(|store| store.sync()).await?;
        repl.notify_head(seq);
        durable.send_replace(Some(seq));
    }
}

/// Acks every newly durable seq (a watch: bursts coalesce into one ack), and acks the
/// durable seq again every [`PING_INTERVAL`] when nothing changed (a heartbeat the
/// upstream can count as the replica being current); before the first sync, it only pings.
pub(super) async fn send_acks<W: AsyncWrite + Unpin>(
    writer: &mut MessageWriter<W>,
    mut durable: watch::Receiver<Option<u64>>,
) -> Result<()> {
    let mut heartbeat = tokio::time::interval(PING_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = durable.changed() => {
                if changed.is_err() {
                    // The receiving side ended; its result decides the outcome.
                    std::future::pending::<()>().await;
                }
                let seq = *durable.borrow_and_update();
                if let Some(seq) = seq {
                    writer.send(&Message::Ack { seq }).await?;
                    heartbeat.reset();
                }
            }
            _ = heartbeat.tick() => {
                let seq = *durable.borrow();
                let message = match seq {
                    Some(seq) => Message::Ack { seq },
                    None => Message::Ping { seq: 0, head: 0 },
                };
                writer.send(&message).await?;
            }
        }
    }
}
