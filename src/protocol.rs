//! The replication protocol: the [`Message`]s nodes exchange and their pure encoding.
//! Framing (a u32 big-endian length before each message) lives in [`crate::connection`];
//! this module only turns one frame's bytes into a message and back, with
//! [`rmp_serde`] (MessagePack, fields by name so later versions can add fields).
//!
//! | message | direction | meaning |
//! |---|---|---|
//! | `AuthChallenge { nonce }` | replica → upstream | with a shared secret, the first frame: a fresh random nonce |
//! | `AuthResponse { nonce }` | upstream → replica | the upstream's own fresh nonce |
//! | `AuthProof { proof }` | replica → upstream | the replica's proof: HMAC-SHA256(secret, "replica", both nonces) |
//! | `AuthConfirm { proof }` | upstream → replica | once the replica's proof checked out (nothing but `Error` otherwise): the upstream's, HMAC-SHA256(secret, "upstream", both nonces) |
//! | `Join { node_id, replica_addr, history_id, last_seq, protocol_version, fork, checksum, oldest_log, epoch }` | replica → upstream | first frame on a connection the replica opened: its lineage, seq, log checksum at that seq, oldest logged seq, fencing epoch (an upstream of a lower epoch refuses it) |
//! | `Probe { seq }` | upstream → replica | handshake: what is your log checksum at `seq`? (bisecting for the last seq both logs agree on) |
//! | `ProbeReply { seq, checksum }` | replica → upstream | the answer (`None`: not in its log) |
//! | `Continue { history_id, from_seq, fork, epoch }` | upstream → replica | partial resync: log entries after `from_seq` follow; a `history_id` other than the replica's continues it across `fork`, and the replica adopts both (and the epoch; one lower than its own is refused) |
//! | `SnapshotBegin { history_id, seq, keys, reason, fork, checksum, keep_diverged_after, epoch }` | upstream → replica | full resync (and why): a snapshot at `seq` of `keys` keys follows, of a history with that fork and fencing epoch, whose log checksum at `seq` is `checksum`; the replica first keeps its log entries after `keep_diverged_after` in `diverged` |
//! | `Snapshot { entries }` | upstream → replica | one bounded chunk of the snapshot, in key order: `[key, value, expires_at]` rows |
//! | `SnapshotEnd { seq }` | upstream → replica | the snapshot is complete; log entries after `seq` follow |
//! | `Put { seq, key, value, expires_at }` / `Delete { seq, key }` | upstream → replica | log entries, seq strictly increasing by one; a put's `expires_at` (ms since the Unix epoch) is the absolute time its key expires on every node |
//! | `Promote { seq }` | upstream → replica | `FAILOVER`: writes are paused at `seq`, which the replica acked; it promotes itself, and the upstream follows it |
//! | `Ack { seq }` | replica → upstream | everything up to `seq` is durable on the replica (sent after each durable batch, and every second when idle) |
//! | `Ping { seq, head }` | both | heartbeat: `seq` is the last entry the sender sent, `head` its head |
//! | `Error { message }` | both | the reason, sent before closing |
//!
//! Join with a full resync, then live streaming; a partial resync replaces the snapshot
//! with one `Continue`. The upstream keeps at most a window (about 4 MiB) of entries in
//! flight that the replica has not acked, and tells it its head at once and every second;
//! the replica acks after each durable batch and, when idle, every second.
//!
//! ```text
//! with --auth-file (both sides), before anything else:
//!    | -- AuthChallenge{nonce R} -------------> |
//!    | <------------- AuthResponse{nonce U} --- |
//!    | -- AuthProof{proof R} -----------------> |  proof R = HMAC(secret, replica, R, U)
//!    |                                          |  check proof R, else Error and close
//!    | <------------- AuthConfirm{proof U} ---- |  proof U = HMAC(secret, upstream, R, U)
//!    |   check proof U, else refuse it          |
//!    | -- Join{...} --------------------------> |
//!
//! replica                                   upstream (primary, or a replica)
//!    | -- Join{history, last_seq} ------------> |  decide: partial or full (replication::plan_sync)
//!    | <------------- SnapshotBegin{seq S, n} - |  one read transaction at S
//!    | <------------- Snapshot{entries} ------- |  chunks of <= 1,000 pairs / 1 MiB (or one larger pair)
//!    | <------------- Snapshot{entries} ------- |  (writes continue on the primary meanwhile)
//!    | -- Ping{0} (every second) -------------> |  alive, nothing to ack yet
//!    | <------------- SnapshotEnd{S} ---------- |
//!    |   apply the snapshot in one transaction  |
//!    | -- Ack{S} -----------------------------> |  now counted by WAIT
//!    | <------------- Ping{seq S, head H} ----- |  the replica is H - S behind
//!    | <------------- Put{S+1} / Delete{S+2} .. |  the log after S, then live entries,
//!    | -- Ack{seq} ---------------------------> |  within the window, refilled by acks
//!    | <------------- Ping{seq, head} --------- |  every second
//!    | -- Ack{seq} (every second when idle) --> |
//!
//! resync after a restart, same history and S+1 still in the upstream's log:
//!    | -- Join{history, last_seq S, checksum C} > |  C equals the upstream's checksum at S
//!    | <------------- Continue{history, S} ---- |
//!    | <------------- Ping{seq S, head H} ----- |
//!    | <------------- Put{S+1} ... ------------ |
//!
//! resync across a fork: the upstream was promoted at seq N (history B, fork (A, N)), the
//! replica followed A up to S <= N:
//!    | -- Join{A, last_seq S, checksum C} ----> |  A is B's previous history, S <= N
//!    | <------------- Continue{B, S, fork (A, N)} |  the replica adopts B and its fork
//!    | <------------- Put{S+1} ... ------------ |
//!
//! a replica whose log differs (or runs past the fork): find the last common seq, then a
//! full resync that keeps the replica's entries after it:
//!    | -- Join{A, last_seq S, checksum C} ----> |  checksums differ at S
//!    | <------------- Probe{seq M} ------------ |  bisect over the seqs both logs hold
//!    | -- ProbeReply{M, checksum} ------------> |  (about log2(S) round trips)
//!    | <------------- SnapshotBegin{.., keep_diverged_after K} |
//!    |   save entries > K in `diverged`, then install, in one transaction
//! ```

use crate::error::Result;
use crate::store::{Bytes, Fork, LogEntry, Op, Record, MAX_KEY_BYTES, MAX_VALUE_BYTES};
use serde::{Deserialize, Serialize};

/// The protocol version this build speaks; a `Join` with another version is refused.
///
/// Version 3 added expiry and binary keys and values: a `Put` may carry `expires_at`,
/// keys and values are MessagePack binary, and snapshot rows are `[key, value,
/// expires_at]`. An older replica would drop expiries without noticing and refuse
/// binary data, so the versions do not mix.
pub const PROTOCOL_VERSION: u32 = 3;

/// Largest frame accepted once a connection is established.
pub const MAX_FRAME: usize = 16 * 1024 * 1024;

/// Largest frame accepted before a peer has sent a valid `Join`: a stranger cannot make a
/// node buffer more than this.
pub const HANDSHAKE_MAX_FRAME: usize = 64 * 1024;

/// Snapshot chunk bounds: at most this many pairs...
pub const SNAPSHOT_CHUNK_ENTRIES: usize = 1000;
/// ...and at most this many bytes of keys and values per `Snapshot` message, unless one
/// pair is larger: it then travels alone.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;

/// MessagePack's framing around one pair or entry, with room to spare: a string header
/// is at most 5 bytes, an array header 5, a map key a few bytes more.
const PAIR_OVERHEAD: usize = 64;

// Every frame an upstream sends must fit MAX_FRAME, or a replica would refuse it and
// retry forever: the largest entry (largest key and value) and the largest chunk (a
// full chunk of small pairs, or one largest pair alone).
const _: () = assert!(MAX_KEY_BYTES + MAX_VALUE_BYTES + 4 * PAIR_OVERHEAD <= MAX_FRAME);
const _: () = assert!(
    SNAPSHOT_CHUNK_BYTES + SNAPSHOT_CHUNK_ENTRIES * PAIR_OVERHEAD + PAIR_OVERHEAD <= MAX_FRAME
);

/// One replication message; see the module documentation for the table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// With a shared secret, a replica's first frame: its fresh nonce.
    AuthChallenge {
        /// [`crate::auth::NONCE_LEN`] random bytes.
        nonce: Vec<u8>,
    },
    /// The upstream's answer to `AuthChallenge`: its own nonce (no proof yet: a listener
    /// proves nothing to a peer that has not proved itself).
    AuthResponse {
        /// [`crate::auth::NONCE_LEN`] random bytes.
        nonce: Vec<u8>,
    },
    /// The replica's proof.
    AuthProof {
        /// HMAC-SHA256 of the secret over the replica's label and both nonces.
        proof: Vec<u8>,
    },
    /// The upstream's proof, sent once the replica's checked out.
    AuthConfirm {
        /// HMAC-SHA256 of the secret over the upstream's label and both nonces.
        proof: Vec<u8>,
    },
    /// First frame from a replica: who it is and where its history stands.
    Join {
        /// The replica's node id (`meta.node_id`, kept across restarts).
        node_id: String,
        /// The address the replica serves on (for status displays).
        replica_addr: String,
        /// The history the replica's data belongs to, if it has any.
        history_id: Option<String>,
        /// The replica's applied seq (0 if it has nothing).
        last_seq: u64,
        /// [`PROTOCOL_VERSION`] of the replica.
        protocol_version: u32,
        /// Where the replica's history forked, if a promotion started it.
        #[serde(default)]
        fork: Option<Fork>,
        /// The replica's log checksum at `last_seq` (`None`: unknown).
        #[serde(default)]
        checksum: Option<u64>,
        /// The oldest seq in the replica's log (the lowest it can answer a `Probe` for).
        #[serde(default)]
        oldest_log: Option<u64>,
        /// The fencing epoch of the replica's history: an upstream of a lower epoch was
        /// deposed, and refuses it.
        #[serde(default)]
        epoch: u64,
    },
    /// Upstream, during the handshake: what is your log checksum at `seq`? (Finding the
    /// last seq at which the two logs agree, by bisection.)
    Probe {
        /// The seq asked about.
        seq: u64,
    },
    /// Replica: my log checksum at `seq` (`None`: not in my log, or unknown).
    ProbeReply {
        /// The seq asked about.
        seq: u64,
        /// The checksum.
        checksum: Option<u64>,
    },
    /// Partial resync: the entries after `from_seq` follow.
    Continue {
        /// The upstream's history id (equal to the replica's).
        history_id: String,
        /// The replica's applied seq; the next entry is `from_seq + 1`.
        from_seq: u64,
        /// The upstream history's fork. When `history_id` is not the replica's, the
        /// upstream's history continues the replica's across this fork, and the replica
        /// adopts both.
        #[serde(default)]
        fork: Option<Fork>,
        /// The fencing epoch of the upstream's history (the replica refuses a lower one
        /// than its own).
        #[serde(default)]
        epoch: u64,
    },
    /// Full resync: a snapshot at `seq` of `keys` keys follows.
    SnapshotBegin {
        /// The history the snapshot belongs to.
        history_id: String,
        /// The snapshot holds exactly the writes up to this seq.
        seq: u64,
        /// Number of keys in the snapshot (for progress).
        keys: u64,
        /// Why a full resync was needed, for the replica's log and `STATUS`. Absent from
        /// older senders, so it defaults to empty.
        #[serde(default)]
        reason: String,
        /// The history's fork, if a promotion started it.
        #[serde(default)]
        fork: Option<Fork>,
        /// The upstream's log checksum at `seq`, which the replica's log continues.
        #[serde(default)]
        checksum: Option<u64>,
        /// The replica diverged: it saves its log entries after this seq in its
        /// `diverged` table before installing the snapshot.
        #[serde(default)]
        keep_diverged_after: Option<u64>,
        /// The fencing epoch of the upstream's history (the replica refuses a lower one
        /// than its own).
        #[serde(default)]
        epoch: u64,
    },
    /// A chunk of the snapshot, in key order.
    Snapshot {
        /// Key-value pairs.
        entries: Vec<Record>,
    },
    /// The snapshot is complete.
    SnapshotEnd {
        /// The snapshot's seq, repeated as a check.
        seq: u64,
    },
    /// Log entry: `key` was set to `value`.
    Put {
        /// The entry's seq.
        seq: u64,
        /// The key (MessagePack binary).
        #[serde(with = "serde_bytes")]
        key: Bytes,
        /// The value (MessagePack binary).
        #[serde(with = "serde_bytes")]
        value: Bytes,
        /// When the key expires, in ms since the Unix epoch (`None`: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<u64>,
    },
    /// Log entry: `key` was removed.
    Delete {
        /// The entry's seq.
        seq: u64,
        /// The key (MessagePack binary).
        #[serde(with = "serde_bytes")]
        key: Bytes,
    },
    /// A planned handoff (`FAILOVER`): the upstream paused its writes at `seq`, which the
    /// replica has acked; the replica promotes itself and the upstream then follows it.
    Promote {
        /// The upstream's head; the replica must hold exactly this much.
        seq: u64,
    },
    /// Everything up to `seq` is durable on the replica.
    Ack {
        /// The replica's applied seq.
        seq: u64,
    },
    /// Heartbeat. From an upstream, `seq` is the last entry it sent on this connection (a
    /// replica that has not received that far lost entries) and `head` its head (how far
    /// behind the replica is). A replica sends it, with zeros, only before it has synced
    /// on a connection; afterwards its heartbeat is an `Ack` of its applied seq.
    Ping {
        /// The last entry sent (upstream), or the applied seq (replica).
        seq: u64,
        /// The sender's head. Absent from older senders, so it defaults to 0.
        #[serde(default)]
        head: u64,
    },
    /// Why the sender is closing the connection.
    Error {
        /// A human-readable reason.
        message: String,
    },
}

impl Message {
    /// The message that carries a log entry.
    pub fn from_entry(entry: LogEntry) -> Message {
        match entry.op {
            Op::Put {
                key,
                value,
                expires_at,
            } => Message::Put {
                seq: entry.seq,
                key,
                value,
                expires_at,
            },
            Op::Delete { key } => Message::Delete {
                seq: entry.seq,
                key,
            },
        }
    }

    /// The log entry this message carries, if it is `Put` or `Delete`.
    pub fn into_entry(self) -> Option<LogEntry> {
        match self {
            Message::Put {
                seq,
                key,
                value,
                expires_at,
            } => Some(LogEntry {
                seq,
                op: Op::Put {
                    key,
                    value,
                    expires_at,
                },
            }),
            Message::Delete { seq, key } => Some(LogEntry {
                seq,
                op: Op::Delete { key },
            }),
            _ => None,
        }
    }

    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Join { .. } => "Join",
            Message::Continue { .. } => "Continue",
            Message::SnapshotBegin { .. } => "SnapshotBegin",
            Message::Snapshot { .. } => "Snapshot",
            Message::SnapshotEnd { .. } => "SnapshotEnd",
            Message::Put { .. } => "Put",
            Message::Delete { .. } => "Delete",
            Message::Ack { .. } => "Ack",
            Message::Promote { .. } => "Promote",
            Message::Probe { .. } => "Probe",
            Message::ProbeReply { .. } => "ProbeReply",
            Message::Ping { .. } => "Ping",
            Message::Error { .. } => "Error",
            Message::AuthChallenge { .. } => "AuthChallenge",
            Message::AuthResponse { .. } => "AuthResponse",
            Message::AuthProof { .. } => "AuthProof",
            Message::AuthConfirm { .. } => "AuthConfirm",
        }
    }
}

/// Encodes one message as a frame body.
pub fn encode(message: &Message) -> Result<Vec<u8>> {
    Ok(rmp_serde::to_vec_named(message)?)
}

/// Deepest nesting a frame may have. A `Message` nests at most 4 levels (variant, fields,
/// entries, pair); the rest is room for later versions. rmp-serde's own default (1,024)
/// lets a 1 KB frame of nested arrays under an unknown field overflow a thread's stack.
const MAX_DEPTH: usize = 16;

/// Decodes one frame body. Any byte string yields a message or an error, never a panic.
pub fn decode(frame: &[u8]) -> Result<Message> {
    let mut deserializer = rmp_serde::Deserializer::from_read_ref(frame);
    deserializer.set_max_depth(MAX_DEPTH);
    Ok(Message::deserialize(&mut deserializer)?)
}

#[cfg(test)]
mod tests;
