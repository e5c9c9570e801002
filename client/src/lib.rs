//! A Rust client for Switchyard's JSON dialect (`/v1`), with the semantics of the seed
//! SDK's `SignallingClient`: pub/sub and direct messages over one WebSocket, every
//! request answered by the server's `ack` (or `error`), the connection supervised and
//! re-established with backoff, and subscriptions restored after each reconnect.
//!
//! ```no_run
//! use switchyard_client::{Message, SignallingClient, SignallingClientOptions, SubscribeOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = SignallingClient::new(
//!     SignallingClientOptions::new()
//!         .url("ws://127.0.0.1:8080")
//!         .token_provider(|| async { Ok::<_, std::io::Error>(fetch_jwt().await) }),
//! )?;
//! let mut messages = client.events::<Message>();
//! client.connect().await?;
//! client.subscribe("rooms/lobby", SubscribeOptions::default()).await?;
//! client.publish("rooms/lobby", &serde_json::json!({"hi": "there"})).await?;
//! while let Some(m) = messages.recv().await {
//!     println!("{} on {}: {}", m.sender_peer_id, m.channel, m.data);
//! }
//! # Ok(()) }
//! # async fn fetch_jwt() -> String { String::new() }
//! ```
//!
//! - **States**: `idle → connecting → connected ⇄ reconnecting → closed` ([`State`]).
//! - **Reconnect**: `min(initial_delay · multiplier^(attempt−1), max_delay) ± jitter`,
//!   reset on every `welcome`; what each close code does is in [`close_code::retry`].
//! - **Events**: typed ([`Connected`], [`Message`], [`Presence`]…), through handlers
//!   ([`SignallingClient::on`]) or bounded streams ([`SignallingClient::events`]).
//! - **Time and jitter are injectable** ([`Clock`], [`SignallingClientOptions::jitter`]),
//!   so the reconnect policy can be tested without waiting.
//! - **Transports** ([`Transport`]): WebSocket (default), QUIC (`quic://host:port`,
//!   trusting the certificates you give) or TCP lines (`tcp://`, loopback), with the
//!   token in band on the last two; the session and the close-code policy are shared.
//! - **TLS**: `wss://` (any host; TLS 1.3 on rustls/aws-lc-rs) trusts the web PKI roots
//!   and [`SignallingClientOptions::trusted_certs`]; `ws://` is allowed to loopback
//!   hosts only.
//!
//! Logs go through `tracing` (the seed's `logger` option).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod client;
pub mod clock;
pub mod close_code;
mod error;
mod events;
mod link;
mod options;
mod refresh;
mod supervisor;
mod wire;

pub use client::{SignallingClient, State};
pub use clock::{Clock, Jitter, Sleep, Timer, TokioClock};
pub use error::{
    BoxError, DisconnectedError, OptionsError, ServerRequestError, SignallingConnectError,
    SignallingError, TokenProviderTimeout,
};
pub use events::{
    Connected, Direct, Disconnected, Event, EventStream, GoingAway, HandlerId, IceServer, Message,
    Presence, PresencePeer, Recovered, ServerError, StateChange, TokenProviderError,
    TokenRefreshed,
};
pub use options::{
    CertificateDer, DEFAULT_URL, ReconnectOptions, SignallingClientOptions, SubscribeOptions,
    TokenFuture, Transport,
};
