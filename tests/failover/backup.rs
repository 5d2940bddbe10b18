//! Same history, same seq, different contents: a primary restored from a backup taken at
//! seq 50 (`VACUUM INTO` while it ran) restarts on its old address and takes 50 other
//! writes, so its head is seq 100 again. Its replica, which had the original writes
//! 51..=100, reconnects by itself and must not resume (the running log checksums differ):
//! it gets a full resync whose reason says `diverged:`, keeps its entries 51..=100 of the
//! original history in `diverged`, and ends with the restored primary's digest.

use crate::common::proxy::Proxy;
use crate::support::{
    assert_converged, assert_diverged, count_keys, history, log_seqs_ro, open_ro, put_many,
    status_field, stderr_line_with, wait_seq, Cluster,
};
use std::path::Path;

/// Copies the database at `from` (a running node's, WAL included) to `to` in one read
/// transaction, as an operator's backup would.
fn backup(from: &Path, to: &Path) {
    open_ro(from)
        .execute("VACUUM INTO ?1", [to.display().to_string()])
        .unwrap_or_else(|e| panic!("VACUUM INTO {}: {e}", to.display()));
}

/// Puts `backup` in place of the database `db` (and removes its WAL and shared-memory
/// files, which belong to the replaced contents).
fn restore(backup: &Path, db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let file = format!("{}{suffix}", db.display());
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {file}: {e}"),
        }
    }
    std::fs::copy(backup, db).expect("restore the backup");
}

#[test]
fn a_replica_of_a_primary_restored_from_a_backup_does_not_resume_on_different_contents() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let p_addr = p.addr();
    // The replica reaches the primary through a proxy, to keep it away while the
    // restored primary takes its new writes (it then reconnects by itself).
    let proxy = Proxy::new(&p_addr);
    let mut r = cluster.replica("r.db", &proxy.addr, "Snapshot received");

    put_many(&mut p, "k", "v", 1..51);
    backup(&cluster.db("p.db"), &cluster.db("backup.db"));
    let original = history(&cluster.db("p.db"));
    assert_eq!(history(&cluster.db("backup.db")), original);
    assert_eq!(log_seqs_ro(&cluster.db("backup.db")).last(), Some(&50));

    put_many(&mut p, "old", "o", 51..101);
    wait_seq(&mut r, 100);
    p.kill();

    proxy.blackhole(true);
    restore(&cluster.db("backup.db"), &cluster.db("p.db"));
    let mut p = cluster.primary("p.db", &p_addr);
    assert_eq!(
        status_field(&mut p, "head_seq").as_deref(),
        Some("50"),
        "restored at seq 50"
    );
    assert_eq!(status_field(&mut p, "history"), Some(original.clone()));
    put_many(&mut p, "new", "n", 51..101);
    assert_eq!(status_field(&mut p, "head_seq").as_deref(), Some("100"));
    let resyncs_before = r.stderr_text().matches("full resync").count();
    proxy.blackhole(false);

    // r comes back by itself: same history, same seq 100, different contents.
    stderr_line_with(&r, "full resync: diverged:", &[]);
    assert_converged(&mut [&mut p, &mut r], 100);
    assert!(
        r.stderr_text().matches("full resync").count() > resyncs_before,
        "{}",
        r.stderr_text()
    );
    assert!(
        !r.stderr_text()
            .contains("partial resync: same history, resuming after seq 100"),
        "r resumed on different contents: {}",
        r.stderr_text()
    );
    let last_resync = status_field(&mut r, "last_resync").unwrap_or_default();
    assert!(
        last_resync.contains("diverged:"),
        "STATUS last_resync: {last_resync:?}"
    );
    assert_diverged(&cluster.db("r.db"), &original, 51, ("old", "o"), 51..101);
    assert_eq!(count_keys(&cluster.db("r.db"), "old"), 0);
    assert_eq!(count_keys(&cluster.db("r.db"), "new"), 50);
    assert_eq!(count_keys(&cluster.db("r.db"), "k"), 50);
    assert_eq!(r.command("GET old077"), "old077 -> Not found");
    assert_eq!(r.command("GET new077"), "new077 -> n77");
}
