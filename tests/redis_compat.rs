//! The string and key commands side by side with a real `redis-server` (7, from the
//! system's packages; `.ci/run` installs it): the same commands, in the same order, get
//! the same replies from both, errors included. Then the writes that depend on the data
//! (`INCR`, `SET … NX`, `RENAME`…) converge on a replica, and a pipeline mixing them with
//! plain writes is resolved in order within one commit.

mod common;

use common::{kv_rows, wait_until, KvProcess};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

const PATIENCE: Duration = Duration::from_secs(15);

/// A `redis-server` on a free loopback port, without persistence; killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server; bash .ci/run does)");
        let server = RedisServer { child, port };
        let up = wait_until(PATIENCE, || server.connection().is_ok());
        assert!(up, "redis-server did not start on port {port}");
        server
    }

    fn connection(&self) -> redis::RedisResult<redis::Connection> {
        redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?.get_connection()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` and a kv primary, each with a client port, started for one test.
struct SideBySide {
    redis: RedisServer,
    kv: KvProcess,
    _dir: TempDir,
}

impl SideBySide {
    fn start() -> SideBySide {
        let dir = TempDir::new().expect("tempdir");
        let kv = KvProcess::primary_with_clients(&dir.path().join("p.db"), &[]);
        SideBySide {
            redis: RedisServer::start(),
            kv,
            _dir: dir,
        }
    }

    /// A connection to Redis, then one to kv.
    fn connections(&self) -> (redis::Connection, redis::Connection) {
        let ours = redis::Client::open(self.kv.redis_url())
            .and_then(|c| c.get_connection())
            .expect("kv");
        (self.redis.connection().expect("redis"), ours)
    }
}

/// A command's reply as text: the value, or the error's words.
fn ask(con: &mut redis::Connection, line: &str) -> String {
    let mut words = line.split(' ');
    let mut command = redis::cmd(words.next().expect("a command"));
    for word in words {
        command.arg(word);
    }
    match command.query::<redis::Value>(con) {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Commands, in an order that exercises each case. Not here: `INCRBYFLOAT` results that
/// Redis's long double prints with stray digits (0.3 + 1e3 is `1000.29999999999999999`
/// there, `1000.3` in kv), and SCANs that stop part-way: the cursors differ by design.
const SCRIPT: &[&str] = &[
    "INCR n",
    "INCRBY n 10",
    "DECR n",
    "DECRBY n 3",
    "INCRBY n abc",
    "INCRBY n 1.5",
    "INCRBYFLOAT f 0.1",
    "INCRBYFLOAT f 0.2",
    "INCRBYFLOAT f abc",
    "INCRBYFLOAT f inf",
    "INCRBY n x extra",
    "SETRANGE t x",
    "INCRBYFLOAT f 2",
    "INCRBYFLOAT g 1.5e2",
    "SET t hello",
    "INCR t",
    "INCRBYFLOAT t 1",
    "APPEND t _world",
    "APPEND fresh abc",
    "STRLEN t",
    "STRLEN nothing",
    "GETRANGE t 0 4",
    "GETRANGE t -5 -1",
    "GETRANGE t 5 2",
    "GETRANGE t 0 1000",
    "GETRANGE nothing 0 -1",
    "GETRANGE t a b",
    "SUBSTR t 1 3",
    "SETRANGE t 6 WORLD",
    "GET t",
    "SETRANGE padded 3 ab",
    "STRLEN padded",
    "SETRANGE empty 0 ",
    "EXISTS empty",
    "SETRANGE t -1 x",
    "SET k v NX",
    "SET k v2 NX",
    "SET k v3 XX GET",
    "SET absent v XX",
    "SET absent v XX GET",
    "GET k",
    "SET k v NX XX",
    "SET k v FOO",
    "SET k v KEEPTTL",
    "SETNX k z",
    "SETNX k2 z",
    "GETSET k v4",
    "GETSET newkey first",
    "GETDEL k",
    "GETDEL k",
    "MSETNX a 1 b 2",
    "MSETNX b 3 c 4",
    "MSETNX a",
    "MGET a b c",
    "RENAME a a2",
    "RENAME a2 a2",
    "RENAME nokey x",
    "RENAMENX a2 b",
    "RENAMENX a2 z",
    "RENAMENX z z",
    "COPY z zz",
    "COPY z zz",
    "COPY z zz REPLACE",
    "COPY z z",
    "COPY nokey y",
    "COPY z y DB 0",
    "COPY z y BOGUS",
    "TYPE z",
    "TYPE nothing",
    "TOUCH z zz nothing",
    "UNLINK z zz nothing",
    "EXISTS z zz",
    "SET big 9223372036854775807",
    "INCR big",
    "SET small -9223372036854775808",
    "DECR small",
    "DECRBY n -9223372036854775808",
    "INCR",
    "GETDEL",
    "RENAME onlyone",
    "DBSIZE",
    "SCAN 0 MATCH nomatch* COUNT 1000 TYPE string",
    "SCAN 0 MATCH n COUNT 1000 TYPE STRING",
    "SCAN 0 COUNT 1000 TYPE hash",
    "SCAN 0 TYPE",
    "SET e v",
    "TTL e",
    "PTTL e",
    "TTL missing",
    "PTTL missing",
    "EXPIRETIME e",
    "PEXPIRETIME missing",
    "PERSIST e",
    "PERSIST missing",
    "GETEX e",
    "GETEX e PERSIST",
    "GETEX missing",
    "GETEX e BOGUS",
    "TTL",
    // Expiry: whole seconds and absolute times, which both sides give alike (the command
    // after a set runs well within the half second TTL rounds to).
    "SET s1 v EX 100",
    "TTL s1",
    "SET s1 v2 KEEPTTL",
    "TTL s1",
    "SET s1 v3",
    "TTL s1",
    "SET s1 v EX 0",
    "SET s1 v EX -5",
    "SET s1 v EX abc",
    "SET s1 v EX",
    "SET s1 v EX 10 PX 100",
    "SET s1 v EX 10 KEEPTTL",
    "SET s1 v EX 9223372036854775807",
    "SET s1 v PX 100000 NX",
    "SET s1 v PX 100000 XX GET",
    "TTL s1",
    "SET s2 v PXAT 4102444800000 GET",
    "PEXPIRETIME s2",
    "EXPIRETIME s2",
    "SET s2 v EXAT 4102444800",
    "EXPIRETIME s2",
    "SETEX s3 100 v",
    "TTL s3",
    "SETEX s3 0 v",
    "SETEX s3 -1 v",
    "SETEX s3 x v",
    "SETEX s3 10",
    "PSETEX s4 100000 v",
    "TTL s4",
    "EXPIRE s3 200",
    "TTL s3",
    "EXPIRE s3 100 GT",
    "EXPIRE s3 300 GT",
    "TTL s3",
    "EXPIRE s3 100 LT",
    "EXPIRE s3 150 XX LT",
    "TTL s3",
    "EXPIRE s3 50 NX",
    "EXPIRE s3 50 XX",
    "TTL s3",
    "EXPIRE s3 9223372036854775807",
    "SET plain v",
    "EXPIRE plain 50 XX",
    "EXPIRE plain 50 GT",
    "EXPIRE plain 50 LT",
    "TTL plain",
    "EXPIRE plain 50 NX XX",
    "EXPIRE plain 50 GT LT",
    "EXPIRE plain 50 BOGUS",
    "EXPIRE plain abc",
    "EXPIRE missing 50",
    "EXPIRE plain",
    "PERSIST plain",
    "TTL plain",
    "PERSIST plain",
    "PEXPIRE plain 100000",
    "TTL plain",
    "EXPIREAT plain 4102444800",
    "EXPIRETIME plain",
    "PEXPIREAT plain 4102444800123",
    "PEXPIRETIME plain",
    "EXPIRETIME plain",
    "SET c 1 EX 100",
    "INCR c",
    "TTL c",
    "APPEND c 0",
    "TTL c",
    "SETRANGE c 0 9",
    "TTL c",
    "INCRBYFLOAT c 1",
    "TTL c",
    "GETSET c 5",
    "TTL c",
    "SET r v EX 100",
    "RENAME r r2",
    "TTL r2",
    "COPY r2 r3",
    "TTL r3",
    "GETEX r3 EX 50",
    "TTL r3",
    "GETEX r3 PERSIST",
    "TTL r3",
    "GETEX r3 PX 100000",
    "TTL r3",
    "GETEX r3 EXAT 4102444800",
    "EXPIRETIME r3",
    "GETEX r3 EX 0",
    "GETEX r3 EX",
    "GETEX r3 EX 10 PX 10",
    "GETEX missing EX 10",
    "EXPIRE r3 -1",
    "EXISTS r3",
    "GET r3",
    "TTL r3",
    "SET s1 v EX 0 KEEPTTL",
    "SET s1 v EX abc NX XX",
    "SET s1 v EX 1 EX 100",
    "TTL s1",
    "SET s1 v KEEPTTL KEEPTTL",
    "TTL s1",
    "SET s1 v NX NX",
    "GETEX s1 PERSIST PERSIST",
    "TTL s1",
    "GETEX s1 EX 0 PERSIST",
    "GETEX s1 PX 10 EX 5",
    "GETEX s1 PERSIST EX 5",
    "EXPIRE s1 10 bogus",
    "SET d v PXAT 1",
    "DEL d",
    "SET d1 v",
    "DEL d1 d1 nothing",
    "SET d2 v",
    "UNLINK d2 d",
    "DEL",
    "SET gone v EXAT 1",
    "GET gone",
    "EXISTS gone",
    "SET gone v2 NX",
    "TTL gone",
    "MSETNX m1 1 s1 2",
    "SET old v PXAT 1000",
    "MSETNX old 1",
    "GET old",
    "DBSIZE",
    "CONFIG GET appendonly",
    "CONFIG GET save",
    "CONFIG GET nosuchparameter",
    "CONFIG SET maxclients",
    "CONFIG SET nosuchparameter 1",
    "CONFIG SET min-replicas-max-lag abc",
    "CONFIG SET min-replicas-max-lag -1",
    "CONFIG SET min-replicas-to-write 99999999999",
    "CONFIG SET min-replicas-to-write 1 nosuch 2",
    "CONFIG GET min-replicas-to-write",
    "CONFIG SET min-replicas-to-write 0 min-replicas-max-lag 12",
    "CONFIG GET min-replicas-max-lag",
    "CONFIG SET min-replicas-max-lag 10",
    "FLUSHDB BOGUS",
    "FLUSHDB ASYNC",
    "DBSIZE",
    "SET k v",
    "FLUSHALL SYNC",
    "GET k",
    "RANDOMKEY",
];

#[test]
fn string_and_key_commands_answer_as_redis_does() {
    let both = SideBySide::start();
    let (mut theirs, mut ours) = both.connections();
    let mut differences = Vec::new();
    for line in SCRIPT {
        let (expected, got) = (ask(&mut theirs, line), ask(&mut ours, line));
        if expected != got {
            differences.push(format!("{line}\n  redis: {expected}\n  kv:    {got}"));
        }
    }
    // RANDOMKEY: one of the keys (random, so not compared), nil when there are none.
    let () = redis::cmd("MSET")
        .arg("r1")
        .arg("a")
        .arg("r2")
        .arg("b")
        .query(&mut ours)
        .expect("MSET");
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut ours).expect("KEYS");
    let picked: Option<String> = redis::cmd("RANDOMKEY").query(&mut ours).expect("RANDOMKEY");
    assert!(picked.is_some_and(|key| keys.contains(&key)), "{keys:?}");

    // PTTL: the milliseconds left, within the time this test took.
    let () = redis::cmd("SET")
        .arg("p")
        .arg("v")
        .arg("PX")
        .arg(60_000)
        .query(&mut ours)
        .expect("SET PX");
    let left: i64 = redis::cmd("PTTL").arg("p").query(&mut ours).expect("PTTL");
    assert!((50_000..=60_000).contains(&left), "PTTL {left}");
    let keyspace: String = redis::cmd("INFO")
        .arg("keyspace")
        .query(&mut ours)
        .expect("INFO");
    assert!(keyspace.contains(",expires=1,"), "{keyspace}");

    // CONFIG SET min-replicas-to-write applies to the next write: with no replica, it
    // is refused, and taken again once the setting is back to 0.
    let min_replicas = |con: &mut redis::Connection, n: u32| {
        let () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("min-replicas-to-write")
            .arg(n)
            .query(con)
            .expect("CONFIG SET");
    };
    min_replicas(&mut ours, 1);
    let refused = redis::cmd("SET").arg("w").arg("1").query::<()>(&mut ours);
    let refused = refused.expect_err("no replica").to_string();
    assert!(refused.contains("NOREPLICAS"), "{refused}");
    min_replicas(&mut ours, 0);
    let () = redis::cmd("SET")
        .arg("w")
        .arg("1")
        .query(&mut ours)
        .expect("SET");

    // CONFIG GET * lists kv's parameters; CONFIG SET of the others says they are set at
    // start.
    let config: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("*")
        .query(&mut ours)
        .expect("CONFIG");
    assert!(
        config.contains(&"min-replicas-to-write".to_string()),
        "{config:?}"
    );
    let set = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxclients")
        .arg("5")
        .query::<()>(&mut ours);
    assert!(set
        .expect_err("not at run time")
        .to_string()
        .contains("restart the node"));

    // INFO: several sections at once, each as Redis names it; an unknown one is empty.
    let info: String = redis::cmd("INFO")
        .arg("server")
        .arg("clients")
        .arg("stats")
        .query(&mut ours)
        .expect("INFO");
    for section in ["# Server", "# Clients", "# Stats", "connected_clients:1"] {
        assert!(info.contains(section), "{section} missing from {info}");
    }
    assert!(!info.contains("# Keyspace"), "{info}");
    let unknown: String = redis::cmd("INFO")
        .arg("bogus")
        .query(&mut ours)
        .expect("INFO");
    let theirs_unknown: String = redis::cmd("INFO")
        .arg("bogus")
        .query(&mut theirs)
        .expect("INFO");
    assert_eq!(unknown, theirs_unknown);
    assert!(
        differences.is_empty(),
        "{} of {} commands differ:\n{}",
        differences.len(),
        SCRIPT.len(),
        differences.join("\n")
    );
}

#[test]
fn changes_replicate_and_resolve_in_order_within_a_pipeline() {
    let dir = TempDir::new().expect("tempdir");
    let primary_db = dir.path().join("p.db");
    let primary = KvProcess::primary_with_clients(&primary_db, &[]);
    let replica_db = dir.path().join("r.db");
    let _replica = KvProcess::synced_replica(&replica_db, &primary.addr(), &[]);
    let mut con = redis::Client::open(primary.redis_url())
        .and_then(|c| c.get_connection())
        .expect("kv");

    // One pipeline: plain writes and changes of the same keys, sent at once, so they
    // share commits; each change must see every write before it.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET").arg("counter").arg(i * 10);
        pipe.cmd("INCRBY").arg("counter").arg(3);
        pipe.cmd("APPEND").arg("log").arg(format!("{i},"));
        pipe.cmd("SET").arg("lock").arg(i).arg("NX");
        pipe.cmd("GET").arg("counter");
    }
    pipe.cmd("RENAME").arg("log").arg("journal");
    pipe.cmd("COPY").arg("journal").arg("backup");
    pipe.cmd("GETDEL").arg("lock");
    let replies: Vec<redis::Value> = pipe.query(&mut con).expect("the pipeline");
    for i in 0..200 {
        let get = &replies[i * 5 + 4];
        let expected = redis::Value::BulkString((i * 10 + 3).to_string().into_bytes());
        assert_eq!(get, &expected, "GET after SET {} and INCRBY 3", i * 10);
    }
    let journal: String = (0..200).map(|i| format!("{i},")).collect();
    let expected = vec![
        ("backup".to_string(), journal.clone()),
        ("counter".to_string(), "1993".to_string()),
        ("journal".to_string(), journal),
    ];
    assert_eq!(kv_rows(&primary_db), expected);
    let converged = wait_until(PATIENCE, || kv_rows(&replica_db) == expected);
    assert!(converged, "the replica has {:?}", kv_rows(&replica_db));

    // A flush behind a write: the read after both sees neither, here and on the replica.
    let (set, flushed, after): ((), (), Option<String>) = redis::pipe()
        .cmd("SET")
        .arg("late")
        .arg("1")
        .cmd("FLUSHDB")
        .cmd("GET")
        .arg("late")
        .query(&mut con)
        .expect("the flush pipeline");
    assert_eq!((set, flushed, after), ((), (), None));
    assert_eq!(kv_rows(&primary_db), Vec::new());
    let emptied = wait_until(PATIENCE, || kv_rows(&replica_db).is_empty());
    assert!(emptied, "the replica has {:?}", kv_rows(&replica_db));
}

/// One command with byte arguments, and its reply as text (the value's debug form).
fn ask_bytes(con: &mut redis::Connection, args: &[&[u8]]) -> String {
    let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("a command name"));
    for arg in &args[1..] {
        command.arg(*arg);
    }
    if args[0] == b"KEYS" {
        // Redis lists keys in hash order, kv in key order: compared sorted.
        let mut keys: Vec<Vec<u8>> = command.query(con).expect("KEYS");
        keys.sort();
        return format!("{keys:?}");
    }
    match command.query::<redis::Value>(con) {
        Ok(value) => format!("{value:?}"),
        Err(e) => format!("error: {e}"),
    }
}

/// Keys and values are bytes, as in Redis: the same replies for keys and values that are
/// not UTF-8 (byte-wise `GETRANGE`, a `SETRANGE` through a character, glob patterns
/// matching bytes).
#[test]
fn binary_keys_and_values_answer_as_redis_does() {
    let both = SideBySide::start();
    let (mut theirs, mut ours) = both.connections();
    let script: &[&[&[u8]]] = &[
        &[b"SET", b"bin\xff\x00key", b"\x00\x01\xfe\xff"],
        &[b"GET", b"bin\xff\x00key"],
        &[b"STRLEN", b"bin\xff\x00key"],
        &[b"APPEND", b"bin\xff\x00key", b"\x80"],
        &[b"GETRANGE", b"bin\xff\x00key", b"1", b"3"],
        &[b"SET", b"word", "h\u{e9}llo".as_bytes()],
        &[b"SETRANGE", b"word", b"2", b"X"],
        &[b"GET", b"word"],
        &[b"GETRANGE", b"word", b"0", b"1"],
        &[b"MSET", b"\xc3", b"half", b"\xc3\xa9", b"whole"],
        &[b"MGET", b"\xc3", b"\xc3\xa9", b"\xc3\xa8"],
        &[b"KEYS", b"\xc3*"],
        &[b"KEYS", b"bin?\x00*"],
        &[b"KEYS", b"[a-\xff]*"],
        &[b"KEYS", b"[\x00-\xff]*"],
        &[b"KEYS", b"[v-]*"],
        &[b"EXISTS", b"bin\xff\x00key", b"bin"],
        &[b"RENAME", b"bin\xff\x00key", b"\xfe"],
        &[b"GET", b"\xfe"],
        &[b"INCR", b"\xfe"],
        &[b"SET", b"n", b"\xff1"],
        &[b"INCR", b"n"],
        &[b"DEL", b"\xfe", b"\xc3"],
        &[b"DBSIZE"],
    ];
    let mut differences = Vec::new();
    for args in script {
        let (expected, got) = (ask_bytes(&mut theirs, args), ask_bytes(&mut ours, args));
        if expected != got {
            let line: Vec<String> = args.iter().map(|a| a.escape_ascii().to_string()).collect();
            differences.push(format!(
                "{}\n  redis: {expected}\n  kv:    {got}",
                line.join(" ")
            ));
        }
    }
    assert!(
        differences.is_empty(),
        "{} commands differ:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

/// Every write command, binary data and expiries included, then the replica's `DIGEST`
/// (which covers every row's key, value and expiry) equals the primary's.
#[test]
fn every_write_command_converges_on_a_replica() {
    let dir = TempDir::new().expect("tempdir");
    let mut primary = KvProcess::primary_with_clients(&dir.path().join("p.db"), &[]);
    let mut replica = KvProcess::synced_replica(&dir.path().join("r.db"), &primary.addr(), &[]);
    let mut con = redis::Client::open(primary.redis_url())
        .and_then(|c| c.get_connection())
        .expect("kv");
    let writes: &[&[&[u8]]] = &[
        &[b"SET", b"s", b"1"],
        &[b"SET", b"s2", b"v", b"NX", b"EX", b"100"],
        &[b"SET", b"s2", b"w", b"XX", b"KEEPTTL", b"GET"],
        &[b"SET", b"s3", b"v", b"PXAT", b"4102444800000"],
        &[b"SETNX", b"n1", b"x"],
        &[b"SETEX", b"e1", b"100", b"v"],
        &[b"PSETEX", b"e2", b"100000", b"v"],
        &[b"GETSET", b"s", b"2"],
        &[b"MSET", b"m1", b"1", b"m2", b"\xff\x00"],
        &[b"MSETNX", b"m3", b"3", b"m4", b"4"],
        &[b"APPEND", b"m2", b"\xfe"],
        &[b"SETRANGE", b"m1", b"3", b"xyz"],
        &[b"INCR", b"c"],
        &[b"INCRBY", b"c", b"41"],
        &[b"DECR", b"c"],
        &[b"DECRBY", b"c", b"2"],
        &[b"INCRBYFLOAT", b"f", b"1.5"],
        &[b"EXPIRE", b"c", b"100"],
        &[b"PEXPIRE", b"f", b"100000", b"NX"],
        &[b"EXPIREAT", b"m3", b"4102444800"],
        &[b"PEXPIREAT", b"m4", b"4102444800000", b"GT"],
        &[b"PERSIST", b"m3"],
        &[b"GETEX", b"m4", b"EX", b"200"],
        &[b"GETEX", b"e1", b"PERSIST"],
        &[b"RENAME", b"s3", b"s4"],
        &[b"RENAMENX", b"s4", b"s5"],
        &[b"COPY", b"s5", b"s6"],
        &[b"GETDEL", b"n1"],
        &[b"SET", b"gone", b"v", b"PX", b"1"],
        &[b"SET", b"bin\xff", b"\x00"],
        &[b"DEL", b"m1", b"nothing"],
        &[b"UNLINK", b"s"],
    ];
    for args in writes {
        let mut command = redis::cmd(std::str::from_utf8(args[0]).expect("name"));
        for arg in &args[1..] {
            command.arg(*arg);
        }
        let reply = command.query::<redis::Value>(&mut con);
        assert!(
            reply.is_ok(),
            "{:?}: {reply:?}",
            args[0].escape_ascii().to_string()
        );
    }
    // `gone` expires and is swept; then nothing more changes.
    let has_gone = || {
        let conn = rusqlite::Connection::open(dir.path().join("p.db")).expect("open");
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM kv WHERE key = 'gone'", [], |r| {
                r.get(0)
            })
            .expect("count");
        rows > 0
    };
    let swept = wait_until(PATIENCE, || !has_gone());
    assert!(swept, "the sweep never deleted the expired key");
    let digest = primary.command("DIGEST");
    let converged = wait_until(PATIENCE, || replica.command("DIGEST") == digest);
    assert!(
        converged,
        "primary {digest}, replica {}",
        replica.command("DIGEST")
    );
    // And the data is there: the digest covers expiries, so a lost one would show.
    let ttl: i64 = redis::cmd("TTL").arg("c").query(&mut con).expect("TTL");
    assert!((95..=100).contains(&ttl), "TTL {ttl}");
}
