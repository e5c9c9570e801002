//! Commands the hub answered: whether a refusal's code fits the model's state, and
//! for an accepted command whether the model allows it, how it changes the model
//! and what everyone must receive.

use bytes::Bytes;

use super::Run;
use super::expect::{Effects, Exp};
use super::routing::Delivery;
use super::state::{Auth, Sub, before_has};
use crate::Dialect;
use crate::testing::frames::{Seen, pipe_escaped};
use crate::token::Permissions;
use crate::wire::Command;

/// Refusal codes, for the coverage counts.
const REFUSALS: [&str; 20] = [
    "refused: invalid_token",
    "refused: token_expired",
    "refused: invalid_message",
    "refused: unauthenticated",
    "refused: already_authenticated",
    "refused: sender_mismatch",
    "refused: not_in_room",
    "refused: invalid_peer_id",
    "refused: replaced",
    "refused: invalid_channel",
    "refused: channel_reserved",
    "refused: channel_not_authorized",
    "refused: channel_limit_exceeded",
    "refused: action_not_permitted",
    "refused: peer_not_found",
    "refused: over_message_rate",
    "refused: over_message_quota",
    "refused: already_subscribed",
    "refused: not_subscribed",
    "refused: unknown",
];

impl Run {
    /// The hub refused `cmd` with `code`: the code must fit the model's state.
    pub(super) fn refused(&mut self, idx: usize, cmd: &Command, code: &str) {
        let pending = matches!(self.conns[idx].auth, Auth::Pending { .. });
        // An announce carrying a token is (re)authenticated by it before it is judged
        // (the model's hub always has signing keys). A refused token, or one for
        // another peer or tenant, is the refusal itself.
        if code != "over_message_rate"
            && let Command::Announce(a) = cmd
            && let Some(token) = &a.token
        {
            let want = match self.verdict(&token.0) {
                Err(4002) => Some("token_expired"),
                Err(_) => Some("invalid_token"),
                Ok(info) => {
                    let c = &self.conns[idx];
                    if c.peer.as_ref().is_some_and(|p| *p != info.sub) {
                        Some("sender_mismatch")
                    } else if c.peer.is_some() && c.tenant != info.tenant {
                        Some("invalid_token")
                    } else {
                        self.authenticate_token(idx, &info);
                        None
                    }
                }
            };
            if let Some(want) = want {
                self.check(
                    code == want,
                    format!("#{idx}'s announce token refused with {code}, expected {want}"),
                );
                self.coverage.add("refused");
                self.coverage.add("refused announce token");
                return;
            }
        }
        if code != "over_message_rate"
            && let Some(token) = self.refresh_token(idx, cmd)
        {
            let want = self.refresh_refusal(idx, &token);
            self.check(
                want == Some(code),
                format!("#{idx}'s refresh refused with {code}, model {want:?}"),
            );
            self.coverage.add("refused");
            self.coverage.add("refused refresh");
            return;
        }
        let c = &self.conns[idx];
        let channel = match cmd {
            Command::Subscribe(s) => Some(s.channel.as_str()),
            Command::Publish(p) => Some(p.channel.as_str()),
            Command::Announce(a) => Some(a.room.as_str()),
            // A room message is published to the room: its grants are the room's
            // (a token on a later announce can take them away while the peer stays).
            Command::Signal(_) => c.room.as_deref(),
            _ => None,
        };
        let perm = match cmd {
            Command::Announce(_) | Command::Subscribe(_) => Some(Permissions::SUBSCRIBE),
            Command::Publish(_) | Command::Signal(_) => Some(Permissions::PUBLISH),
            Command::To(_) | Command::Send(_) => Some(Permissions::SEND),
            _ => None,
        };
        let broadcaster = c.dialect == Dialect::Broadcaster;
        let ok = match code {
            // A Broadcaster's refused token is answered, not closed.
            "unauthenticated" => match cmd {
                Command::Auth(a) if broadcaster => pending && self.verdict(&a.token.0).is_err(),
                _ => pending,
            },
            "already_subscribed" => match cmd {
                Command::Subscribe(s) => broadcaster && c.subs.contains_key(&s.channel),
                _ => false,
            },
            "not_subscribed" => match cmd {
                Command::Unsubscribe(u) => broadcaster && !c.subs.contains_key(&u.channel),
                _ => false,
            },
            "already_authenticated" => !pending && !broadcaster && matches!(cmd, Command::Auth(_)),
            "not_in_room" => c.room.is_none() || c.peer.is_none(),
            "action_not_permitted" => perm.is_some_and(|p| !c.can(p)),
            "channel_not_authorized" => channel
                .is_some_and(|ch| ch.contains('*') || c.grants().is_some_and(|g| !g.allows(ch))),
            "channel_limit_exceeded" => {
                c.subs.len() + c.patterns.len() >= self.config.limits.max_channels_per_conn
            }
            "over_message_quota" => self.config.limits.quota.is_some(),
            "peer_not_found" => match cmd {
                Command::Send(s) => self.send_targets(idx, &s.to).is_empty(),
                Command::To(t) => self.to_targets(idx, &t.target).is_empty(),
                _ => false,
            },
            "over_message_rate" | "sender_mismatch" | "invalid_peer_id" | "invalid_channel"
            | "channel_reserved" | "invalid_message" => true,
            _ => false,
        };
        self.check(ok, format!("#{idx}'s {cmd:?} refused with {code}"));
        self.coverage.add("refused");
        if let Some(known) = REFUSALS.iter().find(|k| k.ends_with(code)) {
            self.coverage.add(known);
        }
    }

    /// The hub accepted `cmd` (no error, no close): check it was allowed, update the
    /// model and say what everyone must receive.
    /// `seen` is what the sender received (a new history stream's epoch is learned
    /// from it).
    pub(super) fn accepted(
        &mut self,
        idx: usize,
        cmd: Command,
        seen: &[(Seen, Bytes)],
        fx: &mut Effects,
    ) {
        self.coverage.add(match &cmd {
            Command::Announce(_) => "accepted announce",
            Command::Leave(_) => "accepted leave",
            Command::To(_) => "accepted to",
            Command::Signal(_) => "accepted signal",
            Command::Subscribe(s) if s.channel.contains('*') => "accepted pattern subscribe",
            Command::Subscribe(_) => "accepted subscribe",
            Command::Unsubscribe(_) => "accepted unsubscribe",
            Command::Publish(_) => "accepted publish",
            Command::Send(_) => "accepted send",
            Command::Auth(_) if !matches!(self.conns[idx].auth, Auth::Pending { .. }) => {
                "accepted refresh"
            }
            Command::Auth(_) => "accepted auth",
            Command::Refresh(_) => "accepted refresh",
            Command::Ping(_) => "accepted ping",
        });
        let pending = matches!(self.conns[idx].auth, Auth::Pending { .. });
        if pending {
            let token = match &cmd {
                Command::Auth(a) => Some(&a.token),
                Command::Announce(a) => a.token.as_ref(),
                _ => None,
            };
            let Some(token) = token else {
                self.fail(format!("#{idx} is pending but {cmd:?} was accepted"));
            };
            let info = match self.verdict(&token.0) {
                Ok(info) => info,
                Err(e) => self.fail(format!("an invalid in-band token ({e}) was accepted")),
            };
            self.authenticate_token(idx, &info);
            if let Command::Auth(a) = &cmd {
                if self.conns[idx].dialect == Dialect::Json {
                    fx.expect(idx, Exp::Welcome(Some(info.sub)));
                }
                if let Some(rid) = &a.request_id {
                    fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
                }
                return;
            }
        }
        if !pending
            && let Command::Announce(a) = &cmd
            && let Some(token) = &a.token
        {
            match self.verdict(&token.0) {
                Ok(info) => self.authenticate_token(idx, &info),
                Err(e) => self.fail(format!(
                    "an announce with a refused token ({e}) was accepted"
                )),
            }
        }
        if let Some(token) = self.refresh_token(idx, &cmd) {
            return self.refreshed(idx, &token, request_id(&cmd), fx);
        }
        let c = &self.conns[idx];
        let peer = c.peer.clone();
        let tenant = c.tenant.clone();
        match cmd {
            Command::Auth(_) | Command::Refresh(_) => self.fail("a second auth was accepted"),
            Command::Ping(p) => {
                self.check(
                    c.dialect == Dialect::Broadcaster,
                    "ping decoded in a dialect without it",
                );
                let rid = p.request_id.expect("Broadcaster requests have ids");
                fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
            }
            Command::Announce(a) => self.announce(idx, a, fx),
            Command::Leave(l) => {
                let room = c.room.clone();
                self.check(
                    room.is_some() && peer.is_some(),
                    "/leave outside a room accepted",
                );
                self.check(
                    l.sender.is_some() && l.sender == peer,
                    "a /leave with a foreign sender was accepted",
                );
                fx.graceful = room.map(|r| ((tenant, r), l.frame));
                self.conns[idx].room = None;
            }
            Command::To(t) => {
                self.check(
                    c.can(Permissions::SEND),
                    "/to without send permission accepted",
                );
                self.check(c.room.is_some(), "/to outside a room accepted");
                self.check(
                    t.sender.is_some() && t.sender == peer,
                    "a /to with a foreign sender was accepted",
                );
                let targets = self.to_targets(idx, &t.target);
                self.check(!targets.is_empty(), "/to without a target accepted");
                let from = peer.expect("checked");
                for m in targets {
                    let exp = match self.conns[m].dialect {
                        Dialect::Json => Exp::Direct { from: from.clone() },
                        _ => Exp::Raw(t.frame.clone()),
                    };
                    fx.expect(m, exp);
                }
            }
            Command::Signal(s) => {
                self.check(
                    c.can(Permissions::PUBLISH),
                    "room message without publish permission accepted",
                );
                self.check(
                    s.sender.is_some() && s.sender == peer,
                    "a room message with a foreign sender was accepted",
                );
                let room = c.room.clone().expect("accepted room messages have a room");
                let from = peer.expect("checked");
                let message = Delivery {
                    channel: &room,
                    from: &from,
                    signaller_frame: &s.frame,
                    data: None,
                    command: Some(s.name),
                    event: None,
                    // Room traffic is not stored.
                    offset: None,
                };
                self.deliver(idx, &message, fx);
            }
            Command::Subscribe(s) => {
                self.check(
                    c.can(Permissions::SUBSCRIBE),
                    "subscribe without permission",
                );
                let wildcard = s.channel.contains('*');
                self.check(
                    wildcard || c.grants().is_some_and(|g| g.allows(&s.channel)),
                    format!("subscribe to ungranted {}", s.channel),
                );
                let already = if wildcard {
                    c.patterns.contains_key(&s.channel)
                } else {
                    c.subs.contains_key(&s.channel)
                };
                self.check(
                    already || c.subs.len() + c.patterns.len() < 3,
                    "subscribed beyond the channel limit",
                );
                let broadcaster = c.dialect == Dialect::Broadcaster;
                self.check(
                    !broadcaster || !(wildcard || already),
                    "a Broadcaster wildcard or repeated subscribe was accepted",
                );
                let presence = c.can(Permissions::PRESENCE) && !broadcaster;
                let peer = peer.expect("JSON peers are bound");
                let key = (tenant, s.channel.clone());
                let was_in = before_has(&self.membership(), &key, &peer);
                let c = &mut self.conns[idx];
                if wildcard {
                    c.patterns
                        .insert(s.channel.clone(), s.include_sender_metadata);
                } else {
                    c.subs.insert(
                        s.channel.clone(),
                        Sub {
                            presence,
                            meta: s.include_sender_metadata,
                            seq: 0,
                        },
                    );
                    if presence {
                        fx.snapshot = Some((idx, s.channel.clone()));
                    }
                    if !was_in {
                        let after = self.membership();
                        for (&m, _) in after.get(&key).into_iter().flatten() {
                            if m != idx && self.conns[m].dialect == Dialect::Signaller {
                                fx.expect(
                                    m,
                                    Exp::ServerAnnounce {
                                        peer: peer.clone(),
                                        room: s.channel.clone(),
                                    },
                                );
                            }
                        }
                    }
                }
                let rid = s.request_id.as_ref().map(|r| r.as_json().to_owned());
                let json = self.conns[idx].dialect == Dialect::Json;
                if !json || (wildcard && s.recover.is_none()) {
                    if let Some(rid) = rid {
                        fx.expect(idx, Exp::Ack(rid));
                    }
                } else if wildcard {
                    // A pattern spans many streams: nothing to resume.
                    self.coverage.add("history: not recovered: pattern");
                    if let Some(rid) = rid {
                        fx.expect(
                            idx,
                            Exp::Positioned {
                                rid,
                                position: None,
                                recovered: Some(false),
                            },
                        );
                    }
                } else {
                    let answer = self.position(
                        idx,
                        &s.channel,
                        rid.as_deref(),
                        s.recover.as_ref(),
                        s.include_sender_metadata,
                        seen,
                    );
                    let mut first = answer.replay;
                    first.extend(answer.ack);
                    for e in &first {
                        fx.expect(idx, e.clone());
                    }
                    fx.in_order = Some((idx, first));
                }
            }
            Command::Unsubscribe(u) => {
                self.check(
                    c.dialect != Dialect::Broadcaster || c.subs.contains_key(&u.channel),
                    "a Broadcaster unsubscribe from nothing was accepted",
                );
                let c = &mut self.conns[idx];
                if u.channel.contains('*') {
                    c.patterns.remove(&u.channel);
                } else if c.subs.remove(&u.channel).is_some() {
                    c.views.remove(&u.channel);
                    fx.unsubscribed.push((tenant, u.channel));
                }
                if let Some(rid) = &u.request_id {
                    fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
                }
            }
            Command::Publish(p) => {
                self.check(c.can(Permissions::PUBLISH), "publish without permission");
                self.check(!p.channel.contains('*'), "publish to a pattern accepted");
                self.check(
                    c.grants().is_some_and(|g| g.allows(&p.channel)),
                    format!("publish to ungranted {}", p.channel),
                );
                let from = peer.expect("JSON peers are bound");
                let mut raw = format!("/message|{from}|").into_bytes();
                raw.extend_from_slice(&pipe_escaped(&p.data));
                if let Some(event) = &p.event {
                    raw.push(b'|');
                    raw.extend_from_slice(&pipe_escaped(
                        serde_json::to_string(event).expect("str").as_bytes(),
                    ));
                }
                let raw = Bytes::from(raw);
                let offset = self.store(&(tenant, p.channel.clone()), &from, &p.data);
                let message = Delivery {
                    channel: &p.channel,
                    from: &from,
                    signaller_frame: &raw,
                    data: Some(p.data.clone()),
                    command: None,
                    event: p.event.as_deref(),
                    offset,
                };
                self.deliver(idx, &message, fx);
                if let Some(rid) = &p.request_id {
                    fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
                }
            }
            Command::Send(s) => {
                self.check(c.can(Permissions::SEND), "send without permission");
                let targets = self.send_targets(idx, &s.to);
                self.check(!targets.is_empty(), "send without a target accepted");
                let from = peer.expect("JSON peers are bound");
                for m in targets {
                    let exp = match self.conns[m].dialect {
                        Dialect::Json => Exp::Direct { from: from.clone() },
                        _ => {
                            let mut raw = format!("/to|{}|/message|{from}|", s.to).into_bytes();
                            raw.extend_from_slice(&pipe_escaped(&s.data));
                            Exp::Raw(Bytes::from(raw))
                        }
                    };
                    fx.expect(m, exp);
                }
                if let Some(rid) = &s.request_id {
                    fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
                }
            }
        }
    }
}

/// The request id of an `auth` or `refresh`.
fn request_id(cmd: &Command) -> Option<String> {
    match cmd {
        Command::Auth(a) | Command::Refresh(a) => {
            a.request_id.as_ref().map(|r| r.as_json().to_owned())
        }
        _ => None,
    }
}

impl Run {
    /// The token of a refresh: a JSON `refresh`, or a Broadcaster `auth` on an
    /// authenticated connection.
    fn refresh_token(&self, idx: usize, cmd: &Command) -> Option<String> {
        let c = &self.conns[idx];
        let ready = matches!(c.auth, Auth::Ready { .. });
        match cmd {
            Command::Refresh(a) if ready => Some(a.token.0.clone()),
            Command::Auth(a) if ready && c.dialect == Dialect::Broadcaster => {
                Some(a.token.0.clone())
            }
            _ => None,
        }
    }

    /// The code a refresh with `token` must be refused with, or `None` if it must be
    /// accepted: valid now, a token like the connection's own, same peer and tenant.
    fn refresh_refusal(&self, idx: usize, token: &str) -> Option<&'static str> {
        let c = &self.conns[idx];
        match self.verdict(token) {
            Err(4002) => Some("token_expired"),
            Err(_) => Some("invalid_token"),
            // Only token connections have an expiry in the model (keys and the
            // anonymous grant have none), and only they may refresh with a token.
            Ok(info)
                if !matches!(
                    c.auth,
                    Auth::Ready {
                        expiry: Some(_),
                        ..
                    }
                ) || c.peer.as_deref() != Some(info.sub.as_str())
                    || c.tenant != info.tenant =>
            {
                Some("invalid_token")
            }
            Ok(_) => None,
        }
    }

    /// An accepted refresh: new grants and expiry (and warning), the ack, and every
    /// exact subscription the new grants no longer allow ended with an error naming
    /// it. Which patterns end is the hub's `covers` rule, which the model does not
    /// replay: it takes them from the frames, checking each was held.
    fn refreshed(&mut self, idx: usize, token: &str, rid: Option<String>, fx: &mut Effects) {
        if let Some(code) = self.refresh_refusal(idx, token) {
            self.fail(format!("#{idx}'s refresh was accepted, model says {code}"));
        }
        let info = self.verdict(token).expect("checked");
        self.conns[idx].refreshes = true;
        self.authenticate_token(idx, &info);
        if let Some(rid) = rid {
            fx.expect(idx, Exp::Ack(rid));
        }
        let c = &self.conns[idx];
        let json = c.dialect == Dialect::Json;
        let can = c.can(Permissions::SUBSCRIBE);
        let ended: Vec<String> = c
            .subs
            .keys()
            .filter(|ch| !can || !info.grants.allows(ch))
            .cloned()
            .collect();
        let tenant = c.tenant.clone();
        for channel in ended {
            self.coverage.add("subscription ended by a refresh");
            let c = &mut self.conns[idx];
            c.subs.remove(&channel);
            c.views.remove(&channel);
            if json {
                fx.expect(idx, Exp::Ended(channel.clone()));
            }
            fx.unsubscribed.push((tenant.clone(), channel));
        }
        if !info.grants.perms.contains(Permissions::PRESENCE) {
            // The subscriptions that stay hear no more presence.
            let c = &mut self.conns[idx];
            for sub in c.subs.values_mut() {
                sub.presence = false;
            }
            c.views.clear();
        }
        fx.refreshed = Some(idx);
    }
}
