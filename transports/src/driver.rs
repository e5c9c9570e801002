//! The driver: one tokio task that owns the [`Hub`] by value.
//!
//! Connections never touch the hub. They send what happened (open, command,
//! malformed frame, closed) into the driver's bounded inbox, and the driver feeds it to
//! the hub, drains every output and routes it: a frame into the connection's bounded
//! outbound queue, a close into the connection's close signal, an event into `tracing`.
//!
//! Implementation notes:
//! - A full outbound queue is never waited on: the driver reports
//!   [`Input::Failed`] ([`Fault::SlowConsumer`](switchyard_core::Fault::SlowConsumer)) and the hub closes that slow consumer (4013). One slow
//!   client therefore never stalls the hub or anyone else.
//! - A close travels on its own one-shot signal, not in the frame queue, so it is never
//!   lost to a full queue. The frames queued before it are still written first, because
//!   the driver queued them before it sent the close.
//! - The loop handles due timers first, then at most [`DriverConfig::batch`] inbox
//!   messages, draining after each, then yields: a busy inbox cannot starve timers or
//!   the runtime.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use switchyard_core::cluster::{Outbound, Remote};
use switchyard_core::config::ConfigError;
use switchyard_core::{CloseCode, Config, ConnId, Event, Hub, Input, Open, Output};
use tokio::sync::mpsc::error::TrySendError;

use crate::metrics::Metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

/// How the driver and its connections are sized. The hub's own policy lives in
/// [`switchyard_core::Config`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct DriverConfig {
    /// Frames a connection may have waiting to be written before it is closed as a slow
    /// consumer (4013). Bounds memory per connection.
    pub outbound_queue: usize,
    /// Messages connections may have waiting for the driver. When it is full,
    /// connections stop reading their sockets: backpressure reaches the clients.
    pub inbox: usize,
    /// Connections served at once across every transport; one more is closed with 4010
    /// right after accept.
    pub max_connections: usize,
    /// Inbox messages handled per loop iteration before the driver yields.
    pub batch: usize,
    /// How long writing the last frames and the close may take before the socket is
    /// simply dropped (a slow consumer may never read them).
    pub close_timeout: Duration,
    /// Where the hub's [`Output::Cluster`] items go: the cluster engine's bounded
    /// queue (`None`: one node; with the hub's `cluster` setting off nothing is
    /// emitted anyway). A full queue drops the item and counts it
    /// ([`Metrics::cluster_dropped`]): the driver never waits for the engine.
    pub cluster: Option<mpsc::Sender<Outbound>>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        Self {
            outbound_queue: 1024,
            inbox: 4096,
            max_connections: 10_000,
            batch: 256,
            close_timeout: Duration::from_secs(2),
            cluster: None,
        }
    }
}

/// The driver stopped (every handle and connection was dropped, or it panicked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the switchyard driver is gone")]
pub struct DriverGone;

/// A close the hub ordered: the code and reason to put on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseOrder {
    pub(crate) code: CloseCode,
    pub(crate) reason: &'static str,
}

/// What the driver holds for each open connection: where its frames and its close go.
pub(crate) struct Link {
    pub(crate) frames: mpsc::Sender<Bytes>,
    pub(crate) close: oneshot::Sender<CloseOrder>,
}

/// A control closure run on the driver task with the hub and the current time.
type Control = Box<dyn FnOnce(&mut Hub, Instant) + Send>;

/// The driver's inbox.
pub(crate) enum ToDriver {
    Open {
        open: Open,
        link: Link,
        reply: oneshot::Sender<ConnId>,
    },
    Input(Input),
    Control(Control),
}

/// A cheap, cloneable way to reach the driver: what every transport, and later the
/// REST control plane, holds instead of the hub.
#[derive(Clone)]
pub struct DriverHandle {
    inbox: mpsc::Sender<ToDriver>,
    shared: Arc<Shared>,
}

/// Settings connections read without asking the driver.
struct Shared {
    permits: Arc<Semaphore>,
    metrics: Arc<Metrics>,
    max_frame_bytes: usize,
    outbound_queue: usize,
    close_timeout: Duration,
}

impl fmt::Debug for DriverHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverHandle")
            .field("free_slots", &self.shared.permits.available_permits())
            .finish_non_exhaustive()
    }
}

/// A slot under [`DriverConfig::max_connections`], held for a connection's whole life.
/// Taken at accept time so a transport can refuse before spending anything on a
/// connection.
#[derive(Debug)]
pub struct Admission {
    pub(crate) handle: DriverHandle,
    _permit: OwnedSemaphorePermit,
}

/// Starts the driver task on the current tokio runtime, with a new hub built from
/// `hub_config`. The task ends once every [`DriverHandle`] (and so every connection)
/// is gone.
///
/// # Errors
///
/// The hub refuses `hub_config` (unusable keys, limits out of range).
///
/// # Panics
///
/// Outside a tokio runtime.
pub fn start(hub_config: Config, config: DriverConfig) -> Result<DriverHandle, ConfigError> {
    let now = Instant::now();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let max_frame_bytes = hub_config.limits.max_frame_bytes;
    let hub = Hub::new(hub_config, now, unix_ms)?;
    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(Shared {
        permits: Arc::new(Semaphore::new(config.max_connections)),
        metrics: Arc::clone(&metrics),
        max_frame_bytes,
        outbound_queue: config.outbound_queue.max(1),
        close_timeout: config.close_timeout,
    });
    let (inbox, rx) = mpsc::channel(config.inbox.max(1));
    let driver = Driver {
        hub,
        metrics,
        links: BTreeMap::new(),
        batch: config.batch.max(1),
        cluster: config.cluster,
    };
    tokio::spawn(driver.run(rx));
    Ok(DriverHandle { inbox, shared })
}

impl DriverHandle {
    /// Takes a connection slot, or `None` when [`DriverConfig::max_connections`] are
    /// already served: the transport then closes the new connection with 4010.
    pub fn admit(&self) -> Option<Admission> {
        let permit = Arc::clone(&self.shared.permits).try_acquire_owned().ok()?;
        Some(Admission {
            handle: self.clone(),
            _permit: permit,
        })
    }

    /// Runs `f` on the driver task with the hub and the driver's `now`, then drains
    /// what it queued. The escape hatch for control planes (count peers, disconnect
    /// one with 4020) without ever sharing the hub.
    pub async fn call<R, F>(&self, f: F) -> Result<R, DriverGone>
    where
        F: FnOnce(&mut Hub, Instant) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let control: Control = Box::new(move |hub, now| {
            let _ = tx.send(f(hub, now));
        });
        self.send(ToDriver::Control(control)).await?;
        rx.await.map_err(|_| DriverGone)
    }

    /// Feeds what another node of the cluster did (the engine's side of the driver).
    pub async fn remote(&self, remote: Remote) -> Result<(), DriverGone> {
        self.send(ToDriver::Input(Input::Remote(Box::new(remote))))
            .await
    }

    /// The driver's counters (for `/metrics`).
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.shared.metrics
    }

    /// Gauge: messages waiting in the driver's inbox.
    pub fn inbox_depth(&self) -> usize {
        self.inbox.max_capacity() - self.inbox.capacity()
    }

    /// Largest frame the hub accepts; transports size their read limits with it.
    pub fn max_frame_bytes(&self) -> usize {
        self.shared.max_frame_bytes
    }

    pub(crate) fn outbound_queue(&self) -> usize {
        self.shared.outbound_queue
    }

    pub(crate) fn close_timeout(&self) -> Duration {
        self.shared.close_timeout
    }

    pub(crate) async fn send(&self, msg: ToDriver) -> Result<(), DriverGone> {
        self.inbox.send(msg).await.map_err(|_| DriverGone)
    }

    /// Reports `conn` closed hard without waiting, for a drop guard: at once when the
    /// inbox has room, else from a task of its own (the driver may be busy; it is
    /// never gone while a handle exists).
    pub(crate) fn closed_without_waiting(&self, conn: ConnId) {
        let closed = ToDriver::Input(Input::Closed {
            conn,
            how: switchyard_core::Hangup::Hard,
        });
        match self.inbox.try_send(closed) {
            Ok(()) | Err(TrySendError::Closed(_)) => {}
            Err(TrySendError::Full(closed)) => {
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    let inbox = self.inbox.clone();
                    runtime.spawn(async move {
                        let _ = inbox.send(closed).await;
                    });
                }
            }
        }
    }
}

/// The state of the driver task.
struct Driver {
    hub: Hub,
    metrics: Arc<Metrics>,
    links: BTreeMap<ConnId, Link>,
    batch: usize,
    cluster: Option<mpsc::Sender<Outbound>>,
}

impl Driver {
    async fn run(mut self, mut inbox: mpsc::Receiver<ToDriver>) {
        loop {
            // Timers first, so a busy inbox cannot starve them.
            if let Some(due) = self.hub.poll_timeout()
                && due <= Instant::now()
            {
                let now = Instant::now();
                self.hub.handle_timeout(now);
                self.drain(now);
            }
            let deadline = self.hub.poll_timeout().map(tokio::time::Instant::from_std);
            let first = tokio::select! {
                msg = inbox.recv() => msg,
                () = sleep_until(deadline) => continue,
            };
            let Some(first) = first else { break };
            self.apply(first);
            let mut handled = 1;
            while handled < self.batch {
                let Ok(msg) = inbox.try_recv() else { break };
                self.apply(msg);
                handled += 1;
            }
            if handled == self.batch {
                tokio::task::yield_now().await;
            }
        }
        tracing::debug!("switchyard driver stopped: no handle left");
    }

    /// Feeds one inbox message to the hub and drains what it produced.
    fn apply(&mut self, msg: ToDriver) {
        let now = Instant::now();
        match msg {
            ToDriver::Open { open, link, reply } => {
                let conn = self.hub.open(now, open);
                self.links.insert(conn, link);
                // The reply goes out before the drain, so that a close ordered right at
                // open (a bad token) finds the connection's pump already listening.
                if reply.send(conn).is_err() {
                    // The pump gave up waiting: forget the connection as if it closed.
                    self.links.remove(&conn);
                    self.hub.handle(
                        now,
                        Input::Closed {
                            conn,
                            how: switchyard_core::Hangup::Hard,
                        },
                    );
                }
            }
            ToDriver::Input(input) => {
                if let Input::Closed { conn, .. } = &input {
                    // Dropping the link ends the writer once it has written what is queued.
                    self.links.remove(conn);
                }
                self.metrics.input(&input);
                self.hub.handle(now, input);
            }
            ToDriver::Control(f) => f(&mut self.hub, now),
        }
        self.drain(now);
    }

    /// Routes every queued output. A full queue becomes [`Input::Failed`], fed only
    /// once the outputs are drained, as the core's contract asks.
    fn drain(&mut self, now: Instant) {
        let mut blocked = Vec::new();
        loop {
            while let Some(out) = self.hub.poll_output() {
                match out {
                    Output::Send { conn, frame } => {
                        let Some(link) = self.links.get(&conn) else {
                            continue;
                        };
                        match link.frames.try_send(frame) {
                            Ok(()) => {
                                self.metrics.frames_out.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TrySendError::Full(_)) => blocked.push(conn),
                            // The pump is gone; its `Closed` input is on its way.
                            Err(TrySendError::Closed(_)) => {
                                self.metrics
                                    .dropped_for_closed
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    Output::Close { conn, code, reason } => {
                        if let Some(link) = self.links.remove(&conn) {
                            let _ = link.close.send(CloseOrder { code, reason });
                        }
                    }
                    Output::Event(event) => {
                        self.metrics.event(&event);
                        log_event(&event);
                    }
                    Output::Cluster(out) => {
                        let Some(engine) = &self.cluster else {
                            continue;
                        };
                        let counter = match engine.try_send(*out) {
                            Ok(()) => &self.metrics.cluster_out,
                            Err(_) => &self.metrics.cluster_dropped,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if blocked.is_empty() {
                return;
            }
            blocked.sort_unstable();
            blocked.dedup();
            for conn in blocked.drain(..) {
                self.hub.handle(
                    now,
                    Input::Failed {
                        conn,
                        fault: switchyard_core::Fault::SlowConsumer,
                    },
                );
            }
        }
    }
}

/// Sleeps until `deadline`, or forever when no timer is armed.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn log_event(event: &Event) {
    match event {
        Event::Announced { conn, peer, room } => {
            tracing::debug!(%conn, %peer, room = %room, "announced");
        }
        Event::Left {
            peer,
            channel,
            synthetic,
        } => tracing::debug!(%peer, channel = %channel, synthetic, "left"),
        Event::Refused { conn, code } => tracing::debug!(%conn, %code, "refused"),
        // Opens and closes are logged by the connection's pump, with its remote.
        _ => tracing::trace!(?event, "hub event"),
    }
}
