//! The interactive shell of a node, as in the book: `PUT`/`GET` on the primary,
//! `GET`/`JOIN` on a replica, plus `DEL`, `KEYS`, `STATUS` and `HELP`. The logic is
//! [`Shell::execute`] (one line in, the text to print out), separate from the line
//! reading in [`input`] (rustyline on a terminal, plain lines from a pipe).

pub mod command;
pub mod input;
pub mod progress;

use crate::error::Error;
use crate::net::validate_addr;
use crate::node::compute::{self, Change};
use crate::node::failover::DEFAULT_FAILOVER_TIMEOUT;
use crate::node::{Node, Promotion};
use crate::replication::LinkMode;
use crate::store::expiry::is_live;
use crate::store::{now_ms, Op, Role};
use command::{check_line, parse, Command};
use std::fmt::Write as _;
use std::sync::Arc;
use tokio::runtime::Handle;

/// Most keys `KEYS` prints before summarising the rest.
pub const KEYS_LIMIT: usize = 1000;

/// What the input loop should do after a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Print this (one or more lines, without a trailing newline).
    Print(String),
    /// Print nothing (a blank line).
    Nothing,
    /// End the shell (and the process), successfully.
    Exit,
    /// Ask `question`; on yes, run `line`. A shell reading a pipe runs it without asking.
    Confirm {
        /// The question, ending with `[y/N] `.
        question: String,
        /// The line to run once confirmed.
        line: String,
    },
}

/// The seed's commands first, then kv's additions.
fn command_list(role: Role) -> &'static [(&'static str, &'static str)] {
    match role {
        Role::Primary => &[
            (
                "PUT <key> <value>",
                "store the value (the rest of the line) under key",
            ),
            ("GET <key>", "print the value of key"),
            ("EXIT", "stop this node"),
            ("DEL <key>", "delete key"),
            ("KEYS [prefix]", "list keys in order (at most 1000)"),
            (
                "INCR <key> [by]",
                "add 1 (or by) to key's whole number, 0 if absent",
            ),
            (
                "EXPIRE <key> <seconds>",
                "delete key after that many seconds",
            ),
            ("TTL <key>", "print how long key has left"),
            (
                "STATUS",
                "role, database, history, head seq, keys, replicas",
            ),
            (
                "DIGEST",
                "hash of all keys and values, with the seq it was taken at",
            ),
            (
                "JOIN <host:port>",
                "follow that upstream: this node becomes its replica",
            ),
            (
                "FAILOVER [host:port]",
                "hand over to that replica (or the most caught up), losing nothing",
            ),
            (
                "FLUSH",
                "delete every key, after asking (FLUSH YES: without)",
            ),
            ("HELP", "this list"),
        ],
        Role::Replica => &[
            ("GET <key>", "print the value of key"),
            (
                "JOIN <host:port>",
                "replicate from that primary (snapshot, then live)",
            ),
            ("EXIT", "stop this node"),
            ("KEYS [prefix]", "list keys in order (at most 1000)"),
            ("STATUS", "role, database, applied seq, keys, primary, link"),
            ("TTL <key>", "print how long key has left"),
            ("PROMOTE", "stop following and take writes (a new history)"),
            (
                "DIGEST",
                "hash of all keys and values, with the seq it was taken at",
            ),
            ("HELP", "this list"),
        ],
    }
}

/// A key or value as the shell prints it: UTF-8 text as it is; other bytes with each byte
/// that is not part of UTF-8 text written `\xNN`, and a backslash as `\\` (so binary
/// data reads back unambiguously; text is printed untouched, so a text value that
/// spells `\xff` looks like the byte 0xff: `redis-cli` or `hex()` in `sqlite3` tell
/// them apart).
pub fn shown(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut text = String::new();
    for chunk in bytes.utf8_chunks() {
        text.push_str(&chunk.valid().replace('\\', "\\\\"));
        for byte in chunk.invalid() {
            let _ = write!(text, "\\x{byte:02x}");
        }
    }
    std::borrow::Cow::Owned(text)
}

/// The book's ready line, `Primary server ready (port 8080)` or `Replica ready (port 8081)`.
fn ready_line(role: Role, port: u16) -> String {
    match role {
        Role::Primary => format!("Primary server ready (port {port})"),
        Role::Replica => format!("Replica ready (port {port})"),
    }
}

/// The command list printed under the ready line when a shell runs.
fn command_help(role: Role) -> String {
    let mut text = String::from("Commands:");
    for (usage, _) in command_list(role) {
        let _ = write!(text, "\n- {usage}");
    }
    text
}

/// The ready banner: the book's ready line, the client port's line (with `--resp`), and
/// the command list when a shell runs.
pub fn banner(role: Role, port: u16, client_port: Option<u16>, with_commands: bool) -> String {
    let mut banner = ready_line(role, port);
    if let Some(port) = client_port {
        let _ = write!(banner, "\nClients (Redis protocol) on port {port}");
    }
    if with_commands {
        banner.push('\n');
        banner.push_str(&command_help(role));
    }
    banner
}

/// A node's shell: executes command lines against the node.
pub struct Shell {
    node: Arc<Node>,
    runtime: Handle,
    show_progress: bool,
}

impl Shell {
    /// A shell for `node`; `runtime` runs async work for a shell living on its own thread.
    pub fn new(node: Arc<Node>, runtime: Handle) -> Self {
        Shell {
            node,
            runtime,
            show_progress: false,
        }
    }

    /// Show a progress bar while a long `JOIN` runs (for an interactive terminal).
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    /// The prompt, `primary> ` or `replica> `.
    pub fn prompt(&self) -> &'static str {
        match self.node.role() {
            Role::Primary => "primary> ",
            Role::Replica => "replica> ",
        }
    }

    /// Executes one raw input line (without its newline). Never panics; bad input yields
    /// one line starting `ERR `.
    pub fn execute_raw(&self, raw: &[u8]) -> Outcome {
        let command = match check_line(raw).and_then(parse) {
            Ok(Some(command)) => command,
            Ok(None) => return Outcome::Nothing,
            Err(message) => return Outcome::Print(format!("ERR {message}")),
        };
        if command == Command::Exit {
            return Outcome::Exit;
        }
        if command == (Command::Flush { confirmed: false }) {
            return match self.flush_question() {
                Ok(question) => Outcome::Confirm {
                    question,
                    line: "FLUSH YES".into(),
                },
                Err(message) => Outcome::Print(format!("ERR {message}")),
            };
        }
        Outcome::Print(match self.run(command) {
            Ok(text) => text,
            Err(message) => format!("ERR {message}"),
        })
    }

    /// Executes one line of text.
    pub fn execute(&self, line: &str) -> Outcome {
        self.execute_raw(line.as_bytes())
    }

    fn run(&self, command: Command<'_>) -> Result<String, String> {
        let role = self.node.role();
        match command {
            Command::Put { key, value } => {
                self.require_primary("PUT")?;
                let op = Op::put(key, value);
                self.write(op)?;
                Ok(format!("OK {key} = {value}"))
            }
            Command::Del { key } => {
                self.require_primary("DEL")?;
                let keys = vec![key.as_bytes().to_vec()];
                Ok(match self.change_int(Change::Del { keys })? {
                    0 => format!("{key} -> Not found"),
                    _ => format!("OK {key} deleted"),
                })
            }
            Command::Flush { .. } => {
                self.require_primary("FLUSH")?;
                match self.runtime.block_on(self.node.change(Change::Flush)) {
                    Ok(_) => Ok("OK every key deleted".into()),
                    Err(e @ Error::NotConfirmed(_)) => Err(e.to_string()),
                    Err(e) => Err(format!("write failed, nothing was stored: {e}")),
                }
            }
            Command::Incr { key, by } => {
                self.require_primary("INCR")?;
                let n = self.change_int(Change::IncrBy {
                    key: key.as_bytes().to_vec(),
                    by,
                })?;
                Ok(format!("OK {key} = {n}"))
            }
            Command::Expire { key, seconds } => {
                self.require_primary("EXPIRE")?;
                let at = seconds
                    .checked_mul(1000)
                    .and_then(|ms| ms.checked_add(i64::try_from(now_ms()).ok()?))
                    .ok_or("usage: EXPIRE <key> <seconds> (too many seconds)")?;
                let at = u64::try_from(at).unwrap_or(0);
                let when = compute::ExpireIf::default();
                let change = Change::Expire {
                    key: key.into(),
                    at,
                    when,
                };
                Ok(match (self.change_int(change)?, seconds > 0) {
                    (0, _) => format!("{key} -> Not found"),
                    (_, true) => format!("OK {key} expires in {seconds} s"),
                    (_, false) => format!("OK {key} deleted"),
                })
            }
            Command::Ttl { key } => {
                // The expiry alone: the value, up to 8 MiB, is not read.
                let row = self.node.store().row_expiry(key.as_bytes());
                let now = now_ms();
                Ok(match row.map_err(failed)?.filter(|&at| is_live(at, now)) {
                    None => format!("{key} -> Not found"),
                    Some(None) => format!("{key} -> no expiry"),
                    Some(Some(at)) => {
                        let left = at.saturating_sub(now);
                        format!("{key} -> expires in {}.{:03} s", left / 1000, left % 1000)
                    }
                })
            }
            Command::Get { key } => Ok(
                match self.node.store().get(key.as_bytes()).map_err(failed)? {
                    Some(value) => format!("{key} -> {}", shown(&value)),
                    None => format!("{key} -> Not found"),
                },
            ),
            Command::Keys { prefix } => self.keys(prefix),
            Command::Status => crate::node::status::render(&self.node).map_err(failed),
            Command::Help => Ok(help(role)),
            Command::Digest => {
                let digest = self.node.store().digest().map_err(failed)?;
                Ok(format!("{} (seq {})", digest.hex, digest.seq))
            }
            Command::Join { addr } => self.join(addr),
            Command::Promote => self.promote(),
            Command::Failover { target } => self.failover(target),
            Command::Exit => Ok(String::new()),
        }
    }

    /// Commits `change`, whose outcome is a number, and returns it.
    fn change_int(&self, change: Change) -> Result<i64, String> {
        match self.runtime.block_on(self.node.change(change)) {
            Ok(compute::Outcome::Int(n)) => Ok(n),
            Ok(other) => Err(format!("unexpected outcome {other:?}")),
            Err(e @ (Error::Rejected(_) | Error::NotConfirmed(_))) => Err(e.to_string()),
            Err(e) => Err(format!("write failed, nothing was stored: {e}")),
        }
    }

    /// What `FLUSH` asks before it deletes every key.
    fn flush_question(&self) -> Result<String, String> {
        self.require_primary("FLUSH")?;
        let keys = self.node.store().count(b"").map_err(failed)?;
        Ok(format!(
            "Delete all {keys} keys (on every replica too)? [y/N] "
        ))
    }

    fn require_primary(&self, word: &str) -> Result<(), String> {
        match self.node.role() {
            Role::Primary => Ok(()),
            Role::Replica => Err(format!(
                "{word} is not accepted here: this is a read-only replica; write on the primary"
            )),
        }
    }

    fn write(&self, op: Op) -> Result<Option<u64>, String> {
        self.runtime
            .block_on(self.node.write(op))
            .map_err(|e| match e {
                // Committed here; only the replicas' confirmation is missing.
                Error::NotConfirmed(_) => e.to_string(),
                e => format!("write failed, nothing was stored: {e}"),
            })
    }

    fn keys(&self, prefix: &str) -> Result<String, String> {
        let store = self.node.store();
        let keys = store
            .scan_keys(prefix.as_bytes(), None, KEYS_LIMIT)
            .map_err(failed)?;
        if keys.is_empty() {
            return Ok("(no keys)".into());
        }
        let mut text: Vec<String> = keys.iter().map(|key| shown(key).into_owned()).collect();
        if text.len() == KEYS_LIMIT {
            let total = store.count(prefix.as_bytes()).map_err(failed)?;
            if total > KEYS_LIMIT as u64 {
                text.push(format!("... ({} more)", total - KEYS_LIMIT as u64));
            }
        }
        Ok(text.join("\n"))
    }

    fn join(&self, addr: &str) -> Result<String, String> {
        validate_addr(addr)?;
        self.manual_role_change()?;
        let was = self.node.role();
        let previous = self.node.link().following();
        let mut following = self
            .node
            .follow(addr.to_string(), LinkMode::Join)
            .map_err(|e| format!("JOIN {addr} failed: {e}"))?;
        let outcome = progress::wait_for_sync(
            &self.runtime,
            &self.node,
            &mut following.first_sync,
            self.show_progress,
        );
        let report = outcome.map_err(|e| {
            let still = match (&previous, was) {
                (_, Role::Primary) => "; still the primary".to_string(),
                (Some(upstream), _) => format!("; still following {upstream}"),
                (None, _) => String::new(),
            };
            match self.node.undo_follow(&following) {
                Ok(true) => format!("JOIN {addr} failed: {e}{still}"),
                Ok(false) => format!("JOIN {addr} failed: {e}; another role change came since"),
                Err(undo) => {
                    format!("JOIN {addr} failed: {e}; and restoring the node failed: {undo}")
                }
            }
        })?;
        Ok(report.line())
    }

    /// `JOIN` and `PROMOTE` are refused in a cluster (etcd chooses the primary).
    fn manual_role_change(&self) -> Result<(), String> {
        self.node
            .check_manual_role_change()
            .map_err(|e| e.to_string())
    }

    fn failover(&self, target: Option<&str>) -> Result<String, String> {
        if let Some(addr) = target {
            validate_addr(addr)?;
        }
        let node = Arc::clone(&self.node);
        self.runtime
            .block_on(node.failover(target, DEFAULT_FAILOVER_TIMEOUT))
            .map(|primary| format!("OK {primary} is the primary now; this node follows it"))
            .map_err(|e| format!("FAILOVER failed: {e}"))
    }

    fn promote(&self) -> Result<String, String> {
        self.manual_role_change()?;
        match self.node.promote() {
            Ok(promoted @ Promotion::Promoted(_)) => Ok(promoted.line()),
            Ok(already) => Err(already.line()),
            Err(e) => Err(format!("PROMOTE failed: {e}")),
        }
    }
}

fn failed(e: Error) -> String {
    format!("read failed: {e}")
}

fn help(role: Role) -> String {
    let mut text = String::from("Commands:");
    for (usage, what) in command_list(role) {
        let _ = write!(text, "\n- {usage:<18} {what}");
    }
    text
}

#[cfg(test)]
mod tests;
