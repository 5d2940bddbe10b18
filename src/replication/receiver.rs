//! The replica side of replication: a link that dials the upstream, sends `Join`, installs
//! a snapshot in one transaction or resumes from its applied seq, then applies log entries
//! in order (batched: whatever has already arrived goes into one transaction, visible at
//! once and flushed to the disk behind it), acking each batch once durable
//! ([`acks`](super::acks)). On failure the link reconnects with capped, jittered backoff.
//! Every write it makes commits through the [`LinkFence`](super::LinkFence) with its
//! connection's generation.

use super::acks::{send_acks, sync_applied};
use super::handshake::{
    answer_probes, check_related, closed, join_message, next_message, stop_following,
};
use super::link_auth;
use super::plan::entries;
use super::{
    Backoff, Crossing, Receiver, Replication, Step, APPLY_BATCH, CONNECT_TIMEOUT, LOG_BATCH_BYTES,
};
use crate::connection::{self, MessageReader};
use crate::error::{Error, Result};
use crate::net::stream::Stream;
use crate::protocol::{Message, MAX_FRAME};
use crate::replication::{LinkMode, LinkState};
use crate::store::history::shared_bound;
use crate::store::{Lineage, LogEntry, Position, Record, SnapshotTarget};
use futures::FutureExt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

pub use super::report::{FirstSync, SyncReport};

/// Runs a replica's link to `upstream` until `cancel` fires or another link supersedes
/// `generation`. In [`LinkMode::Join`], a failure before the first sync is reported to
/// `first_sync` and the link stops (a mistyped `JOIN` should fail, not retry forever);
/// otherwise, and after a first sync, every failure is followed by a reconnect.
pub async fn run_link(
    repl: Arc<Replication>,
    upstream: String,
    mut first_sync: Option<FirstSync>,
    mode: LinkMode,
    cancel: CancellationToken,
    mut generation: u64,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ever_synced = false;
    // The last failure reported: the same one again (the upstream still down) is only
    // logged at debug level, so a shell is not flooded with reconnect attempts.
    let mut reported: Option<String> = None;
    loop {
        // Each connection supersedes the link's previous one, whose writes may still be
        // on their way to the store (renewing may wait for one's commit: off the runtime).
        let fence = repl.fence().clone();
        let renewed = tokio::task::spawn_blocking(move || fence.renew(generation)).await;
        let Ok(Some(connection)) = renewed else {
            return;
        };
        generation = connection;
        let mut synced = false;
        // Until this link first synced, the operator's choice of upstream stands: it may
        // replace this node's data with an unrelated history. Afterwards it may not.
        let accept_unrelated = mode.operator_chose() && !ever_synced;
        let attempt = Attempt {
            generation: connection,
            accept_unrelated,
        };
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => return,
            result = sync_once(&repl, &upstream, attempt, &mut first_sync, &mut synced) => result,
        };
        if cancel.is_cancelled() {
            // Stopping, or replaced by another link: nothing went wrong.
            return;
        }
        ever_synced |= synced;
        if let Err(Error::UnrelatedHistory(reason)) = &result {
            stop_following(&repl, &upstream, reason, first_sync.take());
            return;
        }
        let reason = match result {
            Ok(()) => closed().to_string(),
            Err(e) => e.to_string(),
        };
        repl.update_link(|link| {
            link.state = LinkState::Down;
            link.last_error = Some(reason.clone());
            link.snapshot = None;
        });
        if !ever_synced && !mode.retries_before_sync() {
            if let Some(report) = first_sync.take() {
                let _ = report.send(Err(Error::Invalid(reason)));
            }
            return;
        }
        if synced {
            backoff.reset();
            reported = None;
        }
        let delay = backoff.next_delay();
        let again = reported.as_deref() == Some(reason.as_str());
        let retry = format!("reconnecting in {} ms", delay.as_millis());
        match again {
            true => debug!("link to {upstream} still down: {reason}; {retry}"),
            false => warn!("link to {upstream} down: {reason}; {retry}"),
        }
        reported = Some(reason);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// What one connection of a link may do.
#[derive(Clone, Copy)]
struct Attempt {
    /// The connection's fence generation.
    generation: u64,
    /// Whether it may replace this node's data with an unrelated history.
    accept_unrelated: bool,
}

/// One connection: dial, join, sync, stream until an error or close.
async fn sync_once(
    repl: &Arc<Replication>,
    upstream: &str,
    attempt: Attempt,
    first_sync: &mut Option<FirstSync>,
    synced: &mut bool,
) -> Result<()> {
    repl.update_link(|link| {
        link.upstream = Some(upstream.to_string());
        link.state = LinkState::Connecting;
        // What the previous connection heard says nothing about this one.
        link.upstream_head = None;
        link.last_entry_at = None;
    });
    let stream = dial(repl, upstream).await?;
    let (mut reader, mut writer) = connection::split(stream, MAX_FRAME);
    link_auth::prove_to_upstream(repl.secret(), &mut reader, &mut writer).await?;
    let position = repl.blocking(|store| store.position()).await?;
    writer.send(&join_message(repl, &position)).await?;
    repl.update_link(|link| link.state = LinkState::Syncing);
    let first = answer_probes(repl, &mut reader, &mut writer).await?;
    // Nothing is acked until this connection has synced: the replica's seq may belong to
    // another history, and acking it would tell the upstream it holds writes it does not.
    let (applied_tx, applied_rx) = watch::channel(None);
    let (durable_tx, durable_rx) = watch::channel(None);
    let machine = Receiver::new(position.history_id.clone(), position.head)
        .with_fork(position.fork.clone())
        .with_epoch(position.epoch);
    let mut link = Link {
        repl,
        upstream,
        generation: attempt.generation,
        accept_unrelated: attempt.accept_unrelated,
        own: position,
        machine,
        applied: applied_tx,
        first_sync,
        synced,
    };
    tokio::select! {
        result = link.receive(&mut reader, first) => result,
        result = sync_applied(repl, applied_rx, durable_tx) => result,
        result = send_acks(&mut writer, durable_rx) => result,
    }
}

/// Connects to `upstream`, over TLS where this node's links use it.
async fn dial(repl: &Replication, upstream: &str) -> Result<Stream> {
    let tcp = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => return Err(Error::Invalid(format!("cannot connect to {upstream}: {e}"))),
        Err(_) => return Err(Error::Timeout(format!("connecting to {upstream}"))),
    };
    // Replication sends many small frames: do not let Nagle hold them back.
    let _ = tcp.set_nodelay(true);
    match repl.tls() {
        Some(tls) => tls.connect(tcp, upstream).await,
        None => Ok(tcp.into()),
    }
}

/// The receiving half of one connection.
struct Link<'a> {
    repl: &'a Arc<Replication>,
    upstream: &'a str,
    /// This connection's fence generation.
    generation: u64,
    /// Whether an unrelated history may replace this node's data.
    accept_unrelated: bool,
    /// Where this node stood when it joined.
    own: Position,
    machine: Receiver,
    applied: watch::Sender<Option<u64>>,
    first_sync: &'a mut Option<FirstSync>,
    synced: &'a mut bool,
}

/// A piece of a snapshot handed to the blocking install.
enum Piece {
    Chunk(Vec<Record>),
    End,
}

impl Link<'_> {
    async fn receive<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        first: Message,
    ) -> Result<()> {
        let mut first = Some(first);
        loop {
            let message = match first.take() {
                Some(message) => message,
                None => next_message(reader).await?,
            };
            match self.machine.on_message(message)? {
                Step::BeginSnapshot {
                    target,
                    keys,
                    reason,
                } => {
                    check_related(&self.own, &target, self.upstream, self.accept_unrelated)?;
                    let resync = format!("full resync: {reason}");
                    let seq = target.seq;
                    info!(
                        "{resync}; receiving a snapshot of {keys} keys at seq {seq} from {}",
                        self.upstream
                    );
                    self.repl.update_link(|link| {
                        link.snapshot = Some((0, keys));
                        link.saw_head(seq);
                    });
                    let kept = target
                        .keep_diverged_after
                        .map(|after| self.kept_after(after));
                    let installed = self.receive_snapshot(reader, target).await;
                    self.repl.update_link(|link| link.snapshot = None);
                    let report = SyncReport::Snapshot {
                        seq,
                        keys: installed?,
                    };
                    if let Some(kept) = kept {
                        warn!("{kept}");
                    }
                    self.on_synced(report, resync);
                }
                Step::Resume { from_seq, adopt } => {
                    let resync = self.resume(from_seq, adopt).await?;
                    info!("{resync} from {}", self.upstream);
                    self.on_synced(SyncReport::Resumed { from_seq }, resync);
                }
                Step::Apply(entry) => self.apply_batch(reader, entry).await?,
                Step::Heartbeat { head } => self.heard_head(head),
                Step::Promote { seq } => {
                    info!(
                        "{} hands over at seq {seq} (FAILOVER): promoting",
                        self.upstream
                    );
                    self.repl.request_promotion(seq);
                    // Nothing more is taken from this upstream: the promotion ends the link
                    // (or, if it fails, the node follows it again on a new one).
                    std::future::pending::<()>().await;
                }
                step => {
                    return Err(Error::Protocol(format!(
                        "unexpected {step:?} outside a snapshot"
                    )))
                }
            }
        }
    }

    /// What a diverged full resync keeps of this node's log (entries after `after`), in
    /// words for the log.
    fn kept_after(&self, after: u64) -> String {
        let next = after.saturating_add(1);
        let first_kept = self.own.oldest_log.map_or(next, |oldest| oldest.max(next));
        let kept = self.own.head.saturating_add(1).saturating_sub(first_kept);
        let mut line = match kept {
            0 => "kept no diverged entry: this node's log no longer holds them".to_string(),
            kept => format!(
                "kept {} (seq {first_kept}..={}) in the table `diverged` before replacing \
                 this node's contents",
                entries(kept),
                self.own.head
            ),
        };
        if first_kept > next {
            line.push_str(&format!(
                "; the logs part before this node's retained log (entries up to seq {} were \
                 trimmed), so all it had is kept",
                first_kept - 1
            ));
        }
        line
    }

    /// A partial resync; across a fork, this node first adopts the upstream's history (and
    /// ends its own replicas' streams, so they rejoin across the fork too).
    async fn resume(&mut self, from_seq: u64, adopt: Option<Lineage>) -> Result<String> {
        let Some(lineage) = adopt else {
            return Ok(format!(
                "partial resync: same history, resuming after seq {from_seq}"
            ));
        };
        let crossing = Crossing {
            from: self.own.history_id.clone().unwrap_or_default(),
            to: lineage.history_id.clone().unwrap_or_default(),
            fork_seq: shared_bound(&self.own.lineage(), &lineage).unwrap_or(from_seq),
        };
        let ticket = self.repl.fence().ticket(self.generation);
        let repl = Arc::clone(self.repl);
        self.repl
            .blocking(move |store| {
                store.adopt_history(&lineage, &ticket)?;
                repl.reset_history();
                Ok(())
            })
            .await?;
        Ok(format!(
            "partial resync: {crossing}; resuming after seq {from_seq}"
        ))
    }

    fn heard_head(&self, head: u64) {
        self.repl.update_link(|link| {
            link.saw_head(head);
        });
    }

    fn on_synced(&mut self, report: SyncReport, resync: String) {
        let seq = self.machine.last_seq();
        self.repl.update_link(|link| {
            link.state = LinkState::Streaming;
            link.last_resync = Some(resync);
            link.last_error = None;
            link.saw_head(seq);
        });
        self.applied.send_replace(Some(seq));
        *self.synced = true;
        if let Some(first) = self.first_sync.take() {
            let _ = first.send(Ok(report));
        }
    }

    /// Feeds snapshot chunks to a blocking install that holds one transaction open; if the
    /// stream breaks, the install's chunk source fails and the transaction rolls back.
    async fn receive_snapshot<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        target: SnapshotTarget,
    ) -> Result<u64> {
        let (pieces, mut incoming) = mpsc::channel::<Piece>(2);
        let repl = Arc::clone(self.repl);
        let ticket = repl.fence().ticket(self.generation);
        let install = tokio::task::spawn_blocking(move || {
            let mut source = || match incoming.blocking_recv() {
                Some(Piece::Chunk(chunk)) => Ok(Some(chunk)),
                Some(Piece::End) => Ok(None),
                None => Err(Error::Protocol("the snapshot stream broke off".into())),
            };
            let keys = repl
                .store()
                .install_snapshot_fenced(&target, &mut source, &ticket)?;
            // Here, not after the await: the install commits even if this link is torn
            // down meanwhile, and the new history must never reach chained replicas
            // through a stream of the old one.
            repl.reset_history();
            repl.reset_head(target.seq);
            Ok::<u64, Error>(keys)
        });
        let fed = self.feed_snapshot(reader, pieces).await;
        let installed = install.await?;
        match (fed, installed) {
            (Err(Error::Shutdown), Err(install_error)) => Err(install_error),
            (Err(feed_error), _) => Err(feed_error),
            (Ok(()), installed) => installed,
        }
    }

    async fn feed_snapshot<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        pieces: mpsc::Sender<Piece>,
    ) -> Result<()> {
        loop {
            let message = next_message(reader).await?;
            let piece = match self.machine.on_message(message)? {
                Step::SnapshotChunk(chunk) => {
                    let received = chunk.len() as u64;
                    self.repl.update_link(|link| {
                        if let Some((done, _)) = &mut link.snapshot {
                            *done += received;
                        }
                    });
                    Piece::Chunk(chunk)
                }
                Step::FinishSnapshot { .. } => Piece::End,
                Step::Heartbeat { head } => {
                    self.heard_head(head);
                    continue;
                }
                step => {
                    return Err(Error::Protocol(format!(
                        "unexpected {step:?} in a snapshot"
                    )))
                }
            };
            let end = matches!(piece, Piece::End);
            // A send error means the install stopped early; its own error explains why.
            pieces.send(piece).await.map_err(|_| Error::Shutdown)?;
            if end {
                return Ok(());
            }
        }
    }

    /// Applies `first` and every entry that has already arrived behind it (up to
    /// [`APPLY_BATCH`] entries or about [`LOG_BATCH_BYTES`]) in one transaction, visible at
    /// once; they are acked once flushed.
    async fn apply_batch<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        first: LogEntry,
    ) -> Result<()> {
        let mut bytes = first.op.size();
        let mut batch = vec![first];
        let mut failure = None;
        while batch.len() < APPLY_BATCH && bytes < LOG_BATCH_BYTES {
            // `read` is cancel-safe: a frame half-received stays buffered in the reader.
            let Some(next) = reader.read().now_or_never() else {
                break;
            };
            match self.entry_from(next) {
                Ok(Some(entry)) => {
                    bytes += entry.op.size();
                    batch.push(entry);
                }
                Ok(None) => {}
                Err(e) => {
                    // Apply the valid entries before it, then drop the link.
                    failure = Some(e);
                    break;
                }
            }
        }
        let last = self.machine.last_seq();
        let ticket = self.repl.fence().ticket(self.generation);
        self.repl
            .blocking(move |store| store.apply_unsynced(&batch, &ticket))
            .await?;
        // Chained replicas get these entries, and the upstream its ack, once they are
        // flushed (`acks::sync_applied`).
        self.applied.send_replace(Some(last));
        self.repl.update_link(|link| {
            link.last_entry_at = Some(Instant::now());
            link.saw_head(last);
        });
        failure.map_or(Ok(()), Err)
    }

    /// The log entry in a message read while gathering a batch (`None` for a heartbeat).
    fn entry_from(&mut self, read: Result<Option<Message>>) -> Result<Option<LogEntry>> {
        match self.machine.on_message(read?.ok_or_else(closed)?)? {
            Step::Apply(entry) => Ok(Some(entry)),
            Step::Heartbeat { head } => {
                self.heard_head(head);
                Ok(None)
            }
            step => Err(Error::Protocol(format!(
                "unexpected {step:?} in the log stream"
            ))),
        }
    }
}
