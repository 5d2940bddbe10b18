//! The `KvStore` conformance suite: one generic body per case, run against both backends
//! (`memory::*` on `MemoryStore`, `sqlite::*` on `SqliteStore` in a temporary directory).
//! It owns the behaviour the trait promises to every caller: reads and writes, key-ordered
//! and prefix scans with pagination, sequence numbers and the log, group commit
//! (`append_batch`), consistent chunked snapshots, replica-side `apply` and
//! `install_snapshot`, log retention, and meta. The one SQLite-only case at the end checks
//! that a reopened file keeps its data and its head.
//!
//! `main.rs` holds the backends, the macro and the SQLite-only case; the generic cases live
//! in area modules: `reads` (get/put/delete, scans, prefixes, pagination, awkward keys),
//! `log` (seqs, `log_since`, trimming), `batch` (`append_batch`), `snapshot` (snapshots
//! and `install_snapshot`), `replica` (`apply`), `meta` (meta and history ids), `changes`
//! and `expiry` (writes resolved against the data, keys that expire), with shared
//! `helpers`.

mod batch;
mod changes;
mod digest;
mod expiry;
mod helpers;
mod history;
mod log;
mod meta;
mod reads;
mod replica;
mod snapshot;

use helpers::{contents, del, entry, install, pairs, put, put_op, ALL, HISTORY_A};
use kv::store::{KvStore, MemoryStore, Role, SqliteStore};
use kv::Error;
use std::cell::Cell;
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Backends and the macro that instantiates every case for each of them.
// ---------------------------------------------------------------------------------------

/// Makes fresh, empty stores of one backend. Every `open` returns a new store; a backend
/// value outlives the stores it made (the SQLite one owns their directory).
trait Backend {
    type Store: KvStore;
    fn open(&self, role: Role) -> Self::Store;
}

struct Memory;

impl Backend for Memory {
    type Store = MemoryStore;
    fn open(&self, role: Role) -> MemoryStore {
        MemoryStore::new(role)
    }
}

struct Sqlite {
    dir: TempDir,
    opened: Cell<u32>,
}

impl Sqlite {
    fn new() -> Self {
        Sqlite {
            dir: TempDir::new().expect("create a temporary directory for the databases"),
            opened: Cell::new(0),
        }
    }
}

impl Backend for Sqlite {
    type Store = SqliteStore;
    fn open(&self, role: Role) -> SqliteStore {
        let n = self.opened.get();
        self.opened.set(n + 1);
        let path = self.dir.path().join(format!("{role}-{n}.db"));
        SqliteStore::open(&path, role).expect("open a fresh SQLite store")
    }
}

/// `conformance!(backends { module => backend_expr, ... } cases [area::case, ...])` writes
/// one `mod module` per backend holding one `#[test] fn case` per case, each calling the
/// generic `area::case(&backend)` defined in that area module.
macro_rules! conformance {
    (backends { $($module:ident => $backend:expr),+ $(,)? } cases $cases:tt) => {
        $( conformance!(@module $module, $backend, $cases); )+
    };
    (@module $module:ident, $backend:expr, [$($area:ident :: $case:ident),+ $(,)?]) => {
        mod $module {
            $(
                #[test]
                fn $case() {
                    crate::$area::$case(&$backend);
                }
            )+
        }
    };
}

conformance! {
    backends {
        memory => crate::Memory,
        sqlite => crate::Sqlite::new(),
    }
    cases [
        reads::get_put_delete,
        reads::get_many_reads_each_key_in_order,
        reads::overwrite,
        reads::delete_missing_key_consumes_no_seq,
        reads::scan_is_in_byte_order,
        reads::scan_limit_edges,
        reads::prefix_scan_and_count,
        reads::nth_key_counts_in_key_order,
        reads::pagination_with_after,
        reads::awkward_keys_and_values_round_trip,
        log::seq_increases_by_one_per_write,
        log::log_since_returns_entries_after_seq,
        log::trim_log_keeps_newest_in_batches,
        batch::batch_seqs_are_consecutive_across_requests,
        batch::batch_delete_of_absent_key_takes_no_seq,
        batch::batch_matches_separate_appends,
        batch::failing_batch_changes_nothing,
        changes::changes_resolve_against_the_store_and_log_plain_ops,
        expiry::an_expired_key_is_gone_from_every_read,
        expiry::the_expiry_travels_with_log_snapshot_and_digest,
        expiry::expiry_commands_resolve_against_the_store,
        expiry::the_sweep_deletes_only_what_expired,
        expiry::a_key_cursor_reads_at_one_time,
        expiry::del_counts_only_keys_that_had_not_expired,
        snapshot::snapshot_stays_consistent_while_writes_continue,
        snapshot::snapshot_chunk_bounds,
        snapshot::install_snapshot_replaces_everything,
        snapshot::install_snapshot_failure_changes_nothing,
        replica::replica_apply_accepts_consecutive_seqs,
        replica::unsynced_apply_is_visible_at_once_and_synced_later,
        replica::a_batch_applies_each_keys_last_op,
        replica::replica_apply_rejects_gap_and_duplicate,
        meta::meta_reports_role_history_and_applied_seq,
        meta::primary_has_history_id,
        digest::digest_of_known_contents,
        history::promotion_forks_a_new_history_and_continues_the_seqs,
        history::a_demoted_store_refuses_primary_writes,
        history::equal_logs_have_equal_checksums_and_any_difference_shows,
        history::a_snapshot_brings_the_base_its_log_continues_from,
        history::adopting_a_lineage_changes_no_data,
        history::a_diverged_install_keeps_the_replaced_entries,
        history::trimming_keeps_the_checksum_the_log_continues_from,
        history::a_replica_never_invents_a_checksum_its_upstream_lacks,
        history::the_epoch_travels_with_the_history,
    ]
}

// ---------------------------------------------------------------------------------------
// SQLite only.
// ---------------------------------------------------------------------------------------

#[test]
fn sqlite_reopen_keeps_data_and_head_seq() {
    let dir = TempDir::new().expect("create a temporary directory");
    let path = dir.path().join("primary.db");

    let (history, node) = {
        let store = SqliteStore::open(&path, Role::Primary).expect("create");
        put(&store, "a", "1");
        put(&store, "b", "2");
        put(&store, "a", "one");
        del(&store, "b");
        put(&store, "c", "");
        // Trimming down to one entry must not lose the head.
        assert_eq!(store.trim_log(1, 100).expect("trim"), 4);
        let node = store.meta("node_id").expect("meta").expect("node id");
        (
            store.history_id().expect("history").expect("history id"),
            node,
        )
    };

    let store = SqliteStore::open(&path, Role::Primary).expect("reopen");
    assert_eq!(contents(&store), pairs(&[("a", "one"), ("c", "")]));
    assert_eq!(store.head_seq().expect("head"), 5);
    assert_eq!(store.position().expect("position").oldest_log, Some(5));
    assert_eq!(
        store.log_since(0, ALL).expect("log"),
        vec![entry(5, put_op("c", ""))]
    );
    assert_eq!(store.history_id().expect("history"), Some(history));
    assert_eq!(
        store.meta("role").expect("meta").as_deref(),
        Some("primary")
    );
    assert_eq!(
        store.meta("node_id").expect("meta"),
        Some(node),
        "kept across restarts"
    );
    assert_eq!(put(&store, "d", "4"), 6, "seq continues after reopening");
    assert_eq!(del(&store, "a"), Some(7));
    drop(store);

    let store = SqliteStore::open(&path, Role::Primary).expect("reopen again");
    assert_eq!(store.head_seq().expect("head"), 7);
    assert_eq!(contents(&store), pairs(&[("c", ""), ("d", "4")]));
    assert_eq!(put(&store, "e", "5"), 8);
    // Bytes that are not UTF-8, in a key and in a value, come back as they went in.
    let (key, value) = (vec![0xff, 0x00, 0xfe], vec![b'v', 0xc3, 0x28, 0x00]);
    assert_eq!(put(&store, &key, &value), 9);
    drop(store);

    let store = SqliteStore::open(&path, Role::Primary).expect("reopen a third time");
    assert_eq!(store.get(&key).expect("get"), Some(value.clone()));
    assert_eq!(
        contents(&store).last(),
        Some(&(key.clone(), value.clone())),
        "sorted last, in byte order"
    );
    assert_eq!(
        store.log_since(8, ALL).expect("log"),
        vec![entry(9, put_op(&key, &value))]
    );
    drop(store);

    // A replica resumes from its applied seq, even with an empty log.
    let replica_path = dir.path().join("replica.db");
    {
        let replica = SqliteStore::open(&replica_path, Role::Replica).expect("create replica");
        install(&replica, HISTORY_A, 40, vec![pairs(&[("r", "1")])]);
    }
    let replica = SqliteStore::open(&replica_path, Role::Replica).expect("reopen replica");
    assert_eq!(replica.head_seq().expect("head"), 40);
    assert_eq!(
        replica.history_id().expect("history").as_deref(),
        Some(HISTORY_A)
    );
    assert_eq!(contents(&replica), pairs(&[("r", "1")]));
    replica
        .apply(&[entry(41, put_op("s", "2"))])
        .expect("apply 41 after reopening");
    drop(replica);
    let replica = SqliteStore::open(&replica_path, Role::Replica).expect("reopen replica");
    assert_eq!(replica.head_seq().expect("head"), 41);
    assert!(matches!(
        replica.apply(&[entry(41, put_op("s", "again"))]),
        Err(Error::SeqOutOfOrder {
            expected: 42,
            got: 41
        })
    ));
}
