//! The `KvStore` conformance suite: one generic body per case, run against both backends
//! (`memory::*` on `MemoryStore`, `sqlite::*` on `SqliteStore` in a temporary directory).
//! It owns the behaviour the trait promises to every caller: reads and writes, key-ordered
//! and prefix scans with pagination, sequence numbers and the log, consistent chunked
//! snapshots, replica-side `apply` and `install_snapshot`, log retention, and meta. The one
//! SQLite-only case at the end checks that a reopened file keeps its data and its head.

use kv::store::{KvStore, LogEntry, MemoryStore, Op, Pair, Role, Snapshot, SqliteStore};
use kv::Error;
use std::cell::Cell;
use std::collections::BTreeMap;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Backends and the macro that instantiates every case for each of them.
// ---------------------------------------------------------------------------------------

/// Makes fresh, empty stores of one backend. Every `open` returns a new store; a backend
/// value outlives the stores it made (the SQLite one owns their directory).
trait Backend {
    type Store: KvStore;
    fn open(&self, role: Role) -> Self::Store;
}

struct Memory;

impl Backend for Memory {
    type Store = MemoryStore;
    fn open(&self, role: Role) -> MemoryStore {
        MemoryStore::new(role)
    }
}

struct Sqlite {
    dir: TempDir,
    opened: Cell<u32>,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite {
            dir: TempDir::new().expect("create a temporary directory for the databases"),
            opened: Cell::new(0),
        }
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;
    fn open(&self, role: Role) -> SqliteStore {
        let n = self.opened.get();
        self.opened.set(n + 1);
        let path = self.dir.path().join(format!("{role}-{n}.db"));
        SqliteStore::open(&path, role).expect("open a fresh SQLite store")
    }
}

/// `conformance!(backends { module => backend_expr, ... } cases [case, ...])` writes one
/// `mod module` per backend holding one `#[test] fn case` per case, each calling the
/// generic `case(&backend)` defined below.
macro_rules! conformance {
    (backends { $($module:ident => $backend:expr),+ $(,)? } cases $cases:tt) => {
        $( conformance!(@module $module, $backend, $cases); )+
    };
    (@module $module:ident, $backend:expr, [$($case:ident),+ $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    crate::$case(&$backend);
                }
            )+
        }
    };
}

conformance! {
    backends {
        memory => crate::Memory,
        sqlite => crate::Sqlite::new(),
    }
    cases [
        get_put_delete,
        overwrite,
        delete_missing_key_consumes_no_seq,
        scan_is_in_byte_order,
        scan_limit_edges,
        prefix_scan_and_count,
        pagination_with_after,
        seq_increases_by_one_per_write,
        log_since_returns_entries_after_seq,
        snapshot_stays_consistent_while_writes_continue,
        snapshot_chunk_bounds,
        awkward_keys_and_values_round_trip,
        replica_apply_accepts_consecutive_seqs,
        replica_apply_rejects_gap_and_duplicate,
        install_snapshot_replaces_everything,
        install_snapshot_failure_changes_nothing,
        trim_log_keeps_newest_in_batches,
        meta_round_trip,
        primary_has_history_id,
    ]
}

// ---------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------

/// Large enough to mean "everything" in these tests without relying on `usize::MAX`
/// (which `scan_limit_edges` tests on its own).
const ALL: usize = 100_000;

fn put_op(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn del_op(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

fn entry(seq: u64, op: Op) -> LogEntry {
    LogEntry { seq, op }
}

fn pairs(list: &[(&str, &str)]) -> Vec<Pair> {
    list.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn keys(pairs: &[Pair]) -> Vec<&str> {
    pairs.iter().map(|(k, _)| k.as_str()).collect()
}

/// Primary put that must be logged; returns its seq.
fn put<S: KvStore>(store: &S, key: &str, value: &str) -> u64 {
    store
        .append(&put_op(key, value))
        .expect("append put")
        .expect("a put always gets a seq")
}

/// Primary delete; `None` when the key was absent.
fn del<S: KvStore>(store: &S, key: &str) -> Option<u64> {
    store.append(&del_op(key)).expect("append delete")
}

fn contents<S: KvStore>(store: &S) -> Vec<Pair> {
    store.scan("", None, ALL).expect("scan everything")
}

fn whole_log<S: KvStore>(store: &S) -> Vec<LogEntry> {
    store.log_since(0, ALL).expect("read the whole log")
}

/// Reads a snapshot to the end, returning its chunks (none of them empty).
fn drain(snapshot: &mut dyn Snapshot, max_entries: usize, max_bytes: usize) -> Vec<Vec<Pair>> {
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

fn flatten(chunks: Vec<Vec<Pair>>) -> Vec<Pair> {
    chunks.into_iter().flatten().collect()
}

fn pair_bytes(pair: &Pair) -> usize {
    pair.0.len() + pair.1.len()
}

/// Everything observable about a store, to prove that a rejected operation changed nothing.
#[derive(Debug, PartialEq)]
struct State {
    contents: Vec<Pair>,
    head: u64,
    oldest: Option<u64>,
    log: Vec<LogEntry>,
    history: Option<String>,
}

fn state<S: KvStore>(store: &S) -> State {
    State {
        contents: contents(store),
        head: store.head_seq().expect("head_seq"),
        oldest: store.oldest_log_seq().expect("oldest_log_seq"),
        log: whole_log(store),
        history: store.history_id().expect("history_id"),
    }
}

type SourceResult = kv::Result<Option<Vec<Pair>>>;

/// Installs `chunks` (in that order) into `store` as history `history` at `seq`.
fn install<S: KvStore>(store: &S, history: &str, seq: u64, chunks: Vec<Vec<Pair>>) -> u64 {
    let mut chunks = chunks.into_iter();
    let mut source = move || -> SourceResult { Ok(chunks.next()) };
    store
        .install_snapshot(history, seq, &mut source)
        .expect("install a snapshot")
}

fn is_history_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

const HISTORY_A: &str = "0123456789abcdef0123456789abcdef";
const HISTORY_B: &str = "fedcba9876543210fedcba9876543210";

// ---------------------------------------------------------------------------------------
// Cases.
// ---------------------------------------------------------------------------------------

fn get_put_delete<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.get("a").expect("get"), None);

    assert_eq!(put(&store, "a", "1"), 1);
    assert_eq!(put(&store, "b", "2"), 2);
    assert_eq!(store.get("a").expect("get").as_deref(), Some("1"));
    assert_eq!(store.get("b").expect("get").as_deref(), Some("2"));
    assert_eq!(store.get("c").expect("get"), None);

    assert_eq!(del(&store, "a"), Some(3));
    assert_eq!(store.get("a").expect("get"), None);
    assert_eq!(store.get("b").expect("get").as_deref(), Some("2"));
    assert_eq!(store.count("").expect("count"), 1);
    assert_eq!(contents(&store), pairs(&[("b", "2")]));

    // A deleted key can be written again.
    assert_eq!(put(&store, "a", "again"), 4);
    assert_eq!(store.get("a").expect("get").as_deref(), Some("again"));
}

fn overwrite<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(put(&store, "k", "first"), 1);
    assert_eq!(put(&store, "k", "second"), 2);
    assert_eq!(put(&store, "k", ""), 3);
    assert_eq!(put(&store, "k", "third"), 4);

    assert_eq!(store.get("k").expect("get").as_deref(), Some("third"));
    assert_eq!(store.count("").expect("count"), 1);
    assert_eq!(contents(&store), pairs(&[("k", "third")]));
    // Every overwrite is its own log entry.
    assert_eq!(
        whole_log(&store),
        vec![
            entry(1, put_op("k", "first")),
            entry(2, put_op("k", "second")),
            entry(3, put_op("k", "")),
            entry(4, put_op("k", "third")),
        ]
    );
}

fn delete_missing_key_consumes_no_seq<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    // On an empty store.
    assert_eq!(del(&store, "nothing"), None);
    assert_eq!(store.head_seq().expect("head"), 0);
    assert_eq!(store.oldest_log_seq().expect("oldest"), None);
    assert!(whole_log(&store).is_empty());

    assert_eq!(put(&store, "a", "1"), 1);
    assert_eq!(del(&store, "b"), None);
    assert_eq!(del(&store, "A"), None, "keys are case-sensitive");
    assert_eq!(store.head_seq().expect("head"), 1);
    assert_eq!(del(&store, "a"), Some(2));
    assert_eq!(del(&store, "a"), None, "second delete of the same key");
    assert_eq!(store.head_seq().expect("head"), 2);

    // The next write takes the very next seq: nothing was burnt.
    assert_eq!(put(&store, "c", "3"), 3);
    assert_eq!(
        whole_log(&store),
        vec![
            entry(1, put_op("a", "1")),
            entry(2, del_op("a")),
            entry(3, put_op("c", "3")),
        ]
    );
}

/// Keys in the order their UTF-8 bytes sort (which is also code-point order, but not
/// UTF-16 order: U+1F600 sorts after U+E000 and U+FFFD here).
const BYTE_ORDERED_KEYS: [&str; 17] = [
    "A", "Z", "a", "a b", "ab", "a\u{7f}", "b", "z", "~", "\u{7f}", "ä", "é", "中", "\u{D7FF}",
    "\u{E000}", "\u{FFFD}", "😀",
];

fn scan_is_in_byte_order<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let mut expected: Vec<&str> = BYTE_ORDERED_KEYS.to_vec();
    expected.push("\u{10FFFF}x");
    // Write them in a scrambled order.
    for (i, key) in expected
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, _)| i % 2 == 0)
    {
        put(&store, key, &format!("v{i}"));
    }
    for (i, key) in expected.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        put(&store, key, &format!("v{i}"));
    }

    let all = contents(&store);
    assert_eq!(keys(&all), expected);
    for (i, (key, value)) in all.iter().enumerate() {
        assert_eq!(value, &format!("v{i}"), "value of {key:?}");
    }
    assert_eq!(store.count("").expect("count"), expected.len() as u64);

    // A limit takes the first keys in order.
    let first = store.scan("", None, 4).expect("scan with limit");
    assert_eq!(keys(&first), &expected[..4]);
}

fn scan_limit_edges<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    for key in ["a", "b", "c"] {
        put(&store, key, key);
    }
    assert_eq!(store.scan("", None, 0).expect("scan limit 0"), Vec::new());
    assert_eq!(
        store.scan("", Some("a"), 0).expect("scan limit 0"),
        Vec::new()
    );
    assert_eq!(store.scan("b", None, 0).expect("scan limit 0"), Vec::new());
    assert_eq!(keys(&store.scan("", None, 1).expect("limit 1")), ["a"]);
    assert_eq!(
        keys(
            &store
                .scan("", None, usize::MAX)
                .expect("scan limit usize::MAX")
        ),
        ["a", "b", "c"]
    );
    assert_eq!(
        keys(
            &store
                .scan("", Some("a"), usize::MAX)
                .expect("scan limit usize::MAX")
        ),
        ["b", "c"]
    );
}

fn prefix_scan_and_count<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    for key in [
        "t",
        "u",
        "us",
        "us1",
        "usa",
        "user:é",
        "us\u{10FFFF}",
        "us\u{10FFFF}z",
        "ut",
        "uta",
        "v",
        "é",
        "éa",
        "ê",
        "\u{D7FF}",
        "\u{D7FF}a",
        "\u{E000}",
        "\u{10FFFF}",
        "\u{10FFFF}\u{10FFFF}",
    ] {
        put(&store, key, &format!("<{key}>"));
    }

    let us = store.scan("us", None, ALL).expect("scan us");
    assert_eq!(
        keys(&us),
        [
            "us",
            "us1",
            "usa",
            "user:é",
            "us\u{10FFFF}",
            "us\u{10FFFF}z"
        ]
    );
    assert_eq!(us[3], ("user:é".to_string(), "<user:é>".to_string()));
    assert_eq!(store.count("us").expect("count us"), 6);

    assert_eq!(store.count("u").expect("count u"), 9);
    assert_eq!(store.count("").expect("count all"), 19);
    assert_eq!(store.count("x").expect("count x"), 0);
    assert!(store.scan("x", None, ALL).expect("scan x").is_empty());
    assert_eq!(keys(&store.scan("usa", None, ALL).expect("scan")), ["usa"]);
    assert_eq!(store.count("usa").expect("count usa"), 1);
    assert!(store.scan("usb", None, ALL).expect("scan usb").is_empty());

    // Prefixes whose successor needs care: a last char of U+10FFFF, a multi-byte char,
    // and the char just below the surrogate gap.
    assert_eq!(
        keys(&store.scan("us\u{10FFFF}", None, ALL).expect("scan")),
        ["us\u{10FFFF}", "us\u{10FFFF}z"]
    );
    assert_eq!(store.count("us\u{10FFFF}").expect("count"), 2);
    assert_eq!(
        keys(&store.scan("é", None, ALL).expect("scan é")),
        ["é", "éa"]
    );
    assert_eq!(store.count("é").expect("count é"), 2);
    assert_eq!(
        keys(&store.scan("\u{D7FF}", None, ALL).expect("scan")),
        ["\u{D7FF}", "\u{D7FF}a"]
    );
    assert_eq!(store.count("\u{D7FF}").expect("count"), 2);
    assert_eq!(
        keys(&store.scan("\u{10FFFF}", None, ALL).expect("scan")),
        ["\u{10FFFF}", "\u{10FFFF}\u{10FFFF}"]
    );
    assert_eq!(store.count("\u{10FFFF}").expect("count"), 2);

    // Limits apply inside the prefix.
    assert_eq!(
        keys(&store.scan("us", None, 2).expect("scan")),
        ["us", "us1"]
    );
}

fn pagination_with_after<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    for key in [
        "j", "k", "k00", "k01", "k02", "k03", "k04", "k05", "k06", "l",
    ] {
        put(&store, key, key);
    }

    // Page through the prefix "k" three at a time.
    let mut pages = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.scan("k", after.as_deref(), 3).expect("scan a page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3, "page over the limit: {page:?}");
        after = page.last().map(|(k, _)| k.clone());
        pages.push(keys(&page).join(","));
        assert!(pages.len() < 10, "pagination does not end");
    }
    assert_eq!(pages, ["k,k00,k01", "k02,k03,k04", "k05,k06"]);

    // Whole-space pagination crosses prefixes.
    assert_eq!(
        keys(&store.scan("", Some("k06"), ALL).expect("scan")),
        ["l"]
    );
    assert_eq!(
        keys(&store.scan("", Some("j"), 2).expect("scan")),
        ["k", "k00"]
    );
    // `after` need not be a stored key.
    assert_eq!(
        keys(&store.scan("k", Some("k035"), ALL).expect("scan")),
        ["k04", "k05", "k06"]
    );
    assert_eq!(
        keys(&store.scan("", Some("a"), 2).expect("scan")),
        ["j", "k"]
    );
    // `after` below the prefix is no restriction.
    assert_eq!(
        keys(&store.scan("k0", Some("a"), 2).expect("scan")),
        ["k00", "k01"]
    );
    assert_eq!(
        keys(&store.scan("k0", Some("k"), 2).expect("scan")),
        ["k00", "k01"]
    );
    // `after` at or beyond the end of the prefix range (or of everything) gives nothing.
    assert!(store.scan("k", Some("k06"), ALL).expect("scan").is_empty());
    assert!(store
        .scan("k", Some("k\u{10FFFF}"), ALL)
        .expect("scan")
        .is_empty());
    assert!(store.scan("k", Some("l"), ALL).expect("scan").is_empty());
    assert!(store.scan("k", Some("z"), ALL).expect("scan").is_empty());
    assert!(store.scan("", Some("l"), ALL).expect("scan").is_empty());
    assert!(store
        .scan("", Some("\u{10FFFF}"), ALL)
        .expect("scan")
        .is_empty());
}

fn seq_increases_by_one_per_write<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.head_seq().expect("head"), 0);
    assert_eq!(store.oldest_log_seq().expect("oldest"), None);

    let ops = [
        put_op("a", "1"),
        put_op("b", "2"),
        put_op("a", "3"),
        del_op("b"),
        put_op("b", "4"),
        del_op("a"),
        put_op("c", ""),
    ];
    for (i, op) in ops.iter().enumerate() {
        let expected = i as u64 + 1;
        assert_eq!(
            store.append(op).expect("append"),
            Some(expected),
            "seq of {op:?}"
        );
        assert_eq!(store.head_seq().expect("head"), expected);
        assert_eq!(store.oldest_log_seq().expect("oldest"), Some(1));
    }
    let log = whole_log(&store);
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
}

fn log_since_returns_entries_after_seq<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert!(store.log_since(0, ALL).expect("log").is_empty());

    let expected = vec![
        entry(1, put_op("a", "1")),
        entry(2, put_op("b", "2")),
        entry(3, del_op("a")),
        entry(4, put_op("b", "two")),
        entry(5, put_op("c", "")),
        entry(6, del_op("c")),
    ];
    for e in &expected {
        assert_eq!(store.append(&e.op).expect("append"), Some(e.seq));
    }
    // A no-op delete leaves no entry.
    assert_eq!(del(&store, "zz"), None);

    assert_eq!(store.log_since(0, ALL).expect("log"), expected);
    assert_eq!(store.log_since(2, ALL).expect("log"), &expected[2..]);
    assert_eq!(store.log_since(0, 2).expect("log"), &expected[..2]);
    assert_eq!(store.log_since(2, 3).expect("log"), &expected[2..5]);
    assert_eq!(store.log_since(5, 1).expect("log"), &expected[5..]);
    assert_eq!(store.log_since(5, ALL).expect("log"), &expected[5..]);
    assert!(store.log_since(6, ALL).expect("log").is_empty());
    assert!(store.log_since(100, ALL).expect("log").is_empty());
    assert!(store.log_since(0, 0).expect("log").is_empty());
    assert_eq!(store.log_since(0, usize::MAX).expect("log"), expected);
}

fn snapshot_stays_consistent_while_writes_continue<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let mut model = BTreeMap::new();
    for i in 0..20 {
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        put(&store, &key, &value);
        model.insert(key, value);
    }
    del(&store, "k03");
    model.remove("k03");
    let at_seq = store.head_seq().expect("head");
    assert_eq!(at_seq, 21);
    let expected: Vec<Pair> = model.clone().into_iter().collect();

    let mut snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.seq(), at_seq);
    assert_eq!(snapshot.key_count(), 19);

    // Writes before the first chunk is read...
    put(&store, "k00", "changed");
    put(&store, "a-before-everything", "new");
    del(&store, "k01");
    let first = snapshot.next_chunk(5, usize::MAX).expect("first chunk");
    assert_eq!(first, &expected[..5]);

    // ...and between chunks: overwrite and delete keys not yet read, add keys in the
    // unread range and past the end, re-add the deleted key, overwrite read keys.
    put(&store, "k10", "changed");
    del(&store, "k11");
    del(&store, "k19");
    put(&store, "k10a", "new");
    put(&store, "k03", "back");
    put(&store, "zz", "new");
    put(&store, "k02", "changed");
    let mut rest = drain(&mut *snapshot, 5, usize::MAX);
    rest.insert(0, first);
    assert_eq!(flatten(rest), expected);
    assert_eq!(snapshot.seq(), at_seq, "seq() after reading");
    assert_eq!(snapshot.key_count(), 19, "key_count() after reading");

    // The live store did move on, and a new snapshot sees it.
    let now = store.head_seq().expect("head");
    assert_eq!(now, at_seq + 10);
    let mut later = store.snapshot().expect("second snapshot");
    assert_eq!(later.seq(), now);
    assert_eq!(later.key_count(), store.count("").expect("count"));
    assert_eq!(flatten(drain(&mut *later, 7, usize::MAX)), contents(&store));
    drop(snapshot);

    // An empty store snapshots at 0 with nothing in it.
    let empty = backend.open(Role::Primary);
    let mut snapshot = empty.snapshot().expect("snapshot of an empty store");
    assert_eq!(snapshot.seq(), 0);
    assert_eq!(snapshot.key_count(), 0);
    assert!(drain(&mut *snapshot, 10, 1000).is_empty());
}

fn snapshot_chunk_bounds<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    // Ten 12-byte pairs, then one large pair.
    for i in 0..10 {
        put(&store, &format!("k{i}"), "0123456789");
    }
    let big = "x".repeat(10_000);
    put(&store, "zbig", &big);
    let all = contents(&store);
    assert_eq!(all.len(), 11);

    // max_entries is respected.
    let chunks = drain(&mut *store.snapshot().expect("snapshot"), 3, usize::MAX);
    assert_eq!(
        chunks.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 3, 2]
    );
    assert_eq!(flatten(chunks), all);

    // A tiny max_bytes still makes progress, one pair per chunk.
    for max_bytes in [0, 1, 11] {
        let chunks = drain(&mut *store.snapshot().expect("snapshot"), 100, max_bytes);
        assert_eq!(chunks.len(), 11, "max_bytes {max_bytes}");
        assert!(chunks.iter().all(|c| c.len() == 1), "max_bytes {max_bytes}");
        assert_eq!(flatten(chunks), all);
    }

    // A byte budget fills chunks roughly: never a pair added once the budget is reached,
    // and more than one pair when two fit.
    let max_bytes = 25;
    let chunks = drain(&mut *store.snapshot().expect("snapshot"), 100, max_bytes);
    for chunk in &chunks {
        let before_last: usize = chunk[..chunk.len() - 1].iter().map(pair_bytes).sum();
        assert!(
            before_last < max_bytes,
            "chunk went on past {max_bytes} bytes: {chunk:?}"
        );
    }
    let small_chunks = &chunks[..chunks.len() - 1];
    assert!(
        small_chunks.iter().all(|c| c.len() >= 2),
        "chunks of 12-byte pairs under a 25-byte budget: {:?}",
        chunks.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(flatten(chunks), all);

    // Both limits at once: the tighter one wins.
    let chunks = drain(&mut *store.snapshot().expect("snapshot"), 2, 1_000_000);
    assert!(chunks.iter().all(|c| c.len() <= 2));
    assert_eq!(flatten(chunks), all);
}

fn awkward_keys_and_values_round_trip<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let data = pairs(&[
        ("empty", ""),
        ("spaces", "  leading and trailing  "),
        ("newlines", "line 1\nline 2\r\n\n"),
        ("tab\tkey", "\t"),
        ("key with spaces", "value with spaces"),
        ("key\nwith newline", "v"),
        ("quotes'\"", "'); DROP TABLE kv; --"),
        ("ключ", "значение"),
        ("日本語", "値"),
        ("emoji 😀", "🎉\u{10FFFF}"),
        ("é", "é"),
        ("\u{10FFFF}x", "last"),
    ]);
    for (key, value) in &data {
        put(&store, key, value);
    }
    let mut sorted = data.clone();
    sorted.sort();

    for (key, value) in &data {
        assert_eq!(
            store.get(key).expect("get").as_ref(),
            Some(value),
            "get {key:?}"
        );
    }
    assert_eq!(
        store.get("empty").expect("get").as_deref(),
        Some(""),
        "an empty value is present, not missing"
    );
    assert_eq!(contents(&store), sorted);
    assert_eq!(
        keys(&store.scan("ключ", None, ALL).expect("scan")),
        ["ключ"]
    );
    assert_eq!(
        keys(&store.scan("key", None, ALL).expect("scan")),
        ["key\nwith newline", "key with spaces"]
    );

    // The log carries them exactly, including a delete of an awkward key.
    assert_eq!(del(&store, "key\nwith newline"), Some(13));
    let log = whole_log(&store);
    let mut expected_log: Vec<LogEntry> = data
        .iter()
        .enumerate()
        .map(|(i, (k, v))| entry(i as u64 + 1, put_op(k, v)))
        .collect();
    expected_log.push(entry(13, del_op("key\nwith newline")));
    assert_eq!(log, expected_log);
    sorted.retain(|(k, _)| k != "key\nwith newline");

    // So does a snapshot (1-pair chunks, to cross a chunk boundary at every key).
    let mut snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.key_count(), sorted.len() as u64);
    assert_eq!(flatten(drain(&mut *snapshot, 1, usize::MAX)), sorted);

    // And both replication paths reproduce them on a replica.
    let replayed = backend.open(Role::Replica);
    install(&replayed, HISTORY_A, 0, Vec::new());
    replayed.apply(&log).expect("apply the log");
    assert_eq!(contents(&replayed), sorted);
    assert_eq!(whole_log(&replayed), log);

    let installed = backend.open(Role::Replica);
    let chunks = drain(&mut *store.snapshot().expect("snapshot"), 5, usize::MAX);
    let n = install(&installed, HISTORY_A, 13, chunks);
    assert_eq!(n, sorted.len() as u64);
    assert_eq!(contents(&installed), sorted);
    for (key, value) in &sorted {
        assert_eq!(installed.get(key).expect("get").as_ref(), Some(value));
    }
}

fn replica_apply_accepts_consecutive_seqs<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    assert_eq!(store.head_seq().expect("head"), 0);
    assert_eq!(store.history_id().expect("history"), None, "never synced");

    let batch1 = vec![entry(1, put_op("a", "1")), entry(2, put_op("b", "2"))];
    store.apply(&batch1).expect("apply 1..=2");
    assert_eq!(store.head_seq().expect("head"), 2);
    store.apply(&[]).expect("an empty batch is fine");
    assert_eq!(store.head_seq().expect("head"), 2);

    let batch2 = vec![
        entry(3, del_op("a")),
        entry(4, put_op("b", "two")),
        // A delete of a key the replica does not hold still takes its seq and is logged,
        // so the replica's log stays contiguous for replicas chained behind it.
        entry(5, del_op("never-existed")),
        entry(6, put_op("c", "")),
    ];
    store.apply(&batch2).expect("apply 3..=6");
    store
        .apply(&[entry(7, put_op("d", "4"))])
        .expect("apply one entry");

    assert_eq!(store.head_seq().expect("head"), 7);
    assert_eq!(store.get("a").expect("get"), None);
    assert_eq!(
        contents(&store),
        pairs(&[("b", "two"), ("c", ""), ("d", "4")])
    );
    let mut expected_log = batch1;
    expected_log.extend(batch2);
    expected_log.push(entry(7, put_op("d", "4")));
    assert_eq!(whole_log(&store), expected_log);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(1));
}

fn replica_apply_rejects_gap_and_duplicate<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    // Synced first, so that applied seq is tracked in meta as well.
    install(&store, HISTORY_A, 0, Vec::new());
    store
        .apply(&[
            entry(1, put_op("a", "1")),
            entry(2, put_op("b", "2")),
            entry(3, del_op("a")),
        ])
        .expect("apply 1..=3");
    let before = state(&store);
    assert_eq!(before.head, 3);
    assert_eq!(
        store.meta("applied_seq").expect("meta").as_deref(),
        Some("3")
    );

    let rejected: Vec<(&str, Vec<LogEntry>, u64, u64)> = vec![
        ("gap", vec![entry(5, put_op("x", "x"))], 4, 5),
        ("duplicate of head", vec![entry(3, put_op("x", "x"))], 4, 3),
        ("old entry", vec![entry(1, put_op("x", "x"))], 4, 1),
        (
            "gap inside a batch",
            vec![entry(4, put_op("x", "x")), entry(6, put_op("y", "y"))],
            5,
            6,
        ),
        (
            "duplicate inside a batch",
            vec![entry(4, put_op("x", "x")), entry(4, put_op("y", "y"))],
            5,
            4,
        ),
        ("seq 0", vec![entry(0, put_op("x", "x"))], 4, 0),
    ];
    for (what, entries, want_expected, want_got) in rejected {
        match store.apply(&entries) {
            Err(Error::SeqOutOfOrder { expected, got }) => {
                assert_eq!((expected, got), (want_expected, want_got), "{what}");
            }
            other => panic!("{what}: expected SeqOutOfOrder, got {other:?}"),
        }
        assert_eq!(state(&store), before, "{what} changed the store");
        assert_eq!(
            store.meta("applied_seq").expect("meta").as_deref(),
            Some("3"),
            "{what} moved applied_seq"
        );
    }

    // The right next entry is still accepted.
    store
        .apply(&[entry(4, put_op("x", "x"))])
        .expect("apply 4 after rejections");
    assert_eq!(store.head_seq().expect("head"), 4);
    assert_eq!(store.get("x").expect("get").as_deref(), Some("x"));
    assert_eq!(
        store.meta("applied_seq").expect("meta").as_deref(),
        Some("4")
    );
}

fn install_snapshot_replaces_everything<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    store
        .apply(&[
            entry(1, put_op("old1", "x")),
            entry(2, put_op("shared", "old")),
            entry(3, put_op("old2", "y")),
        ])
        .expect("apply");
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(1));

    let n = install(
        &store,
        HISTORY_A,
        10,
        vec![
            pairs(&[("a", "1"), ("b", "2")]),
            pairs(&[("shared", "new")]),
            pairs(&[("z", "")]),
        ],
    );
    assert_eq!(n, 4);
    assert_eq!(
        contents(&store),
        pairs(&[("a", "1"), ("b", "2"), ("shared", "new"), ("z", "")])
    );
    assert_eq!(store.get("old1").expect("get"), None);
    assert_eq!(store.head_seq().expect("head"), 10);
    assert_eq!(
        store.history_id().expect("history").as_deref(),
        Some(HISTORY_A)
    );
    assert_eq!(
        store.meta("applied_seq").expect("meta").as_deref(),
        Some("10")
    );
    assert!(whole_log(&store).is_empty(), "log emptied");
    assert_eq!(store.oldest_log_seq().expect("oldest"), None);

    // The history continues right after the snapshot's seq.
    assert!(matches!(
        store.apply(&[entry(10, put_op("q", "q"))]),
        Err(Error::SeqOutOfOrder {
            expected: 11,
            got: 10
        })
    ));
    store.apply(&[entry(11, del_op("a"))]).expect("apply 11");
    assert_eq!(whole_log(&store), vec![entry(11, del_op("a"))]);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(11));
    assert_eq!(store.head_seq().expect("head"), 11);

    // A snapshot of another history at a lower seq replaces everything again, head too.
    let n = install(&store, HISTORY_B, 2, vec![pairs(&[("only", "one")])]);
    assert_eq!(n, 1);
    assert_eq!(contents(&store), pairs(&[("only", "one")]));
    assert_eq!(store.head_seq().expect("head"), 2);
    assert_eq!(
        store.history_id().expect("history").as_deref(),
        Some(HISTORY_B)
    );
    assert!(whole_log(&store).is_empty());

    // An empty snapshot empties the store; empty chunks in the stream are harmless.
    let n = install(&store, HISTORY_B, 5, vec![Vec::new(), Vec::new()]);
    assert_eq!(n, 0);
    assert!(contents(&store).is_empty());
    assert_eq!(store.count("").expect("count"), 0);
    assert_eq!(store.head_seq().expect("head"), 5);

    // Installing a primary's snapshot reproduces the primary.
    let primary = backend.open(Role::Primary);
    for i in 0..25 {
        put(&primary, &format!("key{i}"), &format!("value {i}"));
    }
    del(&primary, "key7");
    let history = primary
        .history_id()
        .expect("history")
        .expect("a primary has a history id");
    let mut snapshot = primary.snapshot().expect("snapshot");
    let seq = snapshot.seq();
    let mut source = || -> SourceResult {
        let chunk = snapshot.next_chunk(4, usize::MAX)?;
        Ok((!chunk.is_empty()).then_some(chunk))
    };
    let n = store
        .install_snapshot(&history, seq, &mut source)
        .expect("install from a live snapshot");
    assert_eq!(n, 24);
    assert_eq!(contents(&store), contents(&primary));
    assert_eq!(
        store.head_seq().expect("head"),
        primary.head_seq().expect("head")
    );
    assert_eq!(store.history_id().expect("history"), Some(history));
}

fn install_snapshot_failure_changes_nothing<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    install(
        &store,
        HISTORY_A,
        4,
        vec![pairs(&[("keep", "me"), ("mine", "too")])],
    );
    store
        .apply(&[entry(5, put_op("logged", "yes"))])
        .expect("apply 5");
    let before = state(&store);

    // The source fails after handing over a chunk (a dropped connection, say).
    let mut calls = 0;
    let mut failing = || -> SourceResult {
        calls += 1;
        match calls {
            1 => Ok(Some(pairs(&[("new", "1"), ("keep", "overwritten")]))),
            2 => Ok(Some(pairs(&[("new2", "2")]))),
            _ => Err(Error::Protocol("connection lost mid-snapshot".into())),
        }
    };
    let result = store.install_snapshot(HISTORY_B, 99, &mut failing);
    assert!(
        matches!(result, Err(Error::Protocol(_))),
        "the source's error comes back: {result:?}"
    );
    assert_eq!(calls, 3, "the source was read until it failed");
    assert_eq!(state(&store), before, "a failed install changed the store");
    assert_eq!(
        store.meta("applied_seq").expect("meta").as_deref(),
        Some("5")
    );
    assert_eq!(store.get("new").expect("get"), None);

    // Failing on the very first chunk changes nothing either.
    let mut fails_at_once = || -> SourceResult { Err(Error::Protocol("refused".into())) };
    assert!(store
        .install_snapshot(HISTORY_B, 99, &mut fails_at_once)
        .is_err());
    assert_eq!(state(&store), before);

    // The store is still usable: it keeps applying, and a later install succeeds.
    store
        .apply(&[entry(6, del_op("mine"))])
        .expect("apply after a failed install");
    assert_eq!(
        contents(&store),
        pairs(&[("keep", "me"), ("logged", "yes")])
    );
    install(&store, HISTORY_B, 99, vec![pairs(&[("new", "1")])]);
    assert_eq!(contents(&store), pairs(&[("new", "1")]));
    assert_eq!(store.head_seq().expect("head"), 99);
}

fn trim_log_keeps_newest_in_batches<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.trim_log(0, 100).expect("trim an empty log"), 0);
    assert_eq!(store.oldest_log_seq().expect("oldest"), None);

    for i in 1..=10 {
        put(&store, &format!("k{i}"), "v");
    }
    let full = whole_log(&store);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(1));

    assert_eq!(store.trim_log(20, 100).expect("trim"), 0, "keep > len");
    assert_eq!(store.trim_log(10, 100).expect("trim"), 0, "keep == len");
    assert_eq!(store.trim_log(3, 0).expect("trim"), 0, "batch 0");
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(1));

    // At most `batch` per call.
    assert_eq!(store.trim_log(3, 2).expect("trim"), 2);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(3));
    assert_eq!(store.trim_log(3, 2).expect("trim"), 2);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(5));
    // Then stops at `keep`.
    assert_eq!(store.trim_log(3, 100).expect("trim"), 3);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(8));
    assert_eq!(store.trim_log(3, 100).expect("trim"), 0);
    assert_eq!(whole_log(&store), &full[7..]);
    // log_since from a trimmed seq starts at the oldest retained entry.
    assert_eq!(store.log_since(2, ALL).expect("log"), &full[7..]);
    assert_eq!(store.log_since(8, ALL).expect("log"), &full[8..]);

    // Never fewer than one, even when asked for zero.
    assert_eq!(store.trim_log(0, 100).expect("trim"), 2);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(10));
    assert_eq!(store.trim_log(0, 100).expect("trim"), 0);
    assert_eq!(store.trim_log(1, 100).expect("trim"), 0);
    assert_eq!(whole_log(&store), &full[9..]);

    // A huge keep removes nothing.
    put(&store, "k11", "v");
    assert_eq!(store.trim_log(u64::MAX, usize::MAX).expect("trim"), 0);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(10));

    // Trimming touches neither the data nor the head; seqs continue.
    assert_eq!(store.count("").expect("count"), 11);
    assert_eq!(store.head_seq().expect("head"), 11);
    assert_eq!(put(&store, "k12", "v"), 12);
    assert_eq!(store.trim_log(1, usize::MAX).expect("trim"), 2);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(12));
    assert_eq!(store.head_seq().expect("head"), 12);

    // The same holds on a replica.
    let replica = backend.open(Role::Replica);
    install(&replica, HISTORY_A, 100, Vec::new());
    let entries: Vec<LogEntry> = (101..=105)
        .map(|seq| entry(seq, put_op("r", &seq.to_string())))
        .collect();
    replica.apply(&entries).expect("apply");
    assert_eq!(replica.trim_log(2, 100).expect("trim replica"), 3);
    assert_eq!(replica.oldest_log_seq().expect("oldest"), Some(104));
    assert_eq!(replica.head_seq().expect("head"), 105);
    assert_eq!(whole_log(&replica), &entries[3..]);
}

fn meta_round_trip<B: Backend>(backend: &B) {
    for role in [Role::Primary, Role::Replica] {
        let store = backend.open(role);
        assert_eq!(
            store.meta("role").expect("meta role").as_deref(),
            Some(role.as_str())
        );
        let history = store.history_id().expect("history");

        assert_eq!(store.meta("primary_addr").expect("meta"), None);
        store
            .set_meta("primary_addr", "127.0.0.1:8080")
            .expect("set meta");
        assert_eq!(
            store.meta("primary_addr").expect("meta").as_deref(),
            Some("127.0.0.1:8080")
        );
        store
            .set_meta("primary_addr", "[::1]:9000")
            .expect("overwrite meta");
        assert_eq!(
            store.meta("primary_addr").expect("meta").as_deref(),
            Some("[::1]:9000")
        );
        store.set_meta("note", "é 😀\nline two").expect("set meta");
        store.set_meta("empty", "").expect("set empty meta");
        assert_eq!(
            store.meta("note").expect("meta").as_deref(),
            Some("é 😀\nline two")
        );
        assert_eq!(store.meta("empty").expect("meta").as_deref(), Some(""));
        assert_eq!(
            store.meta("primary_addr").expect("meta").as_deref(),
            Some("[::1]:9000"),
            "other names untouched"
        );
        assert_eq!(store.meta("no-such-name").expect("meta"), None);

        // Meta is not data: no keys, no log entries, no seq.
        assert_eq!(store.count("").expect("count"), 0);
        assert_eq!(store.head_seq().expect("head"), 0);
        assert!(whole_log(&store).is_empty());
        assert_eq!(store.history_id().expect("history"), history);
    }
}

fn primary_has_history_id<B: Backend>(backend: &B) {
    let primary = backend.open(Role::Primary);
    let id = primary
        .history_id()
        .expect("history_id")
        .expect("a new primary has a history id");
    assert!(is_history_id(&id), "not 32 hex digits: {id:?}");
    assert_eq!(
        primary.meta("history_id").expect("meta").as_ref(),
        Some(&id)
    );

    // Writes keep it.
    put(&primary, "a", "1");
    del(&primary, "a");
    assert_eq!(
        primary.history_id().expect("history_id").as_ref(),
        Some(&id)
    );

    // Each new primary starts its own history.
    let other = backend
        .open(Role::Primary)
        .history_id()
        .expect("history_id")
        .expect("a new primary has a history id");
    assert!(is_history_id(&other));
    assert_ne!(id, other, "two primaries share a history id");

    // A replica has none until its first snapshot.
    let replica = backend.open(Role::Replica);
    assert_eq!(replica.history_id().expect("history_id"), None);
    install(&replica, &id, 1, Vec::new());
    assert_eq!(replica.history_id().expect("history_id"), Some(id));
}

// ---------------------------------------------------------------------------------------
// SQLite only.
// ---------------------------------------------------------------------------------------

#[test]
fn sqlite_reopen_keeps_data_and_head_seq() {
    let dir = TempDir::new().expect("create a temporary directory");
    let path = dir.path().join("primary.db");

    let history = {
        let store = SqliteStore::open(&path, Role::Primary).expect("create");
        put(&store, "a", "1");
        put(&store, "b", "2");
        put(&store, "a", "one");
        del(&store, "b");
        put(&store, "c", "");
        store.set_meta("note", "kept").expect("set meta");
        // Trimming down to one entry must not lose the head.
        assert_eq!(store.trim_log(1, 100).expect("trim"), 4);
        store.history_id().expect("history").expect("history id")
    };

    let store = SqliteStore::open(&path, Role::Primary).expect("reopen");
    assert_eq!(contents(&store), pairs(&[("a", "one"), ("c", "")]));
    assert_eq!(store.head_seq().expect("head"), 5);
    assert_eq!(store.oldest_log_seq().expect("oldest"), Some(5));
    assert_eq!(
        store.log_since(0, ALL).expect("log"),
        vec![entry(5, put_op("c", ""))]
    );
    assert_eq!(store.history_id().expect("history"), Some(history));
    assert_eq!(store.meta("note").expect("meta").as_deref(), Some("kept"));
    assert_eq!(put(&store, "d", "4"), 6, "seq continues after reopening");
    assert_eq!(del(&store, "a"), Some(7));
    drop(store);

    let store = SqliteStore::open(&path, Role::Primary).expect("reopen again");
    assert_eq!(store.head_seq().expect("head"), 7);
    assert_eq!(contents(&store), pairs(&[("c", ""), ("d", "4")]));
    assert_eq!(put(&store, "e", "5"), 8);
    drop(store);

    // A replica resumes from its applied seq, even with an empty log.
    let replica_path = dir.path().join("replica.db");
    {
        let replica = SqliteStore::open(&replica_path, Role::Replica).expect("create replica");
        install(&replica, HISTORY_A, 40, vec![pairs(&[("r", "1")])]);
    }
    let replica = SqliteStore::open(&replica_path, Role::Replica).expect("reopen replica");
    assert_eq!(replica.head_seq().expect("head"), 40);
    assert_eq!(
        replica.history_id().expect("history").as_deref(),
        Some(HISTORY_A)
    );
    assert_eq!(contents(&replica), pairs(&[("r", "1")]));
    replica
        .apply(&[entry(41, put_op("s", "2"))])
        .expect("apply 41 after reopening");
    drop(replica);
    let replica = SqliteStore::open(&replica_path, Role::Replica).expect("reopen replica");
    assert_eq!(replica.head_seq().expect("head"), 41);
    assert!(matches!(
        replica.apply(&[entry(41, put_op("s", "again"))]),
        Err(Error::SeqOutOfOrder {
            expected: 42,
            got: 41
        })
    ));
}
