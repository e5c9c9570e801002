//! JWT-scoped pub/sub: subscribe, unsubscribe, publish, send.

use std::sync::Arc;

use super::directory::SubOpts;
use super::fanout::Frames;
use super::history::Entry;
use super::{Departure, Event, Hub};
use crate::codes::ErrorCode;
use crate::ids::{ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::token::Permissions;
use crate::wire::codec::{Answer, Direct, Frame, Message, Payload};
use crate::wire::{DirectSend, Position, Publish, RequestId, Stamp, Subscribe, Unsubscribe};

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
        let codec = self.codec(conn);
        let abilities = codec.abilities();
        if pattern.is_wildcard() && !abilities.wildcards {
            let message = format!(
                "wildcard channels are not part of {} protocol",
                codec.title()
            );
            return self.refuse_request(conn, ErrorCode::InvalidChannel, &message, rid);
        }
        let already = if pattern.is_wildcard() {
            self.dir.has_pattern(conn, &tenant, &pattern)
        } else {
            self.dir.is_subscribed(conn, &tenant, &s.channel)
        };
        if already && abilities.strict_subscriptions {
            return self.refuse_request(
                conn,
                ErrorCode::AlreadySubscribed,
                "already subscribed to this channel",
                rid,
            );
        }
        let place = self.dir.place(conn);
        if !already && place.subscription_count() >= self.config.limits.max_channels_per_conn {
            return self.refuse_request(
                conn,
                ErrorCode::ChannelLimitExceeded,
                "this connection is at its channel limit",
                rid,
            );
        }
        let include_meta = s.include_sender_metadata;
        let foreign = &tenant != place.tenant();
        let grants = self.grants(conn);
        let wants_presence =
            grants.permissions.contains(Permissions::PRESENCE) && abilities.presence;
        if pattern.is_wildcard() {
            let opts = SubOpts {
                include_meta,
                foreign,
            };
            self.dir.subscribe_pattern(conn, tenant, pattern, opts);
            if s.recover.is_some() {
                // A pattern spans many streams: there is no one position to resume.
                let answer = Answer::Positioned {
                    position: None,
                    recovered: Some(false),
                };
                self.answer(conn, rid, answer);
            } else {
                self.ack(conn, rid);
            }
        } else {
            let metadata = Arc::clone(&grants.metadata);
            let joined = self.dir.subscribe(
                conn,
                &tenant,
                &s.channel,
                Arc::clone(&metadata),
                include_meta,
                wants_presence,
            );
            if abilities.subscription_ids {
                let id = format!("sub-{:016x}", self.message_ids.next_u64());
                let unix_ms = self.unix_ms(self.now);
                let answer = Answer::Subscribed {
                    subscription_id: &id,
                    unix_ms,
                };
                self.answer(conn, rid, answer);
            } else {
                let flavour = (include_meta, foreign);
                self.answer_position(conn, &tenant, &s.channel, s.recover.as_ref(), flavour, rid);
            }
            if wants_presence {
                self.send_snapshot(conn, joined.channel);
            }
            if joined.new_peer {
                let peer = self.dir.place(conn).peer().cloned().expect("bound at auth");
                // A peer already present through another node is no news here.
                if !self.dir.remote_present(&tenant, &s.channel, peer.as_str()) {
                    self.announce_presence(joined.channel, conn, &peer, &metadata, None);
                }
                self.tell_joined(&tenant, &s.channel, &peer, &metadata, false);
            }
        }
        self.event(Event::Subscribed {
            conn,
            channel: s.channel,
        });
    }

    /// Answers a subscribe to `channel`: where its stream stands, when it keeps a
    /// history, after replaying what a client at `recover` missed (in order, before
    /// any live message: nothing else happens in between). A bare ack otherwise.
    fn answer_position(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        channel: &str,
        recover: Option<&Position>,
        (with_meta, foreign): (bool, bool),
        rid: Option<&RequestId>,
    ) {
        if let Some(retention) = self.shared_retention(channel) {
            let flavour = (with_meta, foreign);
            return self.ask_position(conn, tenant, channel, recover, flavour, rid, retention);
        }
        let now = self.now;
        let answer = match recover {
            Some(from) => match self.history.recover(tenant, channel, now, from) {
                Some(recovery) => {
                    for entry in &recovery.replay {
                        self.replay(conn, tenant, channel, entry, with_meta, foreign);
                    }
                    let answer = Answer::Positioned {
                        position: Some((recovery.offset, &recovery.epoch)),
                        recovered: Some(recovery.recovered),
                    };
                    return self.answer(conn, rid, answer);
                }
                None => Answer::Positioned {
                    position: None,
                    recovered: Some(false),
                },
            },
            None => match self.history.position(tenant, channel, now) {
                Some((offset, epoch)) => {
                    let answer = Answer::Positioned {
                        position: Some((offset, &epoch)),
                        recovered: None,
                    };
                    return self.answer(conn, rid, answer);
                }
                None => Answer::Success,
            },
        };
        self.answer(conn, rid, answer);
    }

    /// Sends one stored message of `channel` to `conn`, as a live one would look.
    pub(super) fn replay(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        channel: &str,
        entry: &Entry,
        with_meta: bool,
        foreign: bool,
    ) {
        let codec = self.codec(conn);
        let message = Message {
            channel,
            from: &entry.from,
            meta: &entry.meta,
            payload: Payload::Json(&entry.data),
            event: entry.event.as_deref(),
            stamp: entry.stamp,
            offset: Some(entry.offset),
            original: None,
        };
        // Dialects that can recover write one frame for every member (a sequenced
        // frame belongs to dialects without recovery).
        if let Some(Frame::Shared(frame)) = codec.message(&message, with_meta) {
            let frame = if foreign {
                codec.with_tenant(&frame, tenant.as_str())
            } else {
                frame
            };
            self.send(conn, frame);
        }
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
            self.dir.unsubscribe_pattern(conn, &tenant, &pattern)
        } else {
            self.waiting.forget_sub(conn, &tenant, &u.channel);
            match self.dir.unsubscribe(conn, &tenant, &u.channel) {
                Some(departed) => {
                    if let Some(departed) = departed {
                        self.tell_departure(departed, Departure::Unsubscribed);
                    }
                    true
                }
                None => false,
            }
        };
        // Unsubscribing from something you are not subscribed to is not an error in
        // JSON: the end state is what the client asked for. Resource-style dialects
        // (The Broadcaster) answer `NotFound`, as their clients expect.
        if !removed && self.codec(conn).abilities().strict_subscriptions {
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
        let peer = self.dir.place(conn).peer().cloned().expect("bound at auth");
        let grants = self.grants(conn);
        let (stamp, deliveries, answered_later) = self.publish_message(
            &tenant,
            &p.channel,
            &peer,
            &grants.metadata,
            &p.data,
            p.event.as_deref(),
            Some(conn),
            rid,
        );
        if !answered_later {
            self.answer(conn, rid, Answer::Published(&stamp));
        }
        self.event(Event::Routed { conn, deliveries });
    }

    /// Publishes JSON `data` to `channel` in `tenant` from `from` (a client's publish,
    /// or the control plane's): stores it in the channel's history where a rule keeps
    /// one, delivers it to every member and matching pattern but `except`, and tells
    /// the other nodes. Returns the message's stamp, how many sends were queued, and
    /// whether the publisher's answer (to `ack`) waits for the cluster engine to
    /// store the message (a history channel on a cluster).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn publish_message(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        from: &PeerId,
        meta: &Arc<serde_json::Map<String, serde_json::Value>>,
        data: &bytes::Bytes,
        event: Option<&str>,
        except: Option<ConnId>,
        ack: Option<&RequestId>,
    ) -> (Stamp, usize, bool) {
        let stamp = self.stamp();
        // On a cluster the engine stores and numbers it; on one node the hub does.
        let shared = self.shared_retention(channel);
        let offset = if shared.is_some() {
            None
        } else {
            self.history
                .append(tenant, channel, self.now, |offset| Entry {
                    offset,
                    at: self.now,
                    stamp,
                    from: from.clone(),
                    meta: Arc::clone(meta),
                    data: data.clone(),
                    event: event.map(Box::from),
                })
        };
        let message = Message {
            channel,
            from,
            meta,
            payload: Payload::Json(data),
            event,
            stamp,
            offset,
            original: None,
        };
        if let Some(retention) = shared {
            let later = self.publish_shared(tenant, &message, retention, except, ack);
            return (stamp, 0, later);
        }
        let mut frames = Frames::new(|dialect: crate::wire::Dialect, with_meta| {
            dialect.codec().message(&message, with_meta)
        });
        let deliveries = self.deliver(tenant, channel, except, &mut frames);
        self.tell_publication(tenant, &message);
        (stamp, deliveries, false)
    }

    pub(super) fn on_send(&mut self, conn: ConnId, s: DirectSend) {
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
        let place = self.dir.place(conn);
        let tenant = place.tenant().clone();
        let from = place.peer().cloned().expect("bound at auth");
        let to = PeerId::new(&s.to);
        // Connections whose dialect has no direct messages are not targets.
        let targets: Vec<ConnId> = self
            .dir
            .peer_conns(&tenant, &to)
            .into_iter()
            .filter(|&t| t != conn && self.codec(t).abilities().direct)
            .collect();
        let remote = self.dir.remote_holds(&tenant, to.as_str());
        if targets.is_empty() && !remote {
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
        let direct = Direct {
            from: &from,
            to: &to,
            meta: &grants.metadata,
            payload: Payload::Json(&s.data),
            original: None,
        };
        let deliveries = self.send_direct(&targets, &direct);
        if remote {
            self.tell_direct(&tenant, &direct, None);
        }
        self.ack(conn, rid);
        self.event(Event::Routed { conn, deliveries });
    }

    /// Sends a direct message to each target, encoded once per dialect.
    pub(super) fn send_direct(&mut self, targets: &[ConnId], direct: &Direct<'_>) -> usize {
        let mut encoded: [Option<Option<bytes::Bytes>>; crate::wire::Dialect::ALL.len()] =
            Default::default();
        let mut sent = 0;
        for &target in targets {
            let dialect = self.dialect(target);
            let frame = encoded[dialect.index()]
                .get_or_insert_with(|| dialect.codec().direct(direct))
                .clone();
            if let Some(frame) = frame {
                self.send(target, frame);
                sent += 1;
            }
        }
        sent
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
        let own = self.dir.place(conn).tenant();
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

    /// A fresh message id and the wall-clock time now.
    pub(super) fn stamp(&mut self) -> Stamp {
        Stamp {
            number: self.message_ids.next_u64(),
            unix_ms: self.unix_ms(self.now),
        }
    }
}
