//! Reads and writes on a primary: get/put/delete, overwrites, deletes of missing keys,
//! key-ordered scans and their limits, prefix scans and counts, pagination with `after`,
//! and awkward keys and values, UTF-8 or not, surviving every path (log, snapshot,
//! replication).

use crate::helpers::{
    b, contents, del, del_op, drain, entry, flatten, install, install_records, keys, pairs, put,
    put_op, whole_log, ALL, HISTORY_A,
};
use crate::Backend;
use kv::store::{Bytes, KvStore, LogEntry, Pair, Role};

pub fn get_put_delete<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.get(b"a").expect("get"), None);

    assert_eq!(put(&store, "a", "1"), 1);
    assert_eq!(put(&store, "b", "2"), 2);
    assert_eq!(store.get(b"a").expect("get"), Some(b("1")));
    assert_eq!(store.get(b"b").expect("get"), Some(b("2")));
    assert_eq!(store.get(b"c").expect("get"), None);

    assert_eq!(del(&store, "a"), Some(3));
    assert_eq!(store.get(b"a").expect("get"), None);
    assert_eq!(store.get(b"b").expect("get"), Some(b("2")));
    assert_eq!(store.count(b"").expect("count"), 1);
    assert_eq!(contents(&store), pairs(&[("b", "2")]));

    // A deleted key can be written again.
    assert_eq!(put(&store, "a", "again"), 4);
    assert_eq!(store.get(b"a").expect("get"), Some(b("again")));
}

pub fn get_many_reads_each_key_in_order<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let none: Vec<Option<Bytes>> = Vec::new();
    assert_eq!(store.get_many(&[], ALL).expect("get_many"), none);
    put(&store, "a", "1");
    put(&store, "b", "");
    del(&store, "a");
    put(&store, "c", "333");
    let keys: [&[u8]; 5] = [b"c", b"a", b"b", b"missing", b"c"];
    let got = store.get_many(&keys, ALL).expect("get_many");
    let want = [Some("333"), None, Some(""), None, Some("333")];
    assert_eq!(got, want.map(|v| v.map(b)).to_vec());
    // The byte bound: reading stops once the values add up to it, after at least one.
    let got = store.get_many(&keys, 0).expect("get_many");
    assert_eq!(got, vec![Some(b("333"))]);
    let got = store.get_many(&keys[1..], 3).expect("get_many");
    assert_eq!(got.len(), 4, "absent and empty values add nothing: {got:?}");
    let got = store.get_many(&keys, 4).expect("get_many");
    assert_eq!(got.len(), 5);
    let got = store.get_many(&keys, 3).expect("get_many");
    assert_eq!(got.len(), 1, "the first value reaches the bound: {got:?}");
}

pub fn overwrite<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(put(&store, "k", "first"), 1);
    assert_eq!(put(&store, "k", "second"), 2);
    assert_eq!(put(&store, "k", ""), 3);
    assert_eq!(put(&store, "k", "third"), 4);

    assert_eq!(store.get(b"k").expect("get"), Some(b("third")));
    assert_eq!(store.count(b"").expect("count"), 1);
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

pub fn delete_missing_key_consumes_no_seq<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    // On an empty store.
    assert_eq!(del(&store, "nothing"), None);
    assert_eq!(store.head_seq().expect("head"), 0);
    assert_eq!(store.position().expect("position").oldest_log, None);
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

/// Keys that are not all UTF-8, in byte order: a byte of 0x80 or more sorts after every
/// ASCII byte (so `a\xff` after `a~` and before `b`), whether or not it starts a valid
/// UTF-8 sequence, and a key sorts after each of its prefixes.
const BYTE_ORDERED_BINARY_KEYS: [&[u8]; 13] = [
    b"\x00",
    b"\x00\x00",
    b"a",
    b"a\x00",
    b"a~",
    b"a\x7f",
    b"a\x80",
    b"a\xc3\xa9",
    b"a\xff",
    b"b",
    b"\xc3",
    b"\xff",
    b"\xff\xff\x00",
];

pub fn scan_is_in_byte_order<B: Backend>(backend: &B) {
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
        let key = String::from_utf8_lossy(key);
        assert_eq!(value, &format!("v{i}").into_bytes(), "value of {key:?}");
    }
    assert_eq!(store.count(b"").expect("count"), expected.len() as u64);

    // A limit takes the first keys in order.
    let first = store.scan(b"", None, 4).expect("scan with limit");
    assert_eq!(keys(&first), &expected[..4]);

    // Keys that are not UTF-8 sort by their bytes too, written in a scrambled order.
    let binary = backend.open(Role::Primary);
    let expected = BYTE_ORDERED_BINARY_KEYS;
    for (i, key) in expected
        .iter()
        .enumerate()
        .rev()
        .filter(|(i, _)| i % 2 == 0)
    {
        put(&binary, key, &[b'v', i as u8, 0xff]);
    }
    for (i, key) in expected.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
        put(&binary, key, &[b'v', i as u8, 0xff]);
    }
    let all = contents(&binary);
    let stored: Vec<&[u8]> = all.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(stored, expected);
    for (i, (key, value)) in all.iter().enumerate() {
        assert_eq!(value, &[b'v', i as u8, 0xff], "value of {key:?}");
    }
    let listed = binary.scan_keys(b"", None, ALL).expect("scan_keys");
    assert_eq!(listed, stored);
    assert_eq!(binary.count(b"").expect("count"), expected.len() as u64);

    // Prefixes and `after` are bytes: a prefix ending in 0xff has no successor of its
    // length, and one made only of 0xff bytes has none at all.
    let owned = |keys: &[&[u8]]| -> Vec<Bytes> { keys.iter().map(|k| k.to_vec()).collect() };
    let scan = |prefix: &[u8], after: Option<&[u8]>| -> Vec<Bytes> {
        let found = binary.scan(prefix, after, ALL).expect("scan");
        let all_of_prefix = binary.scan(prefix, None, ALL).expect("scan");
        let count = binary.count(prefix).expect("count");
        assert_eq!(count, all_of_prefix.len() as u64, "count of {prefix:?}");
        found.into_iter().map(|(k, _)| k).collect()
    };
    assert_eq!(scan(b"a", None), owned(&expected[2..9]));
    assert_eq!(scan(b"a", Some(b"a~")), owned(&expected[5..9]));
    assert_eq!(scan(b"a\xff", None), owned(&[b"a\xff"]));
    assert_eq!(scan(b"a\xc3", None), owned(&[b"a\xc3\xa9"]));
    assert_eq!(scan(b"\x00", None), owned(&[b"\x00", b"\x00\x00"]));
    assert_eq!(scan(b"\xff", None), owned(&[b"\xff", b"\xff\xff\x00"]));
    assert_eq!(scan(b"\xff\xff", None), owned(&[b"\xff\xff\x00"]));
    assert_eq!(scan(b"", Some(b"a\xff")), owned(&expected[9..]));
    assert!(scan(b"\xff", Some(b"\xff\xff\x00")).is_empty());
    assert!(scan(b"\xfe", None).is_empty());
    assert_eq!(binary.nth_key(8).expect("nth"), Some(b"a\xff".to_vec()));
}

pub fn scan_limit_edges<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    for key in ["a", "b", "c"] {
        put(&store, key, key);
    }
    assert_eq!(store.scan(b"", None, 0).expect("scan limit 0"), Vec::new());
    assert_eq!(
        store.scan(b"", Some(b"a"), 0).expect("scan limit 0"),
        Vec::new()
    );
    assert_eq!(store.scan(b"b", None, 0).expect("scan limit 0"), Vec::new());
    assert_eq!(keys(&store.scan(b"", None, 1).expect("limit 1")), ["a"]);
    assert_eq!(
        keys(
            &store
                .scan(b"", None, usize::MAX)
                .expect("scan limit usize::MAX")
        ),
        ["a", "b", "c"]
    );
    assert_eq!(
        keys(
            &store
                .scan(b"", Some(b"a"), usize::MAX)
                .expect("scan limit usize::MAX")
        ),
        ["b", "c"]
    );
}

pub fn prefix_scan_and_count<B: Backend>(backend: &B) {
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

    let us = store.scan(b"us", None, ALL).expect("scan us");
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
    assert_eq!(us[3], (b("user:é"), b("<user:é>")));
    assert_eq!(store.count(b"us").expect("count us"), 6);

    assert_eq!(store.count(b"u").expect("count u"), 9);
    assert_eq!(store.count(b"").expect("count all"), 19);
    assert_eq!(store.count(b"x").expect("count x"), 0);
    assert!(store.scan(b"x", None, ALL).expect("scan x").is_empty());
    assert_eq!(keys(&store.scan(b"usa", None, ALL).expect("scan")), ["usa"]);
    assert_eq!(store.count(b"usa").expect("count usa"), 1);
    assert!(store.scan(b"usb", None, ALL).expect("scan usb").is_empty());

    // Prefixes whose successor needs care: a last char of U+10FFFF, a multi-byte char,
    // and the char just below the surrogate gap.
    let us_max = "us\u{10FFFF}".as_bytes();
    assert_eq!(
        keys(&store.scan(us_max, None, ALL).expect("scan")),
        ["us\u{10FFFF}", "us\u{10FFFF}z"]
    );
    assert_eq!(store.count(us_max).expect("count"), 2);
    assert_eq!(
        keys(&store.scan("é".as_bytes(), None, ALL).expect("scan é")),
        ["é", "éa"]
    );
    assert_eq!(store.count("é".as_bytes()).expect("count é"), 2);
    assert_eq!(
        keys(&store.scan("\u{D7FF}".as_bytes(), None, ALL).expect("scan")),
        ["\u{D7FF}", "\u{D7FF}a"]
    );
    assert_eq!(store.count("\u{D7FF}".as_bytes()).expect("count"), 2);
    assert_eq!(
        keys(
            &store
                .scan("\u{10FFFF}".as_bytes(), None, ALL)
                .expect("scan")
        ),
        ["\u{10FFFF}", "\u{10FFFF}\u{10FFFF}"]
    );
    assert_eq!(store.count("\u{10FFFF}".as_bytes()).expect("count"), 2);

    // Limits apply inside the prefix.
    assert_eq!(
        keys(&store.scan(b"us", None, 2).expect("scan")),
        ["us", "us1"]
    );
}

pub fn pagination_with_after<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    for key in [
        "j", "k", "k00", "k01", "k02", "k03", "k04", "k05", "k06", "l",
    ] {
        put(&store, key, key);
    }

    // Page through the prefix "k" three at a time.
    let mut pages = Vec::new();
    let mut after: Option<Bytes> = None;
    loop {
        let page = store.scan(b"k", after.as_deref(), 3).expect("scan a page");
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
        keys(&store.scan(b"", Some(b"k06"), ALL).expect("scan")),
        ["l"]
    );
    assert_eq!(
        keys(&store.scan(b"", Some(b"j"), 2).expect("scan")),
        ["k", "k00"]
    );
    // `after` need not be a stored key, nor UTF-8.
    assert_eq!(
        keys(&store.scan(b"", Some(b"k\xff"), ALL).expect("scan")),
        ["l"]
    );
    assert_eq!(
        keys(&store.scan(b"k", Some(b"k035"), ALL).expect("scan")),
        ["k04", "k05", "k06"]
    );
    assert_eq!(
        keys(&store.scan(b"", Some(b"a"), 2).expect("scan")),
        ["j", "k"]
    );
    // `after` below the prefix is no restriction.
    assert_eq!(
        keys(&store.scan(b"k0", Some(b"a"), 2).expect("scan")),
        ["k00", "k01"]
    );
    assert_eq!(
        keys(&store.scan(b"k0", Some(b"k"), 2).expect("scan")),
        ["k00", "k01"]
    );
    // `after` at or beyond the end of the prefix range (or of everything) gives nothing.
    assert!(store
        .scan(b"k", Some(b"k06"), ALL)
        .expect("scan")
        .is_empty());
    assert!(store
        .scan(b"k", Some("k\u{10FFFF}".as_bytes()), ALL)
        .expect("scan")
        .is_empty());
    assert!(store
        .scan(b"k", Some(b"k\xff"), ALL)
        .expect("scan")
        .is_empty());
    assert!(store.scan(b"k", Some(b"l"), ALL).expect("scan").is_empty());
    assert!(store.scan(b"k", Some(b"z"), ALL).expect("scan").is_empty());
    assert!(store.scan(b"", Some(b"l"), ALL).expect("scan").is_empty());
    assert!(store
        .scan(b"", Some("\u{10FFFF}".as_bytes()), ALL)
        .expect("scan")
        .is_empty());
}

pub fn awkward_keys_and_values_round_trip<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let mut data = pairs(&[
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
        ("a~", "tilde"),
        ("b", "bee"),
    ]);
    // Bytes that are not UTF-8, in keys and in values: 0xff and 0xfe (never in UTF-8), a
    // lone continuation byte, a sequence cut short, NULs.
    let binary: [Pair; 6] = [
        (vec![0xff, 0x00, 0xfe], b("binary key")),
        (b("binary value"), vec![0xc3, 0x28, 0xa0, 0xa1, 0xff, 0x00]),
        (b"a\xff".to_vec(), vec![0x80]),
        (b"key\x80".to_vec(), b"\xe2\x82".to_vec()),
        (b"\xc3".to_vec(), b"\xc3\xa9\xc3".to_vec()),
        (vec![0x00], vec![0xfe, 0xff]),
    ];
    data.extend(binary);
    for (key, value) in &data {
        put(&store, key, value);
    }
    let puts = data.len() as u64;
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
        store.get(b"empty").expect("get"),
        Some(Vec::new()),
        "an empty value is present, not missing"
    );
    assert_eq!(contents(&store), sorted);
    // Byte order: `a\xff` after `a~` and before `b`, 0xff after every other first byte.
    let all = contents(&store);
    let at = |key: &[u8]| all.iter().position(|(k, _)| k == key).expect("stored");
    assert!(at(b"a~") < at(b"a\xff") && at(b"a\xff") < at(b"b"));
    assert_eq!(at(&[0xff, 0x00, 0xfe]), all.len() - 1);
    assert_eq!(at(&[0x00]), 0);
    assert_eq!(
        keys(&store.scan("ключ".as_bytes(), None, ALL).expect("scan")),
        ["ключ"]
    );
    let key_prefixed = store.scan(b"key", None, ALL).expect("scan");
    let key_prefixed: Vec<&[u8]> = key_prefixed.iter().map(|(k, _)| k.as_slice()).collect();
    assert_eq!(
        key_prefixed,
        [&b"key\nwith newline"[..], b"key with spaces", b"key\x80"]
    );
    assert_eq!(
        store.scan(b"\xff", None, ALL).expect("scan"),
        [(vec![0xff, 0x00, 0xfe], b("binary key"))]
    );

    // The log carries them exactly, including deletes of awkward keys.
    assert_eq!(del(&store, "key\nwith newline"), Some(puts + 1));
    assert_eq!(del(&store, b"key\x80"), Some(puts + 2));
    let log = whole_log(&store);
    let mut expected_log: Vec<LogEntry> = data
        .iter()
        .enumerate()
        .map(|(i, (k, v))| entry(i as u64 + 1, put_op(k, v)))
        .collect();
    expected_log.push(entry(puts + 1, del_op("key\nwith newline")));
    expected_log.push(entry(puts + 2, del_op(b"key\x80")));
    assert_eq!(log, expected_log);
    sorted.retain(|(k, _)| k != b"key\nwith newline" && k != b"key\x80");

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
    let n = install_records(&installed, HISTORY_A, puts + 2, chunks);
    assert_eq!(n, sorted.len() as u64);
    assert_eq!(contents(&installed), sorted);
    for (key, value) in &sorted {
        assert_eq!(installed.get(key).expect("get").as_ref(), Some(value));
    }
}

/// `nth_key` (RANDOMKEY's pick) counts keys in key order, across pages of the default
/// implementation, and says when there are not that many.
pub fn nth_key_counts_in_key_order<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.nth_key(0).expect("empty"), None);
    let ops: Vec<_> = (0..2500)
        .map(|i| kv::store::Op::Put {
            key: format!("k{i:05}").into_bytes(),
            value: "v".into(),
            expires_at: None,
        })
        .collect();
    store.append_batch(&[ops]).expect("write");
    assert_eq!(store.nth_key(0).expect("first"), Some(b("k00000")));
    assert_eq!(store.nth_key(1234).expect("middle"), Some(b("k01234")));
    assert_eq!(store.nth_key(2499).expect("last"), Some(b("k02499")));
    assert_eq!(store.nth_key(2500).expect("past the end"), None);
}
