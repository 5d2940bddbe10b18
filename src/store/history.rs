//! Histories and their lineage, as plain data and pure functions: which history a store's
//! writes belong to and where it forked from its predecessor ([`Lineage`], [`Fork`]), how
//! far two lineages share the same writes ([`shared_bound`]), the running checksum that
//! tells whether two logs agree at a seq ([`chain_checksum`]), and what a full resync keeps
//! of a diverged node ([`SnapshotTarget`], [`DivergedEntry`]).

use super::{LogEntry, Op};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a history forked from the one before it: a promotion started it after
/// `seq` of `prev_history_id`, so its writes `1..=seq` are that history's.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fork {
    /// The history the promoted node followed (`meta.prev_history_id`).
    pub prev_history_id: String,
    /// The last seq of that history the promoted node held (`meta.fork_seq`).
    pub seq: u64,
    /// That history's fencing epoch (`meta.fork_epoch`; 0 when unknown).
    #[serde(default)]
    pub epoch: u64,
}

/// A history and, if it was started by a promotion, its fork.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lineage {
    /// The history id (`None`: a replica that never synced).
    pub history_id: Option<String>,
    /// Where it forked, if a promotion started it.
    pub fork: Option<Fork>,
    /// The fencing epoch the history was started in (`meta.epoch`): in a cluster, the
    /// etcd revision at which its primary took the primary key; 0 outside clusters. A
    /// replica never follows an upstream of a lower epoch.
    pub epoch: u64,
}

/// Up to which seq two lineages hold the same history's writes (as far as ids tell; the
/// checksums then say whether the contents agree), or `None` when neither descends from
/// the other nor do both fork from the same history: unrelated histories.
///
/// The same history: no bound (`u64::MAX`). One forked from the other: the fork seq. Two
/// forks of one history: the lower fork seq.
pub fn shared_bound(a: &Lineage, b: &Lineage) -> Option<u64> {
    let (Some(a_id), Some(b_id)) = (&a.history_id, &b.history_id) else {
        return None;
    };
    if a_id == b_id {
        return Some(u64::MAX);
    }
    match (&a.fork, &b.fork) {
        (_, Some(fork)) if &fork.prev_history_id == a_id => Some(fork.seq),
        (Some(fork), _) if &fork.prev_history_id == b_id => Some(fork.seq),
        (Some(fa), Some(fb)) if fa.prev_history_id == fb.prev_history_id => {
            Some(fa.seq.min(fb.seq))
        }
        _ => None,
    }
}

/// The running checksum of a log after the entry (`seq`, `op`), given the checksum before it (`None`: the
/// start of the history, or a row written before checksums existed). Equal checksums at a
/// seq mean equal logs up to it: each one covers its predecessor, the seq, the op, the key
/// and the value (first 8 bytes of a SHA-256, lengths framed so no two inputs collide).
pub fn chain_checksum(prev: Option<u64>, seq: u64, op: &Op) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(prev.unwrap_or(0).to_be_bytes());
    hasher.update(seq.to_be_bytes());
    let (kind, key, value, expires_at) = match op {
        Op::Put {
            key,
            value,
            expires_at,
        } => (b'p', key, Some(value), *expires_at),
        Op::Delete { key } => (b'd', key, None, None),
    };
    hasher.update([kind]);
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key);
    if let Some(value) = value {
        hasher.update((value.len() as u64).to_be_bytes());
        hasher.update(value);
    }
    // Only a put with an expiry adds bytes, so every checksum of a log written before
    // expiry existed stays what it was.
    if let Some(at) = expires_at {
        hasher.update([b'x']);
        hasher.update(at.to_be_bytes());
    }
    let digest = hasher.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// How a log continues its checksum past a row whose checksum is unknown (written before
/// checksums existed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainRule {
    /// A primary's write: start a new chain from zero, so its own log gets checksums.
    Restart,
    /// A replica's apply: stay unknown, so it never holds a checksum its upstream does not
    /// have for the same row (two chains restarted at different rows would never agree).
    Propagate,
}

/// The checksum after the entry (`seq`, `op`), given the one before it, under `rule`.
pub fn next_checksum(prev: Option<u64>, seq: u64, op: &Op, rule: ChainRule) -> Option<u64> {
    match (prev, rule) {
        (None, ChainRule::Propagate) => None,
        (prev, _) => Some(chain_checksum(prev, seq, op)),
    }
}

/// What a replica's full resync installs: the upstream's history and lineage at `seq`,
/// the checksum of the upstream's log at `seq` (the base the replica's own log continues
/// from), and, when the replica diverged, the seq after which its own log entries are
/// saved in `diverged` before its contents are replaced.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotTarget {
    /// The upstream's history id.
    pub history_id: String,
    /// Its fork, if it has one.
    pub fork: Option<Fork>,
    /// The snapshot's seq.
    pub seq: u64,
    /// The upstream's log checksum at `seq` (`None`: unknown).
    pub checksum: Option<u64>,
    /// Save this node's log entries after this seq into `diverged` first.
    pub keep_diverged_after: Option<u64>,
    /// The upstream history's fencing epoch.
    pub epoch: u64,
}

impl SnapshotTarget {
    /// A plain full resync to `history_id` at `seq`: no fork, no known checksum, nothing
    /// diverged.
    pub fn plain(history_id: &str, seq: u64) -> Self {
        SnapshotTarget {
            history_id: history_id.to_string(),
            seq,
            ..SnapshotTarget::default()
        }
    }
}

/// A log entry a node held that its new upstream's history does not have, saved in the
/// `diverged` table before a full resync replaced its contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DivergedEntry {
    /// The history the entry belonged to.
    pub history_id: String,
    /// The entry.
    pub entry: LogEntry,
}

/// The history an entry at `seq` of `lineage` belongs to: the previous history up to the
/// fork, the current one after it.
pub fn history_at(lineage: &Lineage, seq: u64) -> String {
    match &lineage.fork {
        Some(fork) if seq <= fork.seq => fork.prev_history_id.clone(),
        _ => lineage.history_id.clone().unwrap_or_default(),
    }
}

/// The fencing epoch of the history an entry at `seq` of `lineage` belongs to: a node
/// that adopted a new history but holds nothing past its fork still holds only the
/// previous history's writes.
pub fn epoch_at(lineage: &Lineage, seq: u64) -> u64 {
    match &lineage.fork {
        Some(fork) if seq <= fork.seq => fork.epoch,
        _ => lineage.epoch,
    }
}

/// The first 8 characters of an id, for messages.
pub fn short_id(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// A lineage for tests: history `id`, forked from `(prev, seq)` if given.
#[cfg(test)]
pub(crate) fn lineage(id: &str, fork: Option<(&str, u64)>) -> Lineage {
    Lineage {
        history_id: Some(id.into()),
        fork: fork.map(|(prev, seq)| Fork {
            prev_history_id: prev.into(),
            seq,
            epoch: 0,
        }),
        epoch: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lineages_share_writes_up_to_their_fork() {
        let a = lineage("a", None);
        let b = lineage("b", Some(("a", 300)));
        let c = lineage("c", Some(("a", 200)));
        assert_eq!(shared_bound(&a, &a), Some(u64::MAX));
        assert_eq!(shared_bound(&a, &b), Some(300));
        assert_eq!(shared_bound(&b, &a), Some(300));
        assert_eq!(shared_bound(&b, &c), Some(200));
        assert_eq!(shared_bound(&a, &lineage("x", None)), None);
        assert_eq!(shared_bound(&Lineage::default(), &a), None);
    }

    #[test]
    fn checksums_differ_for_any_difference_and_chain() {
        let put = |key: &str, value: &str| Op::Put {
            key: key.into(),
            value: value.into(),
            expires_at: None,
        };
        let one = chain_checksum(None, 1, &put("a", "1"));
        assert_eq!(one, chain_checksum(Some(0), 1, &put("a", "1")));
        assert_ne!(one, chain_checksum(None, 1, &put("a", "2")));
        assert_ne!(one, chain_checksum(None, 2, &put("a", "1")));
        assert_ne!(one, chain_checksum(None, 1, &put("a1", "")));
        let del = Op::Delete { key: "a".into() };
        assert_ne!(
            chain_checksum(None, 1, &del),
            chain_checksum(None, 1, &put("a", ""))
        );
        // The chain carries every earlier difference forward.
        let two_a = chain_checksum(Some(one), 2, &put("b", "x"));
        let two_b = chain_checksum(Some(one ^ 1), 2, &put("b", "x"));
        assert_ne!(two_a, two_b);
    }

    #[test]
    fn an_unknown_checksum_restarts_on_a_primary_and_stays_unknown_on_a_replica() {
        let op = Op::Delete { key: "k".into() };
        let started = next_checksum(None, 9, &op, ChainRule::Restart);
        assert_eq!(started, Some(chain_checksum(Some(0), 9, &op)));
        assert_eq!(next_checksum(None, 9, &op, ChainRule::Propagate), None);
        assert_eq!(
            next_checksum(Some(7), 9, &op, ChainRule::Propagate),
            Some(chain_checksum(Some(7), 9, &op))
        );
    }

    #[test]
    fn entries_up_to_the_fork_belong_to_the_previous_history() {
        let b = lineage("b", Some(("a", 300)));
        assert_eq!(history_at(&b, 300), "a");
        assert_eq!(history_at(&b, 301), "b");
        assert_eq!(history_at(&lineage("a", None), 5), "a");
    }
}
