//! Switchyard's routing core: a sans-IO state machine for real-time signalling and
//! pub/sub.
//!
//! The hub owns no socket, reads no clock, spawns no task and draws no random number.
//! A driver (a transport, a test, a fuzzer) feeds it inputs with the time they happened
//! and writes out what it asks for:
//!
//! ```
//! use std::time::Instant;
//! use bytes::Bytes;
//! use switchyard_core::{Config, Dialect, Hangup, Hub, Input, Open, Output};
//!
//! let start = Instant::now(); // the driver's clock, not the hub's
//! let mut hub = Hub::new(Config::default(), start, 1_700_000_000_000).expect("valid config");
//!
//! // 1. A transport accepts a connection and tells the hub.
//! let alice = hub.open(start, Open::new(Dialect::Signaller));
//! let bob = hub.open(start, Open::new(Dialect::Signaller));
//!
//! // 2. Frames are decoded on the connection's own task, then handed over typed.
//! for (conn, frame) in [
//!     (alice, r#"/announce|alice|{"id":"alice","room":"lobby"}"#),
//!     (bob, r#"/announce|bob|{"id":"bob","room":"lobby"}"#),
//! ] {
//!     let command = Dialect::Signaller.decode(Bytes::from(frame)).unwrap();
//!     hub.handle(start, Input::Command { conn, command });
//! }
//!
//! // 3. A connection dies without `/leave`.
//! hub.handle(start, Input::Closed { conn: alice, how: Hangup::Hard });
//!
//! // 4. After every input, drain the outputs: write, close, log.
//! let mut to_bob = Vec::new();
//! while let Some(out) = hub.poll_output() {
//!     match out {
//!         Output::Send { conn, frame } if conn == bob => to_bob.push(frame),
//!         Output::Send { .. } | Output::Close { .. } | Output::Event(_) => {}
//!         Output::Cluster(_) => {} // only with `Config::cluster`: hand to the engine
//!     }
//! }
//! assert_eq!(to_bob.last().unwrap(), r#"/leave|alice|{"id":"alice"}"#);
//!
//! // 5. Sleep until the next input or `poll_timeout()`, then `handle_timeout(now)`.
//! assert_eq!(hub.poll_timeout(), None);
//! ```
//!
//! # The driver contract
//!
//! - Every call takes `now: Instant`, the driver's monotonic time. The hub never goes
//!   backwards even if `now` does. Wall-clock time is derived from the unix
//!   milliseconds given to [`Hub::new`].
//! - Drain [`Hub::poll_output`] after every input, before the next one. Frames for one
//!   connection come out in the order they must be written; a driver may batch all
//!   queued frames of a connection into one flush.
//! - While outputs are queued, [`Hub::poll_timeout`] returns "now" (the latest `now`
//!   seen). Otherwise it returns the next armed deadline, or `None`. After
//!   [`Hub::handle_timeout`]`(t)` the next deadline is strictly later than `t`, so a
//!   driver that sleeps until the deadline never busy-loops.
//! - A peer's misbehaviour is never an `Err`: it becomes an error frame, a
//!   [`Output::Close`] or an [`Event`]. Inputs for unknown connections are ignored.
//! - [`Output::Close`] means the hub has already forgotten the connection; the
//!   transport closes the socket, and a later [`Input::Closed`] for it is a no-op.
//! - The core keeps no per-connection outbound queue: transports own bounded writers
//!   and report [`Input::Failed`] with [`Fault::SlowConsumer`] when one fills; the hub
//!   closes that slow consumer. A wire whose peer breaks its framing rules reports
//!   [`Fault::Protocol`] the same way.
//! - [`Input`] and [`Output`] are exhaustive: match every variant, so that a new one
//!   is a compile error in the driver rather than a silently dropped case.
//!
//! # Determinism
//!
//! Same inputs, same outputs, byte for byte: maps are ordered (`BTreeMap`), ids the
//! server invents come from [`Config::id_seed`], and time comes from the driver. A
//! production driver seeds `id_seed` from the OS's entropy at every start; tests
//! fix it.
//!
//! # Inside
//!
//! - The hub's *directory* is the one owner of who is where: each connection's place
//!   (dialect, tenant, peer id, room, subscriptions, patterns), the channels with
//!   their members and presence, and the indexes of peers and wildcard
//!   subscriptions. Its methods return what changed (a peer joined, departed, was
//!   replaced), and the hub turns those values into frames. The hub itself keeps
//!   what is about connections (credentials, rate, caps), the timers and the output
//!   queue. The invariant checker (feature `testing`) checks every index against its
//!   reverse after every step.
//! - The [`wire`] modules hold every byte of dialect text. Each dialect is one
//!   module implementing one codec surface (decode, what the dialect can express,
//!   its encoders); the hub decides in dialect-neutral values and names no dialect.
//!
//! # Several nodes
//!
//! With [`Config::cluster`] on, the hub is one node of a cluster: it emits
//! [`Output::Cluster`] for what other nodes must hear and takes [`Input::Remote`] for
//! what they did ([`cluster`]); the directory keeps each other node's state, and
//! presence, rooms, direct messages and publishes span the nodes. An engine outside
//! the core carries the values (the `switchyard-cluster` crate: Redis, or nothing for
//! one node); the routing rules stay here.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access;
pub mod cluster;
pub mod codes;
pub mod config;
mod hub;
pub mod ids;
pub mod pattern;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod token;
pub mod wire;

pub use codes::{CloseCode, ErrorCode};
pub use config::{Config, HistoryRule, Limits};
pub use hub::{
    ControlError, Credentials, Event, Fault, Hangup, HistoryPage, Hub, Input, Open, Output,
    PeerConnection, Published, Stats, StoredMessage,
};
pub use ids::{ConnId, PeerId, SERVER_PEER_ID, TenantId};
pub use wire::{Command, DecodeError, Dialect, Stamp};
