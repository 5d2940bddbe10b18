//! Deeply nested inputs. Deep nesting can overflow the stack, which aborts the process,
//! so `deeply_nested_frames_do_not_overflow_the_stack` (in `main.rs`) decodes these cases
//! in child processes; the decode check's corpus takes only shallow ones.

use kv::protocol::HANDSHAKE_MAX_FRAME;

/// Ways to nest: (name, prefix, one level). The unknown field `x` of `Join` is skipped with
/// serde's `IgnoredAny`, which recurses into whatever it is given.
pub const NESTINGS: [(&str, &[u8], &[u8]); 5] = [
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
pub fn nested_input((_, prefix, level): (&str, &[u8], &[u8]), depth: usize) -> Vec<u8> {
    let mut out = prefix.to_vec();
    for _ in 0..depth {
        out.extend_from_slice(level);
    }
    out.push(0xc0);
    out
}

/// Set in the child process: the index of the first nesting case to try.
pub const CHILD_ENV: &str = "KV_FUZZ_NESTING_FROM";
/// tokio's default worker thread stack, which is where a node decodes frames.
pub const WORKER_STACK: usize = 2 * 1024 * 1024;
const DEPTHS: [usize; 7] = [64, 256, 512, 768, 1_023, 1_025, 20_000];

/// (index into [`NESTINGS`], depth), each small enough to pass `HANDSHAKE_MAX_FRAME`.
pub fn nesting_cases() -> Vec<(usize, usize)> {
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
