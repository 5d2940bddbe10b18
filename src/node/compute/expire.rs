//! The changes that set or drop an expiry (`EXPIRE` and its kin, `PERSIST`, `GETEX`), the
//! primary's sweep of expired keys, and `DEL`, whose answer counts only keys that had not
//! expired. An expiry already past deletes the key at once, as Redis does, so the log says
//! when it went.

use super::{put, NewExpiry, Outcome, Resolved, View};
use crate::error::Result;
use crate::store::expiry::is_live;
use crate::store::{Bytes, Op};
use std::collections::HashSet;

/// The conditions of `EXPIRE key time [NX] [XX] [GT] [LT]`, all of which must hold. A key
/// without an expiry counts as expiring never, i.e. later than any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpireIf {
    /// `NX`: only if it has no expiry.
    pub nx: bool,
    /// `XX`: only if it has one.
    pub xx: bool,
    /// `GT`: only if the new time is later than the current one.
    pub gt: bool,
    /// `LT`: only if the new time is sooner than the current one.
    pub lt: bool,
}

impl ExpireIf {
    /// Whether a key expiring at `current` may be given `at`.
    fn allows(self, current: Option<u64>, at: u64) -> bool {
        (!self.nx || current.is_none())
            && (!self.xx || current.is_some())
            && (!self.gt || current.is_some_and(|current| at > current))
            && (!self.lt || current.is_none_or(|current| at < current))
    }
}

/// The op that gives `key` (holding `value`) the expiry `at`: a delete once it is past.
fn rewrite(key: &[u8], value: Bytes, at: Option<u64>, now: u64) -> Op {
    match at {
        Some(at) if at <= now => Op::Delete { key: key.to_vec() },
        at => put(key, value, at),
    }
}

/// `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`: 1 if the expiry was set, 0 if the key is
/// absent or the condition says no.
pub(super) fn expire(key: &[u8], at: u64, when: ExpireIf, view: &mut View<'_>) -> Result<Resolved> {
    let Some(stored) = view.live(key)? else {
        return Ok((Vec::new(), Outcome::Int(0)));
    };
    if !when.allows(stored.expires_at, at) {
        return Ok((Vec::new(), Outcome::Int(0)));
    }
    let op = rewrite(key, stored.value, Some(at), view.now);
    Ok((vec![op], Outcome::Int(1)))
}

/// `PERSIST`: 1 if the key had an expiry and lost it, else 0.
pub(super) fn persist(key: &[u8], view: &mut View<'_>) -> Result<Resolved> {
    match view.live(key)? {
        Some(stored) if stored.expires_at.is_some() => {
            Ok((vec![put(key, stored.value, None)], Outcome::Int(1)))
        }
        _ => Ok((Vec::new(), Outcome::Int(0))),
    }
}

/// `GETEX key EX|PX|EXAT|PXAT|PERSIST`: the value, with the key's new expiry.
pub(super) fn get_ex(key: &[u8], expiry: NewExpiry, view: &mut View<'_>) -> Result<Resolved> {
    let Some(stored) = view.live(key)? else {
        return Ok((Vec::new(), Outcome::Bulk(None)));
    };
    let at = match expiry {
        NewExpiry::Never => None,
        NewExpiry::Keep => return Ok((Vec::new(), Outcome::Bulk(Some(stored.value)))),
        NewExpiry::At(at) => Some(at),
    };
    if at == stored.expires_at {
        // Nothing changes: nothing to log (`GETEX k PERSIST` of a key without expiry).
        return Ok((Vec::new(), Outcome::Bulk(Some(stored.value))));
    }
    let value = stored.value.clone();
    let op = rewrite(key, stored.value, at, view.now);
    Ok((vec![op], Outcome::Bulk(Some(value))))
}

/// The sweep: deletes those of `keys` that exist and have expired by now; answers how many.
pub(super) fn purge(keys: Vec<Bytes>, view: &mut View<'_>) -> Result<Resolved> {
    let mut ops = Vec::new();
    for key in keys {
        let expiry = (view.expiry)(&key)?;
        if expiry.is_some_and(|at| !is_live(at, view.now)) {
            ops.push(Op::Delete { key });
        }
    }
    let removed = i64::try_from(ops.len()).unwrap_or(i64::MAX);
    Ok((ops, Outcome::Int(removed)))
}

/// `DEL`: deletes every row of `keys` (a key named twice once), and answers how many had
/// not expired.
pub(super) fn delete(keys: Vec<Bytes>, view: &mut View<'_>) -> Result<Resolved> {
    let mut ops = Vec::new();
    let mut removed = 0i64;
    let mut seen = HashSet::new();
    for key in keys {
        let Some(expiry) = (view.expiry)(&key)? else {
            continue;
        };
        if !seen.insert(key.clone()) {
            continue;
        }
        removed += i64::from(is_live(expiry, view.now));
        ops.push(Op::Delete { key });
    }
    Ok((ops, Outcome::Int(removed)))
}
