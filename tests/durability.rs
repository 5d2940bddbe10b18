//! Durability options on the real binary: `--min-replicas-to-write` refuses writes with
//! `-NOREPLICAS` (nothing stored) while too few replicas acked recently (a replica that
//! goes silent, SIGSTOPped, stops counting after the lag; one that dies, at once), and
//! accepts them again once a replica is back; `--sync-replicas 1` acknowledges a write only once a
//! replica holds it, so SIGKILL of the primary at a random moment under 20 concurrent
//! writers, then `REPLICAOF NO ONE` on the replica, loses no acknowledged write; without
//! a replica, a synchronous write fails after `--sync-timeout`, saying it is committed
//! locally.

mod common;

use common::soak::{rounds, seeded_rng, Summary};
use common::{wait_until, KvProcess, PATIENCE};
use rand::RngExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

fn primary(db: &Path, extra: &[&str]) -> KvProcess {
    KvProcess::primary_with_clients(db, extra)
}

fn replica(db: &Path, upstream: &str) -> KvProcess {
    KvProcess::synced_replica(db, upstream, &["--resp", "127.0.0.1:0"])
}

fn connect(node: &KvProcess) -> redis::Connection {
    redis::Client::open(node.redis_url())
        .expect("url")
        .get_connection()
        .expect("connect")
}

fn set(con: &mut redis::Connection, key: &str, value: &str) -> redis::RedisResult<()> {
    redis::cmd("SET").arg(key).arg(value).query(con)
}

fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

fn signal(node: &KvProcess, signal: libc::c_int) {
    // SAFETY: kill(2) on a child process this test started and still owns.
    let sent = unsafe { libc::kill(node.pid() as libc::pid_t, signal) };
    assert_eq!(sent, 0, "kill({}, {signal})", node.pid());
}

/// SETs `{prefix}{n}` for n = 0, 1, ... until one is refused with NOREPLICAS (within
/// PATIENCE); returns that key (the ones before it were accepted and stored).
fn first_refused(con: &mut redis::Connection, prefix: &str) -> String {
    let mut attempt = 0;
    let mut refused = None;
    let found = wait_until(PATIENCE, || {
        let key = format!("{prefix}{attempt}");
        attempt += 1;
        let noreplicas = is_noreplicas(&set(con, &key, "1"));
        refused = Some(key);
        noreplicas
    });
    assert!(found, "{prefix}: writes still accepted");
    refused.unwrap_or_default()
}

fn is_noreplicas(result: &redis::RedisResult<()>) -> bool {
    matches!(result, Err(e) if e.code() == Some("NOREPLICAS"))
}

#[test]
fn min_replicas_refuses_writes_until_a_replica_acks_and_again_once_it_dies() {
    let dir = TempDir::new().expect("tempdir");
    let args = [
        "--min-replicas-to-write",
        "1",
        "--min-replicas-max-lag",
        "2",
    ];
    let mut p = primary(&dir.path().join("p.db"), &args);
    let mut con = connect(&p);

    let alone = set(&mut con, "alone", "1");
    assert!(is_noreplicas(&alone), "{alone:?}");
    let reply = p.command("PUT alone 1");
    assert!(
        reply.starts_with("ERR ") && reply.contains("not enough good replicas"),
        "{reply}"
    );
    assert_eq!(
        get(&mut con, "alone"),
        None,
        "a refused write is not stored"
    );

    let mut r = replica(&dir.path().join("r.db"), &p.addr());
    let accepted = wait_until(PATIENCE, || set(&mut con, "with", "1").is_ok());
    assert!(accepted, "writes never accepted with a replica");
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .expect("INFO");
    assert!(info.contains("min_slaves_good_slaves:1"), "{info}");

    // A replica that stops answering (SIGSTOP: its connection stays open) stops counting
    // once its last ack is older than the lag: refused after most of the lag, not at once
    // (its last ack may be up to a heartbeat, 1 s or more on a loaded machine, old).
    let stopped = Instant::now();
    signal(&r, libc::SIGSTOP);
    let refused = first_refused(&mut con, "stalled");
    let waited = stopped.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(8),
        "refused after {waited:?} with a 2 s lag"
    );
    assert_eq!(
        get(&mut con, &refused),
        None,
        "a refused write is not stored"
    );
    signal(&r, libc::SIGCONT);
    let back = wait_until(PATIENCE, || set(&mut con, "back", "1").is_ok());
    assert!(
        back,
        "writes never accepted again once the replica answered"
    );

    r.kill();
    let died = Instant::now();
    let refused = first_refused(&mut con, "after");
    assert!(
        died.elapsed() < Duration::from_secs(5),
        "refused only after {:?}",
        died.elapsed()
    );
    assert_eq!(
        get(&mut con, &refused),
        None,
        "a refused write is not stored"
    );
    assert_eq!(get(&mut con, "with").as_deref(), Some("1"));
}

#[test]
fn a_synchronous_write_without_its_replica_fails_saying_it_is_committed_here() {
    let dir = TempDir::new().expect("tempdir");
    let args = ["--sync-replicas", "1", "--sync-timeout", "1"];
    let mut p = primary(&dir.path().join("p.db"), &args);
    let mut con = connect(&p);
    let started = Instant::now();
    let result = set(&mut con, "k", "v");
    let waited = started.elapsed();
    let error = result.expect_err("no replica confirmed it");
    assert!(
        error.to_string().contains("committed on this node"),
        "{error}"
    );
    assert!(
        waited >= Duration::from_millis(900),
        "failed after {waited:?}"
    );
    assert_eq!(
        get(&mut con, "k").as_deref(),
        Some("v"),
        "committed locally"
    );
    let reply = p.command("PUT s 1");
    assert!(
        reply.starts_with("ERR the write is committed on this node"),
        "{reply}"
    );

    // With a replica, the same writes are acknowledged.
    let _r = replica(&dir.path().join("r.db"), &p.addr());
    let confirmed = wait_until(PATIENCE, || set(&mut con, "k2", "v2").is_ok());
    assert!(
        confirmed,
        "a synchronous write never succeeded with a replica"
    );
    assert_eq!(p.command("PUT s 2"), "OK s = 2");
}

/// Writers whose acknowledged writes are collected; each stops at its first error (the
/// primary is gone) or after `max` writes.
fn start_writers(
    node: &KvProcess,
    count: usize,
    max: usize,
    acknowledged: &Arc<Mutex<Vec<(String, String)>>>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..count)
        .map(|w| {
            let mut con = connect(node);
            let acknowledged = Arc::clone(acknowledged);
            std::thread::spawn(move || {
                for i in 0..max {
                    let (key, value) = (format!("w{w:02}-{i:05}"), format!("v{i}"));
                    if set(&mut con, &key, &value).is_err() {
                        return;
                    }
                    acknowledged.lock().expect("lock").push((key, value));
                }
            })
        })
        .collect()
}

#[test]
fn with_sync_replicas_a_promoted_replica_has_every_acknowledged_write() {
    let (seed, mut rng) = seeded_rng("sync_replicas_crash");
    let mut summary = Summary {
        rounds: rounds(3),
        ..Summary::default()
    };
    for round in 0..summary.rounds {
        let dir = TempDir::new().expect("tempdir");
        let mut p = primary(&dir.path().join("p.db"), &["--sync-replicas", "1"]);
        let r = replica(&dir.path().join("r.db"), &p.addr());
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let writers = start_writers(&p, 20, 5000, &acknowledged);
        let writing = wait_until(PATIENCE, || acknowledged.lock().expect("lock").len() >= 20);
        assert!(writing, "round {round}: the writers never got going");
        // The moment of the kill, not a wait for something to happen.
        std::thread::sleep(Duration::from_millis(rng.random_range(0..600)));
        p.kill();
        summary.kills += 1;
        writers.into_iter().for_each(|w| w.join().expect("writer"));

        let mut con = connect(&r);
        let promoted: String = redis::cmd("REPLICAOF")
            .arg("NO")
            .arg("ONE")
            .query(&mut con)
            .expect("REPLICAOF NO ONE");
        assert_eq!(promoted, "OK");
        let acknowledged = acknowledged.lock().expect("lock").clone();
        assert!(
            !acknowledged.is_empty(),
            "round {round}: nothing was written"
        );
        summary.acknowledged += acknowledged.len();
        for chunk in acknowledged.chunks(500) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query(&mut con).expect("MGET");
            for ((key, value), held) in chunk.iter().zip(values) {
                if held.as_deref() != Some(value.as_str()) {
                    summary.lost += 1;
                    eprintln!(
                        "seed {seed} round {round}: {key} acknowledged, replica has {held:?}"
                    );
                }
            }
        }
    }
    summary.report("sync_replicas_crash");
    assert_eq!(summary.lost, 0, "seed {seed}: acknowledged writes lost");
}
