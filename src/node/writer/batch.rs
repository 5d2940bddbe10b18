//! A batch of writes resolved for one transaction: plain writes as they are, changes
//! (see [`compute`](crate::node::compute)) resolved against the store and the batch's
//! earlier writes (the overlay), refusals held until the batch commits, and the bytes the
//! resolved writes hold bounded: past the bound, the rest of the requests wait for the
//! next transaction.

use super::{Reply, MAX_BATCH_OPS};
use crate::error::{Error, Result};
use crate::node::budget::Charge;
use crate::node::compute::{self, Change, Outcome, View};
use crate::store::{now_ms, Bytes, KvStore, Op, Stored};
use std::collections::{BTreeSet, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use tokio::sync::oneshot;

/// Keys listed per read when a flush lists every key.
const KEYS_PAGE: usize = 10_000;

/// One caller's write: what it does, where to answer, and the memory it holds (released
/// once it is committed).
pub(super) struct Request {
    pub(super) work: Work,
    pub(super) reply: oneshot::Sender<Reply>,
    pub(super) charge: Charge,
}

/// What a write does.
pub(super) enum Work {
    /// These ops, committed together.
    Ops(Vec<Op>),
    /// A change resolved against the data when its batch commits; its outcome goes to
    /// the sender (before the commit: the caller reads it once the write is durable).
    Change(Change, oneshot::Sender<Outcome>),
}

impl Work {
    /// Roughly how many ops it commits, for the batch limit.
    pub(super) fn size(&self) -> usize {
        match self {
            Work::Ops(ops) => ops.len(),
            // A flush ends its batch: each one lists every key.
            Work::Change(change, _) if change.touches_every_key() => MAX_BATCH_OPS,
            Work::Change(change, _) => change.keys().len(),
        }
    }
}

/// What this batch's earlier writes left each key they touched holding: a change later
/// in the batch reads through it, so it sees those writes before they commit. It also
/// holds the batch's one time, so that its changes agree on which keys have expired.
struct Overlay {
    written: HashMap<Bytes, Option<Stored>>,
    now: u64,
}

impl Overlay {
    /// The overlay of the writes already in the batch, at the time it is built.
    fn of(earlier: &[Vec<Op>]) -> Overlay {
        let mut overlay = Overlay {
            written: HashMap::new(),
            now: now_ms(),
        };
        earlier.iter().for_each(|ops| overlay.record(ops));
        overlay
    }

    fn record(&mut self, ops: &[Op]) {
        for op in ops {
            let stored = match op {
                Op::Put {
                    value, expires_at, ..
                } => Some(Stored {
                    value: value.clone(),
                    expires_at: *expires_at,
                }),
                Op::Delete { .. } => None,
            };
            self.written.insert(op.key().to_vec(), stored);
        }
    }

    fn read(&self, store: &dyn KvStore, key: &[u8]) -> Result<Option<Stored>> {
        match self.written.get(key) {
            Some(stored) => Ok(stored.clone()),
            None => store.get_stored(key),
        }
    }

    fn expiry(&self, store: &dyn KvStore, key: &[u8]) -> Result<Option<Option<u64>>> {
        match self.written.get(key) {
            Some(stored) => Ok(stored.as_ref().map(|stored| stored.expires_at)),
            None => store.row_expiry(key),
        }
    }

    /// Every live key, as the batch leaves them so far, read in pages.
    fn keys(&self, store: &dyn KvStore) -> Result<Vec<Bytes>> {
        let mut keys = Vec::new();
        loop {
            let after = keys.last().map(Vec::as_slice);
            let page = store.scan_keys(b"", after, KEYS_PAGE)?;
            let full = page.len() == KEYS_PAGE;
            keys.extend(page);
            if !full {
                break;
            }
        }
        if self.written.is_empty() {
            return Ok(keys);
        }
        let mut keys: BTreeSet<Bytes> = keys.into_iter().collect();
        for (key, stored) in &self.written {
            match stored {
                Some(stored) if stored.is_live(self.now) => keys.insert(key.clone()),
                _ => keys.remove(key),
            };
        }
        Ok(keys.into_iter().collect())
    }
}

/// A batch ready to commit.
pub(super) struct Resolved {
    /// Each committed request's ops.
    pub(super) ops: Vec<Vec<Op>>,
    /// Where to answer each of them.
    pub(super) replies: Vec<oneshot::Sender<Reply>>,
    /// Their memory, released once committed.
    pub(super) charges: Vec<Charge>,
    /// Changes refused for the data they found, answered once the batch has committed.
    pub(super) refused: Vec<(oneshot::Sender<Reply>, Error)>,
}

impl Resolved {
    /// Resolves `batch` in order until its writes hold more than `max_bytes` (at least one
    /// request is always taken); returns the rest, unresolved.
    pub(super) fn from(
        store: &dyn KvStore,
        batch: Vec<Request>,
        max_bytes: usize,
    ) -> (Resolved, Vec<Request>) {
        let mut resolved = Resolved {
            ops: Vec::with_capacity(batch.len()),
            replies: Vec::with_capacity(batch.len()),
            charges: Vec::with_capacity(batch.len()),
            refused: Vec::new(),
        };
        // Built at the batch's first change only: plain writes pay nothing for it.
        let mut overlay: Option<Overlay> = None;
        let mut bytes = 0;
        let mut requests = batch.into_iter();
        for request in requests.by_ref() {
            let ops = match request.work {
                Work::Ops(ops) => ops,
                Work::Change(change, outcome) => {
                    let overlay = overlay.get_or_insert_with(|| Overlay::of(&resolved.ops));
                    match resolve(store, change, overlay) {
                        Ok((ops, result)) => {
                            let _ = outcome.send(result);
                            ops
                        }
                        Err(why) => {
                            resolved.refused.push((request.reply, why));
                            continue;
                        }
                    }
                }
            };
            if let Some(overlay) = &mut overlay {
                overlay.record(&ops);
            }
            bytes += ops.iter().map(Op::size).sum::<usize>();
            resolved.ops.push(ops);
            resolved.replies.push(request.reply);
            resolved.charges.push(request.charge);
            if bytes > max_bytes {
                break;
            }
        }
        (resolved, requests.collect())
    }
}

/// `change`'s ops against the store as the batch leaves it so far, each checked for size
/// like any write (too large: refused, in Redis's words). A panic while resolving fails
/// only this change, so the writer thread survives it.
fn resolve(store: &dyn KvStore, change: Change, overlay: &Overlay) -> Result<compute::Resolved> {
    let resolving = AssertUnwindSafe(|| {
        change.resolve(&mut View {
            now: overlay.now,
            read: &mut |key| overlay.read(store, key),
            expiry: &mut |key| overlay.expiry(store, key),
            keys: &mut || overlay.keys(store),
        })
    });
    let (ops, outcome): (Vec<Op>, Outcome) = catch_unwind(resolving).unwrap_or_else(|_| {
        Err(Error::Rejected(
            "the write failed unexpectedly; nothing was stored".into(),
        ))
    })?;
    ops.iter()
        .try_for_each(Op::check_size)
        .map_err(|e| Error::Rejected(e.to_string()))?;
    Ok((ops, outcome))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, Role};

    fn put(key: &str, value: &str) -> Op {
        Op::Put {
            key: key.into(),
            value: value.into(),
            expires_at: None,
        }
    }

    /// A request, and where its answer and outcome arrive.
    fn request(work: Work) -> (Request, oneshot::Receiver<Reply>) {
        let (reply, replied) = oneshot::channel();
        let charge = Charge::default();
        (
            Request {
                work,
                reply,
                charge,
            },
            replied,
        )
    }

    fn change(
        change: Change,
    ) -> (
        Request,
        oneshot::Receiver<Reply>,
        oneshot::Receiver<Outcome>,
    ) {
        let (outcome, outcome_rx) = oneshot::channel();
        let (request, replied) = request(Work::Change(change, outcome));
        (request, replied, outcome_rx)
    }

    #[test]
    fn changes_see_the_writes_before_them_in_their_batch() {
        let store = MemoryStore::new(Role::Primary);
        store.append_batch(&[vec![put("old", "x")]]).expect("seed");
        let incr = |key: &str, by| Change::IncrBy {
            key: key.into(),
            by,
        };
        let (set_text, _) = request(Work::Ops(vec![put("k", "abc")]));
        let (incr_text, mut refused, _) = change(incr("k", 1));
        let (set_number, _) = request(Work::Ops(vec![put("n", "5")]));
        let (incr_number, _, mut counted) = change(incr("n", 2));
        let (flush, _, _) = change(Change::Flush);
        let batch = vec![set_text, incr_text, set_number, incr_number, flush];

        let (resolved, rest) = Resolved::from(&store, batch, usize::MAX);
        assert!(rest.is_empty());
        assert_eq!(counted.try_recv().expect("outcome"), Outcome::Int(7));
        // The refusal rests on an uncommitted write: held until the batch commits.
        assert!(refused.try_recv().is_err(), "answered before the commit");
        assert_eq!(resolved.refused.len(), 1);
        let deleted: Vec<&[u8]> = resolved.ops[3].iter().map(Op::key).collect();
        assert_eq!(
            deleted,
            vec![&b"k"[..], b"n", b"old"],
            "the flush sees the batch's keys too"
        );
        assert_eq!(resolved.ops[2], vec![put("n", "7")]);
    }

    #[test]
    fn a_batch_past_its_byte_bound_leaves_the_rest_for_the_next() {
        let store = MemoryStore::new(Role::Primary);
        let append = |value: &str| Change::Append {
            key: "log".into(),
            value: value.into(),
        };
        let (first, _, _) = change(append("0123456789"));
        let (second, _, _) = change(append("abc"));
        let (resolved, rest) = Resolved::from(&store, vec![first, second], 5);
        assert_eq!(resolved.ops.len(), 1, "one request is always taken");
        assert_eq!(rest.len(), 1);
    }
}
