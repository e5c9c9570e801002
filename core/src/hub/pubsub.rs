//! JWT-scoped pub/sub: subscribe, unsubscribe, publish, send.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::fanout::{Frame, Frames};
use super::{Departure, Event, Hub, SubOpts};
use crate::codes::ErrorCode;
use crate::ids::{ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::token::Permissions;
use crate::wire::broadcaster::{Answer, Push, Stamp};
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

/// One channel message, before it is encoded per dialect.
pub(super) struct Message<'a> {
    /// The channel (or room) name.
    pub(super) channel: &'a str,
    /// The sender (`_server` for the control plane).
    pub(super) from: &'a PeerId,
    /// The sender's presence metadata, for `fromMetadata`.
    pub(super) meta: &'a Map<String, Value>,
    pub(super) payload: &'a Payload<'a>,
    /// The Broadcaster event name, when the publisher gave one.
    pub(super) event: Option<&'a str>,
    /// Message id and time (shown to Broadcaster peers).
    pub(super) stamp: Stamp,
}

/// The encoder for a channel message: rtc-signaller peers get `own_frame` (an
/// rtc-signaller sender's bytes) or `/message|<from>|<data>` (`|<event>` appended
/// when there is one); JSON peers get `message` (with `event` when there is one, and
/// `fromMetadata` for subscriptions that asked for it); Broadcaster peers get a push
/// whose `payload` is what JSON peers get as `data`, with event `message` unless the
/// publisher named one.
pub(super) fn message_frames<'a>(
    m: Message<'a>,
    own_frame: Option<&'a Bytes>,
) -> impl FnMut(Dialect, bool) -> Option<Frame> + 'a {
    let mut data: Option<Bytes> = None;
    move |dialect, with_meta| {
        if let (Dialect::Signaller, Some(frame)) = (dialect, own_frame) {
            return Some(frame.clone().into());
        }
        let data = data.get_or_insert_with(|| m.payload.json());
        Some(match dialect {
            Dialect::Signaller => signaller_message(None, m.from, data, m.event).into(),
            Dialect::Json => json::message(
                m.channel,
                m.from.as_str(),
                data,
                m.event,
                with_meta.then_some(m.meta),
            )
            .into(),
            Dialect::Broadcaster => Frame::Sequenced(Push::new(
                &m.stamp,
                m.channel,
                m.event.unwrap_or("message"),
                data,
            )),
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
/// message: how JSON traffic looks to rtc-signaller peers. A Broadcaster event name
/// follows as one more argument, a JSON string.
fn signaller_message(
    target: Option<&PeerId>,
    from: &PeerId,
    data: &[u8],
    event: Option<&str>,
) -> Bytes {
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
    if let Some(event) = event {
        out.extend_from_slice(b"|");
        let event = serde_json::to_vec(event).expect("strings serialise");
        signaller::put_escaped_bytes(&mut out, &event);
    }
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
        let dialect = c.dialect;
        if dialect == Dialect::Broadcaster && pattern.is_wildcard() {
            return self.refuse_request(
                conn,
                ErrorCode::InvalidChannel,
                "wildcard channels are not part of The Broadcaster protocol",
                rid,
            );
        }
        let key = (tenant, pattern);
        let already = if key.1.is_wildcard() {
            c.patterns.contains(&key)
        } else {
            self.channel_id(&key.0, &s.channel)
                .is_some_and(|ch| c.subs.contains(&ch))
        };
        if already && dialect == Dialect::Broadcaster {
            return self.refuse_request(
                conn,
                ErrorCode::AlreadySubscribed,
                "already subscribed to this channel",
                rid,
            );
        }
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
        let wants_presence =
            grants.permissions.contains(Permissions::PRESENCE) && dialect != Dialect::Broadcaster;
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
            if dialect == Dialect::Broadcaster {
                let id = format!("sub-{:016x}", self.message_ids.next_u64());
                let unix_ms = self.unix_ms(self.now);
                let answer = Answer::Subscribed {
                    subscription_id: &id,
                    unix_ms,
                };
                self.answer(conn, rid, answer);
            } else {
                self.ack(conn, rid);
            }
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
        let removed = if pattern.is_wildcard() {
            let key = (tenant, pattern);
            let removed = self
                .conns
                .get_mut(&conn)
                .expect("live")
                .patterns
                .remove(&key);
            if removed {
                self.remove_pattern_sub(conn, &key.0, &key.1);
            }
            removed
        } else {
            let ch = self.channel_id(&tenant, &u.channel);
            match ch.filter(|ch| self.conns[&conn].subs.contains(ch)) {
                Some(ch) => {
                    self.conns.get_mut(&conn).expect("live").subs.remove(&ch);
                    self.depart(ch, conn, Departure::Unsubscribed);
                    true
                }
                None => false,
            }
        };
        // In JSON, unsubscribing from something you are not subscribed to is not an
        // error: the end state is what the client asked for. The Broadcaster answers
        // `NotFound`, as its clients expect of an unknown resource.
        if !removed && self.conns[&conn].dialect == Dialect::Broadcaster {
            return self.refuse_request(
                conn,
                ErrorCode::NotSubscribed,
                "not subscribed to this channel",
                rid,
            );
        }
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
        let stamp = self.stamp();
        let message = Message {
            channel: &p.channel,
            from: &peer,
            meta: &grants.metadata,
            payload: &payload,
            event: p.event.as_deref(),
            stamp,
        };
        let mut frames = Frames::new(message_frames(message, None));
        let deliveries = self.deliver(&tenant, &p.channel, Some(conn), &mut frames);
        self.answer(conn, rid, Answer::Published(&stamp));
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
        // The Broadcaster has no direct messages: its connections are not targets.
        let targets: Vec<(ConnId, Dialect, PeerId)> = self
            .peers
            .get(&(tenant, PeerId::new(&s.to)))
            .into_iter()
            .flatten()
            .filter(|&&t| t != conn && self.conns[&t].dialect != Dialect::Broadcaster)
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
                Dialect::Signaller => signaller_message(Some(&target_peer), &from, &s.data, None),
                Dialect::Json | Dialect::Broadcaster => json_frame
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

impl Hub {
    /// A fresh message id and the wall-clock time now.
    pub(super) fn stamp(&mut self) -> Stamp {
        Stamp {
            number: self.message_ids.next_u64(),
            unix_ms: self.unix_ms(self.now),
        }
    }
}
