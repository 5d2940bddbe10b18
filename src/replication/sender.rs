//! The upstream side of replication, run by a primary and (for chaining) by a replica:
//! accept connections on the replication port and serve each replica "the log from seq
//! X": a snapshot first when a partial resync is impossible, then log entries read from
//! the store, then, at the head, wait on the head-seq watch. There is no in-memory queue
//! per replica: the log table is the source, so a slow replica costs nothing but a cursor.

use super::{
    plan_sync, SyncPlan, UpstreamState, DEAD_PEER, HANDSHAKE_TIMEOUT, LOG_BATCH, PING_INTERVAL,
};
use crate::connection::{self, MessageReader, MessageWriter};
use crate::error::{Error, Result};
use crate::node::{DownstreamStatus, Node};
use crate::protocol::{
    Message, HANDSHAKE_MAX_FRAME, PROTOCOL_VERSION, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_ENTRIES,
};
use crate::store::Snapshot;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{info, warn};

/// Most replica connections served at once; more are refused with an `Error` frame.
pub const MAX_REPLICA_CONNECTIONS: usize = 128;

/// Accepts replica connections on `listener` until the node shuts down, serving each on
/// its own task.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let shutdown = node.shutdown_token().clone();
    let slots = Arc::new(Semaphore::new(MAX_REPLICA_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let node = Arc::clone(&node);
        let permit = Arc::clone(&slots).try_acquire_owned();
        tokio::spawn(async move {
            let Ok(_permit) = permit else {
                refuse(stream, "too many replica connections").await;
                return;
            };
            match serve_replica(&node, stream, peer).await {
                Ok(()) => info!("replica connection from {peer} closed"),
                Err(e) => warn!("replica connection from {peer} closed: {e}"),
            }
        });
    }
}

async fn refuse(stream: TcpStream, reason: &str) {
    let (_, mut writer) = connection::split(stream, HANDSHAKE_MAX_FRAME);
    let message = Message::Error {
        message: reason.into(),
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(&message)).await;
}

/// Serves one replica connection from handshake to close. Any error is also sent to the
/// replica as an `Error` frame (best effort) before the connection closes.
pub async fn serve_replica(node: &Node, stream: TcpStream, peer: SocketAddr) -> Result<()> {
    // Replicas only ever send small frames (Join, Ack, Ping): keep the limit small for
    // the whole connection so no peer can make this node buffer much.
    let (mut reader, mut writer) = connection::split(stream, HANDSHAKE_MAX_FRAME);
    let result = tokio::select! {
        result = handle(node, &mut reader, &mut writer, peer) => result,
        _ = node.shutdown_token().cancelled() => Err(Error::Shutdown),
    };
    if let Err(e) = &result {
        let message = Message::Error {
            message: e.to_string(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), writer.send(&message)).await;
    }
    result
}

async fn handle<R, W>(
    node: &Node,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
    peer: SocketAddr,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (node_id, replica_addr, history, last_seq) = read_join(reader).await?;
    // Taken before reading the state, so a snapshot install after this point ends us.
    let reset = node.history_reset_token();
    let position = node.blocking(|store| store.position()).await?;
    let Some(history_id) = position.history_id else {
        return Err(Error::Protocol(
            "this node has not synced from a primary yet; nothing to serve".into(),
        ));
    };
    let upstream = UpstreamState {
        history_id,
        head: position.head,
        oldest_log: position.oldest_log,
    };
    let plan = plan_sync(&upstream, history.as_deref(), last_seq);
    info!("replica {replica_addr} ({peer}) joined: {plan}");
    let id = node.add_downstream(DownstreamStatus {
        node_id,
        replica_addr,
        peer,
        acked_seq: last_seq,
        last_ack: Instant::now(),
    });
    let result = tokio::select! {
        result = read_acks(node, id, reader) => result,
        result = stream_history(node, writer, &upstream.history_id, plan) => result,
        _ = reset.cancelled() => Err(Error::Protocol(
            "this node's contents were replaced by a new snapshot; join again".into(),
        )),
    };
    node.remove_downstream(id);
    result
}

type JoinFields = (String, String, Option<String>, u64);

async fn read_join<R: AsyncRead + Unpin>(reader: &mut MessageReader<R>) -> Result<JoinFields> {
    match reader.read_within(HANDSHAKE_TIMEOUT, "Join").await? {
        Some(Message::Join {
            node_id,
            replica_addr,
            history_id,
            last_seq,
            protocol_version,
        }) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(Error::Protocol(format!(
                    "protocol version {protocol_version} is not supported (this node speaks {PROTOCOL_VERSION})"
                )));
            }
            Ok((node_id, replica_addr, history_id, last_seq))
        }
        Some(other) => Err(Error::Protocol(format!(
            "expected Join as the first message, got {}",
            other.name()
        ))),
        None => Err(Error::Protocol("connection closed before Join".into())),
    }
}

/// Records the replica's acks until it closes; a replica silent for [`DEAD_PEER`] is dead.
async fn read_acks<R: AsyncRead + Unpin>(
    node: &Node,
    id: u64,
    reader: &mut MessageReader<R>,
) -> Result<()> {
    loop {
        match reader
            .read_within(DEAD_PEER, "ack or ping from the replica")
            .await?
        {
            None => return Ok(()),
            Some(Message::Ack { seq }) => node.record_ack(id, seq),
            Some(Message::Ping { .. }) => {}
            Some(Message::Error { message }) => return Err(Error::Remote(message)),
            Some(other) => {
                return Err(Error::Protocol(format!(
                    "unexpected {} from a replica",
                    other.name()
                )))
            }
        }
    }
}

async fn stream_history<W: AsyncWrite + Unpin>(
    node: &Node,
    writer: &mut MessageWriter<W>,
    history_id: &str,
    plan: SyncPlan,
) -> Result<()> {
    let from_seq = match plan {
        SyncPlan::Partial { from_seq } => {
            let message = Message::Continue {
                history_id: history_id.to_string(),
                from_seq,
            };
            writer.send(&message).await?;
            from_seq
        }
        SyncPlan::Full(reason) => {
            send_snapshot(node, writer, history_id, reason.to_string()).await?
        }
    };
    stream_log(node, writer, from_seq).await
}

/// Streams a snapshot in bounded chunks from one read transaction; returns its seq.
async fn send_snapshot<W: AsyncWrite + Unpin>(
    node: &Node,
    writer: &mut MessageWriter<W>,
    history_id: &str,
    reason: String,
) -> Result<u64> {
    let mut snapshot = node.blocking(|store| store.snapshot()).await?;
    if snapshot.history_id() != Some(history_id) {
        // The contents were replaced since the plan was made; the reset token ends us.
        return Err(Error::Protocol(
            "this node's history changed while the replica joined; join again".into(),
        ));
    }
    let seq = snapshot.seq();
    let begin = Message::SnapshotBegin {
        history_id: history_id.to_string(),
        seq,
        keys: snapshot.key_count(),
        reason,
    };
    writer.send(&begin).await?;
    loop {
        let (returned, chunk) = tokio::task::spawn_blocking(move || {
            let chunk = snapshot.next_chunk(SNAPSHOT_CHUNK_ENTRIES, SNAPSHOT_CHUNK_BYTES);
            (snapshot, chunk)
        })
        .await?;
        snapshot = returned;
        let entries = chunk?;
        if entries.is_empty() {
            break;
        }
        writer.send(&Message::Snapshot { entries }).await?;
    }
    // Closing the read transaction and its connection is SQLite work: off the runtime.
    tokio::task::spawn_blocking(move || drop::<Box<dyn Snapshot>>(snapshot)).await?;
    writer.send(&Message::SnapshotEnd { seq }).await?;
    Ok(seq)
}

/// Sends every log entry after `after`, then live entries as the head moves; pings when idle.
async fn stream_log<W: AsyncWrite + Unpin>(
    node: &Node,
    writer: &mut MessageWriter<W>,
    mut after: u64,
) -> Result<()> {
    let mut head = node.subscribe_head();
    loop {
        // Mark the head seen *before* reading the log, so a commit after the read still
        // wakes the wait below.
        head.borrow_and_update();
        let entries = node
            .blocking(move |store| store.log_since(after, LOG_BATCH))
            .await?;
        let Some(first) = entries.first() else {
            tokio::select! {
                changed = head.changed() => changed.map_err(|_| Error::Shutdown)?,
                _ = tokio::time::sleep(PING_INTERVAL) => {
                    writer.send(&Message::Ping { seq: after }).await?;
                }
            }
            continue;
        };
        if first.seq != after + 1 {
            return Err(Error::Protocol(format!(
                "log entries after seq {after} were trimmed (oldest kept {}); join again",
                first.seq
            )));
        }
        for entry in entries {
            after = entry.seq;
            writer.feed(&Message::from_entry(entry)).await?;
        }
        writer.flush().await?;
    }
}
