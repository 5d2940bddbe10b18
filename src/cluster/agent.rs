//! The cluster agent: two threads per member. One keeps the member's etcd lease alive and
//! tells the write lease (`node::lease`) when a keep-alive sent at `t` was answered, or
//! that the lease is gone; it renews only while the other thread is alive, so a wedged
//! member's lease (and key) expires. The other, every [`POLL_INTERVAL`], publishes the
//! member's position, reads `/kv/NAME/` (telling the write lease when a read showed it
//! holding the key), asks [`election::decide`] what to do and does it: campaign (a
//! transaction that takes the primary key only if it is absent and no member published a
//! newer position since the read), take office (promote into the key's epoch, publish the
//! epoch, open writes), follow the holder, or stand down. It also carries out a
//! `FAILOVER`'s handoff of the key.
//!
//! Plain threads, because the etcd calls block (see [`super::etcd`]) and must never hold
//! up the async runtime; the node's own calls here (promote, follow) are blocking too.

use super::election::{self, Action, Clock, Member, PrimaryRecord, Timing, View};
use super::etcd::{self, Compare, Etcd, TxnOp};
use super::keys::{to_json, Keys};
use super::{ClusterConfig, POLL_INTERVAL};

/// How often a member republishes a position whose seq merely advanced.
const PUBLISH_INTERVAL: Duration = Duration::from_secs(1);
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::node::lease::{HandoffRequest, Stamp};
use crate::node::Node;
use crate::replication::LinkMode;
use crate::store::history::epoch_at;
use crate::store::Role;
use std::net::SocketAddr;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

/// What the two threads share.
struct Shared {
    node: Arc<Node>,
    etcd: Etcd,
    /// The member's current lease (`None`: none granted, or it was lost).
    lease_id: Mutex<Option<i64>>,
    stopping: AtomicBool,
    ttl: Duration,
    /// When the election loop last finished a tick (however it ended).
    last_tick: Mutex<Stamp>,
}

impl Shared {
    /// Forgets the lease `id` (etcd says it expired): no writes on it, and the next tick
    /// registers again with a new one.
    fn forget_lease(&self, id: i64) {
        self.node.lease().lost(id);
        let mut current = lock(&self.lease_id);
        if *current == Some(id) {
            *current = None;
        }
    }

    /// Whether the election loop finished a tick within half a TTL: if not, it is wedged,
    /// and the lease is left to expire so that the others can take over.
    fn loop_alive(&self) -> bool {
        lock(&self.last_tick).elapsed() < self.ttl / 2
    }

    /// Sleeps until `until`, or less if the agent stops; returns whether it goes on.
    fn sleep_until(&self, until: Instant) -> bool {
        while !self.stopping.load(Ordering::Relaxed) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        false
    }
}

/// A running agent. [`ClusterAgent::stop`] gives up the lease, so the others elect a new
/// primary at once instead of after the TTL.
pub struct ClusterAgent {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl ClusterAgent {
    /// Stops the threads, then closes the write lease and revokes the etcd lease (the one
    /// current then, so a lease granted by a tick in flight is closed too).
    pub fn stop(mut self) {
        self.shared.stopping.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(id) = lock(&self.shared.lease_id).take() {
            self.shared.node.lease().lost(id);
            match self.shared.etcd.revoke(id) {
                Ok(()) => info!("gave up the etcd lease"),
                Err(e) => warn!("could not give up the etcd lease (it expires by itself): {e}"),
            }
        }
    }
}

/// Starts the agent of `node` in the cluster `config` names; `client_addr` is published
/// for clients looking for the primary, `handoffs` are the node's `FAILOVER` requests.
pub fn start(
    node: Arc<Node>,
    config: &ClusterConfig,
    client_addr: Option<SocketAddr>,
    handoffs: UnboundedReceiver<HandoffRequest>,
) -> Result<ClusterAgent> {
    let timeout = (config.ttl / 4).clamp(Duration::from_millis(250), Duration::from_secs(2));
    let shared = Arc::new(Shared {
        etcd: Etcd::new(&config.endpoints, timeout)?,
        node,
        lease_id: Mutex::new(None),
        stopping: AtomicBool::new(false),
        ttl: config.ttl,
        last_tick: Mutex::new(Stamp::now()),
    });
    let repl = shared.node.replication();
    let agent = Agent {
        shared: Arc::clone(&shared),
        keys: Keys::new(&config.name),
        identity: PrimaryRecord {
            node_id: repl.node_id().to_string(),
            repl_addr: advertised(repl.listen_addr()),
            client_addr: client_addr.map(advertised),
        },
        timing: Timing {
            settle: POLL_INTERVAL * 3,
            step: POLL_INTERVAL * 3,
            startup_grace: config.ttl,
            stale_wait: config.ttl * 3,
            handoff_patience: config.ttl,
        },
        registered_at: None,
        vacant_since: None,
        published: None,
        published_at: Instant::now(),
        activity: String::new(),
        handoffs,
    };
    let keeper = Arc::clone(&shared);
    let threads = vec![
        spawn("kv-cluster", move || agent.run())?,
        spawn("kv-lease", move || keep_alive(&keeper))?,
    ];
    Ok(ClusterAgent { shared, threads })
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>> {
    Ok(std::thread::Builder::new().name(name.into()).spawn(body)?)
}

/// The address others reach `addr` at. The replication address is never a wildcard
/// (`server::start` refuses one in a cluster); a client port on all interfaces is
/// published as loopback, for information only.
fn advertised(addr: SocketAddr) -> String {
    match addr.ip().is_unspecified() {
        true => SocketAddr::new([127, 0, 0, 1].into(), addr.port()).to_string(),
        false => addr.to_string(),
    }
}

/// The keep-alive thread: renews the lease six times per TTL, so writes (open for half a
/// TTL after each answered renewal) survive two lost renewals; but only while the
/// election loop is alive.
fn keep_alive(shared: &Shared) {
    let interval = shared.ttl / 6;
    let lease = shared.node.lease();
    let mut warned = false;
    loop {
        let started = Instant::now();
        let current = *lock(&shared.lease_id);
        let alive = shared.loop_alive();
        if !alive && !warned {
            warn!("cluster: the election loop is stuck; letting the etcd lease expire");
        }
        warned = !alive;
        if let (Some(id), true) = (current, alive) {
            let sent = Stamp::now();
            match shared.etcd.keep_alive(id) {
                Ok(Some(_)) => lease.renewed(id, sent),
                Ok(None) => {
                    warn!("cluster: the etcd lease expired: no writes until a new election");
                    shared.forget_lease(id);
                }
                Err(e) => lease.etcd_answered(Err(e.to_string())),
            }
        }
        if !shared.sleep_until(started + interval) {
            return;
        }
    }
}

/// The election loop's state.
struct Agent {
    shared: Arc<Shared>,
    keys: Keys,
    identity: PrimaryRecord,
    timing: Timing,
    registered_at: Option<Instant>,
    vacant_since: Option<Instant>,
    /// What this member last published, under its current lease, and when.
    published: Option<Member>,
    published_at: Instant,
    /// The last activity shown, so a change is logged once.
    activity: String,
    handoffs: UnboundedReceiver<HandoffRequest>,
}

impl Agent {
    fn run(mut self) {
        loop {
            let started = Instant::now();
            let ticked = catch_unwind(AssertUnwindSafe(|| self.tick()));
            match ticked {
                Ok(Ok(())) => {}
                Ok(Err(e)) => self.failed(e),
                Err(_) => {
                    // A bug: the keep-alive stops once ticks stop, and the others take over.
                    tracing::error!("cluster: the election loop failed unexpectedly; stopping it");
                    return;
                }
            }
            *lock(&self.shared.last_tick) = Stamp::now();
            if !self.shared.sleep_until(started + POLL_INTERVAL) {
                return;
            }
        }
    }

    fn tick(&mut self) -> Result<()> {
        let lease = self.ensure_lease()?;
        let me = self.publish(lease)?;
        let read_at = Stamp::now();
        let kvs = self.shared.etcd.range_prefix(self.keys.prefix())?;
        let view = self.keys.parse_view(&kvs);
        let node = Arc::clone(&self.shared.node);
        node.lease().etcd_answered(Ok(()));
        if view
            .holder
            .as_ref()
            .is_some_and(|h| h.record.node_id == me.node_id && h.lease == lease)
        {
            node.lease().confirmed(lease, read_at);
        }
        self.serve_handoffs(&view);
        self.vacant_since = match view.holder {
            Some(_) => None,
            None => Some(self.vacant_since.unwrap_or_else(Instant::now)),
        };
        let clock = Clock {
            registered_for: self.registered_at.map_or(Duration::ZERO, |at| at.elapsed()),
            vacant_for: self.vacant_since.map(|at| at.elapsed()),
        };
        let action = election::decide(&view, &me, &clock, &self.timing);
        self.carry_out(action, &view, lease, read_at)
    }

    /// A tick failed: say so; a primary that cannot reach etcd and whose write lease
    /// lapsed also stops calling itself the primary.
    fn failed(&mut self, e: Error) {
        let node = Arc::clone(&self.shared.node);
        let current = *lock(&self.shared.lease_id);
        match e {
            // etcd answered: the lease expired (during an outage, say); register again
            // at once rather than when the keep-alive thread next notices.
            Error::Etcd(message) if etcd::lease_expired(&message) => {
                node.lease().etcd_answered(Ok(()));
                self.record("the etcd lease expired: registering again");
                if let Some(id) = current {
                    warn!("cluster: the etcd lease expired: registering again");
                    self.shared.forget_lease(id);
                }
            }
            Error::Etcd(message) => {
                node.lease().etcd_answered(Err(message.clone()));
                let activity = format!("etcd unreachable ({message}); serving reads");
                if self.record(&activity) {
                    warn!("cluster: {activity}");
                }
            }
            other => warn!("cluster: {other}"),
        }
        if node.role() == Role::Primary && node.lease().check_write().is_err() {
            match node.stand_down() {
                Ok(()) => warn!("stood down: the write lease lapsed while etcd was unreachable"),
                Err(e) => warn!("could not stand down: {e}"),
            }
        }
    }

    /// The member's lease, granted if it has none (at start, or after it was lost).
    fn ensure_lease(&mut self) -> Result<i64> {
        if let Some(id) = *lock(&self.shared.lease_id) {
            return Ok(id);
        }
        let sent = Stamp::now();
        let (id, granted) = self.shared.etcd.grant(self.shared.ttl.as_secs())?;
        *lock(&self.shared.lease_id) = Some(id);
        self.shared.node.lease().granted(id, sent);
        self.published = None;
        if self.registered_at.is_none() {
            self.registered_at = Some(Instant::now());
        }
        info!("cluster: registered with etcd lease {id:x} (TTL {granted} s)");
        Ok(id)
    }

    /// Whether to publish `member`: when it changed, but a seq that merely advanced (a
    /// busy replica) at most once per [`PUBLISH_INTERVAL`], which keeps etcd's history
    /// small, except while the key is vacant, when every position must be final.
    fn should_publish(&self, member: &Member) -> bool {
        match &self.published {
            None => true,
            Some(published) if published == member => false,
            Some(published) => {
                published.epoch != member.epoch
                    || self.vacant_since.is_some()
                    || self.published_at.elapsed() >= PUBLISH_INTERVAL
            }
        }
    }

    /// Publishes the member's position if it changed; returns the member as it stands.
    fn publish(&mut self, lease: i64) -> Result<election::Me> {
        let node = &self.shared.node;
        let position = node.store().position()?;
        let settled = epoch_at(&position.lineage(), position.head);
        let member = Member {
            revision: 0,
            node_id: self.identity.node_id.clone(),
            repl_addr: self.identity.repl_addr.clone(),
            client_addr: self.identity.client_addr.clone(),
            epoch: settled,
            seq: position.head,
            lease,
        };
        if self.should_publish(&member) {
            let key = self.keys.member(&member.node_id);
            self.shared.etcd.put(&key, &to_json(&member)?, lease)?;
            self.published = Some(member);
            self.published_at = Instant::now();
        }
        Ok(election::Me {
            node_id: self.identity.node_id.clone(),
            lease,
            role: node.role(),
            in_office: node.lease().office().is_some(),
            epoch: position.epoch,
            position: (settled, position.head),
            following: node.link().following(),
        })
    }

    fn carry_out(&mut self, action: Action, view: &View, lease: i64, read_at: Stamp) -> Result<()> {
        let node = Arc::clone(&self.shared.node);
        match action {
            Action::Stay => {
                let doing = match (node.lease().office(), node.link().following()) {
                    (Some(epoch), _) => format!("primary in epoch {epoch}: accepting writes"),
                    (_, Some(upstream)) => format!("following the primary at {upstream}"),
                    (_, None) => "waiting".into(),
                };
                self.show(doing);
            }
            Action::Wait(why) => self.show(format!("not campaigning: {why}")),
            Action::Campaign => {
                let sent = Stamp::now();
                if let Some(epoch) = self.campaign(view, lease)? {
                    self.take_office(epoch, lease, sent)?;
                }
            }
            Action::TakeOffice { epoch } => self.take_office(epoch, lease, read_at)?,
            Action::Follow { upstream } => {
                node.follow(upstream.clone(), LinkMode::Start)?;
                self.show(format!("following the primary at {upstream}"));
            }
            Action::StandDown => {
                node.stand_down()?;
                self.show("lost the primary key: stopped accepting writes".into());
            }
        }
        Ok(())
    }

    /// Tries to take the primary key; returns its epoch if this member won. The
    /// transaction also requires every member's record to be as read, so a member that
    /// published a newer position meanwhile makes it fail (the next tick looks again).
    fn campaign(&mut self, view: &View, lease: i64) -> Result<Option<u64>> {
        let mut compare = vec![
            Compare::Absent(self.keys.primary()),
            Compare::ModifiedAt(self.keys.epoch(), view.epoch.1),
        ];
        compare.extend(
            view.members
                .iter()
                .map(|m| Compare::ModifiedAt(self.keys.member(&m.node_id), m.revision)),
        );
        let ops = [
            TxnOp::Put {
                key: self.keys.primary(),
                value: to_json(&self.identity)?,
                lease,
            },
            TxnOp::Delete(self.keys.handoff()),
        ];
        let (won, revision) = self.shared.etcd.txn(&compare, &ops)?;
        match won {
            true => info!("cluster: won the primary key in epoch {revision}"),
            false => self.show("the cluster changed while campaigning; looking again".into()),
        }
        Ok(won.then_some(revision))
    }

    /// This member holds the key of `epoch` (as a read or transaction sent at
    /// `confirmed_at` showed): promote into a new history of that epoch, record the epoch
    /// as the cluster's newest, then accept writes. An epoch below this node's own means
    /// etcd's revisions went back (a wiped or replaced etcd): refused, loudly.
    fn take_office(&mut self, epoch: u64, lease: i64, confirmed_at: Stamp) -> Result<()> {
        let node = Arc::clone(&self.shared.node);
        let own = node.store().position()?.epoch;
        if epoch < own {
            return Err(Error::Invalid(format!(
                "won the primary key at etcd revision {epoch}, below this node's epoch {own}: \
                 was etcd wiped or replaced? Not taking office; see docs/design.md"
            )));
        }
        if node.role() == Role::Primary && own != epoch {
            node.stand_down()?;
        }
        if node.role() != Role::Primary {
            let promotion = node.promote_in_epoch(epoch)?;
            info!("cluster: {}", promotion.line());
        }
        let (recorded, _) = self.shared.etcd.txn(
            &[Compare::CreatedAt(self.keys.primary(), epoch)],
            &[TxnOp::Put {
                key: self.keys.epoch(),
                value: epoch.to_string().into_bytes(),
                lease: 0,
            }],
        )?;
        if recorded && node.lease().take_office(epoch, lease, confirmed_at) {
            self.show(format!("primary in epoch {epoch}: accepting writes"));
        }
        Ok(())
    }

    /// Carries out `FAILOVER` handoffs: gives the key up to the target, in one
    /// transaction that also names it, then stands down.
    fn serve_handoffs(&mut self, view: &View) {
        while let Ok(request) = self.handoffs.try_recv() {
            let outcome = match Instant::now() < request.deadline {
                true => self.hand_over(view, &request.target),
                false => Err(Error::Invalid("the FAILOVER gave up waiting".into())),
            };
            let _ = request.done.send(outcome);
        }
    }

    /// Writes close before the key is given up: if etcd's answer is lost, the outcome is
    /// unknown, and writes reopen only if a later read shows this node still holding the
    /// key (the next tick's `TakeOffice`).
    fn hand_over(&self, view: &View, target: &str) -> Result<()> {
        let node = &self.shared.node;
        let epoch = match (&view.holder, node.lease().office()) {
            (Some(holder), Some(epoch)) if holder.epoch == epoch => epoch,
            _ => {
                return Err(Error::Invalid(
                    "this node does not hold the primary key".into(),
                ))
            }
        };
        let Some(member) = view.members.iter().find(|m| m.node_id == target) else {
            return Err(Error::Invalid(format!(
                "FAILOVER target {target} is not a live member of the cluster"
            )));
        };
        node.lease().leave_office();
        let handed = self.shared.etcd.txn(
            &[Compare::CreatedAt(self.keys.primary(), epoch)],
            &[
                TxnOp::Delete(self.keys.primary()),
                TxnOp::Put {
                    key: self.keys.handoff(),
                    value: target.as_bytes().to_vec(),
                    lease: member.lease,
                },
            ],
        );
        match handed {
            Ok((true, _)) => {}
            Ok((false, _)) => return Err(Error::Invalid("this node lost the primary key".into())),
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "the handoff's outcome is unknown ({e}); writes stay closed until this node \
                     sees whether it still holds the primary key"
                )))
            }
        }
        node.stand_down()?;
        info!("cluster: handed the primary key to {}", member.repl_addr);
        Ok(())
    }

    /// Shows what the member is doing, logging it once.
    fn show(&mut self, activity: String) {
        if self.record(&activity) {
            info!("cluster: {activity}");
        }
    }

    /// Records what the member is doing for the displays; returns whether it changed.
    fn record(&mut self, activity: &str) -> bool {
        if activity == self.activity {
            return false;
        }
        self.activity = activity.to_string();
        self.shared.node.lease().set_activity(activity.to_string());
        true
    }
}
