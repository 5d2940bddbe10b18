//! Snapshots: a consistent view while writes continue, chunk bounds by entries and bytes,
//! and replica-side `install_snapshot`, both when it replaces everything and when its
//! source fails part-way and nothing may change.

use crate::helpers::{
    contents, del, del_op, drain, entry, flatten, install, pair_bytes, pairs, pairs_of, put,
    put_op, records, state, whole_log, SourceResult, HISTORY_A, HISTORY_B,
};
use crate::Backend;
use kv::store::{KvStore, Pair, Role};
use kv::Error;
use std::collections::BTreeMap;

pub fn snapshot_stays_consistent_while_writes_continue<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let mut model = BTreeMap::new();
    for i in 0..20 {
        let (key, value) = (format!("k{i:02}"), format!("v{i}"));
        put(&store, &key, &value);
        model.insert(key.into_bytes(), value.into_bytes());
    }
    del(&store, "k03");
    model.remove(&b"k03"[..]);
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
    assert_eq!(pairs_of(first.clone()), &expected[..5]);

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
    assert_eq!(later.key_count(), store.count(b"").expect("count"));
    assert_eq!(flatten(drain(&mut *later, 7, usize::MAX)), contents(&store));
    drop(snapshot);

    // An empty store snapshots at 0 with nothing in it.
    let empty = backend.open(Role::Primary);
    let mut snapshot = empty.snapshot().expect("snapshot of an empty store");
    assert_eq!(snapshot.seq(), 0);
    assert_eq!(snapshot.key_count(), 0);
    assert!(drain(&mut *snapshot, 10, 1000).is_empty());
}

pub fn snapshot_chunk_bounds<B: Backend>(backend: &B) {
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

pub fn install_snapshot_replaces_everything<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    store
        .apply(&[
            entry(1, put_op("old1", "x")),
            entry(2, put_op("shared", "old")),
            entry(3, put_op("old2", "y")),
        ])
        .expect("apply");
    assert_eq!(store.position().expect("position").oldest_log, Some(1));

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
    assert_eq!(store.get(b"old1").expect("get"), None);
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
    assert_eq!(store.position().expect("position").oldest_log, None);

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
    assert_eq!(store.position().expect("position").oldest_log, Some(11));
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
    assert_eq!(store.count(b"").expect("count"), 0);
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

pub fn install_snapshot_failure_changes_nothing<B: Backend>(backend: &B) {
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
            1 => Ok(records(vec![pairs(&[("new", "1"), ("keep", "overwritten")])]).pop()),
            2 => Ok(records(vec![pairs(&[("new2", "2")])]).pop()),
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
    assert_eq!(store.get(b"new").expect("get"), None);

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
