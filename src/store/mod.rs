//! Storage: the [`KvStore`] trait every node is built on, its two backends
//! ([`MemoryStore`], the book's in-memory map; [`SqliteStore`], durable), and the
//! types that cross it (operations, log entries, snapshots).
//!
//! Every method is blocking. Async code calls the store from `spawn_blocking` or from a
//! dedicated thread, never directly on a runtime worker.

mod bounds;
mod digest;
pub mod expiry;
pub mod history;
pub mod memory;
mod op;
pub mod sqlite;

pub use bounds::{fill_chunk, fill_log_batch};
pub use digest::{ContentDigest, ContentHasher, DIGEST_CHUNK};
pub use expiry::{now_ms, Record, Stored};
pub use history::{DivergedEntry, Fork, Lineage, SnapshotTarget};
pub use op::{check_key_size, check_value_size, Op, MAX_KEY_BYTES, MAX_VALUE_BYTES};

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::error::Result;
use std::fmt;

/// A key or a value: any bytes, as in Redis. SQLite stores a value as TEXT when it is
/// UTF-8 (so `sqlite3` shows text as text) and as a BLOB otherwise; a key is always TEXT
/// holding its bytes, so that every key sorts in one order, byte order (see
/// `docs/design.md`, "Keys and values are bytes").
pub type Bytes = Vec<u8>;

/// A key and its value, as scans return them.
pub type Pair = (Bytes, Bytes);

/// What [`KvStore::append_batch`] returns: per request, per op, the op's seq (`None`: a
/// delete of an absent key).
pub type BatchSeqs = Vec<Vec<Option<u64>>>;

/// A committed operation with its sequence number in the history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the history; the first write is 1.
    pub seq: u64,
    /// What changed.
    pub op: Op,
}

/// What a database is for. Stored in `meta.role`; a file is never reused for the other role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Takes writes and numbers them.
    Primary,
    /// Applies a primary's numbered writes.
    Replica,
}

impl Role {
    /// The word stored in `meta.role`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A consistent, read-only view of the whole key space at one seq, read in key order in
/// bounded chunks while writes continue.
pub trait Snapshot: Send {
    /// Where the view stands: history, seq and size, read with the data.
    fn info(&self) -> &SnapshotInfo;
    /// The history the view belongs to, read in the same transaction as the data.
    fn history_id(&self) -> Option<&str> {
        self.info().history_id.as_deref()
    }
    /// The seq the view is at: it holds exactly the writes `1..=seq`.
    fn seq(&self) -> u64 {
        self.info().seq
    }
    /// How many keys the view holds.
    fn key_count(&self) -> u64 {
        self.info().keys
    }
    /// The next chunk in key order: at most `max_entries` pairs and at most `max_bytes` of
    /// keys and values, except that a chunk always holds at least one pair while any
    /// remain (so one pair larger than `max_bytes` travels alone). Empty when done.
    fn next_chunk(&mut self, max_entries: usize, max_bytes: usize) -> Result<Vec<Record>>;
}

/// A consistent, key-ordered view of the keys that start with a prefix, read in pages. It
/// can be read again from the start and yields the same keys (one read transaction), so a
/// reply that must announce its length first can count, then stream.
pub trait KeyCursor: Send {
    /// Up to `max` more keys, in order; empty when done.
    fn next_page(&mut self, max: usize) -> Result<Vec<Bytes>>;
    /// Starts over from the first key of the same view.
    fn rewind(&mut self);
}

/// Decides, at the moment a replica's write commits, whether it still may. A replica's
/// link to its upstream can be replaced (`JOIN`, a reconnect) while a write of the old
/// link is on its way to the store; that write must not land on top of what the new link
/// installs. The store calls [`commit_if_current`](Self::commit_if_current) inside the
/// write's transaction, with the commit itself as the argument.
pub trait CommitFence: Sync {
    /// Runs `commit` and returns its result if the write may still commit (and keeps the
    /// fence from moving until it returns); otherwise returns an error without running it,
    /// and the transaction rolls back.
    fn commit_if_current(&self, commit: &mut dyn FnMut() -> Result<()>) -> Result<()>;
}

/// The fence of a write that nothing can supersede (tests, tools).
pub struct Unfenced;

impl CommitFence for Unfenced {
    fn commit_if_current(&self, commit: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        commit()
    }
}

/// What a [`Snapshot`] is a view of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The history id (`None`: a replica that never synced).
    pub history_id: Option<String>,
    /// The view holds exactly the writes `1..=seq`.
    pub seq: u64,
    /// How many keys it holds.
    pub keys: u64,
    /// The history's fork, if a promotion started it.
    pub fork: Option<Fork>,
    /// The log's checksum at `seq` (`None`: unknown).
    pub checksum: Option<u64>,
    /// The history's fencing epoch.
    pub epoch: u64,
}

/// Where a store's history stands; see [`KvStore::position`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The history id (`None`: a replica that never synced).
    pub history_id: Option<String>,
    /// The head seq (see [`KvStore::head_seq`]).
    pub head: u64,
    /// The oldest seq still in the log.
    pub oldest_log: Option<u64>,
    /// The history's fork, if a promotion started it.
    pub fork: Option<Fork>,
    /// The log's checksum at the head (`None`: unknown, e.g. nothing was ever written).
    pub checksum: Option<u64>,
    /// The history's fencing epoch (see [`Lineage::epoch`]).
    pub epoch: u64,
}

impl Position {
    /// The history and its fork.
    pub fn lineage(&self) -> Lineage {
        Lineage {
            history_id: self.history_id.clone(),
            fork: self.fork.clone(),
            epoch: self.epoch,
        }
    }
}

/// The values `read` gives for `keys`, in order, until they add up to `max_bytes` (at
/// least one, if any): [`KvStore::get_many`]'s bound, for both backends.
pub fn values_up_to(
    keys: &[&[u8]],
    max_bytes: usize,
    mut read: impl FnMut(&[u8]) -> Result<Option<Bytes>>,
) -> Result<Vec<Option<Bytes>>> {
    let mut values = Vec::new();
    let mut bytes = 0;
    for key in keys {
        if bytes >= max_bytes && !values.is_empty() {
            break;
        }
        let value = read(key)?;
        bytes += value.as_ref().map_or(0, Vec::len);
        values.push(value);
    }
    Ok(values)
}

/// The largest seq kv uses: SQLite integers are signed 64-bit.
pub const MAX_SEQ: u64 = i64::MAX as u64;

/// The largest expiry kv stores (ms since the Unix epoch), for the same reason; the client
/// port and the shell never make a larger one, and a replica refuses one.
pub const MAX_EXPIRY: u64 = i64::MAX as u64;

/// Source of snapshot chunks for [`KvStore::install_snapshot`]: `Ok(Some(chunk))` while
/// chunks remain, `Ok(None)` once the snapshot is complete, `Err` to abandon it.
pub type ChunkSource<'a> = dyn FnMut() -> Result<Option<Vec<Record>>> + 'a;

/// A key-value store with a numbered write log. Both backends pass the same conformance suite.
pub trait KvStore: Send + Sync {
    /// Where the data lives: a file path, or `memory`.
    fn location(&self) -> String;

    /// The value of `key`, if present and not expired.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>>;

    /// `key`'s row as stored, expired or not: its value and expiry. The writer decides
    /// with it what an expired key means at the time its batch resolves.
    fn get_stored(&self, key: &[u8]) -> Result<Option<Stored>>;

    /// Whether `key` has a row, expired or not, and its expiry, without reading its value:
    /// `None` without a row, `Some(None)` for a row that never expires.
    fn row_expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>>;

    /// Up to `limit` keys whose expiry is at or before `now` (ms since the Unix epoch),
    /// oldest expiry first: what the primary's sweep deletes next.
    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<Bytes>>;

    /// How many live keys have an expiry (`INFO keyspace`'s `expires`).
    fn count_expiring(&self) -> Result<u64>;

    /// The values of `keys`, in order, read in one consistent read (one transaction: a
    /// batch of point reads pays for one snapshot, not one each), stopping once the
    /// values read add up to `max_bytes`: a prefix of the answers, never empty unless
    /// `keys` is, so a caller holds about `max_bytes` plus one value at most.
    fn get_many(&self, keys: &[&[u8]], max_bytes: usize) -> Result<Vec<Option<Bytes>>>;

    /// Up to `limit` pairs whose key starts with `prefix` and sorts after `after` (if
    /// given), in key order, expired keys left out. `prefix = ""` scans everything.
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Pair>>;

    /// Like [`scan`](Self::scan), keys only: listing keys never reads their values.
    fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Bytes>>;

    /// A consistent cursor over the keys starting with `prefix` (see [`KeyCursor`]).
    fn key_cursor(&self, prefix: &[u8]) -> Result<Box<dyn KeyCursor>>;

    /// How many keys start with `prefix`.
    fn count(&self, prefix: &[u8]) -> Result<u64>;

    /// The key at `index` in key order (0 is the first), if there are that many keys
    /// (`RANDOMKEY` picks an index). Reads the keys before it, page by page.
    fn nth_key(&self, index: u64) -> Result<Option<Bytes>> {
        const PAGE: usize = 1000;
        let mut skipped = 0u64;
        let mut after: Option<Bytes> = None;
        loop {
            let page = self.scan_keys(b"", after.as_deref(), PAGE)?;
            let len = page.len() as u64;
            if index < skipped + len {
                let at = usize::try_from(index - skipped).unwrap_or(0);
                return Ok(page.into_iter().nth(at));
            }
            if page.len() < PAGE {
                return Ok(None);
            }
            skipped += len;
            after = page.last().cloned();
        }
    }

    /// Primary write: commit `op` and its log entry (seq = head + 1) in one transaction and
    /// return the seq. A delete of an absent key changes nothing and returns `None`.
    ///
    /// A batch of one: see [`append_batch`](Self::append_batch).
    fn append(&self, op: &Op) -> Result<Option<u64>> {
        let seqs = self.append_batch(&[vec![op.clone()]])?;
        only_seq(seqs)
    }

    /// Primary group commit: commits every request's ops, requests in order and each
    /// request's ops in order, with their log entries, in ONE transaction, and returns
    /// each op's seq per request. Every op is numbered exactly as if it were appended on
    /// its own in that order: seqs are consecutive from head + 1, and a delete of a key
    /// that is absent at that point (including one deleted earlier in the batch) changes
    /// nothing, takes no seq and yields `None`. On error nothing of the batch is stored;
    /// a store whose role is no longer primary (demoted meanwhile) refuses the batch.
    fn append_batch(&self, requests: &[Vec<Op>]) -> Result<BatchSeqs>;

    /// Replica write: apply `entries`, which must continue the history without gap or
    /// duplicate, together with their log rows and the new applied seq, in one transaction
    /// that commits only if `fence` still allows it (otherwise nothing changes).
    fn apply_fenced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()>;

    /// [`apply_fenced`](Self::apply_fenced), visible at once but durable only after the
    /// next [`sync`](Self::sync) returns: a replica applies without waiting for the disk,
    /// serves the entries at once, and acks them once synced. (By default, durable at
    /// once.) A crash before the sync may lose a suffix of such batches, never a batch in
    /// part: the replica then resumes from where its file stands.
    fn apply_unsynced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()> {
        self.apply_fenced(entries, fence)
    }

    /// Makes every write committed so far durable (see
    /// [`apply_unsynced`](Self::apply_unsynced)).
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// [`apply_fenced`](Self::apply_fenced) with nothing that can supersede the write.
    fn apply(&self, entries: &[LogEntry]) -> Result<()> {
        self.apply_fenced(entries, &Unfenced)
    }

    /// The history id, head and oldest logged seq, read together (one transaction), so
    /// that a concurrent snapshot install cannot pair one history with another's seq.
    fn position(&self) -> Result<Position>;

    /// The newest seq this store holds: the log head on a primary, the applied seq on a
    /// replica. 0 when nothing was ever written.
    fn head_seq(&self) -> Result<u64>;

    /// Log entries with seq > `after`, in seq order: at most `max_entries`, and no more
    /// than `max_bytes` of keys and values once the first entry is taken (the first is
    /// always taken, whatever its size).
    fn log_batch(&self, after: u64, max_entries: usize, max_bytes: usize) -> Result<Vec<LogEntry>>;

    /// Up to `limit` log entries with seq > `after`, in seq order.
    fn log_since(&self, after: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.log_batch(after, limit, usize::MAX)
    }

    /// Delete the oldest log entries so that at most `keep` remain (never fewer than one),
    /// removing at most `batch` rows per call. Returns how many rows were removed.
    fn trim_log(&self, keep: u64, batch: usize) -> Result<u64>;

    /// A consistent view of the key space at the current head.
    fn snapshot(&self) -> Result<Box<dyn Snapshot>>;

    /// Replica: replace the whole contents with a snapshot of `target`'s history at its
    /// seq, read chunk by chunk from `chunks`, in one transaction that commits only if
    /// `fence` still allows it. The log is emptied (its entries belonged to the replaced
    /// state); with `target.keep_diverged_after`, the log entries after that seq are first
    /// copied into `diverged`. Readers see the old contents or the new ones, never a mix;
    /// if `chunks` or the fence fails, nothing changes. Returns the number of keys.
    fn install_snapshot_fenced(
        &self,
        target: &SnapshotTarget,
        chunks: &mut ChunkSource<'_>,
        fence: &dyn CommitFence,
    ) -> Result<u64>;

    /// [`install_snapshot_fenced`](Self::install_snapshot_fenced) of a plain snapshot of
    /// `history_id` at `seq`, unfenced.
    fn install_snapshot(
        &self,
        history_id: &str,
        seq: u64,
        chunks: &mut ChunkSource<'_>,
    ) -> Result<u64> {
        let target = SnapshotTarget::plain(history_id, seq);
        self.install_snapshot_fenced(&target, chunks, &Unfenced)
    }

    /// The role stored with the data (`meta.role`).
    fn role(&self) -> Result<Role>;

    /// Promotion: in one transaction (committed only if `fence` allows), makes the store a
    /// primary of a new history that forks from its current one after its head, so the
    /// next write continues the seq numbering. The new history's fencing epoch is `epoch`
    /// (a cluster's election), or else the current one's. Returns the new position.
    fn promote(&self, fence: &dyn CommitFence, epoch: Option<u64>) -> Result<Position>;

    /// Stores `role` without touching the history: a demotion (the store stays at its
    /// history until it syncs; a primary write after this is refused), or undoing one
    /// that never synced.
    fn set_role(&self, role: Role) -> Result<()>;

    /// A replica continuing across a fork: adopts `lineage` (its upstream's history, which
    /// holds this store's writes) without changing any data, if `fence` allows.
    fn adopt_history(&self, lineage: &Lineage, fence: &dyn CommitFence) -> Result<()>;

    /// The log's checksum after `seq` (`Some(0)` at seq 0; `None` when `seq` is not in
    /// the log or its checksum is unknown).
    fn checksum_at(&self, seq: u64) -> Result<Option<u64>>;

    /// The entries saved in `diverged`, oldest first.
    fn diverged(&self) -> Result<Vec<DivergedEntry>>;

    /// The id of the history this store's writes belong to (`None` for a replica that has
    /// never synced).
    fn history_id(&self) -> Result<Option<String>>;

    /// A `meta` value.
    fn meta(&self, name: &str) -> Result<Option<String>>;

    /// A digest of the whole contents with the seq it was taken at, from one consistent
    /// snapshot. Two nodes at the same seq of the same history have the same digest.
    fn digest(&self) -> Result<ContentDigest> {
        let mut snapshot = self.snapshot()?;
        let mut hasher = ContentHasher::default();
        loop {
            let chunk = snapshot.next_chunk(DIGEST_CHUNK, usize::MAX)?;
            if chunk.is_empty() {
                break;
            }
            chunk.iter().for_each(|record| hasher.add_record(record));
        }
        Ok(ContentDigest {
            seq: snapshot.seq(),
            hex: hasher.finish(),
        })
    }
}

/// The one seq of a one-op batch's result (see [`KvStore::append`]).
fn only_seq(seqs: BatchSeqs) -> Result<Option<u64>> {
    let shape_error = || crate::error::Error::Invalid("append_batch lost the op's seq".into());
    let [request] = seqs.as_slice() else {
        return Err(shape_error());
    };
    let [seq] = request.as_slice() else {
        return Err(shape_error());
    };
    Ok(*seq)
}

/// What a fresh primary's history id looks like when there is none: 32 zeros, as Redis
/// shows an absent `master_replid2`.
pub const NO_HISTORY: &str = "00000000000000000000000000000000";

/// A fresh random 128-bit history id, as 32 hex digits.
pub fn new_history_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// A fresh random 64-bit node id, as 16 hex digits: made once per database (`meta.node_id`),
/// so a node keeps its identity across restarts and reconnections.
pub fn new_node_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The one rule of seq continuity: `got` must be exactly the seq after `last`, and no
/// seq goes beyond [`MAX_SEQ`]. Both stores and the replica's receiver check it.
pub fn check_next_seq(last: u64, got: u64) -> Result<()> {
    let expected = last.checked_add(1).filter(|&next| next <= MAX_SEQ);
    if Some(got) != expected {
        return Err(crate::error::Error::SeqOutOfOrder {
            expected: expected.unwrap_or(MAX_SEQ),
            got,
        });
    }
    Ok(())
}

/// Checks that `entries` continue a history whose head is `head`: seqs `head+1, head+2...`.
pub fn check_continues(head: u64, entries: &[LogEntry]) -> Result<()> {
    let mut last = head;
    for entry in entries {
        check_next_seq(last, entry.seq)?;
        last = entry.seq;
    }
    Ok(())
}

/// The smallest byte string greater than every one starting with `prefix`, if one exists:
/// the exclusive upper bound of a prefix range scan.
pub fn prefix_upper_bound(prefix: &[u8]) -> Option<Bytes> {
    let mut bytes = prefix.to_vec();
    while let Some(last) = bytes.pop() {
        if last < u8::MAX {
            bytes.push(last + 1);
            return Some(bytes);
        }
    }
    None
}

#[cfg(test)]
mod tests;
