//! Members on other nodes: each node's state as it last told it, and the questions
//! routing asks across nodes (is this peer present anywhere, who holds it).
//!
//! A peer is *present* in a channel while any node (this one included) has it there;
//! what the local members are told follows from that: a remote arrival of a peer
//! already present elsewhere changes nothing for them, and a departure is told only
//! when the last node lets the peer go.

use std::collections::{BTreeMap, BTreeSet};

use super::Directory;
use crate::cluster::{Member, NodeId, NodeState, Outbound, RemoteEvent};
use crate::ids::{ConnId, PeerId, TenantId};

/// What a remote change means for this node's members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(in crate::hub) enum RemoteEffect {
    /// `peer` became present in the channel (or changed its metadata there).
    Arrived {
        tenant: String,
        channel: String,
        peer: String,
        member: Member,
    },
    /// `peer` is no longer present in the channel on any node.
    Departed {
        tenant: String,
        channel: String,
        peer: String,
    },
}

impl Directory {
    /// Whether another node has `peer` present in channel `name` of `tenant`.
    pub(in crate::hub) fn remote_present(&self, tenant: &TenantId, name: &str, peer: &str) -> bool {
        self.remote.values().any(|state| {
            state
                .channels
                .get(tenant.as_str())
                .and_then(|c| c.get(name))
                .is_some_and(|peers| peers.contains_key(peer))
        })
    }

    /// Peers present in channel `name` of `tenant` on other nodes and not here, with
    /// their metadata (the first node's, by node id, when several have one).
    pub(in crate::hub) fn remote_only(
        &self,
        tenant: &TenantId,
        name: &str,
    ) -> BTreeMap<&str, &Member> {
        let local = self
            .channel_id(tenant, name)
            .and_then(|id| self.channels.get(&id));
        let mut out = BTreeMap::new();
        for state in self.remote.values() {
            let Some(peers) = state
                .channels
                .get(tenant.as_str())
                .and_then(|c| c.get(name))
            else {
                continue;
            };
            for (peer, member) in peers {
                if local.is_some_and(|ch| ch.peers.contains_key(peer.as_str())) {
                    continue;
                }
                out.entry(peer.as_str()).or_insert(member);
            }
        }
        out
    }

    /// Whether another node holds a connection of `peer` in `tenant`.
    pub(in crate::hub) fn remote_holds(&self, tenant: &TenantId, peer: &str) -> bool {
        self.remote.values().any(|state| {
            state
                .peers
                .get(tenant.as_str())
                .is_some_and(|peers| peers.contains(peer))
        })
    }

    /// Whether `peer` is present in the channel here.
    fn local_present(&self, tenant: &str, name: &str, peer: &str) -> bool {
        self.channel_id(&TenantId::new(tenant), name)
            .and_then(|id| self.channels.get(&id))
            .is_some_and(|ch| ch.peers.contains_key(peer))
    }

    /// Applies what `node` did and returns what it means here, in a deterministic
    /// order (by tenant, channel, peer).
    pub(in crate::hub) fn apply_remote(
        &mut self,
        node: &NodeId,
        event: RemoteEvent,
    ) -> Vec<RemoteEffect> {
        // Answers to this node's own questions change nobody's presence.
        if matches!(
            event,
            RemoteEvent::Stored(_) | RemoteEvent::Recovered(_) | RemoteEvent::NotStored(_)
        ) {
            return Vec::new();
        }
        let old = self.remote.get(node).cloned().unwrap_or_default();
        let mut new = old.clone();
        let gone = event == RemoteEvent::Gone;
        // An announce into a room is news even when the node's state does not change
        // (the peer was there already, through a subscription or a replaced
        // connection): the newest room connection takes the room over.
        let announced = match &event {
            RemoteEvent::Changed(Outbound::Joined {
                tenant,
                channel,
                peer,
                member,
            }) if member.room => Some((tenant.clone(), channel.clone(), peer.clone())),
            _ => None,
        };
        match event {
            RemoteEvent::State(state) => new = state,
            RemoteEvent::Gone => new = NodeState::default(),
            RemoteEvent::Changed(Outbound::Joined {
                tenant,
                channel,
                peer,
                member,
            }) => {
                new.channels
                    .entry(tenant)
                    .or_default()
                    .entry(channel)
                    .or_default()
                    .insert(peer, member);
            }
            RemoteEvent::Changed(Outbound::Left {
                tenant,
                channel,
                peer,
            }) => {
                if let Some(channels) = new.channels.get_mut(&tenant) {
                    if let Some(peers) = channels.get_mut(&channel) {
                        peers.remove(&peer);
                        if peers.is_empty() {
                            channels.remove(&channel);
                        }
                    }
                    if channels.is_empty() {
                        new.channels.remove(&tenant);
                    }
                }
            }
            RemoteEvent::Changed(Outbound::Peer {
                tenant,
                peer,
                online,
            }) => {
                let peers = new.peers.entry(tenant.clone()).or_default();
                if online {
                    peers.insert(peer);
                } else {
                    peers.remove(&peer);
                    if peers.is_empty() {
                        new.peers.remove(&tenant);
                    }
                }
            }
            // Messages change nobody's presence.
            RemoteEvent::Changed(
                Outbound::Publish(_)
                | Outbound::Direct(_)
                | Outbound::Disconnect { .. }
                | Outbound::Recover(_),
            )
            | RemoteEvent::Stored(_)
            | RemoteEvent::Recovered(_)
            | RemoteEvent::NotStored(_) => return Vec::new(),
        }
        self.remote.remove(node);
        let keys: BTreeSet<(&String, &String, &String)> =
            entries(&old).chain(entries(&new)).collect();
        let mut effects = Vec::new();
        for (tenant, channel, peer) in keys {
            let was = member_of(&old, tenant, channel, peer);
            let is = member_of(&new, tenant, channel, peer);
            let announce = announced
                .as_ref()
                .is_some_and(|(t, c, p)| t == tenant && c == channel && p == peer);
            if was == is && !announce {
                continue;
            }
            let elsewhere = self.local_present(tenant, channel, peer)
                || self.remote_present(&TenantId::new(tenant), channel, peer);
            match (is, elsewhere) {
                (Some(member), false) => effects.push(RemoteEffect::Arrived {
                    tenant: tenant.clone(),
                    channel: channel.clone(),
                    peer: peer.clone(),
                    member: member.clone(),
                }),
                // A room member arriving elsewhere is news even for a peer present
                // here: the newest connection takes the room over.
                (Some(member), true) if member.room => effects.push(RemoteEffect::Arrived {
                    tenant: tenant.clone(),
                    channel: channel.clone(),
                    peer: peer.clone(),
                    member: member.clone(),
                }),
                (None, false) => effects.push(RemoteEffect::Departed {
                    tenant: tenant.clone(),
                    channel: channel.clone(),
                    peer: peer.clone(),
                }),
                _ => {}
            }
        }
        if !gone {
            self.remote.insert(node.clone(), new);
        }
        effects
    }

    /// Local connections of `peer` in `tenant`, restricted to the members of room
    /// `room` when given.
    pub(in crate::hub) fn local_targets(
        &self,
        tenant: &TenantId,
        peer: &PeerId,
        room: Option<&str>,
    ) -> Vec<ConnId> {
        let conns = self.peer_conns(tenant, peer);
        let Some(room) = room else {
            return conns;
        };
        let Some(ch) = self
            .channel_id(tenant, room)
            .and_then(|id| self.channels.get(&id))
        else {
            return Vec::new();
        };
        conns
            .into_iter()
            .filter(|c| ch.members.contains_key(c))
            .collect()
    }

    /// This node's state, as other nodes must see it.
    pub(in crate::hub) fn node_state(&self) -> NodeState {
        let mut state = NodeState::default();
        for (&id, ch) in &self.channels {
            let peers = state
                .channels
                .entry(ch.tenant.as_str().to_owned())
                .or_default()
                .entry(ch.name.to_string())
                .or_default();
            for (peer, presence) in &ch.peers {
                let room = presence
                    .conns
                    .iter()
                    .any(|c| self.places.get(c).is_some_and(|p| p.room == Some(id)));
                peers.insert(
                    peer.as_str().to_owned(),
                    Member {
                        metadata: (*presence.metadata).clone(),
                        room,
                    },
                );
            }
        }
        for (tenant, peer) in self.peers.keys() {
            state
                .peers
                .entry(tenant.as_str().to_owned())
                .or_default()
                .insert(peer.as_str().to_owned());
        }
        state
    }

    /// Nodes this one knows of.
    pub(in crate::hub) fn remote_nodes(&self) -> usize {
        self.remote.len()
    }
}

fn entries(state: &NodeState) -> impl Iterator<Item = (&String, &String, &String)> {
    state.channels.iter().flat_map(|(t, channels)| {
        channels
            .iter()
            .flat_map(move |(c, peers)| peers.keys().map(move |p| (t, c, p)))
    })
}

fn member_of<'a>(
    state: &'a NodeState,
    tenant: &str,
    channel: &str,
    peer: &str,
) -> Option<&'a Member> {
    state.channels.get(tenant)?.get(channel)?.get(peer)
}
