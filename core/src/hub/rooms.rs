//! rtc-signaller rooms: announce, leave, `/to` and pass-through commands.
//!
//! A room is a channel. What is specific to this dialect: a connection is in at most
//! one room, its peer id is bound by its first announce, every frame's sender id is
//! checked against that binding, and a departure without `/leave` is announced to the
//! room by a server-made `/leave`.

use std::collections::BTreeSet;
use std::sync::Arc;

use super::fanout::PerDialect;
use super::{Departure, Event, Hub, Member, Presence};
use crate::codes::ErrorCode;
use crate::ids::{ChannelId, ConnId, PeerId, validate_peer_id};
use crate::pattern::validate_channel;
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
        let peer = match &c.peer {
            Some(bound) if bound.as_str() != a.id => {
                return self.refuse(
                    conn,
                    ErrorCode::SenderMismatch,
                    "this connection is bound to another peer id",
                );
            }
            Some(bound) => bound.clone(),
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
        let tenant = c.tenant.clone();
        let previous_room = c.room;
        self.conns.get_mut(&conn).expect("live conn").peer = Some(peer.clone());

        let room = self.channel_entry(&tenant, &a.room);
        if let Some(old) = previous_room.filter(|&old| old != room) {
            self.depart(old, conn, Departure::Synthetic);
        }
        self.join(room, conn, &peer, Arc::new(a.metadata));
        self.take_over(room, conn, &peer);
        self.conns.get_mut(&conn).expect("live conn").room = Some(room);

        let frame = a.frame;
        let mut frames = PerDialect::new(|dialect| match dialect {
            Dialect::Signaller => Some(frame.clone()),
        });
        self.fan_out(room, Some(conn), &mut frames);
        let count = self.channels[&room].peers.len();
        self.send(conn, signaller::roominfo(count));
        self.event(Event::Announced {
            conn,
            peer,
            room: a.room,
        });
    }

    pub(super) fn on_leave(&mut self, conn: ConnId, l: Leave) {
        let Some(room) = self.checked_room(conn, l.sender.as_deref()) else {
            return;
        };
        self.depart(room, conn, Departure::Leave(l.frame));
        self.conns.get_mut(&conn).expect("live conn").room = None;
    }

    pub(super) fn on_to(&mut self, conn: ConnId, t: To) {
        let Some(room) = self.checked_room(conn, t.sender.as_deref()) else {
            return;
        };
        let ch = &self.channels[&room];
        let targets: Vec<(ConnId, Dialect)> = ch
            .peers
            .get(t.target.as_str())
            .into_iter()
            .flat_map(|p| &p.conns)
            .filter(|&&c| c != conn)
            .map(|c| (*c, ch.members[c].dialect))
            .collect();
        if targets.is_empty() {
            return self.refuse(conn, ErrorCode::PeerNotFound, "no such peer in your room");
        }
        for (target, dialect) in targets {
            match dialect {
                Dialect::Signaller => self.send(target, t.frame.clone()),
            }
        }
    }

    pub(super) fn on_signal(&mut self, conn: ConnId, s: Signal) {
        let Some(room) = self.checked_room(conn, s.sender.as_deref()) else {
            return;
        };
        let frame = s.frame;
        let mut frames = PerDialect::new(|dialect| match dialect {
            Dialect::Signaller => Some(frame.clone()),
        });
        self.fan_out(room, Some(conn), &mut frames);
    }

    /// The sender's room, once the frame's sender id is checked against the
    /// connection's binding. Refuses (and returns `None`) otherwise.
    fn checked_room(&mut self, conn: ConnId, sender: Option<&str>) -> Option<ChannelId> {
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
        Some(room)
    }

    /// Adds `conn` to `channel` as `peer` (or updates its metadata if already in).
    fn join(
        &mut self,
        channel: ChannelId,
        conn: ConnId,
        peer: &PeerId,
        metadata: Arc<serde_json::Map<String, serde_json::Value>>,
    ) {
        let dialect = self.conns[&conn].dialect;
        let ch = self.channels.get_mut(&channel).expect("channel exists");
        let is_new = ch
            .members
            .insert(
                conn,
                Member {
                    peer: peer.clone(),
                    dialect,
                },
            )
            .is_none();
        let presence = ch.peers.entry(peer.clone()).or_insert(Presence {
            conns: BTreeSet::new(),
            metadata: metadata.clone(),
        });
        if is_new {
            presence.conns.insert(conn);
        }
        presence.metadata = metadata;
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

    /// Removes `conn` from `channel`. If it was the peer's last connection there, the
    /// other members learn that the peer left: its own `/leave`, or a server-made one.
    pub(super) fn depart(&mut self, channel: ChannelId, conn: ConnId, how: Departure) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        let Some(member) = ch.members.remove(&conn) else {
            return;
        };
        let presence = ch
            .peers
            .get_mut(&member.peer)
            .expect("every member has a presence entry");
        presence.conns.remove(&conn);
        if !presence.conns.is_empty() {
            self.collect_channel(channel);
            return;
        }
        ch.peers.remove(&member.peer);
        let name = ch.name.to_string();
        let synthetic = matches!(how, Departure::Synthetic);
        let peer = member.peer;
        let mut frames = PerDialect::new(|dialect| match (dialect, &how) {
            (Dialect::Signaller, Departure::Leave(frame))
                if member.dialect == Dialect::Signaller =>
            {
                Some(frame.clone())
            }
            (Dialect::Signaller, _) => Some(signaller::leave(peer.as_str())),
        });
        self.fan_out(channel, Some(conn), &mut frames);
        self.collect_channel(channel);
        self.event(Event::Left {
            peer,
            channel: name,
            synthetic,
        });
    }

    fn is_reserved(&self, name: &str) -> bool {
        self.config
            .reserved_prefixes
            .iter()
            .any(|p| name.starts_with(p.as_str()))
    }
}
