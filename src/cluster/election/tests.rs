//! The election's rules, one by one, without etcd.

use super::*;

const TIMING: Timing = Timing {
    settle: Duration::from_millis(600),
    step: Duration::from_millis(600),
    startup_grace: Duration::from_secs(5),
    stale_wait: Duration::from_secs(10),
    handoff_patience: Duration::from_secs(5),
};

fn me(node_id: &str, epoch: u64, seq: u64) -> Me {
    Me {
        node_id: node_id.into(),
        lease: 1,
        role: Role::Replica,
        in_office: false,
        epoch,
        position: (epoch, seq),
        following: None,
    }
}

fn member(node_id: &str, epoch: u64, seq: u64) -> Member {
    Member {
        revision: 0,
        node_id: node_id.into(),
        repl_addr: format!("{node_id}:1"),
        client_addr: None,
        epoch,
        seq,
        lease: 2,
    }
}

fn vacant(members: Vec<Member>, cluster_epoch: u64) -> View {
    View {
        holder: None,
        epoch: (cluster_epoch, cluster_epoch),
        handoff: None,
        members,
    }
}

fn held_by(node_id: &str, epoch: u64, lease: i64) -> View {
    View {
        holder: Some(Holder {
            record: PrimaryRecord {
                node_id: node_id.into(),
                repl_addr: format!("{node_id}:1"),
                client_addr: None,
            },
            epoch,
            lease,
        }),
        epoch: (epoch, epoch),
        ..View::default()
    }
}

fn after(vacant_for_ms: u64) -> Clock {
    Clock {
        registered_for: Duration::from_secs(60),
        vacant_for: Some(Duration::from_millis(vacant_for_ms)),
    }
}

fn is_wait(action: &Action) -> bool {
    matches!(action, Action::Wait(_))
}

#[test]
fn a_fresh_cluster_elects_the_lowest_node_id_first_and_the_others_later() {
    let view = vacant(vec![member("a", 0, 0), member("b", 0, 0)], 0);
    assert_eq!(
        decide(&view, &me("a", 0, 0), &after(600), &TIMING),
        Action::Campaign
    );
    assert!(is_wait(&decide(
        &view,
        &me("b", 0, 0),
        &after(600),
        &TIMING
    )));
    // If "a" never wins, "b" campaigns one step later: someone always wins.
    assert_eq!(
        decide(&view, &me("b", 0, 0), &after(1200), &TIMING),
        Action::Campaign
    );
}

#[test]
fn nobody_campaigns_before_the_vacancy_settled_or_right_after_starting() {
    let view = vacant(vec![], 0);
    assert!(is_wait(&decide(
        &view,
        &me("a", 0, 0),
        &after(500),
        &TIMING
    )));
    let just_started = Clock {
        registered_for: Duration::from_secs(1),
        vacant_for: Some(Duration::from_secs(1)),
    };
    assert!(is_wait(&decide(
        &view,
        &me("a", 0, 0),
        &just_started,
        &TIMING
    )));
}

#[test]
fn a_member_behind_another_live_one_never_campaigns() {
    let view = vacant(vec![member("a", 5, 100), member("b", 5, 98)], 5);
    assert!(is_wait(&decide(
        &view,
        &me("b", 5, 98),
        &after(60_000),
        &TIMING
    )));
    assert_eq!(
        decide(&view, &me("a", 5, 100), &after(600), &TIMING),
        Action::Campaign
    );
    // Once the further one is gone, the next best campaigns.
    let alone = vacant(vec![member("b", 5, 98)], 5);
    assert_eq!(
        decide(&alone, &me("b", 5, 98), &after(600), &TIMING),
        Action::Campaign
    );
}

#[test]
fn the_epoch_ranks_before_the_seq() {
    let view = vacant(vec![member("a", 9, 10), member("b", 5, 500)], 5);
    assert!(is_wait(&decide(
        &view,
        &me("b", 5, 500),
        &after(60_000),
        &TIMING
    )));
    assert_eq!(
        decide(&view, &me("a", 9, 10), &after(600), &TIMING),
        Action::Campaign
    );
}

#[test]
fn a_member_older_than_the_clusters_epoch_waits_longer_but_not_forever() {
    let alone = vacant(vec![member("c", 3, 9)], 9);
    let waited = decide(&alone, &me("c", 3, 9), &after(5_000), &TIMING);
    assert!(
        matches!(&waited, Action::Wait(why) if why.contains("epoch 3")),
        "{waited:?}"
    );
    assert_eq!(
        decide(&alone, &me("c", 3, 9), &after(10_600), &TIMING),
        Action::Campaign
    );
    // A live member of the newest epoch goes first, whatever the seqs.
    let view = vacant(vec![member("old", 3, 900), member("b", 9, 4)], 9);
    assert_eq!(
        decide(&view, &me("b", 9, 4), &after(600), &TIMING),
        Action::Campaign
    );
    assert!(is_wait(&decide(
        &view,
        &me("old", 3, 900),
        &after(60_000),
        &TIMING
    )));
}

#[test]
fn a_replica_short_of_its_forks_seq_ranks_in_the_old_epoch() {
    // "r" adopted epoch 9 but holds only entries of epoch 5 so far; "x" holds more of 5.
    let mut catching_up = me("r", 9, 900);
    catching_up.position = (5, 900);
    let view = vacant(vec![member("r", 5, 900), member("x", 5, 1000)], 9);
    assert!(is_wait(&decide(
        &view,
        &catching_up,
        &after(60_000),
        &TIMING
    )));
    let ahead = decide(&view, &me("x", 5, 1000), &after(10_600), &TIMING);
    assert_eq!(ahead, Action::Campaign);
}

#[test]
fn an_unreadable_primary_key_is_waited_out_not_taken_for_a_vacancy() {
    let mut view = held_by("b", 7, 2);
    if let Some(holder) = view.holder.as_mut() {
        holder.record.repl_addr.clear();
    }
    assert!(is_wait(&decide(&view, &me("a", 7, 10), &after(0), &TIMING)));
}

#[test]
fn a_handoff_target_campaigns_at_once_and_the_others_wait_for_it() {
    let mut view = vacant(vec![member("a", 5, 10), member("t", 5, 10)], 5);
    view.handoff = Some("t".into());
    let now = Clock {
        registered_for: Duration::from_secs(60),
        vacant_for: Some(Duration::ZERO),
    };
    assert_eq!(
        decide(&view, &me("t", 5, 10), &now, &TIMING),
        Action::Campaign
    );
    assert!(is_wait(&decide(
        &view,
        &me("a", 5, 10),
        &after(4_000),
        &TIMING
    )));
    // Not forever: a target that cannot win is given up after a while.
    let later = decide(&view, &me("a", 5, 10), &after(5_000), &TIMING);
    assert_eq!(later, Action::Campaign);
    // A target that died no longer holds the others back.
    view.members.retain(|m| m.node_id != "t");
    assert_eq!(
        decide(&view, &me("a", 5, 10), &after(600), &TIMING),
        Action::Campaign
    );
}

#[test]
fn a_primary_without_the_key_stands_down() {
    let mut primary = me("a", 5, 10);
    primary.role = Role::Primary;
    primary.in_office = true;
    let view = vacant(vec![], 5);
    assert_eq!(
        decide(&view, &primary, &after(0), &TIMING),
        Action::StandDown
    );
    let other = held_by("b", 7, 2);
    assert_eq!(
        decide(&other, &primary, &after(0), &TIMING),
        Action::Follow {
            upstream: "b:1".into()
        }
    );
}

#[test]
fn the_holder_takes_office_once_then_stays() {
    let view = held_by("a", 7, 1);
    let mut holder = me("a", 5, 10);
    assert_eq!(
        decide(&view, &holder, &after(0), &TIMING),
        Action::TakeOffice { epoch: 7 }
    );
    holder.role = Role::Primary;
    holder.epoch = 7;
    holder.position = (7, 10);
    assert_eq!(
        decide(&view, &holder, &after(0), &TIMING),
        Action::TakeOffice { epoch: 7 },
        "promoted but writes not yet open"
    );
    holder.in_office = true;
    assert_eq!(decide(&view, &holder, &after(0), &TIMING), Action::Stay);
}

#[test]
fn a_key_left_by_an_earlier_run_of_this_node_is_waited_out() {
    let view = held_by("a", 7, 99);
    assert!(is_wait(&decide(&view, &me("a", 7, 10), &after(0), &TIMING)));
}

#[test]
fn replicas_follow_the_holder_but_never_one_of_a_lower_epoch() {
    let view = held_by("b", 7, 2);
    let follow = Action::Follow {
        upstream: "b:1".into(),
    };
    assert_eq!(decide(&view, &me("a", 5, 10), &after(0), &TIMING), follow);
    let mut following = me("a", 7, 10);
    following.following = Some("b:1".into());
    assert_eq!(decide(&view, &following, &after(0), &TIMING), Action::Stay);
    assert!(is_wait(&decide(&view, &me("a", 9, 10), &after(0), &TIMING)));
}
