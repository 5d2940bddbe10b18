//! The link fence: a write by a replica's link commits only while that link is the current
//! one. A link's work reaches the store on the blocking pool; when the link is replaced
//! (`JOIN` elsewhere) or reconnects, that work may still be running, and without a fence it
//! would commit on top of what the new connection installs (an old history's entry applied
//! onto a new snapshot, or an old snapshot replacing newer contents).
//!
//! Each link, and each connection it makes, takes a new generation; the store checks the
//! generation inside the write's transaction, right before committing, and holds the fence
//! while committing, so once a newer generation exists, no write of an older one commits.

use crate::error::{Error, Result};
use crate::locks::lock;
use crate::store::CommitFence;
use std::sync::{Arc, Mutex};

/// The current link generation; clones share it.
#[derive(Clone, Default)]
pub struct LinkFence {
    current: Arc<Mutex<u64>>,
}

/// The right of one link generation to commit, checked at each commit.
pub struct FenceTicket {
    current: Arc<Mutex<u64>>,
    generation: u64,
}

impl LinkFence {
    /// Supersedes every generation so far and returns the new one. Returns once no write of
    /// an older generation is committing, and none will. It may wait for a commit (an
    /// fsync): call it off the async runtime.
    pub fn advance(&self) -> u64 {
        let mut current = lock(&self.current);
        *current += 1;
        *current
    }

    /// For a link of generation `generation` starting a new connection: a new generation
    /// (superseding the link's previous connection), or `None` when another link has
    /// superseded this one. Like [`advance`](Self::advance), it may wait for a commit.
    pub fn renew(&self, generation: u64) -> Option<u64> {
        let mut current = lock(&self.current);
        (*current == generation).then(|| {
            *current += 1;
            *current
        })
    }

    /// The ticket a write of `generation` commits with.
    pub fn ticket(&self, generation: u64) -> FenceTicket {
        FenceTicket {
            current: Arc::clone(&self.current),
            generation,
        }
    }
}

impl CommitFence for FenceTicket {
    fn commit_if_current(&self, commit: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        // Held through the commit: `advance` waits for a commit already under way.
        let current = lock(&self.current);
        if *current != self.generation {
            return Err(Error::Superseded);
        }
        commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn only_the_current_generation_commits() {
        let fence = LinkFence::default();
        let first = fence.advance();
        let committed = Cell::new(0);
        let mut commit = || {
            committed.set(committed.get() + 1);
            Ok(())
        };
        let ticket = fence.ticket(first);
        ticket.commit_if_current(&mut commit).expect("current");
        let second = fence.advance();
        assert!(matches!(
            ticket.commit_if_current(&mut commit),
            Err(Error::Superseded)
        ));
        assert_eq!(committed.get(), 1, "the superseded commit did not run");
        assert_eq!(fence.renew(first), None, "a superseded link cannot renew");
        let third = fence.renew(second).expect("the current link renews");
        assert!(fence.ticket(second).commit_if_current(&mut commit).is_err());
        fence
            .ticket(third)
            .commit_if_current(&mut commit)
            .expect("current");
        assert_eq!(committed.get(), 2);
    }
}
