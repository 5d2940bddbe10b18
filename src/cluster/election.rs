//! The election, as plain code: what a cluster member publishes ([`Member`]), what it
//! reads back from etcd ([`View`]), and what it does next ([`decide`]) — follow the holder
//! of the primary key, take office after winning it, stand down after losing it, wait,
//! or campaign. No sockets and no clocks: the agent passes in how long things have lasted,
//! and tests call [`decide`] directly. The rules (docs/design.md, "Automatic failover"):
//!
//! - **One holder.** Only the holder of `/kv/NAME/primary`, a key bound to its lease and
//!   taken by a transaction that requires the key to be absent, may be the primary. Its
//!   `create_revision` is the fencing epoch stamped into the history the winner starts.
//! - **Positions.** A member publishes its position as (epoch, seq): the epoch of the
//!   history its newest entry belongs to (a replica that adopted a new history but has not
//!   caught up to its fork still ranks in the old one), then its head seq. Seqs of
//!   different histories do not compare, so the epoch comes first.
//! - **Best first.** Among live members, a member campaigns only if none is further
//!   ahead, and only after the vacancy has lasted a settling time (so every member
//!   published its final position); ties go to the lowest node id first, the others one
//!   step later each. After a start, a member also waits one TTL so that the other
//!   members of a restarting cluster can register.
//! - **The newest epoch.** `/kv/NAME/epoch` (permanent) holds the epoch of the newest
//!   history that took office. A member whose position is of an older epoch waits longer
//!   (the members that have the newer writes may be restarting), then campaigns if none
//!   of them came back: nobody waits forever. A fresh cluster has no epoch key.
//! - **Handoff.** `FAILOVER` names its target in `/kv/NAME/handoff`: the target campaigns
//!   at once, the others wait for it (a while, not forever).

use crate::store::Role;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// What a member publishes under `/kv/NAME/members/<node_id>`, bound to its lease.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The key's `mod_revision` as read (not published): a campaign is conditioned on it,
    /// so a member that published a newer position since makes the campaign fail.
    #[serde(skip)]
    pub revision: u64,
    /// Its node id (`meta.node_id`).
    pub node_id: String,
    /// Its replication address.
    pub repl_addr: String,
    /// Its client (Redis protocol) address, if it serves one.
    pub client_addr: Option<String>,
    /// The epoch of the history its newest entry belongs to (see [`Me::position`]).
    pub epoch: u64,
    /// Its head seq.
    pub seq: u64,
    /// Its lease.
    pub lease: i64,
}

impl Member {
    /// Its position: seqs of different epochs do not compare, so the epoch comes first.
    pub fn position(&self) -> (u64, u64) {
        (self.epoch, self.seq)
    }
}

/// The value of `/kv/NAME/primary`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrimaryRecord {
    /// The holder's node id.
    pub node_id: String,
    /// Its replication address (what the others follow).
    pub repl_addr: String,
    /// Its client address, if it serves one.
    pub client_addr: Option<String>,
}

/// The primary key as read: its value, epoch (`create_revision`) and lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Holder {
    /// The value.
    pub record: PrimaryRecord,
    /// The fencing epoch.
    pub epoch: u64,
    /// The lease the key is bound to.
    pub lease: i64,
}

/// What a member reads of its cluster under `/kv/NAME/`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    /// The holder of the primary key, if anyone holds it.
    pub holder: Option<Holder>,
    /// The newest epoch that took writes, and the key's `mod_revision` (0: no key, a
    /// fresh cluster).
    pub epoch: (u64, u64),
    /// The node id a `FAILOVER` hands the key to, while it is pending.
    pub handoff: Option<String>,
    /// The live members.
    pub members: Vec<Member>,
}

/// The member deciding, as it stands now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Me {
    /// Its node id.
    pub node_id: String,
    /// Its current lease.
    pub lease: i64,
    /// Its role now.
    pub role: Role,
    /// Whether its write lease is open (it took office).
    pub in_office: bool,
    /// The fencing epoch of its history.
    pub epoch: u64,
    /// Its position: the epoch of the history its newest entry belongs to (below
    /// `epoch` while it has not caught up to its history's fork), and its head seq.
    pub position: (u64, u64),
    /// The upstream it follows, if any.
    pub following: Option<String>,
}

/// How long things have lasted, as the agent measured them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Clock {
    /// Since this member registered (its first lease).
    pub registered_for: Duration,
    /// Since it first saw the primary key vacant (`None`: it is held).
    pub vacant_for: Option<Duration>,
}

/// The election's waiting times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// How long a vacancy lasts before the best member campaigns.
    pub settle: Duration,
    /// How much longer each member tied with a lower node id waits.
    pub step: Duration,
    /// How long after registering a member waits before it campaigns.
    pub startup_grace: Duration,
    /// How much longer a member behind the cluster's newest epoch waits.
    pub stale_wait: Duration,
    /// How long the others wait for a `FAILOVER` target to win.
    pub handoff_patience: Duration,
}

/// What a member does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing to change.
    Stay,
    /// Nothing to do yet, for this reason.
    Wait(String),
    /// Try to take the primary key.
    Campaign,
    /// This member holds the key of `epoch`: promote into that epoch (if not done),
    /// publish it, open writes.
    TakeOffice {
        /// The epoch.
        epoch: u64,
    },
    /// Follow the holder at this replication address (demoting first if primary).
    Follow {
        /// The holder's replication address.
        upstream: String,
    },
    /// Stop taking writes: this member is the primary but does not hold the key.
    StandDown,
}

/// What `me` does next, given `view` and how long things have lasted.
pub fn decide(view: &View, me: &Me, clock: &Clock, timing: &Timing) -> Action {
    match &view.holder {
        Some(holder) => follow_or_serve(holder, me),
        None if me.role == Role::Primary || me.in_office => Action::StandDown,
        None => campaign_or_wait(view, me, clock, timing),
    }
}

fn follow_or_serve(holder: &Holder, me: &Me) -> Action {
    if holder.record.repl_addr.is_empty() {
        return Action::Wait(
            "the primary key holds a value this version cannot read; waiting for it to go".into(),
        );
    }
    let mine = holder.record.node_id == me.node_id;
    if mine && holder.lease == me.lease {
        let serving = me.role == Role::Primary && me.in_office && me.epoch == holder.epoch;
        return match serving {
            true => Action::Stay,
            false => Action::TakeOffice {
                epoch: holder.epoch,
            },
        };
    }
    if mine {
        return Action::Wait(
            "an earlier run of this node still holds the primary key, until its lease expires"
                .into(),
        );
    }
    if holder.epoch < me.epoch {
        return Action::Wait(format!(
            "the primary key's holder {} is of epoch {}, older than this node's {}: not \
             following it (is etcd the same cluster as before?)",
            holder.record.repl_addr, holder.epoch, me.epoch
        ));
    }
    if me.role == Role::Replica && me.following.as_deref() == Some(&holder.record.repl_addr) {
        return Action::Stay;
    }
    Action::Follow {
        upstream: holder.record.repl_addr.clone(),
    }
}

fn campaign_or_wait(view: &View, me: &Me, clock: &Clock, timing: &Timing) -> Action {
    let alive = |id: &str| view.members.iter().any(|m| m.node_id == id);
    let vacant_for = clock.vacant_for.unwrap_or_default();
    match &view.handoff {
        Some(target) if target == &me.node_id => return Action::Campaign,
        Some(target) if alive(target) && vacant_for < timing.handoff_patience => {
            return Action::Wait(format!("FAILOVER hands the primary key to node {target}"))
        }
        _ => {}
    }
    if clock.registered_for < timing.startup_grace {
        return Action::Wait("waiting for the other members to register".into());
    }
    let mut rank = 0u32;
    for other in view.members.iter().filter(|m| m.node_id != me.node_id) {
        if other.position() > me.position {
            return Action::Wait(format!(
                "node {} is further ahead (epoch {}, seq {})",
                other.repl_addr, other.epoch, other.seq
            ));
        }
        if other.position() == me.position && other.node_id < me.node_id {
            rank += 1;
        }
    }
    let cluster_epoch = view.epoch.0;
    let mut due = timing.settle + timing.step * rank;
    if me.position.0 < cluster_epoch {
        due += timing.stale_wait;
        if clock.vacant_for.is_some_and(|vacant| vacant < due) {
            return Action::Wait(format!(
                "this node's data is of epoch {}, older than the cluster's newest \
                 {cluster_epoch}: waiting for a member that has it",
                me.position.0
            ));
        }
    }
    match clock.vacant_for {
        Some(vacant) if vacant >= due => Action::Campaign,
        _ => Action::Wait("the primary key is vacant; letting the members settle".into()),
    }
}

#[cfg(test)]
mod tests;
