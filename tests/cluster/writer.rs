//! Bounded writer threads that follow the primary: each writes unique keys to whichever
//! node reports `role:master` (found again through `INFO replication` after any error),
//! and records a write only when its `SET` returned `+OK`, with the client port that
//! acknowledged it.

use crate::client::{connect, set, Info, Reply};
use crate::common::PATIENCE;
use crate::support::Ports;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One acknowledged write.
#[derive(Debug, Clone)]
pub struct Ack {
    pub key: String,
    pub value: String,
    /// The client port of the node that acknowledged it.
    pub port: u16,
}

/// How many writers, and their bounds.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub threads: usize,
    /// Attempts per thread, at most.
    pub max_writes: usize,
    /// How long the writers run, at most.
    pub max_time: Duration,
    /// Pause between two writes of one thread.
    pub pace: Duration,
}

/// Running writers.
pub struct Writers {
    stop: Arc<AtomicBool>,
    acks: Arc<Mutex<Vec<Ack>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Writers {
    /// Starts `plan.threads` writers over the nodes of `ports`; keys are
    /// `{prefix}{thread}-{attempt}`.
    pub fn start(ports: &Ports, prefix: &str, plan: Plan) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let acks = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..plan.threads)
            .map(|t| {
                let (stop, acks, ports) = (Arc::clone(&stop), Arc::clone(&acks), Arc::clone(ports));
                let prefix = format!("{prefix}{t:02}-");
                std::thread::spawn(move || write(&ports, &prefix, plan, &stop, &acks))
            })
            .collect();
        Writers {
            stop,
            acks,
            threads,
        }
    }

    /// How many writes were acknowledged so far.
    pub fn count(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }

    /// How many writes the node on client port `port` acknowledged so far.
    pub fn count_by(&self, port: u16) -> usize {
        let acks = self.acks.lock().expect("acks");
        acks.iter().filter(|a| a.port == port).count()
    }

    /// Stops the writers and returns every acknowledged write.
    pub fn stop(self) -> Vec<Ack> {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().expect("writer thread");
        }
        let acks = self.acks.lock().expect("acks");
        acks.clone()
    }
}

/// One writer's loop: bounded by `plan.max_writes` attempts and `plan.max_time`.
fn write(ports: &Ports, prefix: &str, plan: Plan, stop: &AtomicBool, acks: &Mutex<Vec<Ack>>) {
    let started = Instant::now();
    let mut target: Option<(u16, redis::Connection)> = None;
    let mut attempt = 0;
    while attempt < plan.max_writes
        && started.elapsed() < plan.max_time
        && !stop.load(Ordering::Relaxed)
    {
        let Some((port, con)) = target.as_mut() else {
            target = find_primary(ports).and_then(|p| Some((p, connect(p, PATIENCE)?)));
            if target.is_none() {
                // No primary now (an election is under way): ask again a little later, not
                // in a tight loop of INFO connections from every writer.
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        };
        let (key, value) = (format!("{prefix}{attempt:05}"), format!("v{attempt}"));
        attempt += 1;
        match set(con, &key, &value) {
            Reply::Ok => acks.lock().expect("acks").push(Ack {
                key,
                value,
                port: *port,
            }),
            // Not acknowledged: maybe stored, maybe not. The key is never used again.
            Reply::ReadOnly(_) | Reply::Error(_) | Reply::Down(_) => target = None,
        }
        std::thread::sleep(plan.pace);
    }
}

/// The client port of a node reporting `role:master` and accepting writes, if one does now.
pub fn find_primary(ports: &Ports) -> Option<u16> {
    let ports: Vec<u16> = ports
        .lock()
        .expect("ports")
        .iter()
        .flatten()
        .copied()
        .collect();
    ports
        .into_iter()
        .find(|&p| Info::of(p).is_some_and(|info| info.accepts_writes()))
}
