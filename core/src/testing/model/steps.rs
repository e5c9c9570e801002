//! The operations: opening a connection (with its credentials), a frame, a close or
//! a full queue, and the clock moving on. Each drives the hub, updates the model and
//! judges the immediate outcome (closes, refusals) before the step is settled.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::expect::{Effects, Exp};
use super::state::{Auth, Conn, Grants};
use super::{GARBAGE_TOKEN, PUBLISHABLE_KEY, Run};
use crate::testing::frames::Seen;
use crate::testing::ops::{Creds, Step};
use crate::token::Permissions;
use crate::wire::broadcaster;
use crate::wire::{Command, DecodeError};
use crate::{Credentials, Dialect, Input, Open};

/// Connections a run opens at most: later `Open`s are skipped.
const MAX_CONNS: usize = 12;

impl Run {
    pub(super) fn open(&mut self, dialect: Dialect, creds: &Creds) {
        if self.conns.len() >= MAX_CONNS {
            return;
        }
        let json = dialect == Dialect::Json;
        let token = match creds {
            Creds::Token(spec) => Some(self.mint(spec)),
            Creds::Garbage => Some(GARBAGE_TOKEN.to_owned()),
            Creds::None | Creds::Key(_) => None,
        };
        let credentials = match (creds, &token) {
            (_, Some(t)) => Credentials::Token(t.clone()),
            (Creds::Key(true), _) => Credentials::Key(PUBLISHABLE_KEY.into()),
            (Creds::Key(false), _) => Credentials::Key("pk_unknown".into()),
            _ => Credentials::None,
        };
        let before = self.membership();
        let id = self.hub.open(
            self.now,
            Open {
                dialect,
                credentials,
                remote: None,
                origin: None,
            },
        );
        let idx = self.conns.len();
        let fresh = self.by_id.insert(id, idx).is_none();
        self.check(fresh, format!("connection id {id} handed out twice"));
        self.conns.push(Conn {
            id,
            dialect,
            alive: true,
            auth: Auth::Pending {
                deadline: self.now + self.config.auth.auth_timeout,
            },
            peer: None,
            tenant: self.config.default_tenant.clone(),
            room: None,
            subs: BTreeMap::new(),
            patterns: BTreeMap::new(),
            views: BTreeMap::new(),
            refreshes: false,
            positions: BTreeMap::new(),
        });
        self.trace.push(format!("  opened #{idx} = {id}"));
        let obs = self.drain();
        let mut fx = Effects::default();
        let closed = obs.closes.get(&idx).map(|c| c.0);
        let welcome = obs.sends.get(&idx).and_then(|s| {
            s.iter().find_map(|(f, _)| match f {
                Seen::Welcome(p) => Some(p.clone()),
                _ => None,
            })
        });
        match (creds, token) {
            (_, Some(token)) => match (self.verdict(&token), closed) {
                (Ok(info), None) => {
                    self.authenticate_token(idx, &info);
                    if json {
                        fx.expect(idx, Exp::Welcome(Some(info.sub)));
                    }
                }
                (Err(code), Some(got)) => self.check(
                    code == got,
                    format!("token at open closed with {got}, expected {code}"),
                ),
                (v, c) => self.fail(format!("token at open: model {v:?}, hub closed {c:?}")),
            },
            (Creds::Key(known), _) => {
                if *known {
                    self.check(closed.is_none(), "the publishable key was refused");
                    let grants = Grants {
                        channels: vec!["c/**".into()],
                        perms: Permissions::PUBLISH
                            | Permissions::SUBSCRIBE
                            | Permissions::PRESENCE,
                    };
                    // A Broadcaster peer has no `welcome`: its id is in the event.
                    let peer = welcome.or_else(|| obs.authenticated.get(&idx).cloned());
                    self.authenticate(idx, grants, "t2", peer);
                    if json {
                        fx.expect(idx, Exp::Welcome(None));
                    }
                } else {
                    self.check(closed == Some(4001), "an unknown key was not closed 4001");
                }
            }
            // The Broadcaster never gets the anonymous grant: it authenticates in band.
            _ => match &self.config.auth.anonymous {
                Some(g) if dialect != Dialect::Broadcaster => {
                    self.check(closed.is_none(), "an anonymous connection was closed");
                    let grants = Grants {
                        channels: g.channels.clone(),
                        perms: g.permissions,
                    };
                    let tenant = self.config.default_tenant.clone();
                    self.authenticate(idx, grants, &tenant, welcome);
                    if json {
                        fx.expect(idx, Exp::Welcome(None));
                    }
                }
                _ => self.check(
                    closed.is_none(),
                    "a connection was closed before its auth timeout",
                ),
            },
        }
        if dialect != Dialect::Signaller && matches!(self.conns[idx].auth, Auth::Ready { .. }) {
            self.check(
                self.conns[idx].peer.as_ref().is_some_and(|p| !p.is_empty()),
                "an authenticated JSON or Broadcaster connection has no peer id",
            );
        }
        if closed.is_some() {
            self.conns[idx].alive = false;
        }
        self.settle(&before, obs, fx);
    }

    /// An input without a frame: a close or a full outbound queue.
    pub(super) fn input(&mut self, idx: usize, input: Input) {
        let before = self.membership();
        let blocked = matches!(input, Input::Failed { .. });
        self.hub.handle(self.now, input);
        let obs = self.drain();
        let c = &self.conns[idx];
        if c.alive {
            let code = obs.closes.get(&idx).map(|c| c.0);
            let expected = blocked.then_some(4013);
            self.check(
                code == expected,
                format!("close of #{idx}: hub said {code:?}, expected {expected:?}"),
            );
            self.conns[idx].alive = false;
        }
        self.settle(&before, obs, Effects::default());
    }

    pub(super) fn advance(&mut self, step: Step) {
        let by = match step {
            Step::Millis(ms) => Duration::from_millis(u64::from(ms)),
            Step::AuthTimeout => self.config.auth.auth_timeout + Duration::from_millis(1),
            Step::Expiry => Duration::from_secs(25),
            Step::Hour => Duration::from_secs(3700),
        };
        let until = self.now + by;
        while let Some(at) = self.hub.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.timeout();
        }
        self.now = until;
        self.timeout();
    }

    fn timeout(&mut self) {
        let now = self.now;
        self.trace.push(format!(
            "  handle_timeout at +{}ms",
            (now - self.start).as_millis()
        ));
        let before = self.membership();
        self.hub.handle_timeout(now);
        self.age_history(now);
        let obs = self.drain();
        // Timers fire one by one: a member closed by a later timer of this step still
        // gets the leaves of the earlier ones. Stage the membership per close.
        let mut stages = Vec::new();
        let saved: Vec<bool> = self.conns.iter().map(|c| c.alive).collect();
        for &idx in &obs.close_order {
            self.conns[idx].alive = false;
            stages.push(self.membership());
        }
        for (c, alive) in self.conns.iter_mut().zip(saved) {
            c.alive = alive;
        }
        stages.pop();
        let mut warned = Effects::default();
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if !c.alive {
                continue;
            }
            if let Auth::Ready { warn: Some(at), .. } = c.auth
                && at <= now
            {
                // The warning fires; the close is armed after it.
                let got = obs.closes.get(&idx).map(|c| c.0);
                self.check(
                    got.is_none(),
                    format!("#{idx} closed {got:?} at its warning"),
                );
                if let Auth::Ready { warn, .. } = &mut self.conns[idx].auth {
                    *warn = None;
                }
                warned.expect(idx, Exp::TokenExpiring);
                self.coverage.add("token warning");
                continue;
            }
            let due = c.deadline().is_some_and(|d| d <= now);
            let code = match c.auth {
                Auth::Pending { .. } => 4001,
                Auth::Ready { .. } => 4002,
            };
            let expected = due.then_some(code);
            let got = obs.closes.get(&idx).map(|c| c.0);
            self.check(
                got == expected,
                format!("timer close of #{idx}: hub {got:?}, model {expected:?}"),
            );
            if due {
                self.conns[idx].alive = false;
                self.coverage.add("timer close");
            }
        }
        self.settle_staged(&before, stages, obs, warned);
        self.check(
            self.hub.poll_timeout().is_none_or(|t| t > now),
            "poll_timeout did not move past handle_timeout's now",
        );
    }

    pub(super) fn frame(&mut self, idx: usize, bytes: Vec<u8>) {
        self.trace.push(format!(
            "  #{idx} sends {:?}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
        ));
        let before = self.membership();
        let conn = &self.conns[idx];
        let (id, dialect, alive) = (conn.id, conn.dialect, conn.alive);
        let frame = Bytes::from(bytes);
        self.hub.handle_frame(self.now, id, frame.clone());
        let obs = self.drain();
        if !alive {
            self.check(
                obs.sends.is_empty() && obs.closes.is_empty() && obs.log.is_empty(),
                "a frame from a closed connection had an effect",
            );
            return;
        }
        let max = self.config.limits.max_frame_bytes;
        let decoded = if frame.len() > max {
            Err(DecodeError::TooLarge {
                len: frame.len(),
                max,
            })
        } else {
            dialect.decode(frame)
        };
        let mut fx = Effects::default();
        let error = obs.sends.get(&idx).and_then(|s| {
            s.iter().find_map(|(f, _)| match f {
                Seen::Error(code) => Some(code.clone()),
                _ => None,
            })
        });
        // A Broadcaster error frame carries the coarse Broadcaster code: the model
        // judges the hub's own code (from the event) and checks the frame maps it.
        let (error, wire_error) = match (dialect, error) {
            (Dialect::Broadcaster, Some(wire)) => {
                let Some(&code) = obs.refused.get(&idx) else {
                    self.fail(format!("#{idx} got error {wire} without a Refused event"));
                };
                self.check(
                    broadcaster::error_code(code) == wire,
                    format!("#{idx}: {code} shown as {wire}"),
                );
                (Some(code.as_str().to_owned()), Some(wire))
            }
            (_, error) => (error.clone(), error),
        };
        if let Some(code) = obs.closes.get(&idx).map(|c| c.0) {
            let pending = matches!(self.conns[idx].auth, Auth::Pending { .. });
            let ok = match (&decoded, code) {
                (_, 4011) => true,
                (Err(DecodeError::TooLarge { .. }), 1009) => true,
                (Ok(Command::Auth(a)), 4001 | 4002) => {
                    pending
                        && dialect != Dialect::Broadcaster
                        && self.verdict(&a.token.0).err() == Some(code)
                }
                _ => false,
            };
            self.check(ok, format!("#{idx} closed with {code} after {decoded:?}"));
            self.conns[idx].alive = false;
            self.coverage.add("closed after a frame");
            self.coverage.add(match code {
                4011 => "closed after a frame: rate",
                1009 => "closed after a frame: size",
                _ => "closed after a frame: auth",
            });
        } else {
            match (decoded, error) {
                (Err(DecodeError::TooLarge { .. }), e) => {
                    self.check(
                        e.as_deref() == Some("over_message_rate"),
                        "an oversize frame was neither closed nor refused for rate",
                    );
                    fx.expect(idx, Exp::Error(wire_error.unwrap_or_default()));
                }
                (Err(_), e) => {
                    let ok = matches!(e.as_deref(), Some("invalid_message" | "over_message_rate"));
                    self.check(ok, format!("a malformed frame got {e:?}"));
                    fx.expect(idx, Exp::Error(wire_error.unwrap_or_default()));
                }
                (Ok(cmd), Some(code)) => {
                    self.refused(idx, &cmd, &code);
                    fx.expect(idx, Exp::Error(wire_error.unwrap_or_default()));
                }
                (Ok(cmd), None) => {
                    let seen = obs.sends.get(&idx).map_or(&[][..], Vec::as_slice);
                    self.accepted(idx, cmd, seen, &mut fx);
                }
            }
        }
        self.settle(&before, obs, fx);
    }
}
