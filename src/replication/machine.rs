//! The replica side of one replication connection as a state machine, plain code without
//! sockets: which message may come next, whether a log entry has exactly the next seq, and
//! what the replica must do with each message. [`super::receiver`] drives it over TCP.

use super::plan::deposed;
use crate::error::{Error, Result};
use crate::protocol::Message;
use crate::store::history::shared_bound;
use crate::store::{
    check_next_seq, Bytes, Fork, Lineage, LogEntry, Op, Record, SnapshotTarget, MAX_EXPIRY, MAX_SEQ,
};

/// What a replica must do with one message from its upstream.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Start replacing the contents with a snapshot.
    BeginSnapshot {
        /// What to install: history, fork, seq, checksum, what to keep as diverged.
        target: SnapshotTarget,
        /// Its key count.
        keys: u64,
        /// Why the upstream chose a full resync.
        reason: String,
    },
    /// Add a chunk to the snapshot being installed.
    SnapshotChunk(Vec<Record>),
    /// Commit the snapshot.
    FinishSnapshot {
        /// The snapshot's seq.
        seq: u64,
    },
    /// Partial resync accepted: the log continues after `from_seq`.
    Resume {
        /// The replica's applied seq.
        from_seq: u64,
        /// The upstream's lineage, when its history continues the replica's across a
        /// fork: the replica adopts it.
        adopt: Option<Lineage>,
    },
    /// Apply this entry (the next in order).
    Apply(LogEntry),
    /// `FAILOVER`: the upstream paused at `seq`, everything this replica holds; promote.
    Promote {
        /// The seq the upstream paused at.
        seq: u64,
    },
    /// A heartbeat: the upstream is alive and its head is `head`.
    Heartbeat {
        /// The upstream's head seq.
        head: u64,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitingStart,
    InSnapshot {
        seq: u64,
        /// The last key received: keys must arrive strictly increasing (no duplicate).
        last_key: Option<Bytes>,
    },
    Streaming,
}

/// The replica side of one connection as a state machine: checks that every message comes
/// in an allowed order and every entry has exactly the next seq, and says what to do.
#[derive(Debug)]
pub struct Receiver {
    phase: Phase,
    lineage: Lineage,
    /// The seq of the last entry accepted (applied, or about to be).
    last_seq: u64,
}

impl Receiver {
    /// A receiver for a replica at (`history_id`, `applied_seq`) that has just sent `Join`.
    pub fn new(history_id: Option<String>, applied_seq: u64) -> Self {
        Receiver {
            phase: Phase::AwaitingStart,
            lineage: Lineage {
                history_id,
                fork: None,
                epoch: 0,
            },
            last_seq: applied_seq,
        }
    }

    /// The replica's history started at `fork` (a promotion).
    pub fn with_fork(mut self, fork: Option<Fork>) -> Self {
        self.lineage.fork = fork;
        self
    }

    /// The replica's history is of fencing epoch `epoch`: an upstream of a lower one is
    /// refused.
    pub fn with_epoch(mut self, epoch: u64) -> Self {
        self.lineage.epoch = epoch;
        self
    }

    /// Refuses an upstream whose history's epoch is below this replica's.
    fn check_epoch(&self, upstream_epoch: u64) -> Result<()> {
        match deposed(upstream_epoch, self.lineage.epoch) {
            Some(reason) => Err(Error::Protocol(format!("refusing this upstream: {reason}"))),
            None => Ok(()),
        }
    }

    /// The seq of the last entry accepted.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// Checks `message` against the connection's state and returns what to do with it.
    pub fn on_message(&mut self, message: Message) -> Result<Step> {
        let unexpected = |m: &Message, phase: &Phase| {
            Error::Protocol(format!("unexpected {} while {:?}", m.name(), phase))
        };
        match (&self.phase, message) {
            (_, Message::Error { message }) => {
                Err(Error::Remote(format!("the upstream says: {message}")))
            }
            (Phase::Streaming, Message::Ping { seq, .. }) if seq > self.last_seq => {
                // The upstream pings with the last seq it sent, after sending it: if that
                // is beyond what arrived, entries went missing on the way.
                Err(Error::Protocol(format!(
                    "the upstream sent up to seq {seq} but entries after {} never arrived",
                    self.last_seq
                )))
            }
            // Older upstreams send no head: their last sent seq is the best estimate.
            (_, Message::Ping { seq, head }) => Ok(Step::Heartbeat {
                head: head.max(seq),
            }),
            (
                Phase::AwaitingStart,
                Message::SnapshotBegin {
                    history_id,
                    seq,
                    keys,
                    reason,
                    fork,
                    checksum,
                    keep_diverged_after,
                    epoch,
                },
            ) => {
                self.check_epoch(epoch)?;
                if seq > MAX_SEQ {
                    return Err(Error::Protocol(format!(
                        "snapshot seq {seq} is out of range"
                    )));
                }
                check_fork(fork.as_ref(), seq)?;
                if keep_diverged_after.is_some_and(|after| after > MAX_SEQ) {
                    return Err(Error::Protocol(
                        "keep_diverged_after is out of range".into(),
                    ));
                }
                self.phase = Phase::InSnapshot {
                    seq,
                    last_key: None,
                };
                self.lineage = Lineage {
                    history_id: Some(history_id.clone()),
                    fork: fork.clone(),
                    epoch,
                };
                let target = SnapshotTarget {
                    history_id,
                    fork,
                    seq,
                    checksum,
                    keep_diverged_after,
                    epoch,
                };
                Ok(Step::BeginSnapshot {
                    target,
                    keys,
                    reason,
                })
            }
            (
                Phase::AwaitingStart,
                Message::Continue {
                    history_id,
                    from_seq,
                    fork,
                    epoch,
                },
            ) => {
                self.check_epoch(epoch)?;
                self.resume(history_id, from_seq, fork, epoch)
            }
            (Phase::InSnapshot { .. }, Message::Snapshot { entries }) => {
                self.check_key_order(&entries)?;
                Ok(Step::SnapshotChunk(entries))
            }
            (Phase::InSnapshot { seq: begun, .. }, Message::SnapshotEnd { seq }) => {
                if seq != *begun {
                    return Err(Error::Protocol(format!(
                        "SnapshotEnd at seq {seq} for a snapshot begun at {begun}"
                    )));
                }
                self.phase = Phase::Streaming;
                self.last_seq = seq;
                Ok(Step::FinishSnapshot { seq })
            }
            (Phase::Streaming, Message::Promote { seq }) => {
                if seq != self.last_seq {
                    return Err(Error::Protocol(format!(
                        "asked to promote at seq {seq}, but this replica holds up to {}",
                        self.last_seq
                    )));
                }
                Ok(Step::Promote { seq })
            }
            (Phase::Streaming, message @ (Message::Put { .. } | Message::Delete { .. })) => {
                let Some(entry) = message.into_entry() else {
                    return Err(Error::Protocol("not a log entry".into()));
                };
                check_next_seq(self.last_seq, entry.seq)?;
                if let Op::Put { expires_at, .. } = &entry.op {
                    check_expiry(*expires_at)?;
                }
                self.last_seq = entry.seq;
                Ok(Step::Apply(entry))
            }
            (phase, message) => Err(unexpected(&message, phase)),
        }
    }
}

/// An expiry is one SQLite can store (a signed 64-bit integer): a larger one would be
/// stored as another number than the one the log checksum covers.
fn check_expiry(expires_at: Option<u64>) -> Result<()> {
    match expires_at {
        Some(at) if at > MAX_EXPIRY => Err(Error::Protocol(format!(
            "an expiry of {at} ms is beyond the largest kv stores"
        ))),
        _ => Ok(()),
    }
}

/// A history's fork lies within the history: at or before `seq`.
fn check_fork(fork: Option<&Fork>, seq: u64) -> Result<()> {
    match fork {
        Some(fork) if fork.seq > seq => Err(Error::Protocol(format!(
            "a fork at seq {} beyond the history's seq {seq}",
            fork.seq
        ))),
        _ => Ok(()),
    }
}

impl Receiver {
    /// A partial resync: from the replica's own seq, in its own history or in one that
    /// continues it (forked at or after that seq).
    fn resume(
        &mut self,
        history_id: String,
        from_seq: u64,
        fork: Option<Fork>,
        epoch: u64,
    ) -> Result<Step> {
        check_fork(fork.as_ref(), MAX_SEQ)?;
        let offered = Lineage {
            history_id: Some(history_id),
            fork,
            epoch,
        };
        // The same history in a newer epoch cannot happen (a history's epoch is fixed at
        // its start), so an equal id means an equal lineage.
        let same = offered.history_id == self.lineage.history_id;
        let continues =
            shared_bound(&self.lineage, &offered).is_some_and(|bound| from_seq <= bound);
        if from_seq != self.last_seq || !(same || continues) {
            return Err(Error::Protocol(format!(
                "Continue from {:?}@{from_seq} does not match this replica at {:?}@{}",
                offered.history_id, self.lineage.history_id, self.last_seq
            )));
        }
        self.phase = Phase::Streaming;
        let adopt = (!same).then(|| offered.clone());
        self.lineage = offered;
        Ok(Step::Resume { from_seq, adopt })
    }

    /// Snapshot keys come in key order, each once, with expiries kv can store: checked
    /// here so that a faulty upstream cannot make the two backends disagree (one would
    /// keep the last duplicate, the other refuse it).
    fn check_key_order(&mut self, entries: &[Record]) -> Result<()> {
        let Phase::InSnapshot { last_key, .. } = &mut self.phase else {
            return Ok(());
        };
        let mut previous = last_key.as_deref();
        for Record {
            key, expires_at, ..
        } in entries
        {
            check_expiry(*expires_at)?;
            if previous.is_some_and(|previous| key.as_slice() <= previous) {
                return Err(Error::Protocol(format!(
                    "snapshot key {} is out of order or repeated",
                    key.escape_ascii()
                )));
            }
            previous = Some(key.as_slice());
        }
        if let Some(record) = entries.last() {
            *last_key = Some(record.key.clone());
        }
        Ok(())
    }
}
