//! Seeded fuzzing of the replication wire on stable Rust (invariants 3, 5 and 6): this file
//! owns the claim that no bytes a peer sends can make a node panic, crash, allocate by a
//! length the peer merely claims, lose frame alignment, or apply a log entry out of order.
//! A seeded loop (no nightly, no proptest) in one test, on one thread, feeds per CI run
//! `KV_FUZZ_FRAMES` frames (default 100,000), split over three checks:
//!
//! 1. [`protocol::decode`] (60%) on random byte strings (0..2 KiB), structured msgpack-ish
//!    junk, hand-picked edge cases, and mutations of valid encodings of every [`Message`]
//!    variant: bit flips, byte insertions and deletions, truncations, splices of two
//!    encodings, length fields widened to 0xff.., huge array/str/map/bin/ext markers such
//!    as `dd ff ff ff ff`; valid encodings must round-trip;
//! 2. [`MessageReader`] (20%) over an in-memory stream of length-prefixed frames (valid,
//!    garbage bodies, empty, oversize prefixes, truncated tails), delivered in random
//!    chunks, whole or byte by byte, ending in EOF, an open connection or an I/O error, and
//!    checked against a model of the framing: each frame yields what `decode` says of its
//!    body, no earlier than its last byte; an oversize prefix is refused from its 4 bytes
//!    alone and nothing after it is returned; the end is `Ok(None)` between frames and
//!    `Err` inside one (as `kv::connection` documents);
//! 3. [`Receiver`] (20%) fed mostly-correct, sometimes perturbed sequences of decoded
//!    messages: every `Step::Apply` carries exactly the previous seq + 1 (tracked here from
//!    the steps alone), snapshot keys only increase (in byte order), and a correct next
//!    entry is accepted. Keys and values are bytes, now and then not UTF-8.
//!
//! A counting `#[global_allocator]` records the largest single allocation request made on
//! the test's own thread while a decode or read runs; see [`decode_bound`] for the bound.
//! Deep nesting can overflow the stack, which aborts the process, so a second test runs
//! those inputs in child processes ([`deeply_nested_frames_do_not_overflow_the_stack`]).
//!
//! `KV_FUZZ_SEED` (decimal or 0x-hex) picks the seed, printed at the start with the counts;
//! a panic inside `decode` is reported with the hex of its input, a reader mismatch with
//! the hex of its stream. The `SOAK fuzz_frames: ...` line on stderr is the summary the
//! soak script adds up (faults = frames fed).
//!
//! `main.rs` holds the configuration, the statistics and the two tests; the rest lives in
//! area modules: `messages` (random valid messages and their encodings), `mutate`
//! (mutations and msgpack-ish junk), `decode` (check 1, with its hand-picked corpus),
//! `reader` (check 2: the in-memory connection and the model of the framing), `receiver`
//! (check 3: the model of what the receiver accepted), `nesting` (the deeply nested inputs
//! the child processes decode) and `alloc` (the counting allocator and the bounds).
//!
//! [`Message`]: kv::protocol::Message
//! [`MessageReader`]: kv::connection::MessageReader
//! [`Receiver`]: kv::replication::Receiver
//! [`decode_bound`]: alloc::decode_bound

mod alloc;
mod decode;
mod messages;
mod mutate;
mod nesting;
mod reader;
mod receiver;

use alloc::SLACK;
use decode::fuzz_decode;
use kv::protocol;
use messages::VARIANTS;
use nesting::{nested_input, nesting_cases, CHILD_ENV, NESTINGS, WORKER_STACK};
use rand::rngs::Xoshiro256PlusPlus;
use rand::SeedableRng;
use reader::fuzz_reader;
use receiver::fuzz_receiver;
use std::collections::BTreeMap;
use std::time::Instant;

type Rng = Xoshiro256PlusPlus;

const DEFAULT_SEED: u64 = 0x6b76_5f66_757a_7a31;
const DEFAULT_FRAMES: usize = 100_000;

// ---------------------------------------------------------------------------------------
// Configuration and statistics
// ---------------------------------------------------------------------------------------

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    let value = value.trim().replace('_', "");
    let parsed = match value.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => value.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={value:?} is not a number: {e}")))
}

#[derive(Default)]
struct Stats {
    decode_frames: usize,
    decode_ok: usize,
    decode_peak: usize,
    decode_peak_input: Vec<u8>,
    /// Decodes whose largest allocation exceeded 2 × input + SLACK (the serde preallocation).
    decode_over_linear: usize,
    variants_mutated: [usize; VARIANTS],
    reader_frames: usize,
    reader_streams: usize,
    reader_messages: usize,
    reader_rejections: usize,
    reader_peak: usize,
    reader_peak_bound: usize,
    /// Streams where the reader disagreed with the model: what it did and the stream.
    reader_mismatches: Vec<String>,
    receiver_frames: usize,
    receiver_sequences: usize,
    receiver_applies: usize,
    receiver_errors: usize,
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[test]
fn random_and_mutated_frames_never_panic_allocate_by_claim_or_reorder() {
    let seed = env_number("KV_FUZZ_SEED").unwrap_or(DEFAULT_SEED);
    let total = env_number("KV_FUZZ_FRAMES").map_or(DEFAULT_FRAMES, |n| n as usize);
    let decode_frames = total * 6 / 10;
    let reader_frames = total * 2 / 10;
    let receiver_frames = total - decode_frames - reader_frames;
    eprintln!(
        "fuzz_frames: seed={seed:#x} frames={total} (decode {decode_frames}, reader \
         {reader_frames}, receiver {receiver_frames}); reproduce with KV_FUZZ_SEED={seed:#x} \
         KV_FUZZ_FRAMES={total}"
    );
    let started = Instant::now();
    let mut rng = Rng::seed_from_u64(seed);
    let mut stats = Stats::default();

    fuzz_decode(&mut rng, decode_frames, &mut stats);
    fuzz_reader(&mut rng, reader_frames, &mut stats);
    fuzz_receiver(&mut rng, receiver_frames, &mut stats);

    let elapsed = started.elapsed();
    if total >= 1000 {
        assert!(
            stats.variants_mutated.iter().all(|&n| n > 0),
            "every variant mutated: {:?}",
            stats.variants_mutated
        );
        assert!(stats.reader_messages > 0 && stats.reader_rejections > 0);
        assert!(stats.receiver_applies > 0 && stats.receiver_errors > 0);
    }
    eprintln!(
        "fuzz_frames: decode {} frames ({} decoded), largest allocation {} bytes (input of \
         {} bytes: {}), {} decodes above 2 x input + {SLACK}",
        stats.decode_frames,
        stats.decode_ok,
        stats.decode_peak,
        stats.decode_peak_input.len(),
        hex::encode(&stats.decode_peak_input[..stats.decode_peak_input.len().min(64)]),
        stats.decode_over_linear
    );
    eprintln!(
        "fuzz_frames: reader {} frames in {} streams ({} messages, {} rejections), largest \
         allocation {} bytes (bound {})",
        stats.reader_frames,
        stats.reader_streams,
        stats.reader_messages,
        stats.reader_rejections,
        stats.reader_peak,
        stats.reader_peak_bound
    );
    eprintln!(
        "fuzz_frames: receiver {} frames in {} sequences ({} applied, {} refused); {:.2?}",
        stats.receiver_frames,
        stats.receiver_sequences,
        stats.receiver_applies,
        stats.receiver_errors,
        elapsed
    );
    let fed = stats.decode_frames + stats.reader_frames + stats.receiver_frames;
    eprintln!("SOAK fuzz_frames: rounds=1 kills=0 faults={fed} acknowledged=0 lost=0 divergent=0");
    // Grouped by kind (the message with its numbers left out), with the first of each.
    let mut kinds: BTreeMap<String, (usize, &str)> = BTreeMap::new();
    for mismatch in &stats.reader_mismatches {
        let head = mismatch.split(": ").next().unwrap_or_default();
        let kind = head.chars().filter(|c| !c.is_ascii_digit()).collect();
        kinds.entry(kind).or_insert((0, mismatch)).0 += 1;
    }
    let report: Vec<String> = kinds
        .values()
        .map(|(count, first)| format!("{count} x, the first: {first}"))
        .collect();
    assert!(
        stats.reader_mismatches.is_empty(),
        "MessageReader disagreed with the frame model in {} of {} streams:\n{}",
        stats.reader_mismatches.len(),
        stats.reader_streams,
        report.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// Deep nesting, in child processes
// ---------------------------------------------------------------------------------------

/// A stack overflow aborts the process, so `catch_unwind` cannot report it: the cases run
/// in a child (this same test binary and test, with [`CHILD_ENV`] set), which announces
/// each case before decoding it on a worker-sized stack; a child that dies names the case.
#[test]
fn deeply_nested_frames_do_not_overflow_the_stack() {
    let name = "deeply_nested_frames_do_not_overflow_the_stack";
    let cases = nesting_cases();
    if let Some(from) = env_number(CHILD_ENV) {
        for (i, &(kind, depth)) in cases.iter().enumerate().skip(from as usize) {
            eprintln!("NESTING-TRY {i}");
            let input = nested_input(NESTINGS[kind], depth);
            let decoded = std::thread::Builder::new()
                .stack_size(WORKER_STACK)
                .spawn(move || protocol::decode(&input).is_ok())
                .expect("spawn")
                .join();
            assert!(decoded.is_ok(), "decode panicked on case {i}");
        }
        eprintln!("NESTING-DONE");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut failures = Vec::new();
    let mut from = 0;
    while from < cases.len() {
        let output = std::process::Command::new(&exe)
            .args(["--exact", name, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, from.to_string())
            .output()
            .expect("run the child");
        let stderr = String::from_utf8_lossy(&output.stderr);
        if output.status.success() && stderr.contains("NESTING-DONE") {
            break;
        }
        let failed: usize = stderr
            .lines()
            .filter_map(|line| line.strip_prefix("NESTING-TRY "))
            .next_back()
            .and_then(|i| i.parse().ok())
            .unwrap_or_else(|| {
                panic!("child failed before any case ({}): {stderr}", output.status)
            });
        let (kind, depth) = cases[failed];
        let input = nested_input(NESTINGS[kind], depth);
        let why = stderr
            .lines()
            .rfind(|line| !line.trim().is_empty() && !line.starts_with("NESTING-TRY"))
            .unwrap_or("");
        failures.push(format!(
            "{} nested {depth} deep: a {}-byte frame {}{}... ({}: {why})",
            NESTINGS[kind].0,
            input.len(),
            hex::encode((input.len() as u32).to_be_bytes()),
            hex::encode(&input[..input.len().min(32)]),
            output.status
        ));
        from = failed + 1;
    }
    assert!(
        failures.is_empty(),
        "protocol::decode killed the process on a {} KiB stack (tokio's worker default):\n{}",
        WORKER_STACK / 1024,
        failures.join("\n")
    );
}
