//! Switchyard: real-time signalling and pub/sub, one sans-IO routing core behind many
//! wires. This facade re-exports the core and the transports; the server binary joins
//! them as it lands.

#![forbid(unsafe_code)]

pub use switchyard_core as core;
pub use switchyard_transports as transports;
