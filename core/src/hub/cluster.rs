//! The hub as one node of a cluster: what it tells the other nodes, and what their
//! news means for its own connections. See [`crate::cluster`].

use std::sync::Arc;

use bytes::Bytes;

use super::directory::RemoteEffect;
use super::fanout::Frames;
use super::{Event, Hub, Output};
use crate::cluster::{self, Member, NodeState, Outbound, Publication, Remote, RemoteEvent};
use crate::codes::{CloseCode, ErrorCode};
use crate::ids::{ConnId, PeerId, TenantId};
use crate::wire::codec::{Arrival, Direct, Frame, Message, Original, Payload};
use crate::wire::{Dialect, Stamp};

impl Hub {
    /// This node's state, for the engine's heartbeat and for nodes that start late.
    pub fn node_state(&self) -> NodeState {
        self.dir.node_state()
    }

    /// Whether another node holds a connection of `peer` in `tenant` (as far as its
    /// last news goes): what a control plane answers for a peer it does not hold.
    pub fn peer_on_other_nodes(&self, tenant: &str, peer: &str) -> bool {
        self.dir.remote_holds(&TenantId::new(tenant), peer)
    }

    /// How many other nodes this hub knows of.
    pub fn cluster_nodes(&self) -> usize {
        self.dir.remote_nodes()
    }

    /// Queues `out` for the other nodes, when the hub is one node of a cluster.
    pub(super) fn tell_cluster(&mut self, out: impl FnOnce() -> Outbound) {
        if self.config.cluster {
            self.out.push_back(Output::Cluster(Box::new(out())));
        }
    }

    /// Tells the other nodes a message was published here.
    pub(super) fn tell_publication(&mut self, tenant: &TenantId, message: &Message<'_>) {
        if self.config.cluster {
            let p = self.publication(tenant, message);
            self.out
                .push_back(Output::Cluster(Box::new(Outbound::Publish(p))));
        }
    }

    /// `message` as other nodes need it.
    pub(super) fn publication(&self, tenant: &TenantId, message: &Message<'_>) -> Publication {
        Publication {
            tenant: tenant.as_str().to_owned(),
            channel: message.channel.to_owned(),
            from: message.from.as_str().to_owned(),
            meta: message.meta.clone(),
            payload: to_cluster(message.payload),
            event: message.event.map(str::to_owned),
            number: message.stamp.number,
            unix_ms: message.stamp.unix_ms,
            original: message.original.map(|o| cluster::Original {
                dialect: o.dialect.name().to_owned(),
                frame: String::from_utf8_lossy(o.frame).into_owned(),
            }),
            history: None,
            offset: None,
            epoch: None,
            origin_conn: None,
        }
    }

    /// Tells the other nodes `peer` is present in a channel here.
    pub(super) fn tell_joined(
        &mut self,
        tenant: &TenantId,
        channel: &str,
        peer: &PeerId,
        metadata: &serde_json::Map<String, serde_json::Value>,
        room: bool,
    ) {
        self.tell_cluster(|| Outbound::Joined {
            tenant: tenant.as_str().to_owned(),
            channel: channel.to_owned(),
            peer: peer.as_str().to_owned(),
            member: Member {
                metadata: metadata.clone(),
                room,
            },
        });
    }

    /// Tells the other nodes about a direct message for a peer they hold.
    pub(super) fn tell_direct(
        &mut self,
        tenant: &TenantId,
        direct: &Direct<'_>,
        room: Option<&str>,
    ) {
        self.tell_cluster(|| {
            Outbound::Direct(cluster::Delivery {
                tenant: tenant.as_str().to_owned(),
                to: direct.to.as_str().to_owned(),
                from: direct.from.as_str().to_owned(),
                meta: direct.meta.clone(),
                payload: to_cluster(direct.payload),
                original: direct.original.map(|o| cluster::Original {
                    dialect: o.dialect.name().to_owned(),
                    frame: String::from_utf8_lossy(o.frame).into_owned(),
                }),
                room: room.map(str::to_owned),
            })
        });
    }

    /// Tells the other nodes whether this node holds a connection of `peer`.
    pub(super) fn tell_peer(&mut self, tenant: &TenantId, peer: &PeerId, online: bool) {
        self.tell_cluster(|| Outbound::Peer {
            tenant: tenant.as_str().to_owned(),
            peer: peer.as_str().to_owned(),
            online,
        });
    }

    /// What another node did.
    pub(super) fn on_remote(&mut self, remote: Remote) {
        let Remote { node, event } = remote;
        match event {
            RemoteEvent::Changed(Outbound::Publish(p)) if p.offset.is_some() => {
                self.deliver_stored(&p, None);
            }
            RemoteEvent::Changed(Outbound::Publish(p)) => self.deliver_remote(&p, None),
            RemoteEvent::Stored(p) => {
                let origin = p.origin_conn.map(ConnId);
                self.deliver_stored(&p, origin);
                self.answer_stored(&p, true);
            }
            RemoteEvent::NotStored(p) => self.answer_stored(&p, false),
            RemoteEvent::Recovered(r) => self.on_recovered(r),
            RemoteEvent::Changed(Outbound::Direct(d)) => self.on_remote_direct(&d),
            RemoteEvent::Changed(Outbound::Disconnect { tenant, peer, code }) => {
                let conns = self
                    .dir
                    .peer_conns(&TenantId::new(&tenant), &PeerId::new(&peer));
                for conn in conns {
                    self.close(conn, CloseCode(code), "disconnected by an operator");
                }
            }
            event => {
                for effect in self.dir.apply_remote(&node, event) {
                    self.on_remote_effect(effect);
                }
            }
        }
    }

    fn on_remote_effect(&mut self, effect: RemoteEffect) {
        match effect {
            RemoteEffect::Arrived {
                tenant,
                channel,
                peer,
                member,
            } => {
                let tenant = TenantId::new(&tenant);
                let Some(id) = self.dir.channel_id(&tenant, &channel) else {
                    return;
                };
                let peer = PeerId::new(&peer);
                if member.room {
                    // One connection per id per room, across nodes: the newest wins.
                    let (replaced, left) = self.dir.evict_room_member(id, &peer);
                    for old in replaced {
                        self.refuse(
                            old,
                            ErrorCode::Replaced,
                            "another connection announced this peer id in this room",
                        );
                    }
                    if left.is_some() {
                        self.tell_cluster(|| Outbound::Left {
                            tenant: tenant.as_str().to_owned(),
                            channel: channel.clone(),
                            peer: peer.as_str().to_owned(),
                        });
                    }
                }
                let metadata = Arc::new(member.metadata);
                let arrival = Arrival {
                    peer: &peer,
                    room: &channel,
                    metadata: &metadata,
                    original: None,
                };
                let mut frames = Frames::new(|dialect: Dialect, _| {
                    dialect.codec().arrived(&arrival).map(Frame::from)
                });
                self.fan_out(id, None, &mut frames);
                self.queue_presence(id, &peer, Some(metadata));
            }
            RemoteEffect::Departed {
                tenant,
                channel,
                peer,
            } => {
                let tenant = TenantId::new(&tenant);
                let Some(id) = self.dir.channel_id(&tenant, &channel) else {
                    return;
                };
                let peer = PeerId::new(&peer);
                let mut frames = Frames::new(|dialect: Dialect, _| {
                    dialect.codec().departed(&peer, None).map(Frame::from)
                });
                self.fan_out(id, None, &mut frames);
                self.queue_presence(id, &peer, None);
                self.event(Event::Left {
                    peer,
                    channel,
                    synthetic: true,
                });
            }
        }
    }

    /// Delivers another node's publication (or, numbered, any node's) to this node's
    /// members and matching patterns, never to `except`.
    pub(super) fn deliver_remote(&mut self, p: &Publication, except: Option<ConnId>) {
        let tenant = TenantId::new(&p.tenant);
        let from = PeerId::new(&p.from);
        let original_frame = p.original.as_ref().map(|o| Bytes::from(o.frame.clone()));
        let original = p
            .original
            .as_ref()
            .zip(original_frame.as_ref())
            .and_then(|(o, frame)| {
                Dialect::from_name(&o.dialect).map(|dialect| Original { dialect, frame })
            });
        let data = match &p.payload {
            cluster::Payload::Json { data } => Some(Bytes::from(data.clone())),
            cluster::Payload::Signal { .. } => None,
        };
        let payload = match (&p.payload, &data) {
            (cluster::Payload::Signal { name, args }, _) => Payload::Signal {
                name,
                args: args.as_bytes(),
            },
            (_, Some(data)) => Payload::Json(data),
            (cluster::Payload::Json { .. }, None) => unreachable!("set above"),
        };
        let message = Message {
            channel: &p.channel,
            from: &from,
            meta: &p.meta,
            payload,
            event: p.event.as_deref(),
            stamp: Stamp {
                number: p.number,
                unix_ms: p.unix_ms,
            },
            offset: p.offset,
            original,
        };
        let mut frames =
            Frames::new(|dialect: Dialect, with_meta| dialect.codec().message(&message, with_meta));
        self.deliver(&tenant, &p.channel, except, &mut frames);
    }

    fn on_remote_direct(&mut self, d: &cluster::Delivery) {
        let tenant = TenantId::new(&d.tenant);
        let to = PeerId::new(&d.to);
        let targets: Vec<ConnId> = self
            .dir
            .local_targets(&tenant, &to, d.room.as_deref())
            .into_iter()
            .filter(|&c| self.codec(c).abilities().direct)
            .collect();
        if targets.is_empty() {
            return;
        }
        let from = PeerId::new(&d.from);
        let data = match &d.payload {
            cluster::Payload::Json { data } => Bytes::from(data.clone()),
            cluster::Payload::Signal { .. } => Bytes::new(),
        };
        let payload = match &d.payload {
            cluster::Payload::Signal { name, args } => Payload::Signal {
                name,
                args: args.as_bytes(),
            },
            cluster::Payload::Json { .. } => Payload::Json(&data),
        };
        let original_frame = d.original.as_ref().map(|o| Bytes::from(o.frame.clone()));
        let original = d
            .original
            .as_ref()
            .zip(original_frame.as_ref())
            .and_then(|(o, frame)| {
                Dialect::from_name(&o.dialect).map(|dialect| Original { dialect, frame })
            });
        let direct = Direct {
            from: &from,
            to: &to,
            meta: &d.meta,
            payload,
            original,
        };
        self.send_direct(&targets, &direct);
    }
}

/// A payload as other nodes get it.
pub(super) fn to_cluster(payload: Payload<'_>) -> cluster::Payload {
    match payload {
        Payload::Json(data) => cluster::Payload::Json {
            data: String::from_utf8_lossy(data).into_owned(),
        },
        Payload::Signal { name, args } => cluster::Payload::Signal {
            name: name.to_owned(),
            args: String::from_utf8_lossy(args).into_owned(),
        },
    }
}
