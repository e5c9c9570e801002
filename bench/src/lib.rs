//! `switchyard-bench`: a load generator for Switchyard and the servers it is compared
//! with. One scenario runs unchanged against Switchyard (JSON or rtc-signaller dialect),
//! rtc-switchboard (rtc-signaller), nats-server (the NATS text protocol over
//! WebSocket) and the baseline broadcast server ([`baseline`]).
//!
//! Scenarios: [`fanout`] (1 → N, fixed loads and a knee sweep), [`rooms`] (WebRTC-style
//! signalling with churn), [`storm`] (connect + auth + subscribe rate) and [`idle`]
//! (server memory per idle connection). Each returns a serialisable result; the
//! binary writes them as JSON lines and [`report`] turns a run's lines into a table of
//! ratios, one JSON document and an SVG plot. `bench/compare.sh` runs it all;
//! `bench/cluster.sh` runs fan-out across two nodes through Redis ([`cluster`]).

pub mod baseline;
pub mod client;
pub mod cluster;
pub mod fanout;
pub mod idle;
pub mod payload;
pub mod procfs;
pub mod proto;
pub mod redis_info;
pub mod report;
pub mod rooms;
pub mod stats;
pub mod storm;
pub mod wires;

use serde::{Deserialize, Serialize};

/// One scenario run against one server: a line of the results file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    /// Which server and wire (`switchyard-json`, `nats`, `baseline`…).
    pub label: String,
    /// The wire spoken.
    pub proto: String,
    /// `fanout`, `rooms`, `storm`, `storm-noauth` or `idle`.
    pub scenario: String,
    /// The load average when the scenario ended (1, 5, 15 minutes).
    pub loadavg: String,
    /// Unix seconds at the end.
    pub unix_time: u64,
    /// The scenario's own figures.
    pub result: serde_json::Value,
}
