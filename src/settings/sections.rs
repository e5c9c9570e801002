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
///
/// Parsed through `AuthFile`, which sorts the file's `[[auth.keys]]` into
/// shared-secret [`Auth::keys`] and PEM [`Auth::public_keys`].
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "AuthFile")]
pub struct Auth {
    /// Allow connections without credentials (every channel, every permission).
    pub anonymous: bool,
    /// Clock leeway for `exp`/`nbf`, seconds.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Time to authenticate in-band, milliseconds.
    pub auth_timeout_ms: u64,
    /// Shared-secret signing keys (HS256/384/512): the `[[auth.keys]]` entries
    /// with a `secret`.
    pub keys: Vec<KeySettings>,
    /// Public keys read from PEM files (RS256, ES256, EdDSA): the `[[auth.keys]]`
    /// entries with a `public_key_file`.
    pub public_keys: Vec<PublicKeySettings>,
    /// A JSON Web Key Set file whose signature keys verify tokens beside `keys`
    /// and `public_keys`; read at start and at each reload (SIGHUP). Empty: none.
    pub jwks_file: String,
    /// The `aud` tokens under a `jwks_file` key must name, if any.
    pub jwks_audience: Option<String>,
    /// The tenant forced on tokens under a `jwks_file` key, if any.
    pub jwks_tenant: Option<String>,
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
            public_keys: Vec::new(),
            jwks_file: String::new(),
            jwks_audience: None,
            jwks_tenant: None,
            publishable_keys: Vec::new(),
            access_token_file: String::new(),
            access_tokens: Vec::new(),
            broadcaster_audience: "broadcaster".into(),
            refresh_warning_secs: 30,
            refresh_warning_all: false,
        }
    }
}

/// `[auth]` as written in the file: [`Auth`] with each `[[auth.keys]]` entry as
/// written, before it is sorted by the kind of key it names.
///
/// Implementation note: [`KeySettings`] keeps its fields (code outside this crate
/// builds it), so the public-key entries get a struct of their own and the file's
/// one table is split here.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AuthFile {
    anonymous: bool,
    leeway_secs: u64,
    require_exp: bool,
    auth_timeout_ms: u64,
    keys: Vec<KeyEntry>,
    jwks_file: String,
    jwks_audience: Option<String>,
    jwks_tenant: Option<String>,
    publishable_keys: Vec<PublishableSettings>,
    access_token_file: String,
    access_tokens: Vec<AccessTokenSettings>,
    broadcaster_audience: String,
    refresh_warning_secs: u64,
    refresh_warning_all: bool,
}

impl Default for AuthFile {
    fn default() -> Self {
        let a = Auth::default();
        Self {
            anonymous: a.anonymous,
            leeway_secs: a.leeway_secs,
            require_exp: a.require_exp,
            auth_timeout_ms: a.auth_timeout_ms,
            keys: Vec::new(),
            jwks_file: a.jwks_file,
            jwks_audience: a.jwks_audience,
            jwks_tenant: a.jwks_tenant,
            publishable_keys: a.publishable_keys,
            access_token_file: a.access_token_file,
            access_tokens: a.access_tokens,
            broadcaster_audience: a.broadcaster_audience,
            refresh_warning_secs: a.refresh_warning_secs,
            refresh_warning_all: a.refresh_warning_all,
        }
    }
}

/// One `[[auth.keys]]` entry as written: a `secret` for HS256/384/512, a
/// `public_key_file` for RS256, ES256 and EdDSA.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    kid: String,
    secret: Option<String>,
    #[serde(default = "default_algorithm")]
    algorithm: String,
    public_key_file: Option<String>,
    #[serde(default)]
    audience: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
}

impl TryFrom<AuthFile> for Auth {
    type Error = String;

    fn try_from(f: AuthFile) -> Result<Self, String> {
        let mut keys = Vec::new();
        let mut public_keys = Vec::new();
        for k in f.keys {
            let algorithm = k
                .algorithm
                .parse::<switchyard_core::token::Algorithm>()
                .map_err(|e| format!("key {}: {e}", k.kid))?;
            match (algorithm.is_hmac(), k.secret, k.public_key_file) {
                (true, Some(secret), None) => keys.push(KeySettings {
                    kid: k.kid,
                    secret,
                    algorithm: k.algorithm,
                    audience: k.audience,
                    tenant: k.tenant,
                }),
                (false, None, Some(public_key_file)) => public_keys.push(PublicKeySettings {
                    kid: k.kid,
                    algorithm: k.algorithm,
                    public_key_file,
                    audience: k.audience,
                    tenant: k.tenant,
                }),
                (true, None, _) => {
                    return Err(format!("key {}: {algorithm} needs a secret", k.kid));
                }
                (true, Some(_), Some(_)) => {
                    return Err(format!(
                        "key {}: {algorithm} is a shared secret; public_key_file is for RS256, ES256 and EdDSA",
                        k.kid
                    ));
                }
                (false, _, None) => {
                    return Err(format!(
                        "key {}: {algorithm} needs a public_key_file (a PEM public key)",
                        k.kid
                    ));
                }
                (false, Some(_), Some(_)) => {
                    return Err(format!(
                        "key {}: {algorithm} verifies with its public_key_file; it takes no secret",
                        k.kid
                    ));
                }
            }
        }
        Ok(Self {
            anonymous: f.anonymous,
            leeway_secs: f.leeway_secs,
            require_exp: f.require_exp,
            auth_timeout_ms: f.auth_timeout_ms,
            keys,
            public_keys,
            jwks_file: f.jwks_file,
            jwks_audience: f.jwks_audience,
            jwks_tenant: f.jwks_tenant,
            publishable_keys: f.publishable_keys,
            access_token_file: f.access_token_file,
            access_tokens: f.access_tokens,
            broadcaster_audience: f.broadcaster_audience,
            refresh_warning_secs: f.refresh_warning_secs,
            refresh_warning_all: f.refresh_warning_all,
        })
    }
}

/// One public signing key: its algorithm and the PEM file holding it.
#[derive(Clone, Debug)]
pub struct PublicKeySettings {
    /// Key id (the JWT header's `kid`).
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub algorithm: String,
    /// A PEM file with one `PUBLIC KEY` block (for RS256 also `RSA PUBLIC KEY`);
    /// not a certificate. Read at start and at each reload.
    pub public_key_file: String,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Tenant forced on tokens signed with this key.
    pub tenant: Option<String>,
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

/// One shared-secret signing key.
#[derive(Clone)]
pub struct KeySettings {
    /// Key id (the JWT header's `kid`).
    pub kid: String,
    /// The shared secret.
    pub secret: String,
    /// `HS256` (default), `HS384` or `HS512`.
    pub algorithm: String,
    /// Required `aud`, if any.
    pub audience: Option<String>,
    /// Tenant forced on tokens signed with this key.
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
