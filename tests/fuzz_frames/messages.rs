//! Random valid messages: every [`Message`] variant with seqs at msgpack width boundaries
//! and the store's limits, strings at str width boundaries, keys and values as bytes (now
//! and then not UTF-8), and a valid encoding of each (the protocol's own, or rmp-serde's
//! compact form). Also the variant and field names that `mutate`'s junk generator uses.

use crate::Rng;
use kv::protocol::{self, Message, PROTOCOL_VERSION};
use kv::store::{Fork, Record, MAX_EXPIRY, MAX_SEQ};
use rand::RngExt;

pub const VARIANTS: usize = 17;
pub const VARIANT_NAMES: [&str; VARIANTS] = [
    "Join",
    "Continue",
    "SnapshotBegin",
    "Snapshot",
    "SnapshotEnd",
    "Put",
    "Delete",
    "Ack",
    "Ping",
    "Error",
    "Probe",
    "ProbeReply",
    "Promote",
    "AuthChallenge",
    "AuthResponse",
    "AuthProof",
    "AuthConfirm",
];
pub const FIELD_NAMES: [&str; 20] = [
    "node_id",
    "replica_addr",
    "history_id",
    "last_seq",
    "protocol_version",
    "from_seq",
    "seq",
    "keys",
    "reason",
    "entries",
    "key",
    "value",
    "message",
    "fork",
    "checksum",
    "oldest_log",
    "keep_diverged_after",
    "prev_history_id",
    "nonce",
    "proof",
];
/// Seqs at every msgpack integer width boundary and at the store's limits.
pub const SEQS: [u64; 16] = [
    0,
    1,
    2,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    MAX_SEQ - 1,
    MAX_SEQ,
    MAX_SEQ + 1,
    u64::MAX - 1,
    u64::MAX,
];

pub fn random_seq(rng: &mut Rng) -> u64 {
    match rng.random_range(0..4) {
        0 => SEQS[rng.random_range(0..SEQS.len())],
        1 => rng.random(),
        _ => rng.random_range(0..1000),
    }
}

fn random_char(rng: &mut Rng) -> char {
    match rng.random_range(0..20) {
        0 => '\0',
        1 => 'é',
        2 => '\u{10FFFF}',
        3 => '\n',
        4 => ' ',
        5 => '€',
        _ => char::from(rng.random_range(b'!'..=b'~')),
    }
}

/// An expiry a correct upstream may send: none, or one SQLite can store.
pub fn valid_expiry(rng: &mut Rng) -> Option<u64> {
    random_expiry(rng).map(|at| at.min(MAX_EXPIRY))
}

/// An expiry, or none, some of them at the edges of the range (beyond what kv stores,
/// too: a receiver refuses those).
pub fn random_expiry(rng: &mut Rng) -> Option<u64> {
    match rng.random_range(0..4) {
        0 => None,
        1 => Some(u64::MAX),
        _ => Some(rng.random()),
    }
}

/// A string whose length often sits at a msgpack str width boundary (31/32, 255/256).
pub fn random_string(rng: &mut Rng) -> String {
    let len = match rng.random_range(0..20) {
        0..=1 => 0,
        2..=11 => rng.random_range(1..8),
        12..=16 => rng.random_range(8..40),
        17..=18 => rng.random_range(29..35),
        _ => rng.random_range(250..262),
    };
    (0..len).map(|_| random_char(rng)).collect()
}

/// Byte sequences that are not UTF-8: bytes UTF-8 never uses, a lone continuation byte,
/// sequences cut short, an overlong encoding, a surrogate.
const NOT_UTF8: [&[u8]; 8] = [
    &[0xff],
    &[0xfe, 0x00],
    &[0x80],
    &[0xc3],
    &[0xe2, 0x82],
    &[0xf0, 0x9f, 0x98],
    &[0xc0, 0xaf],
    &[0xed, 0xa0, 0x80],
];

/// A key or a value: a [`random_string`]'s bytes, some of them with bytes that are not
/// UTF-8 put in anywhere.
pub fn random_data(rng: &mut Rng) -> Vec<u8> {
    let mut data = random_string(rng).into_bytes();
    if rng.random_bool(0.25) {
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=data.len());
            let bytes = NOT_UTF8[rng.random_range(0..NOT_UTF8.len())];
            data.splice(at..at, bytes.iter().copied());
        }
    }
    data
}

/// Bytes for a nonce or a proof: usually the right length (32), sometimes not.
fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0 => 0,
        1 => rng.random_range(1..32),
        2 => rng.random_range(33..300),
        _ => 32,
    };
    (0..len).map(|_| rng.random()).collect()
}

pub fn message_of(variant: usize, rng: &mut Rng) -> Message {
    match variant {
        0 => Message::Join {
            node_id: random_string(rng),
            replica_addr: random_string(rng),
            history_id: rng.random_bool(0.5).then(|| random_string(rng)),
            last_seq: random_seq(rng),
            protocol_version: if rng.random_bool(0.25) {
                rng.random()
            } else {
                PROTOCOL_VERSION
            },
            fork: random_fork(rng),
            checksum: rng.random_bool(0.5).then(|| rng.random()),
            oldest_log: rng.random_bool(0.5).then(|| random_seq(rng)),
            epoch: 0,
        },
        1 => Message::Continue {
            history_id: random_string(rng),
            from_seq: random_seq(rng),
            fork: random_fork(rng),
            epoch: 0,
        },
        2 => Message::SnapshotBegin {
            history_id: random_string(rng),
            seq: random_seq(rng),
            keys: random_seq(rng),
            reason: random_string(rng),
            fork: random_fork(rng),
            checksum: rng.random_bool(0.5).then(|| rng.random()),
            keep_diverged_after: rng.random_bool(0.3).then(|| random_seq(rng)),
            epoch: 0,
        },
        3 => {
            let n = rng.random_range(0..20);
            Message::Snapshot {
                entries: (0..n)
                    .map(|_| Record {
                        key: random_data(rng),
                        value: random_data(rng),
                        expires_at: random_expiry(rng),
                    })
                    .collect(),
            }
        }
        4 => Message::SnapshotEnd {
            seq: random_seq(rng),
        },
        5 => Message::Put {
            seq: random_seq(rng),
            key: random_data(rng),
            value: random_data(rng),
            expires_at: random_expiry(rng),
        },
        6 => Message::Delete {
            seq: random_seq(rng),
            key: random_data(rng),
        },
        7 => Message::Ack {
            seq: random_seq(rng),
        },
        8 => Message::Ping {
            seq: random_seq(rng),
            head: random_seq(rng),
        },
        9 => Message::Error {
            message: random_string(rng),
        },
        10 => Message::Probe {
            seq: random_seq(rng),
        },
        11 => Message::Promote {
            seq: random_seq(rng),
        },
        13 => Message::AuthChallenge {
            nonce: random_bytes(rng),
        },
        14 => Message::AuthResponse {
            nonce: random_bytes(rng),
        },
        15 => Message::AuthProof {
            proof: random_bytes(rng),
        },
        16 => Message::AuthConfirm {
            proof: random_bytes(rng),
        },
        _ => Message::ProbeReply {
            seq: random_seq(rng),
            checksum: rng.random_bool(0.5).then(|| rng.random()),
        },
    }
}

/// Now and then a fork, at any seq.
fn random_fork(rng: &mut Rng) -> Option<Fork> {
    rng.random_bool(0.3).then(|| Fork {
        prev_history_id: random_string(rng),
        seq: random_seq(rng),
        epoch: 0,
    })
}

/// A valid encoding: the protocol's own (fields by name), or now and then rmp-serde's
/// compact form (fields as arrays), which the decoder also accepts.
pub fn encoding_of(message: &Message, rng: &mut Rng) -> Vec<u8> {
    if rng.random_bool(0.8) {
        protocol::encode(message).expect("encode")
    } else {
        rmp_serde::to_vec(message).expect("encode compact")
    }
}
