//! Round counts for the fault and crash tests, and the summary line each prints so the
//! soak script (`tests/soak.sh`) can add them up. CI runs the short versions; the soak
//! sets `KV_SOAK_ROUNDS` to run every loop that many rounds.

use std::fmt;

/// `KV_SOAK_ROUNDS` if set (the soak), else `ci_rounds`.
pub fn rounds(ci_rounds: usize) -> usize {
    std::env::var("KV_SOAK_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(ci_rounds)
}

/// What one fault or crash test did; printed as one `SOAK` line on stderr.
#[derive(Debug, Default)]
pub struct Summary {
    /// Rounds run.
    pub rounds: usize,
    /// Processes SIGKILLed.
    pub kills: usize,
    /// Faults injected (cuts, blackholes, delays, disk faults).
    pub faults: usize,
    /// Writes whose `OK` was printed.
    pub acknowledged: usize,
    /// Acknowledged writes missing afterwards (must be 0).
    pub lost: usize,
    /// Node pairs at the same seq with different digests (must be 0).
    pub divergent: usize,
}

impl Summary {
    /// Prints the summary line for `test`.
    pub fn report(&self, test: &str) {
        eprintln!("SOAK {test}: {self}");
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rounds={} kills={} faults={} acknowledged={} lost={} divergent={}",
            self.rounds, self.kills, self.faults, self.acknowledged, self.lost, self.divergent
        )
    }
}
