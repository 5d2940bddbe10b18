//! What every command shares: error replies in Redis's words, and turning arguments into
//! kv's keys and values.

use crate::error::Error;

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

/// A key or value as text (they are SQLite TEXT), without copying it; or the error reply.
pub fn text(arg: Vec<u8>) -> Result<String, String> {
    String::from_utf8(arg)
        .map_err(|_| err("keys and values must be valid UTF-8 (kv stores them as SQLite TEXT)"))
}

/// A borrowed argument as text (copied).
pub fn text_of(arg: &[u8]) -> Result<String, String> {
    text(arg.to_vec())
}

/// Several borrowed arguments as text.
pub fn texts_of(args: &[Vec<u8>]) -> Result<Vec<String>, String> {
    args.iter().map(|a| text_of(a)).collect()
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
