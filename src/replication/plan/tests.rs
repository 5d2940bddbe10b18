//! Unit tests of the sync decision: lineages, forks, divergence and the bisection.

use super::*;
use crate::store::history::lineage;

fn upstream(head: u64, oldest: Option<u64>) -> UpstreamState {
    UpstreamState {
        lineage: lineage("h1", None),
        head,
        oldest_log: oldest,
    }
}

fn joiner(history: Option<&str>, seq: u64) -> JoinerState {
    JoinerState {
        lineage: Lineage {
            history_id: history.map(Into::into),
            fork: None,
            epoch: 0,
        },
        seq,
        ..JoinerState::default()
    }
}

fn partial(from_seq: u64) -> SyncPlan {
    SyncPlan::Partial {
        from_seq,
        across: None,
    }
}

#[test]
fn new_replica_gets_full_resync() {
    assert_eq!(
        plan_sync(&upstream(10, Some(1)), &joiner(None, 0)),
        SyncPlan::Full(FullResyncReason::NewReplica)
    );
}

#[test]
fn unrelated_history_gets_full_resync_naming_both() {
    let plan = plan_sync(&upstream(10, Some(1)), &joiner(Some("h0"), 3));
    assert!(matches!(
        plan,
        SyncPlan::Full(FullResyncReason::NewHistory { .. })
    ));
    assert!(
        plan.to_string().starts_with("full resync: new history"),
        "{plan}"
    );
}

#[test]
fn retained_log_gets_partial_resync() {
    let up = upstream(10, Some(4));
    assert_eq!(plan_sync(&up, &joiner(Some("h1"), 3)), partial(3));
    let up = upstream(10, Some(10));
    assert_eq!(plan_sync(&up, &joiner(Some("h1"), 10)), partial(10));
}

#[test]
fn trimmed_log_gets_full_resync() {
    let plan = plan_sync(&upstream(10, Some(6)), &joiner(Some("h1"), 3));
    assert_eq!(
        plan,
        SyncPlan::Full(FullResyncReason::LogTrimmed {
            need: 4,
            oldest: Some(6)
        })
    );
    assert_eq!(
        plan.to_string(),
        "full resync: log trimmed (need seq 4, oldest kept 6)"
    );
}

#[test]
fn a_replica_ahead_of_its_upstream_diverged_after_the_upstreams_head() {
    let plan = plan_sync(&upstream(5, Some(1)), &joiner(Some("h1"), 9));
    assert_eq!(
        plan,
        SyncPlan::Full(FullResyncReason::Diverged {
            history: "h1".into(),
            after: 5,
            count: 4,
            kind: Divergence::UpstreamBehind,
        })
    );
}

#[test]
fn a_replica_of_the_previous_history_within_the_fork_continues_across_it() {
    let up = UpstreamState {
        lineage: lineage("b", Some(("a", 300))),
        head: 400,
        oldest_log: Some(1),
    };
    for seq in [250, 300] {
        let plan = plan_sync(&up, &joiner(Some("a"), seq));
        assert_eq!(
            plan,
            SyncPlan::Partial {
                from_seq: seq,
                across: Some(Crossing {
                    from: "a".into(),
                    to: "b".into(),
                    fork_seq: 300,
                }),
            }
        );
        assert!(plan
            .to_string()
            .starts_with("partial resync: history b… continues a… after seq 300"));
    }
}

#[test]
fn an_old_primary_beyond_the_fork_diverged_whatever_the_new_head() {
    for head in [310, 500] {
        let up = UpstreamState {
            lineage: lineage("b", Some(("a", 300))),
            head,
            oldest_log: Some(1),
        };
        let plan = plan_sync(&up, &joiner(Some("a"), 350));
        assert_eq!(
            plan.to_string(),
            "full resync: diverged: 50 entries after seq 300 of history a… were never replicated"
        );
    }
}

#[test]
fn contents_compare_where_the_two_should_agree() {
    let up = UpstreamState {
        lineage: lineage("b", Some(("a", 300))),
        head: 500,
        oldest_log: Some(1),
    };
    let look = first_look(&up, &joiner(Some("a"), 350));
    assert_eq!(look, FirstLook::Verify { at: 300 });
    let same = first_look(&upstream(100, Some(1)), &joiner(Some("h1"), 100));
    assert_eq!(same, FirstLook::Verify { at: 100 });
    // A checksum mismatch at the same seq: the replica's entries after the common point.
    let plan = decide(&upstream(100, Some(1)), &joiner(Some("h1"), 100), 50, true);
    assert_eq!(
        plan.to_string(),
        "full resync: diverged: 50 entries after seq 50 of history h1… that differ from the upstream's"
    );
}

#[test]
fn bisection_finds_the_last_agreeing_seq() {
    for common in [0, 1, 49, 50, 98, 99] {
        let mut search = Bisection::new(0, 100);
        let mut probes = 0;
        while let Some(seq) = search.next_probe() {
            probes += 1;
            search.record(seq, seq <= common);
        }
        assert_eq!(search.common(), common);
        assert!(probes <= 7, "{probes} probes for a range of 100");
    }
}

#[test]
fn a_replica_of_an_unrelated_history_keeps_what_it_holds() {
    let plan = plan_sync(&upstream(10, Some(1)), &joiner(Some("h0"), 30));
    let mut with_log = joiner(Some("h0"), 30);
    assert_eq!(keep_diverged_after(&plan, &with_log), Some(30));
    with_log.oldest_log = Some(21);
    assert_eq!(keep_diverged_after(&plan, &with_log), Some(20));
    // Nothing written in its history: nothing to keep.
    let empty = joiner(Some("h0"), 0);
    let plan = plan_sync(&upstream(10, Some(1)), &empty);
    assert_eq!(keep_diverged_after(&plan, &empty), None);
    // A plain trimmed log loses nothing the upstream lacks.
    let trimmed = plan_sync(&upstream(10, Some(6)), &joiner(Some("h1"), 3));
    assert_eq!(keep_diverged_after(&trimmed, &joiner(Some("h1"), 3)), None);
    let diverged = plan_sync(&upstream(5, Some(1)), &joiner(Some("h1"), 9));
    assert_eq!(
        keep_diverged_after(&diverged, &joiner(Some("h1"), 9)),
        Some(5)
    );
}
