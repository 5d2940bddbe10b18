//! How a connection pipelines its requests ([`Pipeline`]). Each write is queued on the
//! node's write path at once and its reply held back, so writes sent back to back share
//! one commit (one fsync). A `GET` that follows them is answered without waiting for that
//! commit, its reply queued behind theirs:
//! - from the connection's own pending writes, when one of them wrote the key (values up
//!   to [`REMEMBERED_VALUE`] bytes are remembered for this);
//! - otherwise from the store, at once: the connection's pending writes do not touch that
//!   key.
//!
//! Replies go out in request order once the writes before them are durable
//! ([`Pipeline::settle`]), so no reply reveals a write before it is durable; a read answered
//! from the connection's writes is withdrawn (an error reply) if a write before it failed.
//! A pipeline that alternates `SET k` and `GET k` thus costs one commit per received batch,
//! not one per switch. Any other command settles the pipeline first.

use super::args::store_error;
use super::changes::{self, Answer, Parsed};
use super::reply;
use super::writes::Write;
use crate::error::Error;
use crate::node::budget::Charge;
use crate::node::compute::Outcome;
use crate::node::{Node, PendingWrite};
use crate::store::{Bytes, Op};
use bytes::BytesMut;
use std::collections::{HashMap, VecDeque};
use tokio::sync::oneshot;

/// Requests queued by one connection before it waits for them.
const MAX_PENDING: usize = 1024;

/// Values of pending writes up to this size are remembered, to answer reads of their keys;
/// a read of a key written with a larger one waits for the commit.
pub const REMEMBERED_VALUE: usize = 1024;

/// A value read from the store larger than this is not held in the queue (so a
/// connection holds at most [`MAX_PENDING`] such replies, about 1 MiB): the read waits
/// for the queued writes and is answered directly.
const HELD_VALUE: usize = REMEMBERED_VALUE;

/// The reply to a read whose answer came from a write that failed.
const WITHDRAWN: &str =
    "ERR a write sent before this read failed, so the read was not answered; read again";

/// A request waiting for the writes before it.
enum Queued {
    /// A write: its outcome, and the reply it gets once durable.
    Write(PendingWrite),
    /// A change the writer resolves: its commit, its outcome, and how to answer it.
    Change(PendingWrite, oneshot::Receiver<Outcome>, Answer),
    /// A read's reply, encoded; `from_writes` if it came from the connection's own
    /// pending writes.
    Read { reply: BytesMut, from_writes: bool },
}

/// What the connection's pending writes say a key holds.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Written {
    /// This value (`None`: deleted).
    Value(Option<Bytes>),
    /// A value too large to remember.
    Unknown,
}

/// A connection's requests queued and not yet answered, in request order.
#[derive(Default)]
pub struct Pipeline {
    queue: VecDeque<Queued>,
    /// What the queued writes set, by key (the last write of a key wins).
    written: HashMap<Bytes, Written>,
    /// Whether a queued change may have written any key (`FLUSHDB`): reads then wait.
    opaque: bool,
    /// The seq of this connection's last durable write, for `WAIT`.
    last_write: u64,
}

impl Pipeline {
    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The seq of the last write answered on this connection.
    pub fn last_write(&self) -> u64 {
        self.last_write
    }

    /// Queues a parsed write holding `charge` (or answers its error, after the requests
    /// before it). Waits for the queued requests once too many are pending.
    pub async fn queue(
        &mut self,
        node: &Node,
        write: Result<Write, String>,
        charge: Charge,
        out: &mut BytesMut,
    ) {
        let queued = match write {
            Ok(write) => {
                let remembered = remember(&write.ops);
                match node.start_write(write.ops, charge).await {
                    Ok(pending) => Ok((Queued::Write(pending), remembered)),
                    Err(e) => Err(store_error(e)),
                }
            }
            Err(message) => Err(message),
        };
        self.enqueue(queued, out).await;
    }

    /// Queues a parsed change (see [`super::changes`]) like [`queue`](Self::queue). The
    /// values of its keys are not known until it commits: reads of them wait for it.
    pub async fn queue_change(
        &mut self,
        node: &Node,
        parsed: Result<Parsed, String>,
        charge: Charge,
        out: &mut BytesMut,
    ) {
        let queued = match parsed {
            Ok(Parsed { change, answer }) => {
                self.opaque |= change.touches_every_key();
                let unknown = change
                    .keys()
                    .into_iter()
                    .map(|key| (key.to_vec(), Written::Unknown))
                    .collect();
                match node.start_change(change, charge).await {
                    Ok((pending, outcome)) => {
                        Ok((Queued::Change(pending, outcome, answer), unknown))
                    }
                    Err(e) => Err(store_error(e)),
                }
            }
            Err(message) => Err(message),
        };
        self.enqueue(queued, out).await;
    }

    /// Queues a write with what it leaves its keys holding, or answers its error after
    /// the requests before it.
    async fn enqueue(
        &mut self,
        queued: Result<(Queued, Vec<(Bytes, Written)>), String>,
        out: &mut BytesMut,
    ) {
        match queued {
            Ok((queued, written)) => {
                self.written.extend(written);
                self.queue.push_back(queued);
                self.settle_if_full(out).await;
            }
            Err(message) => {
                self.settle(out).await;
                reply::error(out, &message);
            }
        }
    }

    /// Answers `GET key` behind the queued writes without waiting for them, if it can;
    /// returns false when nothing is queued, or the answer needs the commit (the key's
    /// pending value was too large to remember, the store failed, or the value is large):
    /// the caller then settles and reads as usual.
    pub async fn get(&mut self, node: &Node, key: &[u8], out: &mut BytesMut) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        if self.opaque {
            return false;
        }
        let (value, from_writes) = match self.written.get(key) {
            Some(Written::Value(value)) => (value.clone(), true),
            Some(Written::Unknown) => return false,
            None => match node.store().get(key) {
                Ok(value) if value.as_ref().is_none_or(|v| v.len() <= HELD_VALUE) => (value, false),
                _ => return false,
            },
        };
        let mut reply = BytesMut::new();
        reply::bulk(&mut reply, value.as_deref());
        self.queue.push_back(Queued::Read { reply, from_writes });
        self.settle_if_full(out).await;
        true
    }

    async fn settle_if_full(&mut self, out: &mut BytesMut) {
        if self.queue.len() >= MAX_PENDING {
            self.settle(out).await;
        }
    }

    /// Waits for every queued write to be durable and appends every queued reply, in
    /// order.
    pub async fn settle(&mut self, out: &mut BytesMut) {
        // Whether a write failed, storing nothing: the reads answered from the
        // connection's writes after it cannot stand.
        let mut failed = false;
        while let Some(queued) = self.queue.pop_front() {
            match queued {
                Queued::Write(pending) => match pending.durable().await {
                    Ok(seqs) => {
                        self.note_seqs(&seqs);
                        reply::simple(out, "OK");
                    }
                    Err(e) => failed |= write_failed(e, out),
                },
                Queued::Change(pending, outcome, answer) => match pending.durable().await {
                    Ok(seqs) => {
                        self.note_seqs(&seqs);
                        match outcome.await {
                            Ok(outcome) => changes::answer(out, outcome, answer),
                            Err(_) => reply::error(out, "ERR the write's outcome was lost"),
                        }
                    }
                    Err(e) => failed |= write_failed(e, out),
                },
                Queued::Read { reply, from_writes } => match failed && from_writes {
                    true => reply::error(out, WITHDRAWN),
                    false => out.extend_from_slice(&reply),
                },
            }
        }
        self.written.clear();
        self.opaque = false;
    }

    /// Remembers the last seq written, for `WAIT`.
    fn note_seqs(&mut self, seqs: &[Option<u64>]) {
        if let Some(&last) = seqs.iter().flatten().max() {
            self.last_write = self.last_write.max(last);
        }
    }
}

/// Answers a write that failed; whether it may have stored nothing where it should have
/// (reads answered from the connection's later writes then cannot stand). A change
/// refused for the data it found (`Rejected`) stored nothing and broke nothing; a write
/// only unconfirmed by replicas (`NotConfirmed`) is committed here.
fn write_failed(e: Error, out: &mut BytesMut) -> bool {
    let failed = !matches!(e, Error::NotConfirmed(_) | Error::Rejected(_));
    reply::error(out, &store_error(e));
    failed
}

/// What `ops` leave each of their keys holding, as far as a read needs to know.
fn remember(ops: &[Op]) -> Vec<(Bytes, Written)> {
    ops.iter()
        .map(|op| match op {
            // A put that expires is read from the store, which knows when it is gone.
            Op::Put {
                key,
                value,
                expires_at: None,
            } if value.len() <= REMEMBERED_VALUE => {
                (key.clone(), Written::Value(Some(value.clone())))
            }
            Op::Put { key, .. } => (key.clone(), Written::Unknown),
            Op::Delete { key } => (key.clone(), Written::Value(None)),
        })
        .collect()
}

#[cfg(test)]
mod tests;
