//! A node's role as a state machine, in plain code: a primary takes writes; a replica
//! follows an upstream (or waits to be told one). Two requests change it at run time:
//! promote (`REPLICAOF NO ONE`, `PROMOTE`) and follow (`REPLICAOF host port`, `JOIN`).
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
    /// Follow this upstream (its replication address).
    Follow(String),
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
    /// Start following this upstream.
    pub follow: Option<String>,
    /// The role afterwards.
    pub next: Option<Role>,
}

/// What `request` does to a node in role `current`.
pub fn plan(current: Role, request: &RoleRequest) -> RolePlan {
    match (current, request) {
        (Role::Primary, RoleRequest::Promote) => RolePlan {
            next: Some(Role::Primary),
            ..RolePlan::default()
        },
        (Role::Replica, RoleRequest::Promote) => RolePlan {
            stop_link: true,
            promote: true,
            next: Some(Role::Primary),
            ..RolePlan::default()
        },
        (Role::Primary, RoleRequest::Follow(upstream)) => RolePlan {
            demote: true,
            follow: Some(upstream.clone()),
            next: Some(Role::Replica),
            ..RolePlan::default()
        },
        (Role::Replica, RoleRequest::Follow(upstream)) => RolePlan {
            follow: Some(upstream.clone()),
            next: Some(Role::Replica),
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
        assert!(steps.stop_link && steps.promote && !steps.demote);
        assert_eq!(steps.follow, None);
        assert_eq!(steps.next, Some(Role::Primary));
    }

    #[test]
    fn promoting_a_primary_changes_nothing() {
        let steps = plan(Role::Primary, &RoleRequest::Promote);
        assert_eq!(
            steps,
            RolePlan {
                next: Some(Role::Primary),
                ..RolePlan::default()
            }
        );
    }

    #[test]
    fn a_primary_told_to_follow_demotes_first() {
        let steps = plan(Role::Primary, &RoleRequest::Follow("h:1".into()));
        assert!(steps.demote && !steps.promote);
        assert_eq!(steps.follow.as_deref(), Some("h:1"));
        assert_eq!(steps.next, Some(Role::Replica));
    }

    #[test]
    fn a_replica_told_to_follow_replaces_its_link() {
        let steps = plan(Role::Replica, &RoleRequest::Follow("h:2".into()));
        assert!(!steps.demote && !steps.promote);
        assert_eq!(steps.follow.as_deref(), Some("h:2"));
    }
}
