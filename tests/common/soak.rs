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

/// A random generator for `test`, seeded from `KV_FAULT_SEED` if set, else at random;
/// the seed is printed so a failing run can be replayed. Returns the seed too, for
/// failure messages.
pub fn seeded_rng(test: &str) -> (u64, rand::rngs::StdRng) {
    use rand::SeedableRng;
    let seed = std::env::var("KV_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("{test} seed {seed} (set KV_FAULT_SEED to replay)");
    (seed, rand::rngs::StdRng::seed_from_u64(seed))
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
