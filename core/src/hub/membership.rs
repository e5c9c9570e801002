//! Joining and leaving channels, and what the other members learn: rtc-signaller
//! members get announces and leaves, JSON members get presence (coalesced per tick),
//! Broadcaster members nothing (their protocol has no presence).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::fanout::Frames;
use super::{Departure, Event, Hub, Member, Output, Presence};
use crate::ids::{ChannelId, ConnId, PeerId, TenantId};
use crate::wire::{Dialect, json, signaller};

/// Presence metadata, shared by every frame that shows it.
pub(super) type Metadata = Arc<Map<String, Value>>;

/// One tick's presence changes in a channel: metadata for a join, `None` for a leave.
pub(super) type Changes = BTreeMap<PeerId, Option<Metadata>>;

impl Hub {
    /// Adds `conn` to `channel` as `peer`, or updates its metadata if already in.
    /// Returns true if the peer was not in the channel before.
    pub(super) fn join(
        &mut self,
        channel: ChannelId,
        conn: ConnId,
        peer: &PeerId,
        metadata: Metadata,
        include_meta: bool,
        presence: bool,
    ) -> bool {
        let c = &self.conns[&conn];
        let dialect = c.dialect;
        let ch = self.channels.get_mut(&channel).expect("channel exists");
        let foreign = ch.tenant != c.tenant;
        ch.members.insert(
            conn,
            Member {
                peer: peer.clone(),
                dialect,
                include_meta,
                presence,
                foreign,
                seq: 0,
            },
        );
        let is_new_peer = !ch.peers.contains_key(peer);
        let entry = ch.peers.entry(peer.clone()).or_insert(Presence {
            conns: BTreeSet::new(),
            metadata: Arc::clone(&metadata),
        });
        entry.conns.insert(conn);
        entry.metadata = metadata;
        is_new_peer
    }

    /// Tells the other members of `channel` that `peer` arrived or changed its
    /// metadata. rtc-signaller members get `announce` (the peer's own frame when it
    /// is an rtc-signaller peer, a server-made one otherwise); JSON members get a
    /// presence delta at the end of the tick.
    pub(super) fn announce_presence(
        &mut self,
        channel: ChannelId,
        conn: ConnId,
        peer: &PeerId,
        metadata: &Metadata,
        own_frame: Option<Bytes>,
    ) {
        let room = self.channels[&channel].name.clone();
        let mut frames = Frames::new(|dialect, _| match dialect {
            Dialect::Signaller => Some(
                own_frame
                    .clone()
                    .unwrap_or_else(|| server_announce(peer, &room, metadata))
                    .into(),
            ),
            // JSON members get presence at the end of the tick; The Broadcaster has
            // no presence.
            Dialect::Json | Dialect::Broadcaster => None,
        });
        self.fan_out(channel, Some(conn), &mut frames);
        self.queue_presence(channel, peer, Some(Arc::clone(metadata)));
    }

    /// Sends a newcomer rtc-signaller connection, on its first announce into a room,
    /// an announce for every other peer already there, wrapped in `/to` (a direct
    /// message, so the v6 client registers the peer without sending an autoreply).
    /// Without it a v6 client never learns of JSON peers, nor of rtc-signaller peers
    /// that already know its id (a reload with the same id): they take its announce
    /// for an update and do not reply.
    pub(super) fn introduce_peers(&mut self, channel: ChannelId, conn: ConnId) {
        let ch = &self.channels[&channel];
        let me = &ch.members[&conn].peer;
        let frames: Vec<Bytes> = ch
            .peers
            .iter()
            .filter(|(peer, _)| *peer != me)
            .map(|(peer, p)| introduction(me, peer, &ch.name, &p.metadata))
            .collect();
        for frame in frames {
            self.send(conn, frame);
        }
    }

    /// Removes `conn` from `channel`. If it was the peer's last connection there, the
    /// other members learn that the peer left: rtc-signaller members get its own
    /// `/leave` or a server-made one, JSON members a presence delta.
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
        let mut frames = Frames::new(|dialect, _| match (dialect, &how) {
            (Dialect::Signaller, Departure::Leave(frame)) => Some(frame.clone().into()),
            (Dialect::Signaller, _) => Some(signaller::leave(peer.as_str()).into()),
            (Dialect::Json | Dialect::Broadcaster, _) => None,
        });
        self.fan_out(channel, Some(conn), &mut frames);
        self.queue_presence(channel, &peer, None);
        self.collect_channel(channel);
        self.event(Event::Left {
            peer,
            channel: name,
            synthetic,
        });
    }

    /// Records a presence change for this tick's delta (`None` = left). A later
    /// change of the same peer in the same tick replaces an earlier one.
    fn queue_presence(&mut self, channel: ChannelId, peer: &PeerId, change: Option<Metadata>) {
        self.pending_presence
            .entry(channel)
            .or_default()
            .insert(peer.clone(), change);
    }

    /// The full roster a subscriber gets after its `ack`: the other peers, cut at the
    /// presence cap.
    pub(super) fn send_snapshot(&mut self, conn: ConnId, channel: ChannelId) {
        let ch = &self.channels[&channel];
        let member = &ch.members[&conn];
        let frame = snapshot_frame(ch, &member.peer, self.config.limits.presence_cap);
        let frame = tagged(frame, member.foreign, &ch.tenant);
        self.send(conn, frame);
    }

    /// Sends this tick's presence deltas: one shared frame per channel, plus a
    /// filtered copy for members whose own peer is in the delta (nobody is told of
    /// themselves). Over the presence cap, deltas stop after one `truncated` frame;
    /// back under it, every presence member gets a fresh snapshot.
    pub(super) fn flush_presence(&mut self) {
        let pending = std::mem::take(&mut self.pending_presence);
        let cap = self.config.limits.presence_cap;
        for (channel, changes) in pending {
            let Some(ch) = self.channels.get_mut(&channel) else {
                continue;
            };
            let count = ch.peers.len();
            let tenant = ch.tenant.clone();
            let recipients: Vec<(ConnId, PeerId, bool)> = ch
                .members
                .iter()
                .filter(|(_, m)| m.presence)
                .map(|(c, m)| (*c, m.peer.clone(), m.foreign))
                .collect();
            if count > cap {
                if !ch.over_cap {
                    ch.over_cap = true;
                    let frame = json::presence(&json::PresenceFrame {
                        channel: &ch.name,
                        joined: Vec::new(),
                        left: Vec::new(),
                        snapshot: false,
                        count,
                        truncated: true,
                    });
                    let foreign = tagged(frame.clone(), true, &tenant);
                    for (conn, _, is_foreign) in recipients {
                        let frame = if is_foreign { &foreign } else { &frame };
                        self.out.push_back(Output::Send {
                            conn,
                            frame: frame.clone(),
                        });
                    }
                }
                continue;
            }
            if ch.over_cap {
                ch.over_cap = false;
                let ch = &self.channels[&channel];
                let frames: Vec<_> = recipients
                    .into_iter()
                    .map(|(conn, me, foreign)| {
                        (conn, tagged(snapshot_frame(ch, &me, cap), foreign, &tenant))
                    })
                    .collect();
                for (conn, frame) in frames {
                    self.out.push_back(Output::Send { conn, frame });
                }
                continue;
            }
            let ch = &self.channels[&channel];
            let shared = delta_frame(&ch.name, &changes, None, count);
            let mut shared_foreign = None;
            let mut own: BTreeMap<PeerId, Bytes> = BTreeMap::new();
            let mut sends = Vec::with_capacity(recipients.len());
            for (conn, me, foreign) in recipients {
                let frame = if changes.contains_key(&me) {
                    let f = own
                        .entry(me.clone())
                        .or_insert_with(|| delta_frame(&ch.name, &changes, Some(&me), count));
                    if f.is_empty() {
                        continue;
                    }
                    tagged(f.clone(), foreign, &tenant)
                } else if foreign {
                    shared_foreign
                        .get_or_insert_with(|| tagged(shared.clone(), true, &tenant))
                        .clone()
                } else {
                    shared.clone()
                };
                sends.push(Output::Send { conn, frame });
            }
            self.out.extend(sends);
        }
    }
}

/// `frame` naming `tenant` when the recipient is `foreign` to it (see
/// [`json::with_tenant`]).
fn tagged(frame: Bytes, foreign: bool, tenant: &TenantId) -> Bytes {
    if foreign {
        json::with_tenant(&frame, tenant.as_str())
    } else {
        frame
    }
}

/// A presence delta, leaving out `except` (the recipient's own peer). Empty bytes
/// when nothing remains.
fn delta_frame(channel: &str, changes: &Changes, except: Option<&PeerId>, count: usize) -> Bytes {
    let mut joined = Vec::new();
    let mut left = Vec::new();
    for (peer, change) in changes {
        if Some(peer) == except {
            continue;
        }
        match change {
            Some(meta) => joined.push(json::PresenceEntry {
                peer_id: peer.as_str(),
                metadata: Some(meta),
            }),
            None => left.push(peer.as_str()),
        }
    }
    if joined.is_empty() && left.is_empty() {
        return Bytes::new();
    }
    json::presence(&json::PresenceFrame {
        channel,
        joined,
        left,
        snapshot: false,
        count,
        truncated: false,
    })
}

fn snapshot_frame(ch: &super::Channel, me: &PeerId, cap: usize) -> Bytes {
    let others = ch.peers.iter().filter(|(p, _)| *p != me);
    let joined: Vec<_> = others
        .take(cap)
        .map(|(p, presence)| json::PresenceEntry {
            peer_id: p.as_str(),
            metadata: Some(&presence.metadata),
        })
        .collect();
    json::presence(&json::PresenceFrame {
        channel: &ch.name,
        joined,
        left: Vec::new(),
        snapshot: true,
        count: ch.peers.len(),
        truncated: ch.peers.len() > cap,
    })
}

/// `/to|<to>|/announce|<id>|{"id":..,"room":..,...metadata}`: a peer introduced to a
/// newcomer.
fn introduction(to: &PeerId, peer: &PeerId, room: &str, metadata: &Map<String, Value>) -> Bytes {
    let announce = server_announce(peer, room, metadata);
    let mut out = bytes::BytesMut::with_capacity(8 + to.as_str().len() + announce.len());
    out.extend_from_slice(b"/to|");
    out.extend_from_slice(to.as_str().as_bytes());
    out.extend_from_slice(b"|");
    out.extend_from_slice(&announce);
    out.freeze()
}

/// `/announce|<id>|{"id":..,"room":..,...metadata}`: how a JSON subscriber appears
/// to rtc-signaller peers.
pub(super) fn server_announce(peer: &PeerId, room: &str, metadata: &Map<String, Value>) -> Bytes {
    let mut payload = metadata.clone();
    payload.insert("id".into(), Value::String(peer.as_str().into()));
    payload.insert("room".into(), Value::String(room.into()));
    let mut out = bytes::BytesMut::with_capacity(64);
    out.extend_from_slice(b"/announce|");
    out.extend_from_slice(peer.as_str().as_bytes());
    out.extend_from_slice(b"|");
    signaller::put_json_escaped(&mut out, &Value::Object(payload));
    out.freeze()
}
