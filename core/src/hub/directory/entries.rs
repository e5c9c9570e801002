//! The directory's entries: a connection's place, a channel with its members and
//! presence, and the values the directory's methods return. Their fields are
//! private to the directory; the hub reads them through the getters.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::ids::{ChannelId, ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::wire::Dialect;

/// Presence metadata, shared by every frame that shows it.
pub(in crate::hub) type Metadata = Arc<Map<String, Value>>;

/// A connection's routing facts.
#[derive(Debug)]
pub(in crate::hub) struct Place {
    pub(super) dialect: Dialect,
    pub(super) tenant: TenantId,
    /// Bound by the first announce, or at authentication.
    pub(super) peer: Option<PeerId>,
    /// The rtc-signaller room (at most one).
    pub(super) room: Option<ChannelId>,
    /// Exact subscriptions (JSON and Broadcaster).
    pub(super) subs: BTreeSet<ChannelId>,
    /// Wildcard subscriptions, with the tenant each was made in.
    pub(super) patterns: BTreeSet<(TenantId, Pattern)>,
}

impl Place {
    /// The connection's dialect.
    pub(in crate::hub) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The connection's own tenant.
    pub(in crate::hub) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The peer id the connection is bound to, once bound.
    pub(in crate::hub) fn peer(&self) -> Option<&PeerId> {
        self.peer.as_ref()
    }

    /// The rtc-signaller room the connection is in.
    pub(in crate::hub) fn room(&self) -> Option<ChannelId> {
        self.room
    }

    /// Exact subscriptions, by channel id.
    pub(in crate::hub) fn subscriptions(&self) -> impl Iterator<Item = ChannelId> + '_ {
        self.subs.iter().copied()
    }

    /// Wildcard subscriptions, with the tenant each was made in.
    pub(in crate::hub) fn patterns(&self) -> impl Iterator<Item = &(TenantId, Pattern)> {
        self.patterns.iter()
    }

    /// Exact and wildcard subscriptions, for the per-connection channel limit.
    pub(in crate::hub) fn subscription_count(&self) -> usize {
        self.subs.len() + self.patterns.len()
    }
}

/// Per-subscription options of a wildcard subscription.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::hub) struct SubOpts {
    /// Messages carry `fromMetadata`.
    pub(in crate::hub) include_meta: bool,
    /// The subscription is in another tenant than the connection's own: its messages
    /// name their tenant.
    pub(in crate::hub) foreign: bool,
}

/// A channel (or rtc-signaller room) with anyone in it.
#[derive(Debug)]
pub(in crate::hub) struct Channel {
    pub(super) tenant: TenantId,
    pub(super) name: Arc<str>,
    /// Member connections. A peer may have several (across dialects).
    pub(super) members: BTreeMap<ConnId, Member>,
    /// Presence, per peer id: a peer is present while any of its connections is.
    pub(super) peers: BTreeMap<PeerId, Presence>,
    /// Presence deltas are suspended: more peers than the presence cap.
    pub(super) over_cap: bool,
}

impl Channel {
    /// The channel's tenant.
    pub(in crate::hub) fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The channel's name.
    pub(in crate::hub) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Member connections, in id order.
    pub(in crate::hub) fn members(&self) -> impl Iterator<Item = (ConnId, &Member)> {
        self.members.iter().map(|(c, m)| (*c, m))
    }

    /// The member entry of `conn`.
    pub(in crate::hub) fn member(&self, conn: ConnId) -> Option<&Member> {
        self.members.get(&conn)
    }

    /// How many peers are present.
    pub(in crate::hub) fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// Present peers and their metadata, in id order.
    pub(in crate::hub) fn presence(&self) -> impl Iterator<Item = (&PeerId, &Metadata)> {
        self.peers
            .iter()
            .map(|(p, presence)| (p, &presence.metadata))
    }

    /// The metadata of a present peer.
    pub(in crate::hub) fn metadata(&self, peer: &str) -> Option<&Metadata> {
        self.peers.get(peer).map(|p| &p.metadata)
    }

    /// The connections of `peer` in this channel, with their dialects.
    pub(in crate::hub) fn peer_conns(&self, peer: &str) -> impl Iterator<Item = (ConnId, Dialect)> {
        self.peers
            .get(peer)
            .into_iter()
            .flat_map(|p| &p.conns)
            .map(|c| (*c, self.members[c].dialect))
    }

    /// Whether presence deltas are suspended (over the presence cap).
    pub(in crate::hub) fn over_cap(&self) -> bool {
        self.over_cap
    }
}

/// One connection's membership in a channel.
#[derive(Debug)]
pub(in crate::hub) struct Member {
    pub(super) peer: PeerId,
    pub(super) dialect: Dialect,
    /// Messages to this member carry `fromMetadata`.
    pub(super) include_meta: bool,
    /// This member receives presence frames (JSON, with the `presence` permission).
    pub(super) presence: bool,
    /// The channel is in another tenant than the member connection's own (it named
    /// the tenant when subscribing): its messages name their tenant.
    pub(super) foreign: bool,
    /// Messages delivered on this subscription so far: a Broadcaster member's next
    /// push carries `seq + 1`.
    pub(super) seq: u64,
}

impl Member {
    /// The member's peer id.
    pub(in crate::hub) fn peer(&self) -> &PeerId {
        &self.peer
    }

    /// The member connection's dialect.
    pub(in crate::hub) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Messages to this member carry the sender's metadata.
    pub(in crate::hub) fn include_meta(&self) -> bool {
        self.include_meta
    }

    /// The member receives presence frames.
    pub(in crate::hub) fn presence(&self) -> bool {
        self.presence
    }

    /// The channel is in another tenant than the member's own.
    pub(in crate::hub) fn foreign(&self) -> bool {
        self.foreign
    }
}

#[derive(Debug)]
pub(super) struct Presence {
    /// The peer's connections in this channel (an index for `/to`).
    pub(super) conns: BTreeSet<ConnId>,
    pub(super) metadata: Metadata,
}

/// A peer is no longer present in a channel: its last connection there went.
#[derive(Clone, Debug)]
pub(in crate::hub) struct Departed {
    /// The channel (it may be gone already, when nobody is left in it).
    pub(in crate::hub) channel: ChannelId,
    /// The channel's tenant.
    pub(in crate::hub) tenant: TenantId,
    /// The channel's name.
    pub(in crate::hub) name: Arc<str>,
    /// Who left.
    pub(in crate::hub) peer: PeerId,
}

/// What a subscription to an exact channel changed.
#[derive(Clone, Copy, Debug)]
pub(in crate::hub) struct Joined {
    /// The channel.
    pub(in crate::hub) channel: ChannelId,
    /// The peer was not present in the channel before.
    pub(in crate::hub) new_peer: bool,
}

/// What an rtc-signaller announce changed.
#[derive(Debug)]
pub(in crate::hub) struct Entered {
    /// The room the connection is in now.
    pub(in crate::hub) room: ChannelId,
    /// The connection was not in this room before (first announce, or a move).
    pub(in crate::hub) first_in_room: bool,
    /// The peer left its previous room, when the announce moved it.
    pub(in crate::hub) left: Option<Departed>,
    /// Older rtc-signaller connections of the same peer, detached from the room (the
    /// newest takes over; the peer stays present, so nobody sees a leave).
    pub(in crate::hub) replaced: Vec<ConnId>,
}

/// A connection taken out of the directory: where it was, and who left where.
#[derive(Debug)]
pub(in crate::hub) struct Removed {
    /// Its tenant.
    pub(in crate::hub) tenant: TenantId,
    /// Channels its peer is no longer present in, room first.
    pub(in crate::hub) departed: Vec<Departed>,
    /// Its peer, when it was the peer's last connection here.
    pub(in crate::hub) offline: Option<PeerId>,
}

/// A wildcard subscriber a message reaches.
#[derive(Clone, Copy, Debug)]
pub(in crate::hub) struct PatternRecipient {
    pub(in crate::hub) conn: ConnId,
    pub(in crate::hub) dialect: Dialect,
    pub(in crate::hub) include_meta: bool,
    pub(in crate::hub) foreign: bool,
}
