//! Stopping is not an error: a primary's clean `EXIT` logs no failure and tells its
//! replicas it is stopping (they say so, not "protocol error"), and a replica's `EXIT`
//! is as quiet. Cancellation at shutdown is never reported as a failure.

mod common;

use common::{wait_until, KvProcess, PATIENCE};
use tempfile::TempDir;

fn assert_quiet(what: &str, stderr: &str) {
    for noise in ["cancelled", "ERROR", "failed", "protocol error"] {
        assert!(!stderr.contains(noise), "{what} logged {noise:?}: {stderr}");
    }
}

#[test]
fn a_clean_exit_is_quiet_and_replicas_hear_why() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db").display().to_string();
    let mut primary = KvProcess::start(&["primary", "--db", &db, "--listen", "127.0.0.1:0"]);
    assert_eq!(primary.command("PUT a 1"), "OK a = 1");
    let mut replica = KvProcess::synced_replica(&dir.path().join("r.db"), &primary.addr(), &[]);

    primary.send("EXIT");
    assert_eq!(primary.wait_exit(), Some(0));
    assert_quiet("the primary", &primary.stderr_text());
    assert!(
        !primary.stderr_text().contains("WARN"),
        "{}",
        primary.stderr_text()
    );

    replica.wait_stderr("the upstream says: it is shutting down");
    let said = wait_until(PATIENCE, || {
        replica.stderr_text().contains("reconnecting in")
    });
    assert!(said, "{}", replica.stderr_text());
    replica.send("EXIT");
    assert_eq!(replica.wait_exit(), Some(0));
    assert_quiet("the replica", &replica.stderr_text());
}
