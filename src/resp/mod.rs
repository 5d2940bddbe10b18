//! The client port: the Redis protocol (RESP2) on `--resp ADDR`, so redis-cli,
//! redis-benchmark and Redis client libraries work against kv unchanged. Each connection
//! runs on its own task: it reads within the node's memory budget (when the budget is
//! spent it stops reading, and TCP holds the rest), requests are decoded with hard limits
//! as they arrive ([`codec`]), executed in order ([`session`]), and every reply already
//! due is sent in one write, so pipelines cost one round trip.

pub mod admin;
pub mod args;
pub mod auth;
pub mod changes;
pub mod codec;
pub mod commands;
pub mod expiry;
pub mod glob;
pub mod info;
mod inline;
pub mod output;
pub mod pipeline;
pub mod reads;
pub mod reply;
pub mod session;
pub mod strings;
pub mod writes;

use crate::auth::Secret;
use crate::net::stream::{ReadHalf, Stream};
use crate::net::tls::{Accepted, Port, Tls};
use crate::net::{accept_loop, say_goodbye, Listener};
use crate::node::budget::{Charge, MemoryBudget};
use crate::node::Node;
use auth::{AuthGate, AuthThrottle};
use bytes::{BufMut, BytesMut};
use codec::{Decoded, ProtocolError, RequestDecoder};
use info::ServerFacts;
use output::Output;
use session::{Flow, Session};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

/// Most client connections served at once; more are answered with an error and closed.
pub const MAX_CLIENTS: usize = 10_000;
/// A request that stops arriving for this long, part-way, is dropped with an error.
const PARTIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes read from a client at a time (and reserved on the budget first).
const READ_CHUNK: usize = 64 * 1024;
/// After a protocol error, how long (and how many bytes) kv keeps reading and discarding
/// what the client still sends, so that it reads the error reply rather than a reset.
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 1024 * 1024;

/// Serves Redis clients on `listener` until `node` shuts down.
/// With `secret`, every connection must authenticate first (see [`auth`]); with `tls`,
/// every connection speaks TLS.
pub async fn serve(
    node: Arc<Node>,
    listener: TcpListener,
    secret: Option<Arc<Secret>>,
    tls: Option<Arc<Tls>>,
) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let facts = Arc::new(ServerFacts {
        started: Instant::now(),
        port,
        secret,
        throttle: AuthThrottle::default(),
        counts: Default::default(),
    });
    let ids = AtomicU64::new(1);
    let shutdown = node.shutdown_token().clone();
    let tasks = node.replication().tasks().clone();
    let listener = Listener {
        listener,
        max_connections: MAX_CLIENTS,
        what: "client",
    };
    let stopping = shutdown.clone();
    let tls_port = tls.is_some();
    let serve = move |tcp: TcpStream, peer: SocketAddr| {
        let tls = tls.clone();
        let id = ids.fetch_add(1, Ordering::Relaxed);
        let session = Session::new(Arc::clone(&node), Arc::clone(&facts), id).with_peer(peer.ip());
        let budget = node.budget().clone();
        let stopping = stopping.clone();
        let authenticated = session.authenticated_flag();
        let connected = facts.counts.connection();
        async move {
            let _connected = connected;
            tokio::select! {
                _ = stopping.cancelled() => {}
                _ = auth::unauthenticated_deadline(authenticated) => {
                    debug!("client {peer} did not authenticate in time; closed");
                }
                result = secure_and_serve(session, budget, (tcp, peer), tls) => match result {
                    Ok(()) => debug!("client {peer} disconnected"),
                    Err(e) => debug!("client {peer} closed: {e}"),
                },
            }
        }
    };
    let refuse = move |tcp| refuse(tcp, tls_port);
    accept_loop(listener, shutdown, tasks, serve, refuse).await;
}

/// Refuses a client beyond [`MAX_CLIENTS`]: with the reason in RESP on a plain port; on a
/// TLS port by closing, as a TLS client could not read a plain-text reason.
async fn refuse(tcp: TcpStream, tls: bool) {
    if tls {
        return;
    }
    let mut out = BytesMut::new();
    reply::error(&mut out, "ERR max number of clients reached");
    say_goodbye(tcp, &out).await;
}

/// Serves one client connection, over TLS where the port speaks it. A handshake that
/// fails is logged, and a client speaking plain text is told, in RESP, to use TLS.
async fn secure_and_serve(
    session: Session,
    budget: MemoryBudget,
    (tcp, peer): (TcpStream, SocketAddr),
    tls: Option<Arc<Tls>>,
) -> Result<(), ProtocolError> {
    let Some(tls) = tls else {
        return serve_client(session, budget, tcp.into()).await;
    };
    match tls.accept(Port::Clients, tcp).await {
        Accepted::Tls(stream) => serve_client(session, budget, stream).await,
        Accepted::PlainText(tcp) => {
            warn!("refused client {peer}: plain text on a TLS port");
            let mut out = BytesMut::new();
            reply::error(
                &mut out,
                "ERR this port speaks TLS only (redis-cli --tls --cacert ca.pem)",
            );
            say_goodbye(tcp, &out).await;
            Ok(())
        }
        Accepted::Failed(why) => {
            warn!("refused client {peer}: {why}");
            Ok(())
        }
        Accepted::Closed => {
            debug!("client {peer} closed before a TLS handshake");
            Ok(())
        }
    }
}

/// Runs one client connection: read, decode, execute, reply, until it closes, sends
/// `QUIT`, or breaks the protocol (answered with an error, then closed).
async fn serve_client(
    mut session: Session,
    budget: MemoryBudget,
    stream: Stream,
) -> Result<(), ProtocolError> {
    let (mut read, write) = stream.into_split();
    let mut out = Output::new(Box::new(write));
    let mut buffer = BytesMut::new();
    let mut decoder = RequestDecoder::default();
    // The budget held for bytes read and not yet handed to a request.
    let mut held = Charge::default();
    let mut gate = AuthGate::default();
    loop {
        // Execute every request already received before sending the replies at once.
        loop {
            let decoded = match decoder.decode(&mut buffer) {
                Ok(Some(decoded)) => decoded,
                Ok(None) => break,
                Err(e) => return fail(&mut session, &mut out, &mut read, e).await,
            };
            match decoded {
                Decoded::Request(args) => {
                    let charge = held.take(args.iter().map(Vec::len).sum());
                    if session.execute(args, charge, &mut out).await? == Flow::Close {
                        session.settle(&mut out).await?;
                        return Ok(out.close().await?);
                    }
                    out.flush_if_full().await?;
                }
                Decoded::Refused(reason) => session.refuse(&reason, &mut out).await?,
            }
        }
        // Every request received has run: a stranger that sent too much is cut off.
        if let Err(why) = gate.check(session.authenticated()) {
            let e = ProtocolError::Unauthenticated(why);
            return fail(&mut session, &mut out, &mut read, e).await;
        }
        // Keep charged only what is still in memory: request framing, blank lines and
        // discarded requests are gone, and the overdraft is for a request in progress.
        held.keep(buffer.len() + decoder.retained());
        let mid_request = decoder.in_request() || !buffer.is_empty();
        if !mid_request {
            held.release_overdraft();
        }
        // More already waiting, and budget at hand: take it now, so a pipeline's writes
        // go on filling the writer's next commit instead of waiting for this one.
        let ready = read_ready(&mut read, &mut buffer, &budget, &mut held);
        let got = match ready {
            Ok(Some(n)) => n,
            Ok(None) => {
                session.settle(&mut out).await?;
                out.flush().await?;
                // Backpressure: with the budget spent, this waits, and the client's bytes
                // wait in its socket, however far into a request it is.
                let mut grant = match held.has_overdraft() {
                    true => Charge::default(),
                    false => budget.reserve(READ_CHUNK, mid_request).await,
                };
                // Until the connection authenticates, within its deadline.
                let reading = read_some(&mut read, &mut buffer, mid_request);
                let read_bytes = match gate.bounded(session.authenticated(), reading).await {
                    Ok(read_bytes) => read_bytes,
                    Err(why) => Err(ProtocolError::Unauthenticated(why)),
                };
                grant.keep(*read_bytes.as_ref().unwrap_or(&0));
                held.merge(grant);
                match read_bytes {
                    Ok(n) => n,
                    Err(e) => return fail(&mut session, &mut out, &mut read, e).await,
                }
            }
            Err(e) => return fail(&mut session, &mut out, &mut read, e).await,
        };
        gate.count(got);
        if got == 0 {
            if let Err(e) = decoder.at_end(&buffer) {
                return fail(&mut session, &mut out, &mut read, e).await;
            }
            session.settle(&mut out).await?;
            return Ok(out.flush().await?);
        }
    }
}

/// Reads what is already waiting on the socket, if the budget allows it at once: `None`
/// when nothing is waiting or the budget is spent (the caller then answers what is due
/// and waits), `Some(0)` at the end of the stream.
fn read_ready(
    read: &mut ReadHalf,
    buffer: &mut BytesMut,
    budget: &MemoryBudget,
    held: &mut Charge,
) -> Result<Option<usize>, ProtocolError> {
    let mut grant = match held.has_overdraft() {
        true => Charge::default(),
        false => match budget.try_reserve(READ_CHUNK) {
            Some(grant) => grant,
            None => return Ok(None),
        },
    };
    match read.try_read_buf(&mut buffer.limit(READ_CHUNK)) {
        Ok(n) => {
            grant.keep(n);
            held.merge(grant);
            Ok(Some(n))
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Reads up to [`READ_CHUNK`] more bytes; in the middle of a request, silence for
/// [`PARTIAL_REQUEST_TIMEOUT`] is an error (a stalled client cannot hold a buffer and a
/// slot for good), while an idle connection may wait forever.
async fn read_some(
    read: &mut ReadHalf,
    buffer: &mut BytesMut,
    mid_request: bool,
) -> Result<usize, ProtocolError> {
    let mut room = buffer.limit(READ_CHUNK);
    let reading = read.read_buf(&mut room);
    if !mid_request {
        return Ok(reading.await?);
    }
    match tokio::time::timeout(PARTIAL_REQUEST_TIMEOUT, reading).await {
        Ok(read) => Ok(read?),
        Err(_) => Err(ProtocolError::Unterminated),
    }
}

/// Ends a connection that broke the protocol: the replies due, the error, then a short
/// linger reading what the client still sends, so it sees the error and not a reset.
async fn fail(
    session: &mut Session,
    out: &mut Output,
    read: &mut ReadHalf,
    error: ProtocolError,
) -> Result<(), ProtocolError> {
    if let ProtocolError::Io(_) = error {
        return Err(error);
    }
    if session.settle(out).await.is_err() {
        return Err(error);
    }
    reply::error(out.buffer(), &format!("ERR {error}"));
    if out.close().await.is_ok() {
        let mut sink = vec![0; 64 * 1024];
        let mut drained = 0;
        let deadline = tokio::time::Instant::now() + LINGER;
        while drained < LINGER_BYTES {
            match tokio::time::timeout_at(deadline, read.read(&mut sink)).await {
                Ok(Ok(n)) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
    Err(error)
}
