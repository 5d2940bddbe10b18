//! Invariants 2 and 4 under `kill -9` of a replica: each round the primary moves on while
//! the replica is down (far enough that its log no longer covers the gap, so the replica
//! needs a full resync), the replica is restarted with the same command and SIGKILLed at
//! a random moment (often mid-snapshot), then restarted again and must converge. All the
//! while a reader polls the replica's SQLite file: every state it sees must be exactly the
//! primary's contents at the replica's `applied_seq`, never a mix of old and new.

mod common;

use common::proxy::Proxy;
use common::soak::{rounds, seeded_rng, Summary};
use common::{kv_rows, seed_primary, wait_until, KvProcess, PATIENCE};
use kv::store::ContentHasher;
use rand::rngs::StdRng;
use rand::RngExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use tempfile::TempDir;

const BASE_KEYS: u64 = 1000;
const WRITES_PER_ROUND: usize = 150;

/// Every committed write in seq order (index = seq - 1): the primary's history as the
/// test made it, to rebuild its contents at any seq.
#[derive(Default)]
struct Model {
    ops: Vec<(String, Option<String>)>,
    live: BTreeMap<String, String>,
}

impl Model {
    fn seeded(keys: u64) -> Model {
        let mut model = Model::default();
        for seq in 1..=keys {
            model.record(format!("key{seq:05}"), Some(format!("{seq:0>100}")));
        }
        model
    }

    fn record(&mut self, key: String, value: Option<String>) {
        match &value {
            Some(v) => self.live.insert(key.clone(), v.clone()),
            None => self.live.remove(&key),
        };
        self.ops.push((key, value));
    }

    /// The digest of the contents after each seq in `seqs` (sorted), as `DIGEST` computes it.
    fn digests_at(&self, seqs: &[u64]) -> BTreeMap<u64, String> {
        let mut state = BTreeMap::new();
        let mut applied = 0u64;
        let mut out = BTreeMap::new();
        for &seq in seqs {
            while applied < seq {
                let (key, value) = &self.ops[applied as usize];
                match value {
                    Some(v) => state.insert(key.clone(), v.clone()),
                    None => state.remove(key),
                };
                applied += 1;
            }
            let mut hasher = ContentHasher::default();
            state
                .iter()
                .for_each(|(k, v)| hasher.add(k.as_bytes(), v.as_bytes()));
            out.insert(seq, hasher.finish());
        }
        out
    }
}

/// What a reader of the replica's file saw in one read transaction.
type Observation = (u64, String);

/// Reads (applied_seq, digest of all rows) from `db` in one transaction, if it can.
fn observe(db: &Path) -> Option<Observation> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let mut conn = rusqlite::Connection::open_with_flags(db, flags).ok()?;
    let tx = conn.transaction().ok()?;
    let seq: Option<String> = tx
        .query_row(
            "SELECT value FROM meta WHERE name = 'applied_seq'",
            [],
            |r| r.get(0),
        )
        .ok();
    let seq = seq.and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut stmt = tx.prepare("SELECT key, value FROM kv ORDER BY key").ok()?;
    let mut rows = stmt.query([]).ok()?;
    let mut hasher = ContentHasher::default();
    while let Ok(Some(row)) = rows.next() {
        let (key, value): (String, String) = (row.get(0).ok()?, row.get(1).ok()?);
        hasher.add(key.as_bytes(), value.as_bytes());
    }
    Some((seq, hasher.finish()))
}

/// Polls `db` until stopped, keeping every distinct observation.
fn start_reader(db: PathBuf, stop: Arc<AtomicBool>) -> thread::JoinHandle<Vec<Observation>> {
    thread::spawn(move || {
        let mut seen: Vec<Observation> = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            if let Some(observation) = observe(&db) {
                if seen.last() != Some(&observation) {
                    seen.push(observation);
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
        seen
    })
}

fn write_round(
    primary: &mut KvProcess,
    model: &mut Model,
    rng: &mut StdRng,
    round: usize,
) -> usize {
    // Deletes only of keys live at that point, so every write takes a seq.
    let mut live = model.live.clone();
    let mut planned = Vec::new();
    let mut lines = Vec::new();
    for i in 0..WRITES_PER_ROUND {
        let key = format!("key{:05}", rng.random_range(1..=BASE_KEYS + 200));
        if rng.random_range(0..6) == 0 && live.remove(&key).is_some() {
            lines.push(format!("DEL {key}"));
            planned.push((key, None));
        } else {
            let value = format!("round {round} write {i}");
            lines.push(format!("PUT {key} {value}"));
            live.insert(key.clone(), value.clone());
            planned.push((key, Some(value)));
        }
    }
    primary.send_all(&lines);
    for (line, (key, value)) in lines.iter().zip(planned) {
        let reply = primary.next_line();
        assert!(reply.starts_with("OK "), "{line} -> {reply}");
        model.record(key, value);
    }
    lines.len()
}

#[test]
fn killed_replicas_converge_and_readers_never_see_a_mix() {
    let (seed, mut rng) = seeded_rng("replica_crash");
    let dir = TempDir::new().expect("tempdir");
    let p = dir.path().join("p.db");
    let r = dir.path().join("r1.db");
    seed_primary(&p, BASE_KEYS);
    let mut model = Model::seeded(BASE_KEYS);
    let p_arg = p.display().to_string();
    let mut primary = KvProcess::start(&[
        "primary",
        "--db",
        &p_arg,
        "--listen",
        "127.0.0.1:0",
        "--log-retain",
        "100",
    ]);
    // About 110 KB of snapshot at 8 KB per 50 ms: most of a second of streaming.
    let proxy = Proxy::throttled(&primary.addr(), 8 * 1024, Duration::from_millis(50));
    let r_arg = r.display().to_string();
    let replica_args = [
        "replica",
        "--db",
        &r_arg,
        "--listen",
        "127.0.0.1:0",
        "--join",
        &proxy.addr,
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let reader = start_reader(r.clone(), Arc::clone(&stop));
    let mut summary = Summary {
        rounds: rounds(5),
        ..Summary::default()
    };
    let mut killed_mid_sync = 0;
    for round in 0..summary.rounds {
        summary.acknowledged += write_round(&mut primary, &mut model, &mut rng, round);
        // Let retention trim past the replica's position, so its restart is a full resync.
        let trimmed = wait_until(PATIENCE, || common::log_seqs(&p).len() <= 100);
        assert!(trimmed, "the primary's log was not trimmed to --log-retain");

        let mut replica = KvProcess::start(&replica_args);
        let window = if round % 2 == 0 { 50..400 } else { 50..1500 };
        thread::sleep(Duration::from_millis(rng.random_range(window)));
        let synced = replica.next_line_within(Duration::ZERO).is_some();
        replica.kill();
        summary.kills += 1;
        killed_mid_sync += usize::from(!synced);

        let mut replica = KvProcess::start(&replica_args);
        let first = replica.next_line();
        assert!(
            first == "Snapshot received" || first.starts_with("Resumed after seq"),
            "{first}"
        );
        let converged = wait_until(PATIENCE, || kv_rows(&r) == kv_rows(&p));
        assert!(
            converged,
            "round {round} (seed {seed}): the restarted replica did not converge"
        );
        assert_eq!(replica.command("DIGEST"), primary.command("DIGEST"));
        replica.kill();
        summary.kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let seen = reader.join().expect("reader");

    let mut seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let expected = model.digests_at(&seqs);
    let mixed: Vec<&Observation> = seen
        .iter()
        .filter(|(seq, digest)| *seq > 0 && expected.get(seq) != Some(digest))
        .collect();
    summary.divergent = mixed.len();
    summary.faults = killed_mid_sync;
    summary.report("replica_crash");
    eprintln!(
        "{} distinct states observed, {killed_mid_sync} kills before the sync completed",
        seen.len()
    );
    assert!(
        mixed.is_empty(),
        "readers saw states that are not the primary's at their seq: {mixed:?}"
    );
    // Each round ends with the replica converged on a new state; the states before the
    // first sync may come and go between two polls (the file does not exist yet, then
    // holds nothing but the first snapshot), so one per round is the least that proves
    // something. (`>` flaked: 5 states in 5 rounds, seen in CI and in a soak.)
    assert!(
        seen.len() >= summary.rounds,
        "the reader saw too few states to prove anything"
    );
}
