//! Writes that depend on the data (`INCR`, `SET … NX`, `RENAME`…, see `kv::node::compute`)
//! resolved against each backend as the writer resolves them: read through the store,
//! then committed as the plain ops they became, so the log holds only `Put` and `Delete`
//! and a replica applies them like any other write.

use crate::helpers::{contents, pairs, whole_log};
use crate::Backend;
use kv::node::compute::{Change, NewExpiry, Outcome, Resolved, View, When};
use kv::store::{now_ms, KvStore, Op, Role};

/// Resolves `change` against `store` at `now`, as the writer does.
pub fn resolve<S: KvStore>(store: &S, now: u64, change: Change) -> kv::Result<Resolved> {
    change.resolve(&mut View {
        now,
        read: &mut |key| store.get_stored(key),
        expiry: &mut |key| store.row_expiry(key),
        keys: &mut || store.scan_keys(b"", None, 1000),
    })
}

/// Resolves `change` against `store` and commits what it became.
pub fn apply<S: KvStore>(store: &S, change: Change) -> Outcome {
    let (ops, outcome) = resolve(store, now_ms(), change).expect("a change that applies");
    store.append_batch(&[ops]).expect("commit");
    outcome
}

pub fn changes_resolve_against_the_store_and_log_plain_ops<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let incr = |by| Change::IncrBy {
        key: "n".into(),
        by,
    };
    assert_eq!(apply(&store, incr(5)), Outcome::Int(5));
    assert_eq!(apply(&store, incr(-7)), Outcome::Int(-2));
    let append = Change::Append {
        key: "s".into(),
        value: "ab".into(),
    };
    assert_eq!(apply(&store, append.clone()), Outcome::Int(2));
    assert_eq!(apply(&store, append), Outcome::Int(4));
    let set_nx = Change::Set {
        key: "s".into(),
        value: "other".into(),
        when: When::Absent,
        get: true,
        expiry: NewExpiry::Never,
    };
    assert_eq!(apply(&store, set_nx), Outcome::Bulk(Some("abab".into())));
    let rename = Change::Rename {
        from: "s".into(),
        to: "t".into(),
        nx: false,
    };
    assert_eq!(apply(&store, rename), Outcome::Ok);
    let incr = Change::IncrBy {
        key: "t".into(),
        by: 1,
    };
    let refused = resolve(&store, now_ms(), incr);
    assert!(refused.is_err(), "a counter of text is refused");

    assert_eq!(contents(&store), pairs(&[("n", "-2"), ("t", "abab")]));
    let ops: Vec<Op> = whole_log(&store)
        .into_iter()
        .map(|entry| entry.op)
        .collect();
    let expected = vec![
        Op::Put {
            key: "n".into(),
            value: "5".into(),
            expires_at: None,
        },
        Op::Put {
            key: "n".into(),
            value: "-2".into(),
            expires_at: None,
        },
        Op::Put {
            key: "s".into(),
            value: "ab".into(),
            expires_at: None,
        },
        Op::Put {
            key: "s".into(),
            value: "abab".into(),
            expires_at: None,
        },
        Op::Delete { key: "s".into() },
        Op::Put {
            key: "t".into(),
            value: "abab".into(),
            expires_at: None,
        },
    ];
    assert_eq!(ops, expected, "the log holds what the changes became");

    assert_eq!(apply(&store, Change::Flush), Outcome::Ok);
    assert_eq!(contents(&store), pairs(&[]));
    let deletes = whole_log(&store).len() - expected.len();
    assert_eq!(deletes, 2, "a flush logs a delete per key");

    // Keys and values are bytes, UTF-8 or not: APPEND joins them, GETSET returns them.
    let key = vec![0xff, 0x00, 0xfe];
    let append = Change::Append {
        key: key.clone(),
        value: vec![0xc3],
    };
    assert_eq!(apply(&store, append.clone()), Outcome::Int(1));
    assert_eq!(apply(&store, append), Outcome::Int(2));
    let get_set = Change::Set {
        key: key.clone(),
        value: vec![0x80, b'x'],
        when: When::Always,
        get: true,
        expiry: NewExpiry::Never,
    };
    let old = vec![0xc3, 0xc3];
    assert_eq!(apply(&store, get_set), Outcome::Bulk(Some(old)));
    assert_eq!(contents(&store), [(key.clone(), vec![0x80, b'x'])]);
    let last = whole_log(&store).pop().expect("entry").op;
    assert_eq!(last, Op::put(key, [0x80, b'x']));
}
