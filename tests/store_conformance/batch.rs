//! Group commit, `append_batch`: every request's ops are numbered exactly as the same ops
//! appended one by one would be (consecutive seqs across requests, in order; a delete of a
//! key absent at that point takes no seq, including one deleted earlier in the batch), and
//! a batch that cannot be committed whole changes nothing.

use crate::helpers::{
    contents, del, del_op, entry, install, pairs, put, put_op, state, whole_log, HISTORY_A,
};
use crate::Backend;
use kv::store::{KvStore, Op, Role, MAX_SEQ};
use kv::Error;

pub fn batch_seqs_are_consecutive_across_requests<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(put(&store, "x", "0"), 1);

    let requests = vec![
        vec![put_op("a", "1")],
        vec![put_op("b", "2"), put_op("c", "3")],
        Vec::new(),
        vec![put_op("a", "one")],
    ];
    let seqs = store.append_batch(&requests).expect("append a batch");
    assert_eq!(
        seqs,
        vec![vec![Some(2)], vec![Some(3), Some(4)], vec![], vec![Some(5)]]
    );
    assert_eq!(store.head_seq().expect("head"), 5);
    let logged: Vec<Op> = requests.into_iter().flatten().collect();
    let expected: Vec<_> = (2..).zip(logged).map(|(seq, op)| entry(seq, op)).collect();
    assert_eq!(whole_log(&store)[1..], expected[..]);
    assert_eq!(
        contents(&store),
        pairs(&[("a", "one"), ("b", "2"), ("c", "3"), ("x", "0")])
    );

    // An empty batch commits nothing; seqs continue after a batch.
    assert!(store.append_batch(&[]).expect("empty batch").is_empty());
    assert_eq!(put(&store, "d", "4"), 6);

    // A large batch: one request per op, then one request of many ops.
    let singles: Vec<Vec<Op>> = (0..300)
        .map(|i| vec![put_op(&format!("s{i}"), "v")])
        .collect();
    let seqs = store.append_batch(&singles).expect("300 requests");
    let flat: Vec<Option<u64>> = seqs.into_iter().flatten().collect();
    assert_eq!(flat, (7..307).map(Some).collect::<Vec<_>>());
    let many: Vec<Op> = (0..300).map(|i| put_op(&format!("m{i}"), "v")).collect();
    let seqs = store.append_batch(&[many]).expect("a request of 300 ops");
    assert_eq!(seqs, vec![(307..607).map(Some).collect::<Vec<_>>()]);
    assert_eq!(store.head_seq().expect("head"), 606);
    assert_eq!(store.count(b"").expect("count"), 605);
}

pub fn batch_delete_of_absent_key_takes_no_seq<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    assert_eq!(put(&store, "a", "1"), 1);

    let seqs = store
        .append_batch(&[
            vec![del_op("zz")],
            vec![del_op("a"), del_op("a")],
            vec![del_op("a")],
            vec![put_op("b", "2"), del_op("zz")],
        ])
        .expect("append a batch");
    assert_eq!(
        seqs,
        vec![
            vec![None],
            vec![Some(2), None],
            vec![None],
            vec![Some(3), None]
        ]
    );
    assert_eq!(
        whole_log(&store),
        vec![
            entry(1, put_op("a", "1")),
            entry(2, del_op("a")),
            entry(3, put_op("b", "2")),
        ]
    );

    // A batch of nothing but absent deletes changes nothing at all.
    let before = state(&store);
    let seqs = store
        .append_batch(&[vec![del_op("a")], vec![del_op("zz"), del_op("a")]])
        .expect("append no-op deletes");
    assert_eq!(seqs, vec![vec![None], vec![None, None]]);
    assert_eq!(state(&store), before);
    assert_eq!(put(&store, "c", "3"), 4, "no seq was taken");
}

/// One batch and the same ops appended one at a time leave identical stores and results.
pub fn batch_matches_separate_appends<B: Backend>(backend: &B) {
    let requests = vec![
        vec![put_op("a", "1"), del_op("a")],
        vec![del_op("a")],
        vec![put_op("a", "2"), put_op("a", "3")],
        vec![del_op("x"), del_op("x"), put_op("x", "new")],
        vec![del_op("x")],
        vec![
            put_op("b", ""),
            del_op("y"),
            put_op("y", "again"),
            del_op("b"),
        ],
    ];
    let separate = backend.open(Role::Primary);
    let batched = backend.open(Role::Primary);
    for store in [&separate, &batched] {
        put(store, "x", "old");
        put(store, "y", "old");
    }

    let one_by_one: Vec<Vec<Option<u64>>> = requests
        .iter()
        .map(|ops| {
            ops.iter()
                .map(|op| separate.append(op).expect("append"))
                .collect()
        })
        .collect();
    let in_one_batch = batched.append_batch(&requests).expect("append a batch");

    assert_eq!(in_one_batch, one_by_one);
    let (mut expected, mut got) = (state(&separate), state(&batched));
    // Each store made its own history id; everything else must match.
    expected.history = None;
    got.history = None;
    assert_eq!(got, expected);
    assert_eq!(
        contents(&batched),
        pairs(&[("a", "3"), ("y", "again")]),
        "the expected end state"
    );
}

/// Committing a batch needs a seq for every logged op; when the seq space cannot hold
/// them all, the whole batch is refused, including the requests that would have fitted.
/// (A replica's store, then made a primary, because a snapshot can put its head near the
/// end of the seq space.)
pub fn failing_batch_changes_nothing<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    install(
        &store,
        HISTORY_A,
        MAX_SEQ - 2,
        vec![pairs(&[("a", "1"), ("b", "2")])],
    );
    store.set_role(Role::Primary).expect("make it a primary");
    let before = state(&store);

    let too_many = [
        vec![put_op("c", "3")],
        vec![del_op("a"), del_op("zz")],
        vec![put_op("d", "4")],
    ];
    let err = store
        .append_batch(&too_many)
        .expect_err("three seqs past MAX_SEQ - 2");
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert_eq!(state(&store), before, "a refused batch changed the store");

    // Two seqs remain, so two logged ops (and any number of absent deletes) fit.
    let seqs = store
        .append_batch(&[vec![put_op("c", "3"), del_op("zz")], vec![del_op("a")]])
        .expect("a batch that fits");
    assert_eq!(
        seqs,
        vec![vec![Some(MAX_SEQ - 1), None], vec![Some(MAX_SEQ)]]
    );
    assert_eq!(contents(&store), pairs(&[("b", "2"), ("c", "3")]));
    assert_eq!(del(&store, "zz"), None, "an absent delete needs no seq");
    assert!(
        store.append(&put_op("e", "5")).is_err(),
        "the seq space is full"
    );
    assert_eq!(store.head_seq().expect("head"), MAX_SEQ);
}
