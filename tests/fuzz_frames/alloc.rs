//! Allocation accounting: `PeakAlloc`, the crate's `#[global_allocator]` (it may live in
//! any module of the test crate), records the largest single allocation request made on
//! the test's own thread while [`measure`] runs a closure; [`decode_bound`] and the
//! constants beside it are the bounds the decode and reader checks hold that record to.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

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
pub fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
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
pub const SLACK: usize = 4 * 1024;
/// tokio-util's `FramedRead` starts with an 8 KiB buffer.
pub const FRAMED_READ_INITIAL: usize = 8 * 1024;

/// The largest single allocation `decode` may make for an input of `len` bytes.
///
/// Strings, and keys and values (bytes), are borrowed from the input and copied at their
/// real length (a claimed length beyond the input is an EOF error before any allocation).
/// The one `Vec` of elements in a [`Message`], `Snapshot::entries: Vec<Record>`, is where a
/// claimed length can matter: serde preallocates `min(claimed, 1 MiB / size)` elements, so
/// a 16-byte frame claiming 2^32-1 entries allocates ~1 MiB — bounded, never 4 GiB × size.
/// Beyond that preallocation a `Vec` grows only with real elements; each 64-byte record
/// (two `Vec<u8>` and an expiry) takes at least 4 input bytes (`93 a0 a0 c0`), and
/// doubling at most doubles that: 32 × len.
pub fn decode_bound(len: usize) -> usize {
    SERDE_PREALLOC_CAP.max(32 * len) + SLACK
}
