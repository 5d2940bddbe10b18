//! Expiry: a key whose time has passed is gone from every read while its row waits for the
//! primary's sweep; the time travels with the put through the log, a replica's apply, a
//! snapshot and its install, and the digest; the expiry commands resolve against each
//! backend as the writer resolves them.

use crate::changes::{apply, resolve};
use crate::helpers::{b, bytes, contents, drain, install_records, pairs, whole_log, HISTORY_A};
use crate::Backend;
use kv::node::compute::{Change, ExpireIf, NewExpiry, Outcome, When};
use kv::store::{now_ms, KvStore, LogEntry, Op, Record, Role, Stored};

/// An hour from now: far enough that no test outlives it.
fn later() -> u64 {
    now_ms() + 3_600_000
}

fn put_at(key: &str, value: &str, expires_at: Option<u64>) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
        expires_at,
    }
}

/// `gone` expired a second ago, `kept` expires in an hour, `plain` never.
fn three_keys<S: KvStore>(store: &S) -> (u64, u64) {
    let (past, future) = (now_ms() - 1000, later());
    let ops = vec![
        put_at("gone", "1", Some(past)),
        put_at("kept", "2", Some(future)),
        put_at("plain", "3", None),
    ];
    store.append_batch(&[ops]).expect("append");
    (past, future)
}

pub fn an_expired_key_is_gone_from_every_read<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let (past, future) = three_keys(&store);
    assert_eq!(store.get(b"gone").expect("get"), None);
    assert_eq!(store.get(b"kept").expect("get"), Some(b("2")));
    let many = store
        .get_many(&[b"gone", b"kept"], usize::MAX)
        .expect("get_many");
    assert_eq!(many, vec![None, Some(b("2"))]);
    assert_eq!(contents(&store), pairs(&[("kept", "2"), ("plain", "3")]));
    assert_eq!(
        store.scan_keys(b"", None, 10).expect("keys"),
        bytes(&["kept", "plain"])
    );
    assert_eq!(store.count(b"").expect("count"), 2);
    assert_eq!(store.count(b"g").expect("count"), 0);
    assert_eq!(store.nth_key(0).expect("nth"), Some(b("kept")));
    assert_eq!(store.nth_key(2).expect("nth"), None);
    let mut cursor = store.key_cursor(b"").expect("cursor");
    assert_eq!(
        cursor.next_page(10).expect("page"),
        bytes(&["kept", "plain"])
    );
    assert_eq!(store.count_expiring().expect("expiring"), 1);

    // The row itself stays until the sweep deletes it, and the sweep finds it.
    let stored = store.get_stored(b"gone").expect("stored");
    assert_eq!(
        stored,
        Some(Stored {
            value: "1".into(),
            expires_at: Some(past)
        })
    );
    assert_eq!(
        store.expired_keys(now_ms(), 10).expect("expired"),
        bytes(&["gone"])
    );
    assert_eq!(
        store.expired_keys(future, 10).expect("expired"),
        bytes(&["gone", "kept"])
    );
    assert_eq!(
        store.expired_keys(future, 1).expect("expired"),
        bytes(&["gone"])
    );
    assert!(store.expired_keys(past - 1, 10).expect("none").is_empty());
}

pub fn the_expiry_travels_with_log_snapshot_and_digest<B: Backend>(backend: &B) {
    let primary = backend.open(Role::Primary);
    let (past, future) = three_keys(&primary);
    let log: Vec<LogEntry> = whole_log(&primary);
    assert_eq!(log[0].op, put_at("gone", "1", Some(past)));
    assert_eq!(log[1].op, put_at("kept", "2", Some(future)));

    // Replayed on a replica, entry by entry.
    let replayed = backend.open(Role::Replica);
    install_records(&replayed, HISTORY_A, 0, Vec::new());
    replayed.apply(&log).expect("apply");
    assert_eq!(whole_log(&replayed), log);

    // A snapshot carries every row, an expired one too (the delete comes later in the
    // log), with its time.
    let chunks = drain(&mut *primary.snapshot().expect("snapshot"), 2, usize::MAX);
    let rows: Vec<Record> = chunks.iter().flatten().cloned().collect();
    assert_eq!(
        rows.iter().map(|r| r.expires_at).collect::<Vec<_>>(),
        [Some(past), Some(future), None]
    );
    let installed = backend.open(Role::Replica);
    install_records(&installed, HISTORY_A, 3, chunks);
    for replica in [&replayed, &installed] {
        assert_eq!(replica.get(b"gone").expect("get"), None);
        let kept = replica.get_stored(b"kept").expect("stored").expect("row");
        assert_eq!(kept.expires_at, Some(future));
        assert_eq!(
            replica.expired_keys(now_ms(), 10).expect("expired"),
            bytes(&["gone"])
        );
        assert_eq!(
            replica.digest().expect("digest").hex,
            primary.digest().expect("digest").hex
        );
    }

    // The digest sees a different expiry, and only a put with one adds to it.
    let other = backend.open(Role::Primary);
    let ops = vec![
        put_at("gone", "1", Some(past)),
        put_at("kept", "2", Some(future + 1)),
        put_at("plain", "3", None),
    ];
    other.append_batch(&[ops]).expect("append");
    assert_ne!(
        other.digest().expect("digest").hex,
        primary.digest().expect("digest").hex
    );
}

pub fn expiry_commands_resolve_against_the_store<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    let (_, future) = three_keys(&store);
    let expire = |key: &str, at, when| Change::Expire {
        key: key.into(),
        at,
        when,
    };
    let nx = ExpireIf {
        nx: true,
        ..ExpireIf::default()
    };
    assert_eq!(
        apply(&store, expire("gone", later(), ExpireIf::default())),
        Outcome::Int(0)
    );
    assert_eq!(apply(&store, expire("kept", later(), nx)), Outcome::Int(0));
    assert_eq!(apply(&store, expire("plain", future, nx)), Outcome::Int(1));
    let expiry_of = |key: &[u8]| store.row_expiry(key).expect("row").expect("a row");
    assert_eq!(expiry_of(b"plain"), Some(future));
    let persist = Change::Persist {
        key: "plain".into(),
    };
    assert_eq!(apply(&store, persist), Outcome::Int(1));
    assert_eq!(expiry_of(b"plain"), None);

    let getex = Change::GetEx {
        key: "kept".into(),
        expiry: NewExpiry::Never,
    };
    assert_eq!(apply(&store, getex), Outcome::Bulk(Some("2".into())));
    assert_eq!(store.count_expiring().expect("expiring"), 0);
    let unchanged = Change::GetEx {
        key: "kept".into(),
        expiry: NewExpiry::Never,
    };
    let (ops, outcome) = resolve(&store, now_ms(), unchanged).expect("resolve");
    assert!(ops.is_empty(), "nothing to write: {ops:?}");
    assert_eq!(outcome, Outcome::Bulk(Some("2".into())));

    // SET … NX on an expired key sets it (a lock whose holder's time ran out).
    let lock = Change::Set {
        key: "gone".into(),
        value: "mine".into(),
        when: When::Absent,
        get: false,
        expiry: NewExpiry::At(future),
    };
    assert_eq!(apply(&store, lock), Outcome::Ok);
    assert_eq!(store.get(b"gone").expect("get"), Some(b("mine")));

    // A time already past deletes the key, and the log says so.
    assert_eq!(
        apply(&store, expire("gone", 1, ExpireIf::default())),
        Outcome::Int(1)
    );
    let last = whole_log(&store).pop().expect("entry");
    assert_eq!(last.op, Op::Delete { key: "gone".into() });
}

pub fn the_sweep_deletes_only_what_expired<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    three_keys(&store);
    let keys = store.expired_keys(now_ms(), 1000).expect("expired");
    // Between the listing and the sweep, the expired key is written again: kept.
    let purge = Change::Purge {
        keys: vec!["gone".into(), "kept".into(), "missing".into()],
    };
    assert_eq!(keys, bytes(&["gone"]));
    let (ops, outcome) = resolve(&store, now_ms(), purge.clone()).expect("resolve");
    assert_eq!(ops, [Op::Delete { key: "gone".into() }]);
    assert_eq!(outcome, Outcome::Int(1));
    store
        .append_batch(&[vec![put_at("gone", "again", None)]])
        .expect("rewrite");
    assert_eq!(apply(&store, purge), Outcome::Int(0));
    assert_eq!(store.get(b"gone").expect("get"), Some(b("again")));
    // Rewritten or deleted, a key no longer expires at its old time.
    let far = later() + 1;
    assert!(store
        .expired_keys(far, 10)
        .expect("expired")
        .contains(&b("kept")));
    store
        .append_batch(&[vec![Op::Delete { key: "kept".into() }]])
        .expect("delete");
    assert!(store.expired_keys(far, 10).expect("expired").is_empty());
    assert_eq!(store.count_expiring().expect("expiring"), 0);
}

pub fn a_key_cursor_reads_at_one_time<B: Backend>(backend: &B) {
    // `KEYS` counts with one pass and lists with another: a key expiring in between must
    // be in both or in neither.
    let store = backend.open(Role::Primary);
    let soon = now_ms() + 300;
    let ops = vec![put_at("a", "1", Some(soon)), put_at("b", "2", None)];
    store.append_batch(&[ops]).expect("append");
    let mut cursor = store.key_cursor(b"").expect("cursor");
    assert_eq!(cursor.next_page(1).expect("page"), bytes(&["a"]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.get(b"a").expect("get").is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(store.get(b"a").expect("get"), None, "a never expired");
    assert_eq!(cursor.next_page(10).expect("page"), bytes(&["b"]));
    cursor.rewind();
    assert_eq!(cursor.next_page(10).expect("again"), bytes(&["a", "b"]));
}

pub fn del_counts_only_keys_that_had_not_expired<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    three_keys(&store);
    let del = Change::Del {
        keys: vec![
            "gone".into(),
            "kept".into(),
            "kept".into(),
            "missing".into(),
        ],
    };
    let (ops, outcome) = resolve(&store, now_ms(), del).expect("resolve");
    assert_eq!(outcome, Outcome::Int(1), "the expired row is not counted");
    assert_eq!(
        ops,
        [
            Op::Delete { key: "gone".into() },
            Op::Delete { key: "kept".into() }
        ],
        "but deleted, and each key once"
    );
}
