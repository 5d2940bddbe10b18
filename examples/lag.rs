//! Replication lag under a steady write rate, for `bench/resp.sh`: how long after a SET is
//! acknowledged by the primary the replica has applied it.
//!
//! ```sh
//! cargo run --release --example lag -- --primary 127.0.0.1:P --replica 127.0.0.1:R \
//!     --primary-db p.db [--rate 5000] [--secs 10] [--conns 16] [--poll-us 0]
//! ```
//!
//! * **Writers.** `--conns` threads, each with its own connection to the primary, issue
//!   `rate × secs` SETs of distinct keys (`lag:<tag>:<i>`, 16-byte values) on one shared
//!   schedule: write `i` is due at `start + i / rate` and goes to thread `i mod conns`,
//!   which sleeps until the due time (no sleep if it is late), so the rate does not drift
//!   with the writes' own latency. Each SET is durable before its reply (one fsync per
//!   group commit), so one sequential connection cannot reach 5,000/s when an fsync costs
//!   more than 200 µs; several connections keep up and let group commit work. For each
//!   write the thread records when its reply (the ack) arrived.
//! * **Which seq each write got.** With several connections the order in which the
//!   primary's writer commits them is not known to the client (a SET's reply is just
//!   `OK`). kv's database is plain SQLite, and its `log` table holds every write as
//!   `(seq, op, key, value)`: after the run, the tool reads the seqs of its own keys from
//!   the primary's file (read-only) and checks that they are exactly the range following
//!   `master_repl_offset` read before the start (no other writer ran meanwhile).
//! * **When the replica applied it.** A poller thread sends `INFO replication` to the
//!   replica in a loop (`--poll-us` between polls, 0 = back to back) and records every
//!   rise of `slave_repl_offset` (the replica's committed head) with the time the reply
//!   arrived. A write's seq is applied at the first poll showing an offset ≥ its seq.
//!   That reply arrives after the replica applied it, so `applied − ack` is an upper
//!   bound; the send time of the poll before it (which still showed a lower offset) gives
//!   a lower bound. The gap between the two is the poll round trip: the resolution.
//!   Lags are clamped at 0 (the replica may apply a write before the client reads the
//!   primary's reply).
//!
//! Prints `key=value` lines on stdout for the script to parse, and a summary on stderr.

use redis::io::tcp::TcpSettings;
use redis::{Connection, IntoConnectionInfo};
use rusqlite::{Connection as Sqlite, OpenFlags};
use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

struct Args {
    primary: String,
    replica: String,
    primary_db: String,
    rate: f64,
    secs: f64,
    conns: usize,
    poll_us: u64,
}

fn usage() -> String {
    "usage: lag --primary HOST:PORT --replica HOST:PORT --primary-db PATH \
     [--rate N] [--secs S] [--conns C] [--poll-us U]"
        .into()
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        primary: String::new(),
        replica: String::new(),
        primary_db: String::new(),
        rate: 5000.0,
        secs: 10.0,
        conns: 16,
        poll_us: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{}", usage()))?;
        let bad = |_| format!("bad value for {flag}: {value}");
        match flag.as_str() {
            "--primary" => args.primary = value.clone(),
            "--replica" => args.replica = value.clone(),
            "--primary-db" => args.primary_db = value.clone(),
            "--rate" => {
                args.rate = value
                    .parse()
                    .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?
            }
            "--secs" => {
                args.secs = value
                    .parse()
                    .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?
            }
            "--conns" => {
                args.conns = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            "--poll-us" => {
                args.poll_us = value
                    .parse()
                    .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?
            }
            _ => return Err(format!("unknown option {flag}\n{}", usage())),
        }
    }
    if args.primary.is_empty() || args.replica.is_empty() || args.primary_db.is_empty() {
        return Err(usage());
    }
    if !(args.rate > 0.0 && args.secs > 0.0 && args.conns > 0) {
        return Err("--rate, --secs and --conns must be positive".into());
    }
    Ok(args)
}

fn connect(addr: &str) -> Result<Connection, String> {
    let info = format!("redis://{addr}/")
        .into_connection_info()
        .map_err(|e| format!("{addr}: {e}"))?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    redis::Client::open(info)
        .and_then(|c| c.get_connection())
        .map_err(|e| format!("connect {addr}: {e}"))
}

/// A numeric field of `INFO replication`.
fn info_field(con: &mut Connection, field: &str) -> Result<u64, String> {
    let text: String = redis::cmd("INFO")
        .arg("replication")
        .query(con)
        .map_err(|e| format!("INFO replication: {e}"))?;
    text.lines()
        .find_map(|line| line.trim_end().strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {field} in INFO replication"))
}

/// The value at quantile `q` (0..=1) of sorted `v`, nearest rank.
fn quantile(v: &[u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}

/// A seq as an SQLite integer.
fn seq_param(seq: u64) -> Result<i64, String> {
    i64::try_from(seq).map_err(|_| format!("seq {seq} is out of SQLite's range"))
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// One write as its thread saw it.
struct Sent {
    index: usize,
    /// How late it was issued relative to its due time.
    slip: Duration,
    ack: Instant,
}

/// One rise of the replica's offset: the offset, when the poll showing it was sent and
/// when its reply arrived, and when the previous poll (showing less) was sent.
struct Rise {
    offset: u64,
    prev_sent: Instant,
    received: Instant,
}

fn run(args: Args) -> Result<(), String> {
    let total = (args.rate * args.secs).round() as usize;
    let tag = format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0)
    );
    let mut control = connect(&args.primary)?;
    let mut replica_control = connect(&args.replica)?;
    let start_seq = info_field(&mut control, "master_repl_offset")?;
    let replica_seq = info_field(&mut replica_control, "slave_repl_offset")?;
    if replica_seq != start_seq {
        return Err(format!(
            "the replica is not caught up before the run (primary {start_seq}, replica {replica_seq})"
        ));
    }
    let expected_last = start_seq + total as u64;

    // The poller: every rise of slave_repl_offset, until it reaches the last seq.
    let writers_done = Arc::new(AtomicBool::new(false));
    let poller = {
        let mut con = replica_control;
        let done = Arc::clone(&writers_done);
        let pause = Duration::from_micros(args.poll_us);
        thread::spawn(move || -> Result<(Vec<Rise>, Vec<u64>), String> {
            let mut rises = Vec::new();
            let mut rtts = Vec::new();
            let mut last = start_seq;
            let mut prev_sent = Instant::now();
            let mut give_up: Option<Instant> = None;
            loop {
                let sent = Instant::now();
                let offset = info_field(&mut con, "slave_repl_offset")?;
                let received = Instant::now();
                rtts.push(micros(received - sent));
                if offset > last {
                    rises.push(Rise {
                        offset,
                        prev_sent,
                        received,
                    });
                    last = offset;
                }
                prev_sent = sent;
                if last >= expected_last {
                    return Ok((rises, rtts));
                }
                if done.load(Ordering::Relaxed) {
                    let limit = *give_up.get_or_insert_with(|| received + Duration::from_secs(30));
                    if received > limit {
                        return Err(format!(
                            "the replica reached seq {last} of {expected_last} within 30 s after the last write"
                        ));
                    }
                }
                if !pause.is_zero() {
                    thread::sleep(pause);
                }
            }
        })
    };

    // The writers, on one schedule.
    let mut writers = Vec::new();
    let mut cons = Vec::new();
    for _ in 0..args.conns {
        cons.push(connect(&args.primary)?);
    }
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let start = Instant::now() + Duration::from_millis(50);
    for (k, mut con) in cons.into_iter().enumerate() {
        let tag = tag.clone();
        let conns = args.conns;
        writers.push(thread::spawn(move || -> Result<Vec<Sent>, String> {
            let mut sent = Vec::with_capacity(total / conns + 1);
            for index in (k..total).step_by(conns) {
                let due = start + interval.mul_f64(index as f64);
                let now = Instant::now();
                if due > now {
                    thread::sleep(due - now);
                }
                let issued = Instant::now();
                let key = format!("lag:{tag}:{index}");
                let value = format!("{index:016}");
                let () = redis::cmd("SET")
                    .arg(&key)
                    .arg(&value[value.len() - 16..])
                    .query(&mut con)
                    .map_err(|e| format!("SET {key}: {e}"))?;
                sent.push(Sent {
                    index,
                    slip: issued.saturating_duration_since(due),
                    ack: Instant::now(),
                });
            }
            Ok(sent)
        }));
    }
    let mut sent = Vec::with_capacity(total);
    for writer in writers {
        sent.extend(writer.join().map_err(|_| "a writer panicked")??);
    }
    writers_done.store(true, Ordering::Relaxed);
    let last_ack = sent.iter().map(|s| s.ack).max().unwrap_or(start);
    let (rises, rtts) = poller.join().map_err(|_| "the poller panicked")??;

    // Each write's seq, from the primary's log.
    let db = Sqlite::open_with_flags(&args.primary_db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("open {}: {e}", args.primary_db))?;
    db.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let prefix = format!("lag:{tag}:");
    let mut seq_of: HashMap<usize, u64> = HashMap::with_capacity(total);
    let mut stmt = db
        .prepare("SELECT seq, key FROM log WHERE seq > ?1 AND seq <= ?2 ORDER BY seq")
        .map_err(|e| e.to_string())?;
    let rows = stmt
        .query_map([seq_param(start_seq)?, seq_param(expected_last)?], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(|e| e.to_string())?;
    for row in rows {
        let (seq, key) = row.map_err(|e| e.to_string())?;
        let seq = u64::try_from(seq).map_err(|_| format!("negative seq {seq} in the log"))?;
        let index = key
            .strip_prefix(&prefix)
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| format!("seq {seq} is not one of this run's writes ({key})"))?;
        seq_of.insert(index, seq);
    }
    if seq_of.len() != total {
        return Err(format!(
            "found {} of this run's {total} writes in the primary's log between seqs {} and {expected_last}",
            seq_of.len(),
            start_seq + 1
        ));
    }

    // Lag of each write: bounds from the first rise reaching its seq.
    let mut upper = Vec::with_capacity(total);
    let mut lower = Vec::with_capacity(total);
    let mut slips = Vec::with_capacity(total);
    for s in &sent {
        let seq = seq_of[&s.index];
        let at = rises.partition_point(|r| r.offset < seq);
        let rise = rises
            .get(at)
            .ok_or_else(|| format!("seq {seq} never seen applied"))?;
        upper.push(micros(rise.received.saturating_duration_since(s.ack)));
        lower.push(micros(rise.prev_sent.saturating_duration_since(s.ack)));
        slips.push(micros(s.slip));
    }
    upper.sort_unstable();
    lower.sort_unstable();
    slips.sort_unstable();
    let mut rtts = rtts;
    rtts.sort_unstable();
    let elapsed = (last_ack - start).as_secs_f64();
    let achieved = total as f64 / elapsed;

    let out = [
        ("writes", total.to_string()),
        ("conns", args.conns.to_string()),
        ("target_rate", format!("{:.0}", args.rate)),
        ("achieved_rate", format!("{achieved:.0}")),
        ("slip_p99_us", quantile(&slips, 0.99).to_string()),
        ("lag_p50_us", quantile(&upper, 0.50).to_string()),
        ("lag_p99_us", quantile(&upper, 0.99).to_string()),
        ("lag_max_us", quantile(&upper, 1.0).to_string()),
        ("lag_low_p50_us", quantile(&lower, 0.50).to_string()),
        ("lag_low_p99_us", quantile(&lower, 0.99).to_string()),
        ("lag_low_max_us", quantile(&lower, 1.0).to_string()),
        ("polls", rtts.len().to_string()),
        ("poll_p50_us", quantile(&rtts, 0.50).to_string()),
        ("poll_p99_us", quantile(&rtts, 0.99).to_string()),
        ("seqs", format!("{}..{expected_last}", start_seq + 1)),
    ];
    for (k, v) in &out {
        println!("{k}={v}");
    }
    eprintln!(
        "lag: {total} writes on {} connections in {elapsed:.2} s ({achieved:.0}/s); \
         lag p50 {} µs, p99 {} µs, max {} µs (lower bounds {}/{}/{}); \
         {} polls, round trip p50 {} µs",
        args.conns,
        quantile(&upper, 0.5),
        quantile(&upper, 0.99),
        quantile(&upper, 1.0),
        quantile(&lower, 0.5),
        quantile(&lower, 0.99),
        quantile(&lower, 1.0),
        rtts.len(),
        quantile(&rtts, 0.5)
    );
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lag: {e}");
            ExitCode::FAILURE
        }
    }
}
