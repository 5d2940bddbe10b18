//! Bad input to the real binary: shell lines it must refuse with one `ERR` line while
//! carrying on (unknown commands, missing arguments, writes on a replica, a 100 KB line,
//! control bytes, invalid UTF-8), command-line mistakes that must stop it with one clear
//! line and a non-zero status, and the ways it must stop cleanly (EXIT, end of input,
//! SIGTERM/SIGINT in service mode).

mod common;

use common::{run_with_input, KvProcess};
use std::process::Command;
use tempfile::TempDir;

/// Every refused line prints exactly one line starting `ERR `, and the node still works.
fn assert_refused(node: &mut KvProcess, raw: &[u8], mentions: &str) {
    node.send_raw(raw);
    let reply = node.next_line();
    assert!(
        reply.starts_with("ERR "),
        "{:?} -> {reply}",
        String::from_utf8_lossy(raw)
    );
    assert!(
        reply.contains(mentions),
        "{reply} should mention {mentions:?}"
    );
    let alive = node.command("GET alive");
    assert!(
        alive.starts_with("alive -> "),
        "node stopped answering: {alive}"
    );
}

#[test]
fn primary_shell_refuses_bad_lines_and_carries_on() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db").display().to_string();
    let mut primary = KvProcess::start(&["primary", "--db", &db, "--listen", "127.0.0.1:0"]);
    assert_eq!(primary.command("PUT alive yes"), "OK alive = yes");
    assert_refused(&mut primary, b"FROB a", "unknown command 'FROB'");
    assert_refused(&mut primary, b"PUT", "usage: PUT <key> <value>");
    assert_refused(&mut primary, b"PUT lonely", "usage: PUT <key> <value>");
    assert_refused(&mut primary, b"GET", "usage: GET <key>");
    assert_refused(&mut primary, b"DEL", "usage: DEL <key>");
    // A JOIN that cannot sync leaves the primary a primary.
    assert_refused(&mut primary, b"JOIN 127.0.0.1:1", "still the primary");
    assert_refused(&mut primary, &vec![b'x'; 100 * 1024], "line too long");
    assert_refused(&mut primary, b"PUT k \x1b[31mred", "control character");
    assert_refused(&mut primary, b"PUT k \x00", "control character");
    assert_refused(&mut primary, b"PUT k \xff\xfe", "UTF-8");
    // Nothing refused was stored, and what was stored is intact.
    assert_eq!(primary.command("GET alive"), "alive -> yes");
    assert_eq!(primary.command("GET k"), "k -> Not found");
    assert_eq!(primary.command("KEYS"), "alive");
}

#[test]
fn replica_shell_refuses_writes_and_bad_joins() {
    let mut replica = KvProcess::start(&["replica", "--listen", "127.0.0.1:0"]);
    assert_refused(&mut replica, b"PUT a 1", "read-only replica");
    assert_refused(&mut replica, b"DEL a", "read-only replica");
    assert_refused(&mut replica, b"JOIN", "usage: JOIN <host:port>");
    assert_refused(&mut replica, b"JOIN nowhere", "expected <host:port>");
    // A port nobody listens on: one ERR line, not a hang and not an exit.
    // Port 1 (tcpmux) is privileged and unused on a test machine: refused at once.
    let reply = replica.command("JOIN 127.0.0.1:1");
    assert!(reply.starts_with("ERR JOIN"), "{reply}");
    assert!(reply.contains("cannot connect"), "{reply}");
    assert_eq!(replica.command("GET a"), "a -> Not found");
}

#[test]
fn piped_script_runs_and_exits_zero_at_end_of_input() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db").display().to_string();
    let args = ["primary", "--db", &db, "--listen", "127.0.0.1:0"];
    let (code, stdout, _) = run_with_input(&args, b"PUT a 1\nGET a\nput b two words\nget b\n");
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        ["OK a = 1", "a -> 1", "OK b = two words", "b -> two words"]
    );
    // EXIT stops before the rest of the script.
    let (code, stdout, _) = run_with_input(&args, b"EXIT\nPUT c 3\n");
    assert_eq!(code, Some(0));
    assert!(!stdout.contains("OK c"), "{stdout}");
}

/// Runs `kv ARGS` expecting a failed start: non-zero status, one stderr line containing
/// every `mentions`.
fn assert_fails_to_start(args: &[&str], mentions: &[&str]) {
    let (code, _, stderr) = run_with_input(args, b"");
    assert_ne!(code, Some(0), "{args:?} should fail; stderr: {stderr}");
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    for needle in mentions {
        assert!(
            stderr.contains(needle),
            "{stderr} should mention {needle:?}"
        );
    }
}

#[test]
fn start_up_mistakes_print_one_line_and_fail() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken_addr = taken.local_addr().expect("addr").to_string();
    assert_fails_to_start(
        &["primary", "--listen", &taken_addr],
        &["cannot listen on", &taken_addr],
    );
    assert_fails_to_start(
        &["primary", "--listen", "nonsense"],
        &["cannot listen on nonsense"],
    );
    assert_fails_to_start(
        &[
            "primary",
            "--db",
            "/nonexistent-dir/kv/p.db",
            "--listen",
            "127.0.0.1:0",
        ],
        &["/nonexistent-dir/kv/p.db", "cannot open"],
    );
    assert_fails_to_start(
        &["replica", "--join", "nowhere", "--listen", "127.0.0.1:0"],
        &["--join", "nowhere"],
    );
    let (code, _, stderr) = run_with_input(&["frobnicate"], b"");
    assert_ne!(code, Some(0));
    assert!(stderr.contains("unrecognized subcommand"), "{stderr}");
    for option in ["--log-retain", "--max-client-memory"] {
        let (code, _, stderr) = run_with_input(&["primary", option, "0"], b"");
        assert_ne!(code, Some(0));
        assert!(
            stderr.contains(&format!("invalid value '0' for '{option}")),
            "{stderr}"
        );
        assert!(stderr.contains("must be at least 1"), "{stderr}");
        assert!(!stderr.contains("18446744073709551615"), "{stderr}");
    }
    for threads in ["0", "257", "1000000000000"] {
        let (code, _, stderr) = run_with_input(&["primary", "--threads", threads], b"");
        assert_ne!(code, Some(0));
        assert!(stderr.contains("must be 1 to 256"), "{stderr}");
    }
}

fn signal(node: &KvProcess, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &node.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
}

#[test]
fn service_mode_stops_cleanly_on_sigterm_and_sigint() {
    for sig in ["TERM", "INT"] {
        let dir = TempDir::new().expect("tempdir");
        let db = dir.path().join("p.db").display().to_string();
        let mut node = KvProcess::start(&[
            "primary",
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--no-shell",
        ]);
        node.wait_stderr("primary ready");
        signal(&node, sig);
        assert_eq!(
            node.wait_exit(),
            Some(0),
            "SIG{sig} should stop the node cleanly"
        );
        node.wait_stderr("primary stopped");
    }
}

#[test]
fn end_of_input_ends_the_shell_with_status_zero() {
    let mut replica = KvProcess::start(&["replica", "--listen", "127.0.0.1:0"]);
    replica.close_stdin();
    assert_eq!(replica.wait_exit(), Some(0));
}
