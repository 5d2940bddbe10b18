//! What every command shares: error replies in Redis's words, and reading an argument
//! that must be text (a number, a host name); keys and values are bytes, taken as sent.

use crate::error::Error;
use crate::node::compute::{parse_integer, NOT_AN_INTEGER};

/// A command's failure, sent as the error reply (code and message).
pub type Reply = Result<(), String>;

/// `ERR text`.
pub fn err(text: impl Into<String>) -> String {
    format!("ERR {}", text.into())
}

/// Redis's reply to a command with the wrong number of arguments.
pub fn arity(name: &str) -> String {
    err(format!(
        "wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// An argument that must be a 64-bit integer, read as Redis reads one; or Redis's error.
pub fn integer(arg: &[u8]) -> Result<i64, String> {
    parse_integer(arg).ok_or_else(|| err(NOT_AN_INTEGER))
}

/// An argument read as a number, if it is one.
pub fn number<T: std::str::FromStr>(arg: &[u8]) -> Option<T> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

/// An argument that must be text (a host name, a client name), copied; or the error reply.
pub fn text_of(arg: &[u8]) -> Result<String, String> {
    String::from_utf8(arg.to_vec()).map_err(|_| err("argument is not valid UTF-8"))
}

/// The error reply for a store or node error.
pub fn store_error(e: Error) -> String {
    match e {
        Error::ReadOnly(_) => "READONLY You can't write against a read only replica.".into(),
        // Still READONLY (clients re-route on it), with kv's reason.
        Error::Fenced(reason) => format!("READONLY {reason}"),
        Error::NoReplicas(_) => "NOREPLICAS Not enough good replicas to write.".into(),
        other => err(other.to_string()),
    }
}
