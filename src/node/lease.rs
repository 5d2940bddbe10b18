//! A cluster node's standing with its coordinator, as the write path and the status
//! displays see it: the cluster's name, whether this node holds the primary key (and in
//! which epoch), until when its etcd lease lets it accept writes, and whether etcd
//! answers. The write path checks [`WriteLease::check_write`] on every write and before
//! every commit, so a primary that cannot renew its lease stops taking writes by itself,
//! whatever its timers do. The cluster agent (`crate::cluster`) keeps it up to date; this
//! module never talks to etcd. Outside a cluster the lease is off and every check passes.
//!
//! The fence: a keep-alive *sent* at `t` that etcd answered keeps the lease alive until at
//! least `t + ttl` on etcd's clock (it counts from when it received it, later). Writes are
//! accepted until `t + ttl / 2` on this node's clock, so a lease that stops being renewed
//! stops the writes half a TTL before etcd could expire it and let another node win, with
//! room for clock-rate differences and scheduling delays.

use crate::error::{Error, Result};
use crate::locks::lock;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A request to hand the primary key to another member (a `FAILOVER` in a cluster): its
/// node id, and where to say how it went.
pub struct HandoffRequest {
    /// The target's node id.
    pub target: String,
    /// After this, the agent refuses it: the `FAILOVER` gave up and writes resumed.
    pub deadline: Instant,
    /// Answered once the key was handed over (or why not).
    pub done: oneshot::Sender<Result<()>>,
}

/// What the displays show of a cluster node (`INFO replication`, `STATUS`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub name: String,
    /// The lease TTL.
    pub ttl: Duration,
    /// The epoch this node holds the primary key in, while it does.
    pub office: Option<u64>,
    /// How long this primary may still accept writes without another renewal.
    pub lease_remaining: Option<Duration>,
    /// Whether etcd answered the last request.
    pub etcd_ok: bool,
    /// The last etcd error, while it fails.
    pub etcd_error: Option<String>,
    /// What the node is doing about the election (e.g. "following 127.0.0.1:8081",
    /// "waiting: node ab12… is further ahead").
    pub activity: String,
}

#[derive(Debug, Default)]
struct Standing {
    /// The etcd lease this node holds, if any: the office and renewals count only for it.
    lease: Option<i64>,
    /// The epoch of the primary key this node holds, if any (bound to `lease`).
    office: Option<u64>,
    /// When the last keep-alive that etcd answered was sent.
    renewed_at: Option<Instant>,
    etcd_ok: bool,
    etcd_error: Option<String>,
    activity: String,
}

/// The cluster side of a node's write path and status.
pub struct WriteLease {
    /// The cluster's name and lease TTL; `None` outside a cluster.
    terms: Option<(String, Duration)>,
    standing: Mutex<Standing>,
    handoffs: mpsc::UnboundedSender<HandoffRequest>,
}

impl WriteLease {
    /// A lease for a node outside any cluster: every write passes.
    pub fn off() -> Self {
        let (handoffs, _) = mpsc::unbounded_channel();
        WriteLease {
            terms: None,
            standing: Mutex::new(Standing::default()),
            handoffs,
        }
    }

    /// A lease for a member of cluster `name` whose etcd lease lasts `ttl`: no writes
    /// until it takes office. Returns the receiving end of `FAILOVER` handoff requests,
    /// for the cluster agent.
    pub fn for_cluster(
        name: &str,
        ttl: Duration,
    ) -> (Self, mpsc::UnboundedReceiver<HandoffRequest>) {
        let (handoffs, requests) = mpsc::unbounded_channel();
        let lease = WriteLease {
            terms: Some((name.to_string(), ttl)),
            standing: Mutex::new(Standing {
                activity: "starting".into(),
                ..Standing::default()
            }),
            handoffs,
        };
        (lease, requests)
    }

    /// The cluster's name, in a cluster.
    pub fn cluster(&self) -> Option<&str> {
        self.terms.as_ref().map(|(name, _)| name.as_str())
    }

    /// Refuses a write unless this node holds the primary key and its lease was renewed
    /// within half a TTL. Passes outside a cluster.
    pub fn check_write(&self) -> Result<()> {
        let Some((name, ttl)) = &self.terms else {
            return Ok(());
        };
        let standing = lock(&self.standing);
        if standing.office.is_none() {
            return Err(Error::ReadOnly(format!(
                "this node does not hold cluster {name}'s primary key; write on the primary"
            )));
        }
        match standing.renewed_at {
            Some(at) if at.elapsed() < *ttl / 2 => Ok(()),
            _ => Err(Error::ReadOnly(format!(
                "this node could not renew its etcd lease for cluster {name} within half its \
                 TTL, so it stopped accepting writes (another node may take over)"
            ))),
        }
    }

    /// etcd granted lease `id` by a request sent at `sent_at`: it replaces any earlier
    /// lease (and the office held with it).
    pub fn granted(&self, id: i64, sent_at: Instant) {
        let mut standing = lock(&self.standing);
        standing.lease = Some(id);
        standing.renewed_at = Some(sent_at);
        standing.office = None;
    }

    /// A keep-alive of lease `id` sent at `sent_at` was answered: the lease lives on.
    pub fn renewed(&self, id: i64, sent_at: Instant) {
        let mut standing = lock(&self.standing);
        if standing.lease == Some(id) && standing.renewed_at.is_none_or(|at| at < sent_at) {
            standing.renewed_at = Some(sent_at);
        }
    }

    /// Lease `id` is gone (expired or revoked): no office, no writes, until a new lease
    /// wins the key again. A report about an earlier lease changes nothing.
    pub fn lost(&self, id: i64) {
        let mut standing = lock(&self.standing);
        if standing.lease == Some(id) {
            *standing = Standing {
                etcd_ok: standing.etcd_ok,
                etcd_error: standing.etcd_error.take(),
                activity: std::mem::take(&mut standing.activity),
                ..Standing::default()
            };
        }
    }

    /// This node holds the primary key of `epoch`, bound to lease `id`: writes pass while
    /// that lease is renewed. Returns false (and changes nothing) if `id` is no longer
    /// this node's lease.
    pub fn take_office(&self, epoch: u64, id: i64) -> bool {
        let mut standing = lock(&self.standing);
        if standing.lease != Some(id) {
            return false;
        }
        standing.office = Some(epoch);
        true
    }

    /// This node no longer holds the primary key.
    pub fn leave_office(&self) {
        lock(&self.standing).office = None;
    }

    /// The epoch this node holds the primary key in, if it does.
    pub fn office(&self) -> Option<u64> {
        lock(&self.standing).office
    }

    /// Records whether etcd answered (and the error if not).
    pub fn etcd_answered(&self, result: std::result::Result<(), String>) {
        let mut standing = lock(&self.standing);
        standing.etcd_ok = result.is_ok();
        standing.etcd_error = result.err();
    }

    /// Records what the node is doing about the election.
    pub fn set_activity(&self, activity: String) {
        lock(&self.standing).activity = activity;
    }

    /// Asks the cluster agent to hand the primary key to `target` (a node id) before
    /// `deadline`; returns once it did, or why not.
    pub async fn hand_over(&self, target: &str, deadline: tokio::time::Instant) -> Result<()> {
        let (done, result) = oneshot::channel();
        let request = HandoffRequest {
            target: target.to_string(),
            deadline: deadline.into_std(),
            done,
        };
        self.handoffs
            .send(request)
            .map_err(|_| Error::Invalid("this node is not in a cluster".into()))?;
        match tokio::time::timeout_at(deadline, result).await {
            Ok(answer) => answer.map_err(|_| Error::Shutdown)?,
            Err(_) => Err(Error::Invalid(
                "the primary key could not be handed over in time (is etcd reachable?); the \
                 handoff is abandoned and writes resume"
                    .into(),
            )),
        }
    }

    /// What the displays show; `None` outside a cluster.
    pub fn status(&self) -> Option<ClusterStatus> {
        let (name, ttl) = self.terms.clone()?;
        let standing = lock(&self.standing);
        let lease_remaining = match (standing.office, standing.renewed_at) {
            (Some(_), Some(at)) => Some((ttl / 2).saturating_sub(at.elapsed())),
            _ => None,
        };
        Some(ClusterStatus {
            name,
            ttl,
            office: standing.office,
            lease_remaining,
            etcd_ok: standing.etcd_ok,
            etcd_error: standing.etcd_error.clone(),
            activity: standing.activity.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> WriteLease {
        WriteLease::for_cluster("c", Duration::from_secs(4)).0
    }

    #[test]
    fn outside_a_cluster_every_write_passes() {
        assert!(WriteLease::off().check_write().is_ok());
        assert_eq!(WriteLease::off().status(), None);
    }

    #[test]
    fn a_member_writes_only_in_office_with_a_fresh_renewal() {
        let lease = member();
        assert!(matches!(lease.check_write(), Err(Error::ReadOnly(_))));
        assert!(!lease.take_office(7, 1), "no lease granted yet");
        lease.granted(1, Instant::now());
        assert!(lease.check_write().is_err(), "a lease but not in office");
        assert!(lease.take_office(7, 1));
        assert!(lease.check_write().is_ok());
        lease.leave_office();
        assert!(lease.check_write().is_err());
    }

    #[test]
    fn writes_stop_half_a_ttl_after_the_last_renewal_was_sent() {
        let lease = member();
        let now = Instant::now();
        lease.granted(1, now - Duration::from_secs(3));
        lease.take_office(7, 1);
        lease.renewed(1, now - Duration::from_millis(2100));
        assert!(lease.check_write().is_err(), "2.1 s > half of 4 s");
        lease.renewed(1, now - Duration::from_millis(1900));
        assert!(lease.check_write().is_ok());
        // An older answer arriving late never moves the fence back.
        lease.renewed(1, now - Duration::from_secs(3));
        assert!(lease.check_write().is_ok());
        let remaining = lease.status().and_then(|s| s.lease_remaining);
        assert!(remaining.is_some_and(|r| r <= Duration::from_millis(100)));
    }

    #[test]
    fn a_lost_lease_ends_the_office_and_a_new_one_does_not_restore_it() {
        let lease = member();
        lease.granted(1, Instant::now());
        lease.take_office(7, 1);
        lease.lost(2);
        assert!(
            lease.check_write().is_ok(),
            "another lease's loss changes nothing"
        );
        lease.lost(1);
        assert!(lease.check_write().is_err());
        assert_eq!(lease.office(), None);
        // The key was bound to the lost lease: a new lease starts without the office,
        // and renewals of the old one count for nothing.
        lease.granted(2, Instant::now());
        lease.renewed(1, Instant::now());
        assert!(lease.check_write().is_err());
        assert!(!lease.take_office(7, 1));
    }
}
