//! Invariant 1 under `kill -9`: the primary is SIGKILLed in the middle of a stream of
//! writes, several rounds, once through the shell (`OK` printed) and once through the
//! client port (`+OK` replied, pipelined, so writes are group-committed); every
//! acknowledged write is present afterwards with its value or a later one, and seq
//! continues without a hole after each restart.

mod common;

use common::soak::{rounds, Summary};
use common::{kv_rows, log_seqs, KvProcess};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;
use tempfile::TempDir;

const WRITES_PER_ROUND: usize = 2000;
const KEYS: usize = 25;

/// Write `i` of round `round`: key `k{i % KEYS}` gets `"{round}:{i}"`, so later writes
/// overwrite earlier ones.
fn write(round: usize, i: usize) -> (String, String) {
    (format!("k{:02}", i % KEYS), format!("{round}:{i:04}"))
}

/// A moment to kill at, different each round, while writes are still being committed.
fn kill_delay(round: usize) -> Duration {
    Duration::from_millis(20 + 30 * (round % 5) as u64 + rand::random_range(0..20))
}

/// Checks that the first `acked` writes of `round` survived in `db`: each key holds the
/// value of its newest acknowledged write or of a later write of the same round.
fn check_round(db: &Path, round: usize, acked: usize) {
    let mut newest_acked: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..acked {
        newest_acked.insert(write(round, i).0, i);
    }
    let stored: BTreeMap<String, String> = kv_rows(db).into_iter().collect();
    for (key, acked_index) in &newest_acked {
        let value = stored
            .get(key)
            .unwrap_or_else(|| panic!("round {round}: {key} lost"));
        let (stored_round, stored_index) = value.split_once(':').expect("r:i");
        assert_eq!(
            stored_round,
            round.to_string(),
            "round {round}: {key} rolled back to {value}"
        );
        let stored_index: usize = stored_index.parse().expect("index");
        assert!(
            stored_index >= *acked_index,
            "round {round}: {key} acknowledged at {acked_index} but holds {value}"
        );
    }
    let seqs = log_seqs(db);
    let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(
        seqs, contiguous,
        "round {round}: the log has a hole or duplicate"
    );
}

/// Runs the kill loop; `round_writes` starts the round's writes on a running primary,
/// kills it, and returns how many writes (in order) were acknowledged.
fn kill_loop(
    name: &str,
    resp: bool,
    writes: usize,
    round_writes: impl Fn(&mut KvProcess, usize) -> usize,
) {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db");
    let db_arg = db.display().to_string();
    let mut args = vec!["primary", "--db", &db_arg, "--listen", "127.0.0.1:0"];
    if resp {
        args.extend(["--resp", "127.0.0.1:0"]);
    }
    let mut summary = Summary {
        rounds: rounds(5),
        ..Summary::default()
    };
    for round in 0..summary.rounds {
        let mut primary = KvProcess::start(&args);
        let acked = round_writes(&mut primary, round);
        summary.kills += 1;
        assert!(
            acked < writes,
            "round {round}: the kill came too late to test anything"
        );
        eprintln!("{name} round {round}: {acked} writes acknowledged before SIGKILL");
        summary.acknowledged += acked;
        check_round(&db, round, acked);
    }
    summary.report(name);
    assert!(
        summary.acknowledged > 0,
        "no write was acknowledged in any round"
    );
}

#[test]
fn acknowledged_writes_survive_sigkill_of_the_primary() {
    kill_loop(
        "primary_crash",
        false,
        WRITES_PER_ROUND,
        |primary, round| {
            let lines: Vec<String> = (0..WRITES_PER_ROUND)
                .map(|i| {
                    let (key, value) = write(round, i);
                    format!("PUT {key} {value}")
                })
                .collect();
            primary.send_all(&lines);
            std::thread::sleep(kill_delay(round));
            primary.kill();
            let oks = primary.remaining_lines();
            oks.iter().filter(|l| l.starts_with("OK ")).count()
        },
    );
}

/// Writes a client keeps sending in a round (the kill always comes first).
const CLIENT_WRITES: usize = 100_000;
/// Writes a client sends before reading their replies: one group commit each.
const CLIENT_BATCH: usize = 20;

/// Sends the round's writes in pipelined batches until the connection dies; returns how
/// many were acknowledged (`+OK`, in request order).
fn client_writes(port: u16, round: usize) -> usize {
    let Ok(mut client) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    let _ = client.set_read_timeout(Some(Duration::from_secs(5)));
    let mut acked = 0;
    for batch in (0..CLIENT_WRITES).collect::<Vec<_>>().chunks(CLIENT_BATCH) {
        let requests: String = batch
            .iter()
            .map(|&i| {
                let (key, value) = write(round, i);
                format!("SET {key} {value}\r\n")
            })
            .collect();
        if client.write_all(requests.as_bytes()).is_err() {
            return acked;
        }
        for _ in batch {
            let mut reply = [0u8; 5];
            match client.read_exact(&mut reply) {
                Ok(()) if &reply == b"+OK\r\n" => acked += 1,
                Ok(()) => panic!("unexpected reply {:?}", String::from_utf8_lossy(&reply)),
                Err(_) => return acked,
            }
        }
    }
    acked
}

#[test]
fn acknowledged_client_writes_survive_sigkill_of_the_primary() {
    kill_loop(
        "primary_crash_clients",
        true,
        CLIENT_WRITES,
        |primary, round| {
            let port = primary.resp_port.expect("resp port");
            let writer = std::thread::spawn(move || client_writes(port, round));
            std::thread::sleep(kill_delay(round));
            primary.kill();
            writer.join().expect("client thread")
        },
    );
}
