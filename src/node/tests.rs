//! Unit tests of the write path: group commit on the writer thread, against SQLite files
//! (and memory where the backend does not matter).
//!
//! Some tests hold SQLite's write lock from a separate connection (a [`Gate`]): the
//! writer's next transaction then waits for it, as it would behind a slow fsync, so the
//! writes that arrive meanwhile are certain to queue up behind it.

use super::*;
use crate::replication::LinkMode;
use crate::store::{LogEntry, MemoryStore, SqliteStore};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime")
}

/// A runtime for the node's own tasks (a replica's link), apart from each test's.
fn node_runtime() -> tokio::runtime::Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(runtime).handle().clone()
}

fn node_on(store: Arc<dyn KvStore>, role: Role) -> Arc<Node> {
    let addr = "127.0.0.1:0".parse().expect("addr");
    assert_eq!(store.role().expect("role"), role);
    let node = Node::new(store, addr, node_runtime(), 64 << 20, WriteLease::off()).expect("node");
    Arc::new(node)
}

/// A primary on a fresh SQLite file; the directory must outlive it.
fn sqlite_primary() -> (TempDir, PathBuf, Arc<Node>) {
    let dir = TempDir::new().expect("tempdir");
    let path = dir.path().join("primary.db");
    let store = SqliteStore::open(&path, Role::Primary).expect("open");
    (dir, path.clone(), node_on(Arc::new(store), Role::Primary))
}

fn put(key: &str, value: &str) -> Op {
    Op::Put {
        key: key.into(),
        value: value.into(),
        expires_at: None,
    }
}

fn del(key: &str) -> Op {
    Op::Delete { key: key.into() }
}

/// SQLite's write lock on a database, held by another connection until released.
struct Gate(Connection);

impl Gate {
    fn close(path: &Path) -> Gate {
        let conn = Connection::open(path).expect("open a second connection");
        conn.execute_batch("BEGIN IMMEDIATE")
            .expect("take the write lock");
        Gate(conn)
    }

    fn open(self) {
        self.0.execute_batch("ROLLBACK").expect("release the lock");
    }
}

/// Spawns one `node.write` per op, each counting itself in `started` as it begins (its
/// request is queued in the same poll, before the task can yield).
fn spawn_writes(
    rt: &Runtime,
    node: &Arc<Node>,
    ops: Vec<Op>,
    started: &Arc<AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<(Op, Result<Option<u64>>)>> {
    ops.into_iter()
        .map(|op| {
            let (node, started) = (Arc::clone(node), Arc::clone(started));
            rt.spawn(async move {
                started.fetch_add(1, Ordering::SeqCst);
                let result = node.write(op.clone()).await;
                (op, result)
            })
        })
        .collect()
}

/// Waits until `count` writes have started, then a little more for the last ones to
/// finish queueing.
fn wait_started(started: &AtomicUsize, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while started.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "the writes did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
}

fn join_all<T>(rt: &Runtime, tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    rt.block_on(futures::future::join_all(tasks))
        .into_iter()
        .map(|joined| joined.expect("a write task panicked"))
        .collect()
}

/// Checks that the writes got the seqs `1..=n` between them and that the log holds each
/// write's op at its seq.
fn assert_logged_in_seq_order(node: &Node, results: Vec<(Op, Result<Option<u64>>)>) {
    let mut expected: Vec<LogEntry> = results
        .into_iter()
        .map(|(op, result)| {
            let seq = result.expect("write").expect("a put gets a seq");
            LogEntry { seq, op }
        })
        .collect();
    expected.sort_by_key(|entry| entry.seq);
    let seqs: Vec<u64> = expected.iter().map(|entry| entry.seq).collect();
    assert_eq!(seqs, (1..=expected.len() as u64).collect::<Vec<_>>());
    let log = node.store().log_since(0, usize::MAX).expect("log");
    assert_eq!(log, expected);
    assert_eq!(
        *node.replication().subscribe_head().borrow(),
        expected.len() as u64
    );
}

#[test]
fn concurrent_writes_get_distinct_consecutive_seqs_and_are_all_stored() {
    let rt = runtime();
    let (_dir, _path, node) = sqlite_primary();
    let ops: Vec<Op> = (0..100)
        .map(|i| put(&format!("k{i}"), &i.to_string()))
        .collect();
    let started = Arc::new(AtomicUsize::new(0));
    let results = join_all(&rt, spawn_writes(&rt, &node, ops, &started));

    assert_logged_in_seq_order(&node, results);
    for i in 0..100 {
        let value = node.store().get(format!("k{i}").as_bytes()).expect("get");
        assert_eq!(value, Some(i.to_string().into_bytes()));
    }
    let commits = node.commits();
    println!("100 concurrent writes: {commits} transactions");
    assert!((1..=100).contains(&commits), "{commits} commits");
}

#[test]
fn writes_that_arrive_during_a_commit_share_the_next_transaction() {
    let rt = runtime();
    let (_dir, path, node) = sqlite_primary();
    let gate = Gate::close(&path);
    let started = Arc::new(AtomicUsize::new(0));
    let ops: Vec<Op> = (0..100).map(|i| put(&format!("k{i}"), "v")).collect();
    let tasks = spawn_writes(&rt, &node, ops, &started);
    wait_started(&started, 100);
    assert_eq!(node.commits(), 0, "nothing commits while the lock is held");
    gate.open();
    let results = join_all(&rt, tasks);

    assert_logged_in_seq_order(&node, results);
    // The first transaction took what was queued when the writer woke; everything
    // else queued behind it and went into the second.
    let commits = node.commits();
    assert!(commits <= 2, "100 writes took {commits} transactions");

    // A lone writer is not held back waiting for company: one transaction each.
    for i in 0..5 {
        rt.block_on(node.write(put("lone", &i.to_string())))
            .expect("write");
    }
    assert_eq!(node.commits(), commits + 5);
}

#[test]
fn a_reply_comes_only_after_its_write_is_committed() {
    let rt = runtime();
    let (_dir, path, node) = sqlite_primary();
    // Callers on plain threads, as the shell is: each checks its own write through its
    // own read-only connection the moment the reply arrives.
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (node, path, handle) = (Arc::clone(&node), path.clone(), rt.handle().clone());
            std::thread::spawn(move || {
                let reader = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .expect("open a reader");
                for i in 0..25 {
                    let (key, value) = (format!("t{t}-{i}"), format!("{t}.{i}"));
                    let seq = handle
                        .block_on(node.write(put(&key, &value)))
                        .expect("write")
                        .expect("a put gets a seq");
                    assert!(
                        *node.replication().subscribe_head().borrow() >= seq,
                        "head behind a reply"
                    );
                    let logged: Option<(String, String)> = reader
                        .query_row(
                            "SELECT key, value FROM log WHERE seq = ?1",
                            [seq as i64],
                            |r| Ok((r.get(0)?, r.get(1)?)),
                        )
                        .optional()
                        .expect("read the log");
                    assert_eq!(logged, Some((key.clone(), value.clone())), "seq {seq}");
                    let stored: Option<String> = reader
                        .query_row("SELECT value FROM kv WHERE key = ?1", [&key], |r| r.get(0))
                        .optional()
                        .expect("read kv");
                    assert_eq!(stored, Some(value));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("a writer thread failed");
    }
    assert_eq!(node.store().head_seq().expect("head"), 200);
}

#[test]
fn write_all_is_atomic_with_consecutive_seqs() {
    let rt = runtime();
    let (_dir, path, node) = sqlite_primary();
    let gate = Gate::close(&path);
    let requests: Vec<Vec<Op>> = (0..20)
        .map(|r| {
            let key = |i| format!("r{r}-{i}");
            vec![
                put(&key(0), "a"),
                put(&key(1), "b"),
                del(&key(0)),
                del(&key(0)),
                put(&key(2), "c"),
            ]
        })
        .collect();
    let tasks: Vec<_> = requests
        .iter()
        .map(|ops| {
            let (node, ops) = (Arc::clone(&node), ops.clone());
            rt.spawn(async move { node.write_all(ops).await })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    gate.open();
    let results = join_all(&rt, tasks);

    let log = node.store().log_since(0, usize::MAX).expect("log");
    assert_eq!(log.len(), 20 * 4);
    for (ops, result) in requests.iter().zip(results) {
        let seqs = result.expect("write_all");
        let first = seqs[0].expect("a put gets a seq");
        let expected = vec![
            Some(first),
            Some(first + 1),
            Some(first + 2),
            None,
            Some(first + 3),
        ];
        assert_eq!(seqs, expected, "consecutive, the second delete absent");
        let logged: Vec<&Op> = log[first as usize - 1..][..4]
            .iter()
            .map(|e| &e.op)
            .collect();
        let written: Vec<&Op> = [0, 1, 2, 4].iter().map(|&i| &ops[i]).collect();
        assert_eq!(logged, written, "the request's ops, in order, at its seqs");
    }
    assert!(node.commits() < 20, "{} commits", node.commits());
    assert_eq!(
        rt.block_on(node.write_all(Vec::new())).expect("nothing"),
        Vec::<Option<u64>>::new()
    );
}

#[test]
fn a_failed_transaction_answers_every_request_in_it_and_stores_none() {
    let rt = runtime();
    let (_dir, path, node) = sqlite_primary();
    rt.block_on(node.write(put("before", "1"))).expect("write");
    let gate = Gate::close(&path);
    let started = Arc::new(AtomicUsize::new(0));
    let ops: Vec<Op> = (0..20).map(|i| put(&format!("k{i}"), "v")).collect();
    let tasks = spawn_writes(&rt, &node, ops, &started);
    wait_started(&started, 20);
    // The file is removed while the writes wait: their transaction must not commit.
    std::fs::remove_file(&path).expect("remove the database file");
    gate.open();

    for (op, result) in join_all(&rt, tasks) {
        let err = result.expect_err("a write to a removed file");
        assert!(
            matches!(&err, Error::Unwritable { .. }) && err.to_string().contains("removed"),
            "{op:?}: {err}"
        );
    }
    assert_eq!(node.commits(), 1, "only the write before the removal");
    assert_eq!(node.store().head_seq().expect("head"), 1);
    assert_eq!(node.store().count(b"").expect("count"), 1);
    assert_eq!(*node.replication().subscribe_head().borrow(), 1);
}

#[test]
fn a_full_queue_makes_writers_wait_instead_of_failing() {
    let rt = runtime();
    let (_dir, path, node) = sqlite_primary();
    let gate = Gate::close(&path);
    let started = Arc::new(AtomicUsize::new(0));
    let count = writer::QUEUE_CAPACITY + 1000;
    let ops: Vec<Op> = (0..count).map(|i| put(&format!("k{i}"), "v")).collect();
    let tasks = spawn_writes(&rt, &node, ops, &started);
    wait_started(&started, count);
    gate.open();
    let results = join_all(&rt, tasks);

    assert_logged_in_seq_order(&node, results);
    let commits = node.commits();
    let fewest = count.div_ceil(writer::MAX_BATCH_REQUESTS) as u64;
    assert!(
        (fewest..=fewest + 2).contains(&commits),
        "{count} writes took {commits} transactions"
    );
}

#[test]
fn replicas_refuse_writes() {
    let rt = runtime();
    let node = node_on(Arc::new(MemoryStore::new(Role::Replica)), Role::Replica);
    let err = rt.block_on(node.write(put("a", "1"))).expect_err("a write");
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
    let err = rt
        .block_on(node.write_all(vec![put("a", "1")]))
        .expect_err("a write");
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
    assert_eq!(node.store().head_seq().expect("head"), 0);
    assert_eq!(node.commits(), 0);
}

#[test]
fn dropping_the_node_ends_the_writer_thread() {
    let rt = runtime();
    let store: Arc<dyn KvStore> = Arc::new(MemoryStore::new(Role::Primary));
    let node = node_on(Arc::clone(&store), Role::Primary);
    assert_eq!(
        rt.block_on(node.write(put("a", "1"))).expect("write"),
        Some(1)
    );
    assert_eq!(rt.block_on(node.write(del("zz"))).expect("write"), None);
    assert_eq!(Arc::strong_count(&store), 3, "test, node and writer thread");
    drop(node);
    // The drop joined the thread, which released its handle on the store.
    assert_eq!(Arc::strong_count(&store), 1);
}

#[test]
fn a_promoted_replica_takes_writes_in_a_history_forked_at_its_seq() {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new(Role::Replica));
    let entries: Vec<LogEntry> = (1..=3)
        .map(|seq| LogEntry {
            seq,
            op: put(&format!("k{seq}"), "v"),
        })
        .collect();
    store
        .install_snapshot("old", 0, &mut || Ok(None))
        .expect("install");
    store.apply(&entries).expect("apply");
    let node = node_on(store, Role::Replica);
    let Promotion::Promoted(position) = node.promote().expect("promote") else {
        panic!("a replica must be promoted");
    };
    assert_eq!(node.role(), Role::Primary);
    assert_eq!(node.store().role().expect("role"), Role::Primary);
    let fork = position.fork.expect("a fork");
    assert_eq!((fork.prev_history_id.as_str(), fork.seq), ("old", 3));
    assert_ne!(position.history_id.as_deref(), Some("old"));
    assert_eq!(
        rt.block_on(node.write(put("new", "1"))).expect("write"),
        Some(4)
    );
    assert_eq!(node.promote().expect("again"), Promotion::AlreadyPrimary);
}

#[test]
fn a_primary_told_to_follow_refuses_writes_and_a_failed_join_restores_it() {
    let rt = runtime();
    let node = node_on(Arc::new(MemoryStore::new(Role::Primary)), Role::Primary);
    rt.block_on(node.write(put("a", "1"))).expect("write");
    // Nothing listens on a port just released: the first sync fails.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let following = node.follow(upstream, LinkMode::Join).expect("follow");
    assert_eq!(node.role(), Role::Replica);
    assert_eq!(node.store().role().expect("role"), Role::Replica);
    let err = rt.block_on(node.write(put("b", "1"))).expect_err("refused");
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
    let mut following = following;
    assert!(rt
        .block_on(&mut following.first_sync)
        .expect("report")
        .is_err());
    assert!(node.undo_follow(&following).expect("undo"));
    assert_eq!(node.role(), Role::Primary);
    assert_eq!(
        rt.block_on(node.write(put("b", "1"))).expect("write"),
        Some(2)
    );
}

#[test]
fn a_failed_join_is_not_undone_over_a_later_role_change() {
    let rt = runtime();
    let node = node_on(Arc::new(MemoryStore::new(Role::Primary)), Role::Primary);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let upstream = closed.local_addr().expect("addr").to_string();
    drop(closed);
    let mut joined = node
        .follow(upstream.clone(), LinkMode::Join)
        .expect("follow");
    // Meanwhile a client re-points the node (REPLICAOF): that replaces the JOIN.
    let _later = node.follow(upstream, LinkMode::Start).expect("follow");
    let _ = rt.block_on(&mut joined.first_sync);
    assert!(!node.undo_follow(&joined).expect("undo"));
    assert_eq!(node.role(), Role::Replica, "the later request stands");
}

#[test]
fn a_write_queued_before_a_demotion_commits_or_is_refused_never_after() {
    // The store itself refuses a primary write once its role is replica.
    let store = MemoryStore::new(Role::Primary);
    store.set_role(Role::Replica).expect("demote");
    let err = store.append(&put("a", "1")).expect_err("refused");
    assert!(matches!(err, Error::ReadOnly(_)), "{err}");
}
