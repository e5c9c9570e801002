//! Switchyard: real-time signalling and pub/sub, one sans-IO routing core behind many
//! wires. This facade re-exports the core and the transports, and holds what the
//! `switchyard` binary wires together: the config file ([`settings`]) and starting a
//! server from it ([`server`]).

#![forbid(unsafe_code)]

pub use switchyard_core as core;
pub use switchyard_transports as transports;

pub mod access_store;
pub mod rest;
pub mod server;
pub mod settings;
