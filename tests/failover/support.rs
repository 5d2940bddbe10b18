//! Helpers for the failover tests: a temporary directory of database files with starters
//! for primaries and replicas (each with a client port), the Redis-protocol commands the
//! tests send (`INFO replication` parsed into fields, `REPLICAOF`, pipelined `SET`s),
//! read-only SQLite reads of a node's file (`meta`, the `diverged` table, key counts), and
//! polling helpers for seqs, STATUS lines and equal digests that fail with the nodes'
//! stderr.

use crate::common::{wait_until, KvProcess, PATIENCE};
use rusqlite::{Connection, OpenFlags};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

/// `master_replid2` of a node whose history has no fork.
pub const NO_HISTORY: &str = "00000000000000000000000000000000";

/// A temporary directory holding the database files of one test's nodes.
pub struct Cluster {
    dir: TempDir,
}

impl Cluster {
    pub fn new() -> Self {
        Cluster {
            dir: TempDir::new().expect("tempdir"),
        }
    }

    /// The path of database file `name` in this cluster's directory.
    pub fn db(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `kv primary --db NAME --listen LISTEN --resp 127.0.0.1:0`.
    pub fn primary(&self, name: &str, listen: &str) -> KvProcess {
        let db = self.db(name).display().to_string();
        KvProcess::start(&[
            "primary",
            "--db",
            &db,
            "--listen",
            listen,
            "--resp",
            "127.0.0.1:0",
        ])
    }

    /// `kv replica --db NAME --listen 127.0.0.1:0 --resp 127.0.0.1:0 --join UPSTREAM`; its
    /// first stdout line (the first sync's report) must be `first_sync`.
    pub fn replica(&self, name: &str, upstream: &str, first_sync: &str) -> KvProcess {
        let mut replica = KvProcess::replica(&self.db(name), upstream, &["--resp", "127.0.0.1:0"]);
        let line = replica.next_line();
        assert_eq!(
            line,
            first_sync,
            "first sync of {name} from {upstream}; stderr:\n{}",
            replica.stderr_text()
        );
        replica
    }
}

// ---- the client port ------------------------------------------------------------------

/// A Redis connection to `node`'s client port.
pub fn redis(node: &KvProcess) -> redis::Connection {
    redis::Client::open(node.redis_url())
        .expect("redis client")
        .get_connection()
        .expect("connect to the client port")
}

/// `INFO replication` as `field -> value`.
pub fn info(node: &KvProcess) -> BTreeMap<String, String> {
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut redis(node))
        .unwrap_or_else(|e| panic!("INFO failed: {e}; stderr:\n{}", node.stderr_text()));
    text.lines()
        .filter_map(|l| l.trim_end().split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One field of `INFO replication`; fails showing the whole section if it is missing.
pub fn info_field(node: &KvProcess, field: &str) -> String {
    let info = info(node);
    info.get(field)
        .cloned()
        .unwrap_or_else(|| panic!("INFO replication has no {field:?}: {info:?}"))
}

/// `REPLICAOF NO ONE`; returns the reply (`OK` expected).
pub fn replicaof_no_one(node: &KvProcess) -> String {
    redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut redis(node))
        .unwrap_or_else(|e| {
            panic!(
                "REPLICAOF NO ONE failed: {e}; stderr:\n{}",
                node.stderr_text()
            )
        })
}

/// `REPLICAOF 127.0.0.1 <upstream's replication port>`; returns the reply.
pub fn replicaof(node: &KvProcess, upstream: &KvProcess) -> String {
    redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(upstream.port)
        .query(&mut redis(node))
        .unwrap_or_else(|e| panic!("REPLICAOF failed: {e}; stderr:\n{}", node.stderr_text()))
}

/// `SET {prefix}{i:03} v{i}` for each `i` in `range`, pipelined ten at a time (each reply
/// means the write is durable).
pub fn set_many(con: &mut redis::Connection, prefix: &str, range: std::ops::Range<usize>) {
    let all: Vec<usize> = range.collect();
    for batch in all.chunks(10) {
        let mut pipe = redis::pipe();
        for i in batch {
            pipe.cmd("SET")
                .arg(format!("{prefix}{i:03}"))
                .arg(format!("v{i}"));
        }
        let _: () = pipe.query(con).expect("pipelined SETs");
    }
}

// ---- the shell ------------------------------------------------------------------------

/// `PUT {prefix}{i:03} {value_prefix}{i}` for each `i` in `range`, through the shell; every
/// write must be acknowledged with `OK`.
pub fn put_many(
    node: &mut KvProcess,
    prefix: &str,
    value_prefix: &str,
    range: std::ops::Range<usize>,
) {
    let lines: Vec<String> = range
        .map(|i| format!("PUT {prefix}{i:03} {value_prefix}{i}"))
        .collect();
    node.send_all(&lines);
    for line in &lines {
        let reply = node.next_line();
        let (key, value) = line["PUT ".len()..].split_once(' ').expect("key value");
        assert_eq!(
            reply,
            format!("OK {key} = {value}"),
            "{line}; stderr:\n{}",
            node.stderr_text()
        );
    }
}

/// The value of STATUS line `name: value`, if there is one.
pub fn status_field(node: &mut KvProcess, name: &str) -> Option<String> {
    let prefix = format!("{name}: ");
    node.command_lines("STATUS")
        .iter()
        .find_map(|l| l.strip_prefix(&prefix).map(String::from))
}

/// The node's seq: `head_seq` on a primary, `applied_seq` on a replica.
pub fn seq(node: &mut KvProcess) -> Option<u64> {
    let status = node.command_lines("STATUS");
    status.iter().find_map(|l| {
        l.strip_prefix("head_seq: ")
            .or_else(|| l.strip_prefix("applied_seq: "))
            .and_then(|s| s.parse().ok())
    })
}

/// Waits until `node` is at `wanted` (STATUS `head_seq`/`applied_seq`).
pub fn wait_seq(node: &mut KvProcess, wanted: u64) {
    let mut last = None;
    let reached = wait_until(PATIENCE, || {
        last = seq(node);
        last == Some(wanted)
    });
    assert!(
        reached,
        "never reached seq {wanted} (last {last:?}): {:?}; stderr:\n{}",
        node.command_lines("STATUS"),
        node.stderr_text()
    );
}

/// Waits until every node's `DIGEST` is the same and taken at `seq`.
pub fn assert_converged(nodes: &mut [&mut KvProcess], seq: u64) {
    let mut digests = Vec::new();
    let same = wait_until(PATIENCE, || {
        digests = nodes.iter_mut().map(|n| n.command("DIGEST")).collect();
        digests.iter().all(|d| d == &digests[0]) && digests[0].ends_with(&format!("(seq {seq})"))
    });
    if !same {
        let stderr: Vec<String> = nodes.iter().map(|n| n.stderr_text()).collect();
        panic!("digests never equal at seq {seq}: {digests:?}\nstderr of each node:\n{stderr:#?}");
    }
}

/// How many times `needle` occurs in the node's stderr so far.
pub fn stderr_count(node: &KvProcess, needle: &str) -> usize {
    node.stderr_text().matches(needle).count()
}

/// Waits for the stderr line containing `needle` and checks it contains every one of
/// `also`; returns it.
pub fn stderr_line_with(node: &KvProcess, needle: &str, also: &[&str]) -> String {
    let line = node.stderr_line(|l| l.contains(needle));
    for part in also {
        assert!(
            line.contains(part),
            "{needle:?} line lacks {part:?}: {line:?}; stderr:\n{}",
            node.stderr_text()
        );
    }
    line
}

// ---- the database files, read-only ----------------------------------------------------

/// A read-only connection to a node's database file (the node may be running).
pub fn open_ro(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()))
}

/// A `meta` value of the file.
pub fn meta_ro(path: &Path, name: &str) -> Option<String> {
    open_ro(path)
        .query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .ok()
}

/// `meta.history_id` of the file, which must have one.
pub fn history(path: &Path) -> String {
    let id = meta_ro(path, "history_id")
        .unwrap_or_else(|| panic!("{} has no history_id", path.display()));
    assert!(
        id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "history id {id:?} is not 32 hex digits"
    );
    id
}

/// The fork bookkeeping of a file: `role`, `history_id`, `prev_history_id`, `fork_seq`.
#[derive(Debug, PartialEq, Eq)]
pub struct ForkMeta {
    pub role: Option<String>,
    pub history_id: Option<String>,
    pub prev_history_id: Option<String>,
    pub fork_seq: Option<String>,
}

/// Reads [`ForkMeta`] in one read transaction.
pub fn fork_meta(path: &Path) -> ForkMeta {
    let conn = open_ro(path);
    let get = |name: &str| -> Option<String> {
        conn.query_row("SELECT value FROM meta WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .ok()
    };
    ForkMeta {
        role: get("role"),
        history_id: get("history_id"),
        prev_history_id: get("prev_history_id"),
        fork_seq: get("fork_seq"),
    }
}

/// Checks the file records a promotion: role primary, a new history, forked from `old`
/// after `fork_seq`. Returns the new history id.
pub fn assert_promoted(path: &Path, old: &str, fork_seq: u64) -> String {
    let meta = fork_meta(path);
    let new = history(path);
    assert_ne!(new, old, "promotion kept the old history: {meta:?}");
    assert_eq!(meta.role.as_deref(), Some("primary"), "{meta:?}");
    assert_eq!(meta.prev_history_id.as_deref(), Some(old), "{meta:?}");
    assert_eq!(meta.fork_seq, Some(fork_seq.to_string()), "{meta:?}");
    new
}

/// One row of the `diverged` table.
#[derive(Debug, PartialEq, Eq)]
pub struct Diverged {
    pub history_id: String,
    pub seq: i64,
    pub op: String,
    pub key: String,
    pub value: Option<String>,
    pub saved_at: Option<String>,
}

/// Every row of the file's `diverged` table, in seq order.
pub fn diverged_rows(path: &Path) -> Vec<Diverged> {
    let conn = open_ro(path);
    let mut stmt = conn
        .prepare("SELECT history_id, seq, op, key, value, saved_at FROM diverged ORDER BY seq, key")
        .unwrap_or_else(|e| panic!("no diverged table in {}: {e}", path.display()));
    let rows = stmt
        .query_map([], |r| {
            Ok(Diverged {
                history_id: r.get(0)?,
                seq: r.get(1)?,
                op: r.get(2)?,
                key: r.get(3)?,
                value: r.get(4)?,
                saved_at: r.get(5)?,
            })
        })
        .expect("query diverged");
    rows.map(|r| r.expect("diverged row")).collect()
}

/// Checks that `path`'s `diverged` table holds exactly the puts `{key_prefix}{i:03} =
/// {value_prefix}{i}` at seq `first_seq + (i - first)` for `i` in `range`, all of history
/// `history_id`.
pub fn assert_diverged(
    path: &Path,
    history_id: &str,
    first_seq: i64,
    (key_prefix, value_prefix): (&str, &str),
    range: std::ops::Range<usize>,
) {
    let rows = diverged_rows(path);
    let start = range.start;
    let expected: Vec<(i64, String, Option<String>)> = range
        .map(|i| {
            (
                first_seq + (i - start) as i64,
                format!("{key_prefix}{i:03}"),
                Some(format!("{value_prefix}{i}")),
            )
        })
        .collect();
    let got: Vec<(i64, String, Option<String>)> = rows
        .iter()
        .map(|r| (r.seq, r.key.clone(), r.value.clone()))
        .collect();
    assert_eq!(got, expected, "diverged rows of {}", path.display());
    for row in &rows {
        assert_eq!(row.history_id, history_id, "{row:?}");
        assert_eq!(row.op, "put", "{row:?}");
        assert!(
            row.saved_at.as_deref().is_some_and(|s| !s.is_empty()),
            "{row:?}"
        );
    }
}

/// How many keys of the file start with `prefix`.
pub fn count_keys(path: &Path, prefix: &str) -> i64 {
    open_ro(path)
        .query_row(
            "SELECT count(*) FROM kv WHERE substr(key, 1, length(?1)) = ?1",
            [prefix],
            |r| r.get(0),
        )
        .expect("count keys")
}

/// The file's log seqs, in order.
pub fn log_seqs_ro(path: &Path) -> Vec<i64> {
    let conn = open_ro(path);
    let mut stmt = conn
        .prepare("SELECT seq FROM log ORDER BY seq")
        .expect("prepare");
    let rows = stmt.query_map([], |r| r.get(0)).expect("query log");
    rows.map(|r| r.expect("seq")).collect()
}

/// Sends raw `request` bytes to the node's client port and returns the first reply line
/// (with its `\r\n`), for replies whose exact text matters (`-READONLY ...`).
pub fn raw_reply(node: &KvProcess, request: &[u8]) -> String {
    use std::io::{BufRead, BufReader, Write};
    let port = node.resp_port.expect("started with --resp");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    stream.write_all(request).expect("send request");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .expect("read reply");
    line
}

/// `PROMOTE` in `node`'s shell, which must answer that it started a new history.
pub fn promote_in_shell(node: &mut KvProcess) {
    let promoted = node.command("PROMOTE");
    assert!(
        promoted.starts_with("Promoted: new history"),
        "{promoted}; stderr:\n{}",
        node.stderr_text()
    );
}

/// `INFO replication` of a promoted `node`: role master, history `new` forked from `old`,
/// the new history's first offset `second_offset`.
pub fn assert_info_forked(node: &KvProcess, new: &str, old: &str, second_offset: &str) {
    let fields = info(node);
    let field = |name: &str| fields.get(name).map(String::as_str);
    assert_eq!(field("role"), Some("master"), "{fields:?}");
    assert_eq!(field("master_replid"), Some(new), "{fields:?}");
    assert_eq!(field("master_replid2"), Some(old), "{fields:?}");
    assert_eq!(
        field("second_repl_offset"),
        Some(second_offset),
        "{fields:?}"
    );
}
