//! Every write the primary accepts reaches every replica: the largest value kv accepts
//! (8 MiB) travels on the live stream and in a full sync, right after ~1 MB of smaller
//! pairs that sort before it (so it cannot ride in their snapshot chunk); a larger value
//! or key is refused with a clear error before anything is stored, and the client keeps
//! its connection (the oversized request is read and discarded, not answered by a reset).

mod common;

use common::{kv_rows, wait_until, KvProcess, PATIENCE};
use kv::store::{MAX_KEY_BYTES, MAX_VALUE_BYTES};
use redis::RedisResult;
use tempfile::TempDir;

fn set(con: &mut redis::Connection, key: &str, value: &str) -> RedisResult<()> {
    redis::cmd("SET").arg(key).arg(value).query(con)
}

#[test]
fn the_largest_value_reaches_live_and_new_replicas_and_larger_ones_are_refused() {
    let dir = TempDir::new().expect("tempdir");
    let p_db = dir.path().join("p.db").display().to_string();
    let mut primary = KvProcess::start(&[
        "primary",
        "--db",
        &p_db,
        "--listen",
        "127.0.0.1:0",
        "--resp",
        "127.0.0.1:0",
    ]);
    let live_db = dir.path().join("live.db");
    let _live = KvProcess::synced_replica(&live_db, &primary.addr(), &[]);
    let client = redis::Client::open(primary.redis_url()).expect("client");
    let mut con = client.get_connection().expect("connect");

    // ~1 MB of smaller pairs sorting just before the largest value.
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET")
            .arg(format!("a{i:04}"))
            .arg("s".repeat(1000));
    }
    let _: () = pipe.query(&mut con).expect("small pairs");
    let largest = "L".repeat(MAX_VALUE_BYTES);
    set(&mut con, "b", &largest).expect("the largest value is accepted");

    let too_large = set(&mut con, "c", &"x".repeat(MAX_VALUE_BYTES + 1)).expect_err("refused");
    assert!(
        too_large.to_string().contains("value too large"),
        "{too_large}"
    );
    let long_key = "k".repeat(MAX_KEY_BYTES + 1);
    let refused = set(&mut con, &long_key, "v").expect_err("refused");
    assert!(refused.to_string().contains("key too large"), "{refused}");
    // Same connection, still in step: nothing of the refused writes was stored.
    let pong: String = redis::cmd("PING")
        .query(&mut con)
        .expect("PING after a refusal");
    assert_eq!(pong, "PONG");
    let missing: Option<String> = redis::cmd("GET").arg("c").query(&mut con).expect("GET");
    assert_eq!(missing, None);
    assert_eq!(primary.command("KEYS c"), "(no keys)");

    // MGET across them all: read and sent about 1 MiB at a time, in order.
    let mut mget = redis::cmd("MGET");
    for i in 0..1000 {
        mget.arg(format!("a{i:04}"));
    }
    let values: Vec<Option<String>> = mget.arg("b").arg("c").query(&mut con).expect("MGET");
    assert_eq!(values.len(), 1002);
    assert!(values[..1000]
        .iter()
        .all(|v| v.as_deref() == Some(&*"s".repeat(1000))));
    assert_eq!(values[1000].as_deref(), Some(largest.as_str()));
    assert_eq!(values[1001], None);

    let expected = kv_rows(&dir.path().join("p.db"));
    assert_eq!(expected.len(), 1001);
    let streamed = wait_until(PATIENCE, || kv_rows(&live_db) == expected);
    assert!(
        streamed,
        "the live replica never received the largest value"
    );

    let fresh_db = dir.path().join("fresh.db");
    let mut fresh = KvProcess::synced_replica(&fresh_db, &primary.addr(), &[]);
    assert_eq!(
        kv_rows(&fresh_db),
        expected,
        "the full sync carried everything"
    );
    assert_eq!(fresh.command("DIGEST"), primary.command("DIGEST"));
}
