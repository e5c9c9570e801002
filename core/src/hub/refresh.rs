//! Token refresh without a reconnect: a new token for the same peer and tenant
//! replaces a connection's grants and expiry, subscriptions the new grants no longer
//! allow end at once, and a connection that can refresh is warned before its token
//! expires.

use std::sync::Arc;
use std::time::Instant;

use super::auth::{Grants, Origin};
use super::{Departure, Event, Hub, Timer, instant_at_unix};
use crate::codes::{CloseCode, ErrorCode};
use crate::ids::{ConnId, TenantId};
use crate::pattern::Pattern;
use crate::token::Permissions;
use crate::wire::Auth;
use crate::wire::codec::Answer;

impl Hub {
    /// A JSON `refresh` (or a Broadcaster `auth` on an authenticated connection).
    ///
    /// The token must be valid now and be the kind the connection authenticated with
    /// (a JWT for the same `sub`, or an access token), for the connection's tenant.
    /// A refused one is answered with an error (`token_expired` or `invalid_token`)
    /// and changes nothing: the connection keeps its current token and is closed
    /// when that one expires. An accepted one replaces the grants and re-arms the
    /// expiry (and warning), is answered with the new expiry, and ends the
    /// subscriptions the new grants no longer allow.
    pub(super) fn on_refresh(&mut self, conn: ConnId, a: Auth) {
        let rid = a.request_id.as_ref();
        let grants = match self.verify_for(conn, &a.token.0) {
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
                let message = format!("refresh token refused: {e}");
                return self.refuse_request(conn, code, &message, rid);
            }
        };
        if let Err(message) = self.same_identity(conn, &grants) {
            return self.refuse_request(conn, ErrorCode::InvalidToken, message, rid);
        }
        let expires_at = grants.expires_at;
        self.conns
            .get_mut(&conn)
            .expect("routing only runs for live connections")
            .refreshes = true;
        self.authenticate(conn, Arc::clone(&grants), None);
        if !self.conns.contains_key(&conn) {
            return;
        }
        self.answer(conn, rid, Answer::Refreshed { expires_at });
        self.end_disallowed_subscriptions(conn, &grants);
        if !grants.permissions.contains(Permissions::PRESENCE) {
            // What stays subscribed no longer hears who comes and goes.
            self.dir.stop_presence(conn);
        }
    }

    /// Whether `grants` name the connection's own peer and tenant, with the kind of
    /// credential it has now; the refusal's message if not.
    fn same_identity(&self, conn: ConnId, grants: &Grants) -> Result<(), &'static str> {
        let current = self.grants(conn);
        let same_kind = matches!(
            (&current.origin, &grants.origin),
            (Origin::Token(_), Origin::Token(_)) | (Origin::Access(..), Origin::Access(..))
        );
        if !same_kind {
            return Err("a refresh needs a token of the kind this connection authenticated with");
        }
        let place = self.dir.place(conn);
        if current.subject != grants.subject
            || grants
                .subject
                .as_deref()
                .is_some_and(|sub| place.peer().is_none_or(|p| p.as_str() != sub))
        {
            return Err("the refresh token is for another peer id");
        }
        let tenant = grants
            .tenant
            .clone()
            .unwrap_or_else(|| TenantId::new(&self.config.default_tenant));
        if place.tenant() != &tenant {
            return Err("the refresh token is for another tenant");
        }
        Ok(())
    }

    /// Ends every subscription (exact or pattern) that `grants` no longer allow: the
    /// other members hear of it as of an unsubscribe, and the connection is told with
    /// an error naming the channel (where its dialect can say it).
    fn end_disallowed_subscriptions(&mut self, conn: ConnId, grants: &Grants) {
        let place = self.dir.place(conn);
        let own = place.tenant().clone();
        let allowed = |tenant: &TenantId, pattern: &Pattern| {
            grants.permissions.contains(Permissions::SUBSCRIBE)
                && (tenant == &own || grants.allows_tenant(&own, tenant.as_str()))
                && grants.allows(pattern, Permissions::SUBSCRIBE)
        };
        let max = self.config.limits.max_channel_len;
        let mut ended: Vec<(TenantId, String, bool)> = Vec::new();
        for id in place.subscriptions() {
            let Some(ch) = self.dir.channel(id) else {
                continue;
            };
            let keep = Pattern::parse(ch.name(), max).is_ok_and(|p| allowed(ch.tenant(), &p));
            if !keep {
                ended.push((ch.tenant().clone(), ch.name().to_string(), false));
            }
        }
        for (tenant, pattern) in place.patterns() {
            if !allowed(tenant, pattern) {
                ended.push((tenant.clone(), pattern.as_str().to_owned(), true));
            }
        }
        let codec = self.codec(conn);
        for (tenant, channel, wildcard) in ended {
            if wildcard {
                let pattern = Pattern::parse(&channel, max).expect("it parsed at subscribe");
                self.dir.unsubscribe_pattern(conn, &tenant, &pattern);
            } else {
                self.waiting.forget_sub(conn, &tenant, &channel);
                if let Some(Some(departed)) = self.dir.unsubscribe(conn, &tenant, &channel) {
                    self.tell_departure(departed, Departure::Unsubscribed);
                }
            }
            let message = "the refreshed token does not allow this channel: subscription ended";
            if let Some(frame) =
                codec.subscription_ended(&channel, ErrorCode::ChannelNotAuthorized, message)
            {
                self.send(conn, frame);
            }
            self.event(Event::Refused {
                conn,
                code: ErrorCode::ChannelNotAuthorized,
            });
        }
    }

    /// Arms the expiry of an authenticated connection's token (if it has one): the
    /// close at `exp` plus the leeway (a JWT's `exp` comes from another machine's
    /// clock; an access token's expiry is this server's own, exact), preceded by a
    /// `token_expiring` warning when the connection is to be warned.
    ///
    /// Implementation note: a connection has one timer at a time, so the warning is
    /// armed first and carries the close's instant; when it fires it sends the
    /// warning and arms the close. A warning whose time has passed (a token shorter
    /// than the warning period) is armed for now: the driver fires it at once.
    pub(super) fn arm_expiry(&mut self, conn: ConnId, grants: &Grants) {
        let Some(exp) = grants.expires_at else {
            return;
        };
        let unix = self.unix_ms(self.now);
        let leeway = match grants.origin {
            Origin::Token(_) => self.config.auth.leeway_secs,
            _ => 0,
        };
        let close_at = instant_at_unix(self.now, unix, exp.saturating_add(leeway));
        let auth = &self.config.auth;
        let warned = !auth.refresh_warning.is_zero()
            && self.codec(conn).abilities().warns_expiry
            && (auth.refresh_warning_all || self.conns[&conn].refreshes);
        let warn_at = instant_at_unix(self.now, unix, exp)
            .checked_sub(auth.refresh_warning)
            .unwrap_or(self.now)
            .max(self.now);
        if warned && warn_at < close_at {
            self.arm(warn_at, Timer::TokenWarning(conn, close_at));
        } else {
            self.arm(close_at, Timer::TokenExpiry(conn));
        }
    }

    /// The warning timer fired: tell the connection when its token expires and arm
    /// the close.
    pub(super) fn warn_expiry(&mut self, conn: ConnId, close_at: Instant) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let exp = super::auth::grants_of(c).expires_at;
        if let Some(frame) = exp.and_then(|exp| self.codec(conn).token_expiring(exp)) {
            self.send(conn, frame);
        }
        self.arm(close_at, Timer::TokenExpiry(conn));
    }

    /// The expiry timer fired: no refresh came in time.
    pub(super) fn expire(&mut self, conn: ConnId) {
        self.close(conn, CloseCode::TOKEN_EXPIRED, "token expired");
    }
}
