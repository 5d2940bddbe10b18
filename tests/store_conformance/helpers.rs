//! Helpers shared by the conformance cases: op and entry builders, primary-side `put` and
//! `del`, whole-store and whole-log reads, draining a snapshot into its chunks, the
//! observable `State` of a store, installing a snapshot from a list of chunks, and two
//! fixed history ids.

use kv::store::{KvStore, LogEntry, Op, Pair, Record, Snapshot};

/// Large enough to mean "everything" in these tests without relying on `usize::MAX`
/// (which `scan_limit_edges` tests on its own).
pub const ALL: usize = 100_000;

pub fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
        expires_at: None,
    }
}

pub fn del_op(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

pub fn entry(seq: u64, op: Op) -> LogEntry {
    LogEntry { seq, op }
}

pub fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn keys(pairs: &[Pair]) -> Vec<&str> {
    pairs.iter().map(|(k, _)| k.as_str()).collect()
}

/// Primary put that must be logged; returns its seq.
pub fn put<S: KvStore>(store: &S, key: &str, value: &str) -> u64 {
    store
        .append(&put_op(key, value))
        .expect("append put")
        .expect("a put always gets a seq")
}

/// Primary delete; `None` when the key was absent.
pub fn del<S: KvStore>(store: &S, key: &str) -> Option<u64> {
    store.append(&del_op(key)).expect("append delete")
}

pub fn contents<S: KvStore>(store: &S) -> Vec<Pair> {
    store.scan("", None, ALL).expect("scan everything")
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
