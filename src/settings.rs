//! The server's configuration file (`switchyard.toml`): what to listen on, the driver's
//! bounds, and the core's policy. Environment variables override single keys.
//!
//! Every key has a default, so an empty file is a valid config. `SWITCHYARD_<SECTION>_<KEY>`
//! overrides one key (`SWITCHYARD_LISTEN_WS=0.0.0.0:8080`, `SWITCHYARD_AUTH_ANONYMOUS=false`,
//! `SWITCHYARD_LIMITS_MAX_FRAME_BYTES=131072`), and `SWITCHYARD_KEY_ID` with
//! `SWITCHYARD_KEY_SECRET` adds a signing key without writing the secret into a file.
//! (`SWITCHYARD_LOG`, the log level, is the binary's own.)

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use switchyard_core::access::AccessToken;
use switchyard_core::config::{Grant, PublishableKey, Quota};
use switchyard_core::token::{Algorithm, Permissions, SigningKey};
use switchyard_core::{Config, Dialect};
use switchyard_transports::ws::Routes;
use switchyard_transports::{DriverConfig, LineDialect, QuicConfig, TcpConfig, WsConfig};

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
}

/// The REST control plane (served on the WebSocket port).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// API keys for `/v1/*`.
    pub keys: Vec<crate::rest::ApiKey>,
    /// Require an API key for `/metrics` too (default: open, like `/healthz`).
    pub metrics_require_key: bool,
}

/// Graceful shutdown on SIGTERM/SIGINT.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShutdownSettings {
    /// The reconnect hint in `going_away`, milliseconds.
    pub retry_after_ms: u64,
    /// How long connections may take to drain after the close, milliseconds.
    pub drain_deadline_ms: u64,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            retry_after_ms: 5_000,
            drain_deadline_ms: 10_000,
        }
    }
}

/// Where to listen. A listener set to `""` is off.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Listen {
    /// WebSocket address (`/` speaks rtc-signaller, `/v1` JSON).
    pub ws: String,
    /// TCP line-protocol address; empty for none.
    pub tcp: String,
    /// The TCP listener's dialect: `rtc-signaller`, `json`, `broadcaster` or `auto` (first line `hello <dialect>`).
    pub tcp_dialect: String,
    /// QUIC (UDP) address; empty for none. ALPN picks the dialect.
    pub quic: String,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            ws: "127.0.0.1:8080".into(),
            tcp: String::new(),
            tcp_dialect: "auto".into(),
            quic: String::new(),
        }
    }
}

/// WebSocket settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ws {
    /// Ping interval, milliseconds.
    pub ping_interval_ms: u64,
    /// How much longer than the ping interval a silent peer is kept, milliseconds.
    pub pong_timeout_ms: u64,
    /// Time from accept to a completed upgrade, milliseconds.
    pub handshake_timeout_ms: u64,
    /// Path → dialect name.
    pub paths: BTreeMap<String, String>,
    /// Browser origins allowed to open WebSockets (`["https://app.example.com"]`, `"*"`
    /// for any); empty allows every origin. Requests without `Origin` are not browsers
    /// and are always allowed.
    pub allowed_origins: Vec<String>,
    /// Networks of reverse proxies whose `X-Forwarded-For` names the client
    /// (`["127.0.0.1/32", "10.0.0.0/8"]`). Empty: the socket's peer is the client.
    pub trusted_proxies: Vec<String>,
}

impl Default for Ws {
    fn default() -> Self {
        let d = WsConfig::default();
        Self {
            ping_interval_ms: millis(d.ping_interval),
            pong_timeout_ms: millis(d.pong_timeout),
            handshake_timeout_ms: millis(d.handshake_timeout),
            paths: [
                ("/", "rtc-signaller"),
                ("/v1", "json"),
                ("/broadcaster", "broadcaster"),
            ]
            .into_iter()
            .map(|(p, d)| (p.to_owned(), d.to_owned()))
            .collect(),
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// QUIC settings.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Quic {
    /// PEM certificate chain, leaf first. With `key_file`; both empty: a fresh
    /// self-signed dev certificate for localhost and 127.0.0.1 at every start.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
    /// Where the dev certificate's PEM is written for clients to trust (its DER goes
    /// beside it, `.der`); empty: `switchyard-dev-cert.pem` in the temp directory.
    pub dev_cert_file: String,
    /// A peer silent this long is dead (the server pings every third of it), ms.
    pub idle_timeout_ms: u64,
    /// Time from the first packet to a completed handshake and an opened stream, ms.
    pub handshake_timeout_ms: u64,
}

impl Default for Quic {
    fn default() -> Self {
        let d = QuicConfig::default();
        Self {
            cert_file: String::new(),
            key_file: String::new(),
            dev_cert_file: String::new(),
            idle_timeout_ms: millis(d.idle_timeout),
            handshake_timeout_ms: millis(d.handshake_timeout),
        }
    }
}

/// TLS on the WebSocket/HTTP listener (`wss://`, `https://`). Both files, or neither
/// (plain: e.g. behind a TLS-terminating reverse proxy).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: String,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

impl TlsSettings {
    /// Whether TLS is configured.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty()
    }
}

/// Driver bounds.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Driver {
    /// Connections at once across all listeners; keep it below the open-files limit.
    pub max_connections: usize,
    /// Frames queued per connection before it is closed as a slow consumer (4013).
    pub outbound_queue: usize,
    /// The runtime's worker threads; 0: one per core. 1 pins the whole server to one
    /// thread (benchmarks on one core, small containers).
    pub worker_threads: usize,
}

impl Default for Driver {
    fn default() -> Self {
        let d = DriverConfig::default();
        Self {
            max_connections: d.max_connections,
            outbound_queue: d.outbound_queue,
            worker_threads: 0,
        }
    }
}

/// Authentication.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Auth {
    /// Allow connections without credentials (every channel, every permission).
    pub anonymous: bool,
    /// Clock leeway for `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Time to authenticate in-band, milliseconds.
    pub auth_timeout_ms: u64,
    /// Signing keys.
    pub keys: Vec<KeySettings>,
    /// Publishable keys.
    pub publishable_keys: Vec<PublishableSettings>,
    /// Where access tokens issued over REST (`POST /v1/access-tokens`) are kept, as
    /// JSON holding each secret's SHA-256 only; replaced atomically on every change.
    /// Empty: REST-issued tokens live in memory and are gone after a restart.
    pub access_token_file: String,
    /// Access tokens written into the config (`switchyard access-token new` prints
    /// the block).
    pub access_tokens: Vec<AccessTokenSettings>,
    /// The `aud` a Broadcaster connection's token must name; "" for no such check.
    pub broadcaster_audience: String,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            anonymous: false,
            leeway_secs: 5,
            require_exp: true,
            auth_timeout_ms: 10_000,
            keys: Vec::new(),
            publishable_keys: Vec::new(),
            access_token_file: String::new(),
            access_tokens: Vec::new(),
            broadcaster_audience: "broadcaster".into(),
        }
    }
}

/// One access token in the config: `AT_<id>_<secret>`, held as the secret's SHA-256.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessTokenSettings {
    /// The token's id.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Allowed tenants; the first is the connection's own. Empty: the default tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Patterns it may publish to.
    #[serde(default)]
    pub publish: Vec<String>,
    /// Patterns it may subscribe to.
    #[serde(default)]
    pub subscribe: Vec<String>,
    /// Permissions (default: publish, subscribe, presence).
    #[serde(default)]
    pub permissions: Option<Vec<String>>,
    /// Client networks allowed (`10.0.0.0/8`); empty: any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Browser origins allowed (exact); empty: any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Expiry, unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
}

impl AccessTokenSettings {
    /// The core's view of this token.
    pub fn to_core(&self) -> Result<AccessToken, SettingsError> {
        crate::access_store::Spec {
            id: &self.id,
            secret_sha256: &self.secret_sha256,
            tenants: &self.tenants,
            publish: &self.publish,
            subscribe: &self.subscribe,
            permissions: self.permissions.as_deref(),
            allowed_ips: &self.allowed_ips,
            allowed_origins: &self.allowed_origins,
            expires_at: self.expires_at,
        }
        .to_core()
        .map_err(|e| SettingsError::Invalid(format!("access token {}: {e}", self.id)))
    }
}

/// One signing key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    /// Key id (the JWT header's `kid`).
    pub kid: String,
    /// The shared secret.
    pub secret: String,
    /// `HS256` (default), `HS384` or `HS512`.
    #[serde(default = "default_algorithm")]
    pub algorithm: String,
    /// Required `aud`, if any.
    #[serde(default)]
    pub audience: Option<String>,
    /// Tenant forced on tokens signed with this key.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySettings")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

fn default_algorithm() -> String {
    "HS256".into()
}

/// One publishable key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishableSettings {
    /// The key clients pass as `?key=`.
    pub key: String,
    /// Granted patterns.
    pub channels: Vec<String>,
    /// Granted permissions.
    pub permissions: Vec<String>,
    /// Tenant.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for PublishableSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishableSettings")
            .field("key", &"<redacted>")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// The core's limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitSettings {
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Subscriptions per connection.
    pub max_channels_per_conn: usize,
    /// Frames per second per connection.
    pub message_rate: u32,
    /// Burst.
    pub message_burst: u32,
    /// Consecutive rate refusals before 4011.
    pub rate_close_after: u32,
    /// Peers per channel above which presence deltas stop.
    pub presence_cap: usize,
    /// Connections at once per client IP (0: no cap; close 4010).
    pub max_conns_per_ip: usize,
    /// Authenticated connections at once per tenant (0: no cap; close 4010).
    pub max_conns_per_tenant: usize,
    /// Connections at once per peer id (token `sub`) in a tenant (0: no cap; close 4010).
    pub max_conns_per_peer: usize,
    /// Messages per tenant per period (0 = no quota).
    pub quota_messages: u64,
    /// The quota period, seconds.
    pub quota_period_secs: u64,
    /// Reserved channel prefixes.
    pub reserved_prefixes: Vec<String>,
    /// Tenant of connections whose credentials name none.
    pub default_tenant: String,
}

impl Default for LimitSettings {
    fn default() -> Self {
        let c = Config::default();
        let l = &c.limits;
        Self {
            max_frame_bytes: l.max_frame_bytes,
            max_channels_per_conn: l.max_channels_per_conn,
            message_rate: l.message_rate,
            message_burst: l.message_burst,
            rate_close_after: l.rate_close_after,
            presence_cap: l.presence_cap,
            max_conns_per_ip: l.max_conns_per_ip,
            max_conns_per_tenant: l.max_conns_per_tenant,
            max_conns_per_peer: l.max_conns_per_peer,
            quota_messages: 0,
            quota_period_secs: 3600,
            reserved_prefixes: c.reserved_prefixes.clone(),
            default_tenant: c.default_tenant.clone(),
        }
    }
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

impl Settings {
    /// Parses a TOML document, then applies `env` overrides (`SWITCHYARD_*`).
    pub fn from_toml(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, SettingsError> {
        let mut doc: toml::Table = text
            .parse()
            .map_err(|e| SettingsError::Parse(format!("{e}")))?;
        let mut extra_key: (Option<String>, Option<String>) = (None, None);
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            match rest.as_str() {
                // Not config keys: read by the binary itself.
                "log" => {}
                "key_id" => extra_key.0 = Some(value),
                "key_secret" => extra_key.1 = Some(value),
                _ => apply_env(&mut doc, &rest, &value)?,
            }
        }
        let mut settings: Self = toml::Value::Table(doc)
            .try_into()
            .map_err(|e: toml::de::Error| SettingsError::Parse(e.to_string()))?;
        match extra_key {
            (Some(kid), Some(secret)) => settings.auth.keys.push(KeySettings {
                kid,
                secret,
                algorithm: default_algorithm(),
                audience: None,
                tenant: None,
            }),
            (None, None) => {}
            _ => {
                return Err(SettingsError::Invalid(
                    "SWITCHYARD_KEY_ID and SWITCHYARD_KEY_SECRET go together".into(),
                ));
            }
        }
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what parsing cannot: addresses, dialect names, and the core's own checks.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for addr in [&self.listen.ws, &self.listen.tcp, &self.listen.quic] {
            if !addr.is_empty() {
                addr.parse::<SocketAddr>()
                    .map_err(|e| SettingsError::Invalid(format!("listen address {addr:?}: {e}")))?;
            }
        }
        self.tcp_config()?;
        self.ws_config()?;
        if self.quic.cert_file.is_empty() != self.quic.key_file.is_empty() {
            return Err(SettingsError::Invalid(
                "quic: cert_file and key_file go together".into(),
            ));
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return Err(SettingsError::Invalid(
                "tls: cert_file and key_file go together".into(),
            ));
        }
        if self.quic.idle_timeout_ms == 0 {
            return Err(SettingsError::Invalid(
                "quic: idle_timeout_ms must be above 0".into(),
            ));
        }
        let core = self.core_config()?;
        #[allow(clippy::disallowed_methods)]
        switchyard_core::Hub::new(core, std::time::Instant::now(), 0)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// What in `next` differs from `self` (the config a server started with) that a
    /// reload cannot apply: the listeners, their `[ws]` and `[quic]` details, the
    /// driver's bounds and the token file are read once, at start, and the listeners
    /// size their frame reads by `max_frame_bytes` at start. Empty when a reload
    /// applies all of `next`.
    pub fn restart_only_changes(&self, next: &Self) -> Vec<&'static str> {
        let (q, nq) = (&self.quic, &next.quic);
        [
            ("[listen]", self.listen != next.listen),
            ("[ws]", self.ws != next.ws),
            (
                "[quic] idle_timeout_ms, handshake_timeout_ms or dev_cert_file",
                (q.idle_timeout_ms, q.handshake_timeout_ms, &q.dev_cert_file)
                    != (
                        nq.idle_timeout_ms,
                        nq.handshake_timeout_ms,
                        &nq.dev_cert_file,
                    ),
            ),
            (
                "[quic] cert_file on or off",
                q.cert_file.is_empty() != nq.cert_file.is_empty(),
            ),
            ("[tls] on or off", self.tls.enabled() != next.tls.enabled()),
            ("[driver]", self.driver != next.driver),
            (
                "[auth] access_token_file",
                self.auth.access_token_file != next.auth.access_token_file,
            ),
            (
                "[limits] max_frame_bytes above its value at start",
                next.limits.max_frame_bytes > self.limits.max_frame_bytes,
            ),
        ]
        .into_iter()
        .filter_map(|(what, changed)| changed.then_some(what))
        .collect()
    }

    /// The core's configuration.
    pub fn core_config(&self) -> Result<Config, SettingsError> {
        let mut c = Config::default();
        let l = &self.limits;
        c.limits.max_frame_bytes = l.max_frame_bytes;
        c.limits.max_channels_per_conn = l.max_channels_per_conn;
        c.limits.message_rate = l.message_rate;
        c.limits.message_burst = l.message_burst;
        c.limits.rate_close_after = l.rate_close_after;
        c.limits.presence_cap = l.presence_cap;
        c.limits.max_conns_per_ip = l.max_conns_per_ip;
        c.limits.max_conns_per_tenant = l.max_conns_per_tenant;
        c.limits.max_conns_per_peer = l.max_conns_per_peer;
        c.limits.quota = (l.quota_messages > 0).then(|| Quota {
            messages: l.quota_messages,
            period: Duration::from_secs(l.quota_period_secs.max(1)),
        });
        c.reserved_prefixes = l.reserved_prefixes.clone();
        c.default_tenant = l.default_tenant.clone();
        let a = &self.auth;
        c.auth.leeway_secs = a.leeway_secs;
        c.auth.require_exp = a.require_exp;
        c.auth.auth_timeout = Duration::from_millis(a.auth_timeout_ms);
        c.auth.anonymous = a.anonymous.then(Grant::everything);
        c.auth.broadcaster_audience =
            (!a.broadcaster_audience.is_empty()).then(|| a.broadcaster_audience.clone());
        c.auth.keys = a
            .keys
            .iter()
            .map(|k| {
                Ok(SigningKey {
                    kid: k.kid.clone(),
                    secret: k.secret.as_bytes().to_vec(),
                    algorithm: k.algorithm.parse::<Algorithm>().map_err(|_| {
                        SettingsError::Invalid(format!(
                            "key {}: unknown algorithm {}",
                            k.kid, k.algorithm
                        ))
                    })?,
                    audience: k.audience.clone(),
                    tenant: k.tenant.clone(),
                })
            })
            .collect::<Result<_, SettingsError>>()?;
        c.auth.publishable_keys = a
            .publishable_keys
            .iter()
            .map(|k| {
                Ok(PublishableKey {
                    key: k.key.clone(),
                    grant: Grant {
                        channels: k.channels.clone(),
                        permissions: parse_permissions(&k.permissions)?,
                        tenant: k.tenant.clone(),
                    },
                })
            })
            .collect::<Result<_, SettingsError>>()?;
        c.auth.access_tokens = a
            .access_tokens
            .iter()
            .map(AccessTokenSettings::to_core)
            .collect::<Result<_, _>>()?;
        Ok(c)
    }

    /// The driver's configuration.
    pub fn driver_config(&self) -> DriverConfig {
        let mut d = DriverConfig::default();
        d.max_connections = self.driver.max_connections;
        d.outbound_queue = self.driver.outbound_queue;
        d
    }

    /// The WebSocket listener's configuration.
    pub fn ws_config(&self) -> Result<WsConfig, SettingsError> {
        for (path, dialect) in &self.ws.paths {
            if Dialect::from_name(dialect).is_none() {
                return Err(SettingsError::Invalid(format!(
                    "ws path {path}: unknown dialect {dialect}"
                )));
            }
        }
        let mut ws = WsConfig::default();
        ws.routes = Routes::new(self.ws.paths.clone());
        ws.ping_interval = Duration::from_millis(self.ws.ping_interval_ms);
        ws.pong_timeout = Duration::from_millis(self.ws.pong_timeout_ms);
        ws.handshake_timeout = Duration::from_millis(self.ws.handshake_timeout_ms);
        ws.allowed_origins = self.ws.allowed_origins.clone();
        ws.trusted_proxies = self
            .ws
            .trusted_proxies
            .iter()
            .map(|net| {
                net.parse()
                    .map_err(|e| SettingsError::Invalid(format!("ws.trusted_proxies {net:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ws)
    }

    /// The QUIC listener's configuration (its TLS identity is the server's business).
    pub fn quic_config(&self) -> QuicConfig {
        let mut q = QuicConfig::default();
        q.idle_timeout = Duration::from_millis(self.quic.idle_timeout_ms);
        q.handshake_timeout = Duration::from_millis(self.quic.handshake_timeout_ms);
        q
    }

    /// The TCP listener's configuration.
    pub fn tcp_config(&self) -> Result<TcpConfig, SettingsError> {
        let dialect = LineDialect::from_name(&self.listen.tcp_dialect).ok_or_else(|| {
            SettingsError::Invalid(format!("unknown tcp_dialect {}", self.listen.tcp_dialect))
        })?;
        Ok(TcpConfig::new(dialect))
    }
}

/// Sets `section.key` in `doc` from an environment value (`ws_listen`-style names
/// resolve against the known sections).
fn apply_env(doc: &mut toml::Table, name: &str, value: &str) -> Result<(), SettingsError> {
    const SECTIONS: [&str; 9] = [
        "listen", "ws", "quic", "tls", "driver", "auth", "limits", "api", "shutdown",
    ];
    let Some((section, key)) = SECTIONS.iter().find_map(|s| {
        name.strip_prefix(s)
            .and_then(|r| r.strip_prefix('_'))
            .map(|k| (*s, k))
    }) else {
        return Err(SettingsError::Invalid(format!(
            "{ENV_PREFIX}{}: no such config section",
            name.to_ascii_uppercase()
        )));
    };
    // Numbers, booleans and arrays parse as TOML; anything else is a string.
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let table = doc
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(table) = table else {
        return Err(SettingsError::Invalid(format!(
            "[{section}] is not a table"
        )));
    };
    table.insert(key.to_owned(), parsed);
    Ok(())
}

fn parse_permissions(names: &[String]) -> Result<Permissions, SettingsError> {
    names.iter().try_fold(Permissions::NONE, |acc, n| {
        Permissions::from_name(n)
            .map(|p| acc | p)
            .ok_or_else(|| SettingsError::Invalid(format!("unknown permission {n}")))
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A commented example config with a fresh key, for `switchyard genconfig`.
pub fn example(kid: &str, secret: &str) -> String {
    format!(
        r#"# switchyard.toml: every key is optional; these are the defaults unless noted.
# Any key can be overridden by SWITCHYARD_<SECTION>_<KEY>, e.g. SWITCHYARD_LISTEN_WS.

[listen]
ws = "127.0.0.1:8080"        # WebSocket: "/" speaks rtc-signaller, "/v1" JSON, "/broadcaster" The Broadcaster
tcp = ""                     # TCP line protocol, e.g. "127.0.0.1:7000"; "" = off
tcp_dialect = "auto"         # rtc-signaller | json | broadcaster | auto (first line: hello <dialect>)
quic = ""                    # QUIC (UDP), e.g. "127.0.0.1:4433"; "" = off; ALPN picks the dialect

[ws]
ping_interval_ms = 25000
pong_timeout_ms = 10000
handshake_timeout_ms = 10000
paths = {{ "/" = "rtc-signaller", "/v1" = "json", "/broadcaster" = "broadcaster" }}
trusted_proxies = []         # e.g. ["127.0.0.1/32"]: their X-Forwarded-For names the client
allowed_origins = []         # e.g. ["https://app.example.com"]; [] = any (no Origin = not a browser: allowed)

[quic]
cert_file = ""               # PEM chain; "" with key_file "" = self-signed dev certificate
key_file = ""
dev_cert_file = ""           # where the dev certificate's PEM (and .der) go; "" = temp dir
idle_timeout_ms = 30000      # a silent peer is dropped (its room gets the leave)
handshake_timeout_ms = 10000

[tls]                        # the WebSocket/HTTP port: wss:// and https:// (TLS 1.3)
cert_file = ""               # PEM chain, leaf first; "" with key_file "" = plain ws:// and http://
key_file = ""                # (e.g. behind a TLS-terminating reverse proxy)

[driver]
max_connections = 10000      # keep below the process's open-files limit
outbound_queue = 1024        # frames per connection before close 4013 (slow consumer)
worker_threads = 0           # runtime threads; 0 = one per core

[auth]
anonymous = false            # true: connections without credentials get every permission
leeway_secs = 5
require_exp = true
auth_timeout_ms = 10000
access_token_file = ""       # where REST-issued access tokens (AT_…) persist, hashed; "" = memory only
broadcaster_audience = "broadcaster"  # the aud Broadcaster tokens must name; "" = no check

[[auth.keys]]
kid = "{kid}"
secret = "{secret}"
algorithm = "HS256"
# audience = "switchyard"
# tenant = "acme"

# [[auth.publishable_keys]]
# key = "pk_live_example"
# channels = ["public/*"]
# permissions = ["subscribe"]

# [[auth.access_tokens]]     # fastpubsub-style AT_<id>_<secret>; `switchyard access-token new` prints one
# id = "k7f3a9c2e1d04b58"
# secret_sha256 = "<64 hex digits>"
# tenants = ["acme"]         # the first is the connection's own; requests may name the others
# publish = ["updates/*"]
# subscribe = ["updates/**"]
# allowed_ips = ["10.0.0.0/8"]
# allowed_origins = ["https://app.example.com"]
# expires_at = 1767225600    # unix seconds

[limits]
max_frame_bytes = 65536
max_channels_per_conn = 100
message_rate = 50
message_burst = 100
rate_close_after = 20
presence_cap = 1000
max_conns_per_ip = 0         # 0 = no cap; over a cap: close 4010
max_conns_per_tenant = 0
max_conns_per_peer = 0
quota_messages = 0           # per tenant per period; 0 = no quota
quota_period_secs = 3600
reserved_prefixes = ["_system/", "_internal/", "_metered/"]
default_tenant = "default"

[api]
metrics_require_key = false  # /metrics and /healthz are open by default; /v1/* need a key
# [[api.keys]]
# id = "ak_ops"
# secret = "change-me"
# tenant = "default"         # optional: the key acts on this tenant only

[shutdown]
retry_after_ms = 5000        # the going_away hint
drain_deadline_ms = 10000    # how long connections may take to flush and close
"#
    )
}
