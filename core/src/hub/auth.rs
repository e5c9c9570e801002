//! Who a connection is: credentials at connect, in-band auth, grants and expiry.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Conn, Event, Hub, Timer, instant_at_unix};
use crate::codes::{CloseCode, ErrorCode};
use crate::config::{Config, ConfigError, Grant};
use crate::hub::Credentials;
use crate::ids::{ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::token::{Claims, KeySet, Permissions, TokenError, Verifier};
use crate::wire::{Command, Dialect, RequestId, json};

/// Where a connection stands.
#[derive(Debug)]
pub(super) enum AuthState {
    /// No credentials yet: only in-band auth is accepted, until the deadline.
    Pending,
    /// Authenticated with these grants.
    Ready(Arc<Grants>),
}

/// What a connection may do, from a token, a publishable key or the anonymous grant.
#[derive(Debug)]
pub(super) struct Grants {
    pub(super) channels: Vec<Pattern>,
    pub(super) permissions: Permissions,
    pub(super) tenant: Option<TenantId>,
    /// Presence metadata (without `iceServers`).
    pub(super) metadata: Arc<Map<String, Value>>,
    /// Only the peer's own `welcome` carries these.
    pub(super) ice_servers: Option<Value>,
    /// Token expiry, unix seconds.
    pub(super) expires_at: Option<u64>,
    /// The token's subject, which becomes the peer id.
    pub(super) subject: Option<String>,
}

impl Grants {
    pub(super) fn from_grant(g: &Grant, config: &Config) -> Result<Self, ConfigError> {
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
            channels,
            permissions: g.permissions,
            tenant: g.tenant.as_deref().map(TenantId::new),
            metadata: Arc::new(Map::new()),
            ice_servers: None,
            expires_at: None,
            subject: None,
        })
    }

    fn from_claims(c: Claims) -> Self {
        Self {
            channels: c.channels,
            permissions: c.permissions,
            tenant: c.tenant.as_deref().map(TenantId::new),
            metadata: Arc::new(c.metadata.unwrap_or_default()),
            ice_servers: c.ice_servers,
            expires_at: c.exp,
            subject: Some(c.sub),
        }
    }

    /// True if a grant allows `pattern`: a concrete channel must match a granted
    /// pattern; a wildcard subscription must be covered by one.
    pub(super) fn allows(&self, pattern: &Pattern) -> bool {
        if pattern.is_wildcard() {
            self.channels.iter().any(|g| g.covers(pattern))
        } else {
            self.channels.iter().any(|g| g.matches(pattern.as_str()))
        }
    }
}

/// Builds the token verifier from the configured keys (`None` when there are none).
pub(super) fn verifier(config: &Config) -> Result<Option<Verifier>, ConfigError> {
    if config.auth.keys.is_empty() {
        return Ok(None);
    }
    let keys =
        KeySet::new(config.auth.keys.clone()).map_err(|e| ConfigError::Keys(e.to_string()))?;
    Ok(Some(
        Verifier::new(keys)
            .with_leeway_secs(config.auth.leeway_secs)
            .with_require_exp(config.auth.require_exp)
            .with_max_channel_len(config.limits.max_channel_len),
    ))
}

impl Hub {
    /// Credentials offered at connect time.
    pub(super) fn on_open_credentials(&mut self, conn: ConnId, credentials: Credentials) {
        match credentials {
            Credentials::Token(token) => match self.verify(&token) {
                Ok(grants) => self.authenticate(conn, grants, None),
                Err(e) => self.fail_auth(conn, &e),
            },
            Credentials::Key(key) => match self.publishable.get(&key) {
                Some(g) => {
                    let grants = Arc::clone(g);
                    self.authenticate(conn, grants, None);
                }
                None => {
                    self.event(Event::AuthFailed {
                        conn,
                        reason: "unknown_key",
                    });
                    self.close(conn, CloseCode::INVALID_TOKEN, "unknown publishable key");
                }
            },
            Credentials::None => match &self.anonymous {
                Some(g) => {
                    let grants = Arc::clone(g);
                    self.authenticate(conn, grants, None);
                }
                None => {
                    let at = self.now + self.config.auth.auth_timeout;
                    self.arm(conn, at, Timer::AuthDeadline(conn));
                }
            },
        }
    }

    fn verify(&self, token: &str) -> Result<Arc<Grants>, TokenError> {
        let verifier = self.verifier.as_ref().ok_or(TokenError::UnknownKid)?;
        let claims = verifier.verify(token, self.unix_ms(self.now) / 1000)?;
        Ok(Arc::new(Grants::from_claims(claims)))
    }

    fn fail_auth(&mut self, conn: ConnId, e: &TokenError) {
        self.event(Event::AuthFailed {
            conn,
            reason: e.reason(),
        });
        if e.is_expired() {
            self.close(conn, CloseCode::TOKEN_EXPIRED, "token expired");
        } else {
            self.close(conn, CloseCode::INVALID_TOKEN, "invalid token");
        }
    }

    /// Makes `conn` authenticated: binds its tenant and (when known) its peer id, arms
    /// the expiry timer and, for the JSON dialect, sends `welcome`.
    fn authenticate(&mut self, conn: ConnId, grants: Arc<Grants>, request_id: Option<&RequestId>) {
        let tenant = grants
            .tenant
            .clone()
            .unwrap_or_else(|| TenantId::new(&self.config.default_tenant));
        let c = self.conns.get_mut(&conn).expect("live conn");
        let timers: Vec<_> = c
            .timers
            .iter()
            .copied()
            .filter(|(_, t)| matches!(t, Timer::AuthDeadline(_)))
            .collect();
        c.timers
            .retain(|(_, t)| !matches!(t, Timer::AuthDeadline(_)));
        for t in timers {
            self.timers.remove(&t);
        }
        let c = self.conns.get_mut(&conn).expect("live conn");
        c.tenant = tenant.clone();
        c.auth = AuthState::Ready(Arc::clone(&grants));
        let dialect = c.dialect;
        let peer = match (&grants.subject, dialect) {
            (Some(sub), _) => Some(PeerId::new(sub)),
            (None, Dialect::Signaller) => None, // bound by the first announce
            (None, _) => Some(PeerId::new(&self.ids.next_uuid())),
        };
        if let Some(peer) = &peer {
            self.bind_peer(conn, peer.clone());
        }
        if let Some(exp) = grants.expires_at {
            let unix = self.unix_ms(self.now);
            let at = instant_at_unix(
                self.now,
                unix,
                exp.saturating_add(self.config.auth.leeway_secs),
            );
            self.arm(conn, at, Timer::TokenExpiry(conn));
        }
        self.event(Event::Authenticated {
            conn,
            peer: peer.clone(),
            tenant,
        });
        if dialect == Dialect::Json {
            let l = &self.config.limits;
            let frame = json::welcome(&json::Welcome {
                peer_id: peer.as_ref().map_or("", PeerId::as_str),
                server_time: self.unix_ms(self.now) / 1000,
                expires_at: grants.expires_at,
                max_message_size: l.max_frame_bytes,
                ice_servers: grants.ice_servers.as_ref(),
                max_channels: l.max_channels_per_conn,
                message_rate: l.message_rate,
                message_burst: l.message_burst,
            });
            self.send(conn, frame);
            self.ack(conn, request_id);
        }
    }

    /// Binds a connection's peer id and indexes it for direct messages.
    pub(super) fn bind_peer(&mut self, conn: ConnId, peer: PeerId) {
        let c = self.conns.get_mut(&conn).expect("live conn");
        c.peer = Some(peer.clone());
        self.peers
            .entry((c.tenant.clone(), peer))
            .or_default()
            .insert(conn);
    }

    pub(super) fn is_authenticated(&self, conn: ConnId) -> bool {
        matches!(self.conns[&conn].auth, AuthState::Ready(_))
    }

    /// The grants of an authenticated connection.
    pub(super) fn grants(&self, conn: ConnId) -> Arc<Grants> {
        grants_of(&self.conns[&conn])
    }

    /// A command from a connection still waiting for credentials: only in-band auth
    /// (an `auth` frame, or an rtc-signaller announce carrying `token`) is accepted.
    pub(super) fn on_unauthenticated(&mut self, conn: ConnId, command: Command) {
        match command {
            Command::Auth(a) => match self.verify(&a.token.0) {
                Ok(grants) => self.authenticate(conn, grants, a.request_id.as_ref()),
                Err(e) => self.fail_auth(conn, &e),
            },
            Command::Announce(mut a) if a.token.is_some() => {
                let token = a.token.take().expect("checked");
                match self.verify(&token.0) {
                    Ok(grants) => {
                        self.authenticate(conn, grants, None);
                        self.on_announce(conn, a);
                    }
                    Err(e) => self.fail_auth(conn, &e),
                }
            }
            other => {
                let request_id = super::request_id(&other);
                self.refuse_request(
                    conn,
                    ErrorCode::Unauthenticated,
                    "authenticate first",
                    request_id.as_ref(),
                );
            }
        }
    }
}

pub(super) fn grants_of(c: &Conn) -> Arc<Grants> {
    match &c.auth {
        AuthState::Ready(g) => Arc::clone(g),
        AuthState::Pending => unreachable!("routing only runs for authenticated connections"),
    }
}
