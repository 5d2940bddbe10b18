//! Poison-tolerant locking. Every lock in kv guards state that a panic cannot leave
//! half-updated (plain field updates, or a SQLite connection whose open transaction
//! rolls back when dropped), so a lock poisoned by a panicking thread is still safe to
//! use, and taking it must not turn one panic into many.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, ignoring poisoning.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
