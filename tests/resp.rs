//! The client port with a real Redis client (the `redis` crate): the data commands, SCAN,
//! INFO and WAIT on a primary, reads and `READONLY` on a replica, a 1,000-command
//! pipeline, 200 concurrent writers, 1,000 concurrent connections, and malformed or
//! oversized requests, which close their connection while the node stays up.

mod common;

use common::{wait_until, KvProcess, PATIENCE};
use redis::{Commands, Connection, RedisResult};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use tempfile::TempDir;

fn connect(node: &KvProcess) -> Connection {
    let client = redis::Client::open(node.redis_url()).expect("client");
    client.get_connection().expect("connect")
}

fn primary(dir: &TempDir) -> KvProcess {
    KvProcess::primary_with_clients(&dir.path().join("p.db"), &[])
}

fn replica_of(dir: &TempDir, upstream: &KvProcess) -> KvProcess {
    let db = dir.path().join("r1.db");
    // One thread serves it all (`--threads`), as the benchmark's replica can.
    let args = ["--resp", "127.0.0.1:0", "--threads", "1"];
    KvProcess::synced_replica(&db, &upstream.addr(), &args)
}

#[test]
fn data_commands_on_the_primary() {
    let dir = TempDir::new().expect("tempdir");
    let node = primary(&dir);
    let mut con = connect(&node);
    let _: () = con.set("greeting", "hello world").expect("SET");
    assert_eq!(
        con.get::<_, Option<String>>("greeting").expect("GET"),
        Some("hello world".into())
    );
    assert_eq!(con.get::<_, Option<String>>("missing").expect("GET"), None);
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut con)
        .expect("MSET");
    let values: Vec<Option<String>> = redis::cmd("MGET")
        .arg("a")
        .arg("nope")
        .arg("b")
        .query(&mut con)
        .expect("MGET");
    assert_eq!(values, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(
        redis::cmd("EXISTS")
            .arg("a")
            .arg("b")
            .arg("nope")
            .query::<i64>(&mut con)
            .expect("EXISTS"),
        2
    );
    assert_eq!(
        redis::cmd("DEL")
            .arg("a")
            .arg("nope")
            .query::<i64>(&mut con)
            .expect("DEL"),
        1
    );
    assert_eq!(
        redis::cmd("DBSIZE").query::<i64>(&mut con).expect("DBSIZE"),
        2
    );
    assert_eq!(
        redis::cmd("PING").query::<String>(&mut con).expect("PING"),
        "PONG"
    );
    assert_eq!(
        redis::cmd("ECHO")
            .arg("hi")
            .query::<String>(&mut con)
            .expect("ECHO"),
        "hi"
    );
    let _: () = redis::cmd("SELECT")
        .arg(0)
        .query(&mut con)
        .expect("SELECT 0");
    let _: () = redis::cmd("CLIENT")
        .arg("SETNAME")
        .arg("tester")
        .query(&mut con)
        .expect("SETNAME");

    // Unknown options and unknown commands are errors, not crashes.
    let ex: RedisResult<()> = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .arg("EX")
        .arg(10)
        .arg("LATER")
        .query(&mut con);
    assert!(ex.unwrap_err().to_string().contains("syntax error"));
    let unknown: RedisResult<()> = redis::cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut con);
    assert!(unknown.unwrap_err().to_string().contains("unknown command"));
    assert_eq!(con.get::<_, Option<String>>("k").expect("GET"), None);

    // KEYS and SCAN with glob patterns.
    for i in 0..25 {
        let _: () = con.set(format!("user:{i:02}"), i).expect("SET");
    }
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg("user:1?")
        .query(&mut con)
        .expect("KEYS");
    keys.sort();
    assert_eq!(keys.len(), 10);
    assert_eq!(keys[0], "user:10");
    let mut scanned: Vec<String> = con
        .scan_match("user:*")
        .expect("SCAN")
        .collect::<RedisResult<_>>()
        .expect("SCAN pages");
    scanned.sort();
    assert_eq!(scanned.len(), 25);
    assert_eq!(scanned[24], "user:24");
}

#[test]
fn replica_serves_reads_refuses_writes_and_info_and_wait_see_it() {
    let dir = TempDir::new().expect("tempdir");
    let node = primary(&dir);
    let mut con = connect(&node);
    let _: () = con.set("a", "1").expect("SET");
    let replica = replica_of(&dir, &node);
    let mut rcon = connect(&replica);
    assert_eq!(
        rcon.get::<_, Option<String>>("a").expect("GET"),
        Some("1".into())
    );
    let refused: RedisResult<()> = rcon.set("b", "2");
    let message = refused.unwrap_err().to_string();
    // The client names the READONLY code its own way; the text is Redis's.
    assert!(
        message.contains("You can't write against a read only replica."),
        "{message}"
    );

    let raw = send_raw(replica.resp_port.expect("resp port"), b"SET b 2\r\n");
    assert_eq!(
        raw,
        "-READONLY You can't write against a read only replica.\r\n"
    );

    let _: () = con.set("b", "2").expect("SET");
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(1000)
        .query(&mut con)
        .expect("WAIT");
    assert_eq!(acked, 1, "one replica acked the last write");
    assert!(wait_until(PATIENCE, || rcon
        .get::<_, Option<String>>("b")
        .ok()
        .flatten()
        .as_deref()
        == Some("2")));

    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .expect("INFO");
    assert!(info.contains("role:master"), "{info}");
    assert!(info.contains("connected_slaves:1"), "{info}");
    assert!(info.contains("slave0:ip=127.0.0.1,port="), "{info}");
    assert!(info.contains("state=online,offset=2"), "{info}");
    assert!(info.contains("master_repl_offset:2"), "{info}");
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut rcon)
        .expect("INFO");
    assert!(info.contains("role:slave"), "{info}");
    assert!(
        info.contains(&format!("master_port:{}", node.port)),
        "{info}"
    );
    assert!(info.contains("master_link_status:up"), "{info}");
}

#[test]
fn pipelines_and_many_concurrent_clients() {
    let dir = TempDir::new().expect("tempdir");
    let node = primary(&dir);
    let mut con = connect(&node);
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("p{i:04}")).arg(i).ignore();
    }
    pipe.cmd("GET").arg("p0999").cmd("DBSIZE");
    let (last, size): (String, i64) = pipe.query(&mut con).expect("pipeline");
    assert_eq!((last.as_str(), size), ("999", 1000));

    // Reads behind the connection's own pending writes see them, in request order, and the
    // next command sees them committed.
    let mut mixed = redis::pipe();
    for i in 0..1000 {
        mixed.cmd("SET").arg(format!("m{i:04}")).arg(i);
        mixed.cmd("GET").arg(format!("m{i:04}"));
    }
    mixed
        .cmd("DEL")
        .arg("m0001")
        .cmd("GET")
        .arg("m0001")
        .cmd("GET")
        .arg("p0998");
    let replies: Vec<redis::Value> = mixed.query(&mut con).expect("mixed pipeline");
    for i in 0..1000 {
        let read: Option<String> =
            redis::from_redis_value(replies[2 * i + 1].clone()).expect("GET");
        assert_eq!(read, Some(i.to_string()), "GET m{i:04} after its SET");
    }
    let tail: (i64, Option<String>, String) =
        redis::from_redis_value(redis::Value::Array(replies[2000..].to_vec())).expect("tail");
    assert_eq!(tail, (1, None, "998".to_string()));
    assert_eq!(con.get::<_, String>("m0999").expect("GET"), "999");

    // A run of 40 GETs alone: read 16 at a time, and about 1 MiB of values at a time
    // within that (20 of the values are 700 KB).
    let large = "L".repeat(700_000);
    let _: () = con.set("large", &large).expect("SET");
    let mut run = redis::pipe();
    for i in 0..40 {
        match i % 2 {
            0 => run.cmd("GET").arg("large"),
            _ => run.cmd("GET").arg(format!("p{i:04}")),
        };
    }
    let values: Vec<String> = run.query(&mut con).expect("a run of GETs");
    for (i, value) in values.iter().enumerate() {
        match i % 2 {
            0 => assert!(
                value == &large,
                "GET large, reply {i}: {} bytes",
                value.len()
            ),
            _ => assert_eq!(value, &i.to_string(), "GET p{i:04}"),
        }
    }
    assert_eq!(values.len(), 40);

    // Runs of GETs are read together (a batch per 16): their replies stay in request
    // order around other commands, a key that is not text, and a write between them.
    let mut reads = redis::pipe();
    for i in 0..40 {
        reads.cmd("GET").arg(format!("p{:04}", i * 7));
        match i {
            5 => reads.cmd("GET").arg(&b"\xff\xfe"[..]),
            17 => reads.cmd("EXISTS").arg("p0001").arg("nothing"),
            // The key the GET just before it read: that GET must not see it.
            23 => reads.cmd("SET").arg("p0161").arg("new"),
            29 => reads.cmd("GET").arg("absent"),
            _ => &mut reads,
        };
    }
    // Sent as raw commands: the pipeline's error reply must not fail the whole query.
    let sent = 40 + 4;
    let replies =
        redis::ConnectionLike::req_packed_commands(&mut con, &reads.get_packed_pipeline(), 0, sent)
            .expect("read pipeline");
    let mut replies = replies.into_iter();
    for i in 0..40 {
        let read: Option<String> =
            redis::from_redis_value(replies.next().expect("a reply")).expect("GET");
        let want = match i * 7 {
            n if n >= 1000 => None,
            n => Some(n.to_string()),
        };
        assert_eq!(read, want, "GET p{:04}", i * 7);
        let extra = match i {
            5 | 17 | 23 | 29 => replies.next().expect("a reply"),
            _ => continue,
        };
        match i {
            // A key that is not UTF-8 is a key like any other (absent here).
            5 => assert_eq!(extra, redis::Value::Nil),
            17 => assert_eq!(extra, redis::Value::Int(1)),
            23 => assert_eq!(extra, redis::Value::Okay),
            _ => assert_eq!(extra, redis::Value::Nil),
        }
    }
    assert!(replies.next().is_none(), "one reply per request");
    assert_eq!(con.get::<_, String>("p0161").expect("GET"), "new");

    let writers: Vec<_> = (0..200)
        .map(|w| {
            let url = node.redis_url();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url)
                    .and_then(|c| c.get_connection())
                    .expect("connect");
                for i in 0..5 {
                    let _: () = con
                        .set(format!("w{w:03}:{i}"), format!("{w}-{i}"))
                        .expect("SET");
                }
            })
        })
        .collect();
    writers.into_iter().for_each(|t| t.join().expect("writer"));
    let mut keys: Vec<String> = redis::cmd("KEYS").arg("w*").query(&mut con).expect("KEYS");
    keys.sort();
    assert_eq!(keys.len(), 1000, "every writer's keys are present");
    assert_eq!(con.get::<_, String>("w123:4").expect("GET"), "123-4");

    // A thousand connections open at once, each answered.
    let port = node.resp_port.expect("resp port");
    let mut sockets: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).expect("connect"))
        .collect();
    for socket in &mut sockets {
        socket.write_all(b"PING\r\n").expect("send");
    }
    for socket in &mut sockets {
        socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
        let mut reply = [0u8; 7];
        socket.read_exact(&mut reply).expect("reply");
        assert_eq!(&reply, b"+PONG\r\n");
    }
}

/// Sends `bytes` on a fresh connection; returns what came back before the node closed it.
fn send_raw(port: u16, bytes: &[u8]) -> String {
    let mut socket = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
    let _ = socket.write_all(bytes);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let _ = socket.read_to_end(&mut reply);
    String::from_utf8_lossy(&reply).into_owned()
}

#[test]
fn malformed_and_oversized_requests_close_only_their_connection() {
    let dir = TempDir::new().expect("tempdir");
    let node = primary(&dir);
    let port = node.resp_port.expect("resp port");
    let mut con = connect(&node);
    let _: () = con.set("kept", "yes").expect("SET");

    let malformed = send_raw(port, b"*2\r\n$3\r\nGET\r\nxxkept\r\n");
    assert!(malformed.starts_with("-ERR Protocol error"), "{malformed}");
    let oversized = send_raw(port, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$999999999999\r\n");
    assert!(oversized.starts_with("-ERR Protocol error"), "{oversized}");
    assert!(oversized.contains("larger than"), "{oversized}");
    let unterminated = send_raw(port, b"*2\r\n$3\r\nGET\r\n$4\r\nke");
    assert!(
        unterminated.contains("-ERR Protocol error: unterminated request"),
        "{unterminated}"
    );
    let too_many = send_raw(port, b"*99999999\r\n");
    assert!(too_many.starts_with("-ERR Protocol error"), "{too_many}");
    // Requests before the bad one are answered; nothing after it runs.
    let mixed = send_raw(port, b"PING\r\n*1\r\n$4\r\nPINGx\r\nSET after bad\r\n");
    assert!(mixed.starts_with("+PONG\r\n-ERR Protocol error"), "{mixed}");

    assert_eq!(
        con.get::<_, Option<String>>("kept").expect("GET"),
        Some("yes".into())
    );
    assert_eq!(con.get::<_, Option<String>>("after").expect("GET"), None);
    let quit = send_raw(port, b"QUIT\r\nPING\r\n");
    assert_eq!(quit, "+OK\r\n");
    std::thread::sleep(Duration::from_millis(0));
}
