//! The one decision a joining replica needs, as plain code: partial resync (the log after
//! the replica's seq) or full resync (a snapshot first), and why.

use std::fmt;

/// How an upstream brings a joining replica up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncPlan {
    /// Same history and the next entry is still logged: send the log after `from_seq`.
    Partial {
        /// The replica's applied seq.
        from_seq: u64,
    },
    /// Send a snapshot, then the log after it.
    Full(FullResyncReason),
}

/// Why a joining replica needs a full resync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullResyncReason {
    /// The replica has no data yet.
    NewReplica,
    /// The replica's data belongs to another history (the upstream's database was replaced,
    /// or the replica followed another primary).
    NewHistory {
        /// The replica's history id.
        replica: String,
        /// The upstream's history id.
        upstream: String,
    },
    /// The entries the replica needs were trimmed from the upstream's log.
    LogTrimmed {
        /// The first seq the replica needs.
        need: u64,
        /// The oldest seq the upstream still has (`None`: its log is empty).
        oldest: Option<u64>,
    },
    /// The replica has writes the upstream does not (e.g. the primary lost its tail).
    ReplicaAhead {
        /// The replica's applied seq.
        replica: u64,
        /// The upstream's head.
        upstream: u64,
    },
}

fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

impl fmt::Display for FullResyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullResyncReason::NewReplica => write!(f, "new replica (it has no data)"),
            FullResyncReason::NewHistory { replica, upstream } => write!(
                f,
                "new history (replica had {}…, primary is {}…)",
                short(replica),
                short(upstream)
            ),
            FullResyncReason::LogTrimmed { need, oldest } => match oldest {
                Some(oldest) => write!(f, "log trimmed (need seq {need}, oldest kept {oldest})"),
                None => write!(f, "log trimmed (need seq {need}, the log is empty)"),
            },
            FullResyncReason::ReplicaAhead { replica, upstream } => write!(
                f,
                "replica is ahead of the primary (replica at seq {replica}, primary at {upstream})"
            ),
        }
    }
}

impl fmt::Display for SyncPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPlan::Partial { from_seq } => write!(f, "partial resync: from seq {from_seq}"),
            SyncPlan::Full(reason) => write!(f, "full resync: {reason}"),
        }
    }
}

/// Where an upstream's history stands, as far as a joining replica is concerned.
#[derive(Clone, Debug)]
pub struct UpstreamState {
    /// The upstream's history id.
    pub history_id: String,
    /// Its head seq.
    pub head: u64,
    /// The oldest seq in its log.
    pub oldest_log: Option<u64>,
}

/// Decides between partial and full resync for a replica at (`replica_history`,
/// `replica_seq`).
pub fn plan_sync(up: &UpstreamState, replica_history: Option<&str>, replica_seq: u64) -> SyncPlan {
    let Some(replica_history) = replica_history else {
        return SyncPlan::Full(FullResyncReason::NewReplica);
    };
    if replica_history != up.history_id {
        return SyncPlan::Full(FullResyncReason::NewHistory {
            replica: replica_history.to_string(),
            upstream: up.history_id.clone(),
        });
    }
    if replica_seq > up.head {
        return SyncPlan::Full(FullResyncReason::ReplicaAhead {
            replica: replica_seq,
            upstream: up.head,
        });
    }
    let need = replica_seq + 1;
    let retained = replica_seq == up.head || up.oldest_log.is_some_and(|oldest| oldest <= need);
    if retained {
        SyncPlan::Partial {
            from_seq: replica_seq,
        }
    } else {
        SyncPlan::Full(FullResyncReason::LogTrimmed {
            need,
            oldest: up.oldest_log,
        })
    }
}
