//! The write commands that need no read (`SET key value`, `MSET`, `DEL`, `UNLINK`): which commands write, and the ops and reply
//! a request stands for. A write's keys and values are the request's own buffers, moved,
//! not copied; how a connection pipelines them is [`super::pipeline`].

use super::args::{arity, text};
use crate::store::Op;

/// A parsed write command.
pub struct Write {
    /// What it does, committed atomically.
    pub ops: Vec<Op>,
    /// What it answers once durable.
    pub reply: WriteReply,
}

/// The reply a durable write gets.
#[derive(Clone, Copy, Debug)]
pub enum WriteReply {
    /// `+OK` (SET, MSET).
    Ok,
    /// The number of keys removed (DEL).
    Removed,
}

/// Whether `name` is a write command.
pub fn is_write(name: &str) -> bool {
    matches!(name, "SET" | "MSET" | "DEL" | "UNLINK")
}

/// The write `name args` stands for (`args` without the name), or its error reply.
pub fn parse(name: &str, args: Vec<Vec<u8>>) -> Result<Write, String> {
    match (name, args.len()) {
        ("SET", 2) => {
            let mut args = args.into_iter().map(text);
            let (Some(key), Some(value)) = (args.next(), args.next()) else {
                return Err(arity(name));
            };
            Ok(Write {
                ops: vec![Op::put(key?, value?)],
                reply: WriteReply::Ok,
            })
        }
        ("MSET", n) if n > 0 && n % 2 == 0 => {
            let mut texts = args.into_iter().map(text);
            let mut ops = Vec::with_capacity(n / 2);
            while let (Some(key), Some(value)) = (texts.next(), texts.next()) {
                ops.push(Op::put(key?, value?));
            }
            Ok(Write {
                ops,
                reply: WriteReply::Ok,
            })
        }
        ("DEL" | "UNLINK", n) if n > 0 => {
            let ops = args
                .into_iter()
                .map(|key| Ok(Op::Delete { key: text(key)? }))
                .collect::<Result<_, String>>()?;
            Ok(Write {
                ops,
                reply: WriteReply::Removed,
            })
        }
        _ => Err(arity(name)),
    }
}
