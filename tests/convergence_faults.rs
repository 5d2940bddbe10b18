//! Invariant 4 under network faults: with puts, overwrites and deletes over a few hundred
//! keys flowing into the primary, a fault-injecting proxy between it and a replica cuts
//! every connection, blackholes the link, or delays every chunk at random moments. After
//! the writes of each round stop, the replica must reach the primary's exact contents
//! (the same digest at the same seq) within a bounded time, every round.

mod common;

use common::proxy::Proxy;
use common::soak::{rounds, seeded_rng, Summary};
use common::{wait_until, KvProcess, PATIENCE};
use rand::rngs::StdRng;
use rand::RngExt;
use std::thread;
use std::time::Duration;
use tempfile::TempDir;

const KEYS: u32 = 300;
const WRITES_PER_ROUND: usize = 300;

/// The node's `DIGEST` line: `<hex> (seq N)`.
fn digest(node: &mut KvProcess) -> String {
    node.command("DIGEST")
}

/// One random fault, injected now and lifted after a random while; returns its name.
fn inject_fault(proxy: &Proxy, rng: &mut StdRng) -> &'static str {
    match rng.random_range(0..3) {
        0 => {
            proxy.cut();
            "cut"
        }
        1 => {
            proxy.blackhole(true);
            thread::sleep(Duration::from_millis(rng.random_range(100..900)));
            proxy.blackhole(false);
            "blackhole"
        }
        _ => {
            proxy.delay(Duration::from_millis(rng.random_range(5..40)));
            thread::sleep(Duration::from_millis(rng.random_range(100..600)));
            proxy.delay(Duration::ZERO);
            "delay"
        }
    }
}

fn random_writes(rng: &mut StdRng, round: usize) -> Vec<String> {
    (0..WRITES_PER_ROUND)
        .map(|i| {
            let key = rng.random_range(0..KEYS);
            if rng.random_range(0..5) == 0 {
                format!("DEL k{key:03}")
            } else {
                format!(
                    "PUT k{key:03} r{round} w{i} {}",
                    "x".repeat(rng.random_range(0..64))
                )
            }
        })
        .collect()
}

#[test]
fn replica_converges_after_every_round_of_faults() {
    let (seed, mut rng) = seeded_rng("convergence_faults");
    let dir = TempDir::new().expect("tempdir");
    let p = dir.path().join("p.db").display().to_string();
    let mut primary = KvProcess::start(&["primary", "--db", &p, "--listen", "127.0.0.1:0"]);
    let proxy = Proxy::new(&primary.addr());
    let mut replica = KvProcess::synced_replica(&dir.path().join("r1.db"), &proxy.addr, &[]);

    let mut summary = Summary {
        rounds: rounds(10),
        ..Summary::default()
    };
    for round in 0..summary.rounds {
        let writes = random_writes(&mut rng, round);
        primary.send_all(&writes);
        // Faults at random moments while the writes are committed and streamed.
        for _ in 0..rng.random_range(1..=3) {
            thread::sleep(Duration::from_millis(rng.random_range(0..300)));
            inject_fault(&proxy, &mut rng);
            summary.faults += 1;
        }
        for write in &writes {
            let reply = primary.next_line();
            let expected_ok = reply.starts_with("OK ");
            assert!(
                expected_ok || reply.ends_with("-> Not found"),
                "{write} -> {reply}"
            );
            summary.acknowledged += usize::from(expected_ok);
        }
        let want = digest(&mut primary);
        let converged = wait_until(PATIENCE, || digest(&mut replica) == want);
        if !converged {
            summary.divergent += 1;
        }
        assert!(
            converged,
            "round {round} (seed {seed}): replica {} != primary {want}\nreplica stderr:\n{}",
            digest(&mut replica),
            replica.stderr_text()
        );
    }
    summary.report("convergence_faults");
}
