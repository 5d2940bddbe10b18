//! The write commands whose effect depends on the data (`INCR`, `SET … NX|XX|GET`,
//! `SETNX`, `GETSET`, `GETDEL`, `MSETNX`, `APPEND`, `SETRANGE`, `RENAME`, `RENAMENX`,
//! `COPY`, `FLUSHDB`, `FLUSHALL`, and those of [`expiry`]): parsed here into a [`Change`]
//! the writer resolves atomically (see [`crate::node::compute`]), with Redis's argument
//! errors; and how its [`Outcome`] is answered.

use super::args::{arity, err, integer};
use super::expiry;
use super::reply;
use super::writes::{self, Write};
use crate::node::compute::{parse_float, Change, NewExpiry, Outcome, When, NOT_A_FLOAT};
use bytes::BytesMut;

/// Whether `name` is one of these commands.
pub fn is_change(name: &str) -> bool {
    matches!(
        name,
        "INCR"
            | "DECR"
            | "INCRBY"
            | "DECRBY"
            | "INCRBYFLOAT"
            | "APPEND"
            | "SETRANGE"
            | "SETNX"
            | "GETSET"
            | "GETDEL"
            | "MSETNX"
            | "RENAME"
            | "RENAMENX"
            | "COPY"
            | "FLUSHDB"
            | "FLUSHALL"
            | "EXPIRE"
            | "PEXPIRE"
            | "EXPIREAT"
            | "PEXPIREAT"
            | "PERSIST"
            | "SETEX"
            | "PSETEX"
            | "DEL"
            | "UNLINK"
    )
}

/// Whether `name args` is one of these writes: `GETEX` is one only with an option.
pub fn is_change_call(name: &str, args: &[Vec<u8>]) -> bool {
    is_change(name) || (name == "GETEX" && args.len() > 1)
}

/// How an outcome is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// As it is.
    AsIs,
    /// `SETNX`: `:1` when set, `:0` when not.
    Done,
}

/// A parsed change and how to answer it.
pub struct Parsed {
    /// What the writer resolves.
    pub change: Change,
    /// How its outcome is answered.
    pub answer: Answer,
}

/// Appends the reply for `outcome`.
pub fn answer(out: &mut BytesMut, outcome: Outcome, answer: Answer) {
    match (outcome, answer) {
        (Outcome::Ok, Answer::Done) => reply::integer(out, 1),
        (Outcome::Nil, Answer::Done) => reply::integer(out, 0),
        (Outcome::Ok, _) => reply::simple(out, "OK"),
        (Outcome::Nil, _) => reply::bulk(out, None),
        (Outcome::Int(n), _) => reply::integer(out, n),
        (Outcome::Bulk(value), _) => reply::bulk(out, value.as_deref()),
    }
}

/// Exactly `N` arguments, or Redis's arity error.
fn exactly<const N: usize>(name: &str, args: Vec<Vec<u8>>) -> Result<[Vec<u8>; N], String> {
    args.try_into().map_err(|_| arity(name))
}

impl Parsed {
    /// A change answered as its outcome is.
    pub fn plain(change: Change) -> Parsed {
        Parsed {
            change,
            answer: Answer::AsIs,
        }
    }
}

fn parsed(change: Change) -> Result<Parsed, String> {
    Ok(Parsed::plain(change))
}

/// The change `name args` stands for (`args` without the name), or its error reply.
pub fn parse(name: &str, args: Vec<Vec<u8>>) -> Result<Parsed, String> {
    match name {
        "INCR" | "DECR" => {
            let [key] = exactly(name, args)?;
            let by = if name == "INCR" { 1 } else { -1 };
            parsed(Change::IncrBy { key, by })
        }
        "INCRBY" | "DECRBY" => {
            if args.len() != 2 {
                return Err(arity(name));
            }
            let by = integer(&args[1])?;
            let [key, _] = exactly(name, args)?;
            let by = match name {
                "INCRBY" => by,
                _ => by
                    .checked_neg()
                    .ok_or_else(|| err("decrement would overflow"))?,
            };
            parsed(Change::IncrBy { key, by })
        }
        "INCRBYFLOAT" => {
            let [key, by] = exactly(name, args)?;
            let by = parse_float(&by).ok_or_else(|| err(NOT_A_FLOAT))?;
            if !by.is_finite() {
                return Err(err("increment would produce NaN or Infinity"));
            }
            parsed(Change::IncrByFloat { key, by })
        }
        "APPEND" => {
            let [key, value] = exactly(name, args)?;
            parsed(Change::Append { key, value })
        }
        "SETRANGE" => {
            if args.len() != 3 {
                return Err(arity(name));
            }
            let offset = integer(&args[1])?;
            let offset = usize::try_from(offset).map_err(|_| err("offset is out of range"))?;
            let [key, _, value] = exactly(name, args)?;
            parsed(Change::SetRange { key, offset, value })
        }
        "SETNX" | "GETSET" => {
            let [key, value] = exactly(name, args)?;
            let (when, get, answer) = match name {
                "SETNX" => (When::Absent, false, Answer::Done),
                _ => (When::Always, true, Answer::AsIs),
            };
            let change = Change::Set {
                key,
                value,
                when,
                get,
                expiry: NewExpiry::Never,
            };
            Ok(Parsed { change, answer })
        }
        "GETDEL" => {
            let [key] = exactly(name, args)?;
            parsed(Change::GetDel { key })
        }
        "MSETNX" if !args.is_empty() && args.len().is_multiple_of(2) => {
            let mut args = args.into_iter();
            let mut pairs = Vec::new();
            while let (Some(key), Some(value)) = (args.next(), args.next()) {
                pairs.push((key, value));
            }
            parsed(Change::MSetNx { pairs })
        }
        "RENAME" | "RENAMENX" => {
            let [from, to] = exactly(name, args)?;
            let nx = name == "RENAMENX";
            parsed(Change::Rename { from, to, nx })
        }
        "COPY" if args.len() >= 2 => copy(args),
        "DEL" | "UNLINK" if !args.is_empty() => parsed(Change::Del { keys: args }),
        "EXPIRE" | "PEXPIRE" | "EXPIREAT" | "PEXPIREAT" => {
            expiry::expire(name, args).map(Parsed::plain)
        }
        "PERSIST" => expiry::persist(args).map(Parsed::plain),
        "GETEX" => match expiry::getex(&args) {
            Some(change) => change.map(Parsed::plain),
            None => Err(arity(name)),
        },
        // kv writes every flush in the writer's transaction: ASYNC is SYNC.
        "FLUSHDB" | "FLUSHALL" => match args.as_slice() {
            [] => parsed(Change::Flush),
            [mode] if mode.eq_ignore_ascii_case(b"ASYNC") || mode.eq_ignore_ascii_case(b"SYNC") => {
                parsed(Change::Flush)
            }
            _ => Err(err("syntax error")),
        },
        _ => Err(arity(name)),
    }
}

/// `COPY source destination [DB 0] [REPLACE]`: kv has one database.
fn copy(args: Vec<Vec<u8>>) -> Result<Parsed, String> {
    let mut args = args.into_iter();
    let (Some(from), Some(to)) = (args.next(), args.next()) else {
        return Err(arity("COPY"));
    };
    let mut replace = false;
    while let Some(option) = args.next() {
        match option.to_ascii_uppercase().as_slice() {
            b"REPLACE" => replace = true,
            b"DB" => match args.next() {
                Some(db) if db == b"0" => {}
                Some(_) => return Err(err("DB index is out of range")),
                None => return Err(err("syntax error")),
            },
            _ => return Err(err("syntax error")),
        }
    }
    parsed(Change::Copy { from, to, replace })
}

/// A write command, parsed: each kind with its error reply if it is malformed.
pub enum Parsing {
    /// A write that needs no read (`SET key value`, `MSET`, `DEL`, `UNLINK`).
    Plain(Result<Write, String>),
    /// A write that depends on the data (see [`Change`]).
    Change(Result<Parsed, String>),
}

/// Parses the write command `name args` (`args` without the name).
pub fn parse_write(name: &str, args: Vec<Vec<u8>>) -> Parsing {
    match name {
        "SET" => parse_set(args),
        "SETEX" | "PSETEX" => Parsing::Plain(expiry::setex(name, args)),
        name if is_change_call(name, &args) => Parsing::Change(parse(name, args)),
        _ => Parsing::Plain(writes::parse(name, args)),
    }
}

/// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT time|KEEPTTL]`. Only a set that reads
/// the key is a change: one with a new expiry, or none, and nothing else is a plain put
/// (its key and value moved from the request, not copied).
pub fn parse_set(args: Vec<Vec<u8>>) -> Parsing {
    let mut args = args.into_iter();
    let (Some(key), Some(value)) = (args.next(), args.next()) else {
        return Parsing::Plain(Err(arity("SET")));
    };
    let options: Vec<Vec<u8>> = args.collect();
    match expiry::parse_options("SET", &options) {
        Err(e) => Parsing::Change(Err(e)),
        Ok((When::Always, false, NewExpiry::Never)) => {
            Parsing::Plain(Ok(writes::put(key, value, None)))
        }
        Ok((When::Always, false, NewExpiry::At(at))) => {
            Parsing::Plain(Ok(writes::put(key, value, Some(at))))
        }
        Ok((when, get, expiry)) => Parsing::Change(parsed(Change::Set {
            key,
            value,
            when,
            get,
            expiry,
        })),
    }
}
