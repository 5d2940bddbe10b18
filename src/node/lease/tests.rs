//! The write lease's fence, without etcd.

use super::*;

fn member() -> WriteLease {
    WriteLease::for_cluster("c", Duration::from_secs(4)).0
}

fn ago(millis: u64) -> Stamp {
    Stamp::before_now(Duration::from_millis(millis))
}

#[test]
fn outside_a_cluster_every_write_passes() {
    assert!(WriteLease::off().check_write().is_ok());
    assert_eq!(WriteLease::off().status(), None);
}

#[test]
fn a_member_writes_only_in_office_with_a_fresh_renewal() {
    let lease = member();
    assert!(matches!(lease.check_write(), Err(Error::Fenced(_))));
    assert!(
        !lease.take_office(7, 1, Stamp::now()),
        "no lease granted yet"
    );
    lease.granted(1, Stamp::now());
    assert!(lease.check_write().is_err(), "a lease but not in office");
    assert!(lease.take_office(7, 1, Stamp::now()));
    assert!(lease.check_write().is_ok());
    lease.leave_office();
    assert!(lease.check_write().is_err());
}

#[test]
fn writes_stop_half_a_ttl_after_the_last_renewal_was_sent() {
    let lease = member();
    lease.granted(1, ago(3000));
    lease.take_office(7, 1, Stamp::now());
    lease.renewed(1, ago(2100));
    assert!(lease.check_write().is_err(), "2.1 s > half of 4 s");
    lease.renewed(1, ago(1900));
    assert!(lease.check_write().is_ok());
    // An older answer arriving late never moves the fence back.
    lease.renewed(1, ago(3000));
    assert!(lease.check_write().is_ok());
    let remaining = lease.status().and_then(|s| s.lease_remaining);
    assert!(remaining.is_some_and(|r| r <= Duration::from_millis(100)));
}

#[test]
fn writes_stop_half_a_ttl_after_the_last_read_showing_the_key() {
    let lease = member();
    lease.granted(1, Stamp::now());
    lease.take_office(7, 1, ago(2100));
    assert!(
        lease.check_write().is_err(),
        "renewed, but not seen holding the key for 2.1 s"
    );
    lease.confirmed(1, ago(100));
    assert!(lease.check_write().is_ok());
    lease.confirmed(2, Stamp::now());
    lease.renewed(1, Stamp::now());
    assert!(
        lease.check_write().is_ok(),
        "another lease's read counts for nothing"
    );
}

#[test]
fn a_lost_lease_ends_the_office_and_a_new_one_does_not_restore_it() {
    let lease = member();
    lease.granted(1, Stamp::now());
    lease.take_office(7, 1, Stamp::now());
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
    lease.granted(2, Stamp::now());
    lease.renewed(1, Stamp::now());
    assert!(lease.check_write().is_err());
    assert!(!lease.take_office(7, 1, Stamp::now()));
}

#[test]
fn the_fence_clock_counts_forward() {
    let earlier = Stamp::now();
    assert!(Stamp::before_now(Duration::from_secs(1)) < Stamp::now());
    assert!(earlier.elapsed() < Duration::from_secs(5));
}
