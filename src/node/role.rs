//! A node's role as a state machine, in plain code: a primary takes writes; a replica
//! follows an upstream (or waits to be told one). Requests change it at run time:
//! promote (`REPLICAOF NO ONE`, `PROMOTE`, a cluster election won), follow (`REPLICAOF
//! host port`, `JOIN`, a cluster's new primary) and stand down (a cluster member that lost
//! the primary key).
//! [`plan`] says what each request does from each role; [`super::Node`] carries it out.
//!
//! ```text
//!            follow(upstream): demote, then follow
//!   Primary -------------------------------------> Replica(upstream)
//!      ^  <-------------------------------------      |   ^
//!      |   promote: stop the link, new history         |   | follow(other): replace the link
//!      |   forked at the applied seq                    +---+
//!      +-- promote: nothing to do (already primary)
//! ```

use crate::store::Role;

/// A request to change the role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoleRequest {
    /// Become the primary of a new history that continues the current one.
    Promote,
    /// Follow an upstream (its replication address comes with the request to the node).
    Follow,
    /// Stop taking writes and stop following, until told what to do (a cluster member
    /// that lost the primary key, or waits for the election).
    StandDown,
}

/// What a request does, step by step, in this order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RolePlan {
    /// Refuse writes from now on and store the replica role (before anything else, so
    /// no write commits after the node started following).
    pub demote: bool,
    /// Stop following the current upstream (and fence off its writes in flight).
    pub stop_link: bool,
    /// Start a new history and store the primary role, in one transaction.
    pub promote: bool,
    /// Start following the upstream.
    pub follow: bool,
}

/// What `request` does to a node in role `current`.
pub fn plan(current: Role, request: &RoleRequest) -> RolePlan {
    match (current, request) {
        (Role::Primary, RoleRequest::Promote) => RolePlan::default(),
        (Role::Replica, RoleRequest::Promote) => RolePlan {
            stop_link: true,
            promote: true,
            ..RolePlan::default()
        },
        (Role::Primary, RoleRequest::Follow) => RolePlan {
            demote: true,
            follow: true,
            ..RolePlan::default()
        },
        (Role::Replica, RoleRequest::Follow) => RolePlan {
            follow: true,
            ..RolePlan::default()
        },
        (Role::Primary, RoleRequest::StandDown) => RolePlan {
            demote: true,
            ..RolePlan::default()
        },
        (Role::Replica, RoleRequest::StandDown) => RolePlan {
            stop_link: true,
            ..RolePlan::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promoting_a_replica_stops_its_link_before_the_new_history() {
        let steps = plan(Role::Replica, &RoleRequest::Promote);
        assert!(steps.stop_link && steps.promote && !steps.demote && !steps.follow);
    }

    #[test]
    fn promoting_a_primary_changes_nothing() {
        assert_eq!(
            plan(Role::Primary, &RoleRequest::Promote),
            RolePlan::default()
        );
    }

    #[test]
    fn a_primary_told_to_follow_demotes_first() {
        let steps = plan(Role::Primary, &RoleRequest::Follow);
        assert!(steps.demote && steps.follow && !steps.promote && !steps.stop_link);
    }

    #[test]
    fn standing_down_demotes_a_primary_and_stops_a_replica_following() {
        let primary = plan(Role::Primary, &RoleRequest::StandDown);
        assert!(primary.demote && !primary.follow && !primary.promote);
        let replica = plan(Role::Replica, &RoleRequest::StandDown);
        assert!(replica.stop_link && !replica.demote && !replica.follow);
    }

    #[test]
    fn a_replica_told_to_follow_replaces_its_link() {
        let steps = plan(Role::Replica, &RoleRequest::Follow);
        assert!(steps.follow && !steps.demote && !steps.promote);
    }
}
