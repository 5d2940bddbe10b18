//! Histories: promotion starts a new history forked at the head, in one step with the
//! role; a demoted store refuses primary writes; the running log checksum is the same for
//! the same log and differs after any difference; a snapshot brings the checksum its log
//! continues from; adopting a lineage changes no data; a diverged install keeps the
//! replaced entries in `diverged`, labelled with the history each belonged to; the fencing
//! epoch goes with the history (promotion, snapshot, adoption).

use crate::helpers::{b, contents, entry, install, pairs, put, put_op, records, HISTORY_A};
use crate::Backend;
use kv::store::{Bytes, Fork, KvStore, Lineage, Role, SnapshotTarget, Unfenced};
use kv::Error;

/// A replica at seq 3 of history A, with a log of three puts.
fn replica_at_3<B: Backend>(backend: &B) -> B::Store {
    let store = backend.open(Role::Replica);
    install(&store, HISTORY_A, 0, vec![]);
    let entries: Vec<_> = (1..=3)
        .map(|seq| entry(seq, put_op(&format!("k{seq}"), "v")))
        .collect();
    store.apply(&entries).expect("apply");
    store
}

pub fn promotion_forks_a_new_history_and_continues_the_seqs<B: Backend>(backend: &B) {
    let store = replica_at_3(backend);
    let checksum = store.checksum_at(3).expect("checksum");
    let promoted = store.promote(&Unfenced, None).expect("promote");
    assert_eq!(store.role().expect("role"), Role::Primary);
    assert_eq!(
        promoted.fork,
        Some(Fork {
            prev_history_id: HISTORY_A.into(),
            seq: 3,
            epoch: 0,
        })
    );
    let history = promoted.history_id.clone().expect("a history id");
    assert_ne!(history, HISTORY_A);
    let stored = store.position().expect("position");
    assert_eq!(stored.lineage(), promoted.lineage(), "the fork is stored");
    assert_eq!(put(&store, "new", "1"), 4, "seqs continue");
    // The fork's entries keep their checksums: the new history continues the old log.
    assert_eq!(store.checksum_at(3).expect("checksum"), checksum);
}

pub fn a_demoted_store_refuses_primary_writes<B: Backend>(backend: &B) {
    let store = backend.open(Role::Primary);
    put(&store, "a", "1");
    store.set_role(Role::Replica).expect("demote");
    let err = store.append(&put_op("b", "2")).expect_err("refused");
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
    assert_eq!(store.head_seq().expect("head"), 1);
}

pub fn equal_logs_have_equal_checksums_and_any_difference_shows<B: Backend>(backend: &B) {
    let primary = backend.open(Role::Primary);
    for (key, value) in [("a", "1"), ("b", "2"), ("a", "3")] {
        put(&primary, key, value);
    }
    let replica = backend.open(Role::Replica);
    install(&replica, HISTORY_A, 0, vec![]);
    replica
        .apply(&primary.log_since(0, 10).expect("log"))
        .expect("apply");
    let other = backend.open(Role::Replica);
    install(&other, HISTORY_A, 0, vec![]);
    let mut changed = primary.log_since(0, 10).expect("log");
    changed[1] = entry(2, put_op("b", "two"));
    other.apply(&changed).expect("apply");
    assert_eq!(primary.checksum_at(0).expect("seq 0"), Some(0));
    for seq in 1..=3 {
        let at = |store: &dyn KvStore| store.checksum_at(seq).expect("checksum");
        assert!(at(&primary).is_some());
        assert_eq!(at(&primary), at(&replica), "seq {seq}");
        // Agreement holds up to the first difference and never after it.
        assert_eq!(at(&primary) == at(&other), seq < 2, "seq {seq}");
    }
    assert_eq!(primary.checksum_at(4).expect("beyond the head"), None);
    assert_eq!(
        primary.position().expect("position").checksum,
        primary.checksum_at(3).expect("3")
    );
}

pub fn a_snapshot_brings_the_base_its_log_continues_from<B: Backend>(backend: &B) {
    let primary = backend.open(Role::Primary);
    for i in 0..5 {
        put(&primary, &format!("k{i}"), "v");
    }
    let replica = backend.open(Role::Replica);
    let target = SnapshotTarget {
        checksum: primary.checksum_at(5).expect("checksum"),
        ..SnapshotTarget::plain(HISTORY_A, 5)
    };
    let mut chunks = records(vec![contents(&primary)]).into_iter();
    replica
        .install_snapshot_fenced(&target, &mut || Ok(chunks.next()), &Unfenced)
        .expect("install");
    assert_eq!(replica.checksum_at(5).expect("base"), target.checksum);
    let next = put(&primary, "k5", "v");
    replica
        .apply(&primary.log_since(5, 10).expect("log"))
        .expect("apply");
    assert_eq!(
        replica.checksum_at(next).expect("replica"),
        primary.checksum_at(next).expect("primary")
    );
}

pub fn adopting_a_lineage_changes_no_data<B: Backend>(backend: &B) {
    let store = replica_at_3(backend);
    let before = contents(&store);
    let lineage = Lineage {
        history_id: Some("b".repeat(32)),
        fork: Some(Fork {
            prev_history_id: HISTORY_A.into(),
            seq: 5,
            epoch: 0,
        }),
        epoch: 0,
    };
    store.adopt_history(&lineage, &Unfenced).expect("adopt");
    let position = store.position().expect("position");
    assert_eq!(position.lineage(), lineage);
    assert_eq!(position.head, 3);
    assert_eq!(contents(&store), before);
}

pub fn a_diverged_install_keeps_the_replaced_entries<B: Backend>(backend: &B) {
    let store = replica_at_3(backend);
    store.promote(&Unfenced, None).expect("promote");
    let new_history = store.history_id().expect("id").expect("some");
    put(&store, "mine", "1");
    store.set_role(Role::Replica).expect("demote");
    let target = SnapshotTarget {
        keep_diverged_after: Some(2),
        ..SnapshotTarget::plain(&"c".repeat(32), 2)
    };
    let mut chunks = records(vec![pairs(&[("k1", "v"), ("k2", "v")])]).into_iter();
    store
        .install_snapshot_fenced(&target, &mut || Ok(chunks.next()), &Unfenced)
        .expect("install");
    let kept = store.diverged().expect("diverged");
    let summary: Vec<(String, u64, Bytes)> = kept
        .iter()
        .map(|d| (d.history_id.clone(), d.entry.seq, d.entry.op.key().to_vec()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (HISTORY_A.to_string(), 3, b("k3")),
            (new_history, 4, b("mine")),
        ]
    );
    assert_eq!(contents(&store), pairs(&[("k1", "v"), ("k2", "v")]));
}

pub fn trimming_keeps_the_checksum_the_log_continues_from<B: Backend>(backend: &B) {
    let store = backend.open(Role::Replica);
    let target = SnapshotTarget {
        checksum: Some(12345),
        ..SnapshotTarget::plain(HISTORY_A, 5)
    };
    store
        .install_snapshot_fenced(&target, &mut || Ok(None), &Unfenced)
        .expect("install");
    assert_eq!(store.checksum_at(5).expect("base"), Some(12345));
    let entries: Vec<_> = (6..=8).map(|seq| entry(seq, put_op("k", "v"))).collect();
    store.apply(&entries).expect("apply");
    store.promote(&Unfenced, None).expect("promote");
    for i in 0..4 {
        put(&store, &format!("n{i}"), "v");
    }
    let at_10 = store.checksum_at(10).expect("10");
    assert!(at_10.is_some());
    // The log holds 6..=12; keeping 2 removes 6..=10, and 10's checksum stays known.
    assert_eq!(store.trim_log(2, 100).expect("trim"), 5);
    assert_eq!(store.checksum_at(10).expect("10"), at_10);
    assert_eq!(store.checksum_at(8).expect("the fork"), None);
    assert_eq!(store.checksum_at(5).expect("the old base"), None);
}

pub fn a_replica_never_invents_a_checksum_its_upstream_lacks<B: Backend>(backend: &B) {
    // A snapshot without a checksum (an upstream whose rows predate checksums).
    let store = backend.open(Role::Replica);
    install(&store, HISTORY_A, 5, vec![]);
    store.apply(&[entry(6, put_op("a", "1"))]).expect("apply");
    assert_eq!(store.checksum_at(6).expect("6"), None);
    // Promoted, its own writes start a chain.
    store.promote(&Unfenced, None).expect("promote");
    let seq = put(&store, "b", "2");
    assert!(store.checksum_at(seq).expect("own write").is_some());
}

/// A history's fencing epoch: a promotion in an epoch stamps it (and stores it with the
/// history, across reopen for SQLite), a promotion without one keeps the current epoch, a
/// snapshot brings its upstream's, and adopting a lineage takes its epoch.
pub fn the_epoch_travels_with_the_history<B: Backend>(backend: &B) {
    let store = replica_at_3(backend);
    assert_eq!(store.position().expect("position").epoch, 0);
    let promoted = store.promote(&Unfenced, Some(42)).expect("promote");
    assert_eq!(promoted.epoch, 42);
    assert_eq!(store.position().expect("position").epoch, 42);
    store.set_role(Role::Replica).expect("demote");
    let again = store.promote(&Unfenced, None).expect("promote again");
    assert_eq!(again.epoch, 42, "a promotion by hand keeps the epoch");
    assert_eq!(store.snapshot().expect("snapshot").info().epoch, 42);

    let replica = backend.open(Role::Replica);
    let target = SnapshotTarget {
        epoch: 42,
        ..SnapshotTarget::plain(HISTORY_A, 0)
    };
    replica
        .install_snapshot_fenced(&target, &mut || Ok(None), &Unfenced)
        .expect("install");
    assert_eq!(replica.position().expect("position").epoch, 42);
    let lineage = Lineage {
        epoch: 57,
        ..replica.position().expect("position").lineage()
    };
    replica.adopt_history(&lineage, &Unfenced).expect("adopt");
    assert_eq!(replica.position().expect("position").epoch, 57);
}
