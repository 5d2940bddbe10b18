//! The connection and server commands: `SCAN` (cursors kept per connection), `INFO`,
//! `WAIT` (replicas whose acked seq reached this connection's last write) and `CLIENT`.

use super::codec::reply;
use super::commands::{err, text, Reply, Session};
use super::glob;
use super::info;
use crate::store::Role;
use bytes::BytesMut;
use std::time::Duration;

/// Most SCAN cursors one connection keeps open; the oldest is forgotten beyond that.
const MAX_CURSORS: usize = 64;
/// Keys SCAN examines per call when no COUNT is given (as Redis).
const DEFAULT_SCAN_COUNT: usize = 10;
/// Largest COUNT honoured, so one SCAN call stays a bounded amount of work.
const MAX_SCAN_COUNT: usize = 100_000;
/// How often WAIT re-counts acks.
const WAIT_POLL: Duration = Duration::from_millis(1);

/// SCAN's options.
struct ScanArgs {
    cursor: u64,
    pattern: Option<String>,
    count: usize,
}

fn parse_scan(args: &[Vec<u8>]) -> Result<ScanArgs, String> {
    let cursor = text(&args[0])?.parse().map_err(|_| err("invalid cursor"))?;
    let mut scan = ScanArgs {
        cursor,
        pattern: None,
        count: DEFAULT_SCAN_COUNT,
    };
    let mut rest = args[1..].chunks(2);
    for option in rest.by_ref() {
        let [name, value] = option else {
            return Err(err("syntax error"));
        };
        match name.to_ascii_uppercase().as_slice() {
            b"MATCH" => scan.pattern = Some(text(value)?),
            b"COUNT" => {
                scan.count = text(value)?
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| err("value is not an integer or out of range"))?
                    .min(MAX_SCAN_COUNT);
            }
            _ => return Err(err("syntax error")),
        }
    }
    Ok(scan)
}

impl Session {
    /// `SCAN cursor [MATCH pattern] [COUNT n]`: examines up to n keys after the cursor's
    /// position, in key order. A cursor is a number standing for the last key returned,
    /// kept by this connection; `0` starts over and is returned when the scan is done.
    pub(super) async fn scan(&mut self, args: &[Vec<u8>], out: &mut BytesMut) -> Reply {
        let scan = parse_scan(args)?;
        let after = match scan.cursor {
            0 => None,
            id => Some(self.cursors.remove(&id).ok_or_else(|| {
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
            .unwrap_or("")
            .to_string();
        let count = scan.count;
        // Matching is CPU work proportional to the page: done off the runtime too.
        let (last, keys) = self
            .blocking(move |store| {
                let page = store.scan(&prefix, after.as_deref(), count)?;
                let last = (page.len() == count).then(|| page.last().map(|(k, _)| k.clone()));
                let keys: Vec<String> = page
                    .into_iter()
                    .map(|(k, _)| k)
                    .filter(|k| pattern.as_ref().is_none_or(|p| p.matches(k)))
                    .collect();
                Ok((last.flatten(), keys))
            })
            .await?;
        let next = match last {
            Some(last) => self.new_cursor(last),
            None => 0,
        };
        reply::array_header(out, 2);
        reply::bulk(out, Some(next.to_string().as_bytes()));
        reply::array_header(out, keys.len());
        keys.iter()
            .for_each(|k| reply::bulk(out, Some(k.as_bytes())));
        Ok(())
    }

    fn new_cursor(&mut self, last_key: String) -> u64 {
        if self.cursors.len() >= MAX_CURSORS {
            self.cursors.pop_first();
        }
        let id = self.next_cursor;
        self.next_cursor += 1;
        self.cursors.insert(id, last_key);
        id
    }

    /// `INFO [section]`.
    pub(super) async fn info(&self, section: Option<&Vec<u8>>, out: &mut BytesMut) -> Reply {
        let section = section.map(|s| String::from_utf8_lossy(s).into_owned());
        let node = std::sync::Arc::clone(&self.node);
        let facts = std::sync::Arc::clone(&self.facts);
        // INFO counts keys: SQLite work, off the runtime.
        let text =
            tokio::task::spawn_blocking(move || info::render(&node, &facts, section.as_deref()))
                .await
                .map_err(|e| err(e.to_string()))?
                .map_err(|e| err(e.to_string()))?;
        reply::bulk(out, Some(text.as_bytes()));
        Ok(())
    }

    /// `WAIT numreplicas timeout`: how many replicas have acked this connection's last
    /// write, waiting up to `timeout` ms (0: no limit) for `numreplicas` of them.
    pub(super) async fn wait(&self, args: &[Vec<u8>], out: &mut BytesMut) -> Reply {
        if self.node.role() == Role::Replica {
            return Err(err("WAIT cannot be used with replica instances."));
        }
        let number = |arg: &[u8]| {
            text(arg)?
                .parse::<u64>()
                .map_err(|_| err("value is not an integer or out of range"))
        };
        let (wanted, timeout) = (number(&args[0])?, number(&args[1])?);
        let target = self.last_write;
        let acked = || {
            self.node
                .downstreams()
                .iter()
                .filter(|r| r.acked_seq >= target)
                .count() as u64
        };
        let deadline =
            (timeout > 0).then(|| tokio::time::Instant::now() + Duration::from_millis(timeout));
        let mut count = acked();
        while count < wanted && deadline.is_none_or(|d| tokio::time::Instant::now() < d) {
            tokio::time::sleep(WAIT_POLL).await;
            count = acked();
        }
        reply::integer(out, i64::try_from(count).unwrap_or(i64::MAX));
        Ok(())
    }

    /// `CLIENT SETNAME | GETNAME | SETINFO | ID`.
    pub(super) fn client(&mut self, args: &[Vec<u8>], out: &mut BytesMut) -> Reply {
        match (args[0].to_ascii_uppercase().as_slice(), args.len()) {
            (b"SETNAME", 2) => {
                let name = text(&args[1])?;
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
