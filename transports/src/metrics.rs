//! Counters the driver keeps while it routes: what the hub's events say (messages,
//! deliveries, refusals, auth failures, closes by code) and what only the driver sees
//! (frames in and out, queue depth, slow consumers). Cheap to update, read by whoever
//! renders them (the server's `/metrics`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use switchyard_core::{Event, Input};

/// The driver's counters. Monotonic unless named as a gauge.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Frames handed to the hub (decoded or not).
    pub frames_in: AtomicU64,
    /// Frames queued to connections.
    pub frames_out: AtomicU64,
    /// Messages routed (publishes, room broadcasts, direct messages).
    pub messages: AtomicU64,
    /// Deliveries those messages fanned out to.
    pub deliveries: AtomicU64,
    /// Connections opened.
    pub opened: AtomicU64,
    /// Frames for a connection whose pump was already gone.
    pub dropped_for_closed: AtomicU64,
    /// Connection tasks that panicked (in a wire's reader or writer). Each one was
    /// still reported to the hub as a hard close.
    pub connection_panics: AtomicU64,
    /// Gauge: messages waiting in the driver's inbox.
    pub inbox_depth: AtomicI64,
    /// Items handed to the cluster engine.
    pub cluster_out: AtomicU64,
    /// Items dropped because the cluster engine's queue was full (or it was gone).
    pub cluster_dropped: AtomicU64,
    /// News from other nodes fed to the hub.
    pub cluster_in: AtomicU64,
    labelled: Mutex<Labelled>,
}

#[derive(Debug, Default)]
struct Labelled {
    closes: BTreeMap<u16, u64>,
    refusals: BTreeMap<&'static str, u64>,
    auth_failures: BTreeMap<&'static str, u64>,
    connections_by_wire: BTreeMap<&'static str, i64>,
}

/// A labelled counter's values, sorted by label.
pub type Series<L> = Vec<(L, u64)>;

impl Metrics {
    pub(crate) fn input(&self, input: &Input) {
        match input {
            Input::Command { .. } | Input::Malformed { .. } => {
                self.frames_in.fetch_add(1, Ordering::Relaxed);
            }
            Input::Remote(_) => {
                self.cluster_in.fetch_add(1, Ordering::Relaxed);
            }
            Input::Closed { .. } | Input::Failed { .. } => {}
        }
    }

    pub(crate) fn event(&self, event: &Event) {
        match event {
            Event::Opened { .. } => {
                self.opened.fetch_add(1, Ordering::Relaxed);
            }
            Event::Routed { deliveries, .. } => {
                self.messages.fetch_add(1, Ordering::Relaxed);
                self.deliveries
                    .fetch_add(*deliveries as u64, Ordering::Relaxed);
            }
            Event::Refused { code, .. } => {
                *self.labels().refusals.entry(code.as_str()).or_default() += 1;
            }
            Event::AuthFailed { reason, .. } => {
                *self.labels().auth_failures.entry(reason).or_default() += 1;
            }
            Event::Disconnected {
                code: Some(code), ..
            } => {
                *self.labels().closes.entry(code.0).or_default() += 1;
            }
            _ => {}
        }
    }

    /// Counts a connection on `wire` (`ws`, `tcp`, …) until the guard is dropped.
    pub fn track(self: &std::sync::Arc<Self>, wire: &'static str) -> WireGuard {
        *self.labels().connections_by_wire.entry(wire).or_default() += 1;
        WireGuard {
            metrics: std::sync::Arc::clone(self),
            wire,
        }
    }

    /// Server-initiated closes, by close code.
    pub fn closes(&self) -> Series<u16> {
        self.labels().closes.iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Refused frames, by error code.
    pub fn refusals(&self) -> Series<&'static str> {
        self.labels()
            .refusals
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Authentication failures, by reason.
    pub fn auth_failures(&self) -> Series<&'static str> {
        self.labels()
            .auth_failures
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    /// Gauge: live connections per wire.
    pub fn connections_by_wire(&self) -> Vec<(&'static str, i64)> {
        self.labels()
            .connections_by_wire
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }

    fn labels(&self) -> std::sync::MutexGuard<'_, Labelled> {
        // A panic while holding this lock leaves counters that are still counters.
        self.labelled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Keeps a connection counted on its wire; see [`Metrics::track`].
#[derive(Debug)]
pub struct WireGuard {
    metrics: std::sync::Arc<Metrics>,
    wire: &'static str,
}

impl Drop for WireGuard {
    fn drop(&mut self) {
        *self
            .metrics
            .labels()
            .connections_by_wire
            .entry(self.wire)
            .or_default() -= 1;
    }
}
