//! One client connection's state and command dispatch ([`Session`]): writes go to the
//! node's one write path and are pipelined ([`Pipeline`]), so they are durable before
//! their reply, and a `GET` behind them is answered without waiting for their commit; a
//! replica answers writes with Redis's own `READONLY` error; every reply goes out in
//! request order.

use super::admin::{self, ClientInfo, ScanCursors};
use super::args::{arity, err, Reply};
use super::auth::{self, ClientAuth, HelloFacts};
use super::changes::{self, Parsing};
use super::codec::Request;
use super::commands;
use super::expiry;
use super::info::ServerFacts;
use super::output::Output;
use super::pipeline::Pipeline;
use super::reads::ReadBatch;
use super::reply;
use super::strings;
use super::writes;
use crate::node::budget::Charge;
use crate::node::Node;
use std::net::IpAddr;
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
    node: Arc<Node>,
    facts: Arc<ServerFacts>,
    client: ClientInfo,
    cursors: ScanCursors,
    pipeline: Pipeline,
    reads: ReadBatch,
    auth: ClientAuth,
    /// The client's address, whose failed `AUTH`s slow its next ones.
    peer: Option<IpAddr>,
}

impl Session {
    /// A session on `node`; `id` is the connection's `CLIENT ID`.
    pub fn new(node: Arc<Node>, facts: Arc<ServerFacts>, id: u64) -> Self {
        let auth = ClientAuth::new(facts.secret.as_deref());
        Session {
            auth,
            peer: None,
            node,
            facts,
            client: ClientInfo { id, name: None },
            cursors: ScanCursors::default(),
            pipeline: Pipeline::default(),
            reads: ReadBatch::default(),
        }
    }

    /// The session of a client at `peer`.
    pub fn with_peer(mut self, peer: IpAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// Whether the connection may send any command (it authenticated, or needs not).
    pub fn authenticated(&self) -> bool {
        self.auth.authenticated()
    }

    /// The flag that turns true once the connection has authenticated.
    pub fn authenticated_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.auth.flag()
    }

    /// Executes one request, appending its reply to `out` (a write's reply is appended
    /// when it is durable, and a `GET`'s may be held back to be read with the next ones:
    /// by the next request of another kind, or [`Session::settle`]).
    /// `charge` is the request's memory on the node's budget: a write holds it until it is
    /// committed; anything else gives it back before it runs (its arguments are small once
    /// parsed, and a command that waits, such as `WAIT` or a `KEYS` to a slow reader, must
    /// not hold budget or the overdraft meanwhile). An `Err` means the connection failed.
    pub async fn execute(
        &mut self,
        request: Request,
        charge: Charge,
        out: &mut Output,
    ) -> std::io::Result<Flow> {
        let mut request = request.into_iter();
        let Some(name) = request.next() else {
            return Ok(Flow::Continue);
        };
        let name = String::from_utf8_lossy(&name).to_ascii_uppercase();
        let args: Vec<Vec<u8>> = request.collect();
        self.facts.counts.command();
        if !self.auth.authenticated() && !auth::allowed_before_auth(&name) {
            drop(charge);
            reply::error(out.buffer(), auth::NOAUTH);
            return Ok(Flow::Continue);
        }
        // Writes are queued, not awaited: a pipeline of them shares one commit.
        if writes::is_write(&name) || changes::is_change_call(&name, &args) {
            self.reads.flush(&self.node, out).await?;
            match changes::parse_write(&name, args) {
                Parsing::Plain(write) => {
                    self.pipeline
                        .queue(&self.node, write, charge, out.buffer())
                        .await
                }
                Parsing::Change(change) => {
                    self.pipeline
                        .queue_change(&self.node, change, charge, out.buffer())
                        .await
                }
            }
            return Ok(Flow::Continue);
        }
        drop(charge);
        if let (true, [key]) = (name == "GET", args.as_slice()) {
            // Behind no writes: read with the GETs around it, in one transaction.
            if self.pipeline.is_empty() {
                self.reads.push(key);
                if self.reads.is_full() {
                    self.reads.flush(&self.node, out).await?;
                }
                return Ok(Flow::Continue);
            }
            if self.pipeline.get(&self.node, key, out.buffer()).await {
                return Ok(Flow::Continue);
            }
        }
        // Every reply goes out in request order: the queued writes' first.
        self.settle(out).await?;
        if name == "QUIT" {
            reply::simple(out.buffer(), "OK");
            return Ok(Flow::Close);
        }
        if let Err(message) = self.dispatch(&name, &args, out).await? {
            reply::error(out.buffer(), &message);
        }
        Ok(Flow::Continue)
    }

    /// Answers a request the decoder refused for its size (already read and discarded).
    /// An `Err` means the connection failed.
    pub async fn refuse(&mut self, reason: &str, out: &mut Output) -> std::io::Result<()> {
        self.settle(out).await?;
        reply::error(out.buffer(), reason);
        Ok(())
    }

    /// Answers the batched reads, then waits for every queued write to be durable and
    /// appends their replies, in order (reads are batched only behind no writes).
    /// An `Err` means the connection failed.
    pub async fn settle(&mut self, out: &mut Output) -> std::io::Result<()> {
        self.reads.flush(&self.node, out).await?;
        self.pipeline.settle(out.buffer()).await;
        Ok(())
    }

    async fn dispatch(
        &mut self,
        name: &str,
        args: &[Vec<u8>],
        out: &mut Output,
    ) -> std::io::Result<Reply> {
        let node = &self.node;
        let reply = match (name, args.len()) {
            ("PING", 0) => {
                reply::simple(out.buffer(), "PONG");
                Ok(())
            }
            ("PING", 1) | ("ECHO", 1) => {
                reply::bulk(out.buffer(), Some(&args[0]));
                Ok(())
            }
            ("GET", 1) => return commands::get(node, args, false, out).await,
            ("MGET", n) if n > 0 => return commands::get(node, args, true, out).await,
            ("EXISTS" | "TOUCH", n) if n > 0 => commands::exists(node, args, out).await,
            ("STRLEN", 1) => strings::strlen(node, &args[0], out).await,
            ("TYPE", 1) => strings::type_of(node, &args[0], out).await,
            ("GETRANGE" | "SUBSTR", 3) => strings::getrange(node, args, out).await,
            ("TTL" | "PTTL" | "EXPIRETIME" | "PEXPIRETIME", 1) => {
                expiry::ttl(node, name, &args[0], out).await
            }
            // With an option, GETEX is a write (see `changes::is_change_call`).
            ("GETEX", 1) => return commands::get(node, args, false, out).await,
            ("DBSIZE", 0) => commands::dbsize(node, out).await,
            ("RANDOMKEY", 0) => commands::random_key(node, out).await,
            ("KEYS", 1) => return commands::keys(node, &args[0], out).await,
            ("SCAN", n) if n >= 1 => self.cursors.scan(node, args, out).await,
            ("INFO", _) => admin::info(node, &self.facts, args, out).await,
            ("WAIT", 2) => admin::wait(node, self.pipeline.last_write(), args, out).await,
            ("SELECT", 1) => select(&args[0], out),
            ("AUTH", _) => {
                self.throttled(|session| {
                    let secret = session.facts.secret.as_deref();
                    session.auth.auth(secret, args, out.buffer())
                })
                .await
            }
            ("HELLO", _) => self.throttled(|session| session.hello(args, out)).await,
            ("REPLICAOF" | "SLAVEOF", 2) => admin::replicaof(node, args, out).await,
            ("FAILOVER", _) => admin::failover(node, args, out).await,
            ("CLIENT", n) if n >= 1 => self.client.client(args, out),
            ("COMMAND", _) => {
                commands::command(args, out);
                Ok(())
            }
            ("CONFIG", n) if n >= 2 && args[0].eq_ignore_ascii_case(b"GET") => {
                commands::config_get(node, self.facts.port, &args[1..], out)
            }
            ("CONFIG", n) if n >= 1 && args[0].eq_ignore_ascii_case(b"SET") => {
                commands::config_set(node, &args[1..], out)
            }
            (
                "PING" | "ECHO" | "GET" | "MGET" | "EXISTS" | "DBSIZE" | "KEYS" | "SCAN" | "WAIT"
                | "SELECT" | "CLIENT" | "REPLICAOF" | "SLAVEOF" | "TOUCH" | "STRLEN" | "TYPE"
                | "GETRANGE" | "SUBSTR" | "RANDOMKEY" | "TTL" | "PTTL" | "EXPIRETIME"
                | "PEXPIRETIME" | "GETEX",
                _,
            ) => Err(arity(name)),
            _ => Err(commands::unknown(name, args)),
        };
        Ok(reply)
    }
}

impl Session {
    /// Runs an authentication attempt after the wait its peer's failures earned, and
    /// records how it went.
    async fn throttled(&mut self, attempt: impl FnOnce(&mut Self) -> Reply) -> Reply {
        let throttle = (self.facts.secret.is_some(), self.peer);
        if let (true, Some(peer)) = throttle {
            match self.facts.throttle.reserve(peer) {
                Some(wait) if wait.is_zero() => {}
                Some(wait) => tokio::time::sleep(wait).await,
                None => return Err(auth::TOO_MANY.into()),
            }
        }
        let before = self.auth.authenticated();
        let reply = attempt(self);
        if let (true, Some(peer)) = throttle {
            match &reply {
                Err(message) if message.starts_with("WRONGPASS") => {
                    self.facts.throttle.failed(peer)
                }
                // Only this attempt's proof clears the address, not a HELLO afterwards.
                Ok(()) if !before && self.auth.authenticated() => {
                    self.facts.throttle.succeeded(peer)
                }
                _ => {}
            }
        }
        reply
    }

    /// `HELLO`: authenticates if asked, names the connection if asked, and tells kv's
    /// facts (RESP2 only).
    fn hello(&mut self, args: &[Vec<u8>], out: &mut Output) -> Reply {
        let role = match self.node.role() {
            crate::store::Role::Primary => "master",
            crate::store::Role::Replica => "replica",
        };
        let facts = HelloFacts {
            version: super::info::REDIS_COMPATIBLE_VERSION,
            id: self.client.id,
            role,
        };
        let secret = self.facts.secret.as_deref();
        if let Some(name) = self.auth.hello(secret, args, &facts, out.buffer())? {
            self.client.name = Some(name);
        }
        Ok(())
    }
}

/// `SELECT 0`: kv has one database.
fn select(index: &[u8], out: &mut Output) -> Reply {
    match index {
        b"0" => {
            reply::simple(out.buffer(), "OK");
            Ok(())
        }
        _ => Err(err("DB index is out of range (kv has one database, 0)")),
    }
}
