//! The one rule of every bounded batch the store hands out: snapshot chunks and log
//! batches hold at most so many items and so many bytes of keys and values, but always
//! at least one item, so one pair larger than the bound travels alone.

use super::{LogEntry, Record};
use crate::error::Result;

/// Takes pairs from `pairs` into one snapshot chunk: at most `max_entries`, and at most
/// `max_bytes` of keys and values, except that the first pair is always taken (a pair
/// larger than `max_bytes` travels alone). A pair that would overflow the chunk is left
/// in `pairs` (peeked, not taken), so the source resumes exactly where the chunk ended.
pub fn fill_chunk<I: Iterator<Item = Result<Record>>>(
    pairs: &mut std::iter::Peekable<I>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<Record>> {
    take_bounded(pairs, max_entries.max(1), max_bytes, Record::size)
}

/// Takes entries from `entries` while they fit: at most `max_entries`, and at most
/// `max_bytes` of keys and values once the first is taken ([`KvStore::log_batch`](super::KvStore::log_batch)).
pub fn fill_log_batch(
    entries: impl Iterator<Item = Result<LogEntry>>,
    max_entries: usize,
    max_bytes: usize,
) -> Result<Vec<LogEntry>> {
    take_bounded(&mut entries.peekable(), max_entries, max_bytes, |entry| {
        entry.op.size()
    })
}

/// The one rule of both bounds above: up to `max_items` items, stopping before the item
/// that would take the total `size` past `max_bytes`, but always taking the first.
fn take_bounded<T, I: Iterator<Item = Result<T>>>(
    items: &mut std::iter::Peekable<I>,
    max_items: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Result<Vec<T>> {
    let mut taken = Vec::new();
    let mut bytes = 0usize;
    while taken.len() < max_items {
        let next_size = match items.peek() {
            None => break,
            Some(Ok(item)) => size(item),
            Some(Err(_)) => 0, // taken below, to return the error
        };
        if !taken.is_empty() && bytes.saturating_add(next_size) > max_bytes {
            break;
        }
        let Some(item) = items.next() else { break };
        taken.push(item?);
        bytes = bytes.saturating_add(next_size);
    }
    Ok(taken)
}
