//! Rendering a frame spec into bytes in the connection's dialect, from what the
//! model knows, so that most frames get past the first check and some are wrong on
//! purpose.

use serde_json::json;

use super::state::Auth;
use super::{GARBAGE_TOKEN, GOLDEN, Run};
use crate::Dialect;
use crate::testing::ops::{
    CHANNELS, DATA, Expiry, FrameSpec, PATTERNS, PEERS, SIGNAL_ARGS, SIGNALS, TENANTS, TokenSpec,
};

impl Run {
    /// Renders a frame spec in the connection's dialect. It uses what the model
    /// knows (the connection's peer id, its room's members, whether it still has to
    /// authenticate) so that most frames get past the first check, and leaves one in
    /// four or so "wrong" (foreign sender, ungranted or invalid channel, frames out of
    /// order) to exercise the refusals.
    pub(super) fn render(&mut self, idx: usize, spec: &FrameSpec) -> Vec<u8> {
        let max = self.config.limits.max_frame_bytes;
        let json = self.conns[idx].dialect == Dialect::Json;
        let broadcaster = self.conns[idx].dialect == Dialect::Broadcaster;
        let (kind, a, b, cc, token) = match spec {
            FrameSpec::Raw(bytes) => return bytes.clone(),
            FrameSpec::Oversize if broadcaster => {
                let head = br#"{"id":1,"method":"publish","params":{"channel":"r1","payload":""#;
                let mut f = head.to_vec();
                f.resize(max + 1 - 3, b'x');
                f.extend_from_slice(b"\"}}");
                return f;
            }
            FrameSpec::Oversize => {
                let mut f = if json {
                    br#"{"type":"publish","channel":"r1","data":""#.to_vec()
                } else {
                    b"/chat|x|".to_vec()
                };
                let tail: &[u8] = if json { b"\"}" } else { b"" };
                f.resize(max + 1 - tail.len(), b'x');
                f.extend_from_slice(tail);
                return f;
            }
            FrameSpec::Built {
                kind,
                a,
                b,
                c,
                token,
            } => (*kind, *a, *b, *c, *token),
        };
        let pending = matches!(self.conns[idx].auth, Auth::Pending { .. });
        // A pending connection mostly authenticates in-band (with a token for
        // PEERS[a] when the spec carries none).
        let token = match (token, pending && kind % 4 != 3) {
            (Some(spec), _) => Some(self.mint(&spec)),
            (None, true) => Some(self.mint(&TokenSpec::full(a))),
            // An authenticated connection's `auth` (a Broadcaster refresh) or
            // `refresh` mostly carries a token for its own peer and tenant, with
            // other grants and expiries, so that refreshes get through.
            (None, false) if (json || broadcaster) && kind % 16 >= 14 => {
                self.refresh_spec(idx, a, b).map(|s| self.mint(&s))
            }
            (None, false) => None,
        };
        let c = &self.conns[idx];
        let pick = |i: u8, list: &[&'static str]| list[usize::from(i) % list.len()];
        // Room members other than this connection's peer, for `/to`.
        let roommates: Vec<String> = match &c.room {
            Some(room) => self
                .membership()
                .remove(&(c.tenant.clone(), room.clone()))
                .unwrap_or_default()
                .into_values()
                .filter(|p| Some(p) != c.peer.as_ref())
                .collect(),
            None => Vec::new(),
        };
        let any_peer = |i: u8| -> String {
            // Mostly the id of a live connection (server-assigned ones included).
            let bound: Vec<&String> = self
                .conns
                .iter()
                .filter(|c| c.alive)
                .filter_map(|c| c.peer.as_ref())
                .collect();
            if i & 3 != 0 && !bound.is_empty() {
                bound[usize::from(i >> 2) % bound.len()].clone()
            } else {
                pick(i >> 2, &PEERS).to_owned()
            }
        };
        // Mostly a valid channel (r1 and r2 twice as often, or with history on c/a
        // and c/b, so that streams fill), else anything.
        let common = usize::from(!self.config.history.is_empty()) * 2;
        let channel = |i: u8| -> &'static str {
            match i % 8 {
                0..4 => CHANNELS[common + usize::from(i >> 3) % 2],
                4..7 => CHANNELS[usize::from(i >> 3) % 5],
                _ => pick(i >> 3, &CHANNELS),
            }
        };
        if broadcaster {
            return self.render_broadcaster(idx, (kind, a, b, cc), token, pending);
        }
        if json {
            let rid = match cc & 15 {
                0..3 => String::new(),
                12 => format!(r#","requestId":"{}""#, "r".repeat(129)),
                13 => r#","requestId":5"#.to_owned(),
                14 => r#","requestId":"r|x""#.to_owned(),
                n => format!(r#","requestId":"q{n}""#),
            };
            let data = match DATA[usize::from(b) % DATA.len()] {
                Some(d) => format!(r#","data":{d}"#),
                None => String::new(),
            };
            let quoted = |s: &str| serde_json::to_string(s).expect("str");
            let kind = if pending && kind % 4 != 3 {
                255
            } else {
                kind % 16
            };
            let text = match kind {
                0..4 => {
                    let recovering = (b >> 3) & 7;
                    let target = if b & 6 == 6 {
                        pick(a, &PATTERNS).to_owned()
                    } else {
                        // A recovering subscribe to a common channel names a stream
                        // whose epoch the model knows (if any), or it could only
                        // fail on the epoch.
                        let common = a % 8 < 4;
                        common
                            .then(|| self.resumable(idx, recovering, a))
                            .flatten()
                            .unwrap_or_else(|| channel(a).to_owned())
                    };
                    let target = target.as_str();
                    let meta = if b & 1 == 1 {
                        r#","includeSenderMetadata":true"#
                    } else {
                        ""
                    };
                    // With history on, `b`'s high bits pick a `recover` and `cc`'s
                    // how far off it is.
                    let recover = self.recover_field(idx, target, recovering, cc >> 4);
                    format!(
                        r#"{{"type":"subscribe","channel":{}{meta}{recover}{rid}}}"#,
                        quoted(target)
                    )
                }
                4 | 5 => {
                    let subs = &self.conns[idx].subs;
                    let target = match subs.keys().nth(usize::from(a) % subs.len().max(1)) {
                        Some(s) if b & 1 == 0 => s.clone(),
                        _ => pick(a, &PATTERNS).to_owned(),
                    };
                    format!(
                        r#"{{"type":"unsubscribe","channel":{}{rid}}}"#,
                        quoted(&target)
                    )
                }
                6..11 => {
                    let target = if b & 0x80 != 0 {
                        pick(a, &PATTERNS)
                    } else {
                        channel(a)
                    };
                    format!(
                        r#"{{"type":"publish","channel":{}{data}{rid}}}"#,
                        quoted(target)
                    )
                }
                11..14 => {
                    let to = quoted(&any_peer(a));
                    format!(r#"{{"type":"send","to":{to}{data}{rid}}}"#)
                }
                // Authenticated: mostly a `refresh`, sometimes a (refused) `auth`.
                14 | 15 if b & 3 != 3 => {
                    let t = token.unwrap_or_else(|| GARBAGE_TOKEN.to_owned());
                    format!(r#"{{"type":"refresh","token":"{t}"{rid}}}"#)
                }
                _ => {
                    let t = token.unwrap_or_else(|| GARBAGE_TOKEN.to_owned());
                    format!(r#"{{"type":"auth","token":"{t}"{rid}}}"#)
                }
            };
            return text.into_bytes();
        }
        let own = match (&token, &c.peer) {
            (Some(t), _) => self.tokens[t].sub.clone(),
            (None, Some(p)) if b % 8 != 7 => p.clone(),
            _ => pick(a, &PEERS).to_owned(),
        };
        let sender = match (cc & 7, cc & 8) {
            (0..5, _) => own.clone(),
            (5 | 6, _) => json!({ "id": own }).to_string(),
            (_, 0) => pick(a.wrapping_add(1), &PEERS).to_owned(),
            _ => String::new(),
        };
        let payload = |room: &str, with_token: Option<&String>| {
            let mut p = json!({ "id": own, "room": room });
            match (cc >> 3) & 7 {
                1 => p["browser"] = json!("x"),
                2 => p["nick"] = json!("a|b"),
                3 if with_token.is_none() => p["token"] = json!(GARBAGE_TOKEN),
                _ => {}
            }
            if let Some(t) = with_token {
                p["token"] = json!(t);
            }
            p.to_string()
        };
        // Before its first announce a connection mostly announces.
        let kind = if c.room.is_none() && kind % 4 != 3 {
            0
        } else {
            kind % 16
        };
        let text = match kind {
            0..4 => format!("/announce|{sender}|{}", payload(channel(b), token.as_ref())),
            4 | 5 => format!("/leave|{sender}|{}", json!({ "id": own })),
            6..10 => {
                let target = if roommates.is_empty() || b & 3 == 3 {
                    any_peer(b)
                } else {
                    roommates[usize::from(b >> 2) % roommates.len()].clone()
                };
                let inner = match (cc >> 6) & 3 {
                    0 => format!("/announce|{sender}|{}", payload("r1", token.as_ref())),
                    n => format!(
                        "/{}|{sender}{}",
                        SIGNALS[usize::from(n)],
                        pick(a, &SIGNAL_ARGS)
                    ),
                };
                format!("/to|{target}|{inner}")
            }
            10..14 => format!("/{}|{sender}{}", pick(b, &SIGNALS), pick(a, &SIGNAL_ARGS)),
            _ => golden(a, &own, &any_peer(b)),
        };
        text.into_bytes()
    }

    /// A Broadcaster request: kinds as in JSON (subscribe 0..4, unsubscribe 4..6,
    /// publish 6..11, then `ping` 11..14 where JSON has `send`, and `auth`), ids a mix
    /// of numbers and strings, a few invalid.
    fn render_broadcaster(
        &self,
        idx: usize,
        (kind, a, b, cc): (u8, u8, u8, u8),
        token: Option<String>,
        pending: bool,
    ) -> Vec<u8> {
        let pick = |i: u8, list: &[&'static str]| list[usize::from(i) % list.len()];
        let quoted = |s: &str| serde_json::to_string(s).expect("str");
        let id = match cc & 15 {
            0..6 => cc.to_string(),
            12 => quoted(&"r".repeat(129)),
            13 => "true".to_owned(),
            14 => "-2.5e1".to_owned(),
            n => quoted(&format!("q{n}|")),
        };
        let common = usize::from(!self.config.history.is_empty()) * 2;
        let channel = match a % 8 {
            0..4 => CHANNELS[common + usize::from(a >> 3) % 2],
            4..7 => CHANNELS[usize::from(a >> 3) % 5],
            _ => pick(a >> 3, &CHANNELS),
        };
        let kind = if pending && kind % 4 != 3 {
            255
        } else {
            kind % 16
        };
        let (method, params) = match kind {
            0..4 => {
                let target = if b & 6 == 6 {
                    pick(a, &PATTERNS)
                } else {
                    channel
                };
                ("subscribe", format!(r#"{{"channel":{}}}"#, quoted(target)))
            }
            4 | 5 => {
                let subs = &self.conns[idx].subs;
                let target = match subs.keys().nth(usize::from(a) % subs.len().max(1)) {
                    Some(s) if b & 1 == 0 => s.clone(),
                    _ => channel.to_owned(),
                };
                (
                    "unsubscribe",
                    format!(r#"{{"channel":{}}}"#, quoted(&target)),
                )
            }
            6..11 => {
                let event = match b >> 5 {
                    0..3 => String::new(),
                    3 => r#","event":null"#.to_owned(),
                    n => format!(r#","event":"{}""#, pick(n, &SIGNALS)),
                };
                let payload = match DATA[usize::from(b) % DATA.len()] {
                    Some(d) => format!(r#","payload":{d}"#),
                    None => String::new(),
                };
                (
                    "publish",
                    format!(r#"{{"channel":{}{event}{payload}}}"#, quoted(channel)),
                )
            }
            11..14 => ("ping", "null".to_owned()),
            _ => {
                let t = token.unwrap_or_else(|| GARBAGE_TOKEN.to_owned());
                ("auth", format!(r#"{{"token":"{t}"}}"#))
            }
        };
        format!(r#"{{"id":{id},"method":"{method}","params":{params}}}"#).into_bytes()
    }
}

impl Run {
    /// A token spec for a refresh by connection `idx`: its own peer and tenant, the
    /// grants and expiry `a` and `b` pick (a short-lived one, expiring during the
    /// run, one time in four). `None` when the peer is not one a token can name.
    fn refresh_spec(&self, idx: usize, a: u8, b: u8) -> Option<TokenSpec> {
        let c = &self.conns[idx];
        let sub = PEERS.iter().position(|p| Some(*p) == c.peer.as_deref())?;
        let tenant = TENANTS
            .iter()
            .position(|t| t.unwrap_or("default") == c.tenant)?;
        Some(TokenSpec {
            sub: u8::try_from(sub).expect("few peers"),
            grants: a % 5,
            perms: if a & 0x80 != 0 { (a >> 3) & 15 } else { 15 },
            tenant: u8::try_from(tenant).expect("few tenants"),
            metadata: b % 3,
            exp: if b & 0x30 == 0 {
                Expiry::Soon
            } else {
                Expiry::Hour
            },
        })
    }
}

/// A golden rtc-signaller 6.3 frame, with its two peer ids replaced by `me` and
/// `other` and its room by `r1`.
fn golden(i: u8, me: &str, other: &str) -> String {
    let lines: Vec<&str> = GOLDEN
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split_once(": ").map(|(_, f)| f))
        .collect();
    lines[usize::from(i) % lines.len()]
        .replace("ck9a1x0qz0000a1b2c3d4e5f6", me)
        .replace("ck9a1x0r00001g7h8i9j0k1l2", other)
        .replace("demo-room", "r1")
}
