//! The command line of a cluster node: the combinations `kv` refuses (`kv primary
//! --etcd`, `--etcd` without `--cluster`, `--join` with `--etcd`, a lease under 2 s), and
//! a node whose etcd is unreachable at start: it starts, serves reads, refuses writes with
//! `-READONLY` and reports `kv_etcd:unreachable`.

use crate::client::{connect, get, set, Info, Reply};
use crate::common::{run_with_input, wait_until, KvProcess};
use std::net::TcpListener;
use std::time::Duration;
use tempfile::TempDir;

/// `kv ARGS` with `--db` in a temp dir and `--listen 127.0.0.1:0` must exit non-zero
/// (with an empty stdin, a shell that started would end with status 0); returns stderr.
fn refused(args: &[&str]) -> String {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("n.db").display().to_string();
    let mut all = args.to_vec();
    all.extend(["--db", &db, "--listen", "127.0.0.1:0"]);
    let (status, _, stderr) = run_with_input(&all, b"");
    assert!(
        status.is_some_and(|code| code != 0),
        "kv {all:?} exited with {status:?}; stderr:\n{stderr}"
    );
    stderr
}

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn kv_primary_with_etcd_is_refused_in_one_line_naming_kv_replica() {
    let url = closed_url();
    let stderr = refused(&["primary", "--etcd", &url, "--cluster", "x"]);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("kv replica --etcd"), "{stderr}");
}

#[test]
fn etcd_without_a_cluster_name_with_join_or_with_a_short_lease_is_refused() {
    let url = closed_url();
    let stderr = refused(&["replica", "--etcd", &url]);
    assert!(stderr.contains("--cluster"), "{stderr}");
    let join = [
        "replica",
        "--etcd",
        &url,
        "--cluster",
        "x",
        "--join",
        "127.0.0.1:1",
    ];
    let stderr = refused(&join);
    assert!(stderr.contains("--join"), "{stderr}");
    let short = [
        "replica",
        "--etcd",
        &url,
        "--cluster",
        "x",
        "--lease-ttl",
        "1",
    ];
    let stderr = refused(&short);
    assert!(stderr.contains("--lease-ttl"), "{stderr}");
}

#[test]
fn a_node_whose_etcd_is_unreachable_serves_reads_refuses_writes_and_says_so() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("n.db").display().to_string();
    let url = closed_url();
    let node = KvProcess::start(&[
        "replica",
        "--etcd",
        &url,
        "--cluster",
        "lonely",
        "--lease-ttl",
        "2",
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
        "--resp",
        "127.0.0.1:0",
    ]);
    let port = node.resp_port.expect("client port");
    let mut con = connect(port, Duration::from_secs(5)).expect("connect");
    assert_eq!(get(&mut con, "missing"), None);
    let reply = set(&mut con, "k", "v");
    assert!(
        matches!(&reply, Reply::ReadOnly(_)),
        "{reply:?}; stderr:\n{}",
        node.stderr_text()
    );
    let mut info = None;
    let reported = wait_until(Duration::from_secs(5), || {
        info = Info::of(port);
        info.as_ref()
            .is_some_and(|i| i.get("kv_etcd") == Some("unreachable"))
    });
    assert!(
        reported,
        "INFO replication: {info:?}; stderr:\n{}",
        node.stderr_text()
    );
    let info = info.expect("INFO");
    assert_eq!(info.get("role"), Some("slave"), "{info:?}");
    assert_eq!(info.get("kv_cluster"), Some("lonely"), "{info:?}");
    assert_eq!(info.get("kv_lease_remaining_ms"), Some("0"), "{info:?}");
    assert_eq!(get(&mut con, "k"), None, "a refused write is not stored");
}
