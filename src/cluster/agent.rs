//! The cluster agent: two threads per member. One keeps the member's etcd lease alive and
//! tells the write lease (`node::lease`) when a keep-alive sent at `t` was answered, or
//! that the lease is gone. The other, every [`POLL_INTERVAL`], publishes the member's
//! position, reads `/kv/NAME/`, asks [`election::decide`] what to do and does it:
//! campaign (a transaction that takes the primary key only if it is absent), take office
//! (promote into the key's epoch, publish the epoch, open writes), follow the holder,
//! or stand down. It also carries out a `FAILOVER`'s handoff of the key.
//!
//! Plain threads, because the etcd calls block (see [`super::etcd`]) and must never hold
//! up the async runtime; the node's own calls here (promote, follow) are blocking too.

use super::election::{self, Action, Clock, Holder, Member, PrimaryRecord, Timing, View};
use super::etcd::{Compare, Etcd, KeyValue, TxnOp};
use crate::error::{Error, Result};
use crate::locks::lock;
use crate::node::lease::HandoffRequest;
use crate::node::Node;
use crate::replication::LinkMode;
use crate::store::Role;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;
use tracing::{info, warn};

/// How often a member reads its cluster's state (and so how fast it notices a change).
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// The lease TTL unless `--lease-ttl` says otherwise.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The shortest lease TTL kv takes (etcd raises shorter ones to about this anyway).
pub const MIN_LEASE_TTL: Duration = Duration::from_secs(2);

/// Where a member finds etcd and its cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// etcd client URLs.
    pub endpoints: Vec<String>,
    /// The cluster's name: its keys live under `/kv/NAME/`.
    pub name: String,
    /// The lease TTL.
    pub ttl: Duration,
}

/// What the two threads share.
struct Shared {
    node: Arc<Node>,
    etcd: Etcd,
    /// The member's current lease (`None`: none granted, or it was lost).
    lease_id: Mutex<Option<i64>>,
    stopping: AtomicBool,
    ttl: Duration,
}

impl Shared {
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
    /// Closes the write lease, revokes the etcd lease and waits for the threads.
    pub fn stop(mut self) {
        let lease_id = *lock(&self.shared.lease_id);
        if let Some(id) = lease_id {
            self.shared.node.lease().lost(id);
        }
        self.shared.stopping.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        if let Some(id) = lock(&self.shared.lease_id).take() {
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
    });
    let repl = shared.node.replication();
    let agent = Agent {
        shared: Arc::clone(&shared),
        prefix: format!("/kv/{}/", config.name),
        identity: PrimaryRecord {
            node_id: repl.node_id().to_string(),
            repl_addr: advertised(repl.listen_addr()),
            client_addr: client_addr.map(advertised),
        },
        timing: Timing {
            settle: POLL_INTERVAL * 3,
            step: POLL_INTERVAL * 3,
            startup_grace: config.ttl,
        },
        registered_at: None,
        vacant_since: None,
        published: None,
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

/// The address others reach `addr` at: a wildcard bind is published as loopback (a
/// cluster across machines binds each node to its own address).
fn advertised(addr: SocketAddr) -> String {
    match addr.ip().is_unspecified() {
        true => SocketAddr::new([127, 0, 0, 1].into(), addr.port()).to_string(),
        false => addr.to_string(),
    }
}

/// The keep-alive thread: renews the lease six times per TTL, so writes (open for half a
/// TTL after each answered renewal) survive two lost renewals.
fn keep_alive(shared: &Shared) {
    let interval = shared.ttl / 6;
    let lease = shared.node.lease();
    loop {
        let sent = Instant::now();
        let current = *lock(&shared.lease_id);
        if let Some(id) = current {
            match shared.etcd.keep_alive(id) {
                Ok(Some(_)) => lease.renewed(id, sent),
                Ok(None) => {
                    warn!("the etcd lease expired: no writes until a new election");
                    lease.lost(id);
                    let mut current = lock(&shared.lease_id);
                    if *current == Some(id) {
                        *current = None;
                    }
                }
                Err(e) => lease.etcd_answered(Err(e.to_string())),
            }
        }
        if !shared.sleep_until(sent + interval) {
            return;
        }
    }
}

/// The election loop's state.
struct Agent {
    shared: Arc<Shared>,
    prefix: String,
    identity: PrimaryRecord,
    timing: Timing,
    registered_at: Option<Instant>,
    vacant_since: Option<Instant>,
    /// What this member last published, under its current lease.
    published: Option<Member>,
    /// The last activity shown, so a change is logged once.
    activity: String,
    handoffs: UnboundedReceiver<HandoffRequest>,
}

impl Agent {
    fn run(mut self) {
        loop {
            let started = Instant::now();
            if let Err(e) = self.tick() {
                self.failed(e);
            }
            if !self.shared.sleep_until(started + POLL_INTERVAL) {
                return;
            }
        }
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn tick(&mut self) -> Result<()> {
        let lease = self.ensure_lease()?;
        let me = self.publish(lease)?;
        let view = parse_view(&self.prefix, &self.shared.etcd.range_prefix(&self.prefix)?);
        self.shared.node.lease().etcd_answered(Ok(()));
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
        self.carry_out(action, &view, lease)
    }

    /// A tick failed: say so; a primary that cannot reach etcd and whose write lease
    /// lapsed also stops calling itself the primary.
    fn failed(&mut self, e: Error) {
        let node = Arc::clone(&self.shared.node);
        match e {
            Error::Etcd(message) => {
                node.lease().etcd_answered(Err(message.clone()));
                let activity = format!("etcd unreachable ({message}); serving reads");
                if activity != self.activity {
                    warn!("cluster: {activity}");
                }
                self.show(activity);
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
        let sent = Instant::now();
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

    /// Publishes the member's position if it changed; returns the member as it stands.
    fn publish(&mut self, lease: i64) -> Result<election::Me> {
        let node = &self.shared.node;
        let position = node.store().position()?;
        let member = Member {
            node_id: self.identity.node_id.clone(),
            repl_addr: self.identity.repl_addr.clone(),
            client_addr: self.identity.client_addr.clone(),
            epoch: position.epoch,
            seq: position.head,
            lease,
        };
        if self.published.as_ref() != Some(&member) {
            let key = self.key(&format!("members/{}", member.node_id));
            self.shared.etcd.put(&key, &to_json(&member)?, lease)?;
            self.published = Some(member);
        }
        Ok(election::Me {
            node_id: self.identity.node_id.clone(),
            lease,
            role: node.role(),
            in_office: node.lease().office().is_some(),
            epoch: position.epoch,
            seq: position.head,
            following: node.link().following(),
        })
    }

    fn carry_out(&mut self, action: Action, view: &View, lease: i64) -> Result<()> {
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
                if let Some(epoch) = self.campaign(view, lease)? {
                    self.take_office(epoch, lease)?;
                }
            }
            Action::TakeOffice { epoch } => self.take_office(epoch, lease)?,
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

    /// Tries to take the primary key; returns its epoch if this member won.
    fn campaign(&mut self, view: &View, lease: i64) -> Result<Option<u64>> {
        let compare = [
            Compare::Absent(self.key("primary")),
            Compare::ModifiedAt(self.key("epoch"), view.epoch.1),
        ];
        let ops = [
            TxnOp::Put {
                key: self.key("primary"),
                value: to_json(&self.identity)?,
                lease,
            },
            TxnOp::Delete(self.key("handoff")),
        ];
        let (won, revision) = self.shared.etcd.txn(&compare, &ops)?;
        match won {
            true => info!("cluster: won the primary key in epoch {revision}"),
            false => self.show("another member took the primary key first".into()),
        }
        Ok(won.then_some(revision))
    }

    /// This member holds the key of `epoch`: promote into a new history of that epoch,
    /// record the epoch as the cluster's newest, then accept writes.
    fn take_office(&mut self, epoch: u64, lease: i64) -> Result<()> {
        let node = &self.shared.node;
        if node.role() == Role::Primary && node.store().position()?.epoch != epoch {
            node.stand_down()?;
        }
        if node.role() != Role::Primary {
            let promotion = node.promote_in_epoch(epoch)?;
            info!("cluster: {}", promotion.line());
        }
        let (recorded, _) = self.shared.etcd.txn(
            &[Compare::CreatedAt(self.key("primary"), epoch)],
            &[TxnOp::Put {
                key: self.key("epoch"),
                value: epoch.to_string().into_bytes(),
                lease: 0,
            }],
        )?;
        if recorded && node.lease().take_office(epoch, lease) {
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
        let (handed, _) = self.shared.etcd.txn(
            &[Compare::CreatedAt(self.key("primary"), epoch)],
            &[
                TxnOp::Delete(self.key("primary")),
                TxnOp::Put {
                    key: self.key("handoff"),
                    value: target.as_bytes().to_vec(),
                    lease: member.lease,
                },
            ],
        )?;
        if !handed {
            return Err(Error::Invalid("this node lost the primary key".into()));
        }
        node.stand_down()?;
        info!("cluster: handed the primary key to {}", member.repl_addr);
        Ok(())
    }

    /// Shows (and logs once, if not already warned of) what the member is doing.
    fn show(&mut self, activity: String) {
        if activity != self.activity {
            if !activity.starts_with("etcd unreachable") {
                info!("cluster: {activity}");
            }
            self.activity.clone_from(&activity);
            self.shared.node.lease().set_activity(activity);
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| Error::Invalid(format!("cannot encode: {e}")))
}

/// The cluster's state from its keys; a value that does not parse counts as absent (and
/// is logged), so a stray key cannot wedge the election.
pub fn parse_view(prefix: &str, kvs: &[KeyValue]) -> View {
    let mut view = View::default();
    for kv in kvs {
        let Some(name) = kv.key.strip_prefix(prefix) else {
            continue;
        };
        match name {
            "primary" => match serde_json::from_slice::<PrimaryRecord>(&kv.value) {
                Ok(record) => {
                    view.holder = Some(Holder {
                        record,
                        epoch: kv.create_revision,
                        lease: kv.lease,
                    })
                }
                Err(e) => warn!("cluster: ignoring an unreadable {}: {e}", kv.key),
            },
            "epoch" => {
                let epoch = String::from_utf8_lossy(&kv.value)
                    .trim()
                    .parse()
                    .unwrap_or(0);
                view.epoch = (epoch, kv.mod_revision);
            }
            "handoff" => view.handoff = Some(String::from_utf8_lossy(&kv.value).into_owned()),
            _ if name.starts_with("members/") => match serde_json::from_slice(&kv.value) {
                Ok(member) => view.members.push(member),
                Err(e) => warn!("cluster: ignoring an unreadable {}: {e}", kv.key),
            },
            _ => {}
        }
    }
    view
}
