//! Who a command reaches: an announce (its room's members, a take-over, the
//! newcomer's introductions), a channel message (members and pattern subscribers),
//! `/to` (the target in the sender's room) and `send` (the target, tenant-wide).

use std::collections::BTreeSet;

use bytes::Bytes;

use super::Run;
use super::expect::{Effects, Exp};
use super::state::Auth;
use crate::Dialect;
use crate::testing::frames::glob;
use crate::token::Permissions;
use crate::wire::Announce;

/// A channel message as the model delivers it.
pub(super) struct Delivery<'a> {
    pub(super) channel: &'a str,
    pub(super) from: &'a str,
    /// What rtc-signaller members get.
    pub(super) signaller_frame: &'a Bytes,
    /// The JSON value, or `None` for an rtc-signaller command named `command`.
    pub(super) data: Option<Bytes>,
    pub(super) command: Option<String>,
    /// The Broadcaster event the publisher named.
    pub(super) event: Option<&'a str>,
    /// Its offset in the channel's history, where the channel keeps one (JSON
    /// frames say it).
    pub(super) offset: Option<u64>,
}

impl Run {
    pub(super) fn announce(&mut self, idx: usize, a: Announce, fx: &mut Effects) {
        let c = &self.conns[idx];
        self.check(
            c.can(Permissions::SUBSCRIBE),
            "announce without subscribe permission",
        );
        self.check(
            c.grants().is_some_and(|g| g.allows(&a.room)),
            format!("announce into ungranted room {}", a.room),
        );
        self.check(
            a.sender.as_ref().is_none_or(|s| *s == a.id),
            "an announce with a foreign sender was accepted",
        );
        self.check(
            c.peer.as_ref().is_none_or(|p| *p == a.id),
            "an announce of another id was accepted",
        );
        let tenant = c.tenant.clone();
        let first = c.room.as_deref() != Some(a.room.as_str());
        let c = &mut self.conns[idx];
        c.peer = Some(a.id.clone());
        c.room = Some(a.room.clone());
        for other in 0..self.conns.len() {
            let o = &self.conns[other];
            if other != idx
                && o.alive
                && o.dialect == Dialect::Signaller
                && o.tenant == tenant
                && o.room.as_deref() == Some(a.room.as_str())
                && o.peer.as_deref() == Some(a.id.as_str())
            {
                self.conns[other].room = None;
                fx.expect(other, Exp::Error("replaced".into()));
                self.coverage.add("replaced");
            }
        }
        let key = (tenant, a.room.clone());
        let after = self.membership();
        let members = after.get(&key).cloned().unwrap_or_default();
        for &m in members.keys() {
            if m != idx && self.conns[m].dialect == Dialect::Signaller {
                fx.expect(m, Exp::Raw(a.frame.clone()));
            }
        }
        let peers: BTreeSet<&String> = members.values().collect();
        fx.expect(idx, Exp::RoomInfo(peers.len() as u64));
        if first {
            for q in peers.into_iter().filter(|q| **q != a.id) {
                fx.expect(
                    idx,
                    Exp::Introduction {
                        peer: q.clone(),
                        room: a.room.clone(),
                    },
                );
            }
        }
        fx.announced = Some((key, a.id));
    }

    /// Expects a channel message from `sender` on `channel` at every member and every
    /// matching pattern subscriber but the sender. A Broadcaster member's subscription
    /// counts the push.
    pub(super) fn deliver(&mut self, sender: usize, m: &Delivery<'_>, fx: &mut Effects) {
        let channel = m.channel;
        let tenant = self.conns[sender].tenant.clone();
        let key = (tenant.clone(), channel.to_owned());
        let members = self.membership().remove(&key).unwrap_or_default();
        let message = |meta| Exp::Message {
            channel: channel.to_owned(),
            from: m.from.to_owned(),
            data: m.data.clone(),
            command: m.command.clone(),
            meta,
            offset: m.offset,
        };
        for (idx, c) in self.conns.iter_mut().enumerate() {
            if idx == sender || !c.alive || c.tenant != tenant {
                continue;
            }
            if members.contains_key(&idx) {
                let exp = match c.dialect {
                    Dialect::Signaller => Exp::Raw(m.signaller_frame.clone()),
                    Dialect::Broadcaster => {
                        let sub = c.subs.get_mut(channel).expect("members hold the sub");
                        sub.seq += 1;
                        Exp::Push {
                            channel: channel.to_owned(),
                            event: m.event.unwrap_or("message").to_owned(),
                            data: m.data.clone(),
                            command: m.command.clone(),
                            seq: sub.seq,
                        }
                    }
                    _ => {
                        c.saw_offset(channel, m.offset);
                        message(c.subs.get(channel).is_some_and(|s| s.meta))
                    }
                };
                fx.expect(idx, exp);
                continue;
            }
            let mut matching = c
                .patterns
                .iter()
                .filter(|(p, _)| glob(p, channel))
                .peekable();
            if matching.peek().is_some() {
                let meta = matching.any(|(_, m)| *m);
                c.saw_offset(channel, m.offset);
                fx.expect(idx, message(meta));
            }
        }
    }

    /// Connections `/to <target>` from `idx` reaches: the target's in the sender's room.
    pub(super) fn to_targets(&self, idx: usize, target: &str) -> Vec<usize> {
        let c = &self.conns[idx];
        let Some(room) = &c.room else {
            return Vec::new();
        };
        let members = self
            .membership()
            .remove(&(c.tenant.clone(), room.clone()))
            .unwrap_or_default();
        members
            .into_iter()
            .filter(|(m, p)| {
                *m != idx && p == target && self.conns[*m].dialect != Dialect::Broadcaster
            })
            .map(|(m, _)| m)
            .collect()
    }

    /// Connections `send` to `target` from `idx` reaches: the target's, tenant-wide.
    pub(super) fn send_targets(&self, idx: usize, target: &str) -> Vec<usize> {
        let tenant = &self.conns[idx].tenant;
        (0..self.conns.len())
            .filter(|&m| {
                let c = &self.conns[m];
                m != idx
                    && c.alive
                    && c.dialect != Dialect::Broadcaster
                    && &c.tenant == tenant
                    && matches!(c.auth, Auth::Ready { .. })
                    && c.peer.as_deref() == Some(target)
            })
            .collect()
    }
}
