//! The file's sections as structs, each with its defaults (an empty file is a valid
//! config), and the secrets' redacted `Debug`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use switchyard_core::Config;
use switchyard_transports::{DriverConfig, QuicConfig, WsConfig};

/// The REST control plane (served on the WebSocket port).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    /// API keys for `/v1/*`.
    pub keys: Vec<crate::rest::ApiKey>,
    /// Require an API key for `/metrics` too (default: open, like `/healthz`).
    pub metrics_require_key: bool,
}

/// The browser demo at `GET /demo`: two tabs find each other and talk peer to peer.
/// Off unless a config turns it on; the dev server (no config) turns it on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DemoSettings {
    /// Serve `/demo` and its assets.
    pub enabled: bool,
}

/// The operator's dashboard at `GET /dashboard`. The page itself holds nothing secret
/// (its data comes from `/v1/*` with an API key), but it is off unless a config turns
/// it on, like the demo; the dev server turns it on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DashboardSettings {
    /// Serve `/dashboard` and its assets.
    pub enabled: bool,
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
    /// gRPC (HTTP/2, `proto/switchyard.proto`) address; empty for none. TLS with
    /// `[tls]`'s certificate when it is set, plaintext HTTP/2 otherwise.
    pub grpc: String,
}

impl Default for Listen {
    fn default() -> Self {
        Self {
            ws: "127.0.0.1:8080".into(),
            tcp: String::new(),
            tcp_dialect: "auto".into(),
            quic: String::new(),
            grpc: String::new(),
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
    /// Seconds before a token's expiry that a JSON connection which has refreshed
    /// once is sent `token_expiring`; 0 turns the warning off.
    pub refresh_warning_secs: u64,
    /// Send `token_expiring` to every JSON connection, not only those that have
    /// refreshed once (only when all your clients know the frame).
    pub refresh_warning_all: bool,
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
            refresh_warning_secs: 30,
            refresh_warning_all: false,
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

/// The algorithm of a key that names none.
pub(super) fn default_algorithm() -> String {
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

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
