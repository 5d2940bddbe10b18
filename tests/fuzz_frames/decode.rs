//! Check 1: [`protocol::decode`] on a hand-picked corpus, then on random bytes,
//! structured junk, valid encodings (which must round-trip) and mutated ones; every call
//! under `catch_unwind` and the allocation bound of [`decode_bound`].

use crate::alloc::{decode_bound, measure, SLACK};
use crate::messages::{encoding_of, message_of, VARIANTS};
use crate::mutate::{mutate, random_bytes, structured_junk, HUGE};
use crate::nesting::{nested_input, NESTINGS};
use crate::{Rng, Stats};
use kv::protocol::{self, Message};
use rand::RngExt;
use std::panic;

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
    // survives, so it is checked in a child process by `deeply_nested_frames_...` in main.rs.
    for kind in NESTINGS {
        inputs.push(nested_input(kind, 100));
    }
    inputs
}

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

pub fn fuzz_decode(rng: &mut Rng, frames: usize, stats: &mut Stats) {
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
