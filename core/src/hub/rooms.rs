//! rtc-signaller rooms: announce, leave, `/to` and pass-through commands.
//!
//! A room is a channel. What is specific to this dialect: a connection is in at most
//! one room, its peer id is bound by its first announce (or by its token), every
//! frame's sender id is checked against that binding, and a departure without
//! `/leave` is announced to the room by a server-made `/leave`.

use std::sync::Arc;

use super::fanout::Frames;
use super::pubsub::{Message, Payload, direct_frame, message_frames};
use super::{Departure, Event, Hub};
use crate::codes::ErrorCode;
use crate::ids::{ChannelId, ConnId, PeerId, validate_peer_id};
use crate::pattern::validate_channel;
use crate::token::Permissions;
use crate::wire::{Announce, Dialect, Leave, Signal, To, signaller};

impl Hub {
    pub(super) fn on_announce(&mut self, conn: ConnId, a: Announce) {
        let c = &self.conns[&conn];
        if a.sender.as_deref().is_some_and(|s| s != a.id) {
            return self.refuse(
                conn,
                ErrorCode::SenderMismatch,
                "the sender id must equal the announced id",
            );
        }
        let bound = c.peer.clone();
        let peer = match bound {
            Some(ref b) if b.as_str() != a.id => {
                return self.refuse(
                    conn,
                    ErrorCode::SenderMismatch,
                    "this connection is bound to another peer id",
                );
            }
            Some(b) => b,
            None => {
                if validate_peer_id(&a.id, self.config.limits.max_peer_id_len).is_err() {
                    return self.refuse(conn, ErrorCode::InvalidPeerId, "invalid peer id");
                }
                PeerId::new(&a.id)
            }
        };
        if let Err(e) = validate_channel(&a.room, self.config.limits.max_channel_len) {
            return self.refuse(conn, ErrorCode::InvalidChannel, &e.to_string());
        }
        if self.is_reserved(&a.room) {
            return self.refuse(conn, ErrorCode::ChannelReserved, "reserved channel prefix");
        }
        let grants = self.grants(conn);
        if !grants.permissions.contains(Permissions::SUBSCRIBE) {
            return self.refuse(
                conn,
                ErrorCode::ActionNotPermitted,
                "announce needs the subscribe permission",
            );
        }
        if !grants.subscribe.iter().any(|g| g.matches(&a.room)) {
            return self.refuse(
                conn,
                ErrorCode::ChannelNotAuthorized,
                "room not in your grants",
            );
        }
        if c.peer.is_none() && !self.bind_peer(conn, peer.clone()) {
            return;
        }
        let tenant = self.conns[&conn].tenant.clone();
        let previous_room = self.conns[&conn].room;
        let room = self.channel_entry(&tenant, &a.room);
        if let Some(old) = previous_room.filter(|&old| old != room) {
            self.depart(old, conn, Departure::Synthetic);
        }
        let metadata = Arc::new(a.metadata);
        let first_in_room = previous_room != Some(room);
        self.join(room, conn, &peer, Arc::clone(&metadata), false, false);
        self.take_over(room, conn, &peer);
        self.conns.get_mut(&conn).expect("live conn").room = Some(room);
        self.announce_presence(room, conn, &peer, &metadata, Some(a.frame));
        if first_in_room {
            self.introduce_peers(room, conn);
        }
        let count = self.channels[&room].peers.len();
        self.send(conn, signaller::roominfo(count));
        self.event(Event::Announced {
            conn,
            peer,
            room: a.room,
        });
    }

    pub(super) fn on_leave(&mut self, conn: ConnId, l: Leave) {
        let Some((room, _)) = self.checked_room(conn, l.sender.as_deref()) else {
            return;
        };
        self.depart(room, conn, Departure::Leave(l.frame));
        self.conns.get_mut(&conn).expect("live conn").room = None;
    }

    pub(super) fn on_to(&mut self, conn: ConnId, t: To) {
        let Some((room, peer)) = self.checked_room(conn, t.sender.as_deref()) else {
            return;
        };
        if !self.grants(conn).permissions.contains(Permissions::SEND) {
            return self.refuse(
                conn,
                ErrorCode::ActionNotPermitted,
                "/to needs the send permission",
            );
        }
        let ch = &self.channels[&room];
        let targets: Vec<(ConnId, Dialect)> = ch
            .peers
            .get(t.target.as_str())
            .into_iter()
            .flat_map(|p| &p.conns)
            // The Broadcaster has no direct messages: its members are not targets.
            .filter(|&&c| c != conn && ch.members[&c].dialect != Dialect::Broadcaster)
            .map(|c| (*c, ch.members[c].dialect))
            .collect();
        let meta = Arc::clone(&ch.peers[&peer].metadata);
        if targets.is_empty() {
            return self.refuse(conn, ErrorCode::PeerNotFound, "no such peer in your room");
        }
        if !self.charge_quota(conn, None) {
            return;
        }
        let payload = Payload::Signal {
            name: &t.name,
            args: &t.frame[t.args_at..],
        };
        let deliveries = targets.len();
        for (target, dialect) in targets {
            let frame = match dialect {
                Dialect::Signaller => t.frame.clone(),
                Dialect::Json | Dialect::Broadcaster => direct_frame(&peer, &meta, &payload),
            };
            self.send(target, frame);
        }
        self.event(Event::Routed { conn, deliveries });
    }

    pub(super) fn on_signal(&mut self, conn: ConnId, s: Signal) {
        let Some((room, peer)) = self.checked_room(conn, s.sender.as_deref()) else {
            return;
        };
        if !self.grants(conn).permissions.contains(Permissions::PUBLISH) {
            return self.refuse(
                conn,
                ErrorCode::ActionNotPermitted,
                "room messages need the publish permission",
            );
        }
        let name = &self.channels[&room].name;
        if !self.grants(conn).publish.iter().any(|g| g.matches(name)) {
            return self.refuse(
                conn,
                ErrorCode::ChannelNotAuthorized,
                "room not in your publish grants",
            );
        }
        if !self.charge_quota(conn, None) {
            return;
        }
        let ch = &self.channels[&room];
        let (tenant, name) = (ch.tenant.clone(), ch.name.clone());
        let meta = Arc::clone(&ch.peers[&peer].metadata);
        let payload = Payload::Signal {
            name: &s.name,
            args: &s.frame[s.args_at..],
        };
        let stamp = self.stamp();
        let message = Message {
            channel: &name,
            from: &peer,
            meta: &meta,
            payload: &payload,
            event: None,
            stamp,
        };
        let mut frames = Frames::new(message_frames(message, Some(&s.frame)));
        let deliveries = self.deliver(&tenant, &name, Some(conn), &mut frames);
        self.event(Event::Routed { conn, deliveries });
    }

    /// The sender's room and peer id, once the frame's sender id is checked against
    /// the connection's binding. Refuses (and returns `None`) otherwise.
    fn checked_room(&mut self, conn: ConnId, sender: Option<&str>) -> Option<(ChannelId, PeerId)> {
        let c = &self.conns[&conn];
        let (Some(peer), Some(room)) = (&c.peer, c.room) else {
            self.refuse(conn, ErrorCode::NotInRoom, "announce into a room first");
            return None;
        };
        if sender != Some(peer.as_str()) {
            self.refuse(
                conn,
                ErrorCode::SenderMismatch,
                "the sender id must be the connection's peer id",
            );
            return None;
        }
        Some((room, peer.clone()))
    }

    /// Two rtc-signaller connections never hold one id in one room: the newest takes
    /// over, and the older one is detached from the room with a `replaced` error. The
    /// peer stays present throughout, so nobody sees a leave.
    fn take_over(&mut self, channel: ChannelId, conn: ConnId, peer: &PeerId) {
        let ch = self.channels.get_mut(&channel).expect("channel exists");
        let presence = ch.peers.get_mut(peer).expect("joined just before");
        let stale: Vec<ConnId> = presence
            .conns
            .iter()
            .filter(|&&c| c != conn && ch.members[&c].dialect == Dialect::Signaller)
            .copied()
            .collect();
        for old in &stale {
            ch.members.remove(old);
            presence.conns.remove(old);
        }
        for old in stale {
            if let Some(c) = self.conns.get_mut(&old) {
                c.room = None;
            }
            self.refuse(
                old,
                ErrorCode::Replaced,
                "another connection announced this peer id in this room",
            );
        }
    }

    pub(super) fn is_reserved(&self, name: &str) -> bool {
        self.config
            .reserved_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }
}
