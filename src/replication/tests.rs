//! Unit tests of the replication decisions, without sockets.

use super::*;
use crate::error::Error;
use crate::protocol::Message;
use crate::store::{LogEntry, Op, Record, MAX_SEQ};

fn put(seq: u64) -> Message {
    Message::Put {
        seq,
        key: "k".into(),
        value: "v".into(),
        expires_at: None,
    }
}

#[test]
fn receiver_accepts_snapshot_then_next_entries() {
    let mut rx = Receiver::new(None, 0);
    let begin = Message::SnapshotBegin {
        history_id: "h".into(),
        seq: 5,
        keys: 1,
        reason: "new replica".into(),
        fork: None,
        checksum: None,
        keep_diverged_after: None,
        epoch: 0,
    };
    assert!(matches!(
        rx.on_message(begin),
        Ok(Step::BeginSnapshot { ref target, .. }) if target.seq == 5
    ));
    let chunk = Message::Snapshot {
        entries: vec![Record::new("a", "1")],
    };
    assert!(matches!(rx.on_message(chunk), Ok(Step::SnapshotChunk(_))));
    assert_eq!(
        rx.on_message(Message::SnapshotEnd { seq: 5 }).ok(),
        Some(Step::FinishSnapshot { seq: 5 })
    );
    let step = rx.on_message(put(6)).expect("next seq");
    assert_eq!(
        step,
        Step::Apply(LogEntry {
            seq: 6,
            op: Op::put("k", "v")
        })
    );
    assert_eq!(rx.last_seq(), 6);
}

#[test]
fn receiver_rejects_gap_and_duplicate() {
    let mut rx = Receiver::new(Some("h".into()), 3);
    let resume = Message::Continue {
        history_id: "h".into(),
        from_seq: 3,
        fork: None,
        epoch: 0,
    };
    assert_eq!(
        rx.on_message(resume).ok(),
        Some(Step::Resume {
            from_seq: 3,
            adopt: None
        })
    );
    assert!(matches!(
        rx.on_message(put(5)),
        Err(Error::SeqOutOfOrder {
            expected: 4,
            got: 5
        })
    ));
    let mut rx = Receiver::new(Some("h".into()), 3);
    rx.on_message(Message::Continue {
        history_id: "h".into(),
        from_seq: 3,
        fork: None,
        epoch: 0,
    })
    .expect("resume");
    rx.on_message(put(4)).expect("next");
    assert!(rx.on_message(put(4)).is_err(), "duplicate must be refused");
}

#[test]
fn receiver_rejects_messages_out_of_order() {
    assert!(Receiver::new(None, 0).on_message(put(1)).is_err());
    assert!(Receiver::new(None, 0)
        .on_message(Message::Snapshot { entries: vec![] })
        .is_err());
    assert!(Receiver::new(None, 0)
        .on_message(Message::Ack { seq: 1 })
        .is_err());
    let mismatched = Message::Continue {
        history_id: "other".into(),
        from_seq: 0,
        fork: None,
        epoch: 0,
    };
    assert!(Receiver::new(Some("h".into()), 0)
        .on_message(mismatched)
        .is_err());
    let mut rx = Receiver::new(None, 0);
    rx.on_message(Message::SnapshotBegin {
        history_id: "h".into(),
        seq: 5,
        keys: 0,
        reason: String::new(),
        fork: None,
        checksum: None,
        keep_diverged_after: None,
        epoch: 0,
    })
    .expect("begin");
    assert!(rx.on_message(Message::SnapshotEnd { seq: 4 }).is_err());
}

#[test]
fn receiver_surfaces_remote_error() {
    let err = Receiver::new(None, 0)
        .on_message(Message::Error {
            message: "go away".into(),
        })
        .expect_err("error frame");
    assert!(err.to_string().contains("go away"));
}

#[test]
fn backoff_grows_to_cap_with_jitter_and_resets() {
    use std::time::Duration;
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let first = backoff.next_delay();
    assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
    for _ in 0..20 {
        assert!(backoff.next_delay() < Duration::from_secs(5));
    }
    assert!(backoff.next_delay() >= Duration::from_millis(2500));
    backoff.reset();
    assert!(backoff.next_delay() < Duration::from_millis(100));
}

fn in_snapshot() -> Receiver {
    let mut rx = Receiver::new(None, 0);
    rx.on_message(Message::SnapshotBegin {
        history_id: "h".into(),
        seq: 5,
        keys: 3,
        reason: String::new(),
        fork: None,
        checksum: None,
        keep_diverged_after: None,
        epoch: 0,
    })
    .expect("begin");
    rx
}

fn chunk(keys: &[&str]) -> Message {
    Message::Snapshot {
        entries: keys.iter().map(|k| Record::new(*k, "")).collect(),
    }
}

#[test]
fn snapshot_keys_must_increase_across_chunks() {
    let mut rx = in_snapshot();
    rx.on_message(chunk(&["a", "b"])).expect("ordered");
    rx.on_message(chunk(&["c"])).expect("ordered across chunks");
    assert!(
        rx.on_message(chunk(&["c"])).is_err(),
        "repeated across chunks"
    );
    assert!(
        in_snapshot().on_message(chunk(&["b", "a"])).is_err(),
        "descending"
    );
    assert!(
        in_snapshot().on_message(chunk(&["a", "a"])).is_err(),
        "repeated"
    );
}

#[test]
fn seqs_beyond_the_supported_range_are_refused() {
    let begin = |seq| Message::SnapshotBegin {
        history_id: "h".into(),
        seq,
        keys: 0,
        reason: String::new(),
        fork: None,
        checksum: None,
        keep_diverged_after: None,
        epoch: 0,
    };
    assert!(Receiver::new(None, 0).on_message(begin(u64::MAX)).is_err());
    let mut rx = Receiver::new(None, 0);
    rx.on_message(begin(MAX_SEQ))
        .expect("the largest seq is fine");
    rx.on_message(Message::SnapshotEnd { seq: MAX_SEQ })
        .expect("end");
    assert!(rx.on_message(put(0)).is_err(), "no wrap-around to 0");
    assert!(
        rx.on_message(put(MAX_SEQ)).is_err(),
        "no duplicate of the last seq"
    );
}

#[test]
fn a_heartbeat_ahead_of_the_entries_received_means_entries_were_lost() {
    let mut rx = Receiver::new(Some("h".into()), 3);
    rx.on_message(Message::Continue {
        history_id: "h".into(),
        from_seq: 3,
        fork: None,
        epoch: 0,
    })
    .expect("resume");
    assert!(rx.on_message(Message::Ping { seq: 3, head: 9 }).is_ok());
    rx.on_message(put(4)).expect("next");
    assert!(rx.on_message(Message::Ping { seq: 4, head: 9 }).is_ok());
    let err = rx
        .on_message(Message::Ping { seq: 6, head: 9 })
        .expect_err("lost entries");
    assert!(err.to_string().contains("never arrived"), "{err}");
}

#[test]
fn a_fork_beyond_its_history_is_refused() {
    let fork = |seq| {
        Some(crate::store::Fork {
            prev_history_id: "h".into(),
            seq,
            epoch: 0,
        })
    };
    let begin = Message::SnapshotBegin {
        history_id: "b".into(),
        seq: 5,
        keys: 0,
        reason: String::new(),
        fork: fork(6),
        checksum: None,
        keep_diverged_after: None,
        epoch: 0,
    };
    assert!(Receiver::new(Some("h".into()), 3)
        .on_message(begin)
        .is_err());
    let past_the_seq_space = Message::Continue {
        history_id: "b".into(),
        from_seq: 3,
        fork: fork(u64::MAX),
        epoch: 0,
    };
    assert!(Receiver::new(Some("h".into()), 3)
        .on_message(past_the_seq_space)
        .is_err());
    // A fork at or after the replica's seq, of its own history: it continues.
    let continues = Message::Continue {
        history_id: "b".into(),
        from_seq: 3,
        fork: fork(3),
        epoch: 0,
    };
    let step = Receiver::new(Some("h".into()), 3).on_message(continues);
    assert!(
        matches!(step, Ok(Step::Resume { adopt: Some(_), .. })),
        "{step:?}"
    );
    // A fork before it: the replica holds entries the new history does not.
    let diverged = Message::Continue {
        history_id: "b".into(),
        from_seq: 3,
        fork: fork(2),
        epoch: 0,
    };
    assert!(Receiver::new(Some("h".into()), 3)
        .on_message(diverged)
        .is_err());
}

fn resume_in(epoch: u64) -> Message {
    Message::Continue {
        history_id: "h".into(),
        from_seq: 3,
        fork: None,
        epoch,
    }
}

fn snapshot_in(epoch: u64) -> Message {
    Message::SnapshotBegin {
        history_id: "h".into(),
        seq: 5,
        keys: 0,
        reason: String::new(),
        fork: None,
        checksum: None,
        keep_diverged_after: None,
        epoch,
    }
}

#[test]
fn a_replica_refuses_an_upstream_of_a_lower_epoch() {
    let replica = || Receiver::new(Some("h".into()), 3).with_epoch(9);
    for message in [resume_in(8), snapshot_in(8)] {
        let err = replica().on_message(message).expect_err("deposed upstream");
        assert!(err.to_string().contains("epoch 8"), "{err}");
    }
    assert!(replica().on_message(resume_in(9)).is_ok());
    let newer = replica().on_message(snapshot_in(12)).expect("newer epoch");
    assert!(matches!(newer, Step::BeginSnapshot { ref target, .. } if target.epoch == 12));
}

#[test]
fn the_epoch_rule_refuses_only_a_lower_upstream() {
    assert_eq!(plan::deposed(5, 5), None);
    assert_eq!(plan::deposed(7, 5), None);
    assert!(plan::deposed(4, 5).is_some_and(|why| why.contains("deposed")));
}
