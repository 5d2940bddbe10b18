//! Meta and history ids: named meta values round-trip without touching data or the log, and
//! every primary has its own history id, which a replica takes from its first snapshot.

use crate::helpers::{del, install, is_history_id, put, whole_log};
use crate::Backend;
use kv::store::{KvStore, Role};

pub fn meta_round_trip<B: Backend>(backend: &B) {
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
