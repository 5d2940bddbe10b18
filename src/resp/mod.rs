//! The client port: the Redis protocol (RESP2) on `--resp ADDR`, so redis-cli,
//! redis-benchmark and Redis client libraries work against kv unchanged. Each connection
//! runs on its own task: requests are decoded with hard limits ([`codec`]), executed in
//! order ([`commands`], [`admin`]), and every reply already due is sent in one write, so
//! pipelines cost one round trip.

pub mod admin;
pub mod codec;
pub mod commands;
pub mod glob;
pub mod info;
pub mod writes;

use crate::node::Node;
use bytes::BytesMut;
use codec::{reply, ProtocolError, RequestDecoder};
use commands::{Flow, Session};
use futures::{FutureExt, StreamExt};
use info::ServerFacts;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::codec::FramedRead;
use tracing::{debug, warn};

/// Most client connections served at once; more are answered with an error and closed.
pub const MAX_CLIENTS: usize = 10_000;
/// A request begun but not finished within this long is dropped with an error.
const PARTIAL_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Replies are sent once this many bytes are queued, even mid-pipeline.
const FLUSH_AT: usize = 64 * 1024;
/// A reply buffer grown beyond this by a large reply is released once flushed.
const KEEP_BUFFER: usize = 1024 * 1024;

/// Serves Redis clients on `listener` until `node` shuts down.
pub async fn serve(node: Arc<Node>, listener: TcpListener) {
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    let facts = Arc::new(ServerFacts {
        started: Instant::now(),
        port,
    });
    let slots = Arc::new(Semaphore::new(MAX_CLIENTS));
    let ids = AtomicU64::new(1);
    let shutdown = node.shutdown_token().clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!("client accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let permit = Arc::clone(&slots).try_acquire_owned();
        let session = Session::new(
            Arc::clone(&node),
            Arc::clone(&facts),
            ids.fetch_add(1, Ordering::Relaxed),
        );
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(_permit) = permit else {
                refuse(stream).await;
                return;
            };
            tokio::select! {
                _ = shutdown.cancelled() => {}
                result = serve_client(session, stream) => match result {
                    Ok(()) => debug!("client {peer} disconnected"),
                    Err(e) => debug!("client {peer} closed: {e}"),
                },
            }
        });
    }
}

async fn refuse(mut stream: TcpStream) {
    let mut out = BytesMut::new();
    reply::error(&mut out, "ERR max number of clients reached");
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&out)).await;
}

async fn flush(write: &mut OwnedWriteHalf, out: &mut BytesMut) -> Result<(), ProtocolError> {
    if !out.is_empty() {
        write.write_all(out).await?;
        out.clear();
    }
    // One large reply must not pin its buffer for the rest of the connection.
    if out.capacity() > KEEP_BUFFER {
        *out = BytesMut::new();
    }
    Ok(())
}

/// Runs one client connection: decode, execute, reply, until it closes, sends `QUIT`, or
/// breaks the protocol (answered with an error, then closed).
async fn serve_client(mut session: Session, stream: TcpStream) -> Result<(), ProtocolError> {
    let (read, mut write) = stream.into_split();
    let mut requests = FramedRead::new(read, RequestDecoder);
    let mut out = BytesMut::new();
    loop {
        // Execute every request already received before sending the replies at once.
        let next = match requests.next().now_or_never() {
            Some(next) => next,
            None => {
                session.settle(&mut out).await;
                flush(&mut write, &mut out).await?;
                next_request(&mut requests).await
            }
        };
        let request = match next {
            None => {
                session.settle(&mut out).await;
                return flush(&mut write, &mut out).await;
            }
            Some(Ok(request)) => request,
            Some(Err(e)) => {
                session.settle(&mut out).await;
                reply::error(&mut out, &format!("ERR {e}"));
                flush(&mut write, &mut out).await?;
                return Err(e);
            }
        };
        if session.execute(request, &mut out).await == Flow::Close {
            return flush(&mut write, &mut out).await;
        }
        if out.len() >= FLUSH_AT {
            flush(&mut write, &mut out).await?;
        }
    }
}

/// Waits for the next request. An idle connection may wait forever, but part of a request
/// left unfinished through a whole [`PARTIAL_REQUEST_TIMEOUT`] interval (so for one to two
/// intervals) is an error: a stalled client cannot hold a buffer and a slot for good.
async fn next_request(
    requests: &mut FramedRead<tokio::net::tcp::OwnedReadHalf, RequestDecoder>,
) -> Option<Result<codec::Request, ProtocolError>> {
    let mut partial_at_last_check = false;
    loop {
        // `next` is cancel-safe: bytes already read stay in the reader's buffer.
        match tokio::time::timeout(PARTIAL_REQUEST_TIMEOUT, requests.next()).await {
            Ok(next) => return next,
            Err(_) => {
                let partial = !requests.read_buffer().is_empty();
                if partial && partial_at_last_check {
                    return Some(Err(ProtocolError::Unterminated));
                }
                partial_at_last_check = partial;
            }
        }
    }
}
