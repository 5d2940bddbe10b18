//! A real TCP proxy for tests: sits between a replica and its upstream and throttles the
//! upstream-to-replica direction, so a snapshot takes long enough for writes to land while
//! it streams. Every connection ends when either side closes; the proxy's threads stop by
//! themselves when the proxy is dropped and its connections close.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A throttling proxy to `upstream`.
pub struct Proxy {
    /// The address replicas should join.
    pub addr: String,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Forwards connections to `upstream`, passing at most `bytes_per_tick` bytes
    /// downstream every `tick`.
    pub fn throttled(upstream: &str, bytes_per_tick: usize, tick: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_string();
        let stopping = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(&upstream) {
                            pipe(&client, &server, usize::MAX, Duration::ZERO, &stopping);
                            pipe(&server, &client, bytes_per_tick, tick, &stopping);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { addr, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream, chunk: usize, tick: Duration, stop: &Arc<AtomicBool>) {
    let (mut from, mut to) = match (from.try_clone(), to.try_clone()) {
        (Ok(from), Ok(to)) => (from, to),
        _ => return,
    };
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let stop = Arc::clone(stop);
    thread::spawn(move || {
        let mut buffer = vec![0u8; chunk.min(64 * 1024)];
        while !stop.load(Ordering::Relaxed) {
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    if !tick.is_zero() {
                        thread::sleep(tick);
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => break,
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
