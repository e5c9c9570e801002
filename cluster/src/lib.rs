//! Cluster engines: what carries the hub's cluster traffic between Switchyard nodes.
//!
//! The routing rules of a cluster live in the core: with
//! [`Config::cluster`](switchyard_core::Config::cluster) on, the hub emits an
//! [`Outbound`] for everything other nodes must hear and takes a [`Remote`](switchyard_core::cluster::Remote) for what
//! they did (see [`switchyard_core::cluster`]). An [`Engine`] is only the transport
//! between nodes, and the loop every engine runs is:
//!
//! ```text
//! 1. take the Outbound items the driver queued (EngineContext::outbound), in order,
//!    and carry them to every other node;
//! 2. feed what other nodes said to the driver as Remote values (DriverHandle::remote);
//! 3. now and then, carry this node's whole state (Hub::node_state, through
//!    DriverHandle::call) so that late or lost nodes catch up;
//! 4. when a node falls silent, feed Remote { node, event: Gone }: its peers leave;
//! 5. on shutdown, tell the others this node is gone.
//! ```
//!
//! Beside the hub's traffic, an engine keeps the server's shared [`Tables`] (the
//! REST-issued access tokens): it stores the records the server writes where every
//! node reads them, tells the other nodes of each write, and hands the server the whole
//! table after every (re)connect. The memory engine has no other node and drops them.
//!
//! Two engines exist: [`MemoryEngine`] (one node, nothing to carry: the default) and
//! [`RedisEngine`] (Redis pub/sub, one channel per cluster). Another one (NATS, say)
//! implements [`Engine`] without touching the core or the driver.
//!
//! Why the [`redis`](https://docs.rs/redis) crate rather than `fred`: it is the most
//! widely used Redis client for Rust, maintained by the redis-rs organisation, its async
//! pub/sub connection is a plain stream of messages, and with `default-features = false`
//! plus `tokio-comp` it adds few crates to the tree. Its TLS features are left off:
//! they would bring a second TLS stack (and `tls-rustls` a second crypto provider
//! choice) next to the aws-lc-rs one the server uses, so `rediss://` is refused at
//! config check for now ([`redis_url_problem`]).

mod backoff;
mod envelope;
mod memory;
mod redis_engine;
mod tables;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use switchyard_core::cluster::{NodeId, Outbound};
use switchyard_transports::DriverHandle;
use tokio::sync::mpsc;

pub use envelope::{Envelope, EnvelopeError, TableEntry};
pub use memory::MemoryEngine;
pub use redis_engine::{HistoryReader, RedisEngine, RedisSettings, redis_url_problem};
pub use tables::{TableNews, TableWrite, Tables, WriteMode};
pub use tokio_util::sync::CancellationToken;

/// A transport for cluster traffic. Runs as one task until its shutdown signal.
#[async_trait::async_trait]
pub trait Engine: Send {
    /// The engine's name for logs, `/healthz` and `/metrics` (`memory`, `redis`).
    fn kind(&self) -> &'static str;

    /// Carries cluster traffic until [`EngineContext::shutdown`] is cancelled, then
    /// tells the other nodes this one is gone (as far as it can) and returns.
    async fn run(self: Box<Self>, ctx: EngineContext);

    /// Where the channels' shared history streams can be read outside the engine's
    /// task (the server's `GET /v1/history`); `None` when the engine keeps none (one
    /// node: the hub holds the streams itself). Taken before [`Engine::run`].
    fn history(&self) -> Option<Arc<dyn HistoryStore>> {
        None
    }
}

/// A reader of channel history kept by an engine.
#[async_trait::async_trait]
pub trait HistoryStore: Send + Sync + std::fmt::Debug {
    /// The stream's epoch, its last offset, and up to `limit` messages after
    /// `since`, oldest first, numbered. `ttl_ms` is the channel's rule (a stream
    /// that does not exist yet is created with it, as a subscribe would).
    async fn page(
        &self,
        tenant: &str,
        channel: &str,
        since: u64,
        limit: usize,
        ttl_ms: u64,
    ) -> Result<(String, u64, Vec<switchyard_core::cluster::Publication>), String>;
}

/// Everything an engine works with, handed over by whoever starts it.
pub struct EngineContext {
    /// This node's name in the cluster.
    pub node: NodeId,
    /// The queue the driver fills with [`Outbound`] items (its
    /// [`DriverConfig::cluster`](switchyard_transports::DriverConfig::cluster) sender).
    pub outbound: mpsc::Receiver<Outbound>,
    /// Where news from other nodes goes, and how to read this node's state.
    pub driver: DriverHandle,
    /// What the engine reports to `/healthz` and `/metrics`.
    pub status: Arc<EngineStatus>,
    /// The tables the server shares with the other nodes ([`Tables::none`] on one node).
    pub tables: Tables,
    /// Cancelled when the server stops (after the hub's own shutdown, so the last
    /// leaves are in the queue before the engine says goodbye).
    pub shutdown: CancellationToken,
}

/// `item`, counted as taken from the outbound queue when there is one (for a
/// `select!` branch that received it straight from [`EngineContext::outbound`]).
pub(crate) fn counted(status: &EngineStatus, item: Option<Outbound>) -> Option<Outbound> {
    if item.is_some() {
        EngineStatus::count(&status.taken, 1);
    }
    item
}

impl EngineContext {
    /// The next outbound item, counted as taken.
    pub async fn next_outbound(&mut self) -> Option<Outbound> {
        let item = self.outbound.recv().await;
        counted(&self.status, item)
    }

    /// An outbound item already queued, counted as taken.
    pub fn queued_outbound(&mut self) -> Option<Outbound> {
        let item = self.outbound.try_recv().ok();
        counted(&self.status, item)
    }
}

/// The engine's connection state, as `/healthz` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineState {
    /// One node: nothing to connect to.
    Memory,
    /// Connected: traffic flows between nodes.
    Connected,
    /// Not connected (not yet, or lost): local traffic goes on, cluster traffic is
    /// dropped and counted.
    Reconnecting,
    /// Stopped (after shutdown).
    Stopped,
}

impl EngineState {
    /// The state's word for `/healthz`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Stopped => "stopped",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Memory,
            1 => Self::Connected,
            2 => Self::Reconnecting,
            _ => Self::Stopped,
        }
    }
}

/// Counters and state an engine shares with the server's `/healthz` and `/metrics`.
/// Lock-free: read from any task at any time.
#[derive(Debug)]
pub struct EngineStatus {
    kind: &'static str,
    state: AtomicU8,
    /// Envelopes this node put on the wire (changes, heartbeats, its goodbye).
    pub published: AtomicU64,
    /// Envelopes from other nodes fed to the driver.
    pub received: AtomicU64,
    /// Connections made after the first one.
    pub reconnects: AtomicU64,
    /// Outbound items (and shared-table writes) dropped because the engine was not
    /// connected (or could not encode them).
    pub dropped: AtomicU64,
    /// How late the last heartbeat went out: from its due time to Redis's answer, ms.
    pub heartbeat_lag_ms: AtomicU64,
    /// Other nodes heard from within the presence TTL (the engine's view; the hub's
    /// count keeps a node until it is gone).
    pub live_nodes: AtomicU64,
    /// Outbound items taken from the driver's queue so far (published or dropped):
    /// compared with the driver's `cluster_out` count to cut a state snapshot at the
    /// right place in the stream of changes.
    pub taken: AtomicU64,
}

impl EngineStatus {
    /// A fresh status for an engine of `kind`, in `state`.
    pub fn new(kind: &'static str, state: EngineState) -> Self {
        Self {
            kind,
            state: AtomicU8::new(state as u8),
            published: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            heartbeat_lag_ms: AtomicU64::new(0),
            live_nodes: AtomicU64::new(0),
            taken: AtomicU64::new(0),
        }
    }

    /// The engine's kind (`memory`, `redis`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The current state.
    pub fn state(&self) -> EngineState {
        EngineState::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Sets the state (the engine's own task does this).
    pub fn set_state(&self, state: EngineState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Reads a counter.
    pub fn load(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
