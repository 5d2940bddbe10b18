//! Meta and history ids: `meta` shows the role, the history and a replica's applied seq
//! (moving with the data) without being data itself, and every primary has its own history
//! id, which a replica takes from its first snapshot.

use crate::helpers::{del, entry, install, is_history_id, put, put_op, whole_log, HISTORY_A};
use crate::Backend;
use kv::store::{KvStore, Role};

pub fn meta_reports_role_history_and_applied_seq<B: Backend>(backend: &B) {
    for role in [Role::Primary, Role::Replica] {
        let store = backend.open(role);
        assert_eq!(
            store.meta("role").expect("meta role").as_deref(),
            Some(role.as_str())
        );
        assert_eq!(store.meta("no-such-name").expect("meta"), None);
        // Meta is not data: no keys, no log entries, no seq.
        assert_eq!(store.count(b"").expect("count"), 0);
        assert_eq!(store.head_seq().expect("head"), 0);
        assert!(whole_log(&store).is_empty());
    }
    // Every database has its own node id.
    let ids: Vec<String> = (0..2)
        .map(|_| {
            let store = backend.open(Role::Replica);
            store.meta("node_id").expect("meta").expect("a node id")
        })
        .collect();
    assert!(ids
        .iter()
        .all(|id| id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit())));
    assert_ne!(ids[0], ids[1], "two databases share a node id");

    let replica = backend.open(Role::Replica);
    assert_eq!(replica.meta("applied_seq").expect("meta"), None);
    install(&replica, HISTORY_A, 7, Vec::new());
    assert_eq!(
        replica.meta("applied_seq").expect("meta").as_deref(),
        Some("7")
    );
    replica
        .apply(&[entry(8, put_op("k", "v"))])
        .expect("apply 8");
    assert_eq!(
        replica.meta("applied_seq").expect("meta").as_deref(),
        Some("8"),
        "applied_seq moves with the data"
    );
    assert_eq!(
        replica.meta("history_id").expect("meta").as_deref(),
        Some(HISTORY_A)
    );
}

pub fn primary_has_history_id<B: Backend>(backend: &B) {
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
