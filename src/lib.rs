//! Switchyard: real-time signalling and pub/sub, one sans-IO routing core behind many
//! wires. This facade re-exports the core; transports and the server binary join it
//! as they land.

#![forbid(unsafe_code)]

pub use switchyard_core as core;
