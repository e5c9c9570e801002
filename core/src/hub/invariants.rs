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
            self.channel_ids.len(),
            "channel index and channel table differ in size"
        );
        for (key, id) in &self.channel_ids {
            let ch = self.channels.get(id).expect("indexed channel exists");
            assert!(
                ch.tenant == key.0 && ch.name == key.1,
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
        }
    }

    /// True when the hub holds nothing: every connection, room and subscription is gone.
    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
            && self.channels.is_empty()
            && self.channel_ids.is_empty()
            && self.peers.is_empty()
            && self.patterns.is_empty()
            && self.timers.is_empty()
    }
}
