//! Invariant 5 on the replication port: garbage, an oversized length prefix, a truncated
//! frame, an undecodable message, a message before `Join`, a `Join` of a newer fencing
//! epoch (this primary was deposed: it sends nothing but the refusal), a silent connection
//! and half a frame each close only their own connection, with a logged reason and (where possible)
//! an `Error` frame. The node, its shell and its existing replica carry on, and a new
//! replica still joins and converges afterwards.

mod common;

use common::frames::{join_at_epoch, read_message, read_until_closed, write_message};
use common::{kv_rows, wait_until, KvProcess, PATIENCE};
use kv::protocol::Message;
use std::io::Write;
use std::net::{Shutdown, TcpStream};
use std::thread;
use tempfile::TempDir;

/// Sends `bytes` (then half-closes if `finish`) and returns the Error reasons the node
/// sent before closing the connection.
fn send_bad(addr: &str, bytes: &[u8], finish: bool) -> Vec<String> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.write_all(bytes).expect("write");
    if finish {
        stream.shutdown(Shutdown::Write).expect("half-close");
    }
    read_until_closed(&mut stream, PATIENCE)
}

fn assert_reason(reasons: &[String], needle: &str) {
    assert!(
        reasons.iter().any(|r| r.contains(needle)),
        "{reasons:?} should mention {needle:?}"
    );
}

#[test]
fn bad_frames_close_one_connection_and_nothing_else() {
    let dir = TempDir::new().expect("tempdir");
    let p = dir.path().join("p.db");
    let p_arg = p.display().to_string();
    let mut primary = KvProcess::start(&["primary", "--db", &p_arg, "--listen", "127.0.0.1:0"]);
    assert_eq!(primary.command("PUT before 1"), "OK before = 1");
    let addr = primary.addr();
    let mut replica = KvProcess::synced_replica(&dir.path().join("r1.db"), &addr, &[]);

    // Silent peers are cut off by the handshake timeout; run them alongside the rest.
    let silent = {
        let addr = addr.clone();
        thread::spawn(move || send_bad(&addr, b"", false))
    };
    let half_frame = {
        let addr = addr.clone();
        thread::spawn(move || send_bad(&addr, &[0, 0, 0, 10, 1, 2], false))
    };

    assert_reason(
        &send_bad(&addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true),
        "bad frame",
    );
    assert_reason(
        &send_bad(&addr, &[0xff, 0xff, 0xff, 0xff, 0], true),
        "bad frame",
    );
    assert_reason(
        &send_bad(&addr, &[0, 0, 0, 10, 1, 2], true),
        "closed in the middle of a frame",
    );
    assert_reason(
        &send_bad(&addr, &[0, 0, 0, 3, 0xc1, 0xc1, 0xc1], true),
        "undecodable message",
    );
    let mut early = TcpStream::connect(&addr).expect("connect");
    write_message(&mut early, &Message::Ack { seq: 1 });
    assert_reason(
        &read_until_closed(&mut early, PATIENCE),
        "expected Join as the first message, got Ack",
    );
    let mut wrong_version = TcpStream::connect(&addr).expect("connect");
    write_message(
        &mut wrong_version,
        &Message::Join {
            node_id: "x".into(),
            replica_addr: "x".into(),
            history_id: None,
            last_seq: 0,
            protocol_version: 99,
            fork: None,
            checksum: None,
            oldest_log: None,
            epoch: 0,
        },
    );
    assert_reason(
        &read_until_closed(&mut wrong_version, PATIENCE),
        "protocol version 99 is not supported",
    );
    // A replica of a newer epoch than this primary's history: this primary was deposed
    // (in a cluster, another node won the primary key since), so it sends no data.
    let mut newer_epoch = TcpStream::connect(&addr).expect("connect");
    write_message(&mut newer_epoch, &join_at_epoch(7));
    match read_message(&mut newer_epoch, PATIENCE) {
        Some(Message::Error { message }) => {
            assert!(
                message.contains("was deposed by a newer primary"),
                "{message}"
            )
        }
        other => panic!("expected the refusal first, got {other:?}"),
    }
    let after = read_message(&mut newer_epoch, PATIENCE);
    assert!(after.is_none(), "nothing after the refusal: {after:?}");

    assert_reason(&silent.join().expect("silent peer"), "no Join within");
    assert_reason(
        &half_frame.join().expect("half-frame peer"),
        "no Join within",
    );
    primary.wait_stderr("no Join within 5000 ms");
    primary.wait_stderr("undecodable message");

    // The node, its shell and its replica are unharmed; a new replica still converges.
    assert_eq!(primary.command("PUT after 2"), "OK after = 2");
    let live = wait_until(PATIENCE, || replica.command("GET after") == "after -> 2");
    assert!(live, "the existing replica stopped receiving writes");
    let r2 = dir.path().join("r2.db");
    let _late = KvProcess::synced_replica(&r2, &addr, &[]);
    assert!(wait_until(PATIENCE, || kv_rows(&r2) == kv_rows(&p)));
}
