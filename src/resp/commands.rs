//! The Redis commands kv answers, on one client connection ([`Session`]). Reads go to the
//! store off the async runtime; writes go through the node's one write path, so they are
//! durable before the reply; a replica answers writes with Redis's own `READONLY` error.

use super::codec::{reply, Request};
use super::glob;
use super::info::ServerFacts;
use super::writes::{self, WriteReply};
use crate::error::Error;
use crate::node::{Node, PendingWrite};
use bytes::BytesMut;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// What the connection does after a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Flow {
    /// Read the next request.
    Continue,
    /// Send what is queued, then close (`QUIT`).
    Close,
}

/// One client connection's state.
pub struct Session {
    pub(super) node: Arc<Node>,
    pub(super) facts: Arc<ServerFacts>,
    pub(super) name: Option<String>,
    /// The seq of this connection's last write, for `WAIT`.
    pub(super) last_write: u64,
    /// SCAN cursors: id → the last key returned. Cursors are this connection's own.
    pub(super) cursors: BTreeMap<u64, String>,
    pub(super) next_cursor: u64,
    /// This connection's id (`CLIENT ID`).
    pub(super) id: u64,
    /// Writes queued but not yet answered, in request order.
    pub(super) pending: VecDeque<(PendingWrite, WriteReply)>,
}

/// A command's failure, sent as the error reply (code and message).
pub(super) type Reply = Result<(), String>;

pub(super) fn err(text: impl Into<String>) -> String {
    format!("ERR {}", text.into())
}

fn arity(name: &str) -> String {
    err(format!(
        "wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// A key or value as text (they are SQLite TEXT), or the error reply.
pub(super) fn text(arg: &[u8]) -> Result<String, String> {
    String::from_utf8(arg.to_vec())
        .map_err(|_| err("keys and values must be valid UTF-8 (kv stores them as SQLite TEXT)"))
}

pub(super) fn texts(args: &[Vec<u8>]) -> Result<Vec<String>, String> {
    args.iter().map(|a| text(a)).collect()
}

pub(super) fn store_error(e: Error) -> String {
    match e {
        Error::ReadOnly(_) => "READONLY You can't write against a read only replica.".into(),
        other => err(other.to_string()),
    }
}

impl Session {
    /// A session on `node`.
    pub fn new(node: Arc<Node>, facts: Arc<ServerFacts>, id: u64) -> Self {
        Session {
            id,
            node,
            facts,
            name: None,
            last_write: 0,
            cursors: BTreeMap::new(),
            next_cursor: 1,
            pending: VecDeque::new(),
        }
    }

    /// Executes one request, appending its reply to `out` (a write's reply is appended
    /// when it is durable: by the next request that is not a write, or [`Session::settle`]).
    pub async fn execute(&mut self, request: Request, out: &mut BytesMut) -> Flow {
        let Some((name, args)) = request.split_first() else {
            return Flow::Continue;
        };
        let name = String::from_utf8_lossy(name).to_ascii_uppercase();
        // Writes are queued, not awaited: a pipeline of them shares one commit.
        if let Some(write) = writes::parse(&name, args) {
            self.queue_write(write, out).await;
            return Flow::Continue;
        }
        // Every reply goes out in request order: the queued writes' first.
        self.settle(out).await;
        if name == "QUIT" {
            reply::simple(out, "OK");
            return Flow::Close;
        }
        if let Err(message) = self.dispatch(&name, args, out).await {
            reply::error(out, &message);
        }
        Flow::Continue
    }

    async fn dispatch(&mut self, name: &str, args: &[Vec<u8>], out: &mut BytesMut) -> Reply {
        match (name, args.len()) {
            ("PING", 0) => {
                reply::simple(out, "PONG");
                Ok(())
            }
            ("PING", 1) | ("ECHO", 1) => {
                reply::bulk(out, Some(&args[0]));
                Ok(())
            }
            ("GET", 1) => self.get(args, false, out).await,
            ("MGET", n) if n > 0 => self.get(args, true, out).await,
            ("EXISTS", n) if n > 0 => self.exists(args, out).await,
            ("DBSIZE", 0) => self.dbsize(out).await,
            ("KEYS", 1) => self.keys(&args[0], out).await,
            ("SCAN", n) if n >= 1 => self.scan(args, out).await,
            ("INFO", 0 | 1) => self.info(args.first(), out).await,
            ("WAIT", 2) => self.wait(args, out).await,
            ("SELECT", 1) => match args[0].as_slice() {
                b"0" => {
                    reply::simple(out, "OK");
                    Ok(())
                }
                _ => Err(err("DB index is out of range (kv has one database, 0)")),
            },
            ("CLIENT", n) if n >= 1 => self.client(args, out),
            ("COMMAND", _) => {
                command(args, out);
                Ok(())
            }
            ("CONFIG", 2) if args[0].eq_ignore_ascii_case(b"GET") => {
                config_get(&args[1], out);
                Ok(())
            }
            (
                "PING" | "ECHO" | "GET" | "MGET" | "SET" | "MSET" | "DEL" | "EXISTS" | "DBSIZE"
                | "KEYS" | "SCAN" | "INFO" | "WAIT" | "SELECT" | "CLIENT",
                _,
            ) => Err(arity(name)),
            _ => Err(unknown(name, args)),
        }
    }

    pub(super) async fn blocking<T, F>(&self, f: F) -> Result<T, String>
    where
        T: Send + 'static,
        F: FnOnce(&dyn crate::store::KvStore) -> crate::Result<T> + Send + 'static,
    {
        self.node.blocking(f).await.map_err(store_error)
    }

    /// GET (one key: a bulk reply) or MGET (an array of them).
    async fn get(&self, args: &[Vec<u8>], multi: bool, out: &mut BytesMut) -> Reply {
        let keys = texts(args)?;
        let values = self
            .blocking(move |store| {
                keys.iter()
                    .map(|key| store.get(key))
                    .collect::<crate::Result<Vec<_>>>()
            })
            .await?;
        if multi {
            reply::array_header(out, values.len());
        }
        for value in &values {
            reply::bulk(out, value.as_deref().map(str::as_bytes));
        }
        Ok(())
    }

    async fn exists(&self, args: &[Vec<u8>], out: &mut BytesMut) -> Reply {
        let keys = texts(args)?;
        let found = self
            .blocking(move |store| {
                let mut found = 0;
                for key in &keys {
                    found += i64::from(store.get(key)?.is_some());
                }
                Ok(found)
            })
            .await?;
        reply::integer(out, found);
        Ok(())
    }

    async fn dbsize(&self, out: &mut BytesMut) -> Reply {
        let count = self.blocking(|store| store.count("")).await?;
        reply::integer(out, i64::try_from(count).unwrap_or(i64::MAX));
        Ok(())
    }

    async fn keys(&self, pattern: &[u8], out: &mut BytesMut) -> Reply {
        let pattern = text(pattern)?;
        let matcher = glob::Pattern::new(&pattern)?;
        let keys = self
            .blocking(move |store| {
                let prefix = glob::literal_prefix(&pattern);
                let mut keys = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = store.scan(prefix, after.as_deref(), 1000)?;
                    let Some((last, _)) = page.last() else {
                        return Ok(keys);
                    };
                    after = Some(last.clone());
                    keys.extend(
                        page.into_iter()
                            .map(|(k, _)| k)
                            .filter(|k| matcher.matches(k)),
                    );
                }
            })
            .await?;
        reply::array_header(out, keys.len());
        keys.iter()
            .for_each(|k| reply::bulk(out, Some(k.as_bytes())));
        Ok(())
    }
}

fn unknown(name: &str, args: &[Vec<u8>]) -> String {
    let shown: Vec<String> = args
        .iter()
        .take(8)
        .map(|a| format!("'{}'", String::from_utf8_lossy(a)))
        .collect();
    err(format!(
        "unknown command '{}', with args beginning with: {}",
        name.to_ascii_lowercase(),
        shown.join(" ")
    ))
}

/// `CONFIG GET name`: what tools such as redis-benchmark ask about persistence. kv has no
/// RDB snapshots or append-only file (every write is committed to SQLite), so `save` is
/// empty and `appendonly` is `no`; other names match nothing, as an unknown glob would.
fn config_get(name: &[u8], out: &mut BytesMut) {
    let value: &[u8] = match name.to_ascii_lowercase().as_slice() {
        b"save" => b"",
        b"appendonly" => b"no",
        _ => return reply::array_header(out, 0),
    };
    reply::array_header(out, 2);
    reply::bulk(out, Some(name));
    reply::bulk(out, Some(value));
}

/// `COMMAND`, `COMMAND DOCS`, `COMMAND COUNT`: enough for redis-cli, which asks at start.
fn command(args: &[Vec<u8>], out: &mut BytesMut) {
    match args.first().map(|a| a.to_ascii_uppercase()) {
        Some(sub) if sub == b"COUNT" => reply::integer(out, 0),
        _ => reply::array_header(out, 0),
    }
}
