//! Switchyard's wires: the tokio driver that owns the hub, and the transports that
//! feed it.
//!
//! A transport turns its wire into open / command / closed inputs, writes what it is
//! told to write, and closes what it is told to close. No routing rule lives here:
//! rooms, presence, auth and close codes are all the core's
//! ([`switchyard_core`]).
//!
//! - [`driver`]: one task owns the [`Hub`](switchyard_core::Hub) by value. Everything
//!   else reaches it through a cloneable [`DriverHandle`].
//! - [`conn`]: the per-connection pump. A wire implements [`FrameRead`] and
//!   [`FrameWrite`]; [`DriverHandle::serve`] does the rest (decoding on the
//!   connection's task, bounded outbound queue, slow-consumer close, one `Closed`
//!   report).
//! - [`lines`], [`tcp`], [`stdio`], [`ws`], [`quic`], [`grpc`]: the wires that ship.
//! - [`tls`]: certificates for `wss://` and QUIC alike, replaceable while they serve.
//!
//! # A transport of your own
//!
//! Implement the two halves for your wire and hand them to the driver. Every dialect,
//! limit and close rule comes with it.
//!
//! ```no_run
//! use std::io;
//! use async_trait::async_trait;
//! use bytes::Bytes;
//! use switchyard_core::{CloseCode, Config, Dialect, Open};
//! use switchyard_transports::{DriverConfig, FrameRead, FrameWrite, ReadError, driver};
//! use tokio::sync::mpsc;
//!
//! /// A "wire" made of two channels, e.g. an in-process bus.
//! struct ChannelRead(mpsc::Receiver<Bytes>);
//! struct ChannelWrite(mpsc::Sender<Bytes>);
//!
//! #[async_trait]
//! impl FrameRead for ChannelRead {
//!     async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
//!         self.0.recv().await.map(Ok) // `None`: the peer hung up cleanly
//!     }
//! }
//!
//! #[async_trait]
//! impl FrameWrite for ChannelWrite {
//!     async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
//!         for frame in frames {
//!             self.0.send(frame.clone()).await.map_err(io::Error::other)?;
//!         }
//!         Ok(())
//!     }
//!     async fn close(&mut self, code: CloseCode, reason: &str) {
//!         let _ = self.0.send(Bytes::from(format!("closed {} {reason}", code.0))).await;
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let driver = driver::start(Config::default(), DriverConfig::default()).expect("default config");
//! let (to_hub, from_client) = mpsc::channel(16);
//! let (to_client, _from_hub) = mpsc::channel(16);
//! # drop(to_hub);
//! driver
//!     .serve(ChannelRead(from_client), ChannelWrite(to_client), Open::new(Dialect::Signaller))
//!     .await;
//! # }
//! ```

#![warn(missing_docs)]

pub mod conn;
pub mod driver;
pub mod grpc;
pub mod lines;
pub mod metrics;
pub mod quic;
pub mod stdio;
pub mod tcp;
pub mod tls;
pub mod ws;

mod accept;

pub use conn::{FrameRead, FrameWrite, ReadError};
pub use driver::{Admission, DriverConfig, DriverGone, DriverHandle};
pub use grpc::GrpcConfig;
pub use quic::QuicConfig;
pub use tcp::{LineDialect, TcpConfig};
pub use tls::{CertResolver, TlsIdentity};
pub use ws::{HttpFallback, WsConfig};
