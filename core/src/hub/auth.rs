//! Who a connection is: credentials at connect, in-band auth, grants and expiry.

use std::collections::BTreeMap;
use std::sync::Arc;

pub(super) use super::grants::{Grants, Origin};
use super::{Conn, Event, Hub, Timer};
use crate::access::{AccessError, AccessTable, Presented};
use crate::codes::{CloseCode, ErrorCode};
use crate::config::{Config, ConfigError};
use crate::hub::Credentials;
use crate::ids::{ConnId, PeerId, RESERVED_ID_PREFIX, TenantId};
use crate::token::{KeySet, TokenError, Verifier};
use crate::wire::codec::Welcome;
use crate::wire::{Command, RequestId};

/// Where a connection stands.
#[derive(Debug)]
pub(super) enum AuthState {
    /// No credentials yet: only in-band auth is accepted, until the deadline.
    Pending,
    /// Authenticated with these grants.
    Ready(Arc<Grants>),
}

/// Why credentials were refused: a JWT's reason or an access token's.
#[derive(Debug)]
pub(super) enum Refusal {
    Jwt(TokenError),
    Access(AccessError),
}

impl Refusal {
    pub(super) fn reason(&self) -> &'static str {
        match self {
            Self::Jwt(e) => e.reason(),
            Self::Access(e) => e.reason(),
        }
    }

    pub(super) fn is_expired(&self) -> bool {
        match self {
            Self::Jwt(e) => e.is_expired(),
            Self::Access(e) => *e == AccessError::Expired,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Jwt(e) => e.fmt(f),
            Self::Access(e) => e.fmt(f),
        }
    }
}

/// What the auth config turns into: the verifier and the fixed grants, built once.
#[derive(Debug)]
pub(super) struct Policy {
    /// `None` when no signing keys are configured: every token is refused.
    pub(super) verifier: Option<Verifier>,
    pub(super) anonymous: Option<Arc<Grants>>,
    pub(super) publishable: BTreeMap<String, Arc<Grants>>,
    /// Access tokens, and the grants of each, built once.
    pub(super) access: AccessTable,
    pub(super) access_grants: BTreeMap<String, Arc<Grants>>,
}

impl Policy {
    /// Validates `config` and builds the policy (also checks the limits the hub needs).
    pub(super) fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let l = &config.limits;
        if l.message_rate == 0 || l.message_burst == 0 {
            return Err(ConfigError::Limit("message_rate and message_burst"));
        }
        if l.max_frame_bytes == 0 || l.max_channels_per_conn == 0 {
            return Err(ConfigError::Limit(
                "max_frame_bytes and max_channels_per_conn",
            ));
        }
        let anonymous = config
            .auth
            .anonymous
            .as_ref()
            .map(|g| Grants::from_grant(g, config, Origin::Anonymous).map(Arc::new))
            .transpose()?;
        let publishable = config
            .auth
            .publishable_keys
            .iter()
            .map(|k| {
                let grants = Grants::from_grant(&k.grant, config, Origin::Key(k.key.clone()))?;
                Ok((k.key.clone(), Arc::new(grants)))
            })
            .collect::<Result<_, ConfigError>>()?;
        let access = AccessTable::new(config.auth.access_tokens.iter().cloned())
            .map_err(|e| ConfigError::AccessTokens(e.to_string()))?;
        let access_grants = config
            .auth
            .access_tokens
            .iter()
            .map(|t| Ok((t.id.clone(), Arc::new(Grants::from_access(t, config)?))))
            .collect::<Result<_, ConfigError>>()?;
        Ok(Self {
            verifier: verifier(config)?,
            anonymous,
            publishable,
            access,
            access_grants,
        })
    }

    /// Whether grants of this origin are still honoured by this policy.
    pub(super) fn still_allows(&self, origin: &Origin) -> bool {
        match origin {
            Origin::Token(kid) => self
                .verifier
                .as_ref()
                .is_some_and(|v| kid.as_deref().is_none_or(|k| v.keys().get(k).is_some())),
            Origin::Key(key) => self.publishable.contains_key(key),
            Origin::Anonymous => self.anonymous.is_some(),
            Origin::Access(id, hash) => self
                .access
                .get(id)
                .is_some_and(|t| !t.revoked && t.secret_sha256 == *hash),
        }
    }
}

/// Builds the token verifier from the configured keys (`None` when there are none).
fn verifier(config: &Config) -> Result<Option<Verifier>, ConfigError> {
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
            Credentials::Token(token) => match self.verify_for(conn, &token) {
                Ok(grants) => self.authenticate(conn, grants, None),
                Err(e) => self.fail_auth(conn, &e),
            },
            Credentials::Key(key) => match self.policy.publishable.get(&key) {
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
            // Some dialects always authenticate in band first (The Broadcaster has no
            // anonymous use), so the anonymous grant never applies to them.
            Credentials::None => match &self.policy.anonymous {
                Some(g) if self.codec(conn).abilities().anonymous => {
                    let grants = Arc::clone(g);
                    self.authenticate(conn, grants, None);
                }
                _ => {
                    let at = self.now + self.config.auth.auth_timeout;
                    self.arm(at, Timer::AuthDeadline(conn));
                }
            },
        }
    }

    /// Checks a token: an `AT_…` access token against the table (with the client's
    /// IP and origin), anything else as a JWT.
    fn verify(&self, conn: ConnId, token: &str) -> Result<Arc<Grants>, Refusal> {
        let unix_secs = self.unix_ms(self.now) / 1000;
        if token.starts_with(crate::access::PREFIX) {
            let c = &self.conns[&conn];
            let presented = Presented {
                unix_secs,
                ip: c.ip,
                origin: c.origin.as_deref(),
            };
            let t = self
                .policy
                .access
                .verify(token, &presented)
                .map_err(Refusal::Access)?;
            return Ok(Arc::clone(&self.policy.access_grants[&t.id]));
        }
        let verifier = self
            .policy
            .verifier
            .as_ref()
            .ok_or(Refusal::Jwt(TokenError::UnknownKid))?;
        let claims = verifier.verify(token, unix_secs).map_err(Refusal::Jwt)?;
        if claims.sub.starts_with(RESERVED_ID_PREFIX) {
            return Err(Refusal::Jwt(TokenError::InvalidClaims(format!(
                "peer ids starting with {RESERVED_ID_PREFIX:?} are reserved for the server"
            ))));
        }
        Ok(Arc::new(Grants::from_claims(claims)))
    }

    /// [`Hub::verify`], plus the configured Broadcaster audience for a Broadcaster
    /// connection's JWT. Access tokens carry no audience: the server issued them for
    /// itself, so they pass as they are.
    pub(super) fn verify_for(&self, conn: ConnId, token: &str) -> Result<Arc<Grants>, Refusal> {
        let grants = self.verify(conn, token)?;
        if let (true, Some(aud), Some(verifier), Origin::Token(_)) = (
            self.codec(conn).abilities().needs_audience,
            &self.config.auth.broadcaster_audience,
            &self.policy.verifier,
            &grants.origin,
        ) {
            verifier
                .require_audience(token, aud)
                .map_err(Refusal::Jwt)?;
        }
        Ok(grants)
    }

    fn fail_auth(&mut self, conn: ConnId, e: &Refusal) {
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
    pub(super) fn authenticate(
        &mut self,
        conn: ConnId,
        grants: Arc<Grants>,
        request_id: Option<&RequestId>,
    ) {
        // Whatever was armed (auth deadline, an earlier token's expiry) is replaced.
        self.timers.disarm(conn);
        let place = self.dir.place(conn);
        let (old_tenant, bound) = (place.tenant().clone(), place.peer().cloned());
        if bound.is_none() {
            // Callers check that a bound connection keeps its tenant.
            let tenant = grants
                .tenant
                .clone()
                .unwrap_or_else(|| TenantId::new(&self.config.default_tenant));
            self.dir.set_tenant(conn, tenant);
        }
        let codec = self.codec(conn);
        let tenant = self.dir.place(conn).tenant().clone();
        let c = self.conns.get_mut(&conn).expect("checked by the caller");
        let first = matches!(c.auth, AuthState::Pending);
        let was_counted = c.counted_tenant;
        c.auth = AuthState::Ready(Arc::clone(&grants));
        c.counted_tenant = true;
        if !was_counted || old_tenant != tenant {
            if was_counted {
                super::decrement(&mut self.per_tenant, &old_tenant);
            }
            let n = self.per_tenant.entry(tenant.clone()).or_default();
            *n += 1;
            let cap = self.config.limits.max_conns_per_tenant;
            if cap > 0 && *n > cap {
                return self.close(
                    conn,
                    CloseCode::OVER_CONCURRENT_LIMIT,
                    "too many connections in this tenant",
                );
            }
        }
        let is_bound = bound.is_some();
        let peer = match (bound, &grants.subject) {
            (Some(bound), _) => Some(bound),
            (None, Some(sub)) => Some(PeerId::new(sub)),
            (None, None) if codec.abilities().binds_by_announce => None,
            (None, None) => Some(PeerId::new(&self.ids.next_uuid())),
        };
        if let Some(peer) = &peer
            && !is_bound
            && !self.bind_peer(conn, peer.clone())
        {
            return;
        }
        self.arm_expiry(conn, &grants);
        self.event(Event::Authenticated {
            conn,
            peer: peer.clone(),
            tenant,
        });
        if first {
            let l = &self.config.limits;
            let welcome = codec.welcome(&Welcome {
                peer_id: peer.as_ref().map_or("", PeerId::as_str),
                server_time: self.unix_ms(self.now) / 1000,
                expires_at: grants.expires_at,
                max_message_size: l.max_frame_bytes,
                ice_servers: grants.ice_servers.as_ref(),
                max_channels: l.max_channels_per_conn,
                message_rate: l.message_rate,
                message_burst: l.message_burst,
            });
            if let Some(frame) = welcome {
                self.send(conn, frame);
            }
            self.ack(conn, request_id);
        }
    }

    /// An rtc-signaller announce that carries a `token`: the token (re)authenticates
    /// the connection before the announce is routed. A valid token replaces the grants
    /// and expiry (the v6 client repeats its announce data, token included, on every
    /// announce, so this is also how such a client refreshes its token); it must name
    /// the connection's peer id and tenant once they are bound. A refused token is
    /// answered with `/error` (`invalid_token` or `token_expired`) and the announce is
    /// dropped, but the connection stays open: the v6 client reconnects 50 ms after
    /// any close and would repeat the same token forever.
    pub(super) fn on_announce_with_token(&mut self, conn: ConnId, mut a: crate::wire::Announce) {
        let token = a.token.take().expect("caller checked");
        let grants = match self.verify_for(conn, &token.0) {
            Ok(grants) => grants,
            Err(e) => {
                self.event(Event::AuthFailed {
                    conn,
                    reason: e.reason(),
                });
                let code = if e.is_expired() {
                    ErrorCode::TokenExpired
                } else {
                    ErrorCode::InvalidToken
                };
                return self.refuse(conn, code, &format!("announce token refused: {e}"));
            }
        };
        let place = self.dir.place(conn);
        if let (Some(bound), Some(sub)) = (place.peer(), &grants.subject)
            && bound.as_str() != sub
        {
            return self.refuse(
                conn,
                ErrorCode::SenderMismatch,
                "the token is for another peer id",
            );
        }
        let tenant = grants
            .tenant
            .clone()
            .unwrap_or_else(|| TenantId::new(&self.config.default_tenant));
        if place.peer().is_some() && place.tenant() != &tenant {
            return self.refuse(
                conn,
                ErrorCode::InvalidToken,
                "the token is for another tenant",
            );
        }
        self.authenticate(conn, grants, None);
        if self.conns.contains_key(&conn) {
            self.on_announce(conn, a);
        }
    }
    /// Binds a connection's peer id and indexes it for direct messages. Over the
    /// per-peer cap the connection is closed with 4010 instead (returns false).
    pub(super) fn bind_peer(&mut self, conn: ConnId, peer: PeerId) -> bool {
        let conns = self.dir.bind(conn, peer.clone());
        if conns == 1 {
            let tenant = self.dir.place(conn).tenant().clone();
            self.tell_peer(&tenant, &peer, true);
        }
        let cap = self.config.limits.max_conns_per_peer;
        if cap > 0 && conns > cap {
            self.close(
                conn,
                CloseCode::OVER_CONCURRENT_LIMIT,
                "too many connections for this peer id",
            );
            return false;
        }
        true
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
            Command::Auth(a) => match self.verify_for(conn, &a.token.0) {
                Ok(grants) => self.authenticate(conn, grants, a.request_id.as_ref()),
                // A Broadcaster client reads the refusal as the answer to its `auth`
                // request and may try again (a refreshed token) until the auth
                // deadline, which stays armed.
                Err(e) if self.codec(conn).abilities().auth_retry => {
                    self.event(Event::AuthFailed {
                        conn,
                        reason: e.reason(),
                    });
                    self.refuse_request(
                        conn,
                        ErrorCode::Unauthenticated,
                        &format!("token refused: {e}"),
                        a.request_id.as_ref(),
                    );
                }
                Err(e) => self.fail_auth(conn, &e),
            },
            Command::Announce(a) if a.token.is_some() => self.on_announce_with_token(conn, a),
            other => {
                let request_id = super::request_id(&other);
                self.refuse_request(
                    conn,
                    ErrorCode::Unauthenticated,
                    "authenticate first",
                    request_id,
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
