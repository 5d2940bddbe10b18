//! Raw replication frames for tests that play a misbehaving peer: a u32 big-endian length
//! and an rmp-serde body, written and read with blocking sockets, plain or TLS.

use kv::protocol::{self, Message, PROTOCOL_VERSION};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tokio_rustls::rustls::{ClientConnection, StreamOwned};

/// A blocking connection whose reads can be given a time limit.
pub trait Timed: Read + Write {
    /// Fails reads that wait longer than `limit`.
    fn set_limit(&mut self, limit: Duration);
}

impl Timed for TcpStream {
    fn set_limit(&mut self, limit: Duration) {
        self.set_read_timeout(Some(limit)).expect("timeout");
    }
}

impl Timed for StreamOwned<ClientConnection, TcpStream> {
    fn set_limit(&mut self, limit: Duration) {
        self.sock.set_limit(limit);
    }
}

/// Writes one message as a frame.
pub fn write_message(stream: &mut impl Write, message: &Message) {
    try_write_message(stream, message).expect("write frame");
}

/// Writes one message as a frame, or says why the peer would not take it.
pub fn try_write_message(stream: &mut impl Write, message: &Message) -> std::io::Result<()> {
    let body = protocol::encode(message).expect("encode");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    stream.write_all(&frame)?;
    stream.flush()
}

/// Reads one message, or `None` if the peer closed (or reset) the connection, failing the
/// test if nothing arrives within `limit`.
pub fn read_message(stream: &mut impl Timed, limit: Duration) -> Option<Message> {
    stream.set_limit(limit);
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            panic!("no frame and no close within {limit:?}")
        }
        Err(_) => return None,
    }
    let length = u32::from_be_bytes(header) as usize;
    assert!(
        length <= protocol::MAX_FRAME,
        "peer sent an oversized frame: {length}"
    );
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some(protocol::decode(&body).expect("peer sent an undecodable frame"))
}

/// Reads messages until the peer closes; returns the `Error` reasons seen on the way.
pub fn read_until_closed(stream: &mut impl Timed, limit: Duration) -> Vec<String> {
    let mut reasons = Vec::new();
    while let Some(message) = read_message(stream, limit) {
        if let Message::Error { message } = message {
            reasons.push(message);
        }
    }
    reasons
}

/// The `Join` of a new replica (no data, no history), as a fake replica sends it.
pub fn fresh_join() -> Message {
    join_at_epoch(0)
}

/// [`fresh_join`] from a replica that has seen fencing epoch `epoch`.
pub fn join_at_epoch(epoch: u64) -> Message {
    Message::Join {
        node_id: "fake".into(),
        replica_addr: "127.0.0.1:1".into(),
        history_id: None,
        last_seq: 0,
        protocol_version: PROTOCOL_VERSION,
        fork: None,
        checksum: None,
        oldest_log: None,
        epoch,
    }
}
