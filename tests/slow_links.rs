//! Replication over slow links, through a real throttling proxy: a full sync whose
//! snapshot chunks take longer than the dead-peer timeout to cross still completes in one
//! attempt (timeouts are about silence, not size); a replica catching up a backlog knows
//! how far behind it is (`lag` in the thousands, then 0); `WAIT` does not count a replica
//! that is still syncing a new history; and an idle replica is heard from every second.

mod common;

use common::proxy::Proxy;
use common::{kv_rows, seed_primary, seed_primary_sized, wait_until, KvProcess, PATIENCE};
use std::path::Path;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// 15,000 bytes every 100 ms: 150 KB/s downstream.
const SLOW_BYTES: usize = 15_000;
const SLOW_TICK: Duration = Duration::from_millis(100);

fn primary(db: &Path, listen: &str, extra: &[&str]) -> KvProcess {
    let db = db.display().to_string();
    let mut args = vec!["primary", "--db", &db, "--listen", listen];
    args.extend_from_slice(extra);
    KvProcess::start(&args)
}

fn redis(node: &KvProcess) -> redis::Connection {
    redis::Client::open(node.redis_url())
        .expect("client")
        .get_connection()
        .expect("connect")
}

/// The `lag: N entries` of a replica's STATUS, if it shows a number.
fn lag(replica: &mut KvProcess) -> Option<u64> {
    let status = replica.command_lines("STATUS");
    let line = status.iter().find_map(|l| l.strip_prefix("lag: "))?;
    line.split(' ').next()?.parse().ok()
}

#[test]
fn a_full_sync_of_4_mb_through_a_150_kb_per_s_link_completes_in_one_attempt() {
    let dir = TempDir::new().expect("tempdir");
    // 1,000 values of 4 KB: 1 MiB snapshot chunks, each taking ~7 s to cross the link,
    // longer than the 5 s a silent peer is given.
    seed_primary_sized(&dir.path().join("p.db"), 1000, 4000);
    let primary = primary(&dir.path().join("p.db"), "127.0.0.1:0", &["--no-shell"]);
    let proxy = Proxy::throttled(&primary.addr(), SLOW_BYTES, SLOW_TICK);
    let started = Instant::now();
    let mut replica = KvProcess::replica(&dir.path().join("r.db"), &proxy.addr, &[]);
    let line = replica
        .next_line_within(Duration::from_secs(120))
        .unwrap_or_else(|| panic!("no sync; stderr: {}", replica.stderr_text()));
    assert_eq!(line, "Snapshot received");
    let took = started.elapsed();
    assert!(
        took > Duration::from_secs(20),
        "the link was not slow: {took:?}"
    );
    let stderr = replica.stderr_text();
    assert_eq!(stderr.matches("full resync:").count(), 1, "{stderr}");
    assert!(!stderr.contains("down"), "the link dropped: {stderr}");
    assert_eq!(
        primary.stderr_text().matches("joined:").count(),
        1,
        "one join: {}",
        primary.stderr_text()
    );
    assert_eq!(kv_rows(&dir.path().join("r.db")).len(), 1000);
}

#[test]
fn a_replica_catching_up_knows_how_far_behind_it_is() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = primary(
        &dir.path().join("p.db"),
        "127.0.0.1:0",
        &["--resp", "127.0.0.1:0"],
    );
    let proxy = Proxy::throttled(&primary.addr(), SLOW_BYTES, SLOW_TICK);
    let r_db = dir.path().join("r.db");
    let mut replica = KvProcess::synced_replica(&r_db, &proxy.addr, &[]);
    replica.kill();
    // 3,000 entries of ~250 bytes while it is away: ~5 s over the slow link.
    let mut con = redis(&primary);
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.cmd("SET").arg(format!("k{i:04}")).arg("v".repeat(240));
    }
    let _: () = pipe.query(&mut con).expect("3,000 SETs");
    assert_eq!(primary.command("GET k2999").len(), "k2999 -> ".len() + 240);

    let mut replica = KvProcess::replica(&r_db, &proxy.addr, &[]);
    replica.expect_line("Resumed after seq 0 (partial resync)");
    let mut most = 0;
    let caught_up = wait_until(Duration::from_secs(60), || {
        let now = lag(&mut replica);
        most = most.max(now.unwrap_or(0));
        now == Some(0) && kv_rows(&r_db).len() == 3000
    });
    assert!(
        most >= 1000,
        "the lag never showed the backlog: at most {most}"
    );
    assert!(
        caught_up,
        "never caught up: {:?}",
        replica.command_lines("STATUS")
    );
}

#[test]
fn wait_does_not_count_a_replica_still_syncing_a_replaced_primary() {
    let dir = TempDir::new().expect("tempdir");
    // The old primary's history reaches seq 1,000; the new one's only 200, with 2 MB of
    // data to send through a slow link.
    seed_primary(&dir.path().join("old.db"), 1000);
    seed_primary_sized(&dir.path().join("new.db"), 200, 10_000);
    let old = primary(&dir.path().join("old.db"), "127.0.0.1:0", &["--no-shell"]);
    let addr = old.addr();
    let proxy = Proxy::throttled(&addr, 64 * 1024, Duration::ZERO);
    let mut replica = KvProcess::synced_replica(&dir.path().join("r.db"), &proxy.addr, &[]);
    drop(old);

    proxy.delay(SLOW_TICK);
    let new = primary(
        &dir.path().join("new.db"),
        &addr,
        &["--no-shell", "--resp", "127.0.0.1:0"],
    );
    // The replica will not adopt the new, unrelated history by itself; the operator says so.
    replica.wait_stderr("unrelated history");
    replica.send(&format!("JOIN {}", proxy.addr));
    let mut con = redis(&new);
    let connected = wait_until(PATIENCE, || {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query(&mut con)
            .expect("INFO");
        info.contains("connected_slaves:1")
    });
    assert!(connected, "the replica never came back");
    let _: () = redis::cmd("SET")
        .arg("x")
        .arg("1")
        .query(&mut con)
        .expect("SET");
    let during: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(200)
        .query(&mut con)
        .expect("WAIT");
    assert_eq!(
        during, 0,
        "a replica still syncing does not hold the write yet"
    );

    let synced = replica.next_line_within(Duration::from_secs(90));
    assert_eq!(synced.as_deref(), Some("Snapshot received"));
    let holds = wait_until(Duration::from_secs(90), || {
        replica.command("GET x") == "x -> 1"
    });
    assert!(holds, "the replica never synced: {}", replica.stderr_text());
    let counted = wait_until(PATIENCE, || {
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(200)
            .query(&mut con)
            .expect("WAIT");
        acked == 1
    });
    assert!(
        counted,
        "WAIT never counted the replica that holds the write"
    );
}

#[test]
fn an_idle_replica_is_heard_from_every_second() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = primary(&dir.path().join("p.db"), "127.0.0.1:0", &[]);
    assert_eq!(primary.command("PUT a 1"), "OK a = 1");
    let _replica = KvProcess::synced_replica(&dir.path().join("r.db"), &primary.addr(), &[]);
    let heard = |primary: &mut KvProcess| -> Option<f64> {
        let status = primary.command_lines("STATUS");
        let line = status.iter().find(|l| l.contains("last heard"))?;
        let seconds = line.rsplit("last heard ").next()?.split(' ').next()?;
        seconds.parse().ok()
    };
    let listed = wait_until(PATIENCE, || heard(&mut primary).is_some());
    assert!(listed, "{:?}", primary.command_lines("STATUS"));
    // Idle for 3 s: the replica must still be heard from at least once a second.
    let started = Instant::now();
    let mut longest = 0.0f64;
    while started.elapsed() < Duration::from_secs(3) {
        longest = longest.max(heard(&mut primary).expect("still listed"));
        // Pacing the samples, not waiting for a condition: STATUS hashes the contents.
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(longest < 1.6, "silent for {longest} s while idle");
}
