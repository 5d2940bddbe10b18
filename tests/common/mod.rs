//! Test support shared by the integration tests: a guard around a real `kv` process
//! (spawned from `CARGO_BIN_EXE_kv`, killed on drop), line-oriented access to its shell,
//! polling with a deadline, and direct SQLite reads of a node's database file.

#![allow(dead_code)]

pub mod certs;
pub mod etcd;
pub mod frames;
pub mod proxy;
pub mod soak;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single expected event may take before a test fails.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// A running `kv` process. Dropping it kills the process (SIGKILL) and reaps it.
pub struct KvProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// The replication port from the ready banner.
    pub port: u16,
    /// The client (Redis protocol) port, when started with `--resp`.
    pub resp_port: Option<u16>,
}

/// Path of the binary under test.
pub fn kv_bin() -> &'static str {
    env!("CARGO_BIN_EXE_kv")
}

impl KvProcess {
    /// Starts `kv ARGS...` with piped stdio and waits for its ready banner. With a shell
    /// the whole command list is consumed, so the next line read is a command's output.
    pub fn start(args: &[&str]) -> KvProcess {
        let mut child = Command::new(kv_bin())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kv");
        let stdout = forward_lines(child.stdout.take().expect("stdout"));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_pipe = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines().map_while(Result::ok) {
                sink.lock().expect("stderr lock").push(line);
            }
        });
        let mut process = KvProcess {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            port: 0,
            resp_port: None,
        };
        // Service mode prints the banner on stdout; a shell reading a pipe prints it on
        // stderr, keeping stdout for the results of its commands.
        let service = args.contains(&"--no-shell");
        let banner = match service {
            true => process.next_line(),
            false => process.stderr_line(|l| l.contains(" ready (port ")),
        };
        process.port = parse_port(&banner).unwrap_or_else(|| {
            panic!(
                "no port in banner {banner:?}; stderr: {:?}",
                process.stderr_text()
            )
        });
        if args.contains(&"--resp") {
            let prefix = "Clients (Redis protocol) on port ";
            let line = match service {
                true => process.next_line(),
                false => process.stderr_line(|l| l.starts_with(prefix)),
            };
            process.resp_port = line.strip_prefix(prefix).and_then(|p| p.parse().ok());
            assert!(process.resp_port.is_some(), "no client port in {line:?}");
        }
        if !service {
            process.stderr_line(|l| l == "- HELP");
        }
        process
    }

    /// The first stderr line matching `wanted`, waiting up to [`PATIENCE`] for it.
    pub fn stderr_line(&self, wanted: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        wait_until(PATIENCE, || {
            found = self
                .stderr
                .lock()
                .expect("stderr lock")
                .iter()
                .find(|l| wanted(l))
                .cloned();
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("never on stderr: {}", self.stderr_text()))
    }

    /// `kv primary --db DB --listen 127.0.0.1:0 --resp 127.0.0.1:0 EXTRA...`: a primary
    /// with a client port.
    pub fn primary_with_clients(db: &Path, extra: &[&str]) -> KvProcess {
        let db = db.display().to_string();
        let mut args = vec![
            "primary",
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--resp",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        KvProcess::start(&args)
    }

    /// `kv replica --db DB --listen 127.0.0.1:0 --join UPSTREAM EXTRA...`.
    pub fn replica(db: &Path, upstream: &str, extra: &[&str]) -> KvProcess {
        let db = db.display().to_string();
        let mut args = vec![
            "replica",
            "--db",
            &db,
            "--listen",
            "127.0.0.1:0",
            "--join",
            upstream,
        ];
        args.extend_from_slice(extra);
        KvProcess::start(&args)
    }

    /// [`KvProcess::replica`], once its first snapshot is applied.
    pub fn synced_replica(db: &Path, upstream: &str, extra: &[&str]) -> KvProcess {
        let mut replica = KvProcess::replica(db, upstream, extra);
        replica.expect_line("Snapshot received");
        replica
    }

    /// The `127.0.0.1:PORT` address of the replication port.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The `redis://127.0.0.1:PORT` URL of the client port.
    pub fn redis_url(&self) -> String {
        format!(
            "redis://127.0.0.1:{}/",
            self.resp_port.expect("started with --resp")
        )
    }

    /// Writes one line to the shell.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write to kv stdin");
        stdin.flush().expect("flush kv stdin");
    }

    /// Writes raw bytes (plus a newline) to the shell.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to kv stdin");
        stdin.write_all(b"\n").expect("write newline");
        stdin.flush().expect("flush kv stdin");
    }

    /// Closes the shell's stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The next stdout line, failing the test after [`PATIENCE`].
    pub fn next_line(&mut self) -> String {
        self.next_line_within(PATIENCE).unwrap_or_else(|| {
            panic!(
                "no output from kv within {PATIENCE:?}; stderr: {:?}",
                self.stderr_text()
            )
        })
    }

    /// The next stdout line, or `None` after `limit` or at end of output.
    pub fn next_line_within(&mut self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// Sends `line` and returns the one line it prints.
    pub fn command(&mut self, line: &str) -> String {
        self.send(line);
        self.next_line()
    }

    /// Sends `line` and returns every line it prints (multi-line commands such as STATUS),
    /// delimited by a sentinel GET.
    pub fn command_lines(&mut self, line: &str) -> Vec<String> {
        self.send(line);
        self.send("GET ~end~");
        let mut lines = Vec::new();
        loop {
            let next = self.next_line();
            if next == "~end~ -> Not found" {
                return lines;
            }
            lines.push(next);
        }
    }

    /// Reads stdout lines until one equals `expected`, failing after [`PATIENCE`].
    pub fn expect_line(&mut self, expected: &str) {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.next_line_within(left) {
                Some(line) if line == expected => return,
                Some(line) => seen.push(line),
                None => break,
            }
        }
        panic!(
            "expected {expected:?}; saw {seen:?}; stderr: {:?}",
            self.stderr_text()
        );
    }

    /// Every stdout line until the process closes stdout (it exited or was killed),
    /// bounded by [`PATIENCE`].
    pub fn remaining_lines(&mut self) -> Vec<String> {
        let deadline = Instant::now() + PATIENCE;
        let mut lines = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.stdout.recv_timeout(left) {
                Ok(line) => lines.push(line),
                Err(_) => break,
            }
        }
        lines
    }

    /// Writes all of `lines` to the shell at once, without waiting for replies.
    pub fn send_all(&mut self, lines: &[String]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        stdin.write_all(text.as_bytes()).expect("write to kv stdin");
        stdin.flush().expect("flush kv stdin");
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().expect("stderr lock").join("\n")
    }

    /// Waits until stderr contains `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        let found = wait_until(PATIENCE, || self.stderr_text().contains(needle));
        assert!(
            found,
            "stderr never contained {needle:?}: {}",
            self.stderr_text()
        );
    }

    /// Waits for the process to exit and returns its status code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("kv did not exit within {PATIENCE:?}");
    }

    /// The process id, for sending signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL the process and reap it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for KvProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

fn forward_lines(pipe: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn parse_port(banner: &str) -> Option<u16> {
    let start = banner.find("(port ")? + "(port ".len();
    let end = start + banner[start..].find(')')?;
    banner[start..end].parse().ok()
}

/// Polls `condition` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `kv ARGS...`, which must fail at start with one line on stderr naming each of
/// `mentions`; returns (stdout, stderr) for further checks.
pub fn refused_at_start(args: &[&str], mentions: &[&str]) -> (String, String) {
    let (code, stdout, stderr) = run_with_input(args, b"");
    assert_ne!(code, Some(0), "{args:?} started: {stdout}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    for needle in mentions {
        assert!(
            stderr.contains(needle),
            "{stderr} should mention {needle:?}"
        );
    }
    (stdout, stderr)
}

/// Runs `kv ARGS...` to completion with `input` on stdin; returns (status, stdout, stderr).
pub fn run_with_input(args: &[&str], input: &[u8]) -> (Option<i32>, String, String) {
    let mut child = Command::new(kv_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kv");
    let mut stdin = child.stdin.take().expect("stdin");
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let guard = ChildGuard(Some(child));
    let output = guard.wait_output();
    let _ = writer.join();
    output
}

/// Kills a child on drop unless it was waited for.
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_output(mut self) -> (Option<i32>, String, String) {
        let child = self.0.take().expect("child");
        let pid = child.id();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(PATIENCE) {
            Ok(Ok(out)) => (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            ),
            _ => {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
                panic!("kv did not finish within {PATIENCE:?}");
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// All `kv` rows of a database file, in key order.
pub fn kv_rows(path: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(path).expect("open db");
    let mut stmt = conn
        .prepare("SELECT key, value FROM kv ORDER BY key")
        .expect("prepare");
    let rows = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// All log seqs of a database file, in order.
pub fn log_seqs(path: &Path) -> Vec<u64> {
    let conn = rusqlite::Connection::open(path).expect("open db");
    let mut stmt = conn
        .prepare("SELECT seq FROM log ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |row| row.get::<_, i64>(0))
        .expect("query");
    rows.map(|r| r.expect("row") as u64).collect()
}

/// All `log` rows of a database file as (seq, op, key, value), in seq order.
pub fn log_rows(path: &Path) -> Vec<(i64, String, String, Option<String>)> {
    let conn = rusqlite::Connection::open(path).expect("open db");
    let mut stmt = conn
        .prepare("SELECT seq, op, key, value FROM log ORDER BY seq")
        .expect("prepare");
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .expect("query");
    rows.map(|r| r.expect("row")).collect()
}

/// A `meta` value of a database file.
pub fn meta(path: &Path, name: &str) -> Option<String> {
    let conn = rusqlite::Connection::open(path).expect("open db");
    conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |row| {
        row.get(0)
    })
    .ok()
}

/// Creates a primary database holding `keys` keys (`key00001`... with 100-byte values)
/// written as seqs 1..=keys, in one transaction through the documented schema (a shell
/// would fsync each one).
pub fn seed_primary(path: &Path, keys: u64) {
    seed_primary_sized(path, keys, 100);
}

/// [`seed_primary`] with values of `value_len` bytes.
pub fn seed_primary_sized(path: &Path, keys: u64, value_len: usize) {
    drop(kv::store::SqliteStore::open(path, kv::store::Role::Primary).expect("create primary db"));
    let mut conn = rusqlite::Connection::open(path).expect("open");
    let tx = conn.transaction().expect("tx");
    for seq in 1..=keys {
        let key = format!("key{seq:05}");
        let value = format!("{seq:0>value_len$}");
        tx.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)",
            [&key, &value],
        )
        .expect("kv row");
        tx.execute(
            "INSERT INTO log (seq, op, key, value) VALUES (?1, 'put', ?2, ?3)",
            rusqlite::params![seq as i64, key, value],
        )
        .expect("log row");
    }
    tx.commit().expect("commit");
}
