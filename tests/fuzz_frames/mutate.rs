//! Mutations of valid encodings (bit flips, insertions, deletions, truncations, splices,
//! widened length fields, huge array/str/map/bin/ext markers) and inputs made from
//! scratch: msgpack-ish structured junk and random bytes.

use crate::messages::{random_seq, random_string, FIELD_NAMES, VARIANTS, VARIANT_NAMES};
use crate::Rng;
use rand::RngExt;

/// Markers with a huge length (or huge value) after them.
pub const HUGE: [&[u8]; 14] = [
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

pub fn mutate(data: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
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
pub fn structured_junk(rng: &mut Rng) -> Vec<u8> {
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

pub fn random_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.random_range(0..10) {
        0..=4 => rng.random_range(0..16),
        5..=7 => rng.random_range(16..256),
        _ => rng.random_range(256..2048),
    };
    (0..len).map(|_| rng.random()).collect()
}
