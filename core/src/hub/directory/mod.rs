//! Who is where: the one owner of the hub's routing state.
//!
//! The directory holds every connection's place (dialect, tenant, peer id, room,
//! subscriptions, patterns), the channels with their members and presence, the
//! index of peers for direct messages and the wildcard subscriptions. Each index
//! has a reverse one (a channel's members and each member's channels, a peer's
//! connections and each connection's peer); both sides are private to this file, so
//! only the methods below change them, together. The methods return what changed
//! ([`Departed`], [`Joined`], [`Entered`]); the hub turns those values into frames.
//! Nothing here knows a dialect's wire text.
//!
//! Implementation note: the directory is the piece a cluster needs to extend with
//! members living on other nodes; keeping it free of rendering and of connection
//! bookkeeping (auth, rate, caps, timers, which stay in the hub) is what makes that
//! possible.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::ids::{ChannelId, ConnId, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::wire::Dialect;

#[cfg(any(test, feature = "testing"))]
mod check;
mod entries;
mod remote;

use entries::Presence;
pub(super) use entries::{
    Channel, Departed, Entered, Joined, Member, Metadata, PatternRecipient, Place, Removed, SubOpts,
};
pub(super) use remote::RemoteEffect;

/// The routing state: see the module docs.
#[derive(Debug, Default)]
pub(super) struct Directory {
    places: BTreeMap<ConnId, Place>,
    channels: BTreeMap<ChannelId, Channel>,
    /// Channel ids by tenant and name (nested so lookups by `&str` allocate nothing).
    channel_ids: BTreeMap<TenantId, BTreeMap<Arc<str>, ChannelId>>,
    next_channel: u64,
    /// Every live connection of each bound peer, for `send` and disconnects.
    peers: BTreeMap<(TenantId, PeerId), BTreeSet<ConnId>>,
    /// Wildcard subscriptions per tenant. They get messages, never presence.
    patterns: BTreeMap<TenantId, BTreeMap<Pattern, BTreeMap<ConnId, SubOpts>>>,
    /// What each other node of the cluster holds, as it last told us.
    remote: BTreeMap<crate::cluster::NodeId, crate::cluster::NodeState>,
}

impl Directory {
    /// Registers a new connection in `tenant` (the default one until it
    /// authenticates), in no channel.
    pub(super) fn add(&mut self, conn: ConnId, dialect: Dialect, tenant: TenantId) {
        self.places.insert(
            conn,
            Place {
                dialect,
                tenant,
                peer: None,
                room: None,
                subs: BTreeSet::new(),
                patterns: BTreeSet::new(),
            },
        );
    }

    /// The place of a connection the directory knows.
    pub(super) fn get(&self, conn: ConnId) -> Option<&Place> {
        self.places.get(&conn)
    }

    /// The place of a live connection.
    ///
    /// Panics if `conn` is unknown: the hub routes only connections it checked at
    /// the start of the step, and the directory and the hub's connection table gain
    /// and lose a connection in the same call (`Hub::open`, `Hub::teardown`).
    pub(super) fn place(&self, conn: ConnId) -> &Place {
        self.places
            .get(&conn)
            .unwrap_or_else(|| panic!("{conn} is not a live connection"))
    }

    fn place_mut(&mut self, conn: ConnId) -> &mut Place {
        self.places
            .get_mut(&conn)
            .unwrap_or_else(|| panic!("{conn} is not a live connection"))
    }

    /// Every connection, in id order.
    pub(super) fn places(&self) -> impl Iterator<Item = (ConnId, &Place)> {
        self.places.iter().map(|(c, p)| (*c, p))
    }

    /// Moves an unbound connection to `tenant` (at authentication).
    pub(super) fn set_tenant(&mut self, conn: ConnId, tenant: TenantId) {
        let place = self.place_mut(conn);
        debug_assert!(place.peer.is_none(), "a bound connection keeps its tenant");
        place.tenant = tenant;
    }

    /// Binds a connection's peer id and indexes it for direct messages. Returns how
    /// many connections the peer now has in its tenant.
    pub(super) fn bind(&mut self, conn: ConnId, peer: PeerId) -> usize {
        let place = self.place_mut(conn);
        debug_assert!(place.peer.is_none(), "a connection is bound once");
        place.peer = Some(peer.clone());
        let key = (place.tenant.clone(), peer);
        let set = self.peers.entry(key).or_default();
        set.insert(conn);
        set.len()
    }

    /// The connections of `peer` in `tenant`, in id order.
    pub(super) fn peer_conns(&self, tenant: &TenantId, peer: &PeerId) -> Vec<ConnId> {
        self.peers
            .get(&(tenant.clone(), peer.clone()))
            .map(|set| set.iter().copied().collect())
            .unwrap_or_default()
    }

    /// The id of channel `name` in `tenant`, if anyone is in it.
    pub(super) fn channel_id(&self, tenant: &TenantId, name: &str) -> Option<ChannelId> {
        self.channel_ids.get(tenant)?.get(name).copied()
    }

    /// A channel with anyone in it.
    pub(super) fn channel(&self, id: ChannelId) -> Option<&Channel> {
        self.channels.get(&id)
    }

    /// Every channel, in id order.
    pub(super) fn channels(&self) -> impl Iterator<Item = &Channel> {
        self.channels.values()
    }

    /// Suspends or resumes presence deltas in a channel.
    pub(super) fn set_over_cap(&mut self, id: ChannelId, over: bool) {
        if let Some(ch) = self.channels.get_mut(&id) {
            ch.over_cap = over;
        }
    }

    /// Whether `conn` is subscribed to channel `name` of `tenant`.
    pub(super) fn is_subscribed(&self, conn: ConnId, tenant: &TenantId, name: &str) -> bool {
        self.channel_id(tenant, name)
            .is_some_and(|ch| self.place(conn).subs.contains(&ch))
    }

    /// Whether `conn` holds the wildcard subscription `pattern` in `tenant`.
    pub(super) fn has_pattern(&self, conn: ConnId, tenant: &TenantId, pattern: &Pattern) -> bool {
        self.place(conn)
            .patterns
            .contains(&(tenant.clone(), pattern.clone()))
    }

    /// Puts a bound rtc-signaller connection in room `name` of its tenant with
    /// `metadata`, leaving its previous room, and detaching older rtc-signaller
    /// connections of the same peer from the room.
    pub(super) fn enter_room(&mut self, conn: ConnId, name: &str, metadata: Metadata) -> Entered {
        let place = self.place(conn);
        let (tenant, previous) = (place.tenant.clone(), place.room);
        let peer = place.peer.clone().expect("announce binds the peer first");
        let room = self.channel_entry(&tenant, name);
        let left = match previous {
            Some(old) if old != room => self.detach(old, conn),
            _ => None,
        };
        self.join(room, conn, &peer, metadata, false, false);
        let replaced = self.take_over(room, conn, &peer);
        self.place_mut(conn).room = Some(room);
        Entered {
            room,
            first_in_room: previous != Some(room),
            left,
            replaced,
        }
    }

    /// Detaches `peer`'s room members from room `id` (another node's connection took
    /// the room over). Returns them, and whether the peer left the room here.
    pub(super) fn evict_room_member(
        &mut self,
        id: ChannelId,
        peer: &PeerId,
    ) -> (Vec<ConnId>, Option<Departed>) {
        let Some(ch) = self.channels.get(&id) else {
            return (Vec::new(), None);
        };
        let stale: Vec<ConnId> = ch
            .peer_conns(peer.as_str())
            .map(|(c, _)| c)
            .filter(|c| self.places[c].room == Some(id))
            .collect();
        let mut departed = None;
        for &old in &stale {
            self.place_mut(old).room = None;
            departed = departed.or(self.detach(id, old));
        }
        (stale, departed)
    }

    /// How many peers are present in channel `id` on any node.
    pub(super) fn present_count(&self, id: ChannelId) -> usize {
        self.channels.get(&id).map_or(0, |ch| {
            ch.peer_count() + self.remote_only(&ch.tenant, &ch.name).len()
        })
    }

    /// Everyone present in channel `id` on any node, by peer id, with metadata.
    pub(super) fn roster(
        &self,
        id: ChannelId,
    ) -> BTreeMap<&str, &serde_json::Map<String, serde_json::Value>> {
        let Some(ch) = self.channels.get(&id) else {
            return BTreeMap::new();
        };
        let mut all: BTreeMap<&str, &serde_json::Map<String, serde_json::Value>> = ch
            .peers
            .iter()
            .map(|(p, presence)| (p.as_str(), &*presence.metadata))
            .collect();
        for (peer, member) in self.remote_only(&ch.tenant, &ch.name) {
            all.insert(peer, &member.metadata);
        }
        all
    }

    /// Takes a connection out of its room (`/leave`). `None` when it was in none, or
    /// when its peer is still present through another connection.
    pub(super) fn leave_room(&mut self, conn: ConnId) -> Option<Departed> {
        let room = self.place_mut(conn).room.take()?;
        self.detach(room, conn)
    }

    /// Subscribes a bound connection to channel `name` of `tenant` (or updates its
    /// options and metadata if it is subscribed already).
    pub(super) fn subscribe(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        name: &str,
        metadata: Metadata,
        include_meta: bool,
        presence: bool,
    ) -> Joined {
        let peer = self
            .place(conn)
            .peer
            .clone()
            .expect("subscribers are bound at auth");
        let channel = self.channel_entry(tenant, name);
        let new_peer = self.join(channel, conn, &peer, metadata, include_meta, presence);
        self.place_mut(conn).subs.insert(channel);
        Joined { channel, new_peer }
    }

    /// Stops presence frames to every subscription of `conn` (its credentials no
    /// longer carry the presence permission); its own presence stays.
    pub(super) fn stop_presence(&mut self, conn: ConnId) {
        let subs: Vec<ChannelId> = self.place(conn).subs.iter().copied().collect();
        for channel in subs {
            if let Some(member) = self
                .channels
                .get_mut(&channel)
                .and_then(|ch| ch.members.get_mut(&conn))
            {
                member.presence = false;
            }
        }
    }

    /// Ends a subscription to an exact channel. `None` when there was none;
    /// `Some(departed)` otherwise, `departed` set when the peer left the channel.
    pub(super) fn unsubscribe(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        name: &str,
    ) -> Option<Option<Departed>> {
        let channel = self.channel_id(tenant, name)?;
        if !self.place_mut(conn).subs.remove(&channel) {
            return None;
        }
        Some(self.detach(channel, conn))
    }

    /// Adds (or replaces the options of) a wildcard subscription.
    pub(super) fn subscribe_pattern(
        &mut self,
        conn: ConnId,
        tenant: TenantId,
        pattern: Pattern,
        opts: SubOpts,
    ) {
        self.patterns
            .entry(tenant.clone())
            .or_default()
            .entry(pattern.clone())
            .or_default()
            .insert(conn, opts);
        self.place_mut(conn).patterns.insert((tenant, pattern));
    }

    /// Ends a wildcard subscription; false when there was none.
    pub(super) fn unsubscribe_pattern(
        &mut self,
        conn: ConnId,
        tenant: &TenantId,
        pattern: &Pattern,
    ) -> bool {
        let key = (tenant.clone(), pattern.clone());
        if !self.place_mut(conn).patterns.remove(&key) {
            return false;
        }
        self.unindex_pattern(conn, tenant, pattern);
        true
    }

    /// Takes a connection out of everything: its room, its subscriptions, its
    /// patterns and the peer index. The one teardown path, for closes and shutdown.
    pub(super) fn remove(&mut self, conn: ConnId) -> Option<Removed> {
        let place = self.places.remove(&conn)?;
        let mut departed = Vec::new();
        for channel in place.room.into_iter().chain(place.subs) {
            departed.extend(self.detach(channel, conn));
        }
        for (tenant, pattern) in &place.patterns {
            self.unindex_pattern(conn, tenant, pattern);
        }
        let mut offline = None;
        if let Some(peer) = place.peer {
            let key = (place.tenant.clone(), peer);
            if let Some(set) = self.peers.get_mut(&key) {
                set.remove(&conn);
                if set.is_empty() {
                    self.peers.remove(&key);
                    offline = Some(key.1);
                }
            }
        }
        Some(Removed {
            tenant: place.tenant,
            departed,
            offline,
        })
    }

    /// Members of `channel` except `except`, each with its Broadcaster sequence
    /// number to advance, for fan-out.
    pub(super) fn for_each_member(
        &mut self,
        channel: ChannelId,
        except: Option<ConnId>,
        mut f: impl FnMut(ConnId, &Member, &TenantId, &mut u64),
    ) {
        let Some(ch) = self.channels.get_mut(&channel) else {
            return;
        };
        for (&conn, member) in &mut ch.members {
            if Some(conn) == except {
                continue;
            }
            let mut seq = member.seq;
            f(conn, member, &ch.tenant, &mut seq);
            member.seq = seq;
        }
    }

    /// Wildcard subscribers of `tenant` a message to `name` reaches, once per
    /// connection, leaving out `except` and the members of the channel itself (they
    /// get it as members).
    pub(super) fn pattern_recipients(
        &self,
        tenant: &TenantId,
        name: &str,
        except: Option<ConnId>,
    ) -> Vec<PatternRecipient> {
        let Some(by_pattern) = self.patterns.get(tenant) else {
            return Vec::new();
        };
        let members = self
            .channel_id(tenant, name)
            .and_then(|ch| self.channels.get(&ch))
            .map(|c| &c.members);
        // A connection with several matching patterns still gets one copy.
        let mut recipients: BTreeMap<ConnId, (bool, bool)> = BTreeMap::new();
        for (pattern, subs) in by_pattern {
            if !pattern.matches(name) {
                continue;
            }
            for (&conn, opts) in subs {
                if Some(conn) == except || members.is_some_and(|m| m.contains_key(&conn)) {
                    continue;
                }
                let entry = recipients.entry(conn).or_default();
                entry.0 |= opts.include_meta;
                entry.1 = opts.foreign;
            }
        }
        recipients
            .into_iter()
            .map(|(conn, (include_meta, foreign))| PatternRecipient {
                conn,
                dialect: self.place(conn).dialect,
                include_meta,
                foreign,
            })
            .collect()
    }

    /// Counts: channels, memberships, wildcard subscriptions.
    pub(super) fn counts(&self) -> (usize, usize, usize) {
        let memberships = self.channels.values().map(|c| c.members.len()).sum();
        let patterns = self.places.values().map(|p| p.patterns.len()).sum();
        (self.channels.len(), memberships, patterns)
    }

    /// True when nobody is anywhere.
    #[cfg(any(test, feature = "testing"))]
    pub(super) fn is_empty(&self) -> bool {
        self.places.is_empty()
            && self.channels.is_empty()
            && self.channel_ids.is_empty()
            && self.peers.is_empty()
            && self.patterns.is_empty()
            && self.remote.is_empty()
    }

    /// The channel's id, creating it if needed.
    fn channel_entry(&mut self, tenant: &TenantId, name: &str) -> ChannelId {
        if let Some(id) = self.channel_id(tenant, name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        self.next_channel += 1;
        let id = ChannelId(self.next_channel);
        self.channels.insert(
            id,
            Channel {
                tenant: tenant.clone(),
                name: Arc::clone(&name),
                members: BTreeMap::new(),
                peers: BTreeMap::new(),
                over_cap: false,
            },
        );
        self.channel_ids
            .entry(tenant.clone())
            .or_default()
            .insert(name, id);
        id
    }

    /// Adds `conn` to `channel` as `peer`, or updates its member entry and the
    /// peer's metadata if already in. Returns true if the peer was not present.
    fn join(
        &mut self,
        channel: ChannelId,
        conn: ConnId,
        peer: &PeerId,
        metadata: Metadata,
        include_meta: bool,
        presence: bool,
    ) -> bool {
        let place = &self.places[&conn];
        let ch = self
            .channels
            .get_mut(&channel)
            .expect("created by the caller");
        let foreign = ch.tenant != place.tenant;
        ch.members.insert(
            conn,
            Member {
                peer: peer.clone(),
                dialect: place.dialect,
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

    /// Two connections never hold one id in one room: every other connection of
    /// `peer` that entered the room (rather than subscribing to it as a channel) leaves (without a departure: the
    /// peer stays present through `conn`). Returns them.
    fn take_over(&mut self, room: ChannelId, conn: ConnId, peer: &PeerId) -> Vec<ConnId> {
        let ch = &self.channels[&room];
        let stale: Vec<ConnId> = ch
            .peer_conns(peer.as_str())
            .map(|(c, _)| c)
            .filter(|&c| c != conn && self.places[&c].room == Some(room))
            .collect();
        for &old in &stale {
            self.place_mut(old).room = None;
            let departed = self.detach(room, old);
            debug_assert!(departed.is_none(), "the peer stays present through {conn}");
        }
        stale
    }

    /// Removes `conn`'s member entry from `channel` (the caller has already dropped
    /// the channel from the connection's place), dropping the channel once empty.
    /// Returns the departure when it was the peer's last connection there.
    fn detach(&mut self, channel: ChannelId, conn: ConnId) -> Option<Departed> {
        let ch = self.channels.get_mut(&channel)?;
        let member = ch.members.remove(&conn)?;
        let presence = ch
            .peers
            .get_mut(&member.peer)
            .expect("every member has a presence entry");
        presence.conns.remove(&conn);
        let departed = presence.conns.is_empty().then(|| {
            ch.peers.remove(&member.peer);
            Departed {
                channel,
                tenant: ch.tenant.clone(),
                name: Arc::clone(&ch.name),
                peer: member.peer,
            }
        });
        if ch.members.is_empty() {
            let ch = self.channels.remove(&channel).expect("looked up above");
            if let Some(by_name) = self.channel_ids.get_mut(&ch.tenant) {
                by_name.remove(&ch.name);
                if by_name.is_empty() {
                    self.channel_ids.remove(&ch.tenant);
                }
            }
        }
        departed
    }

    /// Drops one wildcard subscription from its tenant's index.
    fn unindex_pattern(&mut self, conn: ConnId, tenant: &TenantId, pattern: &Pattern) {
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
