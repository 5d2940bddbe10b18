//! A real `etcd` for the cluster tests: a guard that starts one single-member etcd on free
//! loopback ports with its data in a temp dir (its output in `etcd.log` there), waits until
//! its v3 JSON gateway answers, and kills it on drop; plus the few gateway requests the
//! tests make, written by hand over a `TcpStream` (HTTP/1.1, `Connection: close`).

use super::PATIENCE;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How many times a start is tried when etcd exits at once (a port taken meanwhile).
const START_ATTEMPTS: usize = 3;

/// A running etcd. Dropping it kills the process (SIGKILL) and reaps it.
pub struct Etcd {
    child: Child,
    client_port: u16,
    dir: TempDir,
}

impl Etcd {
    /// Starts etcd and waits until it serves requests; panics (with the tail of its log)
    /// when it cannot, and with an install hint when `etcd` is not on the `PATH`.
    pub fn start() -> Etcd {
        let binary = etcd_binary();
        let mut failures = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let dir = TempDir::new().expect("tempdir for etcd");
            let (client_port, peer_port) = (free_port(), free_port());
            let mut child = spawn(&binary, dir.path(), client_port, peer_port);
            match wait_serving(&mut child, client_port) {
                Ok(()) => {
                    return Etcd {
                        child,
                        client_port,
                        dir,
                    }
                }
                Err(why) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    failures.push(format!(
                        "{why}; log tail:\n{}",
                        log_tail(&dir.path().join("etcd.log"))
                    ));
                }
            }
        }
        panic!(
            "etcd did not start in {START_ATTEMPTS} attempts:\n{}",
            failures.join("\n---\n")
        );
    }

    /// `http://127.0.0.1:PORT`, the client URL to give `kv --etcd`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// `127.0.0.1:PORT`, the client address (for a proxy in front of etcd).
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last lines of etcd's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.path().join("etcd.log"))
    }

    /// The value of `key`, or `None` when it does not exist or etcd does not answer.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        let body = format!(r#"{{"key":"{}"}}"#, base64(key.as_bytes()));
        let (status, reply) = post(&self.addr(), "/v3/kv/range", &body).ok()?;
        if status != 200 {
            return None;
        }
        let start = reply.find(r#""value":""#)? + r#""value":""#.len();
        let end = start + reply[start..].find('"')?;
        unbase64(&reply[start..end])
    }

    /// Sets `key` to `value`; panics unless etcd answers 200.
    pub fn put(&self, key: &str, value: &[u8]) {
        let body = format!(
            r#"{{"key":"{}","value":"{}"}}"#,
            base64(key.as_bytes()),
            base64(value)
        );
        match post(&self.addr(), "/v3/kv/put", &body) {
            Ok((200, _)) => {}
            other => panic!("etcd put {key}: {other:?}; log tail:\n{}", self.log_tail()),
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `etcd` from the `PATH`, or a panic saying how to install it.
fn etcd_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("etcd"))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "etcd not found: install it with `apt-get install etcd-server` (bash .ci/run does)"
            )
        })
}

/// A port that was free a moment ago (bound to 127.0.0.1:0, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind a free port")
        .port()
}

fn spawn(binary: &Path, dir: &Path, client_port: u16, peer_port: u16) -> Child {
    let log = File::create(dir.join("etcd.log")).expect("create etcd.log");
    let client = format!("http://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    Command::new(binary)
        .args(["--name", "default", "--data-dir"])
        .arg(dir.join("data"))
        .args(["--listen-client-urls", &client])
        .args(["--advertise-client-urls", &client])
        .args(["--listen-peer-urls", &peer])
        .args(["--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("clone log handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()))
}

/// Polls a range request until it answers 200, etcd exits, or [`PATIENCE`] passes.
fn wait_serving(child: &mut Child, client_port: u16) -> Result<(), String> {
    let addr = format!("127.0.0.1:{client_port}");
    let deadline = Instant::now() + PATIENCE;
    let mut last = String::from("no attempt");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait etcd") {
            return Err(format!("etcd exited ({status}); last request: {last}"));
        }
        match post(&addr, "/v3/kv/range", r#"{"key":"AA=="}"#) {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => last = format!("HTTP {status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "etcd not serving on {addr} after {PATIENCE:?}; last request: {last}"
    ))
}

/// POSTs a JSON `body` to `path` on `addr`; returns the status code and the body.
pub fn post(addr: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let socket = addr.parse().map_err(std::io::Error::other)?;
    let mut stream = TcpStream::connect_timeout(&socket, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let reply = String::from_utf8_lossy(&reply);
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {reply:?}")))?;
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// The last 30 lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as etcd's gateway wants keys and values.
fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            match i <= chunk.len() {
                true => out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char),
                false => out.push('='),
            }
        }
    }
    out
}

/// The inverse of [`base64`]; `None` on a character outside the alphabet.
fn unbase64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut bits, mut n) = (0u32, 0u32);
    for c in text.bytes().take_while(|&c| c != b'=') {
        let value = BASE64.iter().position(|&b| b == c)? as u32;
        bits = bits << 6 | value;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n & 0xff) as u8);
        }
    }
    Some(out)
}
