//! Expectations: the frames a step must produce ([`Exp`], gathered in [`Effects`]),
//! the hub's outputs read back ([`Observed`]), and settling a step: departures,
//! presence (see `presence`), scope of every delivery, every frame against the
//! expectations both ways, the `Left` events, the hub's invariants and its timers.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde_json::Value;

use super::Run;
use super::state::{Conn, Key, Membership, departures};
use crate::testing::frames::{self, Seen, glob, synthetic_leave};
use crate::{CloseCode, ConnId, Dialect, ErrorCode, Event, Output};

/// A frame a connection must receive this step.
#[derive(Clone, Debug)]
pub(super) enum Exp {
    Raw(Bytes),
    ServerAnnounce {
        peer: String,
        room: String,
    },
    /// `/to|<me>|/announce|<peer>|…`, introducing a member to a newcomer.
    Introduction {
        peer: String,
        room: String,
    },
    RoomInfo(u64),
    Error(String),
    Welcome(Option<String>),
    Ack(String),
    /// The ack of a subscribe to a channel with a history (its position) or that
    /// asked to recover (`recovered`).
    Positioned {
        rid: String,
        position: Option<(u64, String)>,
        recovered: Option<bool>,
    },
    TokenExpiring,
    /// A subscription the refreshed grants no longer allow ended.
    Ended(String),
    /// `data: None` is an rtc-signaller command carried as `{"command":..}`.
    Message {
        channel: String,
        from: String,
        data: Option<Bytes>,
        command: Option<String>,
        meta: bool,
        /// Its offset in the channel's history (`None`: the channel keeps none).
        offset: Option<u64>,
    },
    Direct {
        from: String,
    },
    /// A Broadcaster push; `data: None` as for `Message`.
    Push {
        channel: String,
        event: String,
        data: Option<Bytes>,
        command: Option<String>,
        seq: u64,
    },
}

/// True when `data` carries the rtc-signaller command `name` (`{"command":..}`).
fn carries_command(data: &[u8], name: &str) -> bool {
    serde_json::from_slice::<Value>(data).is_ok_and(|v| v["command"].as_str() == Some(name))
}

impl Exp {
    fn matches(&self, seen: &Seen, raw: &Bytes) -> bool {
        match (self, seen) {
            (Self::Raw(b), _) => b == raw,
            (Self::ServerAnnounce { peer, room }, Seen::Announce { peer: p, room: r }) => {
                p == peer && r.as_deref() == Some(room.as_str())
            }
            (Self::Introduction { peer, room }, Seen::Introduction { peer: p, room: r }) => {
                p == peer && r.as_deref() == Some(room.as_str())
            }
            (Self::RoomInfo(n), Seen::RoomInfo(m)) => n == m,
            (Self::Error(c), Seen::Error(code)) => c == code,
            (Self::Welcome(p), Seen::Welcome(peer)) => p.as_ref().is_none_or(|p| p == peer),
            (Self::Ack(r), Seen::Ack(rid)) => r == rid,
            (
                Self::Positioned {
                    rid,
                    position,
                    recovered,
                },
                Seen::Positioned {
                    rid: r,
                    position: p,
                    recovered: got,
                },
            ) => rid == r && position == p && recovered == got,
            (Self::TokenExpiring, Seen::TokenExpiring) => true,
            (Self::Ended(c), Seen::Ended(ch)) => c == ch,
            (
                Self::Message {
                    channel,
                    from,
                    data,
                    command,
                    meta,
                    offset,
                },
                Seen::Message {
                    channel: ch,
                    from: f,
                    data: d,
                    with_meta,
                    offset: o,
                },
            ) => {
                channel == ch
                    && from == f
                    && offset == o
                    && meta == with_meta
                    && data.as_ref().is_none_or(|data| data == d)
                    && command.as_ref().is_none_or(|name| {
                        serde_json::from_slice::<Value>(d)
                            .is_ok_and(|v| v["command"].as_str() == Some(name))
                    })
            }
            (Self::Direct { from }, Seen::Direct { from: f, .. }) => from == f,
            (
                Self::Push {
                    channel,
                    event,
                    data,
                    command,
                    seq,
                },
                Seen::Push {
                    channel: ch,
                    event: e,
                    data: d,
                    seq: s,
                },
            ) => {
                channel == ch
                    && event == e
                    && seq == s
                    && data.as_ref().is_none_or(|data| data == d)
                    && command.as_ref().is_none_or(|name| carries_command(d, name))
            }
            _ => false,
        }
    }
}

/// What one step's outputs were, per connection index.
#[derive(Debug, Default)]
pub(super) struct Observed {
    pub(super) sends: BTreeMap<usize, Vec<(Seen, Bytes)>>,
    pub(super) closes: BTreeMap<usize, CloseCode>,
    /// Closed connections in the order the hub closed them.
    pub(super) close_order: Vec<usize>,
    pub(super) lefts: Vec<(String, String, bool)>,
    pub(super) log: Vec<String>,
    /// The code of each connection's first refusal (Broadcaster error frames show
    /// only the coarser Broadcaster code).
    pub(super) refused: BTreeMap<usize, ErrorCode>,
    /// Peer ids bound at authentication (a Broadcaster peer has no `welcome`).
    pub(super) authenticated: BTreeMap<usize, String>,
}

/// What an operation leads the model to expect, beyond departures.
#[derive(Debug, Default)]
pub(super) struct Effects {
    pub(super) exp: BTreeMap<usize, Vec<Exp>>,
    /// The sender's graceful `/leave`: its channel and the frame to forward.
    pub(super) graceful: Option<(Key, Bytes)>,
    /// Channels the sender unsubscribed from, or a refresh ended (its leave is not
    /// synthetic).
    pub(super) unsubscribed: Vec<Key>,
    /// A peer whose presence was (re)announced in a channel without joining it.
    pub(super) announced: Option<(Key, String)>,
    /// The sender subscribed with presence and must get a snapshot.
    pub(super) snapshot: Option<(usize, String)>,
    /// The sender refreshed its token: the pattern subscriptions the hub ended are
    /// read from its frames.
    pub(super) refreshed: Option<usize>,
    /// Frames a connection must receive first, in this order (a recovery's replay,
    /// then its ack); they are also in `exp`.
    pub(super) in_order: Option<(usize, Vec<Exp>)>,
}

impl Effects {
    pub(super) fn expect(&mut self, conn: usize, exp: Exp) {
        self.exp.entry(conn).or_default().push(exp);
    }
}

impl Run {
    /// Drains the hub's outputs, parsing every frame for its recipient.
    pub(super) fn drain(&mut self) -> Observed {
        let mut obs = Observed::default();
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let idx = self.index(conn);
                    self.check(
                        self.conns[idx].alive && !obs.closes.contains_key(&idx),
                        format!("frame to closed #{idx}: {frame:?}"),
                    );
                    let line = format!("  -> #{idx} {}", String::from_utf8_lossy(&frame));
                    self.trace.push(line);
                    let seen = frames::parse(self.conns[idx].dialect, &frame);
                    obs.sends.entry(idx).or_default().push((seen, frame));
                }
                Output::Close { conn, code, reason } => {
                    let idx = self.index(conn);
                    self.trace
                        .push(format!("  -> #{idx} closed {} {reason}", code.0));
                    self.check(
                        obs.closes.insert(idx, code).is_none(),
                        format!("#{idx} closed twice"),
                    );
                    obs.close_order.push(idx);
                }
                Output::Cluster(c) => self.fail(format!("a one-node hub told a cluster {c:?}")),
                Output::Event(e) => {
                    match &e {
                        Event::Refused { conn, code } => {
                            let idx = self.index(*conn);
                            obs.refused.entry(idx).or_insert(*code);
                        }
                        Event::Authenticated {
                            conn,
                            peer: Some(peer),
                            ..
                        } => {
                            let idx = self.index(*conn);
                            obs.authenticated.insert(idx, peer.as_str().to_owned());
                        }
                        _ => {}
                    }
                    if let Event::Left {
                        peer,
                        channel,
                        synthetic,
                    } = &e
                    {
                        obs.lefts
                            .push((peer.as_str().to_owned(), channel.clone(), *synthetic));
                    }
                    obs.log.push(format!("{e:?}"));
                }
            }
        }
        obs
    }

    fn index(&self, conn: ConnId) -> usize {
        match self.by_id.get(&conn) {
            Some(&idx) => idx,
            None => self.fail(format!("output for unknown connection {conn}")),
        }
    }

    /// Checks one step: departures, presence, every frame against the expectations,
    /// events, the hub's own invariants and its timers.
    pub(super) fn settle(&mut self, before: &Membership, obs: Observed, fx: Effects) {
        self.settle_staged(before, Vec::new(), obs, fx);
    }

    /// [`Run::settle`] for a step that went through intermediate memberships (several
    /// closes in one `handle_timeout`): rtc-signaller leaves go to whoever was still a
    /// member at each stage; presence is flushed once, at the end.
    pub(super) fn settle_staged(
        &mut self,
        before: &Membership,
        stages: Vec<Membership>,
        mut obs: Observed,
        mut fx: Effects,
    ) {
        if let Some(idx) = fx.refreshed {
            self.patterns_ended(idx, &obs, &mut fx);
        }
        if let Some((m, first)) = &fx.in_order {
            let seen = obs.sends.get(m).map_or(&[][..], Vec::as_slice);
            let in_order = first.len() <= seen.len()
                && first
                    .iter()
                    .zip(seen)
                    .all(|(e, (s, raw))| e.matches(s, raw));
            self.check(
                in_order,
                format!("#{m} must first get {first:?} in this order, got {seen:?}"),
            );
        }
        let after = self.membership();
        let mut lefts = Vec::new();
        let mut chain: Vec<&Membership> = vec![before];
        chain.extend(stages.iter());
        chain.push(&after);
        for pair in chain.windows(2) {
            for (key, departed) in departures(pair[0], pair[1]) {
                let remaining = pair[1].get(&key).cloned().unwrap_or_default();
                for p in departed {
                    self.coverage.add("departure");
                    let graceful = fx.graceful.as_ref().filter(|(k, _)| *k == key);
                    let frame = graceful.map_or_else(|| synthetic_leave(&p), |(_, f)| f.clone());
                    let quiet = graceful.is_some() || fx.unsubscribed.contains(&key);
                    lefts.push((p.clone(), key.1.clone(), !quiet));
                    for &m in remaining.keys() {
                        if self.conns[m].dialect == Dialect::Signaller {
                            fx.expect(m, Exp::Raw(frame.clone()));
                        }
                    }
                }
            }
        }
        self.check_presence(before, &after, &obs, &fx);
        // Every presence frame went to a presence member of its channel.
        for (&m, seen) in &obs.sends {
            let c = &self.conns[m];
            for (s, _) in seen {
                if let Seen::Presence(p) = s {
                    let ok = c.subs.get(&p.channel).is_some_and(|s| s.presence)
                        && c.alive
                        && !obs.closes.contains_key(&m);
                    self.check(ok, format!("presence for {} to non-member #{m}", p.channel));
                }
                if let Seen::Message { channel, .. } | Seen::Push { channel, .. } = s {
                    let subscribed =
                        c.subs.contains_key(channel) || c.patterns.keys().any(|p| glob(p, channel));
                    let granted = c.grants().is_some_and(|g| g.allows(channel));
                    self.check(
                        subscribed && granted,
                        format!("#{m} got a message on {channel} (subscribed {subscribed}, granted {granted})"),
                    );
                }
            }
        }
        for seen in obs.sends.values().flatten() {
            match seen.0 {
                Seen::Message { .. } | Seen::Direct { .. } | Seen::Signal => {
                    self.coverage.add("delivery");
                }
                Seen::Push { .. } => {
                    self.coverage.add("delivery");
                    self.coverage.add("broadcaster push");
                }
                Seen::Presence(_) => self.coverage.add("presence frame"),
                _ => {}
            }
        }
        // Every other frame against the expectations, both ways.
        let idxs: BTreeSet<usize> = obs.sends.keys().chain(fx.exp.keys()).copied().collect();
        for m in idxs {
            let mut seen: Vec<(Seen, Bytes)> = obs
                .sends
                .remove(&m)
                .unwrap_or_default()
                .into_iter()
                .filter(|(s, _)| !matches!(s, Seen::Presence(_)))
                .collect();
            let exp = fx.exp.remove(&m).unwrap_or_default();
            let mut missing = Vec::new();
            for e in exp {
                match seen.iter().position(|(s, raw)| e.matches(s, raw)) {
                    Some(at) => {
                        seen.remove(at);
                    }
                    None => missing.push(e),
                }
            }
            self.check(
                missing.is_empty() && seen.is_empty(),
                format!("#{m}: expected but missing {missing:?}; unexpected {seen:?}"),
            );
        }
        lefts.sort();
        obs.lefts.sort();
        self.check(
            lefts == obs.lefts,
            format!("Left events {:?}, model {lefts:?}", obs.lefts),
        );
        self.hub.check_invariants();
        let next = self
            .conns
            .iter()
            .filter(|c| c.alive)
            .filter_map(Conn::deadline)
            .chain(self.history_deadline())
            .min();
        self.check(
            self.hub.poll_timeout() == next,
            format!(
                "poll_timeout is {:?}, model's next deadline {:?}",
                self.hub.poll_timeout().map(|t| t - self.start),
                next.map(|t| t - self.start)
            ),
        );
    }

    /// After a refresh: the patterns the hub ended (each one the connection held)
    /// leave the model too; without the subscribe permission none may stay.
    fn patterns_ended(&mut self, idx: usize, obs: &Observed, fx: &mut Effects) {
        let held = &self.conns[idx].patterns;
        let ended: Vec<String> = obs
            .sends
            .get(&idx)
            .into_iter()
            .flatten()
            .filter_map(|(s, _)| match s {
                Seen::Ended(ch) if held.contains_key(ch) => Some(ch.clone()),
                _ => None,
            })
            .collect();
        for ch in ended {
            self.conns[idx].patterns.remove(&ch);
            fx.expect(idx, Exp::Ended(ch));
            self.coverage.add("pattern ended by a refresh");
        }
        let c = &self.conns[idx];
        self.check(
            c.can(crate::token::Permissions::SUBSCRIBE) || c.patterns.is_empty(),
            format!("#{idx} kept patterns after a refresh without subscribe"),
        );
    }
}
