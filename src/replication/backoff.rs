//! Reconnect pacing: capped exponential backoff with jitter.

use std::time::Duration;

/// Capped exponential backoff with jitter, for reconnecting.
#[derive(Debug)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    /// Delays start at `base` and double up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The next delay: the capped exponential value scaled by a random factor in
    /// [0.5, 1.0), so replicas that lost the same primary do not return in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.base.saturating_mul(1 << self.attempt.min(16));
        self.attempt = self.attempt.saturating_add(1);
        let capped = exp.min(self.cap);
        capped.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// Start again from `base` (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}
