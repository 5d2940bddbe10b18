//! The replica side of replication: a link that dials the upstream, sends `Join`, installs
//! a snapshot in one transaction or resumes from its applied seq, then applies log entries
//! in order (batched: whatever has already arrived goes into one transaction), acking each
//! durable batch. On failure the link reconnects with capped, jittered backoff.

use super::{Backoff, Receiver, Step, CONNECT_TIMEOUT, DEAD_PEER, LOG_BATCH, PING_INTERVAL};
use crate::connection::{self, MessageReader, MessageWriter};
use crate::error::{Error, Result};
use crate::node::{LinkState, Node};
use crate::protocol::{Message, MAX_FRAME, PROTOCOL_VERSION};
use crate::store::{LogEntry, Pair};
use futures::FutureExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// How the first synchronisation of a link went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncReport {
    /// A snapshot of `keys` keys at `seq` was installed.
    Snapshot {
        /// The snapshot's seq.
        seq: u64,
        /// Keys installed.
        keys: u64,
    },
    /// The upstream continued from the replica's applied seq.
    Resumed {
        /// The replica's applied seq when it resumed.
        from_seq: u64,
    },
}

/// Reports the first successful sync (or the failure that prevented it) to whoever
/// started the link.
pub type FirstSync = oneshot::Sender<Result<SyncReport>>;

/// Runs a replica's link to `upstream` until `cancel` fires. If `first_sync` is given and
/// `retry_before_sync` is false, a failure before the first sync is reported there and the
/// link stops (a mistyped `JOIN` should fail, not retry forever); after a first sync, every
/// failure is followed by a reconnect.
pub async fn run_link(
    node: Arc<Node>,
    upstream: String,
    mut first_sync: Option<FirstSync>,
    retry_before_sync: bool,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut ever_synced = false;
    loop {
        let mut synced = false;
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            result = sync_once(&node, &upstream, &mut first_sync, &mut synced) => result,
        };
        ever_synced |= synced;
        let reason = match result {
            Ok(()) => "the upstream closed the connection".to_string(),
            Err(e) => e.to_string(),
        };
        node.update_link(|link| {
            link.state = LinkState::Down;
            link.last_error = Some(reason.clone());
            link.snapshot = None;
        });
        if !ever_synced && !retry_before_sync {
            if let Some(report) = first_sync.take() {
                let _ = report.send(Err(Error::Invalid(reason)));
            }
            return;
        }
        if synced {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        warn!(
            "link to {upstream} down: {reason}; reconnecting in {} ms",
            delay.as_millis()
        );
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// One connection: dial, join, sync, stream until an error or close.
async fn sync_once(
    node: &Arc<Node>,
    upstream: &str,
    first_sync: &mut Option<FirstSync>,
    synced: &mut bool,
) -> Result<()> {
    node.update_link(|link| {
        link.upstream = Some(upstream.to_string());
        link.state = LinkState::Connecting;
    });
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(upstream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => return Err(Error::Invalid(format!("cannot connect to {upstream}: {e}"))),
        Err(_) => return Err(Error::Timeout(format!("connecting to {upstream}"))),
    };
    let (mut reader, mut writer) = connection::split(stream, MAX_FRAME);
    let position = node.blocking(|store| store.position()).await?;
    let (history_id, applied) = (position.history_id, position.head);
    let join = Message::Join {
        node_id: node.node_id().to_string(),
        replica_addr: node.listen_addr().to_string(),
        history_id: history_id.clone(),
        last_seq: applied,
        protocol_version: PROTOCOL_VERSION,
    };
    writer.send(&join).await?;
    node.update_link(|link| link.state = LinkState::Syncing);
    let machine = Receiver::new(history_id, applied);
    let (applied_tx, applied_rx) = watch::channel(applied);
    let mut link = Link {
        node,
        upstream,
        machine,
        applied: applied_tx,
        first_sync,
        synced,
    };
    tokio::select! {
        result = link.receive(&mut reader) => result,
        result = send_acks(&mut writer, applied_rx) => result,
    }
}

/// Acks every newly durable seq (a watch: bursts coalesce into one ack) and pings when idle.
async fn send_acks<W: AsyncWrite + Unpin>(
    writer: &mut MessageWriter<W>,
    mut applied: watch::Receiver<u64>,
) -> Result<()> {
    let mut heartbeat = tokio::time::interval(PING_INTERVAL);
    loop {
        tokio::select! {
            changed = applied.changed() => {
                if changed.is_err() {
                    // The receiving side ended; its result decides the outcome.
                    std::future::pending::<()>().await;
                }
                let seq = *applied.borrow_and_update();
                writer.send(&Message::Ack { seq }).await?;
            }
            _ = heartbeat.tick() => {
                let seq = *applied.borrow();
                writer.send(&Message::Ping { seq }).await?;
            }
        }
    }
}

/// The receiving half of one connection.
struct Link<'a> {
    node: &'a Arc<Node>,
    upstream: &'a str,
    machine: Receiver,
    applied: watch::Sender<u64>,
    first_sync: &'a mut Option<FirstSync>,
    synced: &'a mut bool,
}

/// A piece of a snapshot handed to the blocking install.
enum Piece {
    Chunk(Vec<Pair>),
    End,
}

impl Link<'_> {
    async fn receive<R: AsyncRead + Unpin>(&mut self, reader: &mut MessageReader<R>) -> Result<()> {
        loop {
            let message = next_message(reader).await?;
            match self.machine.on_message(message)? {
                Step::BeginSnapshot {
                    history_id,
                    seq,
                    keys,
                    reason,
                } => {
                    let resync = format!("full resync: {reason}");
                    info!(
                        "{resync}; receiving a snapshot of {keys} keys at seq {seq} from {}",
                        self.upstream
                    );
                    self.node
                        .update_link(|link| link.snapshot = Some((0, keys)));
                    let installed = self.receive_snapshot(reader, history_id, seq).await;
                    self.node.update_link(|link| link.snapshot = None);
                    let report = SyncReport::Snapshot {
                        seq,
                        keys: installed?,
                    };
                    self.on_synced(report, resync).await?;
                }
                Step::Resume { from_seq } => {
                    let resync =
                        format!("partial resync: same history, resuming after seq {from_seq}");
                    info!("{resync} from {}", self.upstream);
                    self.on_synced(SyncReport::Resumed { from_seq }, resync)
                        .await?;
                }
                Step::Apply(entry) => self.apply_batch(reader, entry).await?,
                Step::Heartbeat { seq } => self.node.update_link(|link| link.upstream_seq = seq),
                step => {
                    return Err(Error::Protocol(format!(
                        "unexpected {step:?} outside a snapshot"
                    )))
                }
            }
        }
    }

    async fn on_synced(&mut self, report: SyncReport, resync: String) -> Result<()> {
        let upstream = self.upstream.to_string();
        self.node
            .blocking(move |store| store.set_meta("primary_addr", &upstream))
            .await?;
        let seq = self.machine.last_seq();
        self.node.update_link(|link| {
            link.state = LinkState::Streaming;
            link.last_resync = Some(resync);
            link.last_error = None;
            link.upstream_seq = link.upstream_seq.max(seq);
        });
        self.applied.send_replace(seq);
        *self.synced = true;
        if let Some(first) = self.first_sync.take() {
            let _ = first.send(Ok(report));
        }
        Ok(())
    }

    /// Feeds snapshot chunks to a blocking install that holds one transaction open; if the
    /// stream breaks, the install's chunk source fails and the transaction rolls back.
    async fn receive_snapshot<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        history_id: String,
        seq: u64,
    ) -> Result<u64> {
        let (pieces, mut incoming) = mpsc::channel::<Piece>(2);
        let node = Arc::clone(self.node);
        let install = tokio::task::spawn_blocking(move || {
            let mut source = || match incoming.blocking_recv() {
                Some(Piece::Chunk(chunk)) => Ok(Some(chunk)),
                Some(Piece::End) => Ok(None),
                None => Err(Error::Protocol("the snapshot stream broke off".into())),
            };
            let keys = node
                .store()
                .install_snapshot(&history_id, seq, &mut source)?;
            // Here, not after the await: the install commits even if this link is torn
            // down meanwhile, and the new history must never reach chained replicas
            // through a stream of the old one.
            node.reset_history();
            node.reset_head(seq);
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
                    self.node.update_link(|link| {
                        if let Some((done, _)) = &mut link.snapshot {
                            *done += received;
                        }
                    });
                    Piece::Chunk(chunk)
                }
                Step::FinishSnapshot { .. } => Piece::End,
                Step::Heartbeat { .. } => continue,
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
    /// [`LOG_BATCH`]) in one transaction, then acks.
    async fn apply_batch<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut MessageReader<R>,
        first: LogEntry,
    ) -> Result<()> {
        let mut batch = vec![first];
        let mut failure = None;
        while batch.len() < LOG_BATCH {
            // `read` is cancel-safe: a frame half-received stays buffered in the reader.
            let Some(next) = reader.read().now_or_never() else {
                break;
            };
            match self.entry_from(next) {
                Ok(Some(entry)) => batch.push(entry),
                Ok(None) => {}
                Err(e) => {
                    // Apply the valid entries before it, then drop the link.
                    failure = Some(e);
                    break;
                }
            }
        }
        let last = self.machine.last_seq();
        self.node.blocking(move |store| store.apply(&batch)).await?;
        self.node.notify_head(last);
        self.applied.send_replace(last);
        self.node
            .update_link(|link| link.upstream_seq = link.upstream_seq.max(last));
        failure.map_or(Ok(()), Err)
    }

    /// The log entry in a message read while gathering a batch (`None` for a heartbeat).
    fn entry_from(&mut self, read: Result<Option<Message>>) -> Result<Option<LogEntry>> {
        match self.machine.on_message(read?.ok_or_else(closed)?)? {
            Step::Apply(entry) => Ok(Some(entry)),
            Step::Heartbeat { .. } => Ok(None),
            step => Err(Error::Protocol(format!(
                "unexpected {step:?} in the log stream"
            ))),
        }
    }
}

fn closed() -> Error {
    Error::Protocol("the upstream closed the connection".into())
}

async fn next_message<R: AsyncRead + Unpin>(reader: &mut MessageReader<R>) -> Result<Message> {
    reader
        .read_within(DEAD_PEER, "message from the upstream")
        .await?
        .ok_or_else(closed)
}
