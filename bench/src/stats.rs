//! Latency histograms (hdrhistogram, microseconds) and the counters scenarios share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latencies recorded by many connection tasks at once.
#[derive(Clone)]
pub struct Recorder {
    hist: Arc<Mutex<Histogram<u64>>>,
    /// Messages counted (whether or not in the histogram's window).
    pub count: Arc<AtomicU64>,
    /// Errors seen (refusals, failed connects, unexpected closes).
    pub errors: Arc<AtomicU64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self {
            // 1 µs to 100 s at 3 significant digits.
            hist: Arc::new(Mutex::new(
                Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds"),
            )),
            count: Arc::default(),
            errors: Arc::default(),
        }
    }
}

impl Recorder {
    /// Records one latency in nanoseconds.
    pub fn record_ns(&self, ns: u64) {
        let us = (ns / 1_000).clamp(1, 100_000_000);
        self.hist
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .saturating_record(us);
    }

    /// Counts one message.
    pub fn hit(&self) {
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Messages counted so far.
    pub fn hits(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Errors counted so far.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    /// The latency summary, and a fresh histogram from here on.
    pub fn take(&self) -> Latency {
        let mut h = self.hist.lock().unwrap_or_else(PoisonError::into_inner);
        let l = Latency::of(&h);
        h.reset();
        l
    }
}

/// A latency distribution, milliseconds.
#[derive(Clone, Copy, Debug, Default, Serialize, serde::Deserialize)]
pub struct Latency {
    /// Samples.
    pub samples: u64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1_000.0;
        Self {
            samples: h.len(),
            p50_ms: ms(h.value_at_quantile(0.5)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}
