//! JWT-scoped pub/sub: subscribe, unsubscribe, publish, send.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::fanout::Frames;
use super::{Departure, Event, Hub, SubOpts};
use crate::codes::ErrorCode;
use crate::ids::{ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::token::Permissions;
use crate::wire::{Dialect, Publish, RequestId, Send, Subscribe, Unsubscribe, json, signaller};

/// What is being delivered, before it is encoded per dialect.
pub(super) enum Payload<'a> {
    /// A JSON value, as the bytes the client sent.
    Json(&'a Bytes),
    /// An rtc-signaller command; JSON peers see `{"command":..,"args":[..]}`.
    Signal {
        /// The command name.
        name: &'a str,
        /// The pipe-separated arguments after the sender.
        args: &'a [u8],
    },
}

impl Payload<'_> {
    /// The JSON value JSON peers get as `data`.
    fn json(&self) -> Bytes {
        match self {
            Self::Json(data) => (*data).clone(),
            Self::Signal { name, args } => {
                let value = serde_json::json!({
                    "command": name,
                    "args": signaller::args_json(args),
                });
                Bytes::from(serde_json::to_vec(&value).expect("Value serialises"))
            }
        }
    }
}

/// The encoder for a channel message: rtc-signaller peers get `own_frame` (an
/// rtc-signaller sender's bytes) or `/message|<from>|<data>`; JSON peers get
/// `message`, with `fromMetadata` for subscriptions that asked for it.
pub(super) fn message_frames<'a>(
    channel: &'a str,
    from: &'a PeerId,
    meta: &'a Map<String, Value>,
    payload: &'a Payload<'a>,
    own_frame: Option<&'a Bytes>,
) -> impl FnMut(Dialect, bool) -> Option<Bytes> + 'a {
    let mut data: Option<Bytes> = None;
    move |dialect, with_meta| {
        if let (Dialect::Signaller, Some(frame)) = (dialect, own_frame) {
            return Some(frame.clone());
        }
        let data = data.get_or_insert_with(|| payload.json());
        Some(match dialect {
            Dialect::Signaller => signaller_message(None, from, data),
            Dialect::Json => json::message(channel, from.as_str(), data, with_meta.then_some(meta)),
        })
    }
}

/// A direct message for a JSON peer.
pub(super) fn direct_frame(
    from: &PeerId,
    meta: &Map<String, Value>,
    payload: &Payload<'_>,
) -> Bytes {
    json::direct(from.as_str(), &payload.json(), Some(meta))
}

/// `/message|<from>|<data>`, or `/to|<target>|/message|<from>|<data>` for a direct
/// message: how JSON traffic looks to rtc-signaller peers.
fn signaller_message(target: Option<&PeerId>, from: &PeerId, data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + data.len());
    if let Some(target) = target {
        out.extend_from_slice(b"/to|");
        out.extend_from_slice(target.as_str().as_bytes());
        out.extend_from_slice(b"|");
    }
    out.extend_from_slice(b"/message|");
    out.extend_from_slice(from.as_str().as_bytes());
    out.extend_from_slice(b"|");
    signaller::put_escaped_bytes(&mut out, data);
    out.freeze()
}

impl Hub {
    pub(super) fn on_subscribe(&mut self, conn: ConnId, s: Subscribe) {
        let rid = s.request_id.as_ref();
        let Some(tenant) = self.request_tenant(conn, s.tenant.as_deref(), rid) else {
            return;
        };
        let Some(pattern) = self.checked_channel(conn, &s.channel, Permissions::SUBSCRIBE, rid)
        else {
            return;
        };
        let c = &self.conns[&conn];
        let key = (tenant, pattern);
        let already = if key.1.is_wildcard() {
            c.patterns.contains(&key)
        } else {
            self.channel_id(&key.0, &s.channel)
                .is_some_and(|ch| c.subs.contains(&ch))
        };
        if !already && c.subs.len() + c.patterns.len() >= self.config.limits.max_channels_per_conn {
            return self.refuse_request(
                conn,
                ErrorCode::ChannelLimitExceeded,
                "this connection is at its channel limit",
                rid,
            );
        }
        let opts = SubOpts {
            include_meta: s.include_sender_metadata,
            foreign: key.0 != c.tenant,
        };
        let grants = self.grants(conn);
        let wants_presence = grants.permissions.contains(Permissions::PRESENCE);
        if key.1.is_wildcard() {
            self.patterns
                .entry(key.0.clone())
                .or_default()
                .entry(key.1.clone())
                .or_default()
                .insert(conn, opts);
            self.conns
                .get_mut(&conn)
                .expect("live")
                .patterns
                .insert(key);
            self.ack(conn, rid);
        } else {
            let peer = self.conns[&conn]
                .peer
                .clone()
                .expect("JSON peers are bound at auth");
            let ch = self.channel_entry(&key.0, &s.channel);
            let metadata = Arc::clone(&grants.metadata);
            let new_peer = self.join(
                ch,
                conn,
                &peer,
                Arc::clone(&metadata),
                opts.include_meta,
                wants_presence,
            );
            self.conns.get_mut(&conn).expect("live").subs.insert(ch);
            self.ack(conn, rid);
            if wants_presence {
                self.send_snapshot(conn, ch);
            }
            if new_peer {
                self.announce_presence(ch, conn, &peer, &metadata, None);
            }
        }
        self.event(Event::Subscribed {
            conn,
            channel: s.channel,
        });
    }

    pub(super) fn on_unsubscribe(&mut self, conn: ConnId, u: Unsubscribe) {
        let rid = u.request_id.as_ref();
        let Some(tenant) = self.request_tenant(conn, u.tenant.as_deref(), rid) else {
            return;
        };
        let Ok(pattern) = Pattern::parse(&u.channel, self.config.limits.max_channel_len) else {
            return self.refuse_request(conn, ErrorCode::InvalidChannel, "invalid channel", rid);
        };
        if pattern.is_wildcard() {
            let key = (tenant, pattern);
            if self
                .conns
                .get_mut(&conn)
                .expect("live")
                .patterns
                .remove(&key)
            {
                self.remove_pattern_sub(conn, &key.0, &key.1);
            }
        } else {
            let ch = self.channel_id(&tenant, &u.channel);
            if let Some(ch) = ch.filter(|ch| self.conns[&conn].subs.contains(ch)) {
                self.conns.get_mut(&conn).expect("live").subs.remove(&ch);
                self.depart(ch, conn, Departure::Unsubscribed);
            }
        }
        // Unsubscribing from something you are not subscribed to is not an error:
        // the end state is what the client asked for.
        self.ack(conn, rid);
    }

    pub(super) fn on_publish(&mut self, conn: ConnId, p: Publish) {
        let rid = p.request_id.as_ref();
        let Some(tenant) = self.request_tenant(conn, p.tenant.as_deref(), rid) else {
            return;
        };
        let Some(pattern) = self.checked_channel(conn, &p.channel, Permissions::PUBLISH, rid)
        else {
            return;
        };
        if pattern.is_wildcard() {
            return self.refuse_request(
                conn,
                ErrorCode::InvalidChannel,
                "cannot publish to a pattern",
                rid,
            );
        }
        if !self.charge_quota_in(conn, &tenant, rid) {
            return;
        }
        let peer = self.conns[&conn].peer.clone().expect("bound at auth");
        let grants = self.grants(conn);
        let payload = Payload::Json(&p.data);
        let mut frames = Frames::new(message_frames(
            &p.channel,
            &peer,
            &grants.metadata,
            &payload,
            None,
        ));
        let deliveries = self.deliver(&tenant, &p.channel, Some(conn), &mut frames);
        self.ack(conn, rid);
        self.event(Event::Routed { conn, deliveries });
    }

    pub(super) fn on_send(&mut self, conn: ConnId, s: Send) {
        let rid = s.request_id.as_ref();
        let grants = self.grants(conn);
        if !grants.permissions.contains(Permissions::SEND) {
            return self.refuse_request(
                conn,
                ErrorCode::ActionNotPermitted,
                "send needs the send permission",
                rid,
            );
        }
        let c = &self.conns[&conn];
        let (tenant, from) = (c.tenant.clone(), c.peer.clone().expect("bound at auth"));
        let targets: Vec<(ConnId, Dialect, PeerId)> = self
            .peers
            .get(&(tenant, PeerId::new(&s.to)))
            .into_iter()
            .flatten()
            .filter(|&&t| t != conn)
            .map(|t| {
                let tc = &self.conns[t];
                (
                    *t,
                    tc.dialect,
                    tc.peer.clone().expect("indexed peers are bound"),
                )
            })
            .collect();
        if targets.is_empty() {
            return self.refuse_request(
                conn,
                ErrorCode::PeerNotFound,
                "no such peer is connected",
                rid,
            );
        }
        if !self.charge_quota(conn, rid) {
            return;
        }
        let deliveries = targets.len();
        let mut json_frame = None;
        for (target, dialect, target_peer) in targets {
            let frame = match dialect {
                Dialect::Signaller => signaller_message(Some(&target_peer), &from, &s.data),
                Dialect::Json => json_frame
                    .get_or_insert_with(|| {
                        json::direct(from.as_str(), &s.data, Some(&grants.metadata))
                    })
                    .clone(),
            };
            self.send(target, frame);
        }
        self.ack(conn, rid);
        self.event(Event::Routed { conn, deliveries });
    }

    /// Parses and authorises a channel (or pattern) for `permission`, refusing with the
    /// matching error code when it is not allowed.
    fn checked_channel(
        &mut self,
        conn: ConnId,
        channel: &str,
        permission: Permissions,
        rid: Option<&RequestId>,
    ) -> Option<Pattern> {
        let grants = self.grants(conn);
        if !grants.permissions.contains(permission) {
            self.refuse_request(
                conn,
                ErrorCode::ActionNotPermitted,
                "your permissions do not allow this",
                rid,
            );
            return None;
        }
        let pattern = match Pattern::parse(channel, self.config.limits.max_channel_len) {
            Ok(p) => p,
            Err(e) => {
                self.refuse_request(conn, ErrorCode::InvalidChannel, &e.to_string(), rid);
                return None;
            }
        };
        if self.is_reserved(channel) {
            self.refuse_request(
                conn,
                ErrorCode::ChannelReserved,
                "reserved channel prefix",
                rid,
            );
            return None;
        }
        if !grants.allows(&pattern, permission) {
            self.refuse_request(
                conn,
                ErrorCode::ChannelNotAuthorized,
                "channel not in your grants",
                rid,
            );
            return None;
        }
        Some(pattern)
    }

    /// The tenant a request acts in: the one it names, if the connection's grants
    /// allow it (else `tenant_not_authorized`), or the connection's own.
    fn request_tenant(
        &mut self,
        conn: ConnId,
        named: Option<&str>,
        rid: Option<&RequestId>,
    ) -> Option<TenantId> {
        let own = &self.conns[&conn].tenant;
        match named {
            None => Some(own.clone()),
            Some(name) if name == own.as_str() => Some(own.clone()),
            Some(name) if self.grants(conn).allows_tenant(own, name) => Some(TenantId::new(name)),
            Some(_) => {
                self.refuse_request(
                    conn,
                    ErrorCode::TenantNotAuthorized,
                    "tenant not in your grants",
                    rid,
                );
                None
            }
        }
    }

    /// Drops one wildcard subscription from its tenant's index.
    pub(super) fn remove_pattern_sub(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        pattern: &Pattern,
    ) {
        let Some(by_pattern) = self.patterns.get_mut(tenant) else {
            return;
        };
        if let Some(subs) = by_pattern.get_mut(pattern) {
            subs.remove(&conn);
            if subs.is_empty() {
                by_pattern.remove(pattern);
            }
        }
        if by_pattern.is_empty() {
            self.patterns.remove(tenant);
        }
    }
}
