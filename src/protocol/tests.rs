//! Unit tests of the protocol's encoding: every message round-trips, and the largest
//! entry and chunk fit a frame.

use super::*;

#[test]
fn every_message_round_trips() {
    let messages = vec![
        Message::Join {
            node_id: "n".into(),
            replica_addr: "127.0.0.1:8081".into(),
            history_id: Some("ab".into()),
            last_seq: 7,
            protocol_version: PROTOCOL_VERSION,
            fork: Some(Fork {
                prev_history_id: "aa".into(),
                seq: 5,
                epoch: 0,
            }),
            checksum: Some(u64::MAX),
            oldest_log: Some(2),
            epoch: 12,
        },
        Message::Probe { seq: 3 },
        Message::ProbeReply {
            seq: 3,
            checksum: None,
        },
        Message::Continue {
            history_id: "ab".into(),
            from_seq: 7,
            fork: None,
            epoch: 12,
        },
        Message::SnapshotBegin {
            history_id: "ab".into(),
            seq: 9,
            keys: 2,
            reason: "new replica".into(),
            fork: None,
            checksum: Some(1),
            keep_diverged_after: Some(4),
            epoch: 12,
        },
        Message::Snapshot {
            entries: vec![
                Record::new("k", "v w\n"),
                Record {
                    key: "é".into(),
                    value: Vec::new(),
                    expires_at: Some(1_800_000_000_000),
                },
            ],
        },
        Message::SnapshotEnd { seq: 9 },
        Message::Put {
            seq: 10,
            key: "a".into(),
            value: "1".into(),
            expires_at: None,
        },
        Message::Put {
            seq: 10,
            key: "a".into(),
            value: "1".into(),
            expires_at: Some(u64::MAX),
        },
        Message::Delete {
            seq: 11,
            key: "a".into(),
        },
        Message::Ack { seq: 11 },
        Message::Promote { seq: 11 },
        Message::Ping { seq: 11, head: 20 },
        Message::Error {
            message: "bye".into(),
        },
    ];
    for message in messages {
        let frame = encode(&message).expect("encode");
        assert_eq!(decode(&frame).expect("decode"), message);
    }
}

#[test]
fn the_largest_entry_and_chunk_fit_a_frame() {
    let put = Message::Put {
        seq: u64::MAX,
        key: vec![b'k'; MAX_KEY_BYTES],
        value: vec![b'v'; MAX_VALUE_BYTES],
        expires_at: Some(u64::MAX),
    };
    assert!(encode(&put).expect("encode").len() <= MAX_FRAME);
    let alone = Message::Snapshot {
        entries: vec![Record {
            key: vec![b'k'; MAX_KEY_BYTES],
            value: vec![0xff; MAX_VALUE_BYTES],
            expires_at: Some(u64::MAX),
        }],
    };
    assert!(encode(&alone).expect("encode").len() <= MAX_FRAME);
    let per_pair = SNAPSHOT_CHUNK_BYTES / SNAPSHOT_CHUNK_ENTRIES;
    let full = Message::Snapshot {
        entries: (0..SNAPSHOT_CHUNK_ENTRIES)
            .map(|i| Record {
                key: format!("{i}").into_bytes(),
                value: vec![b'v'; per_pair],
                expires_at: Some(u64::MAX),
            })
            .collect(),
    };
    assert!(encode(&full).expect("encode").len() <= MAX_FRAME);
}

#[test]
fn a_ping_without_head_from_an_older_sender_decodes() {
    let old = b"\x81\xa4Ping\x81\xa3seq\x07";
    assert_eq!(
        decode(old).expect("decode"),
        Message::Ping { seq: 7, head: 0 }
    );
}

#[test]
fn deep_nesting_is_refused_before_it_can_exhaust_the_stack() {
    let mut frame = b"\x81\xa4Join\x81\xa1x".to_vec();
    frame.extend(std::iter::repeat_n(0x91u8, 100_000));
    frame.push(0xc0);
    assert!(decode(&frame).is_err());
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    for frame in [
        &b""[..],
        b"\xff\xff",
        b"\x81\xa4Join\xc0",
        b"\xdd\xff\xff\xff\xff",
    ] {
        assert!(decode(frame).is_err());
    }
}

#[test]
fn entries_convert_both_ways() {
    let entry = LogEntry {
        seq: 3,
        op: Op::Put {
            key: "k".into(),
            value: "v".into(),
            expires_at: None,
        },
    };
    assert_eq!(Message::from_entry(entry.clone()).into_entry(), Some(entry));
    assert_eq!(Message::Ack { seq: 1 }.into_entry(), None);
}
