//! The write commands that need no read (`SET key value`, `MSET`): which commands write, and the ops and reply
//! a request stands for. A write's keys and values are the request's own buffers, moved,
//! not copied; how a connection pipelines them is [`super::pipeline`].

use super::args::arity;
use crate::store::{Bytes, Op};

/// A parsed write command.
pub struct Write {
    /// What it does, committed atomically; answered `+OK` once durable.
    pub ops: Vec<Op>,
}

/// Whether `name` is a write command.
pub fn is_write(name: &str) -> bool {
    matches!(name, "SET" | "MSET")
}

/// A put of one key: `SET key value` (with a time, `SET … EX`, `SETEX`).
pub fn put(key: Bytes, value: Bytes, expires_at: Option<u64>) -> Write {
    Write {
        ops: vec![Op::Put {
            key,
            value,
            expires_at,
        }],
    }
}

/// The write `MSET args` stands for, or its error reply (`SET` is parsed with its options
/// in [`super::changes::parse_set`]).
pub fn parse(name: &str, args: Vec<Vec<u8>>) -> Result<Write, String> {
    match (name, args.len()) {
        ("MSET", n) if n > 0 && n % 2 == 0 => {
            let mut args = args.into_iter();
            let mut ops = Vec::with_capacity(n / 2);
            while let (Some(key), Some(value)) = (args.next(), args.next()) {
                ops.push(Op::put(key, value));
            }
            Ok(Write { ops })
        }
        _ => Err(arity(name)),
    }
}
