//! Expiry across nodes, with real processes: the primary logs the absolute time with the
//! put, so a replica hides the key at the same moment the primary does; the primary's
//! sweep then deletes the row and logs the delete, which the replica applies; a replica
//! restarted after the key expired never serves it again; a replica that joins by
//! snapshot gets the time with the row.

mod common;

use common::{kv_rows, wait_until, KvProcess};
use redis::Connection;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(15);

fn connect(node: &KvProcess) -> Connection {
    redis::Client::open(node.redis_url())
        .and_then(|client| client.get_connection())
        .expect("connect to the client port")
}

fn get(con: &mut Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(con).expect("GET")
}

fn pexpiretime(con: &mut Connection, key: &str) -> i64 {
    redis::cmd("PEXPIRETIME")
        .arg(key)
        .query(con)
        .expect("PEXPIRETIME")
}

fn now_ms() -> i64 {
    let elapsed = SystemTime::now().duration_since(UNIX_EPOCH);
    elapsed.expect("the clock is past 1970").as_millis() as i64
}

/// Whether the `log` of `db` holds a delete of `key`.
fn logged_delete(db: &std::path::Path, key: &str) -> bool {
    common::log_rows(db)
        .iter()
        .any(|(_, op, logged, _)| op == "del" && logged == key)
}

#[test]
fn a_key_expires_on_the_replica_when_it_does_on_the_primary() {
    let dir = TempDir::new().expect("tempdir");
    let primary_db = dir.path().join("p.db");
    let replica_db = dir.path().join("r.db");
    let primary = KvProcess::primary_with_clients(&primary_db, &[]);
    let replica =
        KvProcess::synced_replica(&replica_db, &primary.addr(), &["--resp", "127.0.0.1:0"]);
    let (mut on_primary, mut on_replica) = (connect(&primary), connect(&replica));

    let () = redis::cmd("SET")
        .arg("session")
        .arg("alive")
        .arg("PX")
        .arg(1500)
        .query(&mut on_primary)
        .expect("SET PX");
    let arrived = wait_until(PATIENCE, || get(&mut on_replica, "session").is_some());
    assert!(arrived, "the key never reached the replica");
    let at = pexpiretime(&mut on_primary, "session");
    assert_eq!(
        pexpiretime(&mut on_replica, "session"),
        at,
        "the replica holds the time the primary decided"
    );

    // Both nodes read the key until its time and neither after it: each gone moment is
    // the first read that missed it, and both lie just past the time.
    let mut gone: [Option<i64>; 2] = [None, None];
    let deadline = Instant::now() + PATIENCE;
    while gone.iter().any(Option::is_none) && Instant::now() < deadline {
        for (node, con) in [&mut on_primary, &mut on_replica].into_iter().enumerate() {
            let before = now_ms();
            let value = get(con, "session");
            if value.is_none() && gone[node].is_none() {
                gone[node] = Some(before);
            }
            if value.is_some() {
                assert!(
                    before < at,
                    "node {node} served the key {} ms after its time",
                    before - at
                );
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for (node, moment) in gone.iter().enumerate() {
        let moment = moment.unwrap_or_else(|| panic!("node {node} still serves the key"));
        assert!(
            (at - 20..at + 250).contains(&moment),
            "node {node} lost the key at {moment}, its time was {at}"
        );
    }

    // The sweep deletes the row and logs the delete; the replica applies it.
    for db in [&primary_db, &replica_db] {
        let swept = wait_until(PATIENCE, || {
            kv_rows(db).is_empty() && logged_delete(db, "session")
        });
        assert!(swept, "{} still has {:?}", db.display(), kv_rows(db));
    }
}

#[test]
fn a_replica_restarted_after_a_key_expired_does_not_serve_it() {
    let dir = TempDir::new().expect("tempdir");
    let primary_db = dir.path().join("p.db");
    let replica_db = dir.path().join("r.db");
    let primary = KvProcess::primary_with_clients(&primary_db, &[]);
    let replica_args = ["--resp", "127.0.0.1:0"];
    let mut replica = KvProcess::synced_replica(&replica_db, &primary.addr(), &replica_args);
    let mut on_primary = connect(&primary);
    let () = redis::cmd("SET")
        .arg("short")
        .arg("v")
        .arg("PX")
        .arg(1000)
        .query(&mut on_primary)
        .expect("SET PX");
    let () = redis::cmd("SET")
        .arg("kept")
        .arg("v")
        .query(&mut on_primary)
        .expect("SET");
    let mut on_replica = connect(&replica);
    let arrived = wait_until(PATIENCE, || get(&mut on_replica, "kept").is_some());
    assert!(arrived, "the writes never reached the replica");
    drop(on_replica);
    replica.kill();
    assert!(
        kv_rows(&replica_db).iter().any(|(key, _)| key == "short"),
        "the killed replica's file holds the row"
    );

    // The key expires, and the primary sweeps it, while the replica is down.
    let swept = wait_until(PATIENCE, || logged_delete(&primary_db, "short"));
    assert!(swept, "the primary never swept the key");

    // Restarted against a primary that is gone too, it has only its own file, whose row
    // outlived the key's time: it must not serve it.
    drop(on_primary);
    drop(primary);
    let upstream_gone = "127.0.0.1:9";
    let restarted = KvProcess::replica(&replica_db, upstream_gone, &replica_args);
    let mut on_restarted = connect(&restarted);
    assert_eq!(get(&mut on_restarted, "short"), None, "resurrected");
    let exists: i64 = redis::cmd("EXISTS")
        .arg("short")
        .query(&mut on_restarted)
        .expect("EXISTS");
    assert_eq!(exists, 0);
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut on_restarted)
        .expect("KEYS");
    assert_eq!(keys, ["kept"]);
    assert_eq!(get(&mut on_restarted, "kept").as_deref(), Some("v"));
}

#[test]
fn a_replica_that_joins_by_snapshot_gets_the_time_with_the_row() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = KvProcess::primary_with_clients(&dir.path().join("p.db"), &[]);
    let mut on_primary = connect(&primary);
    let () = redis::cmd("SET")
        .arg("cache")
        .arg("v")
        .arg("EX")
        .arg(100)
        .query(&mut on_primary)
        .expect("SET EX");
    let () = redis::cmd("PSETEX")
        .arg("short")
        .arg(1500)
        .arg("v")
        .query(&mut on_primary)
        .expect("PSETEX");
    let at = pexpiretime(&mut on_primary, "cache");
    let short_at = pexpiretime(&mut on_primary, "short");
    let replica_db = dir.path().join("r.db");
    let replica =
        KvProcess::synced_replica(&replica_db, &primary.addr(), &["--resp", "127.0.0.1:0"]);
    let mut on_replica = connect(&replica);
    assert_eq!(pexpiretime(&mut on_replica, "cache"), at);
    assert_eq!(pexpiretime(&mut on_replica, "short"), short_at);
    let ttl: i64 = redis::cmd("TTL")
        .arg("cache")
        .query(&mut on_replica)
        .expect("TTL");
    assert!((95..=100).contains(&ttl), "TTL {ttl}");

    // With its upstream gone, no delete can arrive: the replica hides the snapshot's row
    // by its time alone, and the row is still in its file.
    drop(on_primary);
    primary.kill();
    let hidden = wait_until(PATIENCE, || get(&mut on_replica, "short").is_none());
    assert!(hidden, "the replica still serves the key");
    assert!(now_ms() >= short_at, "hidden before its time");
    let rows = kv_rows(&replica_db);
    assert!(rows.iter().any(|(key, _)| key == "short"), "{rows:?}");
    assert_eq!(get(&mut on_replica, "cache").as_deref(), Some("v"));
}
