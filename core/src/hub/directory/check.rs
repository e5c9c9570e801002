//! The directory's invariants: every index agrees with its reverse.

use std::collections::{BTreeMap, BTreeSet};

use super::Directory;
use crate::ids::{ConnId, PeerId};

impl Directory {
    /// Panics with a description if an index and its reverse disagree.
    pub(in crate::hub) fn check(&self) {
        assert_eq!(
            self.channels.len(),
            self.channel_ids.values().map(BTreeMap::len).sum::<usize>(),
            "channel index and channel table differ in size"
        );
        for (tenant, by_name) in &self.channel_ids {
            assert!(!by_name.is_empty(), "empty channel index for {tenant}");
            for (name, id) in by_name {
                let ch = self.channels.get(id).expect("indexed channel exists");
                assert!(
                    &ch.tenant == tenant && &ch.name == name,
                    "channel key mismatch"
                );
            }
        }
        for (&id, ch) in &self.channels {
            assert!(!ch.members.is_empty(), "empty channel {} kept", ch.name);
            let mut by_peer: BTreeMap<&PeerId, BTreeSet<ConnId>> = BTreeMap::new();
            let mut in_room: BTreeMap<&PeerId, u32> = BTreeMap::new();
            for (conn, m) in &ch.members {
                let place = self
                    .places
                    .get(conn)
                    .unwrap_or_else(|| panic!("member {conn} of {} is not live", ch.name));
                assert_eq!(place.peer.as_ref(), Some(&m.peer), "member peer is stale");
                assert_eq!(place.dialect, m.dialect, "member dialect is stale");
                assert_eq!(
                    m.foreign,
                    place.tenant != ch.tenant,
                    "member {conn} of {} has a stale foreign-tenant flag",
                    ch.name
                );
                let listed = place.room == Some(id) || place.subs.contains(&id);
                assert!(listed, "member {conn} does not list channel {}", ch.name);
                by_peer.entry(&m.peer).or_default().insert(*conn);
                if place.room == Some(id) {
                    *in_room.entry(&m.peer).or_default() += 1;
                }
            }
            for (peer, n) in in_room {
                assert_eq!(
                    n, 1,
                    "peer {peer} holds {n} room connections in {}",
                    ch.name
                );
            }
            let present: Vec<_> = ch.peers.keys().collect();
            let members: Vec<_> = by_peer.keys().copied().collect();
            assert_eq!(
                present, members,
                "presence of {} differs from its members",
                ch.name
            );
            for (peer, conns) in by_peer {
                assert_eq!(ch.peers[peer].conns, conns, "presence of {peer} is stale");
            }
        }
        for (conn, place) in &self.places {
            for id in place.room.iter().chain(&place.subs) {
                let ch = self
                    .channels
                    .get(id)
                    .unwrap_or_else(|| panic!("{conn} lists a gone channel"));
                assert!(
                    ch.members.contains_key(conn),
                    "{conn} lists a channel it is not in"
                );
            }
            for (tenant, pattern) in &place.patterns {
                let indexed = self
                    .patterns
                    .get(tenant)
                    .and_then(|p| p.get(pattern))
                    .is_some_and(|subs| subs.contains_key(conn));
                assert!(indexed, "{conn}'s pattern {pattern} is not indexed");
            }
            if let Some(peer) = &place.peer {
                let indexed = self
                    .peers
                    .get(&(place.tenant.clone(), peer.clone()))
                    .is_some_and(|s| s.contains(conn));
                assert!(indexed, "{conn}'s peer {peer} is not indexed");
            }
        }
        for ((tenant, peer), set) in &self.peers {
            assert!(!set.is_empty(), "empty peer index entry for {peer}");
            for conn in set {
                let place = self
                    .places
                    .get(conn)
                    .unwrap_or_else(|| panic!("peer index lists gone {conn}"));
                assert!(
                    &place.tenant == tenant && place.peer.as_ref() == Some(peer),
                    "peer index entry of {conn} is stale"
                );
            }
        }
        for (tenant, by_pattern) in &self.patterns {
            assert!(!by_pattern.is_empty(), "empty pattern index for {tenant}");
            for (pattern, subs) in by_pattern {
                assert!(!subs.is_empty(), "empty pattern entry {pattern}");
                for (conn, opts) in subs {
                    let place = self
                        .places
                        .get(conn)
                        .unwrap_or_else(|| panic!("pattern index lists gone {conn}"));
                    assert!(
                        place.patterns.contains(&(tenant.clone(), pattern.clone())),
                        "{conn} does not list pattern {pattern}"
                    );
                    assert_eq!(opts.foreign, &place.tenant != tenant, "stale foreign flag");
                }
            }
        }
    }
}
