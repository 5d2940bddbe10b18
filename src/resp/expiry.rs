//! Expiry on the client port: the times `EX`/`PX`/`EXAT`/`PXAT`, `SETEX`, `PSETEX`, `GETEX`
//! and `EXPIRE`'s family give, turned into an absolute time (ms since the Unix epoch) with
//! Redis's checks and words; those commands parsed into writes; and the reads `TTL`,
//! `PTTL`, `EXPIRETIME` and `PEXPIRETIME`. The writer decides what each write does to the
//! key (see [`crate::node::compute`]).

use super::args::{arity, err, integer, Reply};
use super::commands::point_read;
use super::output::Output;
use super::reply;
use super::writes::{self, Write};
use crate::node::compute::{Change, ExpireIf, NewExpiry, When};
use crate::node::Node;
use crate::store::expiry::is_live;
use crate::store::now_ms;

/// How a command states a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// Seconds from now (`EX`, `EXPIRE`, `SETEX`).
    Seconds,
    /// Milliseconds from now (`PX`, `PEXPIRE`, `PSETEX`).
    Millis,
    /// A Unix time in seconds (`EXAT`, `EXPIREAT`).
    UnixSeconds,
    /// A Unix time in milliseconds (`PXAT`, `PEXPIREAT`).
    UnixMillis,
}

impl Unit {
    /// The unit of an option word (`EX`, `PX`, `EXAT`, `PXAT`).
    fn of_option(word: &[u8]) -> Option<Unit> {
        match word.to_ascii_uppercase().as_slice() {
            b"EX" => Some(Unit::Seconds),
            b"PX" => Some(Unit::Millis),
            b"EXAT" => Some(Unit::UnixSeconds),
            b"PXAT" => Some(Unit::UnixMillis),
            _ => None,
        }
    }
}

/// Redis's words for a time out of range.
fn invalid(command: &str) -> String {
    err(format!(
        "invalid expire time in '{}' command",
        command.to_ascii_lowercase()
    ))
}

/// The absolute time (ms since the Unix epoch, 0 for any time before it) `amount` in
/// `unit` stands for at `now`. `SET`, `SETEX` and `GETEX` (`positive`) refuse zero and
/// negative amounts; `EXPIRE` takes them (the key goes at once).
pub fn deadline(
    amount: &[u8],
    unit: Unit,
    now: u64,
    command: &str,
    positive: bool,
) -> Result<u64, String> {
    let amount = integer(amount)?;
    if positive && amount <= 0 {
        return Err(invalid(command));
    }
    let millis = match unit {
        Unit::Seconds | Unit::UnixSeconds => amount.checked_mul(1000),
        Unit::Millis | Unit::UnixMillis => Some(amount),
    };
    let base = match unit {
        Unit::Seconds | Unit::Millis => i64::try_from(now).unwrap_or(i64::MAX),
        Unit::UnixSeconds | Unit::UnixMillis => 0,
    };
    let at = millis
        .and_then(|millis| millis.checked_add(base))
        .ok_or_else(|| invalid(command))?;
    Ok(u64::try_from(at).unwrap_or(0))
}

/// The options of `SET` (`NX`, `XX`, `GET`, `KEEPTTL`, `EX`…) or of `GETEX` (`PERSIST`,
/// `EX`…), parsed as Redis parses them: every word first (a conflict, an unknown word or
/// a missing time is a syntax error; a word repeated is not a conflict, and the last
/// time wins), then the time. Returns when a `SET` applies, whether it answers the old
/// value, and the expiry it leaves (`Keep` for `GETEX`: none of its words given).
pub fn parse_options(
    command: &str,
    options: &[Vec<u8>],
) -> Result<(When, bool, NewExpiry), String> {
    let set = command == "SET";
    let syntax = || err("syntax error");
    let (mut when, mut get, mut keep, mut persist) = (When::Always, false, false, false);
    let mut timed: Option<(Unit, &[u8])> = None;
    let mut at = 0;
    while at < options.len() {
        let word = options[at].to_ascii_uppercase();
        match word.as_slice() {
            b"NX" if set && when != When::Present => when = When::Absent,
            b"XX" if set && when != When::Absent => when = When::Present,
            b"GET" if set => get = true,
            b"KEEPTTL" if set && timed.is_none() => keep = true,
            b"PERSIST" if !set && timed.is_none() => persist = true,
            word => {
                let unit = Unit::of_option(word).ok_or_else(syntax)?;
                let amount = options.get(at + 1).ok_or_else(syntax)?;
                if keep || persist || timed.is_some_and(|(other, _)| other != unit) {
                    return Err(syntax());
                }
                timed = Some((unit, amount));
                at += 1;
            }
        }
        at += 1;
    }
    let expiry = match (timed, keep, persist) {
        (Some((unit, amount)), _, _) => {
            NewExpiry::At(deadline(amount, unit, now_ms(), command, true)?)
        }
        (None, true, _) => NewExpiry::Keep,
        (None, _, true) => NewExpiry::Never,
        (None, false, false) if set => NewExpiry::Never,
        (None, false, false) => NewExpiry::Keep,
    };
    Ok((when, get, expiry))
}

/// `SETEX key seconds value`, `PSETEX key milliseconds value`: a plain put that expires.
pub fn setex(name: &str, args: Vec<Vec<u8>>) -> Result<Write, String> {
    let [key, amount, value]: [Vec<u8>; 3] = args.try_into().map_err(|_| arity(name))?;
    let unit = match name {
        "SETEX" => Unit::Seconds,
        _ => Unit::Millis,
    };
    let at = deadline(&amount, unit, now_ms(), name, true)?;
    Ok(writes::put(key, value, Some(at)))
}

/// `EXPIRE key time [NX|XX|GT|LT]` and its kin (`PEXPIRE`, `EXPIREAT`, `PEXPIREAT`).
pub fn expire(name: &str, args: Vec<Vec<u8>>) -> Result<Change, String> {
    let [key, amount, options @ ..] = args.as_slice() else {
        return Err(arity(name));
    };
    let mut when = ExpireIf::default();
    for option in options {
        match option.to_ascii_uppercase().as_slice() {
            b"NX" => when.nx = true,
            b"XX" => when.xx = true,
            b"GT" => when.gt = true,
            b"LT" => when.lt = true,
            _ => {
                let word = String::from_utf8_lossy(option);
                return Err(err(format!("Unsupported option {word}")));
            }
        }
    }
    check_conditions(when)?;
    let unit = match name {
        "EXPIRE" => Unit::Seconds,
        "PEXPIRE" => Unit::Millis,
        "EXPIREAT" => Unit::UnixSeconds,
        _ => Unit::UnixMillis,
    };
    let at = deadline(amount, unit, now_ms(), name, false)?;
    Ok(Change::Expire {
        key: key.to_vec(),
        at,
        when,
    })
}

/// Refuses the `EXPIRE` conditions that cannot hold together, in Redis's words.
fn check_conditions(when: ExpireIf) -> Result<(), String> {
    if when.nx && (when.xx || when.gt || when.lt) {
        return Err(err(
            "NX and XX, GT or LT options at the same time are not compatible",
        ));
    }
    if when.gt && when.lt {
        return Err(err("GT and LT options at the same time are not compatible"));
    }
    Ok(())
}

/// `GETEX key EX|PX|EXAT|PXAT time` or `GETEX key PERSIST`; `None` for a plain `GETEX
/// key`, a read.
pub fn getex(args: &[Vec<u8>]) -> Option<Result<Change, String>> {
    let [key, options @ ..] = args else {
        return Some(Err(arity("GETEX")));
    };
    if options.is_empty() {
        return None;
    }
    Some(
        parse_options("GETEX", options).map(|(_, _, expiry)| Change::GetEx {
            key: key.to_vec(),
            expiry,
        }),
    )
}

/// `PERSIST key`.
pub fn persist(args: Vec<Vec<u8>>) -> Result<Change, String> {
    let [key]: [Vec<u8>; 1] = args.try_into().map_err(|_| arity("PERSIST"))?;
    Ok(Change::Persist { key })
}

/// What `TTL` (`PTTL`, `EXPIRETIME`, `PEXPIRETIME`) answers for a row of that expiry
/// (`None`: no row) at `now`: -2 for a key that is absent or expired, -1 for one without
/// an expiry; otherwise the time left (or the time itself), in seconds rounded as Redis
/// rounds them or in ms.
pub fn ttl_answer(name: &str, row: Option<Option<u64>>, now: u64) -> i64 {
    let Some(expiry) = row.filter(|&expiry| is_live(expiry, now)) else {
        return -2;
    };
    let Some(at) = expiry else {
        return -1;
    };
    let (absolute, millis) = match name {
        "TTL" => (false, false),
        "PTTL" => (false, true),
        "EXPIRETIME" => (true, false),
        _ => (true, true),
    };
    let time = if absolute { at } else { at.saturating_sub(now) };
    let time = if millis {
        time
    } else {
        time.saturating_add(500) / 1000
    };
    i64::try_from(time).unwrap_or(i64::MAX)
}

/// `TTL key`, `PTTL key`, `EXPIRETIME key`, `PEXPIRETIME key`.
pub async fn ttl(node: &Node, name: &str, key: &[u8], out: &mut Output) -> Reply {
    let key = key.to_vec();
    let row = point_read(node, 1, move |store| store.row_expiry(&key)).await?;
    reply::integer(out.buffer(), ttl_answer(name, row, now_ms()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::compute::NOT_AN_INTEGER;

    const NOW: u64 = 1_700_000_000_000;

    #[test]
    fn times_become_absolute_with_redis_checks() {
        let at =
            |amount: &str, unit, positive| deadline(amount.as_bytes(), unit, NOW, "set", positive);
        assert_eq!(at("10", Unit::Seconds, true), Ok(NOW + 10_000));
        assert_eq!(at("10", Unit::Millis, true), Ok(NOW + 10));
        assert_eq!(at("10", Unit::UnixSeconds, true), Ok(10_000));
        assert_eq!(at("10", Unit::UnixMillis, true), Ok(10));
        let invalid = Err("ERR invalid expire time in 'set' command".to_string());
        assert_eq!(at("0", Unit::Seconds, true), invalid);
        assert_eq!(at("-1", Unit::Millis, true), invalid);
        assert_eq!(at(&i64::MAX.to_string(), Unit::Seconds, true), invalid);
        assert_eq!(at(&i64::MAX.to_string(), Unit::Millis, true), invalid);
        assert_eq!(at("x", Unit::Seconds, true), Err(err(NOT_AN_INTEGER)));
        // EXPIRE takes a time in the past: the key goes at once.
        assert_eq!(at("-5", Unit::Seconds, false), Ok(NOW - 5000));
        assert_eq!(at("-5", Unit::UnixSeconds, false), Ok(0));
    }

    #[test]
    fn conditions_combine_as_redis_allows() {
        let when = |nx, xx, gt, lt| check_conditions(ExpireIf { nx, xx, gt, lt });
        assert!(when(false, true, true, false).is_ok());
        assert!(when(false, true, false, true).is_ok());
        assert!(when(true, true, false, false).is_err());
        assert!(when(true, false, true, false).is_err());
        assert!(when(false, false, true, true).is_err());
    }

    #[test]
    fn ttl_answers_as_redis_rounds() {
        assert_eq!(ttl_answer("TTL", None, NOW), -2);
        assert_eq!(ttl_answer("TTL", Some(None), NOW), -1);
        assert_eq!(ttl_answer("PTTL", Some(Some(NOW)), NOW), -2);
        let soon = Some(Some(NOW + 1_499));
        assert_eq!(ttl_answer("TTL", soon, NOW), 1);
        assert_eq!(ttl_answer("PTTL", soon, NOW), 1_499);
        assert_eq!(ttl_answer("PEXPIRETIME", soon, NOW), (NOW + 1_499) as i64);
        assert_eq!(
            ttl_answer("EXPIRETIME", soon, NOW),
            (NOW + 1_499 + 500) as i64 / 1000
        );
    }
}
