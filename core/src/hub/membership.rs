//! What the other members learn when someone joins or leaves a channel: room
//! dialects get announces and leaves, presence dialects get presence (coalesced per
//! step), the rest nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use super::directory::{Channel, Departed, Directory, Metadata};
use super::fanout::Frames;
use super::{Departure, Event, Hub, Output};
use crate::cluster::Outbound;
use crate::ids::{ChannelId, ConnId, PeerId, TenantId};
use crate::wire::Dialect;
use crate::wire::codec::{Arrival, Codec, Frame, Original, PresenceEntry, PresenceView};

/// One step's presence changes in a channel: metadata for a join, `None` for a leave.
pub(super) type Changes = BTreeMap<PeerId, Option<Metadata>>;

impl Hub {
    /// Tells the other members of `channel` that `peer` arrived or changed its
    /// metadata: room dialects get an announce (the peer's own frame when it speaks
    /// theirs), presence dialects a delta at the end of the step.
    pub(super) fn announce_presence(
        &mut self,
        channel: ChannelId,
        conn: ConnId,
        peer: &PeerId,
        metadata: &Metadata,
        original: Option<Original<'_>>,
    ) {
        let Some(ch) = self.dir.channel(channel) else {
            return;
        };
        let room = Arc::clone(ch.name());
        let arrival = Arrival {
            peer,
            room: &room,
            metadata,
            original,
        };
        let mut frames =
            Frames::new(|dialect: Dialect, _| dialect.codec().arrived(&arrival).map(Frame::from));
        self.fan_out(channel, Some(conn), &mut frames);
        self.queue_presence(channel, peer, Some(Arc::clone(metadata)));
    }

    /// Sends a newcomer, on its first announce into a room, an introduction of every
    /// other peer already there (a direct message, so the v6 client registers the
    /// peer without sending an autoreply). Without it a v6 client never learns of
    /// JSON peers, nor of rtc-signaller peers that already know its id (a reload with
    /// the same id): they take its announce for an update and do not reply.
    pub(super) fn introduce_peers(&mut self, channel: ChannelId, conn: ConnId) {
        let codec = self.codec(conn);
        let Some(ch) = self.dir.channel(channel) else {
            return;
        };
        let Some(me) = ch.member(conn).map(|m| m.peer()) else {
            return;
        };
        let frames: Vec<Bytes> = self
            .dir
            .roster(channel)
            .into_iter()
            .filter(|(peer, _)| *peer != me.as_str())
            .filter_map(|(peer, metadata)| {
                let arrival = Arrival {
                    peer: &PeerId::new(peer),
                    room: ch.name(),
                    metadata,
                    original: None,
                };
                codec.introduction(me, &arrival)
            })
            .collect();
        for frame in frames {
            self.send(conn, frame);
        }
    }

    /// Tells the remaining members of a channel that a peer left: room dialects get
    /// its own leave frame or a server-made one, presence dialects a delta.
    pub(super) fn tell_departure(&mut self, departed: Departed, how: Departure<'_>) {
        let Departed {
            channel,
            tenant,
            name,
            peer,
        } = departed;
        self.tell_cluster(|| Outbound::Left {
            tenant: tenant.as_str().to_owned(),
            channel: name.to_string(),
            peer: peer.as_str().to_owned(),
        });
        if self.dir.remote_present(&tenant, &name, peer.as_str()) {
            // Still present through another node: nobody here sees a change.
            return;
        }
        let own = match how {
            Departure::Leave(original) => Some(original),
            Departure::Unsubscribed | Departure::Synthetic => None,
        };
        let mut frames = Frames::new(|dialect: Dialect, _| {
            dialect
                .codec()
                .departed(&peer, own.as_ref())
                .map(Frame::from)
        });
        self.fan_out(channel, None, &mut frames);
        self.queue_presence(channel, &peer, None);
        self.event(Event::Left {
            peer,
            channel: name.to_string(),
            synthetic: matches!(how, Departure::Synthetic),
        });
    }

    /// Records a presence change for this step's delta (`None` = left). A later
    /// change of the same peer in the same step replaces an earlier one.
    pub(super) fn queue_presence(
        &mut self,
        channel: ChannelId,
        peer: &PeerId,
        change: Option<Metadata>,
    ) {
        self.pending_presence
            .entry(channel)
            .or_default()
            .insert(peer.clone(), change);
    }

    /// The full roster a subscriber gets after its `ack`: the other peers, cut at the
    /// presence cap.
    pub(super) fn send_snapshot(&mut self, conn: ConnId, channel: ChannelId) {
        let codec = self.codec(conn);
        let Some(ch) = self.dir.channel(channel) else {
            return;
        };
        let Some(member) = ch.member(conn) else {
            return;
        };
        let cap = self.config.limits.presence_cap;
        let frame = snapshot_view(&self.dir, channel, member.peer(), cap)
            .and_then(|view| codec.presence(&view))
            .map(|f| tagged(codec, f, member.foreign(), ch.tenant()));
        if let Some(frame) = frame {
            self.send(conn, frame);
        }
    }

    /// Sends this step's presence deltas: one shared frame per channel and dialect,
    /// plus a filtered copy for members whose own peer is in the delta (nobody is
    /// told of themselves). Over the presence cap, deltas stop after one `truncated`
    /// frame; back under it, every presence member gets a fresh snapshot.
    pub(super) fn flush_presence(&mut self) {
        let pending = std::mem::take(&mut self.pending_presence);
        let cap = self.config.limits.presence_cap;
        for (channel, changes) in pending {
            let Some(ch) = self.dir.channel(channel) else {
                continue;
            };
            let count = self.dir.present_count(channel);
            let was_over = ch.over_cap();
            let recipients: Vec<(ConnId, PeerId, bool, Dialect)> = ch
                .members()
                .filter(|(_, m)| m.presence())
                .map(|(c, m)| (c, m.peer().clone(), m.foreign(), m.dialect()))
                .collect();
            let sends = if count > cap {
                if was_over {
                    continue;
                }
                let view = PresenceView {
                    channel: ch.name(),
                    joined: Vec::new(),
                    left: Vec::new(),
                    snapshot: false,
                    count,
                    truncated: true,
                };
                let mut cache = Shared::default();
                recipients
                    .into_iter()
                    .filter_map(|(conn, _, foreign, dialect)| {
                        let frame =
                            cache.get(dialect, foreign, ch.tenant(), &|c| c.presence(&view));
                        frame.map(|frame| Output::Send { conn, frame })
                    })
                    .collect()
            } else if was_over {
                recipients
                    .into_iter()
                    .filter_map(|(conn, me, foreign, dialect)| {
                        let codec = dialect.codec();
                        let view = snapshot_view(&self.dir, channel, &me, cap)?;
                        let frame = codec.presence(&view)?;
                        let frame = tagged(codec, frame, foreign, ch.tenant());
                        Some(Output::Send { conn, frame })
                    })
                    .collect()
            } else {
                delta_sends(ch, &changes, recipients, count)
            };
            if count > cap || was_over {
                self.dir.set_over_cap(channel, count > cap);
            }
            self.out.extend(sends);
        }
    }
}

/// The sends of one channel's delta: the shared frame per dialect, and a filtered
/// one for a recipient whose own peer changed (nothing when only it changed).
fn delta_sends(
    ch: &Channel,
    changes: &Changes,
    recipients: Vec<(ConnId, PeerId, bool, Dialect)>,
    count: usize,
) -> Vec<Output> {
    let shared_view = delta_view(ch.name(), changes, None, count);
    let mut shared = Shared::default();
    let mut own: BTreeMap<(PeerId, Dialect), Option<Bytes>> = BTreeMap::new();
    let mut sends = Vec::with_capacity(recipients.len());
    for (conn, me, foreign, dialect) in recipients {
        let frame = if changes.contains_key(&me) {
            let codec = dialect.codec();
            let frame = own.entry((me.clone(), dialect)).or_insert_with(|| {
                delta_view(ch.name(), changes, Some(&me), count).and_then(|v| codec.presence(&v))
            });
            let Some(frame) = frame else {
                continue;
            };
            tagged(codec, frame.clone(), foreign, ch.tenant())
        } else {
            let Some(view) = &shared_view else {
                continue;
            };
            let Some(frame) = shared.get(dialect, foreign, ch.tenant(), &|c| c.presence(view))
            else {
                continue;
            };
            frame
        };
        sends.push(Output::Send { conn, frame });
    }
    sends
}

/// One lazily encoded presence frame per dialect, with and without the tenant named.
#[derive(Default)]
struct Shared {
    frames: BTreeMap<(Dialect, bool), Option<Bytes>>,
}

impl Shared {
    fn get(
        &mut self,
        dialect: Dialect,
        foreign: bool,
        tenant: &TenantId,
        encode: &dyn Fn(&dyn Codec) -> Option<Bytes>,
    ) -> Option<Bytes> {
        if let Some(frame) = self.frames.get(&(dialect, foreign)) {
            return frame.clone();
        }
        let codec = dialect.codec();
        let frame = if foreign {
            self.get(dialect, false, tenant, encode)
                .map(|f| codec.with_tenant(&f, tenant.as_str()))
        } else {
            encode(codec)
        };
        self.frames.insert((dialect, foreign), frame.clone());
        frame
    }
}

/// `frame` naming `tenant` when the recipient is `foreign` to it.
fn tagged(codec: &dyn Codec, frame: Bytes, foreign: bool, tenant: &TenantId) -> Bytes {
    if foreign {
        codec.with_tenant(&frame, tenant.as_str())
    } else {
        frame
    }
}

/// A presence delta, leaving out `except` (the recipient's own peer). `None` when
/// nothing remains.
fn delta_view<'a>(
    channel: &'a str,
    changes: &'a Changes,
    except: Option<&PeerId>,
    count: usize,
) -> Option<PresenceView<'a>> {
    let mut joined = Vec::new();
    let mut left = Vec::new();
    for (peer, change) in changes {
        if Some(peer) == except {
            continue;
        }
        match change {
            Some(meta) => joined.push(PresenceEntry {
                peer_id: peer.as_str(),
                metadata: Some(meta),
            }),
            None => left.push(peer.as_str()),
        }
    }
    if joined.is_empty() && left.is_empty() {
        return None;
    }
    Some(PresenceView {
        channel,
        joined,
        left,
        snapshot: false,
        count,
        truncated: false,
    })
}

/// The roster as `me` sees it: the other peers on every node, cut at the presence
/// cap.
fn snapshot_view<'a>(
    dir: &'a Directory,
    id: ChannelId,
    me: &PeerId,
    cap: usize,
) -> Option<PresenceView<'a>> {
    let ch = dir.channel(id)?;
    let entry =
        |(p, metadata): (&'a str, &'a serde_json::Map<String, serde_json::Value>)| PresenceEntry {
            peer_id: p,
            metadata: Some(metadata),
        };
    let (joined, count): (Vec<_>, usize) = if dir.remote_nodes() == 0 {
        let joined = ch
            .presence()
            .filter(|(p, _)| *p != me)
            .take(cap)
            .map(|(p, m)| entry((p.as_str(), &**m)))
            .collect();
        (joined, ch.peer_count())
    } else {
        let roster = dir.roster(id);
        let count = roster.len();
        let joined = roster
            .into_iter()
            .filter(|(p, _)| *p != me.as_str())
            .take(cap)
            .map(entry)
            .collect();
        (joined, count)
    };
    Some(PresenceView {
        channel: ch.name(),
        joined,
        left: Vec::new(),
        snapshot: true,
        count,
        truncated: count > cap,
    })
}
