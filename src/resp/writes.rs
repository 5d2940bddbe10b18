//! The write commands that need no read (`SET key value`, `MSET`): which commands write, and the ops and reply
//! a request stands for. A write's keys and values are the request's own buffers, moved,
//! not copied; how a connection pipelines them is [`super::pipeline`].

use super::args::arity;
use crate::store::Op;

/// A parsed write command.
pub struct Write {
    /// What it does, committed atomically; answered `+OK` once durable.
    pub ops: Vec<Op>,
}

/// Whether `name` is a write command.
pub fn is_write(name: &str) -> bool {
    matches!(name, "SET" | "MSET")
}

/// The write `name args` stands for (`args` without the name), or its error reply.
pub fn parse(name: &str, args: Vec<Vec<u8>>) -> Result<Write, String> {
    match (name, args.len()) {
        ("SET", 2) => {
            let mut args = args.into_iter();
            let (Some(key), Some(value)) = (args.next(), args.next()) else {
                return Err(arity(name));
            };
            Ok(Write {
                ops: vec![Op::put(key, value)],
            })
        }
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
