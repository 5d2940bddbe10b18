//! Invariant 3 against a real replica: an upstream (played by this test over a real
//! socket) that sends a gap or a duplicate seq gets its link dropped; the replica logs
//! the protocol error, never applies the out-of-order entry, reconnects by itself and
//! resumes from the last entry it did apply.

mod common;

use common::frames::{read_message, read_until_closed, write_message};
use common::{kv_rows, meta, KvProcess, PATIENCE};
use kv::protocol::{Message, PROTOCOL_VERSION};
use std::net::{TcpListener, TcpStream};
use tempfile::TempDir;

const HISTORY: &str = "feedfacefeedfacefeedfacefeedface";

fn put(seq: u64, key: &str) -> Message {
    Message::Put {
        seq,
        key: key.into(),
        value: format!("v{seq}").into_bytes(),
        expires_at: None,
    }
}

/// Accepts the replica's next connection and returns it with its Join's (history, seq).
fn accept_join(listener: &TcpListener) -> (TcpStream, Option<String>, u64) {
    let (mut stream, _) = listener.accept().expect("the replica reconnects");
    match read_message(&mut stream, PATIENCE) {
        Some(Message::Join {
            history_id,
            last_seq,
            protocol_version,
            ..
        }) => {
            assert_eq!(protocol_version, PROTOCOL_VERSION);
            (stream, history_id, last_seq)
        }
        other => panic!("expected Join, got {other:?}"),
    }
}

#[test]
fn gaps_and_duplicates_drop_the_link_and_are_never_applied() {
    let upstream = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = upstream.local_addr().expect("addr").to_string();
    let dir = TempDir::new().expect("tempdir");
    let db = dir.path().join("r1.db");
    let db_arg = db.display().to_string();
    let mut replica = KvProcess::start(&[
        "replica",
        "--db",
        &db_arg,
        "--listen",
        "127.0.0.1:0",
        "--join",
        &addr,
    ]);

    // First connection: a snapshot at seq 0, entry 1, then entry 3 (a gap).
    let (mut link, history, last_seq) = accept_join(&upstream);
    assert_eq!((history, last_seq), (None, 0));
    for message in [
        Message::SnapshotBegin {
            history_id: HISTORY.into(),
            seq: 0,
            keys: 1,
            reason: "new replica".into(),
            fork: None,
            checksum: None,
            keep_diverged_after: None,
            epoch: 0,
        },
        Message::Snapshot {
            entries: vec![kv::store::Record::new("a", "1")],
        },
        Message::SnapshotEnd { seq: 0 },
        put(1, "b"),
        put(3, "gap"),
    ] {
        write_message(&mut link, &message);
    }
    replica.expect_line("Snapshot received");
    read_until_closed(&mut link, PATIENCE);
    replica.wait_stderr("seq out of order: expected 2, got 3");

    // The replica reconnects with what it applied, and a duplicate is refused the same way.
    let (mut link, history, last_seq) = accept_join(&upstream);
    assert_eq!((history.as_deref(), last_seq), (Some(HISTORY), 1));
    for message in [
        Message::Continue {
            history_id: HISTORY.into(),
            from_seq: 1,
            fork: None,
            epoch: 0,
        },
        put(2, "c"),
        put(2, "duplicate"),
    ] {
        write_message(&mut link, &message);
    }
    read_until_closed(&mut link, PATIENCE);
    replica.wait_stderr("seq out of order: expected 3, got 2");

    let (_link, _, last_seq) = accept_join(&upstream);
    assert_eq!(
        last_seq, 2,
        "the replica resumes after the last entry it applied"
    );
    let rows: Vec<(String, String)> = kv_rows(&db);
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b", "c"], "an out-of-order entry was applied");
    assert_eq!(meta(&db, "applied_seq").as_deref(), Some("2"));
}
