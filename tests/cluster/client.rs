//! The client port as the cluster tests use it: connections with timeouts, `SET`
//! classified as [`Reply`] (acknowledged, `-READONLY`, another error, no answer), `GET`,
//! an `MGET` check of expected pairs, and `INFO replication` parsed into [`Info`].

use crate::support::Node;
use std::collections::BTreeMap;
use std::time::Duration;

/// A connection to the client port `port`, with timeouts (`read` for each reply); `None`
/// when nothing listens there.
pub fn connect(port: u16, read: Duration) -> Option<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    con.set_read_timeout(Some(read)).ok()?;
    con.set_write_timeout(Some(read)).ok()?;
    Some(con)
}

/// What a `SET` got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`: the write is acknowledged.
    Ok,
    /// `-READONLY ...`: refused by a replica or a fenced primary.
    ReadOnly(String),
    /// Another error reply.
    Error(String),
    /// No reply: the connection failed or timed out (the node may be dead).
    Down(String),
}

/// `SET key value` on `con`.
pub fn set(con: &mut redis::Connection, key: &str, value: &str) -> Reply {
    match redis::cmd("SET").arg(key).arg(value).query::<()>(con) {
        Ok(()) => Reply::Ok,
        Err(e) if e.code() == Some("READONLY") => Reply::ReadOnly(e.to_string()),
        Err(e) if e.code().is_some() => Reply::Error(e.to_string()),
        Err(e) => Reply::Down(e.to_string()),
    }
}

/// `GET key` on `con`; panics on an error reply.
pub fn get(con: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(con)
        .unwrap_or_else(|e| panic!("GET {key}: {e}"))
}

/// The pairs of `expected` that `con`'s node does not hold with that value, as (key,
/// expected value, value held), read with `MGET` 500 keys at a time.
pub fn missing(
    con: &mut redis::Connection,
    expected: &[(String, String)],
) -> Vec<(String, String, Option<String>)> {
    let mut missing = Vec::new();
    for chunk in expected.chunks(500) {
        let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
        let held: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(con)
            .unwrap_or_else(|e| panic!("MGET: {e}"));
        for ((key, value), held) in chunk.iter().zip(held) {
            if held.as_deref() != Some(value.as_str()) {
                missing.push((key.clone(), value.clone(), held));
            }
        }
    }
    missing
}

/// Asserts that every node of `nodes` holds every pair of `expected` (`what` says which
/// writes they are, for the message).
pub fn assert_held_everywhere(nodes: &[Node], expected: &[(String, String)], what: &str) {
    for node in nodes {
        let lost = missing(&mut node.connect(), expected);
        assert!(
            lost.is_empty(),
            "{} lacks {} of the {} {what}, e.g. {:?}",
            node.name,
            lost.len(),
            expected.len(),
            &lost[..lost.len().min(5)]
        );
    }
}

/// `INFO replication` of one node.
#[derive(Debug, Clone, Default)]
pub struct Info(pub BTreeMap<String, String>);

impl Info {
    /// `INFO replication` of the node on client port `port`; `None` when it does not answer.
    pub fn of(port: u16) -> Option<Info> {
        let mut con = connect(port, Duration::from_secs(2))?;
        let text: String = redis::cmd("INFO").arg("replication").query(&mut con).ok()?;
        let fields = text
            .lines()
            .filter_map(|l| l.trim_end().split_once(':'))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Some(Info(fields))
    }

    /// A field, if present.
    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    /// A field that must be present.
    pub fn field(&self, field: &str) -> &str {
        self.get(field)
            .unwrap_or_else(|| panic!("INFO replication has no {field:?}: {self:?}"))
    }

    /// `role:master`.
    pub fn is_master(&self) -> bool {
        self.get("role") == Some("master")
    }

    /// `role:master` with time left on its lease (`kv_lease_remaining_ms` above 0): the
    /// primary, accepting writes. (`role:master` alone shows a moment earlier, between the
    /// promotion and taking office.)
    pub fn accepts_writes(&self) -> bool {
        self.is_master()
            && self
                .get("kv_lease_remaining_ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .is_some_and(|ms| ms > 0)
    }

    /// `role:slave` with `master_port` the replication port `port` and the link up.
    pub fn follows(&self, port: u16) -> bool {
        self.get("role") == Some("slave")
            && self.get("master_port") == Some(port.to_string().as_str())
            && self.get("master_link_status") == Some("up")
    }

    /// `kv_cluster_epoch`.
    pub fn epoch(&self) -> u64 {
        let epoch = self.field("kv_cluster_epoch");
        epoch
            .parse()
            .unwrap_or_else(|_| panic!("kv_cluster_epoch {epoch:?} is not a number"))
    }
}
