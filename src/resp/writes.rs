//! The write commands (`SET`, `MSET`, `DEL`) and how a connection pipelines them: each
//! write is queued on the node's write path at once and its reply held back
//! ([`Pipeline`]), so writes sent back to back share one commit (one fsync); the replies
//! are written, in request order, once the writes are durable and before any later reply
//! ([`Pipeline::settle`]). A write's keys and values are the request's own buffers, moved,
//! not copied.

use super::args::{arity, err, store_error, text};
use super::reply;
use crate::node::budget::Charge;
use crate::node::{Node, PendingWrite};
use crate::store::Op;
use bytes::BytesMut;
use std::collections::VecDeque;

/// Writes queued by one connection before it waits for them.
const MAX_PENDING: usize = 1024;

/// A parsed write command.
pub struct Write {
    ops: Vec<Op>,
    reply: WriteReply,
}

/// The reply a durable write gets.
#[derive(Clone, Copy, Debug)]
pub enum WriteReply {
    /// `+OK` (SET, MSET).
    Ok,
    /// The number of keys removed (DEL).
    Removed,
}

/// Whether `name` is a write command.
pub fn is_write(name: &str) -> bool {
    matches!(name, "SET" | "MSET" | "DEL")
}

/// The write `name args` stands for (`args` without the name), or its error reply.
pub fn parse(name: &str, args: Vec<Vec<u8>>) -> Result<Write, String> {
    match (name, args.len()) {
        ("SET", 2) => {
            let mut args = args.into_iter().map(text);
            let (Some(key), Some(value)) = (args.next(), args.next()) else {
                return Err(arity(name));
            };
            Ok(Write {
                ops: vec![Op::Put {
                    key: key?,
                    value: value?,
                }],
                reply: WriteReply::Ok,
            })
        }
        ("SET", n) if n > 2 => Err(err(format!(
            "SET option '{}' is not supported by kv (keys do not expire; use SET key value)",
            String::from_utf8_lossy(&args[2])
        ))),
        ("MSET", n) if n > 0 && n % 2 == 0 => {
            let mut texts = args.into_iter().map(text);
            let mut ops = Vec::with_capacity(n / 2);
            while let (Some(key), Some(value)) = (texts.next(), texts.next()) {
                ops.push(Op::Put {
                    key: key?,
                    value: value?,
                });
            }
            Ok(Write {
                ops,
                reply: WriteReply::Ok,
            })
        }
        ("DEL", n) if n > 0 => {
            let ops = args
                .into_iter()
                .map(|key| Ok(Op::Delete { key: text(key)? }))
                .collect::<Result<_, String>>()?;
            Ok(Write {
                ops,
                reply: WriteReply::Removed,
            })
        }
        _ => Err(arity(name)),
    }
}

/// A connection's writes queued and not yet answered, in request order.
#[derive(Default)]
pub struct Pipeline {
    pending: VecDeque<(PendingWrite, WriteReply)>,
    /// The seq of this connection's last durable write, for `WAIT`.
    last_write: u64,
}

impl Pipeline {
    /// The seq of the last write answered on this connection.
    pub fn last_write(&self) -> u64 {
        self.last_write
    }

    /// Queues a parsed write holding `charge` (or answers its error, after the writes
    /// before it). Waits for the queued writes once too many are pending.
    pub async fn queue(
        &mut self,
        node: &Node,
        write: Result<Write, String>,
        charge: Charge,
        out: &mut BytesMut,
    ) {
        let queued = match write {
            Ok(write) => match node.start_write(write.ops, charge).await {
                Ok(pending) => Ok((pending, write.reply)),
                Err(e) => Err(store_error(e)),
            },
            Err(message) => Err(message),
        };
        match queued {
            Ok(pending) => {
                self.pending.push_back(pending);
                if self.pending.len() >= MAX_PENDING {
                    self.settle(out).await;
                }
            }
            Err(message) => {
                self.settle(out).await;
                reply::error(out, &message);
            }
        }
    }

    /// Waits for every queued write to be durable and appends their replies, in order.
    pub async fn settle(&mut self, out: &mut BytesMut) {
        while let Some((pending, kind)) = self.pending.pop_front() {
            match pending.durable().await {
                Ok(seqs) => {
                    if let Some(&last) = seqs.iter().flatten().max() {
                        self.last_write = self.last_write.max(last);
                    }
                    match kind {
                        WriteReply::Ok => reply::simple(out, "OK"),
                        WriteReply::Removed => {
                            let removed = seqs.iter().flatten().count();
                            reply::integer(out, i64::try_from(removed).unwrap_or(i64::MAX));
                        }
                    }
                }
                Err(e) => reply::error(out, &store_error(e)),
            }
        }
    }
}
