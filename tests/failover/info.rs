//! `INFO replication` names the history on a node that never forked: a fresh primary shows
//! `master_replid` (its `meta.history_id`), `master_replid2` as 32 zeros and
//! `second_repl_offset:-1`, as Redis does; its replica shows `role:slave` and the same
//! `master_replid`.

use crate::support::{history, info, put_many, wait_seq, Cluster, NO_HISTORY};

#[test]
fn info_on_a_primary_without_a_fork_shows_its_history_and_no_previous_one() {
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    let id = history(&cluster.db("p.db"));
    let fields = info(&p);
    assert_eq!(
        fields.get("role").map(String::as_str),
        Some("master"),
        "{fields:?}"
    );
    assert_eq!(fields.get("master_replid"), Some(&id), "{fields:?}");
    assert_eq!(
        fields.get("master_replid2").map(String::as_str),
        Some(NO_HISTORY),
        "{fields:?}"
    );
    assert_eq!(
        fields.get("second_repl_offset").map(String::as_str),
        Some("-1"),
        "{fields:?}"
    );

    let mut r = cluster.replica("r.db", &p.addr(), "Snapshot received");
    put_many(&mut p, "k", "v", 0..3);
    wait_seq(&mut r, 3);
    let fields = info(&r);
    assert_eq!(
        fields.get("role").map(String::as_str),
        Some("slave"),
        "{fields:?}"
    );
    assert_eq!(fields.get("master_replid"), Some(&id), "{fields:?}");
    let fields = info(&p);
    assert_eq!(
        fields.get("master_replid"),
        Some(&id),
        "unchanged by writes: {fields:?}"
    );
    assert_eq!(
        fields.get("second_repl_offset").map(String::as_str),
        Some("-1"),
        "{fields:?}"
    );
}
