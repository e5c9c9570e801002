//! Presence: what each JSON presence subscriber believes a channel's roster is
//! ([`View`], rebuilt from the frames it received), and the rules its frames must
//! follow: a snapshot on subscribing, then one delta per join or leave with the
//! right `count` while within the cap, a single `truncated` frame when the channel
//! crosses the cap, silence above it and a resync snapshot when it drops back.

use std::collections::{BTreeMap, BTreeSet};

use super::Run;
use super::expect::{Effects, Observed};
use super::state::{Key, Membership};
use crate::testing::frames::{Presence, Seen};

#[derive(Clone, Debug, Default)]
pub(super) struct View {
    peers: BTreeSet<String>,
    stale: bool,
}

impl Run {
    /// Checks the presence frames of one step in every channel whose membership it
    /// saw (`before` to `after`), and applies them to each member's [`View`].
    pub(super) fn check_presence(
        &mut self,
        before: &Membership,
        after: &Membership,
        obs: &Observed,
        fx: &Effects,
    ) {
        let cap = self.config.limits.presence_cap;
        let keys: BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
        for key in &keys {
            let empty = BTreeMap::new();
            let b = before.get(*key).unwrap_or(&empty);
            let a = after.get(*key).unwrap_or(&empty);
            let pb: BTreeSet<String> = b.values().cloned().collect();
            let pa: BTreeSet<String> = a.values().cloned().collect();
            let departed: BTreeSet<String> = pb.difference(&pa).cloned().collect();
            let mut joined: BTreeSet<String> = pa.difference(&pb).cloned().collect();
            if let Some((k, p)) = &fx.announced
                && k == *key
            {
                joined.insert(p.clone());
            }
            // Presence: every JSON presence member, frame by frame.
            for (&m, me) in a {
                let c = &self.conns[m];
                let Some(sub) = c.subs.get(&key.1).filter(|s| s.presence) else {
                    continue;
                };
                debug_assert!(sub.presence);
                let got: Vec<Presence> = obs
                    .sends
                    .get(&m)
                    .into_iter()
                    .flatten()
                    .filter_map(|(s, _)| match s {
                        Seen::Presence(p) if p.channel == key.1 => Some(p.clone()),
                        _ => None,
                    })
                    .collect();
                let snapshot = got.iter().any(|p| p.snapshot);
                if pa.len() > cap {
                    self.coverage.add("presence member above the cap");
                }
                if pb.len() > cap && pa.len() <= cap {
                    self.coverage.add("presence resync");
                }
                let (jx, lx) = (&joined, &departed);
                let (nb, na) = (pb.len(), pa.len());
                for p in &got {
                    self.check(
                        p.count == na,
                        format!("#{m} got count {} for {na} peers: {p:?}", p.count),
                    );
                    self.check(
                        !p.joined.contains(me) && !p.left.contains(me),
                        format!("#{m} was told about itself: {p:?}"),
                    );
                }
                if fx.snapshot.as_ref() == Some(&(m, key.1.clone())) || !b.contains_key(&m) {
                    self.check(
                        snapshot,
                        format!("#{m} subscribed to {} without a snapshot", key.1),
                    );
                } else if !snapshot {
                    let joins: Vec<&String> = got.iter().flat_map(|p| &p.joined).collect();
                    let leaves: Vec<&String> = got.iter().flat_map(|p| &p.left).collect();
                    let want_j: Vec<&String> = jx.iter().filter(|p| *p != me).collect();
                    let want_l: Vec<&String> = lx.iter().filter(|p| *p != me).collect();
                    if nb <= cap && na <= cap {
                        self.check(
                            sorted(joins) == want_j && sorted(leaves) == want_l,
                            format!(
                                "#{m} presence deltas in {key:?}: got {got:?}, want joined {want_j:?} left {want_l:?}"
                            ),
                        );
                    } else if nb <= cap {
                        let ok = got.len() == 1
                            && got[0].truncated
                            && got[0].joined.is_empty()
                            && got[0].left.is_empty();
                        self.check(ok, format!("#{m} crossing the cap in {key:?}: {got:?}"));
                    } else if na <= cap {
                        self.fail(format!("#{m} got no resync snapshot for {key:?}: {got:?}"));
                    } else {
                        self.check(
                            got.is_empty(),
                            format!("#{m} got presence above the cap: {got:?}"),
                        );
                    }
                }
                let view = self.conns[m].views.entry(key.1.clone()).or_default();
                for p in got {
                    if p.snapshot {
                        view.peers = p.joined.into_iter().collect();
                        view.stale = p.truncated;
                    } else if p.truncated {
                        view.stale = true;
                    } else {
                        view.peers.extend(p.joined);
                        for l in &p.left {
                            view.peers.remove(l);
                        }
                    }
                }
                let view = &self.conns[m].views[&key.1];
                let mut others = pa.clone();
                others.remove(me);
                if na <= cap {
                    self.check(
                        !view.stale && view.peers == others,
                        format!("#{m}'s roster of {key:?} is {view:?}, real {others:?}"),
                    );
                } else {
                    self.check(
                        view.stale,
                        format!("#{m} was not told {key:?} is over the cap"),
                    );
                }
            }
        }
    }
}

fn sorted(mut v: Vec<&String>) -> Vec<&String> {
    v.sort();
    v
}
