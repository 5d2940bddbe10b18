//! One database file, one node: a second kv process on a file a running node holds is
//! refused with one line naming the file and the holder's pid, for both roles; the first
//! node keeps working, `sqlite3`-style readers still read the file beside it, and a node
//! killed with SIGKILL restarts on its file with no cleanup.

mod common;

use common::{kv_rows, run_with_input, KvProcess};
use tempfile::TempDir;

fn refused_second_start(role: &str, db: &str, holder: &KvProcess) {
    let (code, _, stderr) = run_with_input(&[role, "--db", db, "--listen", "127.0.0.1:0"], b"");
    assert_ne!(code, Some(0), "a second {role} must not start: {stderr}");
    let line = stderr.trim();
    assert_eq!(line.lines().count(), 1, "one line: {stderr}");
    assert!(line.contains(db), "names the file: {line}");
    assert!(
        line.contains(&format!("pid {}", holder.pid())),
        "names the holder: {line}"
    );
}

#[test]
fn a_second_primary_on_the_same_file_is_refused_and_the_first_keeps_working() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("p.db");
    let db = path.display().to_string();
    let args = ["primary", "--db", db.as_str(), "--listen", "127.0.0.1:0"];
    let mut first = KvProcess::start(&args);
    assert_eq!(first.command("PUT a 1"), "OK a = 1");
    refused_second_start("primary", &db, &first);
    assert_eq!(first.command("PUT b 2"), "OK b = 2");
    // A plain SQLite reader (what `sqlite3` does) still reads the file beside the node.
    assert_eq!(kv_rows(&path).len(), 2);

    // SIGKILL leaves no lock behind: the same command starts again at once.
    first.kill();
    let mut again = KvProcess::start(&args);
    assert_eq!(again.command("GET b"), "b -> 2");
}

#[test]
fn a_second_replica_on_the_same_file_is_refused_and_the_first_keeps_working() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = KvProcess::start(&["primary", "--listen", "127.0.0.1:0"]);
    assert_eq!(primary.command("PUT a 1"), "OK a = 1");
    let path = dir.path().join("r.db");
    let db = path.display().to_string();
    let mut first = KvProcess::synced_replica(&path, &primary.addr(), &[]);
    refused_second_start("replica", &db, &first);
    assert_eq!(primary.command("PUT b 2"), "OK b = 2");
    let live = common::wait_until(common::PATIENCE, || first.command("GET b") == "b -> 2");
    assert!(live, "the first replica stopped following");

    first.kill();
    let mut again = KvProcess::replica(&path, &primary.addr(), &[]);
    again.expect_line("Resumed after seq 2 (partial resync)");
}
