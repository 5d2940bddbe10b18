//! Sequence numbers and the log: one seq per write, `log_since` windows, and `trim_log`
//! retention on a primary and a replica.

use crate::helpers::{del, del_op, entry, install, put, put_op, whole_log, ALL, HISTORY_A};
use crate::Backend;
use kv::store::{KvStore, LogEntry, Role};

pub fn seq_increases_by_one_per_write<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.head_seq().expect("head"), 0);
    assert_eq!(store.position().expect("position").oldest_log, None);

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
        assert_eq!(store.position().expect("position").oldest_log, Some(1));
    }
    let log = whole_log(&store);
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=7).collect::<Vec<_>>()
    );
}

pub fn log_since_returns_entries_after_seq<B: Backend>(backend: &B) {
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

pub fn trim_log_keeps_newest_in_batches<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(store.trim_log(0, 100).expect("trim an empty log"), 0);
    assert_eq!(store.position().expect("position").oldest_log, None);

    for i in 1..=10 {
        put(&store, &format!("k{i}"), "v");
    }
    let full = whole_log(&store);
    assert_eq!(store.position().expect("position").oldest_log, Some(1));

    assert_eq!(store.trim_log(20, 100).expect("trim"), 0, "keep > len");
    assert_eq!(store.trim_log(10, 100).expect("trim"), 0, "keep == len");
    assert_eq!(store.trim_log(3, 0).expect("trim"), 0, "batch 0");
    assert_eq!(store.position().expect("position").oldest_log, Some(1));

    // At most `batch` per call.
    assert_eq!(store.trim_log(3, 2).expect("trim"), 2);
    assert_eq!(store.position().expect("position").oldest_log, Some(3));
    assert_eq!(store.trim_log(3, 2).expect("trim"), 2);
    assert_eq!(store.position().expect("position").oldest_log, Some(5));
    // Then stops at `keep`.
    assert_eq!(store.trim_log(3, 100).expect("trim"), 3);
    assert_eq!(store.position().expect("position").oldest_log, Some(8));
    assert_eq!(store.trim_log(3, 100).expect("trim"), 0);
    assert_eq!(whole_log(&store), &full[7..]);
    // log_since from a trimmed seq starts at the oldest retained entry.
    assert_eq!(store.log_since(2, ALL).expect("log"), &full[7..]);
    assert_eq!(store.log_since(8, ALL).expect("log"), &full[8..]);

    // Never fewer than one, even when asked for zero.
    assert_eq!(store.trim_log(0, 100).expect("trim"), 2);
    assert_eq!(store.position().expect("position").oldest_log, Some(10));
    assert_eq!(store.trim_log(0, 100).expect("trim"), 0);
    assert_eq!(store.trim_log(1, 100).expect("trim"), 0);
    assert_eq!(whole_log(&store), &full[9..]);

    // A huge keep removes nothing.
    put(&store, "k11", "v");
    assert_eq!(store.trim_log(u64::MAX, usize::MAX).expect("trim"), 0);
    assert_eq!(store.position().expect("position").oldest_log, Some(10));

    // Trimming touches neither the data nor the head; seqs continue.
    assert_eq!(store.count(b"").expect("count"), 11);
    assert_eq!(store.head_seq().expect("head"), 11);
    assert_eq!(put(&store, "k12", "v"), 12);
    assert_eq!(store.trim_log(1, usize::MAX).expect("trim"), 2);
    assert_eq!(store.position().expect("position").oldest_log, Some(12));
    assert_eq!(store.head_seq().expect("head"), 12);

    // The same holds on a replica.
    let replica = backend.open(Role::Replica);
    install(&replica, HISTORY_A, 100, Vec::new());
    let entries: Vec<LogEntry> = (101..=105)
        .map(|seq| entry(seq, put_op("r", &seq.to_string())))
        .collect();
    replica.apply(&entries).expect("apply");
    assert_eq!(replica.trim_log(2, 100).expect("trim replica"), 3);
    assert_eq!(replica.position().expect("position").oldest_log, Some(104));
    assert_eq!(replica.head_seq().expect("head"), 105);
    assert_eq!(whole_log(&replica), &entries[3..]);
}
