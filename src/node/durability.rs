//! What a primary's write needs besides its own commit, as the operator chose it: a bounded
//! loss window (`--min-replicas-to-write N` with `--min-replicas-max-lag`, Redis's names:
//! refuse writes while fewer than N replicas acked recently) and synchronous replication
//! (`--sync-replicas N`: answer a write only once N replicas hold it durably, waiting up to
//! `--sync-timeout`). A [`PendingWrite`] is a queued write that, once committed, also waits
//! for its confirmations.

use super::writer;
use crate::error::{Error, Result};
use crate::replication::Downstreams;
use std::time::Duration;

/// The durability options of a node (all off by default: a write is acknowledged once it
/// is durable on the primary, and replicas follow asynchronously).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Durability {
    /// Refuse writes while fewer replicas than this acked within `min_replicas_max_lag`.
    pub min_replicas_to_write: usize,
    /// How recent a replica's last ack must be for it to count (Redis's default: 10 s).
    pub min_replicas_max_lag: Duration,
    /// Acknowledge a write only once this many replicas hold it durably.
    pub sync_replicas: usize,
    /// How long a write waits for those replicas before it fails (committed locally).
    pub sync_timeout: Duration,
}

/// Redis's default `min-replicas-max-lag`.
pub const DEFAULT_MAX_LAG: Duration = Duration::from_secs(10);

/// How long a synchronous write waits for its replicas by default: long enough to ride
/// out a replica's reconnect (backoff up to 5 s, then a partial resync), short enough that
/// a client hears about a missing replica instead of hanging.
pub const DEFAULT_SYNC_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Durability {
    fn default() -> Self {
        Durability {
            min_replicas_to_write: 0,
            min_replicas_max_lag: DEFAULT_MAX_LAG,
            sync_replicas: 0,
            sync_timeout: DEFAULT_SYNC_TIMEOUT,
        }
    }
}

impl Durability {
    /// Refuses a write, before anything is stored, while fewer replicas than
    /// `min_replicas_to_write` acked within `min_replicas_max_lag`.
    pub fn check_before_write(&self, downstreams: &Downstreams) -> Result<()> {
        if self.min_replicas_to_write == 0 {
            return Ok(());
        }
        let good = downstreams.count_good(self.min_replicas_max_lag);
        if good >= self.min_replicas_to_write {
            return Ok(());
        }
        Err(Error::NoReplicas(format!(
            "{good} of the {} replicas required acked within {} s",
            self.min_replicas_to_write,
            self.min_replicas_max_lag.as_secs_f64()
        )))
    }

    /// A write queued on the writer, which waits for `sync_replicas` replicas once it is
    /// committed (if any are required).
    pub fn pending(&self, commit: writer::PendingWrite, downstreams: &Downstreams) -> PendingWrite {
        let confirm = (self.sync_replicas > 0).then(|| Confirm {
            downstreams: downstreams.clone(),
            epoch: downstreams.epoch(),
            replicas: self.sync_replicas,
            timeout: self.sync_timeout,
        });
        PendingWrite { commit, confirm }
    }
}

/// A queued write: [`durable`](Self::durable) waits for its commit and, with synchronous
/// replication, for its replicas.
pub struct PendingWrite {
    commit: writer::PendingWrite,
    confirm: Option<Confirm>,
}

/// The replicas a synchronous write waits for.
struct Confirm {
    downstreams: Downstreams,
    /// The history the write was made in: only acks of it count.
    epoch: u64,
    replicas: usize,
    timeout: Duration,
}

impl PendingWrite {
    /// Waits until the write is durable (or failed, storing nothing) and, with
    /// `--sync-replicas N`, until N replicas acked it: otherwise [`Error::NotConfirmed`],
    /// although the write is committed here. Each op's seq, `None` for a delete of an
    /// absent key (which stores nothing, so it waits for no replica).
    pub async fn durable(self) -> Result<Vec<Option<u64>>> {
        let seqs = self.commit.durable().await?;
        let (Some(confirm), Some(&last)) = (self.confirm, seqs.iter().flatten().max()) else {
            return Ok(seqs);
        };
        let deadline = tokio::time::Instant::now() + confirm.timeout;
        let holders = confirm
            .downstreams
            .wait_for_acks((last, confirm.epoch), confirm.replicas, Some(deadline))
            .await;
        if confirm.downstreams.epoch() != confirm.epoch {
            return Err(Error::NotConfirmed(format!(
                "the write was committed on this node (seq {last}) but this node's history \
                 changed before {} replica(s) confirmed it: it may not be on the primary now",
                confirm.replicas
            )));
        }
        if holders < confirm.replicas {
            return Err(Error::NotConfirmed(format!(
                "the write is committed on this node (seq {last}) but was not confirmed by \
                 {} replica(s) within {} s: {holders} hold it (--sync-replicas {}); it may \
                 be lost if this node is lost before they catch up",
                confirm.replicas,
                confirm.timeout.as_secs_f64(),
                confirm.replicas
            )));
        }
        Ok(seqs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::downstreams::ReplicaIdentity;

    fn replica(
        downstreams: &Downstreams,
        node_id: &str,
    ) -> crate::replication::downstreams::Registration {
        let identity = ReplicaIdentity {
            node_id: node_id.into(),
            replica_addr: "127.0.0.1:1".into(),
            peer: "127.0.0.1:2".parse().expect("addr"),
        };
        downstreams.register(identity, 0)
    }

    #[test]
    fn writes_are_refused_until_enough_replicas_acked_recently() {
        let downstreams = Downstreams::default();
        let durability = Durability {
            min_replicas_to_write: 1,
            ..Durability::default()
        };
        let refused = durability.check_before_write(&downstreams);
        assert!(matches!(refused, Err(Error::NoReplicas(_))), "{refused:?}");
        // Connected but not yet synced (no ack): still refused.
        let connection = replica(&downstreams, "a");
        assert!(durability.check_before_write(&downstreams).is_err());
        connection.ack(0);
        assert!(durability.check_before_write(&downstreams).is_ok());
        let strict = Durability {
            min_replicas_max_lag: Duration::ZERO,
            ..durability
        };
        std::thread::sleep(Duration::from_millis(2));
        assert!(strict.check_before_write(&downstreams).is_err(), "too old");
        drop(connection);
        assert!(durability.check_before_write(&downstreams).is_err(), "gone");
        assert!(Durability::default()
            .check_before_write(&downstreams)
            .is_ok());
    }
}
