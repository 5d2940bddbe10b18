//! The connection and server commands: `SCAN` (cursors kept per connection), `INFO`,
//! `WAIT` (replicas whose acked seq reached this connection's last write, woken by their
//! acks) and `CLIENT`.

use super::args::{err, number, text_of, Reply};
use super::commands::blocking;
use super::glob;
use super::info::{self, ServerFacts};
use super::output::Output;
use super::reply;
use crate::node::failover::DEFAULT_FAILOVER_TIMEOUT;
use crate::node::Node;
use crate::replication::LinkMode;
use crate::store::Role;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Most SCAN cursors one connection keeps open; the oldest is forgotten beyond that.
const MAX_CURSORS: usize = 64;
/// Keys SCAN examines per call when no COUNT is given (as Redis).
const DEFAULT_SCAN_COUNT: usize = 10;
/// Largest COUNT honoured, so one SCAN call stays a bounded amount of work.
const MAX_SCAN_COUNT: usize = 100_000;
/// Keys read from the store at a time while scanning...
const SCAN_PAGE: usize = 1000;
/// ...and a SCAN reply stops once it holds this many bytes of keys (the cursor then
/// resumes after the last key examined), however large COUNT is.
const SCAN_REPLY_BYTES: usize = 1024 * 1024;

/// SCAN's options.
struct ScanArgs {
    cursor: u64,
    pattern: Option<Vec<u8>>,
    count: usize,
    /// `TYPE string`, or no `TYPE`: every value is a string. Any other type: no key.
    strings: bool,
}

fn parse_scan(args: &[Vec<u8>]) -> Result<ScanArgs, String> {
    let cursor = number(&args[0]).ok_or_else(|| err("invalid cursor"))?;
    let mut scan = ScanArgs {
        cursor,
        pattern: None,
        count: DEFAULT_SCAN_COUNT,
        strings: true,
    };
    let mut rest = args[1..].chunks(2);
    for option in rest.by_ref() {
        let [name, value] = option else {
            return Err(err("syntax error"));
        };
        match name.to_ascii_uppercase().as_slice() {
            b"MATCH" => scan.pattern = Some(value.clone()),
            b"TYPE" => scan.strings = value.eq_ignore_ascii_case(b"string"),
            b"COUNT" => {
                scan.count = number::<usize>(value)
                    .filter(|&n| n > 0)
                    .ok_or_else(|| err("value is not an integer or out of range"))?
                    .min(MAX_SCAN_COUNT);
            }
            _ => return Err(err("syntax error")),
        }
    }
    Ok(scan)
}

/// A connection's SCAN cursors: id → the last key returned. Cursors are the connection's
/// own; `0` starts a scan.
#[derive(Default)]
pub struct ScanCursors {
    last_keys: BTreeMap<u64, Vec<u8>>,
    next_id: u64,
}

impl ScanCursors {
    /// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`: examines up to n keys after the cursor's
    /// position, in key order, and replies with the next cursor (`0` when the scan is done)
    /// and the matching keys.
    pub async fn scan(&mut self, node: &Node, args: &[Vec<u8>], out: &mut Output) -> Reply {
        let scan = parse_scan(args)?;
        let after = match scan.cursor {
            0 => None,
            id => Some(self.last_keys.remove(&id).ok_or_else(|| {
                err("invalid cursor (kv's SCAN cursors belong to the connection that made them)")
            })?),
        };
        let pattern = scan
            .pattern
            .as_deref()
            .map(glob::Pattern::new)
            .transpose()?;
        let prefix = scan
            .pattern
            .as_deref()
            .map(glob::literal_prefix)
            .unwrap_or(b"")
            .to_vec();
        let count = scan.count;
        let strings = scan.strings;
        // Matching is CPU work proportional to the page: done off the runtime too.
        let (last, keys) = blocking(node, move |store| {
            let mut after = after;
            let (mut examined, mut bytes, mut keys) = (0, 0, Vec::new());
            while examined < count && bytes < SCAN_REPLY_BYTES {
                let wanted = SCAN_PAGE.min(count - examined);
                let page = store.scan_keys(&prefix, after.as_deref(), wanted)?;
                let done = page.len() < wanted;
                examined += page.len();
                after = page.last().cloned().or(after);
                for key in page {
                    if strings && pattern.as_ref().is_none_or(|p| p.matches(&key)) {
                        bytes += key.len();
                        keys.push(key);
                    }
                }
                if done {
                    return Ok((None, keys));
                }
            }
            Ok((after, keys))
        })
        .await?;
        let next = match last {
            Some(last) => self.remember(last),
            None => 0,
        };
        let out = out.buffer();
        reply::array_header(out, 2);
        reply::bulk(out, Some(next.to_string().as_bytes()));
        reply::array_header(out, keys.len());
        keys.iter().for_each(|k| reply::bulk(out, Some(k)));
        Ok(())
    }

    fn remember(&mut self, last_key: Vec<u8>) -> u64 {
        if self.last_keys.len() >= MAX_CURSORS {
            self.last_keys.pop_first();
        }
        self.next_id += 1;
        self.last_keys.insert(self.next_id, last_key);
        self.next_id
    }
}

/// `INFO [section ...]`.
pub async fn info(
    node: &Arc<Node>,
    facts: &Arc<ServerFacts>,
    sections: &[Vec<u8>],
    out: &mut Output,
) -> Reply {
    let sections: Vec<String> = sections
        .iter()
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    let (node, facts) = (Arc::clone(node), Arc::clone(facts));
    // INFO counts keys: SQLite work, off the runtime.
    let text = tokio::task::spawn_blocking(move || info::render(&node, &facts, &sections))
        .await
        .map_err(|e| err(e.to_string()))?
        .map_err(|e| err(e.to_string()))?;
    reply::bulk(out.buffer(), Some(text.as_bytes()));
    Ok(())
}

/// `WAIT numreplicas timeout`: how many replicas have acknowledged `last_write` (this
/// connection's last write), waiting up to `timeout` ms (0: no limit) for `numreplicas`
/// of them. Woken by acks, not by polling.
pub async fn wait(node: &Node, last_write: u64, args: &[Vec<u8>], out: &mut Output) -> Reply {
    if node.role() == Role::Replica {
        return Err(err("WAIT cannot be used with replica instances."));
    }
    let number = |arg: &[u8]| {
        number::<u64>(arg).ok_or_else(|| err("value is not an integer or out of range"))
    };
    let (wanted, timeout) = (number(&args[0])?, number(&args[1])?);
    let wanted = usize::try_from(wanted).unwrap_or(usize::MAX);
    let deadline =
        (timeout > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout));
    let count = node
        .replication()
        .downstreams()
        .wait_for_acks(
            (last_write, node.replication().downstreams().epoch()),
            wanted,
            deadline,
        )
        .await;
    reply::integer(out.buffer(), i64::try_from(count).unwrap_or(i64::MAX));
    Ok(())
}

/// `REPLICAOF NO ONE` (or `SLAVEOF`) promotes this node; `REPLICAOF host port` makes it
/// follow the upstream whose *replication* address that is (kv's replication and client
/// ports differ), demoting a primary. As in Redis, the reply comes at once and the sync
/// runs in the background (`INFO replication` shows it).
pub async fn replicaof(node: &Arc<Node>, args: &[Vec<u8>], out: &mut Output) -> Reply {
    let (host, port) = (text_of(&args[0])?, text_of(&args[1])?);
    node.check_manual_role_change()
        .map_err(|e| err(e.to_string()))?;
    let node = Arc::clone(node);
    if host.eq_ignore_ascii_case("no") && port.eq_ignore_ascii_case("one") {
        tokio::task::spawn_blocking(move || node.promote())
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(format!("promotion failed: {e}")))?;
    } else {
        let port: u16 = port
            .parse()
            .ok()
            .filter(|&port| port > 0)
            .ok_or_else(|| err("Invalid master port"))?;
        let upstream = match host.contains(':') {
            true => format!("[{host}]:{port}"),
            false => format!("{host}:{port}"),
        };
        tokio::task::spawn_blocking(move || node.follow(upstream, LinkMode::Start))
            .await
            .map_err(|e| err(e.to_string()))?
            .map_err(|e| err(e.to_string()))?;
    }
    reply::simple(out.buffer(), "OK");
    Ok(())
}

/// `FAILOVER [TO host port] [TIMEOUT ms]` (Redis 6.2's syntax; host and port are the
/// target's replication address): hands the primary role to that replica, or the most
/// caught-up one, without losing a write; `+OK` once this node follows it. Unlike Redis,
/// it answers when the handoff is done, and waits at most 10 s without `TIMEOUT`.
pub async fn failover(node: &Arc<Node>, args: &[Vec<u8>], out: &mut Output) -> Reply {
    let mut target = None;
    let mut timeout = DEFAULT_FAILOVER_TIMEOUT;
    let mut rest = args.iter();
    while let Some(word) = rest.next() {
        match word.to_ascii_uppercase().as_slice() {
            b"TO" => {
                let (Some(host), Some(port)) = (rest.next(), rest.next()) else {
                    return Err(err("syntax error"));
                };
                target = Some(format!("{}:{}", text_of(host)?, text_of(port)?));
            }
            b"TIMEOUT" => {
                let ms = rest.next().ok_or_else(|| err("syntax error"))?;
                let ms: u64 = text_of(ms)?
                    .parse()
                    .ok()
                    .filter(|&ms| ms > 0)
                    .ok_or_else(|| err("FAILOVER timeout must be greater than 0"))?;
                timeout = Duration::from_millis(ms);
            }
            b"ABORT" | b"FORCE" => {
                return Err(err(
                    "FAILOVER ABORT and FORCE are not supported: FAILOVER waits at most its TIMEOUT, then resumes writes",
                ))
            }
            _ => return Err(err("syntax error")),
        }
    }
    node.failover(target.as_deref(), timeout)
        .await
        .map_err(|e| err(e.to_string()))?;
    reply::simple(out.buffer(), "OK");
    Ok(())
}

/// A connection's identity, for `CLIENT`.
pub struct ClientInfo {
    /// `CLIENT ID`.
    pub id: u64,
    /// `CLIENT SETNAME`'s name.
    pub name: Option<String>,
}

impl ClientInfo {
    /// `CLIENT SETNAME | GETNAME | SETINFO | ID`.
    pub fn client(&mut self, args: &[Vec<u8>], out: &mut Output) -> Reply {
        let out = out.buffer();
        match (args[0].to_ascii_uppercase().as_slice(), args.len()) {
            (b"SETNAME", 2) => {
                let name = text_of(&args[1])?;
                if name.contains(' ') {
                    return Err(err(
                        "Client names cannot contain spaces, newlines or special characters.",
                    ));
                }
                self.name = Some(name);
                reply::simple(out, "OK");
            }
            (b"GETNAME", 1) => reply::bulk(out, self.name.as_deref().map(str::as_bytes)),
            (b"SETINFO", 3) => reply::simple(out, "OK"),
            (b"ID", 1) => reply::integer(out, i64::try_from(self.id).unwrap_or(i64::MAX)),
            _ => {
                return Err(err(format!(
                    "unknown subcommand or wrong number of arguments for 'CLIENT {}'",
                    String::from_utf8_lossy(&args[0])
                )))
            }
        }
        Ok(())
    }
}
