//! A cancelled link cannot write: a replica whose link is replaced (`JOIN` elsewhere)
//! while an apply of the old link is on its way to the store must not end up with the old
//! link's write on top of what the new link installed. Two upstreams played by the test
//! (real TCP on 127.0.0.1) and a store whose replica-side `apply` waits at a gate, so the
//! old link's write reaches the store only after the new link's snapshot is in. And a
//! replica acks an applied entry only once it is flushed: the store's `sync` waits at a
//! gate too.

use super::*;
use crate::protocol::{self, Message};
use crate::store::{
    BatchSeqs, Bytes, ChunkSource, CommitFence, DivergedEntry, KeyCursor, KvStore, Lineage,
    LogEntry, MemoryStore, Op, Pair, Position, Record, Role, Snapshot, SnapshotTarget, Stored,
};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Condvar, Mutex as StdMutex};
use std::time::{Duration, Instant};

const PATIENCE: Duration = Duration::from_secs(20);

/// A memory store whose `apply_fenced` waits until the gate opens, and records how the
/// apply ended; its `sync` waits while no flush is left.
struct GatedStore {
    inner: MemoryStore,
    gate: StdMutex<Gate>,
    changed: Condvar,
    flushes_left: StdMutex<usize>,
}

#[derive(Default)]
struct Gate {
    open: bool,
    entered: bool,
    outcome: Option<String>,
}

impl GatedStore {
    fn wait_for(&self, done: impl Fn(&Gate) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        let mut gate = self.gate.lock().expect("gate");
        while !done(&gate) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the gated apply never got there");
            gate = self.changed.wait_timeout(gate, left).expect("gate").0;
        }
    }

    fn open(&self) {
        self.gate.lock().expect("gate").open = true;
        self.changed.notify_all();
    }

    fn new(apply_open: bool, flushes: usize) -> Self {
        let gate = Gate {
            open: apply_open,
            ..Gate::default()
        };
        GatedStore {
            inner: MemoryStore::new(Role::Replica),
            gate: StdMutex::new(gate),
            changed: Condvar::new(),
            flushes_left: StdMutex::new(flushes),
        }
    }

    fn open_flushes(&self) {
        *self.flushes_left.lock().expect("flushes") = usize::MAX;
        self.changed.notify_all();
    }
}

impl KvStore for GatedStore {
    fn apply_fenced(&self, entries: &[LogEntry], fence: &dyn CommitFence) -> crate::Result<()> {
        self.gate.lock().expect("gate").entered = true;
        self.changed.notify_all();
        self.wait_for(|gate| gate.open);
        let outcome = self.inner.apply_fenced(entries, fence);
        self.gate.lock().expect("gate").outcome = Some(format!("{outcome:?}"));
        self.changed.notify_all();
        outcome
    }

    fn sync(&self) -> crate::Result<()> {
        let deadline = Instant::now() + PATIENCE;
        let mut left = self.flushes_left.lock().expect("flushes");
        while *left == 0 && Instant::now() < deadline {
            left = self
                .changed
                .wait_timeout(left, PATIENCE)
                .expect("flushes")
                .0;
        }
        *left = left.saturating_sub(1);
        self.inner.sync()
    }

    fn location(&self) -> String {
        self.inner.location()
    }
    fn get(&self, key: &[u8]) -> crate::Result<Option<Bytes>> {
        self.inner.get(key)
    }
    fn get_stored(&self, key: &[u8]) -> crate::Result<Option<Stored>> {
        self.inner.get_stored(key)
    }
    fn row_expiry(&self, key: &[u8]) -> crate::Result<Option<Option<u64>>> {
        self.inner.row_expiry(key)
    }
    fn expired_keys(&self, now: u64, limit: usize) -> crate::Result<Vec<Bytes>> {
        self.inner.expired_keys(now, limit)
    }
    fn count_expiring(&self) -> crate::Result<u64> {
        self.inner.count_expiring()
    }
    fn get_many(&self, keys: &[&[u8]], max_bytes: usize) -> crate::Result<Vec<Option<Bytes>>> {
        self.inner.get_many(keys, max_bytes)
    }
    fn scan(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> crate::Result<Vec<Pair>> {
        self.inner.scan(prefix, after, limit)
    }
    fn scan_keys(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
    ) -> crate::Result<Vec<Bytes>> {
        self.inner.scan_keys(prefix, after, limit)
    }
    fn key_cursor(&self, prefix: &[u8]) -> crate::Result<Box<dyn KeyCursor>> {
        self.inner.key_cursor(prefix)
    }
    fn count(&self, prefix: &[u8]) -> crate::Result<u64> {
        self.inner.count(prefix)
    }
    fn append_batch(&self, requests: &[Vec<Op>]) -> crate::Result<BatchSeqs> {
        self.inner.append_batch(requests)
    }
    fn position(&self) -> crate::Result<Position> {
        self.inner.position()
    }
    fn head_seq(&self) -> crate::Result<u64> {
        self.inner.head_seq()
    }
    fn log_batch(&self, after: u64, entries: usize, bytes: usize) -> crate::Result<Vec<LogEntry>> {
        self.inner.log_batch(after, entries, bytes)
    }
    fn trim_log(&self, keep: u64, batch: usize) -> crate::Result<u64> {
        self.inner.trim_log(keep, batch)
    }
    fn snapshot(&self) -> crate::Result<Box<dyn Snapshot>> {
        self.inner.snapshot()
    }
    fn install_snapshot_fenced(
        &self,
        target: &SnapshotTarget,
        chunks: &mut ChunkSource<'_>,
        fence: &dyn CommitFence,
    ) -> crate::Result<u64> {
        self.inner.install_snapshot_fenced(target, chunks, fence)
    }
    fn role(&self) -> crate::Result<Role> {
        self.inner.role()
    }
    fn promote(&self, fence: &dyn CommitFence, epoch: Option<u64>) -> crate::Result<Position> {
        self.inner.promote(fence, epoch)
    }
    fn set_role(&self, role: Role) -> crate::Result<()> {
        self.inner.set_role(role)
    }
    fn adopt_history(&self, lineage: &Lineage, fence: &dyn CommitFence) -> crate::Result<()> {
        self.inner.adopt_history(lineage, fence)
    }
    fn checksum_at(&self, seq: u64) -> crate::Result<Option<u64>> {
        self.inner.checksum_at(seq)
    }
    fn diverged(&self) -> crate::Result<Vec<DivergedEntry>> {
        self.inner.diverged()
    }
    fn history_id(&self) -> crate::Result<Option<String>> {
        self.inner.history_id()
    }
    fn meta(&self, name: &str) -> crate::Result<Option<String>> {
        self.inner.meta(name)
    }
}

fn send(stream: &mut TcpStream, message: &Message) {
    let frame = protocol::encode(message).expect("encode");
    let length = u32::try_from(frame.len()).expect("small frame");
    stream.write_all(&length.to_be_bytes()).expect("send");
    stream.write_all(&frame).expect("send");
}

fn receive(stream: &mut TcpStream) -> Message {
    try_receive(stream).expect("a message")
}

/// An upstream played by the test: answers the first `Join` with `messages`, sends
/// `after_first_ack` once the replica acks something, and keeps the connection open,
/// reading the replica's messages (passed to `heard`, if given), until the replica
/// closes it.
fn upstream_hearing(
    messages: Vec<Message>,
    after_first_ack: Vec<Message>,
    heard: Option<mpsc::Sender<Message>>,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
        assert!(matches!(receive(&mut stream), Message::Join { .. }));
        for message in &messages {
            send(&mut stream, message);
        }
        let mut later = Some(after_first_ack);
        while let Some(message) = try_receive(&mut stream) {
            if matches!(message, Message::Ack { .. }) {
                later
                    .take()
                    .iter()
                    .flatten()
                    .for_each(|m| send(&mut stream, m));
            }
            if heard
                .as_ref()
                .is_some_and(|heard| heard.send(message).is_err())
            {
                return;
            }
        }
    });
    addr
}

fn upstream(messages: Vec<Message>) -> String {
    upstream_hearing(messages, Vec::new(), None)
}

/// The next message, or `None` once the connection closed or went silent.
fn try_receive(stream: &mut TcpStream) -> Option<Message> {
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).ok()?;
    let mut frame = vec![0; u32::from_be_bytes(length) as usize];
    stream.read_exact(&mut frame).ok()?;
    protocol::decode(&frame).ok()
}

fn snapshot(history: &str, pairs: Vec<Pair>) -> Vec<Message> {
    vec![
        Message::SnapshotBegin {
            history_id: history.into(),
            seq: 0,
            keys: pairs.len() as u64,
            reason: "new replica".into(),
            fork: None,
            checksum: None,
            keep_diverged_after: None,
            epoch: 0,
        },
        Message::Snapshot {
            entries: pairs
                .into_iter()
                .map(|(key, value)| Record::new(key, value))
                .collect(),
        },
        Message::SnapshotEnd { seq: 0 },
    ]
}

#[test]
fn a_replaced_links_write_in_flight_does_not_commit() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let store = Arc::new(GatedStore::new(false, usize::MAX));
    let addr = "127.0.0.1:0".parse().expect("addr");
    let repl = Arc::new(Replication::new(store.clone(), addr).expect("replication"));
    let link = ReplicaLink::new(Arc::clone(&repl), runtime.handle().clone());

    // Upstream A: an empty snapshot of history A, then one entry; its apply waits.
    let mut from_a = snapshot("a".repeat(32).as_str(), Vec::new());
    from_a.push(Message::Put {
        seq: 1,
        key: "from_a".into(),
        value: "old link".into(),
        expires_at: None,
    });
    let first = link.follow(upstream(from_a), LinkMode::Join);
    store.wait_for(|gate| gate.entered);
    assert!(
        runtime.block_on(first).is_ok(),
        "A's snapshot was installed"
    );

    // JOIN B while A's write is at the gate; B's snapshot goes in first.
    let pairs = vec![(b"from_b".to_vec(), b"new link".to_vec())];
    let second = link.follow(
        upstream(snapshot(&"b".repeat(32), pairs.clone())),
        LinkMode::Join,
    );
    let report = runtime
        .block_on(second)
        .expect("B answered")
        .expect("B synced");
    assert!(matches!(report, SyncReport::Snapshot { keys: 1, .. }));

    // Now A's write reaches the store: the fence must refuse it.
    store.open();
    store.wait_for(|gate| gate.outcome.is_some());
    let outcome = store.gate.lock().expect("gate").outcome.clone();
    assert_eq!(outcome.as_deref(), Some("Err(Superseded)"));
    assert_eq!(store.scan(b"", None, 10).expect("scan"), pairs);
    assert_eq!(store.history_id().expect("history"), Some("b".repeat(32)));
}

#[test]
fn a_replica_acks_an_applied_entry_only_once_it_is_flushed() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // One flush: the snapshot's. The entry is sent once that is acked.
    let store = Arc::new(GatedStore::new(true, 1));
    let addr = "127.0.0.1:0".parse().expect("addr");
    let repl = Arc::new(Replication::new(store.clone(), addr).expect("replication"));
    let link = ReplicaLink::new(Arc::clone(&repl), runtime.handle().clone());
    let messages = snapshot(&"c".repeat(32), Vec::new());
    let entry = vec![Message::Put {
        seq: 1,
        key: "k".into(),
        value: "v".into(),
        expires_at: None,
    }];
    let (heard, hearing) = mpsc::channel();
    let upstream = upstream_hearing(messages, entry, Some(heard));
    let synced = link.follow(upstream, LinkMode::Join);
    assert!(
        runtime.block_on(synced).is_ok(),
        "the snapshot was installed"
    );

    // Applied and visible while its flush waits...
    let deadline = Instant::now() + PATIENCE;
    while store.get(b"k").expect("get").is_none() {
        if Instant::now() >= deadline {
            let heard: Vec<_> = hearing.try_iter().map(|m| m.name()).collect();
            panic!("the entry was never applied; the upstream heard {heard:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // ...but not acked: the upstream hears no ack of it meanwhile.
    let quiet_until = Instant::now() + Duration::from_millis(300);
    while let Ok(message) =
        hearing.recv_timeout(quiet_until.saturating_duration_since(Instant::now()))
    {
        assert!(
            !matches!(message, Message::Ack { seq } if seq >= 1),
            "acked before the flush: {message:?}"
        );
    }
    store.open_flushes();
    let deadline = Instant::now() + PATIENCE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match hearing.recv_timeout(left) {
            Ok(Message::Ack { seq: 1 }) => break,
            Ok(_) => {}
            Err(e) => panic!("no ack of the entry once flushed: {e}"),
        }
    }
}
