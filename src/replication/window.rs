//! Flow control of an upstream's log stream, as plain code: at most about
//! [`WINDOW_BYTES`] of entries sent to one replica and not yet acknowledged. Socket buffers
//! hold megabytes; without a window an upstream would push a whole backlog into them, a
//! heartbeat telling the replica the head would queue behind it (so the replica could not
//! know how far behind it is), and a slow replica would pile data into buffers. The
//! sender refills the window as acks arrive, and always lets one entry through, however
//! large, so a lone large entry never stalls.

use std::collections::VecDeque;

/// Bytes of unacknowledged entries an upstream keeps in flight per replica.
pub const WINDOW_BYTES: usize = 4 * 1024 * 1024;

/// What an entry costs in the window besides its key and value (its framing).
pub const ENTRY_OVERHEAD: usize = 32;

/// The entries in flight to one replica: sent, not yet acknowledged.
#[derive(Debug)]
pub struct InFlight {
    entries: VecDeque<(u64, usize)>,
    bytes: usize,
    limit: usize,
}

impl InFlight {
    /// An empty window of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        InFlight {
            entries: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Records that the entry `seq` of `bytes` (key and value) was sent.
    pub fn sent(&mut self, seq: u64, bytes: usize) {
        let cost = bytes.saturating_add(ENTRY_OVERHEAD);
        self.entries.push_back((seq, cost));
        self.bytes = self.bytes.saturating_add(cost);
    }

    /// Records that everything up to `seq` was acknowledged.
    pub fn acked(&mut self, seq: u64) {
        while let Some(&(sent, cost)) = self.entries.front() {
            if sent > seq {
                break;
            }
            self.entries.pop_front();
            self.bytes -= cost;
        }
    }

    /// Bytes that may still be sent (0 when full). A sender with room sends at least one
    /// entry, whatever its size.
    pub fn room(&self) -> usize {
        self.limit.saturating_sub(self.bytes)
    }

    /// Bytes in flight.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_fills_with_sends_and_empties_with_acks() {
        let mut window = InFlight::new(1000);
        assert_eq!(window.room(), 1000);
        window.sent(1, 400 - ENTRY_OVERHEAD);
        window.sent(2, 400 - ENTRY_OVERHEAD);
        assert_eq!(window.room(), 200);
        window.sent(3, 5000); // one large entry may overfill it
        assert_eq!(window.room(), 0);
        window.acked(1);
        assert_eq!(window.room(), 0, "entry 3 is still in flight");
        window.acked(3);
        assert_eq!((window.room(), window.bytes()), (1000, 0));
        window.acked(99);
        assert_eq!(
            window.bytes(),
            0,
            "acks beyond what is in flight change nothing"
        );
    }
}
