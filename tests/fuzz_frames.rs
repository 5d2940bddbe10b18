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
//!    the steps alone), snapshot keys only increase, and a correct next entry is accepted.
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

use futures::FutureExt;
use kv::connection::MessageReader;
use kv::protocol::{self, Message, HANDSHAKE_MAX_FRAME, MAX_FRAME, PROTOCOL_VERSION};
use kv::replication::{Receiver, Step};
use kv::store::{LogEntry, Op, MAX_SEQ};
use rand::rngs::Xoshiro256PlusPlus;
use rand::{RngExt, SeedableRng};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncRead, ReadBuf};

type Rng = Xoshiro256PlusPlus;

const DEFAULT_SEED: u64 = 0x6b76_5f66_757a_7a31;
const DEFAULT_FRAMES: usize = 100_000;

// ---------------------------------------------------------------------------------------
// Allocation accounting
// ---------------------------------------------------------------------------------------

/// `System`, plus a per-thread record of the largest single request while armed.
struct PeakAlloc;

thread_local! {
    // Const-initialised and without destructors: safe to touch from inside the allocator.
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static PEAK: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = PEAK.try_with(|peak| peak.set(peak.get().max(size)));
        }
    });
}

unsafe impl GlobalAlloc for PeakAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: PeakAlloc = PeakAlloc;

/// Runs `f` with accounting armed on this thread only (so the test harness's own threads
/// never count); returns its result and the largest single allocation request it made.
fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    struct Disarm;
    impl Drop for Disarm {
        fn drop(&mut self) {
            ARMED.with(|armed| armed.set(false));
        }
    }
    PEAK.with(|peak| peak.set(0));
    ARMED.with(|armed| armed.set(true));
    let disarm = Disarm;
    let out = f();
    drop(disarm);
    (out, PEAK.with(Cell::get))
}

/// serde's `size_hint::cautious` caps the capacity a `Vec` preallocates from a claimed
/// element count at 1 MiB (`MAX_PREALLOC_BYTES`, serde_core 1.0.229).
const SERDE_PREALLOC_CAP: usize = 1024 * 1024;
/// Error strings, small buffers.
const SLACK: usize = 4 * 1024;
/// tokio-util's `FramedRead` starts with an 8 KiB buffer.
const FRAMED_READ_INITIAL: usize = 8 * 1024;

/// The largest single allocation `decode` may make for an input of `len` bytes.
///
/// Strings are borrowed from the input and copied at their real length (a claimed length
/// beyond the input is an EOF error before any allocation). The one `Vec` in a
/// [`Message`], `Snapshot::entries: Vec<(String, String)>`, is where a claimed length can
/// matter: serde preallocates `min(claimed, 1 MiB / 48)` elements, so a 16-byte frame
/// claiming 2^32-1 entries allocates ~1 MiB — bounded, never 4 GiB × 48. Beyond that
/// preallocation a `Vec` grows only with real elements; each 48-byte pair takes at least
/// 3 input bytes (`92 a0 a0`), and doubling at most doubles that: 32 × len.
fn decode_bound(len: usize) -> usize {
    SERDE_PREALLOC_CAP.max(32 * len) + SLACK
}

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
// Random messages
// ---------------------------------------------------------------------------------------

const VARIANTS: usize = 10;
const VARIANT_NAMES: [&str; VARIANTS] = [
    "Join",
    "Continue",
    "SnapshotBegin",
    "Snapshot",
    "SnapshotEnd",
    "Put",
    "Delete",
    "Ack",
    "Ping",
    "Error",
];
const FIELD_NAMES: [&str; 13] = [
    "node_id",
    "replica_addr",
    "history_id",
    "last_seq",
    "protocol_version",
    "from_seq",
    "seq",
    "keys",
    "reason",
    "entries",
    "key",
    "value",
    "message",
];
/// Seqs at every msgpack integer width boundary and at the store's limits.
const SEQS: [u64; 16] = [
    0,
    1,
    2,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    u32::MAX as u64,
    u32::MAX as u64 + 1,
    MAX_SEQ - 1,
    MAX_SEQ,
    MAX_SEQ + 1,
    u64::MAX - 1,
    u64::MAX,
];

fn random_seq(rng: &mut Rng) -> u64 {
    match rng.random_range(0..4) {
        0 => SEQS[rng.random_range(0..SEQS.len())],
        1 => rng.random(),
        _ => rng.random_range(0..1000),
    }
}

fn random_char(rng: &mut Rng) -> char {
    match rng.random_range(0..20) {
        0 => '\0',
        1 => 'é',
        2 => '\u{10FFFF}',
        3 => '\n',
        4 => ' ',
        5 => '€',
        _ => char::from(rng.random_range(b'!'..=b'~')),
    }
}

/// A string whose length often sits at a msgpack str width boundary (31/32, 255/256).
fn random_string(rng: &mut Rng) -> String {
    let len = match rng.random_range(0..20) {
        0..=1 => 0,
        2..=11 => rng.random_range(1..8),
        12..=16 => rng.random_range(8..40),
        17..=18 => rng.random_range(29..35),
        _ => rng.random_range(250..262),
    };
    (0..len).map(|_| random_char(rng)).collect()
}

fn message_of(variant: usize, rng: &mut Rng) -> Message {
    match variant {
        0 => Message::Join {
            node_id: random_string(rng),
            replica_addr: random_string(rng),
            history_id: rng.random_bool(0.5).then(|| random_string(rng)),
            last_seq: random_seq(rng),
            protocol_version: if rng.random_bool(0.25) {
                rng.random()
            } else {
                PROTOCOL_VERSION
            },
        },
        1 => Message::Continue {
            history_id: random_string(rng),
            from_seq: random_seq(rng),
        },
        2 => Message::SnapshotBegin {
            history_id: random_string(rng),
            seq: random_seq(rng),
            keys: random_seq(rng),
            reason: random_string(rng),
        },
        3 => {
            let n = rng.random_range(0..20);
            Message::Snapshot {
                entries: (0..n)
                    .map(|_| (random_string(rng), random_string(rng)))
                    .collect(),
            }
        }
        4 => Message::SnapshotEnd {
            seq: random_seq(rng),
        },
        5 => Message::Put {
            seq: random_seq(rng),
            key: random_string(rng),
            value: random_string(rng),
        },
        6 => Message::Delete {
            seq: random_seq(rng),
            key: random_string(rng),
        },
        7 => Message::Ack {
            seq: random_seq(rng),
        },
        8 => Message::Ping {
            seq: random_seq(rng),
        },
        _ => Message::Error {
            message: random_string(rng),
        },
    }
}

/// A valid encoding: the protocol's own (fields by name), or now and then rmp-serde's
/// compact form (fields as arrays), which the decoder also accepts.
fn encoding_of(message: &Message, rng: &mut Rng) -> Vec<u8> {
    if rng.random_bool(0.8) {
        protocol::encode(message).expect("encode")
    } else {
        rmp_serde::to_vec(message).expect("encode compact")
    }
}

// ---------------------------------------------------------------------------------------
// Mutations
// ---------------------------------------------------------------------------------------

/// Markers with a huge length (or huge value) after them.
const HUGE: [&[u8]; 14] = [
    &[0xdd, 0xff, 0xff, 0xff, 0xff],       // array32
    &[0xdb, 0xff, 0xff, 0xff, 0xff],       // str32
    &[0xdf, 0xff, 0xff, 0xff, 0xff],       // map32
    &[0xc6, 0xff, 0xff, 0xff, 0xff],       // bin32
    &[0xc9, 0xff, 0xff, 0xff, 0xff, 0x01], // ext32
    &[0xdd, 0x7f, 0xff, 0xff, 0xff],
    &[0xdb, 0x80, 0x00, 0x00, 0x00],
    &[0xdf, 0x00, 0x01, 0x00, 0x00],
    &[0xdc, 0xff, 0xff],                                     // array16
    &[0xda, 0xff, 0xff],                                     // str16
    &[0xde, 0xff, 0xff],                                     // map16
    &[0xd9, 0xff],                                           // str8
    &[0xc4, 0xff],                                           // bin8
    &[0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], // u64::MAX
];

fn huge_marker(rng: &mut Rng) -> &'static [u8] {
    HUGE[rng.random_range(0..HUGE.len())]
}

/// The number of length (or value) bytes after a msgpack marker, `None` if it has none;
/// `Some(0)` for the fix forms, whose length is in the marker itself.
fn length_bytes(marker: u8) -> Option<usize> {
    match marker {
        0x80..=0xbf => Some(0),
        0xc4 | 0xc7 | 0xcc | 0xd9 => Some(1),
        0xc5 | 0xc8 | 0xcd | 0xda | 0xdc | 0xde => Some(2),
        0xc6 | 0xc9 | 0xce | 0xdb | 0xdd | 0xdf => Some(4),
        0xcf => Some(8),
        _ => None,
    }
}

/// Widens one length-like field to its maximum, or a fix-form marker to its 32-bit form
/// claiming 2^32-1 elements. Returns false if nothing looked like a length.
fn widen_length(data: &mut Vec<u8>, rng: &mut Rng) -> bool {
    let candidates: Vec<usize> = (0..data.len())
        .filter(|&i| length_bytes(data[i]).is_some())
        .collect();
    if candidates.is_empty() {
        return false;
    }
    let i = candidates[rng.random_range(0..candidates.len())];
    match (data[i], length_bytes(data[i])) {
        (marker @ 0x80..=0xbf, _) => {
            let (fix_max, wide) = match marker {
                0x80..=0x8f => (0x8f, 0xdf),
                0x90..=0x9f => (0x9f, 0xdd),
                _ => (0xbf, 0xdb),
            };
            if rng.random_bool(0.5) {
                data[i] = fix_max;
            } else {
                data.splice(i..=i, [wide, 0xff, 0xff, 0xff, 0xff]);
            }
        }
        (_, Some(n)) => {
            for byte in data.iter_mut().skip(i + 1).take(n) {
                *byte = 0xff;
            }
        }
        _ => unreachable!("candidates have length bytes"),
    }
    true
}

fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    let len = data.len();
    match rng.random_range(0..11) {
        0 if len > 0 => data[rng.random_range(0..len)] ^= 1 << rng.random_range(0..8),
        1 => data.insert(rng.random_range(0..=len), rng.random()),
        2 if len > 0 => {
            data.remove(rng.random_range(0..len));
        }
        3 => data.truncate(rng.random_range(0..=len)),
        4 => {
            data.truncate(rng.random_range(0..=len));
            data.extend_from_slice(&other[rng.random_range(0..=other.len())..]);
        }
        5 => {
            if !widen_length(data, rng) {
                data.extend_from_slice(huge_marker(rng));
            }
        }
        6 => {
            let at = rng.random_range(0..=len);
            data.splice(at..at, huge_marker(rng).iter().copied());
        }
        7 if len > 0 => {
            let special = [0x00, 0x7f, 0x80, 0xc0, 0xc1, 0xff];
            data[rng.random_range(0..len)] = special[rng.random_range(0..special.len())];
        }
        8 if len > 0 => {
            let at = rng.random_range(0..len);
            let run = rng.random_range(1..=8).min(len - at);
            data[at..at + run].fill(0xff);
        }
        9 if len > 0 => {
            let a = rng.random_range(0..len);
            let b = rng.random_range(a..=len.min(a + 64));
            let at = rng.random_range(0..=len);
            let copy = data[a..b].to_vec();
            data.splice(at..at, copy);
        }
        _ => {
            // A marker with a huge length where a token starts, keeping what follows.
            let at = rng.random_range(0..=len);
            data.truncate(at);
            data.extend_from_slice(huge_marker(rng));
            data.extend_from_slice(&other[rng.random_range(0..=other.len())..]);
        }
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    if s.len() < 32 {
        out.push(0xa0 | s.len() as u8);
    } else {
        out.push(0xd9);
        out.push(s.len().min(255) as u8);
    }
    out.extend_from_slice(s.as_bytes());
}

/// One msgpack-looking token: often well-formed, sometimes not.
fn push_token(out: &mut Vec<u8>, rng: &mut Rng) {
    match rng.random_range(0..13) {
        0 => out.push(0x80 | rng.random_range(0..16u8)),
        1 => out.push(0x90 | rng.random_range(0..16u8)),
        2 => push_str(out, FIELD_NAMES[rng.random_range(0..FIELD_NAMES.len())]),
        3 => push_str(out, VARIANT_NAMES[rng.random_range(0..VARIANTS)]),
        4 => push_str(out, &random_string(rng)),
        5 => {
            let seq = random_seq(rng);
            out.push(0xcf);
            out.extend_from_slice(&seq.to_be_bytes());
        }
        6 => out.push(rng.random_range(0..0x80u8)),
        7 => out.push([0xc0, 0xc2, 0xc3][rng.random_range(0..3)]),
        8 => out.extend_from_slice(huge_marker(rng)),
        9 => out.push(rng.random_range(0xe0..=0xffu8)),
        10 => {
            out.push(0xcb);
            out.extend_from_slice(&rng.random::<u64>().to_be_bytes());
        }
        11 => {
            let n = rng.random_range(0..8u8);
            out.extend_from_slice(&[0xc4, n]);
            out.extend((0..n).map(|_| rng.random::<u8>()));
        }
        _ => out.push(rng.random()),
    }
}

/// `{"<variant>": <random tokens>}` or `[<index>, <tokens>]`: gets past the enum tag.
fn structured_junk(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    if rng.random_bool(0.8) {
        out.push(0x81);
        push_str(&mut out, VARIANT_NAMES[rng.random_range(0..VARIANTS)]);
    } else {
        out.push(0x92);
        out.push(rng.random_range(0..12u8));
    }
    for _ in 0..rng.random_range(0..30) {
        push_token(&mut out, rng);
    }
    out
}

fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0..=4 => rng.random_range(0..16),
        5..=7 => rng.random_range(16..256),
        _ => rng.random_range(256..2048),
    };
    (0..len).map(|_| rng.random()).collect()
}

/// Ways to nest: (name, prefix, one level). The unknown field `x` of `Join` is skipped with
/// serde's `IgnoredAny`, which recurses into whatever it is given.
const NESTINGS: [(&str, &[u8], &[u8]); 5] = [
    ("top-level arrays", b"", b"\x91"),
    ("top-level maps", b"", b"\x81\xa1k"),
    (
        "arrays in an unknown Join field",
        b"\x81\xa4Join\x81\xa1x",
        b"\x91",
    ),
    (
        "maps in an unknown Join field",
        b"\x81\xa4Join\x81\xa1x",
        b"\x81\xa1k",
    ),
    (
        "arrays in Snapshot entries",
        b"\x81\xa8Snapshot\x81\xa7entries",
        b"\x91",
    ),
];

/// `prefix`, `depth` levels of nesting, and a nil at the bottom.
fn nested_input((_, prefix, level): (&str, &[u8], &[u8]), depth: usize) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for _ in 0..depth {
        out.extend_from_slice(level);
    }
    out.push(0xc0);
    out
}

/// Hand-picked inputs tried before the random ones.
fn corpus() -> Vec<Vec<u8>> {
    let join_extra: &[u8] = b"\x81\xa4Join\x81\xa1x"; // {"Join": {"x": ...
    let snapshot_entries: &[u8] = b"\x81\xa8Snapshot\x81\xa7entries"; // {"Snapshot": {"entries": ...
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        vec![0xc1],
        vec![0xc0],
        vec![0x80],
        vec![0x90],
        b"\x81\xa4Join\xc0".to_vec(),
        b"\x81\xa3Ack\x81\xa3seq\xcf\xff\xff\xff\xff\xff\xff\xff\xff".to_vec(),
        b"\x81\xa3Ack\x81\xa3seq\xd3\x80\x00\x00\x00\x00\x00\x00\x00".to_vec(),
        b"\x81\xa5Error\x81\xa7message\xdb\xff\xff\xff\xff".to_vec(),
        b"\x81\xa5Error\x91\xdb\x7f\xff\xff\xff".to_vec(),
        b"\x81\xa3Put\x93\x01\xa1k\xc6\xff\xff\xff\xff".to_vec(),
        b"\x81\xa8Snapshot\x91\xdd\xff\xff\xff\xff".to_vec(),
        b"\x81\xa8Snapshot\x91\x91\xdd\xff\xff\xff\xff".to_vec(),
        b"\x81\xa8Snapshot\xdf\xff\xff\xff\xff".to_vec(),
        b"\x92\x03\x91\xdd\xff\xff\xff\xff".to_vec(),
        b"\xdf\xff\xff\xff\xff\xa4Join".to_vec(),
        b"\x81\xa4Join\xde\xff\xff".to_vec(),
    ];
    for marker in HUGE {
        inputs.push(marker.to_vec());
        inputs.push([snapshot_entries, marker].concat());
        inputs.push([join_extra, marker].concat());
    }
    // Shallow nesting only: deep nesting can overflow the stack, which no catch_unwind
    // survives, so it is checked in a child process by `deeply_nested_frames_...` below.
    for kind in NESTINGS {
        inputs.push(nested_input(kind, 100));
    }
    inputs
}

// ---------------------------------------------------------------------------------------
// Check 1: decode
// ---------------------------------------------------------------------------------------

/// Decodes `input`, failing with its hex on a panic and checking the allocation bound.
fn checked_decode(input: &[u8], what: &str, stats: &mut Stats) -> Option<Message> {
    let (outcome, peak) = measure(|| panic::catch_unwind(|| protocol::decode(input)));
    let Ok(result) = outcome else {
        panic!(
            "protocol::decode panicked on {what} ({} bytes): {}",
            input.len(),
            hex::encode(input)
        );
    };
    let bound = decode_bound(input.len());
    assert!(
        peak <= bound,
        "protocol::decode allocated {peak} bytes at once for {what} of {} bytes \
         (bound {bound}): {}",
        input.len(),
        hex::encode(input)
    );
    if peak > 2 * input.len() + SLACK {
        stats.decode_over_linear += 1;
    }
    if peak > stats.decode_peak {
        stats.decode_peak = peak;
        stats.decode_peak_input = input.to_vec();
    }
    stats.decode_frames += 1;
    let message = result.ok();
    stats.decode_ok += usize::from(message.is_some());
    message
}

fn fuzz_decode(rng: &mut Rng, frames: usize, stats: &mut Stats) {
    for (i, input) in corpus().iter().enumerate() {
        checked_decode(input, &format!("corpus input {i}"), stats);
    }
    let mut round = 0usize;
    while stats.decode_frames < frames {
        round += 1;
        let what = format!("decode round {round}");
        let variant = rng.random_range(0..VARIANTS);
        let message = message_of(variant, rng);
        let valid = encoding_of(&message, rng);
        let input = match rng.random_range(0..20) {
            0..=2 => random_bytes(rng),
            3..=4 => structured_junk(rng),
            5 => {
                // A valid encoding must decode to what was encoded.
                let decoded = checked_decode(&valid, &what, stats);
                assert_eq!(decoded.as_ref(), Some(&message), "{what}: round trip");
                continue;
            }
            _ => {
                stats.variants_mutated[variant] += 1;
                let other_message = message_of(rng.random_range(0..VARIANTS), rng);
                let other = encoding_of(&other_message, rng);
                let mut input = valid;
                for _ in 0..rng.random_range(1..=4) {
                    mutate(&mut input, &other, rng);
                }
                input
            }
        };
        checked_decode(&input, &what, stats);
    }
}

// ---------------------------------------------------------------------------------------
// Check 2: MessageReader
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq)]
enum End {
    /// The peer closes after the last byte.
    Eof,
    /// The connection stays open: reads past the last byte stay pending.
    Open,
    /// The connection fails (reset) after the last byte.
    Fail,
}

/// An in-memory connection: delivers `data` up to `limit` in random-sized chunks, then
/// stays pending (more is coming) or ends as `end` says.
struct Feed {
    data: Rc<Vec<u8>>,
    pos: Rc<Cell<usize>>,
    limit: Rc<Cell<usize>>,
    end: End,
    max_chunk: usize,
    rng: Rng,
}

impl AsyncRead for Feed {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let pos = this.pos.get();
        let limit = this.limit.get().min(this.data.len());
        if pos < limit {
            let chunk = this.rng.random_range(1..=this.max_chunk);
            let n = (limit - pos).min(buf.remaining()).min(chunk);
            buf.put_slice(&this.data[pos..pos + n]);
            this.pos.set(pos + n);
            return Poll::Ready(Ok(()));
        }
        if pos < this.data.len() {
            // Polled with `now_or_never`, so no waker needs registering.
            return Poll::Pending;
        }
        match this.end {
            End::Eof => Poll::Ready(Ok(())),
            End::Open => Poll::Pending,
            End::Fail => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "injected reset",
            ))),
        }
    }
}

/// What the reader must report next, and the stream offset from which it can.
#[derive(Debug)]
enum Expect {
    /// A complete frame whose body `decode`s to this message.
    Message(Message),
    /// A complete frame whose body does not decode.
    Undecodable,
    /// A length prefix above the limit: refused from the prefix alone.
    Oversize,
    /// The stream stops inside a frame (header or body).
    Truncated,
    /// The stream stops between frames.
    End,
}

/// The model: splits `stream` into frames the way the protocol defines them.
fn expectations(stream: &[u8], max_frame: usize) -> Vec<(Expect, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        if at == stream.len() {
            out.push((Expect::End, at));
            return out;
        }
        if stream.len() - at < 4 {
            out.push((Expect::Truncated, stream.len()));
            return out;
        }
        let claim = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        if claim > max_frame {
            out.push((Expect::Oversize, at + 4));
            return out;
        }
        let end = at + 4 + claim;
        if end > stream.len() {
            out.push((Expect::Truncated, stream.len()));
            return out;
        }
        match protocol::decode(&stream[at + 4..end]) {
            Ok(message) => out.push((Expect::Message(message), end)),
            Err(_) => out.push((Expect::Undecodable, end)),
        }
        at = end;
    }
}

fn push_frame(stream: &mut Vec<u8>, body: &[u8]) {
    stream.extend_from_slice(&(body.len() as u32).to_be_bytes());
    stream.extend_from_slice(body);
}

/// A stream of frames (some valid, some not) for a reader limited to `max_frame`.
fn random_stream(rng: &mut Rng, max_frame: usize) -> Vec<u8> {
    let mut stream = Vec::new();
    for _ in 0..rng.random_range(0..12) {
        let message = message_of(rng.random_range(0..VARIANTS), rng);
        match rng.random_range(0..20) {
            0..=11 => push_frame(&mut stream, &protocol::encode(&message).expect("encode")),
            12..=14 => {
                let mut body = protocol::encode(&message).expect("encode");
                let other = protocol::encode(&message_of(rng.random_range(0..VARIANTS), rng))
                    .expect("encode");
                mutate(&mut body, &other, rng);
                push_frame(&mut stream, &body);
            }
            15..=16 => push_frame(&mut stream, &random_bytes(rng)),
            17 => push_frame(&mut stream, &[]),
            _ => {
                // An oversize prefix, then bytes of its "body" that look like frames.
                let claim: u64 = match rng.random_range(0..4) {
                    0 => max_frame as u64 + 1,
                    1 => u32::MAX as u64,
                    2 => 0x8000_0000,
                    _ => rng.random_range(max_frame as u64 + 1..=u32::MAX as u64),
                };
                stream.extend_from_slice(&(claim as u32).to_be_bytes());
                push_frame(&mut stream, &protocol::encode(&message).expect("encode"));
            }
        }
    }
    match rng.random_range(0..10) {
        0 => {
            // A truncated body; the claim may be anything up to the limit.
            let body =
                protocol::encode(&message_of(rng.random_range(0..VARIANTS), rng)).expect("encode");
            let cut = rng.random_range(0..body.len());
            let claim = if rng.random_bool(0.5) {
                body.len().min(max_frame)
            } else {
                rng.random_range(cut + 1..=max_frame.max(cut + 1))
            };
            stream.extend_from_slice(&(claim as u32).to_be_bytes());
            stream.extend_from_slice(&body[..cut.min(claim)]);
        }
        1 => {
            // A partial header.
            let header = (rng.random_range(0..=max_frame) as u32).to_be_bytes();
            stream.extend_from_slice(&header[..rng.random_range(1..4)]);
        }
        2 => {
            // A whole header, and not one byte of its body.
            let claim = rng.random_range(1..=max_frame) as u32;
            stream.extend_from_slice(&claim.to_be_bytes());
        }
        _ => {}
    }
    stream
}

type Polled = Option<kv::Result<Option<Message>>>;

fn describe(polled: &Polled) -> String {
    match polled {
        None => "pending".into(),
        Some(Ok(Some(message))) => format!("Ok(Some({}))", message.name()),
        Some(Ok(None)) => "Ok(None)".into(),
        Some(Err(e)) => format!("Err({e})"),
    }
}

struct ReaderCase<'a> {
    stream: &'a [u8],
    max_frame: usize,
    end: End,
    max_chunk: usize,
    incremental: bool,
    what: String,
}

impl ReaderCase<'_> {
    fn context(&self) -> String {
        format!(
            "{} (max_frame {}, end {:?}, chunk {}, incremental {}): stream {}",
            self.what,
            self.max_frame,
            self.end,
            self.max_chunk,
            self.incremental,
            hex::encode(self.stream)
        )
    }
}

/// Polls `reader.read()` once (the feed never needs a waker), measuring allocations.
fn poll_read(reader: &mut MessageReader<Feed>, case: &ReaderCase<'_>, peak: &mut usize) -> Polled {
    let (outcome, p) =
        measure(|| panic::catch_unwind(AssertUnwindSafe(|| reader.read().now_or_never())));
    *peak = (*peak).max(p);
    outcome.unwrap_or_else(|_| panic!("MessageReader::read panicked on {}", case.context()))
}

/// Fails the stream being checked with a message naming it.
macro_rules! ensure {
    ($case:expr, $cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}: {}", format!($($fmt)+), $case.context()));
        }
    };
}

/// Runs one stream through a reader and checks it against the model. Returns the number
/// of frames the reader got to (including one it rejected), or how it disagreed with the
/// model. Panics (with the stream) if the reader panics or allocates beyond the bound.
fn check_reader(case: &ReaderCase<'_>, rng: &mut Rng, stats: &mut Stats) -> Result<usize, String> {
    let data = Rc::new(case.stream.to_vec());
    let pos = Rc::new(Cell::new(0));
    let limit = Rc::new(Cell::new(if case.incremental { 0 } else { data.len() }));
    let feed = Feed {
        data: data.clone(),
        pos: pos.clone(),
        limit: limit.clone(),
        end: case.end,
        max_chunk: case.max_chunk,
        rng: Rng::seed_from_u64(rng.random()),
    };
    let mut peak = 0;
    let (mut reader, p) = measure(|| MessageReader::new(feed, case.max_frame));
    peak = peak.max(p);
    let bound = 2 * FRAMED_READ_INITIAL
        .max(case.stream.len())
        .max(largest_claim_of(case))
        + decode_bound(case.stream.len());
    let mut frames = 0;
    let mut previous_end = 0;
    for (expect, ready_at) in expectations(case.stream, case.max_frame) {
        let whole_frame = matches!(
            expect,
            Expect::Message(_) | Expect::Undecodable | Expect::Oversize
        );
        frames += usize::from(!matches!(expect, Expect::End));
        if case.incremental {
            if whole_frame && ready_at > previous_end {
                // One byte short of deciding: the reader must wait, not guess.
                limit.set(ready_at - 1);
                let polled = poll_read(&mut reader, case, &mut peak);
                ensure!(
                    case,
                    polled.is_none(),
                    "{expect:?} decided one byte early, got {}",
                    describe(&polled)
                );
            }
            limit.set(ready_at);
        }
        let polled = poll_read(&mut reader, case, &mut peak);
        let ok = match (&expect, &polled) {
            (Expect::Message(want), Some(Ok(Some(got)))) => got == want,
            (Expect::Undecodable, Some(Err(_))) => true,
            (Expect::Oversize, Some(Err(_))) => true,
            (Expect::Truncated | Expect::End, None) => case.end == End::Open,
            (Expect::Truncated, Some(Err(_))) => case.end != End::Open,
            (Expect::End, Some(Ok(None))) => case.end == End::Eof,
            (Expect::End, Some(Err(_))) => case.end == End::Fail,
            _ => false,
        };
        ensure!(
            case,
            ok,
            "expected {} at byte {ready_at}, got {}",
            match &expect {
                Expect::Message(m) => format!("Ok(Some({}))", m.name()),
                Expect::Truncated if case.end != End::Open =>
                    "Err (closed in the middle of a frame)".into(),
                other => format!("{other:?}"),
            },
            describe(&polled)
        );
        match expect {
            Expect::Message(_) => stats.reader_messages += 1,
            Expect::Undecodable => stats.reader_rejections += 1,
            Expect::Oversize => {
                stats.reader_rejections += 1;
                // Refused from the prefix: nothing of the claimed body was read...
                ensure!(
                    case,
                    !case.incremental || pos.get() == ready_at,
                    "read {} bytes, past the rejected prefix ending at {ready_at}",
                    pos.get()
                );
                // ...and, offered everything after it, the reader returns none of it.
                limit.set(data.len());
                let after = poll_read(&mut reader, case, &mut peak);
                ensure!(
                    case,
                    !matches!(after, Some(Ok(Some(_)))),
                    "after refusing an oversize frame the reader returned {}",
                    describe(&after)
                );
            }
            Expect::Truncated | Expect::End => {
                if polled.is_some() {
                    // Finished: it stays finished.
                    let after = poll_read(&mut reader, case, &mut peak);
                    ensure!(
                        case,
                        !matches!(after, Some(Ok(Some(_)))),
                        "after the end the reader returned {}",
                        describe(&after)
                    );
                }
            }
        }
        previous_end = ready_at;
        assert!(
            peak <= bound,
            "MessageReader allocated {peak} bytes at once (bound {bound}): {}",
            case.context()
        );
    }
    if peak > stats.reader_peak {
        stats.reader_peak = peak;
        stats.reader_peak_bound = bound;
    }
    Ok(frames)
}

/// The largest length prefix within the limit on the frame path (what may be reserved).
fn largest_claim_of(case: &ReaderCase<'_>) -> usize {
    let (stream, max_frame) = (case.stream, case.max_frame);
    let mut largest = 0;
    let mut at = 0;
    while stream.len() - at >= 4 {
        let claim = u32::from_be_bytes(stream[at..at + 4].try_into().expect("4 bytes")) as usize;
        if claim > max_frame {
            break;
        }
        largest = largest.max(claim);
        at += 4 + claim;
        if at > stream.len() {
            break;
        }
    }
    largest
}

fn fuzz_reader(rng: &mut Rng, frames: usize, stats: &mut Stats) {
    let mut round = 0usize;
    while stats.reader_frames < frames {
        round += 1;
        let max_frame = match rng.random_range(0..10) {
            0..=3 => rng.random_range(8..=4096),
            4..=7 => HANDSHAKE_MAX_FRAME,
            _ => MAX_FRAME,
        };
        let stream = random_stream(rng, max_frame);
        let case = ReaderCase {
            stream: &stream,
            max_frame,
            end: [End::Eof, End::Eof, End::Open, End::Fail][rng.random_range(0..4)],
            max_chunk: [1, 3, 7, 64, 8192, usize::MAX][rng.random_range(0..6)],
            incremental: rng.random_bool(0.5),
            what: format!("reader round {round}"),
        };
        match check_reader(&case, rng, stats) {
            Ok(frames) => stats.reader_frames += frames,
            Err(mismatch) => {
                // Counted, and reported at the end, so the run still finishes and says
                // how often; the frames of a stream that went wrong count as fed.
                stats.reader_frames += expectations(&stream, max_frame).len();
                stats.reader_mismatches.push(mismatch);
            }
        }
        stats.reader_streams += 1;
    }
}

// ---------------------------------------------------------------------------------------
// Check 3: Receiver
// ---------------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
enum Phase {
    Start,
    InSnapshot { seq: u64, last_key: Option<String> },
    Streaming,
}

/// What the receiver has accepted so far, tracked from its steps alone.
#[derive(Debug)]
struct Model {
    phase: Phase,
    history: Option<String>,
    last: u64,
}

const HISTORIES: [&str; 3] = ["h-a", "h-b", ""];

fn random_history(rng: &mut Rng) -> String {
    if rng.random_bool(0.9) {
        HISTORIES[rng.random_range(0..HISTORIES.len())].to_string()
    } else {
        random_string(rng)
    }
}

fn start_seq(rng: &mut Rng) -> u64 {
    match rng.random_range(0..10) {
        0 => SEQS[rng.random_range(0..SEQS.len())],
        1 => MAX_SEQ - rng.random_range(0..4),
        _ => rng.random_range(0..100),
    }
}

/// A seq near `last`, or at a boundary.
fn nearby_seq(last: u64, rng: &mut Rng) -> u64 {
    match rng.random_range(0..8) {
        0 => last,
        1 => last.wrapping_sub(1),
        2 => last.wrapping_add(2),
        3 => last.wrapping_add(1),
        4 => SEQS[rng.random_range(0..SEQS.len())],
        5 => rng.random(),
        _ => last.wrapping_add(rng.random_range(0..5)).wrapping_sub(2),
    }
}

fn sorted_keys(after: Option<&str>, rng: &mut Rng) -> Vec<(String, String)> {
    let mut keys: Vec<String> = (0..rng.random_range(0..6))
        .map(|_| random_string(rng))
        .collect();
    keys.sort();
    keys.dedup();
    keys.retain(|k| after.is_none_or(|after| k.as_str() > after));
    keys.into_iter().map(|k| (k, random_string(rng))).collect()
}

/// What a correct upstream would send next, given what the receiver accepted.
fn correct_next(model: &Model, rng: &mut Rng) -> Message {
    match &model.phase {
        Phase::Start => match &model.history {
            Some(history) if rng.random_bool(0.5) => Message::Continue {
                history_id: history.clone(),
                from_seq: model.last,
            },
            _ => Message::SnapshotBegin {
                history_id: random_history(rng),
                seq: if rng.random_bool(0.8) {
                    start_seq(rng)
                } else {
                    random_seq(rng)
                },
                keys: rng.random_range(0..10),
                reason: random_string(rng),
            },
        },
        Phase::InSnapshot { seq, last_key } => {
            if rng.random_bool(0.6) {
                Message::Snapshot {
                    entries: sorted_keys(last_key.as_deref(), rng),
                }
            } else {
                Message::SnapshotEnd { seq: *seq }
            }
        }
        Phase::Streaming => {
            let seq = model.last.wrapping_add(1);
            match rng.random_range(0..10) {
                // A correct upstream pings with the last seq it sent.
                0 => Message::Ping {
                    seq: model.last.saturating_sub(rng.random_range(0..3)),
                },
                1..=3 => Message::Delete {
                    seq,
                    key: random_string(rng),
                },
                _ => Message::Put {
                    seq,
                    key: random_string(rng),
                    value: random_string(rng),
                },
            }
        }
    }
}

/// A plausible mistake: any message, with seqs and histories near the right ones.
fn perturbed_next(model: &Model, rng: &mut Rng) -> Message {
    let seq = nearby_seq(model.last, rng);
    match rng.random_range(0..10) {
        0 => Message::Continue {
            history_id: if rng.random_bool(0.5) {
                model.history.clone().unwrap_or_default()
            } else {
                random_history(rng)
            },
            from_seq: seq,
        },
        1 => Message::SnapshotBegin {
            history_id: random_history(rng),
            seq,
            keys: 0,
            reason: String::new(),
        },
        2 => Message::Snapshot {
            // Possibly unsorted or repeated keys.
            entries: (0..rng.random_range(0..4))
                .map(|_| (HISTORIES[rng.random_range(0..3)].to_string(), String::new()))
                .collect(),
        },
        3 => Message::SnapshotEnd { seq },
        4..=5 => Message::Put {
            seq,
            key: random_string(rng),
            value: random_string(rng),
        },
        6 => Message::Delete {
            seq,
            key: random_string(rng),
        },
        7 => Message::Error {
            message: random_string(rng),
        },
        _ => message_of(rng.random_range(0..VARIANTS), rng),
    }
}

/// Whether the receiver must accept `message` in the model's state (the next entry, a
/// heartbeat not ahead of what arrived...): it may not refuse what a correct upstream sends.
fn must_accept(model: &Model, message: &Message) -> bool {
    match (&model.phase, message) {
        (_, Message::Ping { seq }) => *seq <= model.last,
        (Phase::Streaming, Message::Put { seq, .. } | Message::Delete { seq, .. }) => {
            model.last.checked_add(1) == Some(*seq) && *seq <= MAX_SEQ
        }
        (Phase::InSnapshot { seq: begun, .. }, Message::SnapshotEnd { seq }) => begun == seq,
        (
            Phase::Start,
            Message::Continue {
                history_id,
                from_seq,
            },
        ) => model.history.as_deref() == Some(history_id.as_str()) && *from_seq == model.last,
        (Phase::Start, Message::SnapshotBegin { seq, .. }) => *seq <= MAX_SEQ,
        _ => false,
    }
}

/// Checks one step against the model and advances it.
fn check_step(model: &mut Model, message: &Message, step: &Step) -> Result<(), String> {
    match step {
        Step::Apply(entry) => {
            if model.phase != Phase::Streaming {
                return Err(format!("Apply while {:?}", model.phase));
            }
            if model.last.checked_add(1) != Some(entry.seq) || entry.seq > MAX_SEQ {
                return Err(format!(
                    "Apply of seq {} after seq {}: not exactly previous + 1",
                    entry.seq, model.last
                ));
            }
            let carried = match message {
                Message::Put { seq, key, value } => LogEntry {
                    seq: *seq,
                    op: Op::Put {
                        key: key.clone(),
                        value: value.clone(),
                    },
                },
                Message::Delete { seq, key } => LogEntry {
                    seq: *seq,
                    op: Op::Delete { key: key.clone() },
                },
                _ => return Err("Apply from a message that carries no entry".into()),
            };
            if *entry != carried {
                return Err(format!("Apply of {entry:?}, not the entry sent"));
            }
            model.last = entry.seq;
        }
        Step::BeginSnapshot {
            history_id, seq, ..
        } => {
            if model.phase != Phase::Start || *seq > MAX_SEQ {
                return Err(format!("BeginSnapshot at {seq} while {:?}", model.phase));
            }
            model.phase = Phase::InSnapshot {
                seq: *seq,
                last_key: None,
            };
            model.history = Some(history_id.clone());
        }
        Step::SnapshotChunk(entries) => {
            let Phase::InSnapshot { last_key, .. } = &mut model.phase else {
                return Err(format!("SnapshotChunk while {:?}", model.phase));
            };
            for (key, _) in entries {
                if last_key.as_ref().is_some_and(|last| key <= last) {
                    return Err(format!("snapshot key {key:?} after {last_key:?}"));
                }
                *last_key = Some(key.clone());
            }
        }
        Step::FinishSnapshot { seq } => {
            let Phase::InSnapshot { seq: begun, .. } = model.phase else {
                return Err(format!("FinishSnapshot while {:?}", model.phase));
            };
            if *seq != begun {
                return Err(format!("FinishSnapshot at {seq}, begun at {begun}"));
            }
            model.last = *seq;
            model.phase = Phase::Streaming;
        }
        Step::Resume { from_seq } => {
            let Message::Continue { history_id, .. } = message else {
                return Err("Resume from something other than Continue".into());
            };
            if model.phase != Phase::Start
                || *from_seq != model.last
                || model.history.as_deref() != Some(history_id.as_str())
            {
                return Err(format!(
                    "Resume from {history_id}@{from_seq} while {:?} at {:?}@{}",
                    model.phase, model.history, model.last
                ));
            }
            model.phase = Phase::Streaming;
        }
        Step::Heartbeat { seq } => {
            if *message != (Message::Ping { seq: *seq }) {
                return Err(format!("Heartbeat {seq} from {}", message.name()));
            }
        }
    }
    Ok(())
}

fn fuzz_receiver(rng: &mut Rng, frames: usize, stats: &mut Stats) {
    let mut round = 0usize;
    while stats.receiver_frames < frames {
        round += 1;
        let history = rng.random_bool(0.8).then(|| random_history(rng));
        let applied = start_seq(rng);
        let initial = history.clone();
        let mut receiver = Receiver::new(history.clone(), applied);
        let mut model = Model {
            phase: Phase::Start,
            history,
            last: applied,
        };
        let mut sent: Vec<Message> = Vec::new();
        let correctness = [0.6, 0.85, 0.97][rng.random_range(0..3)];
        for _ in 0..rng.random_range(1..60) {
            let original = if rng.random_bool(correctness) {
                correct_next(&model, rng)
            } else {
                perturbed_next(&model, rng)
            };
            // What the receiver gets is what came off the wire.
            let frame = encoding_of(&original, rng);
            let message = protocol::decode(&frame).expect("decode a valid frame");
            assert_eq!(message, original, "receiver round {round}: round trip");
            sent.push(message.clone());
            stats.receiver_frames += 1;
            let must = must_accept(&model, &message);
            let outcome =
                panic::catch_unwind(AssertUnwindSafe(|| receiver.on_message(message.clone())));
            let context = |model: &Model| {
                format!(
                    "receiver round {round}, Receiver::new({initial:?}, {applied}), model \
                     {model:?}, messages {sent:#?}"
                )
            };
            let Ok(result) = outcome else {
                panic!("Receiver::on_message panicked: {}", context(&model));
            };
            match result {
                Ok(step) => {
                    if let Err(violation) = check_step(&mut model, &message, &step) {
                        panic!("{violation}: {}", context(&model));
                    }
                    stats.receiver_applies += usize::from(matches!(step, Step::Apply(_)));
                }
                Err(e) => {
                    assert!(
                        !must,
                        "refused a correct {}: {e}: {}",
                        message.name(),
                        context(&model)
                    );
                    stats.receiver_errors += 1;
                }
            }
            assert_eq!(
                receiver.last_seq(),
                model.last,
                "last_seq disagrees with the steps: {}",
                context(&model)
            );
        }
        stats.receiver_sequences += 1;
    }
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

/// Set in the child process: the index of the first nesting case to try.
const CHILD_ENV: &str = "KV_FUZZ_NESTING_FROM";
/// tokio's default worker thread stack, which is where a node decodes frames.
const WORKER_STACK: usize = 2 * 1024 * 1024;
const DEPTHS: [usize; 7] = [64, 256, 512, 768, 1_023, 1_025, 20_000];

/// (index into [`NESTINGS`], depth), each small enough to pass `HANDSHAKE_MAX_FRAME`.
fn nesting_cases() -> Vec<(usize, usize)> {
    let mut cases = Vec::new();
    for (kind, nesting) in NESTINGS.iter().enumerate() {
        for depth in DEPTHS {
            if nested_input(*nesting, depth).len() <= HANDSHAKE_MAX_FRAME {
                cases.push((kind, depth));
            }
        }
    }
    cases
}

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
