//! What a link tells whoever started it about its first sync: a snapshot installed, or a
//! partial resync, and the line the shell prints for it.

use crate::error::Result;
use tokio::sync::oneshot;

/// How the first synchronisation of a link went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncReport {
    /// A snapshot of `keys` keys at `seq` was installed.
    Snapshot {
        /// The snapshot's seq.
        seq: u64,
        /// Keys installed.
        keys: u64,
    },
    /// The upstream continued from the replica's applied seq.
    Resumed {
        /// The replica's applied seq when it resumed.
        from_seq: u64,
    },
}

impl SyncReport {
    /// The line the shell prints for it (the book's `Snapshot received`).
    pub fn line(&self) -> String {
        match self {
            SyncReport::Snapshot { .. } => "Snapshot received".into(),
            SyncReport::Resumed { from_seq } => {
                format!("Resumed after seq {from_seq} (partial resync)")
            }
        }
    }
}

/// Reports the first successful sync (or the failure that prevented it) to whoever
/// started the link.
pub type FirstSync = oneshot::Sender<Result<SyncReport>>;
