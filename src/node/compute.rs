//! Writes that depend on what a key holds: counters (`INCR`), conditional sets (`SET … NX`,
//! `MSETNX`), `APPEND`, `GETSET`, `RENAME`… A [`Change`] is resolved by the writer thread,
//! inside the batch it commits, against the store as the batch leaves it so far
//! ([`Change::resolve`]): it becomes plain `Put`/`Delete` ops, logged and replicated like
//! any other, and an [`Outcome`] for the caller. One writer thread resolves and commits in
//! order, so every change is one atomic read-modify-write. Plain code: it reads through a
//! [`View`] and touches no store, so tests call it directly.
//!
//! Expiry is decided here, at the batch's time ([`View::now`]): a key whose expiry has
//! passed is absent to every change; a change that rewrites a value keeps its expiry
//! (`INCR`, `APPEND`, `SETRANGE`), one that replaces it drops it (`SET`, `GETSET`) unless
//! told to keep it (`KEEPTTL`), and `RENAME`/`COPY` carry it. The expiry commands
//! themselves are in [`expire`].

mod expire;

pub use expire::ExpireIf;

use crate::error::{Error, Result};
use crate::store::{check_value_size, Bytes, Op, Stored};

/// A write whose ops depend on the data. Its fields are the command's arguments.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// `INCRBY key by` (`INCR`, `DECR`, `DECRBY`): an integer value plus `by`.
    IncrBy { key: Bytes, by: i64 },
    /// `INCRBYFLOAT key by`.
    IncrByFloat { key: Bytes, by: f64 },
    /// `APPEND key value`.
    Append { key: Bytes, value: Bytes },
    /// `SETRANGE key offset value`.
    SetRange {
        key: Bytes,
        offset: usize,
        value: Bytes,
    },
    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`, `SETNX`, `GETSET`.
    Set {
        key: Bytes,
        value: Bytes,
        when: When,
        get: bool,
        expiry: NewExpiry,
    },
    /// `GETDEL key`.
    GetDel { key: Bytes },
    /// `MSETNX key value …`: all or none, only if none of the keys exists.
    MSetNx { pairs: Vec<(Bytes, Bytes)> },
    /// `RENAME` (`nx: false`) or `RENAMENX`.
    Rename { from: Bytes, to: Bytes, nx: bool },
    /// `COPY from to [REPLACE]`.
    Copy {
        from: Bytes,
        to: Bytes,
        replace: bool,
    },
    /// `FLUSHDB`, `FLUSHALL`: every key deleted (each logged as a delete).
    Flush,
    /// `EXPIRE` and its kin, `at` already absolute (ms since the Unix epoch).
    Expire { key: Bytes, at: u64, when: ExpireIf },
    /// `PERSIST key`: drop its expiry.
    Persist { key: Bytes },
    /// `GETEX key` with an option: its value, and a new expiry.
    GetEx { key: Bytes, expiry: NewExpiry },
    /// The primary's sweep: delete those of `keys` whose expiry has passed (each logged
    /// as a delete, so replicas and the log stay exact).
    Purge { keys: Vec<Bytes> },
    /// `DEL key …`, `UNLINK key …`: every row deleted, and how many of them had not
    /// expired (an expired row is deleted too, but Redis does not count it).
    Del { keys: Vec<Bytes> },
}

/// The expiry a write leaves its key with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NewExpiry {
    /// None: the key never expires.
    Never,
    /// The one it had (`KEEPTTL`).
    Keep,
    /// This time, in ms since the Unix epoch.
    At(u64),
}

/// Reads whether a key has a row and its expiry (`None`: no row; `Some(None)`: a row that
/// never expires).
pub type ReadExpiry<'a> = &'a mut dyn FnMut(&[u8]) -> Result<Option<Option<u64>>>;

/// What a change reads: the store as its batch leaves it, at the batch's time.
pub struct View<'a> {
    /// When the batch resolves, in ms since the Unix epoch: a key whose expiry is at or
    /// before it is absent.
    pub now: u64,
    /// A key's row as stored, expired or not.
    pub read: &'a mut dyn FnMut(&[u8]) -> Result<Option<Stored>>,
    /// Whether a key has a row, expired or not, and its expiry (see
    /// [`KvStore::row_expiry`](crate::store::KvStore::row_expiry)): no value is read.
    pub expiry: ReadExpiry<'a>,
    /// Every live key, for a flush.
    pub keys: &'a mut dyn FnMut() -> Result<Vec<Bytes>>,
}

impl View<'_> {
    /// `key`'s row if it has not expired.
    fn live(&mut self, key: &[u8]) -> Result<Option<Stored>> {
        let now = self.now;
        Ok((self.read)(key)?.filter(|stored| stored.is_live(now)))
    }

    /// `key`'s value if it has not expired.
    fn value(&mut self, key: &[u8]) -> Result<Option<Bytes>> {
        Ok(self.live(key)?.map(|stored| stored.value))
    }
}

/// When a conditional set applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum When {
    /// Always.
    Always,
    /// Only if the key does not exist (`NX`).
    Absent,
    /// Only if it exists (`XX`).
    Present,
}

/// What a change answers once durable.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// `+OK`.
    Ok,
    /// A null bulk: the change did not apply.
    Nil,
    /// An integer (a counter, a length, 0/1 for done or not).
    Int(i64),
    /// A bulk string, or null.
    Bulk(Option<Bytes>),
}

/// The ops of a resolved change, and its outcome.
pub type Resolved = (Vec<Op>, Outcome);

fn rejected(message: &str) -> Error {
    Error::Rejected(message.to_string())
}

/// Redis's words for a value or argument that is not a 64-bit integer.
pub const NOT_AN_INTEGER: &str = "value is not an integer or out of range";
/// Redis's words for a value that would grow past the largest value (kv's is 8 MiB).
pub const TOO_LONG: &str = "string exceeds maximum allowed size (proto-max-bulk-len)";
/// Redis's words for a value or argument that is not a float.
pub const NOT_A_FLOAT: &str = "value is not a valid float";

fn put(key: &[u8], value: Bytes, expires_at: Option<u64>) -> Op {
    Op::Put {
        key: key.to_vec(),
        value,
        expires_at,
    }
}

impl Change {
    /// The keys it may write, for a pipeline that must not guess their values.
    pub fn keys(&self) -> Vec<&[u8]> {
        match self {
            Change::IncrBy { key, .. }
            | Change::IncrByFloat { key, .. }
            | Change::Append { key, .. }
            | Change::SetRange { key, .. }
            | Change::Set { key, .. }
            | Change::GetDel { key }
            | Change::Expire { key, .. }
            | Change::Persist { key }
            | Change::GetEx { key, .. } => vec![key],
            Change::Purge { keys } | Change::Del { keys } => {
                keys.iter().map(Vec::as_slice).collect()
            }
            Change::MSetNx { pairs } => pairs.iter().map(|(key, _)| key.as_slice()).collect(),
            Change::Rename { from, to, .. } | Change::Copy { from, to, .. } => vec![from, to],
            Change::Flush => Vec::new(),
        }
    }

    /// Whether it may write keys [`keys`](Self::keys) does not name (`FLUSHDB`).
    pub fn touches_every_key(&self) -> bool {
        matches!(self, Change::Flush)
    }

    /// The ops and outcome of this change against what `view` reads; an error (in
    /// Redis's words) stores nothing.
    pub fn resolve(self, view: &mut View<'_>) -> Result<Resolved> {
        match self {
            Change::Flush => {
                let ops = (view.keys)()?
                    .into_iter()
                    .map(|key| Op::Delete { key })
                    .collect();
                Ok((ops, Outcome::Ok))
            }
            Change::IncrBy { key, by } => incr_by(&key, by, view),
            Change::IncrByFloat { key, by } => incr_by_float(&key, by, view),
            Change::Append { key, value } => {
                let old = view.live(&key)?;
                let expires_at = old.as_ref().and_then(|old| old.expires_at);
                let mut text = old.map(|old| old.value).unwrap_or_default();
                text.extend_from_slice(&value);
                check_value_size(text.len()).map_err(|_| rejected(TOO_LONG))?;
                let length = text.len();
                Ok((vec![put(&key, text, expires_at)], Outcome::Int(len(length))))
            }
            Change::SetRange { key, offset, value } => set_range(&key, offset, &value, view),
            Change::Set {
                key,
                value,
                when,
                get,
                expiry,
            } => {
                let old = view.live(&key)?;
                let applies = match when {
                    When::Always => true,
                    When::Absent => old.is_none(),
                    When::Present => old.is_some(),
                };
                let expires_at = match expiry {
                    NewExpiry::Never => None,
                    NewExpiry::Keep => old.as_ref().and_then(|old| old.expires_at),
                    NewExpiry::At(at) => Some(at),
                };
                let ops = match applies {
                    true => vec![put(&key, value, expires_at)],
                    false => Vec::new(),
                };
                let old = old.map(|old| old.value);
                let outcome = match (get, applies) {
                    (true, _) => Outcome::Bulk(old),
                    (false, true) => Outcome::Ok,
                    (false, false) => Outcome::Nil,
                };
                Ok((ops, outcome))
            }
            Change::Expire { key, at, when } => expire::expire(&key, at, when, view),
            Change::Persist { key } => expire::persist(&key, view),
            Change::GetEx { key, expiry } => expire::get_ex(&key, expiry, view),
            Change::Purge { keys } => expire::purge(keys, view),
            Change::Del { keys } => expire::delete(keys, view),
            Change::GetDel { key } => {
                let old = view.value(&key)?;
                let ops = match old {
                    Some(_) => vec![Op::Delete { key }],
                    None => Vec::new(),
                };
                Ok((ops, Outcome::Bulk(old)))
            }
            Change::MSetNx { pairs } => {
                for (key, _) in &pairs {
                    if view.live(key)?.is_some() {
                        return Ok((Vec::new(), Outcome::Int(0)));
                    }
                }
                let ops = pairs
                    .into_iter()
                    .map(|(key, value)| Op::put(key, value))
                    .collect();
                Ok((ops, Outcome::Int(1)))
            }
            Change::Rename { from, to, nx } => rename(from, to, nx, view),
            Change::Copy { from, to, replace } => {
                if from == to {
                    return Err(rejected("source and destination objects are the same"));
                }
                let Some(source) = view.live(&from)? else {
                    return Ok((Vec::new(), Outcome::Int(0)));
                };
                if !replace && view.live(&to)?.is_some() {
                    return Ok((Vec::new(), Outcome::Int(0)));
                }
                let copy = put(&to, source.value, source.expires_at);
                Ok((vec![copy], Outcome::Int(1)))
            }
        }
    }
}

fn len(length: usize) -> i64 {
    i64::try_from(length).unwrap_or(i64::MAX)
}

/// `key`'s live value (absent: `None`) and expiry, which a rewrite of the value keeps.
fn current(view: &mut View<'_>, key: &[u8]) -> Result<(Option<Bytes>, Option<u64>)> {
    Ok(match view.live(key)? {
        Some(stored) => (Some(stored.value), stored.expires_at),
        None => (None, None),
    })
}

/// `key`'s live value read as a number by `parse` (absent: `zero`; not a number: refused
/// with `not_a_number`), and its expiry, which a counter keeps.
fn current_number<T>(
    view: &mut View<'_>,
    key: &[u8],
    parse: fn(&[u8]) -> Option<T>,
    (zero, not_a_number): (T, &str),
) -> Result<(T, Option<u64>)> {
    let (value, expires_at) = current(view, key)?;
    let number = match value {
        Some(value) => parse(&value).ok_or_else(|| rejected(not_a_number))?,
        None => zero,
    };
    Ok((number, expires_at))
}

fn incr_by(key: &[u8], by: i64, view: &mut View<'_>) -> Result<Resolved> {
    let (current, expires_at) = current_number(view, key, parse_integer, (0, NOT_AN_INTEGER))?;
    let next = current
        .checked_add(by)
        .ok_or_else(|| rejected("increment or decrement would overflow"))?;
    Ok((
        vec![put(key, next.to_string().into_bytes(), expires_at)],
        Outcome::Int(next),
    ))
}

fn incr_by_float(key: &[u8], by: f64, view: &mut View<'_>) -> Result<Resolved> {
    let (current, expires_at) = current_number(view, key, parse_float, (0.0, NOT_A_FLOAT))?;
    let next = current + by;
    if !next.is_finite() {
        return Err(rejected("increment would produce NaN or Infinity"));
    }
    let text = format_float(next).into_bytes();
    Ok((
        vec![put(key, text.clone(), expires_at)],
        Outcome::Bulk(Some(text)),
    ))
}

fn set_range(key: &[u8], offset: usize, value: &[u8], view: &mut View<'_>) -> Result<Resolved> {
    let (old, expires_at) = current(view, key)?;
    if value.is_empty() {
        // Nothing to write: the length as it is, and no key created.
        let length = old.as_ref().map_or(0, Vec::len);
        return Ok((Vec::new(), Outcome::Int(len(length))));
    }
    let end = offset
        .checked_add(value.len())
        .ok_or_else(|| rejected(TOO_LONG))?;
    check_value_size(end).map_err(|_| rejected(TOO_LONG))?;
    let mut bytes = old.unwrap_or_default();
    if bytes.len() < end {
        bytes.resize(end, 0);
    }
    bytes[offset..end].copy_from_slice(value);
    let length = bytes.len();
    Ok((vec![put(key, bytes, expires_at)], Outcome::Int(len(length))))
}

fn rename(from: Bytes, to: Bytes, nx: bool, view: &mut View<'_>) -> Result<Resolved> {
    let Some(source) = view.live(&from)? else {
        return Err(rejected("no such key"));
    };
    let done = match nx {
        true => Outcome::Int(1),
        false => Outcome::Ok,
    };
    if from == to {
        let outcome = match nx {
            true => Outcome::Int(0),
            false => Outcome::Ok,
        };
        return Ok((Vec::new(), outcome));
    }
    if nx && view.live(&to)?.is_some() {
        return Ok((Vec::new(), Outcome::Int(0)));
    }
    let moved = put(&to, source.value, source.expires_at);
    Ok((vec![Op::Delete { key: from }, moved], done))
}

/// A 64-bit integer as Redis reads one: optional `-`, digits, no spaces or `+`, no
/// leading zeros (but `0`).
pub fn parse_integer(bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && text != "-0";
    plain.then(|| text.parse().ok()).flatten()
}

/// A float as Redis reads one: no spaces, not NaN.
pub fn parse_float(bytes: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let trimmed = text.trim();
    if trimmed.len() != text.len() || text.is_empty() {
        return None;
    }
    let value: f64 = text.parse().ok()?;
    (!value.is_nan()).then_some(value)
}

/// A float as `INCRBYFLOAT` answers it: no exponent, no trailing zeros, 15 significant
/// digits. Redis computes in a long double and prints 17 digits, which for sums such as
/// 0.1 + 0.2 gives `0.3`; a double has about 16, so kv rounds to 15 to answer the same.
pub fn format_float(value: f64) -> String {
    let magnitude = if value == 0.0 {
        0
    } else {
        value.abs().log10().floor() as i64
    };
    let decimals = usize::try_from(14 - magnitude).unwrap_or(0);
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        text = text.trim_end_matches('0').trim_end_matches('.').to_string();
    }
    if text == "-0" {
        text = "0".into();
    }
    text
}

#[cfg(test)]
mod tests;
