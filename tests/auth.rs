//! Authentication on the client port (`--auth-file`) and protection by default: with a
//! secret, every command but `AUTH`, `HELLO` and `QUIT` gets Redis's `-NOAUTH` until the
//! connection authenticates, a wrong secret gets `-WRONGPASS`, `HELLO 3` gets `-NOPROTO`;
//! `redis-cli -a` and the `redis` crate's `redis://:secret@host/` work; the secret never
//! appears in the node's output; a secret file others may read, or a short secret, is
//! refused at start; and an address other machines can reach is refused without the
//! protection it needs. (No test binds anything but 127.0.0.1: exposed addresses are
//! refused before they are bound.)

mod common;

use common::{refused_at_start, KvProcess};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use tempfile::TempDir;

const SECRET: &str = "kv-test-secret-4f1c9a7e2b";

fn secret_file(dir: &Path, text: &str, mode: u32) -> PathBuf {
    let path = dir.join("secret");
    std::fs::write(&path, text).expect("write the secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}

/// Sends `request` on `socket` and reads one reply (one line, or a bulk's two).
fn ask(socket: &mut TcpStream, request: &str) -> String {
    socket.write_all(request.as_bytes()).expect("send");
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    let mut lines = 0;
    while lines < 1 || (reply.starts_with(b"$") && !reply.starts_with(b"$-") && lines < 2) {
        socket.read_exact(&mut byte).expect("reply");
        reply.push(byte[0]);
        if byte[0] == b'\n' {
            lines += 1;
        }
    }
    String::from_utf8_lossy(&reply).into_owned()
}

fn connect(node: &KvProcess) -> TcpStream {
    let port = node.resp_port.expect("resp port");
    let socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    socket
}

#[test]
fn with_a_secret_every_command_waits_for_auth() {
    let dir = TempDir::new().expect("tempdir");
    let file = secret_file(dir.path(), &format!("{SECRET}\n"), 0o600);
    let file = file.display().to_string();
    let node = KvProcess::primary_with_clients(&dir.path().join("p.db"), &["--auth-file", &file]);
    let mut socket = connect(&node);

    for refused in ["GET k\r\n", "SET k v\r\n", "PING\r\n", "INFO\r\n"] {
        assert_eq!(
            ask(&mut socket, refused),
            "-NOAUTH Authentication required.\r\n"
        );
    }
    let wrongpass = "-WRONGPASS invalid username-password pair or user is disabled.\r\n";
    assert_eq!(ask(&mut socket, "AUTH nope\r\n"), wrongpass);
    assert_eq!(ask(&mut socket, "AUTH default nope\r\n"), wrongpass);
    assert_eq!(
        ask(&mut socket, &format!("AUTH someone {SECRET}\r\n")),
        wrongpass
    );
    assert_eq!(
        ask(&mut socket, "HELLO 3\r\n"),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert!(ask(&mut socket, "HELLO 2\r\n").starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        ask(&mut socket, "SET k v\r\n"),
        "-NOAUTH Authentication required.\r\n"
    );

    assert_eq!(
        ask(&mut socket, "HELLO 4\r\n"),
        "-NOPROTO unsupported protocol version\r\n"
    );
    // A failed AUTH pipelined with reads: each read is refused.
    socket
        .write_all(b"AUTH nope\r\nGET k\r\nKEYS *\r\nSCAN 0\r\n")
        .expect("send");
    assert_eq!(ask(&mut socket, ""), wrongpass);
    for _ in 0..3 {
        assert_eq!(ask(&mut socket, ""), "-NOAUTH Authentication required.\r\n");
    }

    assert_eq!(ask(&mut socket, &format!("AUTH {SECRET}\r\n")), "+OK\r\n");
    assert_eq!(ask(&mut socket, "SET k v\r\n"), "+OK\r\n");
    assert_eq!(ask(&mut socket, "GET k\r\n"), "$1\r\nv\r\n");
    // A failed attempt later leaves the connection authenticated, as in Redis.
    assert_eq!(ask(&mut socket, "AUTH nope\r\n"), wrongpass);
    assert_eq!(ask(&mut socket, "GET k\r\n"), "$1\r\nv\r\n");

    // HELLO 2 AUTH on a new connection authenticates and tells the facts.
    let mut hello = connect(&node);
    let reply = ask(&mut hello, &format!("HELLO 2 AUTH default {SECRET}\r\n"));
    assert_eq!(reply, "*14\r\n");
    let mut rest = vec![0u8; 256];
    let n = hello.read(&mut rest).expect("the rest of HELLO");
    assert!(String::from_utf8_lossy(&rest[..n]).contains("proto"));

    // The redis crate, with the secret in its URL, and without.
    let port = node.resp_port.expect("resp port");
    let url = format!("redis://:{SECRET}@127.0.0.1:{port}/");
    let mut con = redis::Client::open(url)
        .and_then(|c| c.get_connection())
        .expect("connect with the secret");
    let value: String = redis::cmd("GET").arg("k").query(&mut con).expect("GET");
    assert_eq!(value, "v");
    let mut anonymous = redis::Client::open(node.redis_url())
        .and_then(|c| c.get_connection())
        .expect("connect");
    let refused = redis::cmd("GET").arg("k").query::<String>(&mut anonymous);
    let refused = refused.expect_err("no secret, no data");
    assert!(
        refused.to_string().contains("Authentication required"),
        "{refused}"
    );

    // redis-cli -a (CI installs redis-tools).
    let out = Command::new("redis-cli")
        .args(["-p", &port.to_string(), "-a", SECRET, "--no-auth-warning"])
        .args(["GET", "k"])
        .output()
        .expect("redis-cli (apt-get install redis-tools)");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "v");

    assert!(
        !node.stderr_text().contains(SECRET),
        "the secret was logged"
    );
}

#[test]
fn without_a_secret_auth_says_there_is_none() {
    let dir = TempDir::new().expect("tempdir");
    let node = KvProcess::primary_with_clients(&dir.path().join("p.db"), &[]);
    let mut socket = connect(&node);
    assert_eq!(ask(&mut socket, "SET k v\r\n"), "+OK\r\n");
    let reply = ask(&mut socket, "AUTH whatever\r\n");
    assert!(
        reply.starts_with("-ERR AUTH <password> called without any password configured"),
        "{reply}"
    );
    assert!(ask(&mut socket, "HELLO\r\n").starts_with("*14"));
    // A HELLO reply is an array: read it whole before the next request.
    let mut rest = vec![0u8; 512];
    let _ = socket.read(&mut rest).expect("the rest of HELLO");
    let spaced = "*4\r\n$5\r\nHELLO\r\n$1\r\n2\r\n$7\r\nSETNAME\r\n$3\r\na b\r\n";
    let reply = ask(&mut socket, spaced);
    assert!(
        reply.starts_with("-ERR Client names cannot contain spaces"),
        "{reply}"
    );
}

/// `kv ARGS` fails at start with one line naming each of `mentions`.
fn refused(args: &[&str], mentions: &[&str]) {
    let (stdout, stderr) = refused_at_start(args, mentions);
    assert!(
        !stderr.contains(SECRET) && !stdout.contains(SECRET),
        "the secret leaked"
    );
}

#[test]
fn unsafe_secret_files_and_exposed_ports_are_refused_at_start() {
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("p.db").display().to_string();
    let base = ["primary", "--db", &db, "--listen", "127.0.0.1:0"];
    fn with<'a>(base: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
        [base, extra].concat()
    }

    let open = secret_file(dir.path(), &format!("{SECRET}\n"), 0o644);
    let open = open.display().to_string();
    refused(
        &with(&base, &["--auth-file", &open]),
        &["--auth-file", "chmod 600"],
    );
    let short = secret_file(dir.path(), "short\n", 0o600)
        .display()
        .to_string();
    refused(
        &with(&base, &["--auth-file", &short]),
        &["shorter than 16", "openssl rand"],
    );
    let missing = dir.path().join("missing").display().to_string();
    refused(
        &with(&base, &["--auth-file", &missing]),
        &["--auth-file", "cannot read it"],
    );

    // Other machines could reach these: refused before anything is bound.
    refused(
        &with(&base, &["--resp", "0.0.0.0:0"]),
        &["refusing --resp 0.0.0.0:0", "--auth-file"],
    );
    let exposed = ["primary", "--db", &db, "--listen", "0.0.0.0:0"];
    refused(&exposed, &["refusing --listen 0.0.0.0:0", "--insecure"]);
    assert!(
        !Path::new(&db).exists(),
        "a refused start created the database"
    );
}

#[test]
fn strangers_are_slowed_cut_off_after_a_deadline_and_a_byte_budget() {
    let dir = TempDir::new().expect("tempdir");
    let file = secret_file(dir.path(), &format!("{SECRET}\n"), 0o600);
    let file = file.display().to_string();
    let node = KvProcess::primary_with_clients(&dir.path().join("p.db"), &["--auth-file", &file]);

    // Each failure spaces out this address's next attempts: 100 ms, then 200, 400...
    let mut guesser = connect(&node);
    let started = std::time::Instant::now();
    for _ in 0..4 {
        assert!(ask(&mut guesser, "AUTH guess\r\n").starts_with("-WRONGPASS"));
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "4 guesses took only {took:?}"
    );
    // The right secret still works (after its turn), and clears the address's record.
    assert_eq!(ask(&mut guesser, &format!("AUTH {SECRET}\r\n")), "+OK\r\n");
    let mut next = connect(&node);
    let started = std::time::Instant::now();
    assert_eq!(ask(&mut next, &format!("AUTH {SECRET}\r\n")), "+OK\r\n");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a proven address waits no more"
    );

    // Much data before AUTH: a few NOAUTH replies, then the connection is closed.
    let mut flood = connect(&node);
    let junk = "PING\r\n".repeat(20_000);
    let _ = flood.write_all(junk.as_bytes());
    let mut replies = Vec::new();
    let _ = flood.read_to_end(&mut replies);
    let replies = String::from_utf8_lossy(&replies);
    assert!(
        replies.starts_with("-NOAUTH"),
        "{}",
        &replies[..replies.len().min(200)]
    );
    assert!(
        replies.contains("-ERR too much data before AUTH"),
        "the flood was not cut off"
    );

    // Silence without AUTH: closed after the deadline (10 s), saying why.
    let mut silent = connect(&node);
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut reply = String::new();
    let _ = silent.read_to_string(&mut reply);
    assert!(reply.contains("-ERR authentication timed out"), "{reply:?}");
}
