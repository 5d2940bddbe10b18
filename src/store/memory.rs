//! The in-memory backend: the book's `HashMap`, grown into an ordered map with a numbered
//! log so it speaks the same protocol as the SQLite backend. Nothing survives a restart.

mod keyspace;
mod views;

use super::history::{history_at, next_checksum, ChainRule};
use super::{
    check_continues, fill_log_batch, new_history_id, new_node_id, values_up_to, BatchSeqs, Bytes,
    ChunkSource, CommitFence, DivergedEntry, Fork, KeyCursor, KvStore, Lineage, LogEntry, Op, Pair,
    Position, Record, Role, Snapshot, SnapshotInfo, SnapshotTarget, Stored, MAX_SEQ,
};
use crate::error::{Error, Result};
use crate::store::now_ms;
use keyspace::KeySpace;
use std::collections::{HashMap, VecDeque};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use views::{MemoryKeyCursor, MemorySnapshot};

/// A [`KvStore`] held entirely in memory.
pub struct MemoryStore {
    inner: RwLock<Inner>,
}

#[derive(Default)]
struct Inner {
    data: KeySpace,
    /// Contiguous log entries with the log's checksum after each, oldest first.
    log: VecDeque<(LogEntry, Option<u64>)>,
    head: u64,
    /// The seq the log continues from (a snapshot's, or the last trimmed entry's) and
    /// the checksum there.
    base: Option<(u64, Option<u64>)>,
    meta: HashMap<String, String>,
    diverged: Vec<DivergedEntry>,
}

impl MemoryStore {
    /// An empty store for `role`. A primary gets a fresh history id at once; a replica gets
    /// its primary's with its first snapshot.
    pub fn new(role: Role) -> Self {
        let mut inner = Inner::default();
        inner.meta.insert("role".into(), role.as_str().into());
        inner.meta.insert("node_id".into(), new_node_id());
        if role == Role::Primary {
            inner.meta.insert("history_id".into(), new_history_id());
        }
        MemoryStore {
            inner: RwLock::new(inner),
        }
    }

    // A panic while holding the lock cannot leave `Inner` half-updated (every mutation is
    // a few infallible map operations), so a poisoned lock is still safe to use.
    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}

impl Inner {
    fn commit(&mut self, entry: LogEntry, rule: ChainRule) {
        let checksum = next_checksum(self.checksum_at(self.head), entry.seq, &entry.op, rule);
        match &entry.op {
            Op::Put {
                key,
                value,
                expires_at,
            } => {
                let stored = Stored {
                    value: value.clone(),
                    expires_at: *expires_at,
                };
                self.data.insert(key.clone(), stored);
            }
            Op::Delete { key } => {
                self.data.remove(key);
            }
        }
        self.head = entry.seq;
        self.log.push_back((entry, checksum));
    }

    /// The log entry at `seq`, with its checksum, if the log holds it.
    fn logged(&self, seq: u64) -> Option<&(LogEntry, Option<u64>)> {
        let first = self.log.front()?.0.seq;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        self.log.get(index)
    }

    fn checksum_at(&self, seq: u64) -> Option<u64> {
        if seq == 0 {
            return Some(0);
        }
        match (self.logged(seq), self.base) {
            (Some((_, checksum)), _) => *checksum,
            (None, Some((base, checksum))) if base == seq => checksum,
            (None, _) => None,
        }
    }

    fn lineage(&self) -> Lineage {
        let fork = match (self.meta.get("prev_history_id"), self.meta.get("fork_seq")) {
            (Some(prev), Some(seq)) => seq.parse().ok().map(|seq| Fork {
                prev_history_id: prev.clone(),
                seq,
                epoch: self.number("fork_epoch"),
            }),
            _ => None,
        };
        Lineage {
            history_id: self.meta.get("history_id").cloned(),
            fork,
            epoch: self.number("epoch"),
        }
    }

    /// A number kept in `meta` (0 when absent).
    fn number(&self, name: &str) -> u64 {
        self.meta
            .get(name)
            .and_then(|text| text.parse().ok())
            .unwrap_or(0)
    }

    fn set_lineage(&mut self, history_id: &str, fork: Option<&Fork>, epoch: u64) {
        self.meta.insert("history_id".into(), history_id.into());
        match epoch {
            0 => self.meta.remove("epoch"),
            epoch => self.meta.insert("epoch".into(), epoch.to_string()),
        };
        match fork {
            Some(fork) => {
                self.meta
                    .insert("prev_history_id".into(), fork.prev_history_id.clone());
                self.meta.insert("fork_seq".into(), fork.seq.to_string());
                self.meta
                    .insert("fork_epoch".into(), fork.epoch.to_string());
            }
            None => {
                self.meta.remove("prev_history_id");
                self.meta.remove("fork_seq");
                self.meta.remove("fork_epoch");
            }
        }
    }

    fn role(&self) -> Result<Role> {
        match self.meta.get("role").map(String::as_str) {
            Some("primary") => Ok(Role::Primary),
            Some("replica") => Ok(Role::Replica),
            other => Err(Error::Corrupt(format!("meta.role is {other:?}"))),
        }
    }

    fn save_diverged(&mut self, after: u64) {
        let lineage = self.lineage();
        let saved: Vec<DivergedEntry> = self
            .log
            .iter()
            .filter(|(entry, _)| entry.seq > after)
            .map(|(entry, _)| DivergedEntry {
                history_id: history_at(&lineage, entry.seq),
                entry: entry.clone(),
            })
            .collect();
        self.diverged.extend(saved);
    }

    /// Numbers the ops of `requests` as consecutive appends would, changing nothing:
    /// the entries to commit, and each op's seq per request.
    fn plan(&self, requests: &[Vec<Op>]) -> Result<(Vec<LogEntry>, BatchSeqs)> {
        // Whether each key the batch touched exists, as the batch so far leaves it.
        let mut present = HashMap::new();
        let mut entries = Vec::new();
        let mut seqs = Vec::with_capacity(requests.len());
        for ops in requests {
            let mut request = Vec::with_capacity(ops.len());
            for op in ops {
                request.push(self.plan_op(op, &mut present, &mut entries)?);
            }
            seqs.push(request);
        }
        Ok((entries, seqs))
    }

    /// Plans one op after `entries`: its seq, or `None` for a delete of an absent key.
    fn plan_op<'a>(
        &self,
        op: &'a Op,
        present: &mut HashMap<&'a [u8], bool>,
        entries: &mut Vec<LogEntry>,
    ) -> Result<Option<u64>> {
        let key = op.key();
        let existed = match present.get(key) {
            Some(&existed) => existed,
            None => self.data.contains(key),
        };
        let is_put = matches!(op, Op::Put { .. });
        present.insert(key, is_put);
        if !existed && !is_put {
            return Ok(None);
        }
        let seq = self.head + entries.len() as u64 + 1;
        if seq > MAX_SEQ {
            return Err(Error::Invalid("the seq space is exhausted".into()));
        }
        entries.push(LogEntry {
            seq,
            op: op.clone(),
        });
        Ok(Some(seq))
    }

    /// The live keys starting with `prefix` after `after`, in order, with their values.
    fn prefix_range<'a>(
        &'a self,
        prefix: &[u8],
        after: Option<&[u8]>,
    ) -> impl Iterator<Item = (&'a Bytes, &'a Bytes)> + 'a {
        let now = now_ms();
        self.data
            .range(prefix, after)
            .filter(move |(_, stored)| stored.is_live(now))
            .map(|(key, stored)| (key, &stored.value))
    }

    /// The value of `key` if it is live.
    fn live_value(&self, key: &[u8], now: u64) -> Option<Bytes> {
        self.data
            .get(key)
            .filter(|stored| stored.is_live(now))
            .map(|stored| stored.value.clone())
    }
}

impl KvStore for MemoryStore {
    fn location(&self) -> String {
        "memory".into()
    }

    fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.read().live_value(key, now_ms()))
    }

    fn get_stored(&self, key: &[u8]) -> Result<Option<Stored>> {
        Ok(self.read().data.get(key).cloned())
    }

    fn row_expiry(&self, key: &[u8]) -> Result<Option<Option<u64>>> {
        Ok(self.read().data.get(key).map(|stored| stored.expires_at))
    }

    fn expired_keys(&self, now: u64, limit: usize) -> Result<Vec<Bytes>> {
        Ok(self.read().data.expired(now, limit))
    }

    fn count_expiring(&self) -> Result<u64> {
        Ok(self.read().data.expiring_after(now_ms()) as u64)
    }

    fn get_many(&self, keys: &[&[u8]], max_bytes: usize) -> Result<Vec<Option<Bytes>>> {
        let inner = self.read();
        let now = now_ms();
        values_up_to(keys, max_bytes, |key| Ok(inner.live_value(key, now)))
    }

    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Pair>> {
        let inner = self.read();
        Ok(inner
            .prefix_range(prefix, after)
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_keys(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<Bytes>> {
        let inner = self.read();
        Ok(inner
            .prefix_range(prefix, after)
            .take(limit)
            .map(|(k, _)| k.clone())
            .collect())
    }

    fn key_cursor(&self, prefix: &[u8]) -> Result<Box<dyn KeyCursor>> {
        // A copy of the keys, as `snapshot` copies the pairs: the view stays consistent
        // without holding the lock while a client reads the reply.
        let keys: Vec<Bytes> = self
            .read()
            .prefix_range(prefix, None)
            .map(|(k, _)| k.clone())
            .collect();
        Ok(Box::new(MemoryKeyCursor { keys, next: 0 }))
    }

    fn count(&self, prefix: &[u8]) -> Result<u64> {
        Ok(self.read().prefix_range(prefix, None).count() as u64)
    }

    fn append_batch(&self, requests: &[Vec<Op>]) -> Result<BatchSeqs> {
        // Under one write lock: numbered first, committed only if the whole batch can be,
        // so a failure changes nothing and readers never see part of a batch.
        let mut inner = self.write();
        if inner.role()? != Role::Primary {
            return Err(Error::ReadOnly(
                "this node is now a replica; write on its primary".into(),
            ));
        }
        let (entries, seqs) = inner.plan(requests)?;
        for entry in entries {
            inner.commit(entry, ChainRule::Restart);
        }
        Ok(seqs)
    }

    fn apply_fenced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> Result<()> {
        let mut inner = self.write();
        check_continues(inner.head, entries)?;
        fence.commit_if_current(&mut || {
            for entry in entries {
                inner.commit(entry.clone(), ChainRule::Propagate);
            }
            if let Some(last) = entries.last() {
                inner
                    .meta
                    .insert("applied_seq".into(), last.seq.to_string());
            }
            Ok(())
        })
    }

    fn position(&self) -> Result<Position> {
        let inner = self.read();
        let lineage = inner.lineage();
        Ok(Position {
            history_id: lineage.history_id,
            head: inner.head,
            oldest_log: inner.log.front().map(|(e, _)| e.seq),
            fork: lineage.fork,
            checksum: inner.checksum_at(inner.head),
            epoch: lineage.epoch,
        })
    }

    fn head_seq(&self) -> Result<u64> {
        Ok(self.read().head)
    }

    fn log_batch(&self, after: u64, max_entries: usize, max_bytes: usize) -> Result<Vec<LogEntry>> {
        let inner = self.read();
        let Some(first) = inner.log.front().map(|(e, _)| e.seq) else {
            return Ok(Vec::new());
        };
        // The log is contiguous, so the entry with seq `after + 1` sits at a known index.
        let start =
            usize::try_from(after.saturating_add(1).saturating_sub(first)).unwrap_or(usize::MAX);
        let entries = inner.log.iter().skip(start).map(|(e, _)| Ok(e.clone()));
        fill_log_batch(entries, max_entries, max_bytes)
    }

    fn trim_log(&self, keep: u64, batch: usize) -> Result<u64> {
        let keep = keep.max(1);
        let mut inner = self.write();
        let excess = (inner.log.len() as u64).saturating_sub(keep);
        let remove = excess.min(batch as u64);
        let last = inner.log.drain(..remove as usize).next_back();
        if let Some((last, checksum)) = last {
            inner.base = Some((last.seq, checksum));
        }
        Ok(remove)
    }

    fn snapshot(&self) -> Result<Box<dyn Snapshot>> {
        let inner = self.read();
        // A copy: the memory backend trades memory for simplicity (the SQLite backend
        // streams from a read transaction instead).
        let entries: Vec<Record> = inner.data.records().collect();
        let lineage = inner.lineage();
        Ok(Box::new(MemorySnapshot {
            info: SnapshotInfo {
                history_id: lineage.history_id,
                seq: inner.head,
                keys: inner.data.len() as u64,
                fork: lineage.fork,
                checksum: inner.checksum_at(inner.head),
                epoch: lineage.epoch,
            },
            entries: entries
                .into_iter()
                .map(Ok as fn(Record) -> Result<Record>)
                .peekable(),
        }))
    }

    fn install_snapshot_fenced(
        &self,
        target: &SnapshotTarget,
        chunks: &mut ChunkSource<'_>,
        fence: &dyn CommitFence,
    ) -> Result<u64> {
        // Build the new map aside, then swap: readers see the old map or the new one.
        let mut records = Vec::new();
        while let Some(chunk) = chunks()? {
            records.extend(chunk);
        }
        let data = KeySpace::from_records(records);
        let count = data.len() as u64;
        let mut inner = self.write();
        let mut data = Some(data);
        fence.commit_if_current(&mut || {
            if let Some(after) = target.keep_diverged_after {
                inner.save_diverged(after);
            }
            inner.data = data.take().unwrap_or_default();
            inner.log.clear();
            inner.head = target.seq;
            inner.base = Some((target.seq, target.checksum));
            inner.set_lineage(&target.history_id, target.fork.as_ref(), target.epoch);
            inner
                .meta
                .insert("applied_seq".into(), target.seq.to_string());
            Ok(())
        })?;
        Ok(count)
    }

    fn role(&self) -> Result<Role> {
        self.read().role()
    }

    fn promote(&self, fence: &dyn CommitFence, epoch: Option<u64>) -> Result<Position> {
        let mut inner = self.write();
        let mut promoted = None;
        fence.commit_if_current(&mut || {
            let head = inner.head;
            let old = inner.lineage();
            let epoch = epoch.unwrap_or(old.epoch);
            let fork = old.history_id.map(|prev_history_id| Fork {
                prev_history_id,
                seq: head,
                epoch: old.epoch,
            });
            let history_id = new_history_id();
            inner.set_lineage(&history_id, fork.as_ref(), epoch);
            inner
                .meta
                .insert("role".into(), Role::Primary.as_str().into());
            promoted = Some(Position {
                history_id: Some(history_id),
                head,
                oldest_log: None,
                fork,
                checksum: inner.checksum_at(head),
                epoch,
            });
            Ok(())
        })?;
        promoted.ok_or_else(|| Error::Invalid("the promotion did not run".into()))
    }

    fn set_role(&self, role: Role) -> Result<()> {
        self.write()
            .meta
            .insert("role".into(), role.as_str().into());
        Ok(())
    }

    fn adopt_history(&self, lineage: &Lineage, fence: &dyn CommitFence) -> Result<()> {
        let Some(history_id) = &lineage.history_id else {
            return Err(Error::Invalid(
                "cannot adopt a history without an id".into(),
            ));
        };
        let mut inner = self.write();
        fence.commit_if_current(&mut || {
            inner.set_lineage(history_id, lineage.fork.as_ref(), lineage.epoch);
            Ok(())
        })
    }

    fn checksum_at(&self, seq: u64) -> Result<Option<u64>> {
        Ok(self.read().checksum_at(seq))
    }

    fn diverged(&self) -> Result<Vec<DivergedEntry>> {
        Ok(self.read().diverged.clone())
    }

    fn history_id(&self) -> Result<Option<String>> {
        self.meta("history_id")
    }

    fn meta(&self, name: &str) -> Result<Option<String>> {
        Ok(self.read().meta.get(name).cloned())
    }
}
