//! The accept loop both ports share (replication and clients): accept until the node
//! stops, back off when accepting fails (out of file descriptors, say) instead of
//! spinning, serve each connection on its own tracked task, and refuse connections beyond
//! a limit with a short goodbye rather than letting them pile up. A connection is a
//! [`stream::Stream`], plain or TLS ([`tls`]).

pub mod stream;
pub mod tls;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

/// How long the loop waits after a failed accept.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How long a refused connection is given to read its goodbye.
pub const REFUSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where and how a listener serves.
pub struct Listener {
    /// The bound listener.
    pub listener: TcpListener,
    /// Most connections served at once.
    pub max_connections: usize,
    /// What it serves, for logs ("replica", "client").
    pub what: &'static str,
}

/// Accepts connections until `shutdown` fires: each within the limit is served by
/// `serve(stream, peer)`, each beyond it by `refuse(stream)`, on a task of `tasks`.
pub async fn accept_loop<S, SF, R, RF>(
    listener: Listener,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    serve: S,
    refuse: R,
) where
    S: Fn(TcpStream, SocketAddr) -> SF,
    SF: Future<Output = ()> + Send + 'static,
    R: Fn(TcpStream) -> RF,
    RF: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(listener.max_connections));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!("accepting a {} connection failed: {e}", listener.what);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        // Both protocols send many small messages: do not let Nagle hold them back.
        let _ = stream.set_nodelay(true);
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(permit) => {
                let served = serve(stream, peer);
                tasks.spawn(async move {
                    served.await;
                    drop(permit);
                });
            }
            Err(_) => {
                tasks.spawn(refuse(stream));
            }
        }
    }
}

/// Sends `goodbye` to a peer that will not be served, then closes gently: the sending
/// side first, then a short drain of what the peer still sends, so that it reads the
/// goodbye rather than a reset. Bounded by [`REFUSE_TIMEOUT`] and 64 KiB.
pub async fn say_goodbye(mut tcp: TcpStream, goodbye: &[u8]) {
    let gently = async {
        tcp.write_all(goodbye).await?;
        tcp.shutdown().await?;
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while drained < 64 * 1024 {
            match tcp.read(&mut sink).await? {
                0 => break,
                n => drained += n,
            }
        }
        Ok::<(), std::io::Error>(())
    };
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, gently).await;
}

/// Checks that `addr` looks like `host:port`.
pub fn validate_addr(addr: &str) -> Result<(), String> {
    let valid = addr
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{addr}' is not an address; expected <host:port>, e.g. localhost:8080"
        ))
    }
}
