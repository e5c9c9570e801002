//! The model's own state: each connection's dialect, liveness, authentication
//! (pending deadline or grants and expiry), peer id, tenant, room, subscriptions and
//! presence views, and the channel membership all of it implies.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::Run;
use super::presence::View;
use crate::testing::frames::glob;
use crate::token::Permissions;
use crate::{ConnId, Dialect};

/// A (tenant, channel) pair: the model's channel key.
pub(super) type Key = (String, String);

/// Members of every channel: connection index to peer id.
pub(super) type Membership = BTreeMap<Key, BTreeMap<usize, String>>;

#[derive(Clone, Debug)]
pub(super) struct Grants {
    pub(super) channels: Vec<String>,
    pub(super) perms: Permissions,
}

impl Grants {
    pub(super) fn allows(&self, channel: &str) -> bool {
        self.channels.iter().any(|g| glob(g, channel))
    }
}

#[derive(Clone, Debug)]
pub(super) enum Auth {
    Pending {
        deadline: Instant,
    },
    Ready {
        grants: Grants,
        expiry: Option<Instant>,
        /// When the `token_expiring` warning is due (before `expiry`), if it is armed.
        warn: Option<Instant>,
    },
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Sub {
    pub(super) presence: bool,
    pub(super) meta: bool,
    /// Broadcaster pushes this subscription has had (the next one is `seq + 1`).
    pub(super) seq: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Conn {
    pub(super) id: ConnId,
    pub(super) dialect: Dialect,
    pub(super) alive: bool,
    pub(super) auth: Auth,
    pub(super) peer: Option<String>,
    pub(super) tenant: String,
    pub(super) room: Option<String>,
    pub(super) subs: BTreeMap<String, Sub>,
    pub(super) patterns: BTreeMap<String, bool>,
    pub(super) views: BTreeMap<String, View>,
    /// It has refreshed its token once, so it is warned before expiry.
    pub(super) refreshes: bool,
    /// Where it last saw each history channel's stream stand (offset, epoch): what a
    /// client would put in `recover`.
    pub(super) positions: BTreeMap<String, (u64, String)>,
}

impl Conn {
    pub(super) fn grants(&self) -> Option<&Grants> {
        match &self.auth {
            Auth::Ready { grants, .. } => Some(grants),
            Auth::Pending { .. } => None,
        }
    }

    pub(super) fn can(&self, perm: Permissions) -> bool {
        self.grants().is_some_and(|g| g.perms.contains(perm))
    }

    /// A JSON message on `channel` with `offset` reached it: a client reads where
    /// the stream stands from it (in the epoch it last heard of).
    pub(super) fn saw_offset(&mut self, channel: &str, offset: Option<u64>) {
        if let (Some(o), Some(pos)) = (offset, self.positions.get_mut(channel)) {
            pos.0 = o;
        }
    }

    pub(super) fn deadline(&self) -> Option<Instant> {
        match &self.auth {
            Auth::Pending { deadline } => Some(*deadline),
            Auth::Ready { expiry, warn, .. } => warn.or(*expiry),
        }
    }
}

impl Run {
    pub(super) fn membership(&self) -> Membership {
        let mut m = Membership::new();
        for (idx, c) in self.conns.iter().enumerate() {
            let (true, Some(peer), Auth::Ready { .. }) = (c.alive, &c.peer, &c.auth) else {
                continue;
            };
            let channels = c.room.iter().chain(c.subs.keys());
            for ch in channels {
                m.entry((c.tenant.clone(), ch.clone()))
                    .or_default()
                    .insert(idx, peer.clone());
            }
        }
        m
    }
}

/// Peers that left each channel between two memberships.
pub(super) fn departures(before: &Membership, after: &Membership) -> Vec<(Key, BTreeSet<String>)> {
    before
        .iter()
        .filter_map(|(key, b)| {
            let still: BTreeSet<&String> = after
                .get(key)
                .into_iter()
                .flat_map(|a| a.values())
                .collect();
            let gone: BTreeSet<String> =
                b.values().filter(|p| !still.contains(p)).cloned().collect();
            (!gone.is_empty()).then(|| (key.clone(), gone))
        })
        .collect()
}

pub(super) fn before_has(m: &Membership, key: &Key, peer: &str) -> bool {
    m.get(key)
        .is_some_and(|members| members.values().any(|p| p == peer))
}
