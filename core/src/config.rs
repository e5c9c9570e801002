//! What the hub is told at construction: limits and policy, no IO.

use std::time::Duration;

use crate::access::AccessToken;
use crate::token::{Permissions, SigningKey};

/// Hub-wide policy. Build it with `Config::default()` and change the fields you need.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Per-connection and per-frame limits.
    pub limits: Limits,
    /// Who may connect, and with what grants.
    pub auth: AuthConfig,
    /// Channel prefixes no client may use (`channel_reserved`).
    pub reserved_prefixes: Vec<String>,
    /// The tenant of connections whose credentials name none.
    pub default_tenant: String,
    /// Seed for the ids the hub invents (peer ids of anonymous and publishable-key
    /// peers, message and subscription ids). The core draws no randomness itself: a
    /// production driver seeds this from the OS's entropy at every start (the
    /// `switchyard` binary does), or every process hands out the same ids; tests
    /// and fuzzers fix it so runs are reproducible.
    pub id_seed: u64,
    /// The hub is one node of a cluster: it emits
    /// [`Output::Cluster`](crate::Output::Cluster) for what other nodes must hear and
    /// takes [`Input::Remote`](crate::Input::Remote). Off: nothing is emitted (one
    /// node, the default).
    pub cluster: bool,
    /// Which channels keep a history (the first rule whose pattern matches a channel
    /// applies), so that a reconnecting client can recover what it missed. Empty
    /// (the default): no channel has one.
    pub history: Vec<HistoryRule>,
}

/// How much of a channel's past the hub keeps: at most `size` messages, none older
/// than `ttl` on the hub's clock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRule {
    /// The channels it applies to: a name or a pattern (`chat/*`, `**`).
    pub channels: String,
    /// Messages kept per channel (at least 1).
    pub size: usize,
    /// How long a message is kept (more than zero).
    pub ttl: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            auth: AuthConfig::default(),
            reserved_prefixes: vec!["_system/".into(), "_internal/".into(), "_metered/".into()],
            default_tenant: "default".into(),
            id_seed: 0x5157_1C4A_11D5_EED5,
            cluster: false,
            history: Vec::new(),
        }
    }
}

/// Limits, advertised to clients where they can use them (`welcome`).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Limits {
    /// Largest frame accepted, counted on the whole frame; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Longest peer id.
    pub max_peer_id_len: usize,
    /// Longest channel (room) name or pattern.
    pub max_channel_len: usize,
    /// Subscriptions (exact and wildcard) one connection may hold.
    pub max_channels_per_conn: usize,
    /// Sustained frames per second per connection (token bucket refill).
    pub message_rate: u32,
    /// Frames a connection may send in a burst (token bucket size).
    pub message_burst: u32,
    /// Consecutive frames refused for rate before the connection is closed (4011).
    pub rate_close_after: u32,
    /// Messages (publish, send, room broadcast, `/to`) per tenant per period.
    pub quota: Option<Quota>,
    /// Peers in a channel above which presence deltas stop (see the protocol doc).
    pub presence_cap: usize,
    /// Connections at once from one IP address (0: no cap); one more is closed 4010.
    pub max_conns_per_ip: usize,
    /// Authenticated connections at once in one tenant (0: no cap); 4010.
    pub max_conns_per_tenant: usize,
    /// Connections at once of one peer id in a tenant (0: no cap); 4010.
    pub max_conns_per_peer: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_bytes: 64 * 1024,
            max_peer_id_len: 128,
            max_channel_len: 255,
            max_channels_per_conn: 100,
            message_rate: 50,
            message_burst: 100,
            rate_close_after: 20,
            quota: None,
            presence_cap: 1_000,
            max_conns_per_ip: 0,
            max_conns_per_tenant: 0,
            max_conns_per_peer: 0,
        }
    }
}

/// A message quota: at most `messages` per `period`, per tenant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Messages allowed per period.
    pub messages: u64,
    /// The period (windows are aligned to the hub's start).
    pub period: Duration,
}

/// Authentication policy.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AuthConfig {
    /// Live signing keys, selected by `kid`; several at once for rotation.
    pub keys: Vec<SigningKey>,
    /// Clock leeway for `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Refuse tokens without `exp`.
    pub require_exp: bool,
    /// Publishable keys (`?key=`), each with fixed grants.
    pub publishable_keys: Vec<PublishableKey>,
    /// Grants for connections that offer no credentials; `None` requires them.
    pub anonymous: Option<Grant>,
    /// How long a connection without credentials has to authenticate in-band.
    pub auth_timeout: Duration,
    /// Opaque access tokens (`AT_<id>_<secret>`), fastpubsub style, by id; revoked
    /// ones stay listed so that refusals can say so.
    pub access_tokens: Vec<AccessToken>,
    /// The `aud` every token of a Broadcaster connection must name (The Broadcaster
    /// issues its client tokens for `"broadcaster"`); `None` checks only what the
    /// signing key itself requires.
    pub broadcaster_audience: Option<String>,
    /// How long before its token expires a connection is sent `token_expiring`, so
    /// it can `refresh` in time; zero turns the warning off. Only dialects with a
    /// frame for it (JSON) are warned, and only connections that have refreshed
    /// once, unless [`AuthConfig::refresh_warning_all`] is set: clients that never
    /// heard of the frame are not sent it.
    pub refresh_warning: Duration,
    /// Warn every JSON connection, not only those that have sent a `refresh`: for
    /// deployments whose clients all know `token_expiring`.
    pub refresh_warning_all: bool,
}

impl Default for AuthConfig {
    /// Open by default (like rtc-switchboard): anonymous peers get every permission
    /// on every channel. Servers exposed to others configure keys and set
    /// `anonymous` to `None`.
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            leeway_secs: 5,
            require_exp: true,
            publishable_keys: Vec::new(),
            anonymous: Some(Grant::everything()),
            auth_timeout: Duration::from_secs(10),
            access_tokens: Vec::new(),
            broadcaster_audience: Some("broadcaster".into()),
            refresh_warning: Duration::from_secs(30),
            refresh_warning_all: false,
        }
    }
}

/// Fixed grants: for publishable keys and anonymous connections.
#[derive(Clone, Debug, PartialEq)]
pub struct Grant {
    /// Channel patterns.
    pub channels: Vec<String>,
    /// Permissions.
    pub permissions: Permissions,
    /// Tenant, or the default tenant.
    pub tenant: Option<String>,
}

impl Grant {
    /// Every channel (`**`), every permission, default tenant.
    pub fn everything() -> Self {
        Self {
            channels: vec!["**".into()],
            permissions: Permissions::ALL,
            tenant: None,
        }
    }
}

/// A publishable key (`pk_…`): a public string that grants fixed, usually narrow,
/// rights without a backend minting tokens.
#[derive(Clone, PartialEq)]
pub struct PublishableKey {
    /// The key as clients send it.
    pub key: String,
    /// What it grants.
    pub grant: Grant,
}

impl std::fmt::Debug for PublishableKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishableKey")
            .field("key", &"<redacted>")
            .field("grant", &self.grant)
            .finish()
    }
}

/// Why a configuration cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The signing keys are unusable (duplicate or empty `kid`, empty secret).
    #[error("signing keys: {0}")]
    Keys(String),
    /// A grant names an invalid channel pattern.
    #[error("grant pattern {pattern:?}: {reason}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// Why it is invalid.
        reason: String,
    },
    /// The access tokens are unusable (a bad or duplicate id, a bad tenant name).
    #[error("access tokens: {0}")]
    AccessTokens(String),
    /// A limit is out of range.
    #[error("limit {0} must be positive")]
    Limit(&'static str),
    /// A history rule keeps nothing (`size` or `ttl` zero).
    #[error("history for {0:?}: size and ttl must be positive")]
    History(String),
}
