//! Memory is bounded in bytes, whatever clients send: clients that pipeline many large
//! SETs without reading a reply make the node stop reading once its client-memory budget
//! is spent (TCP holds the rest), rather than buffer everything; no write is dropped or
//! failed, and every acknowledged one is stored. `bench/flood.sh` measures the full-size
//! flood against Redis; this is its small, checked version.

mod common;

use common::{KvProcess, PATIENCE};
use kv::store::MAX_VALUE_BYTES;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use tempfile::TempDir;

/// Enough clients that their requests in flight (each connection waits for its writes
/// to commit before it reads on, so about one request each) far exceed the budget.
const CLIENTS: usize = 24;
const SETS: usize = 2;
/// The node's budget, in MiB: a twenty-fourth of the 384 MiB the clients send.
const BUDGET_MIB: &str = "16";

/// The value of `key`: a byte pattern derived from it, so each stored value can be checked.
fn value_of(key: &str) -> Vec<u8> {
    let seed = key
        .bytes()
        .fold(7u8, |h, b| h.wrapping_mul(31).wrapping_add(b));
    (0..MAX_VALUE_BYTES)
        .map(|i| b'a' + (seed.wrapping_add((i % 251) as u8)) % 26)
        .collect()
}

/// Sends every SET of `client` before reading any reply; returns the replies.
fn flood(port: u16, client: usize) -> Vec<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(PATIENCE * 3))
        .expect("timeout");
    let mut writer = stream.try_clone().expect("clone");
    let sender = std::thread::spawn(move || {
        for i in 0..SETS {
            let key = format!("flood:{client}:{i}");
            let value = value_of(&key);
            let head = format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
                key.len(),
                value.len()
            );
            writer.write_all(head.as_bytes()).expect("send");
            writer.write_all(&value).expect("send");
            writer.write_all(b"\r\n").expect("send");
        }
    });
    let mut replies = BufReader::new(stream);
    let mut lines = Vec::new();
    for _ in 0..SETS {
        let mut line = String::new();
        replies.read_line(&mut line).expect("a reply");
        lines.push(line.trim_end().to_string());
    }
    sender.join().expect("sender");
    lines
}

/// A primary in service mode with a client port and `budget_mib` of client memory.
fn primary_with_budget(db: &[&str], budget_mib: &str) -> KvProcess {
    let mut args = vec![
        "primary",
        "--listen",
        "127.0.0.1:0",
        "--resp",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(db);
    args.extend_from_slice(&["--no-shell", "--max-client-memory", budget_mib]);
    KvProcess::start(&args)
}

/// The process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("kB");
    kib / 1024
}

fn stored(db: &Path, key: &str) -> Option<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |row| {
        row.get::<_, String>(0)
    })
    .ok()
    .map(String::into_bytes)
}

#[test]
fn a_flood_of_large_pipelined_sets_is_held_back_not_buffered_and_all_stored() {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("p.db");
    let db = path.display().to_string();
    let node = primary_with_budget(&["--db", &db], BUDGET_MIB);
    let port = node.resp_port.expect("client port");
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| std::thread::spawn(move || flood(port, client)))
        .collect();
    for client in clients {
        let replies = client.join().expect("client");
        assert!(replies.iter().all(|r| r == "+OK"), "{replies:?}");
    }
    let peak = peak_rss_mib(node.pid());
    eprintln!("peak RSS {peak} MiB");
    let offered = CLIENTS * SETS * MAX_VALUE_BYTES / (1024 * 1024);
    // The budget plus one request in overdraft plus the writer's transaction, not the
    // whole flood.
    assert!(
        peak < 128,
        "peak RSS {peak} MiB for a {offered} MiB flood with a {BUDGET_MIB} MiB budget"
    );
    for client in 0..CLIENTS {
        for i in 0..SETS {
            let key = format!("flood:{client}:{i}");
            assert!(
                stored(&path, &key) == Some(value_of(&key)),
                "{key} acknowledged but not stored intact"
            );
        }
    }
}

#[test]
fn bytes_that_are_no_request_hold_no_budget() {
    let node = primary_with_budget(&[], "1");
    let port = node.resp_port.expect("client port");
    // 4 MiB of blank lines (which Redis skips, as kv does) on a connection kept open:
    // four times the budget, none of it a request.
    let blank = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut sender = blank.try_clone().expect("clone");
    let flood = std::thread::spawn(move || {
        let lines = b"\r\n".repeat(64 * 1024);
        (0..32).all(|_| sender.write_all(&lines).is_ok())
    });
    assert!(
        flood.join().expect("flood"),
        "kv stopped reading blank lines"
    );
    // Another client is still served.
    let mut other = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    other.set_read_timeout(Some(PATIENCE)).expect("timeout");
    other
        .write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
        .expect("send");
    let mut reply = String::new();
    BufReader::new(other)
        .read_line(&mut reply)
        .expect("a reply to SET");
    assert_eq!(reply, "+OK\r\n");
    drop(blank);
}
