//! Rooms: announce, leave, `/to` and pass-through commands (rtc-signaller).
//!
//! A room is a channel. What is specific to rooms: a connection is in at most one,
//! its peer id is bound by its first announce (or by its token), every frame's
//! sender id is checked against that binding, and a departure without `/leave` is
//! announced to the room by a server-made leave.

use std::sync::Arc;

use super::fanout::Frames;
use super::{Departure, Event, Hub};
use crate::codes::ErrorCode;
use crate::ids::{ChannelId, ConnId, PeerId, validate_peer_id};
use crate::pattern::validate_channel;
use crate::token::Permissions;
use crate::wire::codec::{Direct, Message, Original, Payload};
use crate::wire::{Announce, Dialect, Leave, Signal, To};

impl Hub {
    pub(super) fn on_announce(&mut self, conn: ConnId, a: Announce) {
        if a.sender.as_deref().is_some_and(|s| s != a.id) {
            return self.refuse(
                conn,
                ErrorCode::SenderMismatch,
                "the sender id must equal the announced id",
            );
        }
        let bound = self.dir.place(conn).peer().cloned();
        let is_bound = bound.is_some();
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
        if !is_bound && !self.bind_peer(conn, peer.clone()) {
            return;
        }
        let metadata = Arc::new(a.metadata);
        let entered = self.dir.enter_room(conn, &a.room, Arc::clone(&metadata));
        if let Some(left) = entered.left {
            self.tell_departure(left, Departure::Synthetic);
        }
        for old in entered.replaced {
            self.refuse(
                old,
                ErrorCode::Replaced,
                "another connection announced this peer id in this room",
            );
        }
        let original = Original {
            dialect: self.dialect(conn),
            frame: &a.frame,
        };
        let room = entered.room;
        self.announce_presence(room, conn, &peer, &metadata, Some(original));
        let tenant = self.dir.place(conn).tenant().clone();
        self.tell_joined(&tenant, &a.room, &peer, &metadata, true);
        if entered.first_in_room {
            self.introduce_peers(room, conn);
        }
        let count = self.dir.present_count(room);
        if let Some(frame) = self.codec(conn).room_info(count) {
            self.send(conn, frame);
        }
        self.event(Event::Announced {
            conn,
            peer,
            room: a.room,
        });
    }

    pub(super) fn on_leave(&mut self, conn: ConnId, l: Leave) {
        if self.checked_room(conn, l.sender.as_deref()).is_none() {
            return;
        }
        let original = Original {
            dialect: self.dialect(conn),
            frame: &l.frame,
        };
        if let Some(departed) = self.dir.leave_room(conn) {
            self.tell_departure(departed, Departure::Leave(original));
        }
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
        let ch = self.dir.channel(room).expect("the sender is in its room");
        // Connections whose dialect has no direct messages are not targets.
        let targets: Vec<ConnId> = ch
            .peer_conns(t.target.as_str())
            .filter(|&(c, dialect)| c != conn && dialect.codec().abilities().direct)
            .map(|(c, _)| c)
            .collect();
        let meta = Arc::clone(ch.metadata(peer.as_str()).expect("the sender is present"));
        let (tenant, room_name) = (ch.tenant().clone(), Arc::clone(ch.name()));
        let remote = self
            .dir
            .remote_present(&tenant, &room_name, t.target.as_str());
        if targets.is_empty() && !remote {
            return self.refuse(conn, ErrorCode::PeerNotFound, "no such peer in your room");
        }
        if !self.charge_quota(conn, None) {
            return;
        }
        let to = PeerId::new(&t.target);
        let direct = Direct {
            from: &peer,
            to: &to,
            meta: &meta,
            payload: Payload::Signal {
                name: &t.name,
                args: &t.frame[t.args_at..],
            },
            original: Some(Original {
                dialect: self.dialect(conn),
                frame: &t.frame,
            }),
        };
        let deliveries = self.send_direct(&targets, &direct);
        if remote {
            self.tell_direct(&tenant, &direct, Some(&room_name));
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
        let ch = self.dir.channel(room).expect("the sender is in its room");
        let (tenant, name) = (ch.tenant().clone(), Arc::clone(ch.name()));
        let meta = Arc::clone(ch.metadata(peer.as_str()).expect("the sender is present"));
        if !self.grants(conn).publish.iter().any(|g| g.matches(&name)) {
            return self.refuse(
                conn,
                ErrorCode::ChannelNotAuthorized,
                "room not in your publish grants",
            );
        }
        if !self.charge_quota(conn, None) {
            return;
        }
        let stamp = self.stamp();
        let message = Message {
            channel: &name,
            from: &peer,
            meta: &meta,
            payload: Payload::Signal {
                name: &s.name,
                args: &s.frame[s.args_at..],
            },
            event: None,
            stamp,
            offset: None,
            original: Some(Original {
                dialect: self.dialect(conn),
                frame: &s.frame,
            }),
        };
        let mut frames =
            Frames::new(|dialect: Dialect, with_meta| dialect.codec().message(&message, with_meta));
        let deliveries = self.deliver(&tenant, &name, Some(conn), &mut frames);
        self.tell_publication(&tenant, &message);
        self.event(Event::Routed { conn, deliveries });
    }

    /// The sender's room and peer id, once the frame's sender id is checked against
    /// the connection's binding. Refuses (and returns `None`) otherwise.
    fn checked_room(&mut self, conn: ConnId, sender: Option<&str>) -> Option<(ChannelId, PeerId)> {
        let place = self.dir.place(conn);
        let (Some(peer), Some(room)) = (place.peer(), place.room()) else {
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

    pub(super) fn is_reserved(&self, name: &str) -> bool {
        self.config
            .reserved_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }
}
