//! The library's one error type. Every fallible function in `kv` returns [`Result`];
//! `anyhow` is used only at the binary's edge (`main.rs`).

use std::path::PathBuf;

/// Everything that can go wrong inside kv, from a bad shell line to a foreign database file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// SQLite reported an error.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// A schema migration failed.
    #[error("migration: {0}")]
    Migration(#[from] rusqlite_migration::Error),

    /// An operating-system I/O error (sockets, files).
    #[error("{0}")]
    Io(#[from] std::io::Error),

    /// The file cannot be used as a kv database (foreign, newer schema, other role,
    /// unreadable); nothing was written to it.
    #[error("{}: {reason}", path.display())]
    Database {
        /// The file that was refused.
        path: PathBuf,
        /// Why it was refused, in words a user can act on.
        reason: String,
    },

    /// A write could not be committed to the database file: its disk is full, its
    /// filesystem refused the write, or the file was removed or replaced while the node
    /// had it open. The write's transaction was rolled back.
    #[error("{} {reason}", path.display())]
    Unwritable {
        /// The database file.
        path: PathBuf,
        /// What happened, starting with a verb ("was removed...", "cannot be written...").
        reason: String,
    },

    /// A frame could not be encoded.
    #[error("encode: {0}")]
    Encode(#[from] rmp_serde::encode::Error),

    /// A frame could not be decoded into a message.
    #[error("undecodable message: {0}")]
    Decode(#[from] rmp_serde::decode::Error),

    /// The peer broke the replication protocol (wrong order, bad seq, unknown history...).
    #[error("protocol error: {0}")]
    Protocol(String),

    /// A log entry arrived whose seq is not the next one expected.
    #[error("seq out of order: expected {expected}, got {got}")]
    SeqOutOfOrder {
        /// The seq that must come next.
        expected: u64,
        /// The seq that came.
        got: u64,
    },

    /// Stored data breaks kv's own rules (e.g. a `put` log row without a value).
    #[error("corrupt database: {0}")]
    Corrupt(String),

    /// A command cannot apply to the data it found (Redis's words: "value is not an
    /// integer or out of range", "no such key"); nothing was stored.
    #[error("{0}")]
    Rejected(String),

    /// A TLS handshake failed (a certificate refused, a peer without TLS).
    #[error("{0}")]
    Tls(String),

    /// The peer reported an error and closed (the message says which peer).
    #[error("{0}")]
    Remote(String),

    /// The peer closed the connection between messages: not a protocol error (a node
    /// stopping closes its links this way), but the link is gone.
    #[error("{0}")]
    Closed(String),

    /// An upstream offered a history unrelated to the one this replica holds, on a
    /// reconnect the operator did not ask for: the replica keeps its data and stops.
    #[error("{0}")]
    UnrelatedHistory(String),

    /// A peer stayed silent longer than allowed.
    #[error("timed out: {0}")]
    Timeout(String),

    /// A write was attempted on a node that does not accept writes.
    #[error("read-only: {0}")]
    ReadOnly(String),

    /// A cluster member refused a write: it does not hold the primary key, or could not
    /// confirm its etcd lease within half the TTL (the write fence).
    #[error("read-only: {0}")]
    Fenced(String),

    /// Fewer replicas than `--min-replicas-to-write` acked within `--min-replicas-max-lag`:
    /// the write was refused before anything was stored.
    #[error("not enough good replicas to write: {0}")]
    NoReplicas(String),

    /// With `--sync-replicas N`, fewer than N replicas confirmed a write in time. The write
    /// IS committed on this node (and may yet reach replicas); only the confirmation failed.
    #[error("{0}")]
    NotConfirmed(String),

    /// etcd could not be reached, or answered with an error.
    #[error("etcd: {0}")]
    Etcd(String),

    /// A caller passed something invalid (bad address, bad key...).
    #[error("{0}")]
    Invalid(String),

    /// A replica's link was replaced (`JOIN` elsewhere, or a reconnect) while one of its
    /// writes was on its way to the store; the write was not committed.
    #[error("the link was replaced; its write was not committed")]
    Superseded,

    /// A background task went away (the node is shutting down).
    #[error("shutting down")]
    Shutdown,
}

/// `Result` with kv's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<tokio::task::JoinError> for Error {
    fn from(err: tokio::task::JoinError) -> Self {
        // A task is cancelled only when its runtime shuts down: that is the node stopping.
        if err.is_cancelled() {
            return Error::Shutdown;
        }
        Error::Io(std::io::Error::other(err.to_string()))
    }
}

impl Error {
    /// Whether this is the node stopping rather than something going wrong: callers log
    /// it quietly, if at all.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, Error::Shutdown)
    }
}
