//! The decision a joining replica needs, as plain code: partial resync (the log after the
//! replica's seq) or full resync (a snapshot first), and why. Histories are compared by
//! lineage (the same history, or one forked from the other) and then by content: the
//! log checksums at the seq where the two should agree ([`first_look`]). When they do not
//! agree, a [`Bisection`] over probes finds the last seq where they do; the replica's
//! entries after it diverged ([`decide`]).

use crate::store::history::{shared_bound, short_id};
use crate::store::Lineage;
use std::fmt;

/// How an upstream brings a joining replica up to date.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncPlan {
    /// The next entry is still logged: send the log after `from_seq`.
    Partial {
        /// The replica's applied seq.
        from_seq: u64,
        /// Set when the upstream's history continues the replica's across a fork.
        across: Option<Crossing>,
    },
    /// Send a snapshot, then the log after it.
    Full(FullResyncReason),
}

/// A partial resync from one history into another that continues it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crossing {
    /// The replica's history.
    pub from: String,
    /// The upstream's history, which the replica adopts.
    pub to: String,
    /// Up to this seq the two are the same history.
    pub fork_seq: u64,
}

/// Why a joining replica needs a full resync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullResyncReason {
    /// The replica has no data yet.
    NewReplica,
    /// The replica's data belongs to a history unrelated to the upstream's (neither
    /// descends from the other: the upstream's database was replaced, or the replica
    /// followed another primary).
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
    /// The replica holds entries the upstream's history does not: they are saved in its
    /// `diverged` table, then replaced.
    Diverged {
        /// The replica's history.
        history: String,
        /// The last seq at which both agree.
        after: u64,
        /// How many of the replica's entries follow it.
        count: u64,
        /// How they came apart.
        kind: Divergence,
    },
}

/// How a replica's log came apart from its upstream's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Divergence {
    /// It has entries beyond the fork the upstream's history started from (an old
    /// primary's writes that never reached the promoted replica).
    NeverReplicated,
    /// Same history, but the upstream's head is behind it (the upstream lost its tail).
    UpstreamBehind,
    /// The checksums differ at the same seq (e.g. a primary restored from a backup that
    /// then took other writes).
    Differ,
}

impl fmt::Display for FullResyncReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullResyncReason::NewReplica => write!(f, "new replica (it has no data)"),
            FullResyncReason::NewHistory { replica, upstream } => write!(
                f,
                "new history (replica had {}…, primary is {}…)",
                short_id(replica),
                short_id(upstream)
            ),
            FullResyncReason::LogTrimmed { need, oldest } => match oldest {
                Some(oldest) => write!(f, "log trimmed (need seq {need}, oldest kept {oldest})"),
                None => write!(f, "log trimmed (need seq {need}, the log is empty)"),
            },
            FullResyncReason::Diverged {
                history,
                after,
                count,
                kind,
            } => {
                let how = match kind {
                    Divergence::NeverReplicated if *count == 1 => "was never replicated",
                    Divergence::NeverReplicated => "were never replicated",
                    Divergence::UpstreamBehind => "not on the upstream (it is behind)",
                    Divergence::Differ => "that differ from the upstream's",
                };
                write!(
                    f,
                    "diverged: {} after seq {after} of history {}… {how}",
                    entries(*count),
                    short_id(history)
                )
            }
        }
    }
}

/// `1 entry`, `50 entries`.
pub fn entries(count: u64) -> String {
    match count {
        1 => "1 entry".into(),
        n => format!("{n} entries"),
    }
}

impl fmt::Display for SyncPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SyncPlan::Partial {
                from_seq,
                across: None,
            } => write!(f, "partial resync: from seq {from_seq}"),
            SyncPlan::Partial {
                from_seq,
                across: Some(crossing),
            } => write!(f, "partial resync: {crossing}; from seq {from_seq}"),
            SyncPlan::Full(reason) => write!(f, "full resync: {reason}"),
        }
    }
}

impl fmt::Display for Crossing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "history {}… continues {}… after seq {}",
            short_id(&self.to),
            short_id(&self.from),
            self.fork_seq
        )
    }
}

/// Where an upstream's history stands, as far as a joining replica is concerned.
#[derive(Clone, Debug)]
pub struct UpstreamState {
    /// The upstream's history and fork.
    pub lineage: Lineage,
    /// Its head seq.
    pub head: u64,
    /// The oldest seq in its log.
    pub oldest_log: Option<u64>,
}

/// Where a joining replica's history stands, as its `Join` says.
#[derive(Clone, Debug, Default)]
pub struct JoinerState {
    /// Its history and fork.
    pub lineage: Lineage,
    /// Its applied seq.
    pub seq: u64,
    /// Its log checksum at `seq`.
    pub checksum: Option<u64>,
    /// The oldest seq in its log.
    pub oldest_log: Option<u64>,
}

/// The first step of the decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FirstLook {
    /// Decided without comparing contents.
    Decided(SyncPlan),
    /// The two should hold the same log up to `at`: compare their checksums there, then
    /// [`decide`] (or bisect first, if they differ).
    Verify {
        /// The seq to compare at.
        at: u64,
    },
}

/// Compares lineages: a replica without data, or of an unrelated history, needs a full
/// resync; otherwise the last seq the two should share is where to compare content.
pub fn first_look(up: &UpstreamState, joiner: &JoinerState) -> FirstLook {
    let Some(replica) = &joiner.lineage.history_id else {
        return FirstLook::Decided(SyncPlan::Full(FullResyncReason::NewReplica));
    };
    let Some(bound) = shared_bound(&up.lineage, &joiner.lineage) else {
        return FirstLook::Decided(SyncPlan::Full(FullResyncReason::NewHistory {
            replica: replica.clone(),
            upstream: up.lineage.history_id.clone().unwrap_or_default(),
        }));
    };
    FirstLook::Verify {
        at: joiner.seq.min(up.head).min(bound),
    }
}

/// The plan once the last seq at which both logs agree (`common`) is known; `differ`
/// says whether the checksums disagreed where [`first_look`] asked to compare.
pub fn decide(up: &UpstreamState, joiner: &JoinerState, common: u64, differ: bool) -> SyncPlan {
    let replica = joiner.lineage.history_id.clone().unwrap_or_default();
    if common < joiner.seq {
        let kind = if differ {
            Divergence::Differ
        } else if joiner.lineage.history_id == up.lineage.history_id {
            Divergence::UpstreamBehind
        } else {
            Divergence::NeverReplicated
        };
        return SyncPlan::Full(FullResyncReason::Diverged {
            history: replica,
            after: common,
            count: joiner.seq - common,
            kind,
        });
    }
    let need = joiner.seq + 1;
    let retained = joiner.seq == up.head || up.oldest_log.is_some_and(|oldest| oldest <= need);
    if !retained {
        return SyncPlan::Full(FullResyncReason::LogTrimmed {
            need,
            oldest: up.oldest_log,
        });
    }
    let upstream = up.lineage.history_id.clone().unwrap_or_default();
    let across = (upstream != replica).then(|| Crossing {
        fork_seq: shared_bound(&up.lineage, &joiner.lineage).unwrap_or(joiner.seq),
        from: replica,
        to: upstream,
    });
    SyncPlan::Partial {
        from_seq: joiner.seq,
        across,
    }
}

/// The whole decision when contents agree wherever they are compared (no probes needed):
/// what an upstream decides for a replica whose checksum matches, and what tests use.
pub fn plan_sync(up: &UpstreamState, joiner: &JoinerState) -> SyncPlan {
    match first_look(up, joiner) {
        FirstLook::Decided(plan) => plan,
        FirstLook::Verify { at } => decide(up, joiner, at, false),
    }
}

/// The fencing rule between two nodes of a cluster (docs/design.md, "Automatic failover"):
/// an upstream whose history has a lower epoch than its replica's was deposed (another
/// node won the primary key since), so neither side goes on. Returns why, for the side
/// that refuses; `None` when the upstream's epoch is at least the replica's.
pub fn deposed(upstream_epoch: u64, replica_epoch: u64) -> Option<String> {
    (upstream_epoch < replica_epoch).then(|| {
        format!(
            "the upstream's history is of epoch {upstream_epoch}, older than the replica's \
             epoch {replica_epoch}: the upstream was deposed by a newer primary"
        )
    })
}

/// After which seq a replica given a full resync must first keep its log entries in
/// `diverged`: after the common seq when it diverged; all it holds when its history is
/// unrelated (nothing says the upstream has any of it: a primary two promotions behind,
/// a primary re-pointed at another cluster); `None` when it loses nothing.
pub fn keep_diverged_after(plan: &SyncPlan, joiner: &JoinerState) -> Option<u64> {
    match plan {
        SyncPlan::Full(FullResyncReason::Diverged { after, .. }) => Some(*after),
        SyncPlan::Full(FullResyncReason::NewHistory { .. }) if joiner.seq > 0 => Some(
            joiner
                .oldest_log
                .map_or(joiner.seq, |oldest| oldest.saturating_sub(1)),
        ),
        _ => None,
    }
}

/// Finds the last seq at which two logs agree, knowing they agree at `lo` and differ at
/// `hi`: the running checksum makes agreement hold for every seq up to the last one, so
/// each probe halves the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bisection {
    lo: u64,
    hi: u64,
}

impl Bisection {
    /// A search between `lo` (agreed) and `hi` (differs).
    pub fn new(lo: u64, hi: u64) -> Self {
        Bisection { lo, hi: hi.max(lo) }
    }

    /// The next seq to compare, or `None` when the answer is found.
    pub fn next_probe(&self) -> Option<u64> {
        (self.hi - self.lo > 1).then(|| self.lo + (self.hi - self.lo) / 2)
    }

    /// Records whether the logs agree at `seq` (unknown counts as differing, so entries
    /// are saved rather than assumed equal).
    pub fn record(&mut self, seq: u64, agree: bool) {
        if agree {
            self.lo = self.lo.max(seq);
        } else {
            self.hi = self.hi.min(seq);
        }
    }

    /// The last seq known to agree.
    pub fn common(&self) -> u64 {
        self.lo
    }
}

#[cfg(test)]
mod tests;
