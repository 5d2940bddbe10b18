//! The node's memory budget for client requests, in bytes, for the whole node rather than
//! per client: bytes read from client sockets and not yet done with (read buffers, requests
//! being parsed, parsed requests, writes queued for the writer) hold a [`Charge`] on it.
//! A client connection reserves budget before it reads; when the budget is spent, reading
//! stops — even in the middle of a request — and TCP holds the rest in the client's socket
//! (backpressure) until writes commit and their charges are released. Nothing accepted is
//! ever dropped or failed for lack of memory.
//!
//! One wrinkle makes this deadlock-free: if every byte of the budget were held by requests
//! still being read, each waiting for more budget to finish, none would ever finish. So a
//! connection in the middle of a request may instead take the node's single *overdraft*:
//! it then reads on without budget until that request is complete, and the overdraft
//! travels with the request until it is done (committed, or answered). Memory is thus
//! bounded by the budget plus one largest request.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The default budget: `--max-client-memory`'s default, in MiB.
pub const DEFAULT_CLIENT_MEMORY_MIB: usize = 128;

/// A node-wide budget of bytes, shared by every client connection.
#[derive(Clone)]
pub struct MemoryBudget {
    bytes: Arc<Semaphore>,
    overdraft: Arc<Semaphore>,
    limit: usize,
}

/// Bytes held against the budget (and perhaps the overdraft), released when dropped.
#[derive(Debug, Default)]
pub struct Charge {
    bytes: Option<OwnedSemaphorePermit>,
    overdraft: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `limit` bytes (at least 1).
    pub fn new(limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        MemoryBudget {
            bytes: Arc::new(Semaphore::new(limit)),
            overdraft: Arc::new(Semaphore::new(1)),
            limit,
        }
    }

    /// Bytes not held by anyone right now.
    #[cfg(test)]
    fn available(&self) -> usize {
        self.bytes.available_permits()
    }

    /// Reserves `n` bytes if they are free right now.
    pub fn try_reserve(&self, n: usize) -> Option<Charge> {
        Arc::clone(&self.bytes)
            .try_acquire_many_owned(self.permits(n))
            .ok()
            .map(Charge::of_bytes)
    }

    /// Reserves `n` bytes, waiting while the budget is spent. A caller in the middle of a
    /// request (`mid_request`) may get the overdraft instead, whichever comes first.
    pub async fn reserve(&self, n: usize, mid_request: bool) -> Charge {
        let n = self.permits(n);
        if let Ok(bytes) = Arc::clone(&self.bytes).try_acquire_many_owned(n) {
            return Charge::of_bytes(bytes);
        }
        let bytes = Arc::clone(&self.bytes).acquire_many_owned(n);
        if !mid_request {
            // The semaphore is never closed, so acquiring only ends with permits.
            return bytes.await.map(Charge::of_bytes).unwrap_or_default();
        }
        let overdraft = Arc::clone(&self.overdraft).acquire_owned();
        tokio::select! {
            bytes = bytes => bytes.map(Charge::of_bytes).unwrap_or_default(),
            overdraft = overdraft => Charge {
                bytes: None,
                overdraft: overdraft.ok(),
            },
        }
    }
}

impl MemoryBudget {
    /// `n` bytes as semaphore permits: never more than the whole budget (a request for
    /// more could never be granted).
    fn permits(&self, n: usize) -> u32 {
        u32::try_from(n.min(self.limit)).unwrap_or(u32::MAX)
    }
}

impl Charge {
    fn of_bytes(permit: OwnedSemaphorePermit) -> Charge {
        Charge {
            bytes: Some(permit),
            overdraft: None,
        }
    }

    /// Bytes held against the budget.
    pub fn bytes(&self) -> usize {
        self.bytes
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Whether this holds the node's overdraft (reads need no budget while it does).
    pub fn has_overdraft(&self) -> bool {
        self.overdraft.is_some()
    }

    /// Adds `other`'s bytes (and overdraft) to this charge.
    pub fn merge(&mut self, other: Charge) {
        if let Some(bytes) = other.bytes {
            match &mut self.bytes {
                Some(mine) => mine.merge(bytes),
                None => self.bytes = Some(bytes),
            }
        }
        if other.overdraft.is_some() {
            self.overdraft = other.overdraft;
        }
    }

    /// Gives the overdraft back, if this holds it.
    pub fn release_overdraft(&mut self) {
        self.overdraft = None;
    }

    /// Keeps `n` bytes of this charge (or all, if it holds fewer) and releases the rest.
    pub fn keep(&mut self, n: usize) {
        let extra = self.bytes().saturating_sub(n);
        if extra > 0 {
            if let Some(bytes) = &mut self.bytes {
                drop(bytes.split(extra));
            }
        }
    }

    /// Moves up to `n` bytes, and the overdraft if held, into a new charge: what a
    /// completed request takes with it from its connection's charge.
    pub fn take(&mut self, n: usize) -> Charge {
        let n = n.min(self.bytes());
        let bytes = match &mut self.bytes {
            Some(bytes) if n > 0 => bytes.split(n),
            _ => None,
        };
        Charge {
            bytes,
            overdraft: self.overdraft.take(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn charges_hold_bytes_until_dropped() {
        let budget = MemoryBudget::new(100);
        let mut held = budget.reserve(60, false).await;
        held.merge(budget.reserve(30, false).await);
        assert_eq!((held.bytes(), budget.available()), (90, 10));
        let request = held.take(50);
        assert_eq!((held.bytes(), request.bytes()), (40, 50));
        held.keep(15);
        assert_eq!(budget.available(), 35);
        drop(request);
        assert_eq!(budget.available(), 85);
    }

    #[tokio::test]
    async fn a_spent_budget_makes_new_requests_wait() {
        let budget = MemoryBudget::new(100);
        let held = budget.reserve(100, false).await;
        let waiting = tokio::time::timeout(Duration::from_millis(50), budget.reserve(10, false));
        assert!(waiting.await.is_err(), "no budget: the reader waits");
        drop(held);
        let charge = budget.reserve(10, false).await;
        assert_eq!(charge.bytes(), 10);
    }

    #[tokio::test]
    async fn one_request_in_progress_may_overdraw() {
        let budget = MemoryBudget::new(100);
        let _held = budget.reserve(100, false).await;
        let mut first = budget.reserve(10, true).await;
        assert!(first.has_overdraft(), "mid-request: the overdraft");
        let second = tokio::time::timeout(Duration::from_millis(50), budget.reserve(10, true));
        assert!(second.await.is_err(), "only one overdraft at a time");
        let request = first.take(0);
        assert!(request.has_overdraft() && !first.has_overdraft());
        drop(request);
        assert!(budget.reserve(10, true).await.has_overdraft());
    }
}
