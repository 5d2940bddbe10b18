//! A planned handoff (`FAILOVER`) loses nothing: under 20 continuous writers, `FAILOVER TO`
//! a replica answers `+OK` once the roles are swapped; every write that got `+OK` is on the
//! new primary, each writer's next write gets `-READONLY`, and the old primary and a
//! replica that stays below it follow the new primary to the same digest, the old primary
//! by partial resync (nothing diverged). A target that cannot catch up in time
//! (partitioned by the proxy) makes `FAILOVER` fail and writes resume; so does having no
//! replica.

use crate::common::proxy::Proxy;
use crate::common::{wait_until, KvProcess, PATIENCE};
use crate::support::{assert_converged, info_field, redis, wait_seq, Cluster};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Writer `w` on its own thread, SETting `w{w}-{i:05}` until its first error (returned),
/// at most `max` writes or 30 s; the acknowledged keys are collected.
fn writer(
    node: &KvProcess,
    w: usize,
    max: usize,
    acknowledged: Arc<Mutex<Vec<String>>>,
) -> std::thread::JoinHandle<Option<redis::RedisError>> {
    let mut con = redis(node);
    std::thread::spawn(move || {
        let started = Instant::now();
        for i in 0..max {
            if started.elapsed() > Duration::from_secs(30) {
                return None;
            }
            let key = format!("w{w:02}-{i:05}");
            match redis::cmd("SET").arg(&key).arg(i).query::<()>(&mut con) {
                Ok(()) => acknowledged.lock().expect("lock").push(key),
                Err(e) => return Some(e),
            }
        }
        None
    })
}

fn failover_to(
    node: &KvProcess,
    target: &KvProcess,
    timeout_ms: u64,
) -> redis::RedisResult<String> {
    redis::cmd("FAILOVER")
        .arg("TO")
        .arg("127.0.0.1")
        .arg(target.port)
        .arg("TIMEOUT")
        .arg(timeout_ms)
        .query(&mut redis(node))
}

fn set(con: &mut redis::Connection, key: &str) {
    redis::cmd("SET")
        .arg(key)
        .arg("1")
        .query::<()>(con)
        .unwrap_or_else(|e| panic!("SET {key}: {e}"));
}

#[test]
fn a_handoff_under_a_continuous_writer_loses_no_acknowledged_write() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let mut r1 = cluster.replica("r1.db", &p.addr(), "Snapshot received");
    let mut r2 = cluster.replica("r2.db", &p.addr(), "Snapshot received");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    // 20 writers, so that writes are queued, waiting and arriving when the handoff starts.
    let writing: Vec<_> = (0..20)
        .map(|w| writer(&p, w, 50_000, Arc::clone(&acknowledged)))
        .collect();
    let started = wait_until(PATIENCE, || acknowledged.lock().expect("lock").len() >= 200);
    assert!(started, "the writer never got going");

    assert_eq!(failover_to(&p, &r1, 10_000).expect("FAILOVER"), "OK");
    for writing in writing {
        let error = writing
            .join()
            .expect("writer")
            .expect("every writer must be refused");
        assert_eq!(error.code(), Some("READONLY"), "{error}");
    }
    assert_eq!(info_field(&r1, "role"), "master");
    assert_eq!(info_field(&p, "role"), "slave");
    assert_eq!(info_field(&p, "master_failover_state"), "no-failover");

    // Every acknowledged write is on the new primary.
    let acknowledged = acknowledged.lock().expect("lock").clone();
    let mut con = redis(&r1);
    for chunk in acknowledged.chunks(500) {
        let held: Vec<Option<String>> =
            redis::cmd("MGET").arg(chunk).query(&mut con).expect("MGET");
        let missing: Vec<&String> = chunk
            .iter()
            .zip(&held)
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        assert!(missing.is_empty(), "acknowledged but missing: {missing:?}");
    }
    // The old primary continued across the fork; nothing diverged.
    p.stderr_line(|l| l.contains("partial resync: history"));
    assert!(!p.stderr_text().contains("diverged"), "{}", p.stderr_text());

    // The new primary takes writes; the old one and r2 (still below it) follow.
    let head: u64 = info_field(&r1, "master_repl_offset")
        .parse()
        .expect("offset");
    set(&mut con, "after");
    wait_seq(&mut r1, head + 1);
    assert_converged(&mut [&mut r1, &mut p, &mut r2], head + 1);
}

#[test]
fn a_target_that_cannot_catch_up_abandons_the_handoff_and_writes_resume() {
    let cluster = Cluster::new();
    let p = cluster.primary("p.db", "127.0.0.1:0");
    let proxy = Proxy::new(&p.addr());
    let r1 = cluster.replica("r1.db", &proxy.addr, "Snapshot received");
    let mut con = redis(&p);
    set(&mut con, "a");
    // Partitioned: nothing moves (a read in progress may still pass one write on, so two
    // writes follow; the second cannot reach r1).
    proxy.blackhole(true);
    set(&mut con, "b1");
    set(&mut con, "b2");

    let started = Instant::now();
    let refused = failover_to(&p, &r1, 500).expect_err("the target is partitioned off");
    assert!(
        refused.to_string().contains("did not catch up"),
        "{refused}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(info_field(&p, "role"), "master");
    assert_eq!(info_field(&p, "master_failover_state"), "no-failover");
    set(&mut con, "c");

    let mut alone = cluster.primary("alone.db", "127.0.0.1:0");
    let reply = alone.command("FAILOVER");
    assert!(reply.contains("requires connected replicas"), "{reply}");
    assert_eq!(alone.command("PUT x 1"), "OK x = 1");
}
