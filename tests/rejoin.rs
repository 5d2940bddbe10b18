//! Replication that survives restarts: a replica killed and restarted with the same
//! command resumes with a partial resync (or a full one, with its reason, when the log was
//! trimmed); a replica reconnects by itself to a primary killed and restarted on the same
//! address; a primary whose database was replaced forces a full resync that leaves no key
//! of the old history behind; replicas chain, and partial resync works along the chain.

mod common;

use common::proxy::Proxy;
use common::{kv_rows, log_seqs, wait_until, KvProcess, PATIENCE};
use std::path::{Path, PathBuf};
use tempfile::TempDir;

struct Cluster {
    dir: TempDir,
}

impl Cluster {
    fn new() -> Self {
        Cluster {
            dir: TempDir::new().expect("tempdir"),
        }
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn primary(&self, db: &str, listen: &str, extra: &[&str]) -> KvProcess {
        let db = self.db(db).display().to_string();
        let mut args = vec!["primary", "--db", &db, "--listen", listen];
        args.extend_from_slice(extra);
        KvProcess::start(&args)
    }

    /// A replica joined to `upstream` at start-up; waits for its first sync line.
    fn replica(&self, db: &str, upstream: &str, expect: &str) -> KvProcess {
        let mut replica = KvProcess::replica(&self.db(db), upstream, &[]);
        let line = replica.next_line();
        assert!(
            line.starts_with(expect),
            "expected {expect:?}, got {line:?}"
        );
        replica
    }
}

fn write_all(node: &mut KvProcess, lines: &[&str]) {
    for line in lines {
        let reply = node.command(line);
        assert!(reply.starts_with("OK"), "{line} -> {reply}");
    }
}

fn assert_converges(replica: &Path, primary: &Path) {
    let same = wait_until(PATIENCE, || kv_rows(replica) == kv_rows(primary));
    assert!(
        same,
        "replica {:?} != primary {:?}",
        kv_rows(replica),
        kv_rows(primary)
    );
}

#[test]
fn restarted_replica_resumes_with_a_partial_resync() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &[]);
    write_all(&mut primary, &["PUT a 1", "PUT b 2", "PUT c 3"]);
    let mut replica = cluster.replica("r1.db", &primary.addr(), "Snapshot received");
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
    replica.kill();

    write_all(
        &mut primary,
        &["PUT a 10", "DEL b", "PUT d 4", "PUT c three"],
    );
    let replica = cluster.replica(
        "r1.db",
        &primary.addr(),
        "Resumed after seq 3 (partial resync)",
    );
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
    replica.wait_stderr("partial resync: same history, resuming after seq 3");
    primary.wait_stderr("partial resync: from seq 3");
    // Only the missed entries travelled: the replica's log holds seqs 4..=7 after its
    // original snapshot at 3, nothing re-sent.
    assert_eq!(log_seqs(&cluster.db("r1.db")), vec![4, 5, 6, 7]);
}

#[test]
fn replica_behind_the_retained_log_gets_a_full_resync_with_the_reason() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &["--log-retain", "5"]);
    write_all(&mut primary, &["PUT a 1", "PUT b 2"]);
    let mut replica = cluster.replica("r1.db", &primary.addr(), "Snapshot received");
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
    replica.kill();

    let writes: Vec<String> = (0..20).map(|i| format!("PUT k{i:02} v{i}")).collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    write_all(&mut primary, &writes);
    let trimmed = wait_until(PATIENCE, || log_seqs(&cluster.db("p.db")).len() == 5);
    assert!(
        trimmed,
        "the log was not trimmed to 5: {:?}",
        log_seqs(&cluster.db("p.db"))
    );

    let replica = cluster.replica("r1.db", &primary.addr(), "Snapshot received");
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
    let reason = "full resync: log trimmed (need seq 3, oldest kept 18)";
    primary.wait_stderr(reason);
    replica.wait_stderr(reason);
    let status = primary.command_lines("STATUS");
    assert!(status.contains(&"head_seq: 22".to_string()), "{status:?}");
}

#[test]
fn replica_reconnects_to_a_restarted_primary() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &[]);
    let addr = primary.addr();
    write_all(&mut primary, &["PUT a 1"]);
    let mut replica = cluster.replica("r1.db", &addr, "Snapshot received");
    primary.kill();
    // The replica keeps serving reads while its primary is down.
    assert_eq!(replica.command("GET a"), "a -> 1");
    let down = wait_until(PATIENCE, || {
        replica
            .command_lines("STATUS")
            .contains(&"link: down".to_string())
    });
    assert!(down, "the replica never noticed its primary died");

    let mut primary = cluster.primary("p.db", &addr, &[]);
    write_all(&mut primary, &["PUT b 2"]);
    let caught_up = wait_until(PATIENCE, || replica.command("GET b") == "b -> 2");
    assert!(
        caught_up,
        "the replica did not reconnect: {}",
        replica.stderr_text()
    );
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
    let status = replica.command_lines("STATUS");
    assert!(
        status.contains(&"link: streaming".to_string()),
        "{status:?}"
    );
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("last_resync: partial resync")),
        "{status:?}"
    );
}

#[test]
fn replaced_primary_database_forces_a_full_resync_without_old_keys() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("old.db", "127.0.0.1:0", &[]);
    let addr = primary.addr();
    write_all(
        &mut primary,
        &["PUT old1 x", "PUT old2 y", "PUT shared old"],
    );
    let mut replica = cluster.replica("r1.db", &addr, "Snapshot received");
    assert_converges(&cluster.db("r1.db"), &cluster.db("old.db"));
    primary.kill();

    // A new database on the same address, with more writes than the old history had:
    // on its own, the replica keeps its data and stops following (an unrelated history is
    // never adopted silently)...
    let mut primary = cluster.primary("new.db", &addr, &[]);
    let writes: Vec<String> = (0..6).map(|i| format!("PUT new{i} v{i}")).collect();
    let writes: Vec<&str> = writes.iter().map(String::as_str).collect();
    write_all(&mut primary, &writes);
    write_all(&mut primary, &["PUT shared new"]);
    replica.wait_stderr("unrelated history");
    assert!(replica
        .command_lines("STATUS")
        .contains(&"link: stopped".to_string()));
    assert_eq!(replica.command("GET shared"), "shared -> old");
    // ...until the operator says to follow it: then no old key survives.
    assert_eq!(
        replica.command(&format!("JOIN {addr}")),
        "Snapshot received"
    );
    assert_converges(&cluster.db("r1.db"), &cluster.db("new.db"));
    replica.wait_stderr("full resync: new history (replica had");
    primary.wait_stderr("full resync: new history");
    assert_eq!(replica.command("GET old1"), "old1 -> Not found");
    assert_eq!(replica.command("GET shared"), "shared -> new");
}

#[test]
fn chained_replicas_converge_and_resume_along_the_chain() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &[]);
    write_all(&mut primary, &["PUT a 1", "PUT b 2"]);
    let r1 = cluster.replica("r1.db", &primary.addr(), "Snapshot received");
    let mut r2 = cluster.replica("r2.db", &r1.addr(), "Snapshot received");
    write_all(&mut primary, &["PUT c 3", "DEL a"]);
    assert_converges(&cluster.db("r2.db"), &cluster.db("p.db"));
    assert_eq!(r2.command("GET c"), "c -> 3");

    r2.kill();
    write_all(&mut primary, &["PUT d 4", "PUT b 20"]);
    let r2 = cluster.replica("r2.db", &r1.addr(), "Resumed after seq 4 (partial resync)");
    assert_converges(&cluster.db("r2.db"), &cluster.db("p.db"));
    r1.wait_stderr("partial resync: from seq 4");
    drop(r2);
}

#[test]
fn a_chained_replica_follows_its_upstream_onto_a_new_primary() {
    let cluster = Cluster::new();
    // History A is ahead of history B, so B's later seqs line up with what r2 expects
    // next: only a reset of r1's downstream streams keeps B's entries off A's data.
    let mut first = cluster.primary("a.db", "127.0.0.1:0", &[]);
    let a_writes: Vec<String> = (0..6).map(|i| format!("PUT a{i} v{i}")).collect();
    let a_writes: Vec<&str> = a_writes.iter().map(String::as_str).collect();
    write_all(&mut first, &a_writes);
    let mut second = cluster.primary("b.db", "127.0.0.1:0", &[]);
    write_all(&mut second, &["PUT b0 x", "PUT b1 y"]);

    let mut r1 = cluster.replica("r1.db", &first.addr(), "Snapshot received");
    let mut r2 = cluster.replica("r2.db", &r1.addr(), "Snapshot received");
    assert_converges(&cluster.db("r2.db"), &cluster.db("a.db"));
    let a_digest = r2.command("DIGEST");

    // r1 switches to B (snapshot at seq 2); B then writes seqs 3..=10, past A's head 6.
    assert_eq!(
        r1.command(&format!("JOIN {}", second.addr())),
        "Snapshot received"
    );
    let b_writes: Vec<String> = (2..10).map(|i| format!("PUT b{i} v{i}")).collect();
    let b_writes: Vec<&str> = b_writes.iter().map(String::as_str).collect();
    write_all(&mut second, &b_writes);
    // r2 reconnects by itself and meets history B, unrelated to its A: it keeps A's data
    // (none of B's entries lands on it) and stops, until told to follow r1 again.
    r2.wait_stderr("unrelated history");
    assert_eq!(r2.command("DIGEST"), a_digest);
    assert_eq!(
        r2.command(&format!("JOIN {}", r1.addr())),
        "Snapshot received"
    );
    assert_converges(&cluster.db("r2.db"), &cluster.db("b.db"));
    drop(first);
}

#[test]
fn a_failed_join_keeps_following_the_previous_primary() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &[]);
    write_all(&mut primary, &["PUT a 1"]);
    let mut replica = cluster.replica("r1.db", &primary.addr(), "Snapshot received");
    let reply = replica.command("JOIN 127.0.0.1:1");
    let expected = format!("; still following {}", primary.addr());
    assert!(reply.starts_with("ERR JOIN 127.0.0.1:1 failed"), "{reply}");
    assert!(reply.ends_with(&expected), "{reply}");
    write_all(&mut primary, &["PUT b 2"]);
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
}

#[test]
fn silent_links_are_declared_dead_and_replaced() {
    let cluster = Cluster::new();
    let mut primary = cluster.primary("p.db", "127.0.0.1:0", &[]);
    write_all(&mut primary, &["PUT a 1"]);
    let proxy = Proxy::new(&primary.addr());
    let mut replica = cluster.replica("r1.db", &proxy.addr, "Snapshot received");
    let acked = wait_until(PATIENCE, || {
        let status = primary.command_lines("STATUS");
        status.contains(&"replicas: 1".to_string())
            && status
                .iter()
                .any(|l| l.contains("acked_seq 1, lag 0 entries"))
    });
    assert!(acked, "the primary never listed the replica's ack");

    // Nothing crosses the link any more, but no connection closes: both sides must notice
    // the silence on their own.
    proxy.blackhole(true);
    write_all(&mut primary, &["PUT b 2"]);
    replica
        .wait_stderr("nothing received for 5000 ms while waiting for a message from the upstream");
    let status = replica.command_lines("STATUS");
    assert!(
        status
            .iter()
            .any(|l| l.starts_with("last_error: timed out")),
        "{status:?}"
    );
    let primary_noticed = wait_until(PATIENCE, || {
        primary
            .command_lines("STATUS")
            .contains(&"replicas: 0".to_string())
    });
    assert!(
        primary_noticed,
        "the primary never dropped its silent replica"
    );
    primary.wait_stderr("nothing received for 5000 ms while waiting for an ack or heartbeat");

    proxy.blackhole(false);
    assert_converges(&cluster.db("r1.db"), &cluster.db("p.db"));
}
