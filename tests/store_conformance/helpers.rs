//! Helpers shared by the conformance cases: op and entry builders, primary-side `put` and
//! `del`, whole-store and whole-log reads, draining a snapshot into its chunks, the
//! observable `State` of a store, installing a snapshot from a list of chunks, and two
//! fixed history ids. Keys and values are bytes; the builders take text (or bytes) and
//! convert, so most cases read as text.

use kv::store::{Bytes, KvStore, LogEntry, Op, Pair, Record, Snapshot};

/// Large enough to mean "everything" in these tests without relying on `usize::MAX`
/// (which `scan_limit_edges` tests on its own).
pub const ALL: usize = 100_000;

/// `text`'s bytes: a key or a value written as text.
pub fn b(text: &str) -> Bytes {
    text.as_bytes().to_vec()
}

/// Each of `list` as bytes, to compare with the keys a store returns.
pub fn bytes(list: &[&str]) -> Vec<Bytes> {
    list.iter().map(|text| b(text)).collect()
}

/// A put of `value` that never expires; key and value as text or as bytes.
pub fn put_op(key: &(impl AsRef<[u8]> + ?Sized), value: &(impl AsRef<[u8]> + ?Sized)) -> Op {
    Op::Put {
        key: key.as_ref().to_vec(),
        value: value.as_ref().to_vec(),
        expires_at: None,
    }
}

pub fn del_op(key: &(impl AsRef<[u8]> + ?Sized)) -> Op {
    Op::Delete {
        key: key.as_ref().to_vec(),
    }
}

pub fn entry(seq: u64, op: Op) -> LogEntry {
    LogEntry { seq, op }
}

/// Text pairs as the byte pairs a store holds.
pub fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
    list.iter().map(|(k, v)| (b(k), b(v))).collect()
}

/// The keys of `pairs`, as text (every key of a case that calls it is UTF-8).
pub fn keys(pairs: &[Pair]) -> Vec<&str> {
    pairs
        .iter()
        .map(|(k, _)| std::str::from_utf8(k).expect("a UTF-8 key"))
        .collect()
}

/// Primary put that must be logged; returns its seq.
pub fn put<S, K, V>(store: &S, key: &K, value: &V) -> u64
where
    S: KvStore,
    K: AsRef<[u8]> + ?Sized,
    V: AsRef<[u8]> + ?Sized,
{
    store
        .append(&put_op(key, value))
        .expect("append put")
        .expect("a put always gets a seq")
}

/// Primary delete; `None` when the key was absent.
pub fn del<S: KvStore>(store: &S, key: &(impl AsRef<[u8]> + ?Sized)) -> Option<u64> {
    store.append(&del_op(key)).expect("append delete")
}

pub fn contents<S: KvStore>(store: &S) -> Vec<Pair> {
    store.scan(b"", None, ALL).expect("scan everything")
}

pub fn whole_log<S: KvStore>(store: &S) -> Vec<LogEntry> {
    store.log_since(0, ALL).expect("read the whole log")
}

/// Reads a snapshot to the end, returning its chunks (none of them empty).
pub fn drain(
    snapshot: &mut dyn Snapshot,
    max_entries: usize,
    max_bytes: usize,
) -> Vec<Vec<Record>> {
    let mut chunks = Vec::new();
    for _ in 0..10_000 {
        let chunk = snapshot
            .next_chunk(max_entries, max_bytes)
            .expect("read a snapshot chunk");
        if chunk.is_empty() {
            // Done stays done.
            let again = snapshot
                .next_chunk(max_entries, max_bytes)
                .expect("read past the end of a snapshot");
            assert!(again.is_empty(), "a finished snapshot yielded {again:?}");
            return chunks;
        }
        chunks.push(chunk);
    }
    panic!("snapshot never ended");
}

/// The pairs of `chunks`, in order (their expiries left out).
pub fn flatten(chunks: Vec<Vec<Record>>) -> Vec<Pair> {
    chunks.into_iter().flat_map(pairs_of).collect()
}

/// The pairs of one chunk (expiries left out).
pub fn pairs_of(chunk: Vec<Record>) -> Vec<Pair> {
    chunk
        .into_iter()
        .map(|record| (record.key, record.value))
        .collect()
}

pub fn pair_bytes(pair: &Record) -> usize {
    pair.size()
}

/// Everything observable about a store, to prove that a rejected operation changed nothing.
#[derive(Debug, PartialEq)]
pub struct State {
    pub contents: Vec<Pair>,
    pub head: u64,
    pub oldest: Option<u64>,
    pub log: Vec<LogEntry>,
    pub history: Option<String>,
}

pub fn state<S: KvStore>(store: &S) -> State {
    State {
        contents: contents(store),
        head: store.head_seq().expect("head_seq"),
        oldest: store.position().expect("position").oldest_log,
        log: whole_log(store),
        history: store.history_id().expect("history_id"),
    }
}

pub type SourceResult = kv::Result<Option<Vec<Record>>>;

/// `chunks` as rows without expiry.
pub fn records(chunks: Vec<Vec<Pair>>) -> Vec<Vec<Record>> {
    let chunks = chunks.into_iter();
    chunks
        .map(|chunk| chunk.into_iter().map(Record::from).collect())
        .collect()
}

/// Installs `chunks` (in that order) into `store` as history `history` at `seq`.
pub fn install<S: KvStore>(store: &S, history: &str, seq: u64, chunks: Vec<Vec<Pair>>) -> u64 {
    install_records(store, history, seq, records(chunks))
}

/// [`install`] of rows that may expire.
pub fn install_records<S: KvStore>(
    store: &S,
    history: &str,
    seq: u64,
    chunks: Vec<Vec<Record>>,
) -> u64 {
    let mut chunks = chunks.into_iter();
    let mut source = move || -> SourceResult { Ok(chunks.next()) };
    store
        .install_snapshot(history, seq, &mut source)
        .expect("install a snapshot")
}

pub fn is_history_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

pub const HISTORY_A: &str = "0123456789abcdef0123456789abcdef";
pub const HISTORY_B: &str = "fedcba9876543210fedcba9876543210";
