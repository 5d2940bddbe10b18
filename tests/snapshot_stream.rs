//! Writes made while a snapshot of several thousand keys streams to a new replica all
//! arrive, in order, with no gap and no duplicate seq. A throttling proxy stretches the
//! snapshot over a couple of seconds so that writes land in the middle of it.

mod common;

use common::proxy::Proxy;
use common::{kv_rows, log_seqs, seed_primary, wait_until, KvProcess, PATIENCE};
use std::thread;
use std::time::Duration;
use tempfile::TempDir;

const KEYS: u64 = 5000;

#[test]
fn writes_during_a_snapshot_all_arrive_without_gap_or_duplicate() {
    let dir = TempDir::new().expect("tempdir");
    let primary_db = dir.path().join("primary.db");
    let replica_db = dir.path().join("r1.db");
    seed_primary(&primary_db, KEYS);
    let p = primary_db.display().to_string();
    let r = replica_db.display().to_string();
    let mut primary = KvProcess::start(&["primary", "--db", &p, "--listen", "127.0.0.1:0"]);
    // About 600 KB of snapshot at 16 KB per 50 ms: roughly two seconds of streaming.
    let proxy = Proxy::throttled(&primary.addr(), 16 * 1024, Duration::from_millis(50));
    let mut replica = KvProcess::start(&["replica", "--db", &r, "--listen", "127.0.0.1:0"]);
    replica.send(&format!("JOIN {}", proxy.addr));

    // Overwrites, new keys and deletes while the snapshot streams.
    let mut written = 0;
    // How many writes were acknowledged before the replica had installed its snapshot.
    let mut written_before_install = None;
    for i in 0..300u64 {
        let line = match i % 3 {
            0 => format!("PUT key{:05} changed{i}", i + 1),
            1 => format!("PUT new{i:04} v{i}"),
            _ => format!("DEL key{:05}", i + 2),
        };
        let reply = primary.command(&line);
        assert!(reply.starts_with("OK"), "{line} -> {reply}");
        written += 1;
        if written_before_install.is_none() {
            if let Some(line) = replica.next_line_within(Duration::ZERO) {
                assert_eq!(line, "Snapshot received");
                written_before_install = Some(written);
            }
        }
        thread::sleep(Duration::from_millis(5));
    }
    if written_before_install.is_none() {
        replica.expect_line("Snapshot received");
        written_before_install = Some(written);
    }
    let head = KEYS + written;

    let converged = wait_until(PATIENCE, || {
        replica.command("GET new0298") == "new0298 -> v298"
            && kv_rows(&replica_db) == kv_rows(&primary_db)
    });
    assert!(converged, "the replica never matched the primary");

    // The replica's log holds every entry after its snapshot's seq S, each exactly once.
    let seqs = log_seqs(&replica_db);
    let first = *seqs
        .first()
        .expect("entries after the snapshot were streamed");
    let snapshot_seq = first - 1;
    assert!(
        snapshot_seq >= KEYS,
        "snapshot at {snapshot_seq} missed seeded keys"
    );
    // Writes with seqs after the snapshot's, acknowledged before the replica installed
    // it, were made while it streamed.
    let during = (KEYS + written_before_install.unwrap_or(0)).saturating_sub(snapshot_seq);
    assert!(
        during >= 20,
        "only {during} writes landed while the snapshot (seq {snapshot_seq}) streamed"
    );
    let expected: Vec<u64> = (first..=head).collect();
    assert_eq!(seqs, expected, "gap or duplicate in the replicated log");
    assert_eq!(
        common::meta(&replica_db, "applied_seq"),
        Some(head.to_string())
    );
}
