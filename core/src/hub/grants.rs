//! What a connection may do: every kind of credential (a JWT, an access token, a
//! publishable key, the anonymous grant) maps into one [`Grants`], and the same code
//! checks it.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::access::AccessToken;
use crate::config::{Config, ConfigError, Grant};
use crate::ids::TenantId;
use crate::pattern::Pattern;
use crate::token::{Claims, Permissions};

/// What a connection may do, from a JWT, an access token, a publishable key or the
/// anonymous grant: every kind of credential maps into this one structure, and the
/// same code checks it.
#[derive(Debug)]
pub(super) struct Grants {
    /// Patterns the connection may publish to (JWT `channels` fill both lists).
    pub(super) publish: Vec<Pattern>,
    /// Patterns the connection may subscribe to (and rooms it may announce into).
    pub(super) subscribe: Vec<Pattern>,
    pub(super) permissions: Permissions,
    pub(super) tenant: Option<TenantId>,
    /// Further tenants a request may name (`tenant` on subscribe/publish), besides
    /// the connection's own. The channel lists apply in each of them.
    pub(super) tenants: Vec<TenantId>,
    /// Presence metadata (without `iceServers`).
    pub(super) metadata: Arc<Map<String, Value>>,
    /// Only the peer's own `welcome` carries these.
    pub(super) ice_servers: Option<Value>,
    /// Token expiry, unix seconds.
    pub(super) expires_at: Option<u64>,
    /// The token's subject, which becomes the peer id.
    pub(super) subject: Option<String>,
    /// Where the grants came from, so a reconfiguration can tell whose key is gone.
    pub(super) origin: Origin,
}

/// What authenticated a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Origin {
    /// A token signed with this key id.
    Token(Option<String>),
    /// This publishable key.
    Key(String),
    /// No credentials: the anonymous grant.
    Anonymous,
    /// The access token with this id and secret hash.
    Access(String, [u8; 32]),
}

impl Grants {
    pub(super) fn from_grant(
        g: &Grant,
        config: &Config,
        origin: Origin,
    ) -> Result<Self, ConfigError> {
        let channels = g
            .channels
            .iter()
            .map(|p| {
                Pattern::parse(p, config.limits.max_channel_len).map_err(|e| ConfigError::Pattern {
                    pattern: p.clone(),
                    reason: e.to_string(),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            publish: Vec::clone(&channels),
            subscribe: channels,
            permissions: g.permissions,
            tenant: g.tenant.as_deref().map(TenantId::new),
            tenants: Vec::new(),
            metadata: Arc::new(Map::new()),
            ice_servers: None,
            expires_at: None,
            subject: None,
            origin,
        })
    }

    pub(super) fn from_claims(c: Claims) -> Self {
        let mut publish = c.channels.clone();
        publish.extend(c.publish_channels);
        let mut subscribe = c.channels;
        subscribe.extend(c.subscribe_channels);
        Self {
            publish,
            subscribe,
            permissions: c.permissions,
            tenant: c.tenant.as_deref().map(TenantId::new),
            tenants: c.tenants.iter().map(|t| TenantId::new(t)).collect(),
            metadata: Arc::new(c.metadata.unwrap_or_default()),
            ice_servers: c.ice_servers,
            expires_at: c.exp,
            origin: Origin::Token(c.kid),
            subject: Some(c.sub),
        }
    }

    /// The grants of an access token (its first tenant is the connection's own).
    pub(super) fn from_access(t: &AccessToken, config: &Config) -> Result<Self, ConfigError> {
        let patterns = |list: &[String]| {
            list.iter()
                .map(|p| {
                    Pattern::parse(p, config.limits.max_channel_len).map_err(|e| {
                        ConfigError::Pattern {
                            pattern: p.clone(),
                            reason: e.to_string(),
                        }
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        for tenant in &t.tenants {
            if tenant.is_empty()
                || tenant.chars().count() > crate::token::MAX_ID_CHARS
                || tenant.chars().any(|c| c == '|' || c.is_control())
            {
                return Err(ConfigError::AccessTokens(format!(
                    "token {}: invalid tenant {tenant:?}",
                    t.id
                )));
            }
        }
        Ok(Self {
            publish: patterns(&t.publish)?,
            subscribe: patterns(&t.subscribe)?,
            permissions: t.permissions,
            tenant: t.tenants.first().map(|n| TenantId::new(n)),
            tenants: t.tenants.iter().map(|n| TenantId::new(n)).collect(),
            metadata: Arc::new(Map::new()),
            ice_servers: None,
            expires_at: t.expires_at,
            subject: None,
            origin: Origin::Access(t.id.clone(), t.secret_sha256),
        })
    }

    /// True if the grants allow `pattern` for `action` (publish, or subscribe and
    /// announce): a concrete channel must match a pattern of that list; a wildcard
    /// subscription must be covered by one.
    pub(super) fn allows(&self, pattern: &Pattern, action: Permissions) -> bool {
        let list = if action == Permissions::PUBLISH {
            &self.publish
        } else {
            &self.subscribe
        };
        if pattern.is_wildcard() {
            list.iter().any(|g| g.covers(pattern))
        } else {
            list.iter().any(|g| g.matches(pattern.as_str()))
        }
    }

    /// Whether a request may name `tenant`: the connection's own (`own`) or one of
    /// the further tenants its credentials list.
    pub(super) fn allows_tenant(&self, own: &TenantId, tenant: &str) -> bool {
        own.as_str() == tenant || self.tenants.iter().any(|t| t.as_str() == tenant)
    }
}
