//! The pipeline's reply order and read answers, on an in-memory primary.

use super::*;
use crate::node::lease::WriteLease;
use crate::node::Node;
use crate::store::{MemoryStore, Role};
use std::sync::Arc;

fn primary(runtime: &tokio::runtime::Runtime) -> Node {
    let store = Arc::new(MemoryStore::new(Role::Primary));
    let addr = "127.0.0.1:0".parse().expect("addr");
    Node::new(
        store,
        addr,
        runtime.handle().clone(),
        1 << 20,
        WriteLease::off(),
    )
    .expect("node")
}

fn set(key: &str, value: &str) -> Result<Write, String> {
    Ok(super::super::writes::put(key.into(), value.into(), None))
}

fn del(key: &str) -> Result<Parsed, String> {
    super::super::changes::parse("DEL", vec![key.into()])
}

#[test]
fn reads_after_own_writes_see_them_in_order_with_one_settle() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let node = primary(&runtime);
    let out = runtime.block_on(async {
        let mut pipeline = Pipeline::default();
        let mut out = BytesMut::new();
        assert!(!pipeline.get(&node, b"k", &mut out).await, "nothing queued");
        node.write(Op::Put {
            key: "other".into(),
            value: "o".into(),
            expires_at: None,
        })
        .await
        .expect("write");
        pipeline
            .queue(&node, set("k", "1"), Charge::default(), &mut out)
            .await;
        assert!(pipeline.get(&node, b"k", &mut out).await);
        pipeline
            .queue(&node, set("k", "2"), Charge::default(), &mut out)
            .await;
        assert!(pipeline.get(&node, b"k", &mut out).await);
        assert!(
            pipeline.get(&node, b"other", &mut out).await,
            "from the store"
        );
        pipeline
            .queue_change(&node, del("k"), Charge::default(), &mut out)
            .await;
        // What a DEL answers depends on the data: a read of its key waits for it.
        assert!(!pipeline.get(&node, b"k", &mut out).await);
        assert!(
            out.is_empty(),
            "nothing answered before the writes are durable"
        );
        pipeline.settle(&mut out).await;
        out
    });
    let expected = "+OK\r\n$1\r\n1\r\n+OK\r\n$1\r\n2\r\n$1\r\no\r\n:1\r\n";
    assert_eq!(String::from_utf8_lossy(&out), expected);
}

#[test]
fn a_large_pending_value_makes_its_read_wait_for_the_commit() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let node = primary(&runtime);
    let large = "v".repeat(REMEMBERED_VALUE + 1);
    runtime.block_on(async {
        let mut pipeline = Pipeline::default();
        let mut out = BytesMut::new();
        pipeline
            .queue(&node, set("k", &large), Charge::default(), &mut out)
            .await;
        assert!(!pipeline.get(&node, b"k", &mut out).await);
    });
}

#[test]
fn a_read_answered_from_a_write_that_failed_is_withdrawn() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let node = primary(&runtime);
    // The stored role says replica while the node still believes it is the primary: the
    // write is queued, then refused by the store inside its transaction (as after a
    // demotion).
    node.store()
        .set_role(Role::Replica)
        .expect("demote the file");
    let out = runtime.block_on(async {
        let mut pipeline = Pipeline::default();
        let mut out = BytesMut::new();
        pipeline
            .queue(&node, set("k", "1"), Charge::default(), &mut out)
            .await;
        assert!(pipeline.get(&node, b"k", &mut out).await);
        assert!(pipeline.get(&node, b"absent", &mut out).await);
        pipeline.settle(&mut out).await;
        out
    });
    let text = String::from_utf8_lossy(&out);
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(lines[0].starts_with("-READONLY"), "{text}");
    assert!(
        lines[1].starts_with("-ERR a write sent before this read failed"),
        "{text}"
    );
    assert_eq!(lines[2], "$-1", "a read from the store stands: {text}");
}
