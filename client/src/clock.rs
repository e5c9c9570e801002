//! Time and randomness come in from outside, so tests can drive the reconnect policy
//! without sleeping for real delays (the core's rule, applied to the client).
//!
//! The [`Clock`] serves the client's *policy* timers: the backoff before each reconnect
//! attempt, the inactivity window and the token provider's cap. Bounds on socket I/O
//! (the 1 s flush of [`close`](crate::SignallingClient::close)) use tokio's clock.

use std::future::Future;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A sleep handed out by a [`Clock`].
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What a sleep is for, so a test clock can tell the timers apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Timer {
    /// The wait before reconnect attempt `attempt` (1-based; the counter resets on
    /// every `welcome`).
    Backoff {
        /// Which attempt this wait precedes.
        attempt: u32,
    },
    /// The inactivity window: restarted by every frame received (pings included), it
    /// closes the socket with 4000 when it runs out. It also bounds a connect attempt.
    Inactivity,
    /// The cap on one `token_provider()` call.
    TokenProvider,
    /// The wait until a connected client refreshes its token in place (its expiry
    /// minus [`refresh_margin`](crate::SignallingClientOptions::refresh_margin)).
    Refresh,
}

/// Where the client's policy timers come from.
pub trait Clock: Send + Sync + 'static {
    /// A future that completes after `duration` has passed on this clock.
    fn sleep(&self, duration: Duration, timer: Timer) -> Sleep;
}

/// The default clock: tokio's timers.
#[derive(Clone, Copy, Debug, Default)]
pub struct TokioClock;

impl Clock for TokioClock {
    fn sleep(&self, duration: Duration, _timer: Timer) -> Sleep {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A source of jitter samples in `[-1, 1]`, scaled by
/// [`ReconnectOptions::jitter_ratio`](crate::ReconnectOptions::jitter_ratio).
pub type Jitter = Arc<dyn Fn() -> f64 + Send + Sync>;

/// A uniform sample in `[-1, 1)`, the default [`Jitter`]. Not cryptographic: it only
/// spreads reconnect storms. Seeds come from std's per-process random hasher keys.
pub fn random_jitter() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // 53 random bits make an exact f64 in [0, 1).
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    unit.mul_add(2.0, -1.0)
}

#[cfg(test)]
mod tests {
    use super::random_jitter;

    #[test]
    fn random_jitter_stays_in_range_and_varies() {
        let samples: Vec<f64> = (0..1000).map(|_| random_jitter()).collect();
        assert!(samples.iter().all(|s| (-1.0..1.0).contains(s)));
        assert!(samples.iter().any(|s| *s < -0.5) && samples.iter().any(|s| *s > 0.5));
    }
}
