//! Structural invariants, checked after every step by tests and fuzz targets.

use std::collections::{BTreeMap, BTreeSet};

use super::Hub;
use crate::ids::{ConnId, PeerId};
use crate::wire::Dialect;

impl Hub {
    /// Panics with a description if the hub's state is inconsistent. Cheap enough to
    /// call after every input in tests; never called in production paths.
    pub fn check_invariants(&self) {
        assert_eq!(
            self.channels.len(),
            self.channel_ids.values().map(BTreeMap::len).sum::<usize>(),
            "channel index and channel table differ in size"
        );
        let index = self
            .channel_ids
            .iter()
            .flat_map(|(t, by_name)| by_name.iter().map(move |(n, id)| ((t, n), id)));
        for (key, id) in index {
            let ch = self.channels.get(id).expect("indexed channel exists");
            assert!(
                &ch.tenant == key.0 && &ch.name == key.1,
                "channel key mismatch"
            );
        }
        for (id, ch) in &self.channels {
            assert!(!ch.members.is_empty(), "empty channel {} kept", ch.name);
            let mut counts: BTreeMap<&PeerId, BTreeSet<ConnId>> = BTreeMap::new();
            let mut signallers: BTreeMap<&PeerId, u32> = BTreeMap::new();
            for (conn, m) in &ch.members {
                let c = self.conns.get(conn).unwrap_or_else(|| {
                    panic!("member {conn} of {} is not a live connection", ch.name)
                });
                assert_eq!(
                    c.peer.as_ref(),
                    Some(&m.peer),
                    "member peer differs from conn binding"
                );
                assert_eq!(c.dialect, m.dialect, "member dialect differs from conn");
                assert_eq!(
                    m.foreign,
                    c.tenant != ch.tenant,
                    "member {conn} of {} has a stale foreign-tenant flag",
                    ch.name
                );
                counts.entry(&m.peer).or_default().insert(*conn);
                if m.dialect == Dialect::Signaller {
                    assert_eq!(
                        c.room,
                        Some(*id),
                        "signaller member {conn} does not point at its room"
                    );
                    *signallers.entry(&m.peer).or_default() += 1;
                }
            }
            for (peer, n) in signallers {
                assert_eq!(
                    n, 1,
                    "peer {peer} holds {n} signaller connections in {}",
                    ch.name
                );
            }
            assert_eq!(
                counts.len(),
                ch.peers.len(),
                "presence of {} lists other peers than its members",
                ch.name
            );
            for (peer, n) in counts {
                let p = ch
                    .peers
                    .get(peer)
                    .unwrap_or_else(|| panic!("no presence for member peer {peer}"));
                assert_eq!(
                    p.conns, n,
                    "presence count of {peer} in {} is wrong",
                    ch.name
                );
            }
        }
        for (conn, c) in &self.conns {
            if let Some(room) = c.room {
                let ch = self
                    .channels
                    .get(&room)
                    .unwrap_or_else(|| panic!("{conn} points at a gone room"));
                assert!(
                    ch.members.contains_key(conn),
                    "{conn} points at a room it is not in"
                );
            }
            for sub in &c.subs {
                let ch = self
                    .channels
                    .get(sub)
                    .unwrap_or_else(|| panic!("{conn} subscribed to a gone channel"));
                assert!(
                    ch.members.contains_key(conn),
                    "{conn} lists a channel it is not a member of"
                );
            }
            for (tenant, pattern) in &c.patterns {
                let indexed = self
                    .patterns
                    .get(tenant)
                    .and_then(|p| p.get(pattern))
                    .is_some_and(|subs| subs.contains_key(conn));
                assert!(indexed, "{conn}'s pattern {pattern} is not indexed");
            }
            if let Some(peer) = &c.peer {
                let indexed = self
                    .peers
                    .get(&(c.tenant.clone(), peer.clone()))
                    .is_some_and(|s| s.contains(conn));
                assert!(indexed, "{conn}'s peer {peer} is not indexed");
            }
            for t in &c.timers {
                assert!(
                    self.timers.contains(t),
                    "{conn} lists a timer the hub does not hold"
                );
            }
        }
        for ch in self.channels.values() {
            let id = self.channel_ids[&ch.tenant][&ch.name];
            for (conn, m) in &ch.members {
                let c = &self.conns[conn];
                let listed = c.room == Some(id) || c.subs.contains(&id);
                assert!(
                    listed,
                    "member {conn} ({:?}) does not list channel {}",
                    m.dialect, ch.name
                );
            }
        }
        for ((tenant, peer), set) in &self.peers {
            assert!(!set.is_empty(), "empty peer index entry for {peer}");
            for conn in set {
                let c = self
                    .conns
                    .get(conn)
                    .unwrap_or_else(|| panic!("peer index lists gone {conn}"));
                assert!(
                    &c.tenant == tenant && c.peer.as_ref() == Some(peer),
                    "peer index entry of {conn} is stale"
                );
            }
        }
        for (tenant, by_pattern) in &self.patterns {
            assert!(
                !by_pattern.is_empty(),
                "empty pattern index for tenant {tenant}"
            );
            for (pattern, subs) in by_pattern {
                assert!(!subs.is_empty(), "empty pattern entry {pattern}");
                for conn in subs.keys() {
                    let c = self
                        .conns
                        .get(conn)
                        .unwrap_or_else(|| panic!("pattern index lists gone {conn}"));
                    assert!(
                        c.patterns.contains(&(tenant.clone(), pattern.clone())),
                        "{conn} does not list pattern {pattern}"
                    );
                }
            }
        }
        let armed: usize = self.conns.values().map(|c| c.timers.len()).sum();
        assert_eq!(
            armed,
            self.timers.len(),
            "hub timers and connection timers differ"
        );
        assert!(
            self.pending_presence.is_empty(),
            "presence deltas left unflushed"
        );
    }

    /// True when the hub holds nothing: every connection, room and subscription is gone.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
            && self.channels.is_empty()
            && self.channel_ids.is_empty()
            && self.peers.is_empty()
            && self.patterns.is_empty()
            && self.timers.is_empty()
            && self.per_ip.is_empty()
            && self.per_tenant.is_empty()
    }
}
