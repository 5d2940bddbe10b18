//! Consecutive `GET`s of one connection answered together ([`ReadBatch`]): a pipeline of
//! reads is held back until another kind of request, [`BATCH_KEYS`] of them, or the end
//! of what the client has sent, then read in one transaction of the store
//! ([`KvStore::get_many`](crate::store::KvStore::get_many)). Each point read on its own
//! would take and drop SQLite's WAL read lock and the reader pool's mutex; a batch pays
//! for them once.
//!
//! The read runs where the request is, on the connection's task: a few point reads on a
//! warm page cache cost less than a hop to the blocking pool. Every batched request was
//! received before the read starts, so each reply reflects every write acknowledged
//! before its request was sent.

use super::commands::{send_values, values_from};
use super::output::Output;
use super::reply;
use crate::node::Node;
use std::sync::Arc;

/// Most `GET`s held back before they are read (and so most values held at once).
pub const BATCH_KEYS: usize = 16;

/// `GET`s received and not yet answered, in request order.
#[derive(Default)]
pub struct ReadBatch {
    keys: Vec<Vec<u8>>,
}

impl ReadBatch {
    /// Takes `GET key` into the batch.
    pub fn push(&mut self, key: &[u8]) {
        self.keys.push(key.to_vec());
    }

    /// Whether the batch should be read now.
    pub fn is_full(&self) -> bool {
        self.keys.len() >= BATCH_KEYS
    }

    /// Reads the batched keys and appends their replies, in order (the store's error to
    /// each key left, if a read failed): in one transaction unless the values add up to
    /// more than [`VALUES_AT_ONCE`](super::commands::VALUES_AT_ONCE), in which case the replies due are sent before the
    /// next keys are read, so a connection holds about that much plus one value. An `Err`
    /// means the connection failed.
    pub async fn flush(&mut self, node: &Node, out: &mut Output) -> std::io::Result<()> {
        let keys = Arc::new(std::mem::take(&mut self.keys));
        let mut next = 0;
        while next < keys.len() {
            match values_from(node, &keys, next).await {
                Ok(values) => next += send_values(values, out).await?,
                Err(message) => {
                    for _ in next..keys.len() {
                        reply::error(out.buffer(), &message);
                    }
                    next = keys.len();
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::node::budget::Charge;
    use crate::node::lease::WriteLease;
    use crate::node::Node;
    use crate::resp::info::ServerFacts;
    use crate::resp::output::Output;
    use crate::resp::session::Session;
    use crate::store::{MemoryStore, Role};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    fn request(words: &[&str]) -> Vec<Vec<u8>> {
        words.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    /// A batched `GET` is read before a write that follows it is queued, so it never
    /// sees that write, even when the write commits before the batch would be answered.
    #[test]
    fn a_batched_get_is_read_before_the_write_after_it() {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let store = Arc::new(MemoryStore::new(Role::Primary));
        let addr = "127.0.0.1:0".parse().expect("addr");
        let handle = runtime.handle().clone();
        let node = Node::new(store, addr, handle, 1 << 20, WriteLease::off()).expect("node");
        let node = Arc::new(node);
        let facts = Arc::new(ServerFacts {
            started: Instant::now(),
            port: 0,
            secret: None,
            throttle: Default::default(),
            counts: Default::default(),
        });
        let mut session = Session::new(Arc::clone(&node), facts, 1);
        let mut out = Output::new(Box::new(tokio::io::sink()));
        runtime.block_on(async {
            let stored = request(&["SET", "k", "old"]);
            session
                .execute(stored, Charge::default(), &mut out)
                .await
                .expect("SET");
            session.settle(&mut out).await.expect("settle");
            for words in [&["GET", "k"][..], &["SET", "k", "new"]] {
                let charge = Charge::default();
                session
                    .execute(request(words), charge, &mut out)
                    .await
                    .expect("execute");
            }
            // The second SET commits on its own; only then are the replies settled.
            let deadline = Instant::now() + Duration::from_secs(10);
            while node.store().get(b"k").expect("get").as_deref() != Some(&b"new"[..]) {
                assert!(Instant::now() < deadline, "the write never committed");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            session.settle(&mut out).await.expect("settle");
        });
        assert_eq!(&out.buffer()[..], b"+OK\r\n$3\r\nold\r\n+OK\r\n");
    }
}
