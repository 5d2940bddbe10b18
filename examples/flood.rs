//! A flood of large pipelined SETs, for `bench/flood.sh`: how a server copes (memory,
//! errors, time) when many clients send big values without waiting for replies, and
//! whether every acknowledged write was really stored.
//!
//! ```sh
//! cargo run --release --example flood -- run --addr 127.0.0.1:P --status flood.tsv \
//!     [--clients 24] [--sets 10] [--value-bytes 8388608] [--deadline-secs 600]
//! cargo run --release --example flood -- verify-db --db p.db --status flood.tsv \
//!     [--value-bytes 8388608] [--deadline-secs 600]
//! cargo run --release --example flood -- verify-get --addr 127.0.0.1:P --status flood.tsv \
//!     [--value-bytes 8388608] [--deadline-secs 600]
//! ```
//!
//! * **`run`.** `--clients` connections to a Redis-protocol port (kv's `--resp`, or Redis).
//!   Once all are connected they start together: each writes `--sets` requests
//!   `SET flood:<client>:<i> <value>` back to back on its socket, never waiting for a
//!   reply, with values of `--value-bytes` bytes filled with a pattern derived from the
//!   key (printable ASCII from a xorshift generator seeded by the key's FNV-1a hash, so a
//!   stored value can be checked byte for byte without keeping it). Each connection has a
//!   writer thread and a reader thread: the writer never blocks on replies, and a server
//!   that stops reading (backpressure) only slows the writer down. The reader takes the
//!   replies in order as they come and records each SET's outcome: `+OK`
//!   (acknowledged), `-ERR …` (refused; the first text is printed), anything else, or
//!   no reply (the connection closed or the deadline passed first). Every socket call is
//!   bounded by the deadline (`--deadline-secs`, from the start), after which the sockets
//!   are shut down, so the run always ends by itself. Writes `<key>\t<ok|err|other|none>`
//!   lines to `--status`, and `key=value` lines on stdout: `acknowledged`, `refused`,
//!   `other`, `no_reply`, `first_error`, `write_failures` (connections whose writer
//!   stopped early) and `first_write_error`, `elapsed_s` (start to the last reply), and
//!   `ack_mb_per_s`.
//! * **`verify-db`.** Reads every acknowledged key from kv's SQLite file (read-only; the
//!   `kv` table, `key TEXT PRIMARY KEY, value TEXT`) and compares length and content with
//!   the pattern. Prints `checked`, `stored`, `missing`, `mismatched`, `lost` (missing +
//!   mismatched: must be 0) and `unacked_present` (keys without `+OK` that are stored
//!   anyway: allowed, e.g. a write committed just before its connection closed).
//! * **`verify-get`.** The same through `GET` (and `EXISTS` for the keys without `+OK`) on
//!   one connection, for Redis.
//!
//! Progress and the first errors go to stderr. Exit status 0 when the run or the check
//! completed (whatever it found), 1 on a usage or connection error.

use rusqlite::types::ValueRef;
use rusqlite::{Connection as Sqlite, OpenFlags, OptionalExtension};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes handed to one `write` call, so the deadline is checked between them.
const WRITE_CHUNK: usize = 1 << 20;
/// The longest reply line kept (error texts); longer ones are cut.
const MAX_LINE: usize = 64 * 1024;

struct Args {
    mode: String,
    addr: String,
    db: String,
    status: String,
    clients: usize,
    sets: usize,
    value_bytes: usize,
    deadline_secs: u64,
}

fn usage() -> String {
    "usage: flood run --addr HOST:PORT --status FILE [--clients N] [--sets M] \
     [--value-bytes V] [--deadline-secs S]\n       \
     flood verify-db --db PATH --status FILE [--value-bytes V] [--deadline-secs S]\n       \
     flood verify-get --addr HOST:PORT --status FILE [--value-bytes V] [--deadline-secs S]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mode = it.next().ok_or_else(usage)?;
    if !matches!(mode.as_str(), "run" | "verify-db" | "verify-get") {
        return Err(format!("unknown mode {mode}\n{}", usage()));
    }
    let mut args = Args {
        mode,
        addr: String::new(),
        db: String::new(),
        status: String::new(),
        clients: 24,
        sets: 10,
        value_bytes: 8 * 1024 * 1024,
        deadline_secs: 600,
    };
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|e| format!("bad value for {flag}: {value}: {e}"))
        };
        let size =
            || number().and_then(|n| usize::try_from(n).map_err(|_| format!("{flag} too large")));
        match flag.as_str() {
            "--addr" => args.addr = value.clone(),
            "--db" => args.db = value.clone(),
            "--status" => args.status = value.clone(),
            "--clients" => args.clients = size()?,
            "--sets" => args.sets = size()?,
            "--value-bytes" => args.value_bytes = size()?,
            "--deadline-secs" => args.deadline_secs = number()?,
            _ => return Err(format!("unknown option {flag}\n{}", usage())),
        }
    }
    let missing = match args.mode.as_str() {
        "run" | "verify-get" => args.addr.is_empty() || args.status.is_empty(),
        _ => args.db.is_empty() || args.status.is_empty(),
    };
    if missing {
        return Err(usage());
    }
    if args.clients == 0 || args.sets == 0 || args.value_bytes == 0 || args.deadline_secs == 0 {
        return Err("--clients, --sets, --value-bytes and --deadline-secs must be positive".into());
    }
    Ok(args)
}

fn key(client: usize, i: usize) -> String {
    format!("flood:{client}:{i}")
}

/// The value stored under `key`: `len` printable ASCII bytes ('0'..='o') from a xorshift
/// generator seeded with the key's FNV-1a hash.
fn fill(buf: &mut Vec<u8>, key: &str, len: usize) {
    let mut x = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    }) | 1;
    buf.clear();
    buf.reserve(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let bytes = x.to_le_bytes().map(|b| b'0' + (b & 63));
        let take = bytes.len().min(len - buf.len());
        buf.extend_from_slice(&bytes[..take]);
    }
}

/// Time left before `deadline` (at least 1 ms, as a zero socket timeout means none), or a
/// `TimedOut` error once it has passed.
fn left(deadline: Instant) -> io::Result<Duration> {
    let now = Instant::now();
    if now >= deadline {
        return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"));
    }
    Ok((deadline - now).max(Duration::from_millis(1)))
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

/// Writes all of `data`, in chunks, each bounded by the time left.
fn write_by(stream: &mut TcpStream, mut data: &[u8], deadline: Instant) -> io::Result<()> {
    while !data.is_empty() {
        stream.set_write_timeout(Some(left(deadline)?))?;
        match stream.write(&data[..data.len().min(WRITE_CHUNK)]) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => {
                return Err(io::Error::new(ErrorKind::TimedOut, "deadline passed"))
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A reader bounded by a deadline: every read gets the time left as its timeout.
struct Replies {
    reader: BufReader<TcpStream>,
    deadline: Instant,
}

/// One reply, as far as this tool cares.
enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Other(String),
}

impl Replies {
    fn new(stream: TcpStream, deadline: Instant) -> Self {
        Replies {
            reader: BufReader::with_capacity(64 * 1024, stream),
            deadline,
        }
    }

    fn arm(&mut self) -> io::Result<()> {
        let timeout = left(self.deadline)?;
        self.reader.get_ref().set_read_timeout(Some(timeout))
    }

    /// One CRLF-terminated line, without the CRLF (cut at [`MAX_LINE`] bytes).
    fn line(&mut self) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            self.arm()?;
            let (done, used) = {
                let buf = match self.reader.fill_buf() {
                    Ok(buf) => buf,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                if buf.is_empty() {
                    return Err(ErrorKind::UnexpectedEof.into());
                }
                match buf.iter().position(|&b| b == b'\n') {
                    Some(at) => {
                        line.extend_from_slice(&buf[..at]);
                        (true, at + 1)
                    }
                    None => {
                        line.extend_from_slice(&buf[..buf.len().min(MAX_LINE)]);
                        (false, buf.len())
                    }
                }
            };
            self.reader.consume(used);
            line.truncate(MAX_LINE);
            if done {
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
        }
    }

    fn exact(&mut self, n: usize) -> io::Result<Vec<u8>> {
        let mut data = vec![0; n];
        let mut at = 0;
        while at < n {
            self.arm()?;
            match self.reader.read(&mut data[at..]) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(k) => at += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(data)
    }

    fn reply(&mut self) -> io::Result<Reply> {
        let line = self.line()?;
        let text = String::from_utf8_lossy(line.get(1..).unwrap_or_default()).into_owned();
        Ok(match line.first() {
            Some(b'+') => Reply::Simple(text),
            Some(b'-') => Reply::Error(text),
            Some(b':') => match text.parse() {
                Ok(n) => Reply::Integer(n),
                Err(_) => Reply::Other(format!(":{text}")),
            },
            Some(b'$') => match text.parse::<i64>() {
                Ok(n) if n < 0 => Reply::Bulk(None),
                Ok(n) => {
                    let n = usize::try_from(n).map_err(|_| ErrorKind::InvalidData)?;
                    let mut data = self.exact(n + 2)?;
                    data.truncate(n);
                    Reply::Bulk(Some(data))
                }
                Err(_) => Reply::Other(format!("${text}")),
            },
            // Arrays are not expected here: the rest of the stream cannot be trusted.
            _ => return Err(io::Error::new(ErrorKind::InvalidData, "unexpected reply")),
        })
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Ok,
    Refused(String),
    Other(String),
    NoReply,
}

/// What one connection saw.
struct ClientResult {
    outcomes: Vec<Outcome>,
    /// Why the writer stopped before its last request, if it did.
    write_error: Option<String>,
    /// Why the reader stopped before the last reply, if it did.
    read_error: Option<String>,
    done: Instant,
}

/// The writer of connection `client`: every SET back to back, no reply awaited. Returns
/// the number of requests written in full, and the error that stopped it, if any.
fn write_sets(
    mut stream: TcpStream,
    client: usize,
    args: &Args,
    deadline: Instant,
    start: &Barrier,
) -> (usize, Option<String>) {
    let mut value = Vec::new();
    start.wait();
    for i in 0..args.sets {
        let key = key(client, i);
        fill(&mut value, &key, args.value_bytes);
        let head = format!(
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n",
            key.len(),
            value.len()
        );
        let sent = write_by(&mut stream, head.as_bytes(), deadline)
            .and_then(|()| write_by(&mut stream, &value, deadline))
            .and_then(|()| write_by(&mut stream, b"\r\n", deadline));
        if let Err(e) = sent {
            return (i, Some(format!("SET {i}: {e}")));
        }
    }
    (args.sets, None)
}

/// The reader of one connection: the replies in order, until all came, the connection
/// closed or the deadline passed. Then shuts the socket down, which also stops its writer.
fn read_replies(stream: TcpStream, sets: usize, deadline: Instant) -> ClientResult {
    let shut = stream.try_clone();
    let mut replies = Replies::new(stream, deadline);
    let mut outcomes = Vec::with_capacity(sets);
    let mut read_error = None;
    while outcomes.len() < sets {
        match replies.reply() {
            Ok(Reply::Simple(s)) if s == "OK" => outcomes.push(Outcome::Ok),
            Ok(Reply::Error(e)) => outcomes.push(Outcome::Refused(e)),
            Ok(Reply::Simple(s)) => outcomes.push(Outcome::Other(format!("+{s}"))),
            Ok(Reply::Integer(n)) => outcomes.push(Outcome::Other(format!(":{n}"))),
            Ok(Reply::Bulk(_)) => outcomes.push(Outcome::Other("a bulk string".into())),
            Ok(Reply::Other(s)) => outcomes.push(Outcome::Other(s)),
            Err(e) => {
                read_error = Some(if e.kind() == ErrorKind::UnexpectedEof {
                    "connection closed".to_string()
                } else if is_timeout(&e) {
                    "deadline passed".to_string()
                } else {
                    e.to_string()
                });
                break;
            }
        }
    }
    let done = Instant::now();
    outcomes.resize(sets, Outcome::NoReply);
    if let Ok(s) = shut {
        let _ = s.shutdown(Shutdown::Both);
    }
    ClientResult {
        outcomes,
        write_error: None,
        read_error,
        done,
    }
}

fn connect(addr: &str, deadline: Instant) -> Result<TcpStream, String> {
    let target = addr
        .to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: no address"))?;
    let timeout = left(deadline).map_err(|e| format!("connect {addr}: {e}"))?;
    let stream = TcpStream::connect_timeout(&target, timeout.min(Duration::from_secs(10)))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    Ok(stream)
}

fn run(args: &Args) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(args.deadline_secs);
    let mut streams = Vec::with_capacity(args.clients);
    for _ in 0..args.clients {
        streams.push(connect(&args.addr, deadline)?);
    }
    eprintln!(
        "flood: {} clients connected; each pipelines {} SETs of {} bytes",
        args.clients, args.sets, args.value_bytes
    );
    let start = Arc::new(Barrier::new(args.clients + 1));
    let (began, results) = thread::scope(|scope| {
        let mut handles = Vec::with_capacity(args.clients);
        for (client, stream) in streams.into_iter().enumerate() {
            let writer_stream = stream.try_clone().map_err(|e| e.to_string())?;
            let start = Arc::clone(&start);
            let writer =
                scope.spawn(move || write_sets(writer_stream, client, args, deadline, &start));
            let sets = args.sets;
            let reader = scope.spawn(move || read_replies(stream, sets, deadline));
            handles.push((writer, reader));
        }
        start.wait();
        let began = Instant::now();
        let results: Vec<ClientResult> = handles
            .into_iter()
            .map(|(writer, reader)| {
                let mut result = reader.join().expect("reader thread panicked");
                let (_, write_error) = writer.join().expect("writer thread panicked");
                result.write_error = write_error;
                result
            })
            .collect();
        Ok::<_, String>((began, results))
    })?;
    let last = results.iter().map(|r| r.done).max().unwrap_or(began);
    let elapsed = last.saturating_duration_since(began).as_secs_f64();

    let mut status = BufWriter::new(
        File::create(&args.status).map_err(|e| format!("create {}: {e}", args.status))?,
    );
    let (mut acked, mut refused, mut other, mut none) = (0usize, 0usize, 0usize, 0usize);
    let mut first_error = String::new();
    let mut first_write_error = String::new();
    let mut write_failures = 0;
    for (client, result) in results.iter().enumerate() {
        for (i, outcome) in result.outcomes.iter().enumerate() {
            let word = match outcome {
                Outcome::Ok => {
                    acked += 1;
                    "ok"
                }
                Outcome::Refused(e) => {
                    refused += 1;
                    if first_error.is_empty() {
                        first_error = e.clone();
                    }
                    "err"
                }
                Outcome::Other(s) => {
                    other += 1;
                    eprintln!("flood: {} got an unexpected reply {s}", key(client, i));
                    "other"
                }
                Outcome::NoReply => {
                    none += 1;
                    "none"
                }
            };
            writeln!(status, "{}\t{word}", key(client, i)).map_err(|e| e.to_string())?;
        }
        if let Some(e) = &result.write_error {
            write_failures += 1;
            if first_write_error.is_empty() {
                first_write_error = format!("client {client}: {e}");
            }
        }
        if let Some(e) = &result.read_error {
            eprintln!(
                "flood: client {client}: replies stopped after {}: {e}",
                result
                    .outcomes
                    .iter()
                    .filter(|o| **o != Outcome::NoReply)
                    .count()
            );
        }
    }
    status.flush().map_err(|e| e.to_string())?;
    let first_error = first_error.replace(['\r', '\n'], " ");
    let ack_mb = (acked * args.value_bytes) as f64 / (1024.0 * 1024.0);
    eprintln!(
        "flood: {acked} acknowledged, {refused} refused, {other} other, {none} without reply \
         in {elapsed:.2} s; {write_failures} writers stopped early"
    );
    if !first_error.is_empty() {
        eprintln!("flood: first error reply: {first_error}");
    }
    if !first_write_error.is_empty() {
        eprintln!("flood: first write error: {first_write_error}");
    }
    println!("clients={}", args.clients);
    println!("sets_per_client={}", args.sets);
    println!("value_bytes={}", args.value_bytes);
    println!("acknowledged={acked}");
    println!("refused={refused}");
    println!("other={other}");
    println!("no_reply={none}");
    println!("first_error={first_error}");
    println!("write_failures={write_failures}");
    println!("first_write_error={first_write_error}");
    println!("elapsed_s={elapsed:.2}");
    println!("ack_mb_per_s={:.1}", ack_mb / elapsed.max(1e-9));
    Ok(())
}

/// The `(key, acknowledged)` pairs of a status file.
fn read_status(path: &str) -> Result<Vec<(String, bool)>, String> {
    let file = File::open(path).map_err(|e| format!("open {path}: {e}"))?;
    let mut keys = Vec::new();
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| format!("read {path}: {e}"))?;
        let (key, word) = line
            .split_once('\t')
            .ok_or_else(|| format!("{path}: bad line {line:?}"))?;
        keys.push((key.to_string(), word == "ok"));
    }
    Ok(keys)
}

/// Tallies of a check.
#[derive(Default)]
struct Check {
    checked: usize,
    stored: usize,
    missing: usize,
    mismatched: usize,
    unacked_present: usize,
}

impl Check {
    /// Counts an acknowledged key's stored value (`None`: not there).
    fn acked(&mut self, key: &str, stored: Option<&[u8]>, expected: &mut Vec<u8>, len: usize) {
        self.checked += 1;
        let Some(stored) = stored else {
            self.missing += 1;
            if self.missing <= 3 {
                eprintln!("verify: {key} acknowledged but missing");
            }
            return;
        };
        fill(expected, key, len);
        if stored == expected.as_slice() {
            self.stored += 1;
        } else {
            self.mismatched += 1;
            if self.mismatched <= 3 {
                let at = stored
                    .iter()
                    .zip(expected.iter())
                    .position(|(a, b)| a != b)
                    .unwrap_or(stored.len().min(len));
                eprintln!(
                    "verify: {key}: stored {} bytes, expected {len}; first difference at byte {at}",
                    stored.len()
                );
            }
        }
    }

    fn print(&self) {
        let lost = self.missing + self.mismatched;
        eprintln!(
            "verify: {} acknowledged keys checked: {} stored intact, {} missing, {} mismatched; \
             {} keys without +OK are stored anyway",
            self.checked, self.stored, self.missing, self.mismatched, self.unacked_present
        );
        println!("checked={}", self.checked);
        println!("stored={}", self.stored);
        println!("missing={}", self.missing);
        println!("mismatched={}", self.mismatched);
        println!("lost={lost}");
        println!("unacked_present={}", self.unacked_present);
    }
}

fn verify_db(args: &Args) -> Result<(), String> {
    let keys = read_status(&args.status)?;
    let db = Sqlite::open_with_flags(&args.db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("open {}: {e}", args.db))?;
    db.busy_timeout(Duration::from_secs(args.deadline_secs))
        .map_err(|e| e.to_string())?;
    let mut get = db
        .prepare("SELECT value FROM kv WHERE key = ?1")
        .map_err(|e| e.to_string())?;
    let mut check = Check::default();
    let mut expected = Vec::new();
    for (key, acked) in &keys {
        let value = get
            .query_row([key], |row| {
                Ok(match row.get_ref(0)? {
                    ValueRef::Text(b) | ValueRef::Blob(b) => b.to_vec(),
                    _ => Vec::new(),
                })
            })
            .optional()
            .map_err(|e| format!("read {key}: {e}"))?;
        if *acked {
            check.acked(key, value.as_deref(), &mut expected, args.value_bytes);
        } else if value.is_some() {
            check.unacked_present += 1;
        }
    }
    check.print();
    Ok(())
}

/// Sends one command and reads its reply.
fn command(stream: &mut TcpStream, replies: &mut Replies, parts: &[&[u8]]) -> io::Result<Reply> {
    let mut request = format!("*{}\r\n", parts.len()).into_bytes();
    for part in parts {
        request.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
        request.extend_from_slice(part);
        request.extend_from_slice(b"\r\n");
    }
    write_by(stream, &request, replies.deadline)?;
    replies.reply()
}

fn verify_get(args: &Args) -> Result<(), String> {
    let keys = read_status(&args.status)?;
    let deadline = Instant::now() + Duration::from_secs(args.deadline_secs);
    let mut stream = connect(&args.addr, deadline)?;
    let mut replies = Replies::new(stream.try_clone().map_err(|e| e.to_string())?, deadline);
    let mut check = Check::default();
    let mut expected = Vec::new();
    for (key, acked) in &keys {
        let verb: &[u8] = if *acked { b"GET" } else { b"EXISTS" };
        let reply = command(&mut stream, &mut replies, &[verb, key.as_bytes()])
            .map_err(|e| format!("{} {key}: {e}", String::from_utf8_lossy(verb)))?;
        match (acked, reply) {
            (true, Reply::Bulk(value)) => {
                check.acked(key, value.as_deref(), &mut expected, args.value_bytes)
            }
            (false, Reply::Integer(n)) => check.unacked_present += usize::from(n > 0),
            (_, Reply::Error(e)) => return Err(format!("{key}: -{e}")),
            (_, _) => return Err(format!("{key}: unexpected reply")),
        }
    }
    check.print();
    Ok(())
}

fn main() -> ExitCode {
    let outcome = parse_args().and_then(|args| match args.mode.as_str() {
        "run" => run(&args),
        "verify-db" => verify_db(&args),
        _ => verify_get(&args),
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("flood: {e}");
            ExitCode::FAILURE
        }
    }
}
