//! Reconnect delays: capped exponential backoff with full jitter, from a seeded
//! generator (the seed from aws-lc-rs's system random source in production), so that
//! nodes that lost Redis together do not all come back in the same millisecond.

use std::time::Duration;

/// The delays between connection attempts.
#[derive(Debug)]
pub(crate) struct Backoff {
    first: Duration,
    cap: Duration,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    pub(crate) fn new(first: Duration, cap: Duration, seed: u64) -> Self {
        Self {
            first,
            cap,
            attempt: 0,
            rng: SplitMix64(seed),
        }
    }

    /// After a successful connection: the next failure starts from the first delay.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt: uniform in [ceiling/2, ceiling], where the
    /// ceiling doubles per failed attempt from `first` up to `cap`.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let ceiling = self
            .first
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis() as u64;
        let half = ms / 2;
        Duration::from_millis(half + self.rng.next() % (ms - half + 1))
    }
}

/// A tiny, good-enough generator for jitter (Vigna's SplitMix64).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// A seed from the system random source.
pub(crate) fn random_seed() -> u64 {
    let mut bytes = [0u8; 8];
    // Invariant: aws-lc-rs's system random source does not fail on supported systems
    // (the server draws its id seed the same way at start).
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    u64::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_with_jitter_and_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(100), ms(2000), 42);
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000];
        for ceiling in ceilings {
            let d = b.next_delay().as_millis() as u64;
            assert!(
                (ceiling / 2..=ceiling).contains(&d),
                "{d} ms outside [{}, {ceiling}]",
                ceiling / 2
            );
        }
        b.reset();
        assert!(b.next_delay() <= ms(100));
    }
}
