//! A real TCP proxy for fault tests: sits between a replica and its upstream and, on
//! command, throttles the upstream-to-replica direction (so a snapshot streams long
//! enough for writes to land during it), delays every chunk, blackholes (keeps
//! connections open but moves no byte, like a partition), or cuts every open connection. Its threads poll a stop flag and end by
//! themselves when the proxy is dropped.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

/// A fault-injecting proxy to one upstream.
pub struct Proxy {
    /// The address replicas should join.
    pub addr: String,
    faults: Arc<Faults>,
}

#[derive(Default)]
struct Faults {
    stop: AtomicBool,
    blackhole: AtomicBool,
    /// Extra pause after every chunk forwarded, in either direction, in milliseconds.
    delay_ms: AtomicU64,
    /// Bumped by `cut`: connections opened in an older generation close.
    generation: AtomicU64,
}

/// How bytes flow in one direction.
#[derive(Clone, Copy)]
struct Pace {
    chunk: usize,
    pause: Duration,
}

impl Proxy {
    /// Forwards connections to `upstream` at full speed.
    pub fn new(upstream: &str) -> Proxy {
        Proxy::throttled(upstream, 64 * 1024, Duration::ZERO)
    }

    /// Forwards connections to `upstream`, passing at most `bytes_per_tick` bytes
    /// downstream every `tick`.
    pub fn throttled(upstream: &str, bytes_per_tick: usize, tick: Duration) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("proxy addr").to_string();
        let faults = Arc::new(Faults::default());
        let upstream = upstream.to_string();
        let shared = Arc::clone(&faults);
        let down = Pace {
            chunk: bytes_per_tick,
            pause: tick,
        };
        let up = Pace {
            chunk: 64 * 1024,
            pause: Duration::ZERO,
        };
        thread::spawn(move || {
            while !shared.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = client.set_nonblocking(false);
                        if let Ok(server) = TcpStream::connect(&upstream) {
                            pipe(&client, &server, up, &shared);
                            pipe(&server, &client, down, &shared);
                        }
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Proxy { addr, faults }
    }

    /// While on, connections stay open but no byte moves in either direction (nothing is
    /// lost: what was sent flows once it is lifted, unless a peer gave up meanwhile).
    pub fn blackhole(&self, on: bool) {
        self.faults.blackhole.store(on, Ordering::Relaxed);
    }

    /// Pauses `per_chunk` after every chunk forwarded (zero: no delay).
    pub fn delay(&self, per_chunk: Duration) {
        let millis = u64::try_from(per_chunk.as_millis()).unwrap_or(u64::MAX);
        self.faults.delay_ms.store(millis, Ordering::Relaxed);
    }

    /// Closes every connection open now; new ones are accepted as before.
    pub fn cut(&self) {
        self.faults.generation.fetch_add(1, Ordering::Relaxed);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.faults.stop.store(true, Ordering::Relaxed);
    }
}

fn pipe(from: &TcpStream, to: &TcpStream, pace: Pace, faults: &Arc<Faults>) {
    let (mut from, mut to) = match (from.try_clone(), to.try_clone()) {
        (Ok(from), Ok(to)) => (from, to),
        _ => return,
    };
    let _ = from.set_read_timeout(Some(Duration::from_millis(50)));
    let faults = Arc::clone(faults);
    let generation = faults.generation.load(Ordering::Relaxed);
    thread::spawn(move || {
        let mut buffer = vec![0u8; pace.chunk.clamp(1, 64 * 1024)];
        while !faults.stop.load(Ordering::Relaxed)
            && faults.generation.load(Ordering::Relaxed) == generation
        {
            // A blackhole is a partition: nothing is read, so nothing (not even a close)
            // gets through, and TCP's buffers fill up as they would behind a dead link.
            if faults.blackhole.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(20));
                continue;
            }
            match from.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    let delay = Duration::from_millis(faults.delay_ms.load(Ordering::Relaxed));
                    let pause = pace.pause + delay;
                    if !pause.is_zero() {
                        thread::sleep(pause);
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
