//! Invariant 1 under `kill -9`: the primary is SIGKILLed in the middle of a stream of
//! writes, several rounds; every write whose `OK` was printed is present afterwards with
//! its value or a later one, and seq continues without a hole after each restart.

mod common;

use common::soak::{rounds, Summary};
use common::{kv_rows, log_seqs, KvProcess};
use std::collections::BTreeMap;
use std::time::Duration;
use tempfile::TempDir;

const WRITES_PER_ROUND: usize = 2000;
const KEYS: usize = 25;

#[test]
fn acknowledged_writes_survive_sigkill_of_the_primary() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db");
    let db_arg = db.display().to_string();
    let mut summary = Summary {
        rounds: rounds(5),
        ..Summary::default()
    };
    for round in 0..summary.rounds {
        let mut primary =
            KvProcess::start(&["primary", "--db", &db_arg, "--listen", "127.0.0.1:0"]);
        // Round r writes key k{i % KEYS} = "r:i"; later i overwrite earlier ones.
        let lines: Vec<String> = (0..WRITES_PER_ROUND)
            .map(|i| format!("PUT k{:02} {round}:{i:04}", i % KEYS))
            .collect();
        primary.send_all(&lines);
        // Kill at a different moment each round, while writes are still being committed.
        std::thread::sleep(Duration::from_millis(
            20 + 30 * (round % 5) as u64 + rand::random_range(0..20),
        ));
        primary.kill();
        summary.kills += 1;
        let acked: Vec<String> = primary
            .remaining_lines()
            .into_iter()
            .filter(|l| l.starts_with("OK "))
            .collect();
        assert!(
            acked.len() < WRITES_PER_ROUND,
            "round {round}: the kill came too late to test anything"
        );
        eprintln!(
            "round {round}: {} writes acknowledged before SIGKILL",
            acked.len()
        );
        summary.acknowledged += acked.len();

        // The newest acknowledged write index per key.
        let mut newest_acked: BTreeMap<String, usize> = BTreeMap::new();
        for line in &acked {
            let rest = line.trim_start_matches("OK ");
            let (key, value) = rest.split_once(" = ").expect("OK k = v");
            let index: usize = value
                .split(':')
                .nth(1)
                .and_then(|i| i.parse().ok())
                .expect("index");
            newest_acked.insert(key.to_string(), index);
        }
        let stored: BTreeMap<String, String> = kv_rows(&db).into_iter().collect();
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
        let seqs = log_seqs(&db);
        let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(
            seqs, contiguous,
            "round {round}: the log has a hole or duplicate"
        );
    }
    summary.report("primary_crash");
    assert!(
        summary.acknowledged > 0,
        "no write was acknowledged in any round"
    );
}
