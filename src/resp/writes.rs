//! The write commands (`SET`, `MSET`, `DEL`) and how a connection pipelines them: each
//! write is queued on the node's write path at once and its reply held back, so writes
//! sent back to back share one commit (one fsync); the replies are written, in request
//! order, once the writes are durable and before any later reply ([`Session::settle`]).

use super::codec::reply;
use super::commands::{err, store_error, text, texts, Session};
use crate::store::Op;
use bytes::BytesMut;

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

/// The write `name args` stands for, or its error; `None` if it is not a write with a
/// valid number of arguments (dispatch then answers it).
pub fn parse(name: &str, args: &[Vec<u8>]) -> Option<Result<Write, String>> {
    let write = match (name, args.len()) {
        ("SET", 2) => set(args),
        ("SET", n) if n > 2 => Err(err(format!(
            "SET option '{}' is not supported by kv (keys do not expire; use SET key value)",
            String::from_utf8_lossy(&args[2])
        ))),
        ("MSET", n) if n > 0 && n % 2 == 0 => mset(args),
        ("DEL", n) if n > 0 => del(args),
        _ => return None,
    };
    Some(write)
}

fn set(args: &[Vec<u8>]) -> Result<Write, String> {
    let (key, value) = (text(&args[0])?, text(&args[1])?);
    Ok(Write {
        ops: vec![Op::Put { key, value }],
        reply: WriteReply::Ok,
    })
}

fn mset(args: &[Vec<u8>]) -> Result<Write, String> {
    let ops = texts(args)?
        .chunks_exact(2)
        .map(|pair| Op::Put {
            key: pair[0].clone(),
            value: pair[1].clone(),
        })
        .collect();
    Ok(Write {
        ops,
        reply: WriteReply::Ok,
    })
}

fn del(args: &[Vec<u8>]) -> Result<Write, String> {
    let ops = texts(args)?
        .into_iter()
        .map(|key| Op::Delete { key })
        .collect();
    Ok(Write {
        ops,
        reply: WriteReply::Removed,
    })
}

impl Session {
    /// Queues a parsed write (or answers its error, after the writes before it).
    pub(super) async fn queue_write(&mut self, write: Result<Write, String>, out: &mut BytesMut) {
        let queued = match write {
            Ok(write) => match self.node.start_write(write.ops).await {
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
