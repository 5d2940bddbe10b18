//! The upstream side of replication, run by a primary and (for chaining) by a replica:
//! accept connections on the replication port and serve each replica "the log from seq
//! X": a snapshot first when a partial resync is impossible, then log entries read from
//! the store, then, at the head, wait on the head-seq watch. There is no in-memory queue
//! per replica: the log table is the source, so a slow replica costs nothing but a cursor
//! and at most a window ([`InFlight`]) of unacknowledged entries in its socket buffers.
//! The replica is told the head at least every [`PING_INTERVAL`], also while the window
//! is full, so it always knows how far behind it is.

use super::downstreams::{Registration, ReplicaIdentity};
use super::link_auth;
use super::plan::{
    decide, deposed, first_look, keep_diverged_after, Bisection, FirstLook, JoinerState,
};
use super::window::WINDOW_BYTES;
use super::{
    InFlight, Replication, SyncPlan, UpstreamState, DEAD_PEER, HANDSHAKE_TIMEOUT, LOG_BATCH,
    PING_INTERVAL,
};
use crate::connection::{self, MessageReader, MessageWriter};
use crate::error::{Error, Result};
use crate::net::stream::Stream;
use crate::net::tls::{Accepted, Port};
use crate::net::{self, accept_loop, Listener, REFUSE_TIMEOUT};
use crate::protocol::{
    Message, HANDSHAKE_MAX_FRAME, PROTOCOL_VERSION, SNAPSHOT_CHUNK_BYTES, SNAPSHOT_CHUNK_ENTRIES,
};
use crate::store::{check_next_seq, Lineage, Snapshot};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tracing::{debug, info, warn};

/// Most replica connections served at once; more are refused with an `Error` frame.
pub const MAX_REPLICA_CONNECTIONS: usize = 128;

/// Accepts replica connections on `listener` until the node shuts down, serving each on
/// its own task. Tests call this with a listener bound to port 0.
pub async fn serve(repl: Arc<Replication>, listener: TcpListener) {
    let listener = Listener {
        listener,
        max_connections: MAX_REPLICA_CONNECTIONS,
        what: "replica",
    };
    let shutdown = repl.shutdown_token().clone();
    let tasks = repl.tasks().clone();
    let repl_tls = repl.tls().is_some();
    let serve = move |tcp, peer| {
        let repl = Arc::clone(&repl);
        async move {
            let secured = tokio::select! {
                secured = secure(&repl, tcp, peer) => secured,
                _ = repl.shutdown_token().cancelled() => None,
            };
            let Some(stream) = secured else {
                return;
            };
            match serve_replica(&repl, stream, peer).await {
                Ok(()) => info!("replica connection from {peer} closed"),
                Err(e) if e.is_shutdown() => {}
                Err(e) => warn!("replica connection from {peer} closed: {e}"),
            }
        }
    };
    // A TLS peer could not read a plain-text reason: it is only closed.
    let tls_port = repl_tls;
    let refuse = move |tcp| async move {
        if !tls_port {
            say_goodbye(tcp, "too many replica connections").await;
        }
    };
    accept_loop(listener, shutdown, tasks, serve, refuse).await;
}

/// The connection over TLS where this node's links use it: `None` (logged, and the
/// peer told in plain text if it spoke plain text) when the handshake fails.
async fn secure(repl: &Replication, tcp: TcpStream, peer: SocketAddr) -> Option<Stream> {
    let Some(tls) = repl.tls() else {
        return Some(tcp.into());
    };
    match tls.accept(Port::Link, tcp).await {
        Accepted::Tls(stream) => Some(stream),
        Accepted::PlainText(tcp) => {
            warn!("refused a replica connection from {peer}: plain text on a TLS port");
            say_goodbye(
                tcp,
                "this port speaks TLS only: give the replica --tls-cert, --tls-key and --tls-ca",
            )
            .await;
            None
        }
        Accepted::Failed(why) => {
            warn!("refused a replica connection from {peer}: {why}");
            None
        }
        Accepted::Closed => {
            debug!("a connection from {peer} closed before a TLS handshake");
            None
        }
    }
}

/// Tells a peer that will not be served why, in an `Error` frame, and closes.
async fn say_goodbye(tcp: TcpStream, reason: &'static str) {
    let message = Message::Error {
        message: reason.into(),
    };
    let Ok(body) = crate::protocol::encode(&message) else {
        return;
    };
    let mut frame = u32::try_from(body.len())
        .unwrap_or(0)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&body);
    net::say_goodbye(tcp, &frame).await;
}

/// Tells the replica why its connection ends (best effort, briefly).
async fn send_error<W: AsyncWrite + Unpin>(writer: &mut MessageWriter<W>, message: String) {
    let message = Message::Error { message };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, writer.send(&message)).await;
}

/// Serves one replica connection from handshake to close. Any error is also sent to the
/// replica as an `Error` frame (best effort) before the connection closes; so is the
/// node stopping.
pub async fn serve_replica(repl: &Replication, stream: Stream, peer: SocketAddr) -> Result<()> {
    // Replicas only ever send small frames (Join, Ack, Ping): keep the limit small for
    // the whole connection so no peer can make this node buffer much.
    let (mut reader, mut writer) = connection::split(stream, HANDSHAKE_MAX_FRAME);
    let result = tokio::select! {
        result = handle(repl, &mut reader, &mut writer, peer) => result,
        _ = repl.shutdown_token().cancelled() => Err(Error::Shutdown),
    };
    if let Err(e) = &result {
        let why = match e {
            Error::Shutdown => "it is shutting down".into(),
            other => other.to_string(),
        };
        send_error(&mut writer, why).await;
    }
    result
}

async fn handle<R, W>(
    repl: &Replication,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
    peer: SocketAddr,
) -> Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (identity, joiner) = read_join(repl, reader, writer, peer).await?;
    // Taken before reading the state, so a snapshot install after this point ends us.
    let reset = repl.history_reset_token();
    let position = repl.blocking(|store| store.position()).await?;
    if position.history_id.is_none() {
        return Err(Error::Protocol(
            "this node has not synced from a primary yet; nothing to serve".into(),
        ));
    }
    if let Some(reason) = deposed(position.epoch, joiner.lineage.epoch) {
        return Err(Error::Protocol(format!("refusing this replica: {reason}")));
    }
    let upstream = UpstreamState {
        lineage: position.lineage(),
        head: position.head,
        oldest_log: position.oldest_log,
    };
    let plan = match first_look(&upstream, &joiner) {
        FirstLook::Decided(plan) => plan,
        FirstLook::Verify { at } => {
            let mut probes = Probes {
                repl,
                reader,
                writer,
                joiner: &joiner,
            };
            let (common, differ) = probes.find_common(at, upstream.oldest_log).await?;
            decide(&upstream, &joiner, common, differ)
        }
    };
    info!("replica {} ({peer}) joined: {plan}", identity.replica_addr);
    // What the replica holds of this history: its seq when it continues; nothing yet
    // when it gets a snapshot (whatever seq it claims belongs to another history).
    let holds = match plan {
        SyncPlan::Partial { from_seq, .. } => from_seq,
        SyncPlan::Full(_) => 0,
    };
    let registration = repl.downstreams().register(identity, holds);
    let lineage = upstream.lineage;
    let keep = keep_diverged_after(&plan, &joiner);
    // Biased to the reset: once this node's history changed, not one more entry goes out
    // on a stream that began in the old one.
    tokio::select! {
        biased;
        _ = reset.cancelled() => Err(Error::Protocol(
            "this node's history changed (a new snapshot, or a promotion); join again".into(),
        )),
        result = read_acks(&registration, reader) => result,
        result = stream_history(repl, &registration, writer, &lineage, keep, plan) => result,
    }
}

/// The replica's `Join`, after it proved the shared secret (if this node has one).
async fn read_join<R, W>(
    repl: &Replication,
    reader: &mut MessageReader<R>,
    writer: &mut MessageWriter<W>,
    peer: SocketAddr,
) -> Result<(ReplicaIdentity, JoinerState)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match link_auth::check_replica(repl.secret(), reader, writer).await? {
        Some(Message::Join {
            node_id,
            replica_addr,
            history_id,
            last_seq,
            protocol_version,
            fork,
            checksum,
            oldest_log,
            epoch,
        }) => {
            if protocol_version != PROTOCOL_VERSION {
                return Err(Error::Protocol(format!(
                    "protocol version {protocol_version} is not supported (this node speaks {PROTOCOL_VERSION})"
                )));
            }
            let identity = ReplicaIdentity {
                node_id,
                replica_addr: reachable_addr(&replica_addr, peer),
                peer,
            };
            let joiner = JoinerState {
                lineage: Lineage {
                    history_id,
                    fork,
                    epoch,
                },
                seq: last_seq,
                checksum,
                oldest_log,
            };
            Ok((identity, joiner))
        }
        Some(other) => Err(Error::Protocol(format!(
            "expected Join as the first message, got {}",
            other.name()
        ))),
        None => Err(Error::Protocol("connection closed before Join".into())),
    }
}

/// The address a replica can be reached at: what it reported (its `--listen`), with the
/// address its connection came from when it listens on all interfaces (`0.0.0.0:P`), so
/// `INFO`, `STATUS` and `FAILOVER` name a host that reaches it.
fn reachable_addr(reported: &str, peer: SocketAddr) -> String {
    match reported.parse::<SocketAddr>() {
        Ok(addr) if addr.ip().is_unspecified() => {
            SocketAddr::new(peer.ip(), addr.port()).to_string()
        }
        _ => reported.to_string(),
    }
}

/// The handshake's content comparison: this node's log checksums against the joiner's,
/// asked for one seq at a time.
struct Probes<'a, R, W> {
    repl: &'a Replication,
    reader: &'a mut MessageReader<R>,
    writer: &'a mut MessageWriter<W>,
    joiner: &'a JoinerState,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Probes<'_, R, W> {
    /// The last seq at which both logs agree, at most `at`, and whether they differed at
    /// `at`. Where a checksum is unknown (rows older than checksums), ids are trusted.
    async fn find_common(&mut self, at: u64, oldest: Option<u64>) -> Result<(u64, bool)> {
        if self.agree_at(at).await? != Some(false) {
            return Ok((at, false));
        }
        // The lowest seq both logs can answer for; below it nothing can be compared.
        let lowest = oldest
            .unwrap_or(0)
            .max(self.joiner.oldest_log.unwrap_or(0))
            .min(at);
        if lowest == at || self.agree_at(lowest).await? != Some(true) {
            // The common point lies before what the logs retain: every entry the joiner
            // holds is kept as diverged.
            let before_joiner = self.joiner.oldest_log.map_or(0, |o| o.saturating_sub(1));
            return Ok((before_joiner.min(at.saturating_sub(1)), true));
        }
        let mut search = Bisection::new(lowest, at);
        while let Some(seq) = search.next_probe() {
            let agree = self.agree_at(seq).await? == Some(true);
            search.record(seq, agree);
        }
        Ok((search.common(), true))
    }

    /// Whether both logs have the same checksum at `seq` (`None`: one does not know).
    async fn agree_at(&mut self, seq: u64) -> Result<Option<bool>> {
        let ours = self
            .repl
            .blocking(move |store| store.checksum_at(seq))
            .await?;
        let theirs = match seq {
            0 => Some(0),
            seq if seq == self.joiner.seq => self.joiner.checksum,
            seq => self.ask(seq).await?,
        };
        Ok(ours.zip(theirs).map(|(ours, theirs)| ours == theirs))
    }

    async fn ask(&mut self, seq: u64) -> Result<Option<u64>> {
        self.writer.send(&Message::Probe { seq }).await?;
        match self
            .reader
            .read_before(HANDSHAKE_TIMEOUT, "ProbeReply")
            .await?
        {
            Some(Message::ProbeReply {
                seq: answered,
                checksum,
            }) if answered == seq => Ok(checksum),
            Some(other) => Err(Error::Protocol(format!(
                "expected ProbeReply for seq {seq}, got {}",
                other.name()
            ))),
            None => Err(Error::Protocol(
                "connection closed during the handshake".into(),
            )),
        }
    }
}

/// Records the replica's acks and heartbeats until it closes; a replica from which
/// nothing arrives for [`DEAD_PEER`] is dead.
async fn read_acks<R: AsyncRead + Unpin>(
    registration: &Registration,
    reader: &mut MessageReader<R>,
) -> Result<()> {
    loop {
        match reader
            .read_within(DEAD_PEER, "an ack or heartbeat from the replica")
            .await?
        {
            None => return Ok(()),
            Some(Message::Ack { seq }) => {
                registration.ack(seq);
            }
            Some(Message::Ping { .. }) => registration.heard(),
            Some(Message::Error { message }) => {
                return Err(Error::Remote(format!("the replica says: {message}")))
            }
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
    repl: &Replication,
    registration: &Registration,
    writer: &mut MessageWriter<W>,
    lineage: &Lineage,
    keep_diverged_after: Option<u64>,
    plan: SyncPlan,
) -> Result<()> {
    let from_seq = match plan {
        SyncPlan::Partial { from_seq, .. } => {
            let message = Message::Continue {
                history_id: lineage.history_id.clone().unwrap_or_default(),
                from_seq,
                fork: lineage.fork.clone(),
                epoch: lineage.epoch,
            };
            writer.send(&message).await?;
            from_seq
        }
        SyncPlan::Full(reason) => {
            let begin = SnapshotStart {
                history_id: lineage.history_id.as_deref().unwrap_or_default(),
                reason: reason.to_string(),
                keep_diverged_after,
            };
            let seq = send_snapshot(repl, writer, begin).await?;
            registration.sent(seq);
            writer.send(&Message::SnapshotEnd { seq }).await?;
            seq
        }
    };
    stream_log(repl, registration, writer, from_seq).await
}

/// What a full resync's `SnapshotBegin` says besides the snapshot's own facts.
struct SnapshotStart<'a> {
    history_id: &'a str,
    reason: String,
    keep_diverged_after: Option<u64>,
}

/// Streams a snapshot in bounded chunks from one read transaction; returns its seq (the
/// caller ends it with `SnapshotEnd`).
async fn send_snapshot<W: AsyncWrite + Unpin>(
    repl: &Replication,
    writer: &mut MessageWriter<W>,
    start: SnapshotStart<'_>,
) -> Result<u64> {
    let history_id = start.history_id;
    let mut snapshot = repl.blocking(|store| store.snapshot()).await?;
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
        reason: start.reason,
        fork: snapshot.info().fork.clone(),
        checksum: snapshot.info().checksum,
        keep_diverged_after: start.keep_diverged_after,
        epoch: snapshot.info().epoch,
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
    Ok(seq)
}

/// Log entries read where the sender's task runs when no more than this many are new...
const INLINE_TAIL: u64 = 16;
/// ...and at most about this many bytes of them (one larger entry goes alone).
const INLINE_BYTES: usize = 64 * 1024;

/// Sends every log entry after `after`, then live entries as the head moves, keeping at
/// most a window of unacknowledged entries in flight; tells the head (a `Ping`) at once
/// and then at least every [`PING_INTERVAL`].
async fn stream_log<W: AsyncWrite + Unpin>(
    repl: &Replication,
    registration: &Registration,
    writer: &mut MessageWriter<W>,
    mut after: u64,
) -> Result<()> {
    let mut head = repl.subscribe_head();
    let mut acked = registration.acked();
    let mut promotion = registration.promotion();
    let mut promoted = None;
    let mut window = InFlight::new(WINDOW_BYTES);
    let mut next_ping = Instant::now();
    loop {
        window.acked(*acked.borrow_and_update());
        let requested = *promotion.borrow_and_update();
        if let Some(seq) = requested.filter(|_| requested != promoted) {
            // FAILOVER: writes are paused at `seq`, which the replica acked.
            writer.send(&Message::Promote { seq }).await?;
            promoted = requested;
        }
        // Mark the head seen *before* reading the log, so a commit after the read still
        // wakes the wait below.
        let head_seq = *head.borrow_and_update();
        if Instant::now() >= next_ping {
            writer
                .send(&Message::Ping {
                    seq: after,
                    head: head_seq,
                })
                .await?;
            next_ping = Instant::now() + PING_INTERVAL;
        }
        let room = window.room();
        if room == 0 {
            // Full: wait for the replica to catch up, telling it the head meanwhile.
            tokio::select! {
                changed = acked.changed() => changed.map_err(|_| Error::Shutdown)?,
                _ = promotion.changed() => {}
                _ = tokio::time::sleep_until(next_ping) => {}
            }
            continue;
        }
        // The live tail (a few entries just committed) is a short indexed read: cheaper
        // where the task is than a hop to the blocking pool and back, and bounded in count
        // and bytes whatever was committed since. A backlog is read off the runtime.
        let mut entries = match head_seq.saturating_sub(after) <= INLINE_TAIL {
            true => repl
                .store()
                .log_batch(after, INLINE_TAIL as usize, room.min(INLINE_BYTES))?,
            false => {
                repl.blocking(move |store| store.log_batch(after, LOG_BATCH, room))
                    .await?
            }
        };
        // Nothing past the head goes out: a replica's head is what it holds durably, and
        // rows it applied after that are not yet (see `acks`).
        entries.retain(|entry| entry.seq <= head_seq);
        let Some(first) = entries.first() else {
            tokio::select! {
                changed = head.changed() => changed.map_err(|_| Error::Shutdown)?,
                _ = promotion.changed() => {}
                _ = tokio::time::sleep_until(next_ping) => {}
            }
            continue;
        };
        if check_next_seq(after, first.seq).is_err() {
            return Err(Error::Protocol(format!(
                "log entries after seq {after} were trimmed (oldest kept {}); join again",
                first.seq
            )));
        }
        for entry in entries {
            after = entry.seq;
            window.sent(entry.seq, entry.op.size());
            // Recorded before it can arrive, so the replica's ack of it is never clamped.
            registration.sent(entry.seq);
            writer.feed(&Message::from_entry(entry)).await?;
        }
        writer.flush().await?;
    }
}
