//! A promotion is one SQLite transaction: a replica holding 300 entries is sent
//! `REPLICAOF NO ONE` on a raw connection and SIGKILLed 0–20 ms later (random, seeded by
//! `KV_FAULT_SEED`), 8 rounds (`KV_SOAK_ROUNDS` for more). Every time, its file opens
//! consistently in one of two states, replica of history A with no fork, or primary of a
//! new history forked from A after seq 300, and the node starts again in that role (as a
//! replica it resumes by partial resync; as a primary it has its history and data). The
//! last round waits for `+OK` before the kill, so the promoted state is always seen at
//! least once.

use crate::common::soak::{rounds, seeded_rng, Summary};
use crate::support::{count_keys, fork_meta, history, redis, set_many, status_field, Cluster};
use rand::RngExt;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const KEYS: usize = 300;
/// When the kill lands after the request is sent, in microseconds: more of them early,
/// where the promotion's transaction runs.
const KILL_AFTER_US: [u64; 10] = [0, 200, 500, 1000, 1500, 2000, 3000, 5000, 10_000, 20_000];
const PROMOTE: &[u8] = b"*3\r\n$9\r\nREPLICAOF\r\n$2\r\nNO\r\n$3\r\nONE\r\n";

#[test]
fn sigkill_during_promotion_leaves_the_file_replica_or_promoted_never_in_between() {
    let (seed, mut rng) = seeded_rng("failover_crash");
    let cluster = Cluster::new();
    let mut p = cluster.primary("p.db", "127.0.0.1:0");
    set_many(&mut redis(&p), "k", 0..KEYS);
    let a = history(&cluster.db("p.db"));
    let mut summary = Summary {
        rounds: rounds(8),
        ..Summary::default()
    };
    let (mut stayed, mut promoted) = (0, 0);
    for round in 0..summary.rounds {
        let name = format!("r{round}.db");
        let db = cluster.db(&name);
        let mut r = cluster.replica(&name, &p.addr(), "Snapshot received");
        let last = round + 1 == summary.rounds;
        let mut client = TcpStream::connect(("127.0.0.1", r.resp_port.expect("resp port")))
            .expect("connect to the client port");
        client.write_all(PROMOTE).expect("send REPLICAOF NO ONE");
        if last {
            client
                .set_read_timeout(Some(crate::common::PATIENCE))
                .expect("timeout");
            let mut reply = [0u8; 5];
            client.read_exact(&mut reply).expect("REPLICAOF reply");
            assert_eq!(&reply, b"+OK\r\n");
        } else {
            // The moment of the kill, not a wait for something to happen.
            let after = KILL_AFTER_US[rng.random_range(0..KILL_AFTER_US.len())];
            std::thread::sleep(Duration::from_micros(after));
        }
        r.kill();
        summary.kills += 1;

        let meta = fork_meta(&db);
        let context = format!("seed {seed} round {round}: {meta:?}");
        assert_eq!(count_keys(&db, "k"), KEYS as i64, "{context}");
        match meta.role.as_deref() {
            Some("replica") => {
                stayed += 1;
                assert!(!last, "the acknowledged promotion was lost: {context}");
                assert_eq!(meta.history_id.as_deref(), Some(a.as_str()), "{context}");
                assert_eq!(meta.prev_history_id, None, "{context}");
                assert_eq!(meta.fork_seq, None, "{context}");
                let r = cluster.replica(&name, &p.addr(), "Resumed after seq 300 (partial resync)");
                drop(r);
            }
            Some("primary") => {
                promoted += 1;
                let b = history(&db);
                assert_ne!(b, a, "{context}");
                assert_eq!(
                    meta.prev_history_id.as_deref(),
                    Some(a.as_str()),
                    "{context}"
                );
                assert_eq!(meta.fork_seq.as_deref(), Some("300"), "{context}");
                let mut again = cluster.primary(&name, "127.0.0.1:0");
                assert_eq!(status_field(&mut again, "history"), Some(b), "{context}");
                assert_eq!(
                    status_field(&mut again, "head_seq").as_deref(),
                    Some("300"),
                    "{context}"
                );
                assert_eq!(again.command("GET k299"), "k299 -> v299", "{context}");
            }
            other => panic!("role {other:?}: {context}"),
        }
    }
    eprintln!("failover_crash: {stayed} rounds stayed a replica, {promoted} were promoted");
    summary.report("failover_crash");
    assert!(promoted >= 1, "no round was promoted");
    p.kill();
}
