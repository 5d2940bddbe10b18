//! Replica-side `apply`: consecutive seqs are accepted and logged; gaps, duplicates and old
//! entries are rejected without changing anything.

use crate::helpers::{
    b, contents, del_op, entry, install, pairs, put_op, state, whole_log, HISTORY_A,
};
use crate::Backend;
use kv::store::{KvStore, LogEntry, Role};
use kv::Error;

pub fn replica_apply_accepts_consecutive_seqs<B: Backend>(backend: &B) {
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
    assert_eq!(store.get(b"a").expect("get"), None);
    assert_eq!(
        contents(&store),
        pairs(&[("b", "two"), ("c", ""), ("d", "4")])
    );
    let mut expected_log = batch1;
    expected_log.extend(batch2);
    expected_log.push(entry(7, put_op("d", "4")));
    assert_eq!(whole_log(&store), expected_log);
    assert_eq!(store.position().expect("position").oldest_log, Some(1));
}

pub fn replica_apply_rejects_gap_and_duplicate<B: Backend>(backend: &B) {
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
    assert_eq!(store.get(b"x").expect("get"), Some(b("x")));
    assert_eq!(
        store.meta("applied_seq").expect("meta").as_deref(),
        Some("4")
    );
}

/// An unsynced apply is visible at once, like `apply`, and continues the same log.
pub fn unsynced_apply_is_visible_at_once_and_synced_later<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    let fence = kv::store::Unfenced;
    let batch = vec![entry(1, put_op("a", "1")), entry(2, put_op("b", "2"))];
    store
        .apply_unsynced(&batch, &fence)
        .expect("apply unsynced");
    assert_eq!(store.head_seq().expect("head"), 2);
    assert_eq!(store.get(b"a").expect("get"), Some(b("1")));
    store.sync().expect("sync");
    store
        .apply_unsynced(&[entry(4, put_op("c", "3"))], &fence)
        .expect_err("a gap is refused unsynced too");
    store.apply(&[entry(3, del_op("a"))]).expect("apply");
    store.sync().expect("sync with nothing new");
    assert_eq!(contents(&store), pairs(&[("b", "2")]));
    assert_eq!(store.head_seq().expect("head"), 3);
}

/// A batch that writes the same keys several times leaves each key as its last op left
/// it, and logs every entry in seq order.
pub fn a_batch_applies_each_keys_last_op<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    let batch = vec![
        entry(1, put_op("b", "1")),
        entry(2, put_op("a", "1")),
        entry(3, del_op("b")),
        entry(4, put_op("c", "1")),
        entry(5, put_op("b", "2")),
        entry(6, del_op("a")),
        entry(7, put_op("a", "3")),
        entry(8, del_op("c")),
        entry(9, del_op("never")),
    ];
    store.apply(&batch).expect("apply");
    assert_eq!(contents(&store), pairs(&[("a", "3"), ("b", "2")]));
    assert_eq!(whole_log(&store), batch);
    assert_eq!(store.head_seq().expect("head"), 9);
}
