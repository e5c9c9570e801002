//! The server's configuration file (`switchyard.toml`): what to listen on, the driver's
//! bounds, and the core's policy. Environment variables override single keys.
//!
//! Every key has a default, so an empty file is a valid config. `SWITCHYARD_<SECTION>_<KEY>`
//! overrides one key (`SWITCHYARD_LISTEN_WS=0.0.0.0:8080`, `SWITCHYARD_AUTH_ANONYMOUS=false`,
//! `SWITCHYARD_LIMITS_MAX_FRAME_BYTES=131072`), and `SWITCHYARD_KEY_ID` with
//! `SWITCHYARD_KEY_SECRET` adds a signing key without writing the secret into a file.
//! `SWITCHYARD_HISTORY` replaces the `[[history]]` list with a TOML array of inline
//! tables (`[{channels = "chat/**", size = 100, ttl_ms = 300000}]`).
//! (`SWITCHYARD_LOG`, the log level, is the binary's own.)
//!
//! One file per job: [`Settings`] and its sections with their defaults (`sections`),
//! reading a file with `SWITCHYARD_*` overrides on top ([`Settings::from_toml`], in
//! `env`), the cluster engine's section (`engine`), the history rules (`history`), the conversion to the core's and the listeners' configs with the checks
//! parsing cannot make (`convert`), what a reload cannot apply
//! ([`Settings::restart_only_changes`], in `reload`), and the commented template
//! `switchyard genconfig` prints ([`example`], from `example.toml`).

mod convert;
mod engine;
mod env;
mod example;
mod history;
mod reload;
mod sections;

pub use engine::EngineSettings;
pub use example::example;
pub use history::HistorySettings;
pub use sections::{
    AccessTokenSettings, ApiSettings, Auth, DashboardSettings, DemoSettings, Driver, KeySettings,
    LimitSettings, Listen, PublicKeySettings, PublishableSettings, Quic, ShutdownSettings,
    TlsSettings, Ws,
};

use serde::Deserialize;

/// Prefix of the environment variables that override config keys.
pub const ENV_PREFIX: &str = "SWITCHYARD_";

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Listeners.
    pub listen: Listen,
    /// WebSocket details.
    pub ws: Ws,
    /// QUIC details.
    pub quic: Quic,
    /// TLS on the WebSocket/HTTP listener.
    pub tls: TlsSettings,
    /// The driver's bounds.
    pub driver: Driver,
    /// Who may connect.
    pub auth: Auth,
    /// The core's limits.
    pub limits: LimitSettings,
    /// The REST control plane and metrics.
    pub api: ApiSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// The cluster engine (`memory`: one node).
    pub engine: EngineSettings,
    /// The browser demo (`/demo`).
    pub demo: DemoSettings,
    /// The operator's dashboard (`/dashboard`).
    pub dashboard: DashboardSettings,
    /// Channel history rules (`[[history]]`); none: no channel keeps one.
    pub history: Vec<HistorySettings>,
}

/// Why a config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file does not parse or has unknown keys.
    #[error("{0}")]
    Parse(String),
    /// A value is invalid.
    #[error("{0}")]
    Invalid(String),
}
