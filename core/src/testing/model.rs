//! A reference model of the hub and a checker that runs beside it.
//!
//! [`Run`] drives a real [`Hub`] with [`Op`]s under a virtual clock and keeps its own,
//! much simpler account of the world: who is connected, authenticated as whom, in
//! which room, subscribed to what, and what every JSON presence subscriber believes
//! the roster is (rebuilt from the presence frames it received). After every step it
//! parses every frame the hub emitted and checks it against that account:
//!
//! - the hub's own `check_invariants()` holds, and `poll_timeout()` is exactly the
//!   model's earliest auth deadline or token expiry (closes fire on time, never early);
//! - every frame a connection receives was expected, and every expected frame came:
//!   a message or pass-through only reaches connections subscribed to its channel
//!   (exactly or by a pattern) or in its room, whose grants allow that channel, and
//!   never the connection that sent it; `/to` and `send` reach exactly their targets;
//! - every departure of a peer (its last connection in a room or channel gone without
//!   `/leave`) gives each remaining rtc-signaller member exactly one server-made
//!   `/leave`; a graceful `/leave` is forwarded once and nothing follows it;
//! - every JSON presence subscriber's roster (its snapshot plus the deltas it applied)
//!   equals the channel's real membership minus itself while the channel is within the
//!   presence cap, each join or leave is announced once, `count` is right, and above
//!   the cap it was told `truncated` and then nothing until the resync snapshot;
//! - a command the hub accepts is one the model allows (authenticated, permission,
//!   grant, channel limit), and the codes of refusals are consistent with the model;
//! - tokens are accepted exactly when the model says they are valid, and refused with
//!   4002 exactly when expired;
//! - once every connection is closed, `hub.is_empty()`.
//!
//! Where an outcome depends on policy the model does not replay (the rate limiter,
//! the quota, name validation), the model reads the outcome from the reply the hub
//! gave the sender (an error frame or a close) and checks everything that follows.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Value, json};

use super::frames::{self, Presence, Seen, glob, pipe_escaped, synthetic_leave};
use super::ops::{
    CHANNELS, Creds, DATA, Expiry, FrameSpec, GRANTS, Op, PATTERNS, PEERS, SIGNAL_ARGS, SIGNALS,
    Step, TENANTS, TokenSpec, decode_ops,
};
use super::{TEST_UNIX_MS, keyed_config, test_key};
use crate::config::{Grant, PublishableKey, Quota};
use crate::token::{Permissions, mint};
use crate::wire::broadcaster;
use crate::wire::{Announce, Command, DecodeError};
use crate::{
    CloseCode, Config, ConnId, Credentials, Dialect, ErrorCode, Event, Hub, Input, Open, Output,
};

/// Runs the operations `data` decodes to against a hub and the model, checking after
/// every step. Panics on the first divergence, with a trace of the run.
pub fn run_ops(data: &[u8]) -> Coverage {
    let (variant, ops) = decode_ops(data);
    let mut run = Run::new(variant);
    for op in &ops {
        run.step(op);
    }
    run.finish();
    run.coverage
}

/// How often a run reached the states worth reaching (accepted commands by kind,
/// deliveries, presence frames, the presence cap, take-overs, timer closes…), so a
/// property test can tell a generator that explores from one that only bounces
/// off the first refusal.
#[derive(Clone, Debug, Default)]
pub struct Coverage(pub BTreeMap<&'static str, u64>);

impl Coverage {
    fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }

    /// Adds another run's counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    /// How often `what` happened.
    pub fn count(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }
}

/// The publishable key configured in every run.
const PUBLISHABLE_KEY: &str = "pk_live";

/// The hub's configuration for a run. Limits are small so that every limit path is
/// reached in a few operations; bits of `variant` switch anonymous access, a quota,
/// a tiny frame limit and a generous rate.
pub fn run_config(variant: u8) -> Config {
    let mut config = keyed_config();
    let l = &mut config.limits;
    l.max_frame_bytes = if variant & 0x34 == 0x34 { 300 } else { 2048 };
    l.max_channels_per_conn = 3;
    l.presence_cap = 2;
    (l.message_rate, l.message_burst) = if variant & 8 == 0 {
        (5, 8)
    } else {
        (1000, 1000)
    };
    l.rate_close_after = 3;
    if variant & 2 != 0 {
        l.quota = Some(Quota {
            messages: 10,
            period: Duration::from_secs(10),
        });
    }
    if variant & 1 != 0 {
        config.auth.anonymous = Some(Grant {
            channels: vec!["r1".into(), "r2".into(), "c/**".into()],
            permissions: Permissions::ALL,
            tenant: None,
        });
    }
    config.auth.publishable_keys = vec![PublishableKey {
        key: PUBLISHABLE_KEY.into(),
        grant: Grant {
            channels: vec!["c/**".into()],
            permissions: Permissions::PUBLISH | Permissions::SUBSCRIBE | Permissions::PRESENCE,
            tenant: Some("t2".into()),
        },
    }];
    config.auth.auth_timeout = Duration::from_secs(3);
    config
}

/// A (tenant, channel) pair: the model's channel key.
type Key = (String, String);

/// Members of every channel: connection index to peer id.
type Membership = BTreeMap<Key, BTreeMap<usize, String>>;

#[derive(Clone, Debug)]
struct Grants {
    channels: Vec<String>,
    perms: Permissions,
}

impl Grants {
    fn allows(&self, channel: &str) -> bool {
        self.channels.iter().any(|g| glob(g, channel))
    }
}

#[derive(Clone, Debug)]
enum Auth {
    Pending {
        deadline: Instant,
    },
    Ready {
        grants: Grants,
        expiry: Option<Instant>,
    },
}

#[derive(Clone, Copy, Debug)]
struct Sub {
    presence: bool,
    meta: bool,
    /// Broadcaster pushes this subscription has had (the next one is `seq + 1`).
    seq: u64,
}

#[derive(Clone, Debug, Default)]
struct View {
    peers: BTreeSet<String>,
    stale: bool,
}

#[derive(Clone, Debug)]
struct Conn {
    id: ConnId,
    dialect: Dialect,
    alive: bool,
    auth: Auth,
    peer: Option<String>,
    tenant: String,
    room: Option<String>,
    subs: BTreeMap<String, Sub>,
    patterns: BTreeMap<String, bool>,
    views: BTreeMap<String, View>,
}

impl Conn {
    fn grants(&self) -> Option<&Grants> {
        match &self.auth {
            Auth::Ready { grants, .. } => Some(grants),
            Auth::Pending { .. } => None,
        }
    }

    fn can(&self, perm: Permissions) -> bool {
        self.grants().is_some_and(|g| g.perms.contains(perm))
    }

    fn deadline(&self) -> Option<Instant> {
        match &self.auth {
            Auth::Pending { deadline } => Some(*deadline),
            Auth::Ready { expiry, .. } => *expiry,
        }
    }
}

/// What the model knows of a token it minted.
#[derive(Clone, Debug)]
struct TokenInfo {
    sub: String,
    sub_valid: bool,
    grants: Grants,
    tenant: String,
    exp: Option<u64>,
    tampered: bool,
}

/// A frame a connection must receive this step.
#[derive(Clone, Debug)]
enum Exp {
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
    /// `data: None` is an rtc-signaller command carried as `{"command":..}`.
    Message {
        channel: String,
        from: String,
        data: Option<Bytes>,
        command: Option<String>,
        meta: bool,
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

/// A channel message as the model delivers it.
struct Delivery<'a> {
    channel: &'a str,
    from: &'a str,
    /// What rtc-signaller members get.
    signaller_frame: &'a Bytes,
    /// The JSON value, or `None` for an rtc-signaller command named `command`.
    data: Option<Bytes>,
    command: Option<String>,
    /// The Broadcaster event the publisher named.
    event: Option<&'a str>,
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
                Self::Message {
                    channel,
                    from,
                    data,
                    command,
                    meta,
                },
                Seen::Message {
                    channel: ch,
                    from: f,
                    data: d,
                    with_meta,
                },
            ) => {
                channel == ch
                    && from == f
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
struct Observed {
    sends: BTreeMap<usize, Vec<(Seen, Bytes)>>,
    closes: BTreeMap<usize, CloseCode>,
    /// Closed connections in the order the hub closed them.
    close_order: Vec<usize>,
    lefts: Vec<(String, String, bool)>,
    log: Vec<String>,
    /// The code of each connection's first refusal (Broadcaster error frames show
    /// only the coarser Broadcaster code).
    refused: BTreeMap<usize, ErrorCode>,
    /// Peer ids bound at authentication (a Broadcaster peer has no `welcome`).
    authenticated: BTreeMap<usize, String>,
}

/// What an operation leads the model to expect, beyond departures.
#[derive(Debug, Default)]
struct Effects {
    exp: BTreeMap<usize, Vec<Exp>>,
    /// The sender's graceful `/leave`: its channel and the frame to forward.
    graceful: Option<(Key, Bytes)>,
    /// A channel the sender unsubscribed from (its leave is not synthetic).
    unsubscribed: Option<Key>,
    /// A peer whose presence was (re)announced in a channel without joining it.
    announced: Option<(Key, String)>,
    /// The sender subscribed with presence and must get a snapshot.
    snapshot: Option<(usize, String)>,
}

impl Effects {
    fn expect(&mut self, conn: usize, exp: Exp) {
        self.exp.entry(conn).or_default().push(exp);
    }
}

/// The hub, the model and the virtual clock of one run.
pub struct Run {
    hub: Hub,
    config: Config,
    start: Instant,
    now: Instant,
    conns: Vec<Conn>,
    by_id: BTreeMap<ConnId, usize>,
    tokens: BTreeMap<String, TokenInfo>,
    trace: Vec<String>,
    coverage: Coverage,
}

const MAX_CONNS: usize = 12;

/// Refusal codes, for the coverage counts.
const REFUSALS: [&str; 18] = [
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
const GARBAGE_TOKEN: &str = "not-a-jwt";

impl Run {
    /// A run with the configuration `variant` selects (see [`run_config`]).
    pub fn new(variant: u8) -> Self {
        // The run is the driver, so it owns the clock; only offsets from `start` matter.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let config = run_config(variant);
        Self {
            hub: Hub::new(config.clone(), start, TEST_UNIX_MS).expect("valid run config"),
            config,
            start,
            now: start,
            conns: Vec::new(),
            by_id: BTreeMap::new(),
            tokens: BTreeMap::new(),
            trace: vec![format!("variant {variant}")],
            coverage: Coverage::default(),
        }
    }

    /// Applies one operation to the hub and the model, and checks the outcome.
    pub fn step(&mut self, op: &Op) {
        self.trace.push(format!("op {op:?}"));
        match op {
            Op::Open {
                json,
                broadcaster,
                creds,
            } => {
                let dialect = match (broadcaster, json) {
                    (true, _) => Dialect::Broadcaster,
                    (false, true) => Dialect::Json,
                    (false, false) => Dialect::Signaller,
                };
                self.open(dialect, creds);
            }
            Op::Frame { conn, frame } => {
                if let Some(idx) = self.pick(*conn) {
                    let bytes = self.render(idx, frame);
                    self.frame(idx, bytes);
                }
            }
            Op::Close { conn, graceful } => {
                if let Some(idx) = self.pick(*conn) {
                    let how = if *graceful {
                        crate::Closed::Graceful
                    } else {
                        crate::Closed::Hard
                    };
                    self.input(
                        idx,
                        Input::Closed {
                            conn: self.conns[idx].id,
                            how,
                        },
                    );
                }
            }
            Op::Blocked { conn } => {
                if let Some(idx) = self.pick(*conn) {
                    self.input(
                        idx,
                        Input::Blocked {
                            conn: self.conns[idx].id,
                        },
                    );
                }
            }
            Op::Advance(step) => self.advance(*step),
        }
    }

    /// Closes every connection still open and checks that the hub is empty.
    pub fn finish(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].alive {
                self.trace.push(format!("finish: close #{idx}"));
                self.input(
                    idx,
                    Input::Closed {
                        conn: self.conns[idx].id,
                        how: crate::Closed::Hard,
                    },
                );
            }
        }
        self.check(
            self.hub.is_empty(),
            "hub not empty after every connection closed",
        );
        self.check(
            self.hub.poll_timeout().is_none(),
            "a timer outlived every connection",
        );
    }

    /// The connection an operation's index byte names: one of the open ones, or
    /// for one value in eight, any connection ever opened (closed ones included).
    fn pick(&self, conn: u8) -> Option<usize> {
        let alive: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].alive)
            .collect();
        let n = usize::from(conn & 0x7f);
        if conn % 8 == 7 || alive.is_empty() {
            (!self.conns.is_empty()).then(|| n % self.conns.len())
        } else {
            Some(alive[n % alive.len()])
        }
    }

    /// Panics with the trace when `ok` is false.
    #[track_caller]
    fn check(&self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.fail(what);
        }
    }

    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let mut msg = String::new();
        let from = self.trace.len().saturating_sub(60);
        for line in &self.trace[from..] {
            let _ = writeln!(msg, "  {line}");
        }
        panic!("model violation: {what}\n--- last steps ---\n{msg}");
    }

    fn unix_secs(&self) -> u64 {
        let ms = u64::try_from((self.now - self.start).as_millis()).expect("short runs");
        (TEST_UNIX_MS + ms) / 1000
    }

    fn leeway(&self) -> u64 {
        self.config.auth.leeway_secs
    }

    // ------------------------------------------------------------------ tokens

    fn mint(&mut self, spec: &TokenSpec) -> String {
        let sub = PEERS[usize::from(spec.sub) % PEERS.len()];
        let grants: Vec<&str> = GRANTS[usize::from(spec.grants) % GRANTS.len()].to_vec();
        let perms = permissions(spec.perms);
        let names: Vec<&str> = perms.names().collect();
        let tenant = TENANTS[usize::from(spec.tenant) % TENANTS.len()];
        let now = self.unix_secs();
        let exp = match spec.exp {
            Expiry::Hour | Expiry::Tampered => Some(now + 3600),
            Expiry::Soon => Some(now + 20),
            Expiry::Past => Some(now - 60),
            Expiry::InLeeway => Some(now - 3),
            Expiry::Missing => None,
        };
        // Every token names the Broadcaster audience (the other dialects ignore it).
        let mut claims = json!({
            "sub": sub, "aud": "broadcaster", "channels": grants, "permissions": names,
        });
        if let Some(exp) = exp {
            claims["exp"] = json!(exp);
        }
        if let Some(t) = tenant {
            claims["tenant"] = json!(t);
        }
        match spec.metadata {
            1 => claims["metadata"] = json!({ "name": sub }),
            2 => claims["metadata"] = json!({ "name": "p|q", "iceServers": [{"urls": "turn:x"}] }),
            _ => {}
        }
        let mut token = mint(&test_key(), &claims).expect("test key signs");
        let tampered = spec.exp == Expiry::Tampered;
        if tampered {
            // Change the signature's first character: different bytes, bad signature.
            let at = token.rfind('.').expect("three parts") + 1;
            let c = if token.as_bytes()[at] == b'A' {
                "B"
            } else {
                "A"
            };
            token.replace_range(at..=at, c);
        }
        self.tokens.insert(
            token.clone(),
            TokenInfo {
                sub: sub.to_owned(),
                sub_valid: crate::ids::validate_peer_id(sub, 128).is_ok(),
                grants: Grants {
                    channels: grants.iter().map(|g| (*g).to_owned()).collect(),
                    perms,
                },
                tenant: tenant.unwrap_or("default").to_owned(),
                exp,
                tampered,
            },
        );
        token
    }

    /// The close code a token must get now, or its info when it must be accepted.
    fn verdict(&self, token: &str) -> Result<TokenInfo, u16> {
        let Some(info) = self.tokens.get(token) else {
            return Err(4001);
        };
        if info.tampered {
            return Err(4001);
        }
        match info.exp {
            None => return Err(4001),
            Some(exp) if self.unix_secs() > exp + self.leeway() => return Err(4002),
            Some(_) => {}
        }
        if !info.sub_valid {
            return Err(4001);
        }
        Ok(info.clone())
    }

    fn authenticate(&mut self, idx: usize, grants: Grants, tenant: &str, peer: Option<String>) {
        let c = &mut self.conns[idx];
        c.auth = Auth::Ready {
            grants,
            expiry: None,
        };
        c.tenant = tenant.to_owned();
        c.peer = peer;
    }

    fn authenticate_token(&mut self, idx: usize, info: &TokenInfo) {
        let exp = info.exp.expect("valid tokens have exp") + self.leeway();
        let at_ms = (exp * 1000).saturating_sub(TEST_UNIX_MS);
        let expiry = (self.start + Duration::from_millis(at_ms)).max(self.now);
        self.authenticate(
            idx,
            info.grants.clone(),
            &info.tenant,
            Some(info.sub.clone()),
        );
        if let Auth::Ready { expiry: e, .. } = &mut self.conns[idx].auth {
            *e = Some(expiry);
        }
    }

    // ------------------------------------------------------------------ steps

    fn open(&mut self, dialect: Dialect, creds: &Creds) {
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
    fn input(&mut self, idx: usize, input: Input) {
        let before = self.membership();
        let blocked = matches!(input, Input::Blocked { .. });
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

    fn advance(&mut self, step: Step) {
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
        for idx in 0..self.conns.len() {
            let c = &self.conns[idx];
            if !c.alive {
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
        self.settle_staged(&before, stages, obs, Effects::default());
        self.check(
            self.hub.poll_timeout().is_none_or(|t| t > now),
            "poll_timeout did not move past handle_timeout's now",
        );
    }

    fn frame(&mut self, idx: usize, bytes: Vec<u8>) {
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
                (Ok(cmd), None) => self.accepted(idx, cmd, &mut fx),
            }
        }
        self.settle(&before, obs, fx);
    }

    /// The hub refused `cmd` with `code`: the code must fit the model's state.
    fn refused(&mut self, idx: usize, cmd: &Command, code: &str) {
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
        let c = &self.conns[idx];
        let channel = match cmd {
            Command::Subscribe(s) => Some(s.channel.as_str()),
            Command::Publish(p) => Some(p.channel.as_str()),
            Command::Announce(a) => Some(a.room.as_str()),
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
            "already_authenticated" => !pending && matches!(cmd, Command::Auth(_)),
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
    fn accepted(&mut self, idx: usize, cmd: Command, fx: &mut Effects) {
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
            Command::Auth(_) => "accepted auth",
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
        let c = &self.conns[idx];
        let peer = c.peer.clone();
        let tenant = c.tenant.clone();
        match cmd {
            Command::Auth(_) => self.fail("a second auth was accepted"),
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
                    c.patterns.insert(s.channel, s.include_sender_metadata);
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
                if let Some(rid) = &s.request_id {
                    fx.expect(idx, Exp::Ack(rid.as_json().to_owned()));
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
                    fx.unsubscribed = Some((tenant, u.channel));
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
                let message = Delivery {
                    channel: &p.channel,
                    from: &from,
                    signaller_frame: &raw,
                    data: Some(p.data.clone()),
                    command: None,
                    event: p.event.as_deref(),
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

    fn announce(&mut self, idx: usize, a: Announce, fx: &mut Effects) {
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
    fn deliver(&mut self, sender: usize, m: &Delivery<'_>, fx: &mut Effects) {
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
                    _ => message(c.subs.get(channel).is_some_and(|s| s.meta)),
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
                fx.expect(idx, message(meta));
            }
        }
    }

    /// Connections `/to <target>` from `idx` reaches: the target's in the sender's room.
    fn to_targets(&self, idx: usize, target: &str) -> Vec<usize> {
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
    fn send_targets(&self, idx: usize, target: &str) -> Vec<usize> {
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

    // ------------------------------------------------------------------ checking

    fn membership(&self) -> Membership {
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

    /// Drains the hub's outputs, parsing every frame for its recipient.
    fn drain(&mut self) -> Observed {
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
    fn settle(&mut self, before: &Membership, obs: Observed, fx: Effects) {
        self.settle_staged(before, Vec::new(), obs, fx);
    }

    /// [`Run::settle`] for a step that went through intermediate memberships (several
    /// closes in one `handle_timeout`): rtc-signaller leaves go to whoever was still a
    /// member at each stage; presence is flushed once, at the end.
    fn settle_staged(
        &mut self,
        before: &Membership,
        stages: Vec<Membership>,
        mut obs: Observed,
        mut fx: Effects,
    ) {
        let after = self.membership();
        let cap = self.config.limits.presence_cap;
        let keys: BTreeSet<&Key> = before.keys().chain(after.keys()).collect();
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
                    let quiet = graceful.is_some() || fx.unsubscribed.as_ref() == Some(&key);
                    lefts.push((p.clone(), key.1.clone(), !quiet));
                    for &m in remaining.keys() {
                        if self.conns[m].dialect == Dialect::Signaller {
                            fx.expect(m, Exp::Raw(frame.clone()));
                        }
                    }
                }
            }
        }
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

    // ------------------------------------------------------------------ frames

    /// Renders a frame spec in the connection's dialect. It uses what the model
    /// knows (the connection's peer id, its room's members, whether it still has to
    /// authenticate) so that most frames get past the first check, and leaves one in
    /// four or so "wrong" (foreign sender, ungranted or invalid channel, frames out of
    /// order) to exercise the refusals.
    fn render(&mut self, idx: usize, spec: &FrameSpec) -> Vec<u8> {
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
        // Mostly a valid channel (r1 and r2 twice as often), else anything.
        let channel = |i: u8| -> &'static str {
            match i % 8 {
                0..4 => CHANNELS[usize::from(i >> 3) % 2],
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
                    let target = if b & 6 == 6 {
                        pick(a, &PATTERNS)
                    } else {
                        channel(a)
                    };
                    let meta = if b & 1 == 1 {
                        r#","includeSenderMetadata":true"#
                    } else {
                        ""
                    };
                    format!(
                        r#"{{"type":"subscribe","channel":{}{meta}{rid}}}"#,
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
}

impl Run {
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
        let channel = match a % 8 {
            0..4 => CHANNELS[usize::from(a >> 3) % 2],
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

/// Permission bits as the token vocabulary numbers them.
fn permissions(bits: u8) -> Permissions {
    [
        Permissions::PUBLISH,
        Permissions::SUBSCRIBE,
        Permissions::PRESENCE,
        Permissions::SEND,
    ]
    .into_iter()
    .enumerate()
    .filter(|(i, _)| bits & (1 << i) != 0)
    .fold(Permissions::NONE, |acc, (_, p)| acc | p)
}

/// Peers that left each channel between two memberships.
fn departures(before: &Membership, after: &Membership) -> Vec<(Key, BTreeSet<String>)> {
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

fn before_has(m: &Membership, key: &Key, peer: &str) -> bool {
    m.get(key)
        .is_some_and(|members| members.values().any(|p| p == peer))
}

fn sorted(mut v: Vec<&String>) -> Vec<&String> {
    v.sort();
    v
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

/// The golden frames the rtc-signaller 6.3 client sends (`core/tests/fixtures`).
pub const GOLDEN: &str = include_str!("../../tests/fixtures/rtc-signaller-6.3.frames");
