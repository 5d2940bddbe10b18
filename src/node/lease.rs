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
//! room for clock-rate differences and scheduling delays. Likewise for the last read of
//! etcd that showed this node holding the primary key: a key deleted or handed over
//! while this node cannot read etcd stops its writes within half a TTL too. Times are
//! taken on `CLOCK_BOOTTIME` ([`Stamp`]), which keeps counting while the machine is
//! suspended, unlike `Instant`.

use crate::error::{Error, Result};
use crate::locks::lock;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// A moment on the fence's clock: `CLOCK_BOOTTIME` on Linux, which keeps counting while
/// the machine is suspended (`Instant` does not, so a node resumed from a suspend would
/// think its lease as fresh as when it slept).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Stamp(Duration);

impl Stamp {
    /// Now.
    pub fn now() -> Stamp {
        Stamp(since_boot())
    }

    /// How long ago this was.
    pub fn elapsed(self) -> Duration {
        since_boot().saturating_sub(self.0)
    }

    /// The moment `ago` before now.
    pub fn before_now(ago: Duration) -> Stamp {
        Stamp(since_boot().saturating_sub(ago))
    }
}

/// Time since boot, suspends included; elsewhere, since this process first asked.
fn since_boot() -> Duration {
    #[cfg(target_os = "linux")]
    {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime only writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } == 0 {
            return Duration::new(
                now.tv_sec.max(0) as u64,
                now.tv_nsec.clamp(0, 999_999_999) as u32,
            );
        }
    }
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

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
    /// When the last keep-alive of `lease` that etcd answered was sent.
    renewed_at: Option<Stamp>,
    /// When the last read that showed this node holding the key under `lease` was sent.
    confirmed_at: Option<Stamp>,
    etcd_ok: bool,
    etcd_error: Option<String>,
    activity: String,
}

impl Standing {
    /// How much longer both the renewal and the confirmation stay within `limit`, if they
    /// are now.
    fn fresh_for(&self, limit: Duration) -> Option<Duration> {
        let oldest = self.renewed_at?.elapsed().max(self.confirmed_at?.elapsed());
        limit.checked_sub(oldest).filter(|left| !left.is_zero())
    }
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

    /// Refuses a write unless this node holds the primary key, and both its lease's last
    /// renewal and the last read showing it the holder were sent within half a TTL.
    /// Passes outside a cluster.
    pub fn check_write(&self) -> Result<()> {
        let Some((name, ttl)) = &self.terms else {
            return Ok(());
        };
        let standing = lock(&self.standing);
        if standing.office.is_none() {
            return Err(Error::Fenced(format!(
                "this node does not hold cluster {name}'s primary key; write on the primary"
            )));
        }
        match standing.fresh_for(*ttl / 2) {
            Some(_) => Ok(()),
            None => Err(Error::Fenced(format!(
                "this node could not confirm its etcd lease for cluster {name} within half its \
                 TTL, so it stopped accepting writes (another node may take over)"
            ))),
        }
    }

    /// etcd granted lease `id` by a request sent at `sent_at`: it replaces any earlier
    /// lease (and the office held with it).
    pub fn granted(&self, id: i64, sent_at: Stamp) {
        let mut standing = lock(&self.standing);
        standing.lease = Some(id);
        standing.renewed_at = Some(sent_at);
        standing.confirmed_at = None;
        standing.office = None;
    }

    /// A keep-alive of lease `id` sent at `sent_at` was answered: the lease lives on.
    pub fn renewed(&self, id: i64, sent_at: Stamp) {
        let mut standing = lock(&self.standing);
        if standing.lease == Some(id) {
            standing.renewed_at = standing.renewed_at.max(Some(sent_at));
        }
    }

    /// A read sent at `sent_at` showed this node holding the primary key under lease `id`.
    pub fn confirmed(&self, id: i64, sent_at: Stamp) {
        let mut standing = lock(&self.standing);
        if standing.lease == Some(id) {
            standing.confirmed_at = standing.confirmed_at.max(Some(sent_at));
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

    /// This node holds the primary key of `epoch`, bound to lease `id`, as a read (or
    /// the winning transaction) sent at `confirmed_at` showed: writes pass while both stay
    /// fresh. Returns false (and changes nothing) if `id` is no longer this node's lease.
    pub fn take_office(&self, epoch: u64, id: i64, confirmed_at: Stamp) -> bool {
        let mut standing = lock(&self.standing);
        if standing.lease != Some(id) {
            return false;
        }
        standing.office = Some(epoch);
        standing.confirmed_at = standing.confirmed_at.max(Some(confirmed_at));
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
        let lease_remaining = match standing.office {
            Some(_) => standing.fresh_for(ttl / 2),
            None => None,
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
mod tests;
