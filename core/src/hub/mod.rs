//! The hub: one state machine for every connection, room and channel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::codes::{CloseCode, ErrorCode};
use crate::config::{Config, ConfigError};
use crate::ids::{ChannelId, ConnId, IdGen, PeerId, TenantId};
use crate::pattern::Pattern;
use crate::wire::broadcaster::{self, Answer};
use crate::wire::{Command, DecodeError, Dialect, RequestId, json, signaller};

mod auth;
mod control;
pub use control::{ControlError, Published, Stats};
mod fanout;
#[cfg(any(test, feature = "testing"))]
mod invariants;
mod limits;
mod membership;
mod pubsub;
mod rooms;

use auth::AuthState;
use limits::{QuotaWindow, RateBucket};

/// What a transport knows when a connection opens.
#[derive(Clone, Debug)]
pub struct Open {
    /// The wire language the connection speaks.
    pub dialect: Dialect,
    /// What the client offered at connect (query string, header, subprotocol).
    pub credentials: Credentials,
    /// The peer's address, for per-IP limits and logs.
    pub remote: Option<SocketAddr>,
    /// The browser's `Origin` header (WebSocket), for access tokens limited to some
    /// origins.
    pub origin: Option<String>,
}

impl Open {
    /// An anonymous connection in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            credentials: Credentials::None,
            remote: None,
            origin: None,
        }
    }
}

/// Credentials offered at connect time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Nothing offered (in-band auth may follow, or the hub allows anonymous peers).
    None,
    /// A JWT, or an `AT_…` access token (`?token=`, `Authorization: Bearer`,
    /// subprotocol).
    Token(String),
    /// A publishable key (`?key=`).
    Key(String),
}

impl std::fmt::Display for Credentials {
    /// Names the kind only: credentials never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Token(_) => "token",
            Self::Key(_) => "key",
        })
    }
}

/// Something that happened on a connection, reported by its transport.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Input {
    /// A frame, already decoded on the connection's own task.
    Command {
        /// The connection it came from.
        conn: ConnId,
        /// The decoded frame.
        command: Command,
    },
    /// A frame that did not decode (or was too large to read).
    Malformed {
        /// The connection it came from.
        conn: ConnId,
        /// Why it did not decode.
        error: DecodeError,
    },
    /// The connection is gone. Any room it was in gets a synthetic leave.
    Closed {
        /// The connection that closed.
        conn: ConnId,
        /// How it closed (for events; the routing outcome is the same).
        how: Closed,
    },
    /// The connection's bounded outbound queue is full: close it as a slow consumer.
    Blocked {
        /// The connection that cannot keep up.
        conn: ConnId,
    },
}

/// How a connection ended, as far as the transport could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// The client closed cleanly (close frame, EOF).
    Graceful,
    /// Reset, timeout, dead keepalive, read error.
    Hard,
}

/// What the hub asks of the driver. Drain with [`Hub::poll_output`] after every input.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Output {
    /// Write `frame` to `conn`. The bytes are shared by every recipient of a fan-out.
    Send {
        /// Recipient.
        conn: ConnId,
        /// One complete frame in the recipient's dialect.
        frame: Bytes,
    },
    /// Close `conn` with `code`. The hub has already forgotten the connection.
    Close {
        /// The connection to close.
        conn: ConnId,
        /// Close code (WebSocket numbering; transports map it).
        code: CloseCode,
        /// Human-readable reason for the close frame.
        reason: &'static str,
    },
    /// Something worth a log line or a metric.
    Event(Event),
}

/// Observability: what happened, in the past tense.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A connection was accepted.
    Opened {
        /// The new connection.
        conn: ConnId,
        /// Its dialect.
        dialect: Dialect,
    },
    /// A peer announced into a room (first time or update).
    Announced {
        /// The connection.
        conn: ConnId,
        /// The peer id it is bound to.
        peer: PeerId,
        /// The room.
        room: String,
    },
    /// A peer left a channel: its last connection there is gone.
    Left {
        /// The peer.
        peer: PeerId,
        /// The channel or room.
        channel: String,
        /// True when the server made the leave (no `/leave` came from the peer).
        synthetic: bool,
    },
    /// A connection proved who it is (token, key or anonymous grant).
    Authenticated {
        /// The connection.
        conn: ConnId,
        /// Its peer id (unbound rtc-signaller connections report it on announce).
        peer: Option<PeerId>,
        /// Its tenant.
        tenant: TenantId,
    },
    /// Credentials were refused; the connection is being closed.
    AuthFailed {
        /// The connection.
        conn: ConnId,
        /// A stable label (`expired`, `bad_signature`, `unknown_kid`, …).
        reason: &'static str,
    },
    /// A connection subscribed to a channel or pattern.
    Subscribed {
        /// The connection.
        conn: ConnId,
        /// The channel or pattern.
        channel: String,
    },
    /// A message was routed: a publish, a room broadcast, a direct message.
    Routed {
        /// The sender.
        conn: ConnId,
        /// How many frames were queued for recipients.
        deliveries: usize,
    },
    /// A frame was refused; the peer got an error frame.
    Refused {
        /// The connection.
        conn: ConnId,
        /// Why.
        code: ErrorCode,
    },
    /// A connection is gone (closed by the peer or by the hub).
    Closed {
        /// The connection.
        conn: ConnId,
        /// The code, when the hub closed it.
        code: Option<CloseCode>,
    },
}

/// The routing core. Owns every connection's routing state; performs no IO.
///
/// See the [crate docs](crate) for the driver loop and its contract.
#[derive(Debug)]
pub struct Hub {
    config: Config,
    /// Monotonic instant and unix milliseconds at construction: wall-clock time is
    /// derived from them and the `now` each call brings.
    epoch: (Instant, u64),
    /// The latest `now` any call brought.
    now: Instant,
    ids: IdGen,
    /// Message numbers and Broadcaster subscription ids: a stream of their own, so
    /// that publishing does not shift the peer ids the hub invents.
    message_ids: IdGen,
    next_conn: u64,
    next_channel: u64,
    /// Keys and grants, parsed once from the config (and again on reconfigure).
    policy: auth::Policy,
    /// After `shutdown`: every new connection is closed with 1001.
    shutting_down: bool,
    conns: BTreeMap<ConnId, Conn>,
    channels: BTreeMap<ChannelId, Channel>,
    /// Channel ids by tenant and name (nested so lookups by `&str` allocate nothing).
    channel_ids: BTreeMap<TenantId, BTreeMap<Arc<str>, ChannelId>>,
    /// Every live connection of each bound peer, for `send`.
    peers: BTreeMap<(TenantId, PeerId), BTreeSet<ConnId>>,
    /// Wildcard subscriptions per tenant. They get messages, never presence.
    patterns: BTreeMap<TenantId, BTreeMap<Pattern, BTreeMap<ConnId, SubOpts>>>,
    /// Presence deltas of this tick, per channel, flushed as one frame each.
    pending_presence: BTreeMap<ChannelId, membership::Changes>,
    quotas: BTreeMap<TenantId, QuotaWindow>,
    /// Live connections per remote IP, and authenticated ones per tenant (the per-peer
    /// count is `peers`), for the concurrency caps.
    per_ip: BTreeMap<std::net::IpAddr, usize>,
    per_tenant: BTreeMap<TenantId, usize>,
    timers: BTreeSet<(Instant, Timer)>,
    out: VecDeque<Output>,
}

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The connection must authenticate in-band by then.
    AuthDeadline(ConnId),
    /// The connection's token expires then.
    TokenExpiry(ConnId),
}

/// Per-subscription options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct SubOpts {
    include_meta: bool,
    /// The subscription is in another tenant than the connection's own: its messages
    /// name their tenant.
    foreign: bool,
}

#[derive(Debug)]
struct Conn {
    dialect: Dialect,
    tenant: TenantId,
    /// Bound by the first announce, or by the token's `sub`.
    peer: Option<PeerId>,
    auth: AuthState,
    /// The rtc-signaller room (at most one).
    room: Option<ChannelId>,
    /// Exact subscriptions (JSON dialect).
    subs: BTreeSet<ChannelId>,
    /// Wildcard subscriptions (JSON dialect), with the tenant each was made in.
    patterns: BTreeSet<(TenantId, Pattern)>,
    rate: RateBucket,
    /// The client's IP (for the per-IP cap and access tokens' networks).
    ip: Option<std::net::IpAddr>,
    /// The browser's `Origin` (for access tokens' origins).
    origin: Option<Box<str>>,
    /// Whether this connection counts against its tenant's cap (once authenticated).
    counted_tenant: bool,
    /// Armed timers, so they can be disarmed when the connection goes.
    timers: Vec<(Instant, Timer)>,
}

#[derive(Debug)]
struct Channel {
    tenant: TenantId,
    name: Arc<str>,
    /// Member connections. A peer may have several (across dialects).
    members: BTreeMap<ConnId, Member>,
    /// Presence, per peer id: a peer is present while any of its connections is.
    peers: BTreeMap<PeerId, Presence>,
    /// Presence deltas are suspended: more peers than the presence cap.
    over_cap: bool,
}

#[derive(Debug)]
struct Member {
    peer: PeerId,
    dialect: Dialect,
    /// Messages to this member carry `fromMetadata`.
    include_meta: bool,
    /// This member receives presence frames (JSON, with the `presence` permission).
    presence: bool,
    /// The channel is in another tenant than the member connection's own (it named
    /// the tenant when subscribing): its messages name their tenant.
    foreign: bool,
    /// Messages delivered on this subscription so far: a Broadcaster member's next
    /// push carries `seq + 1`.
    seq: u64,
}

#[derive(Debug)]
struct Presence {
    /// The peer's connections in this channel (an index for `/to` and `send`).
    conns: BTreeSet<ConnId>,
    metadata: Arc<Map<String, Value>>,
}

/// How a peer's connection leaves a channel.
#[derive(Clone, Debug)]
enum Departure {
    /// The peer sent `/leave`: forward its own frame.
    Leave(Bytes),
    /// The peer unsubscribed.
    Unsubscribed,
    /// The server notices the peer is gone (close, move to another room).
    Synthetic,
}

impl Hub {
    /// Creates a hub. `now` and `unix_ms` anchor its clocks; nothing else reads time.
    /// Fails only on a configuration that cannot work (bad keys or grant patterns).
    pub fn new(config: Config, now: Instant, unix_ms: u64) -> Result<Self, ConfigError> {
        let policy = auth::Policy::from_config(&config)?;
        Ok(Self {
            ids: IdGen::new(config.id_seed),
            message_ids: IdGen::new(config.id_seed ^ MESSAGE_ID_STREAM),
            config,
            epoch: (now, unix_ms),
            now,
            next_conn: 1,
            next_channel: 1,
            policy,
            shutting_down: false,
            conns: BTreeMap::new(),
            channels: BTreeMap::new(),
            channel_ids: BTreeMap::new(),
            peers: BTreeMap::new(),
            patterns: BTreeMap::new(),
            pending_presence: BTreeMap::new(),
            quotas: BTreeMap::new(),
            per_ip: BTreeMap::new(),
            per_tenant: BTreeMap::new(),
            timers: BTreeSet::new(),
            out: VecDeque::new(),
        })
    }

    /// The hub's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Number of live connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Number of non-empty channels and rooms.
    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    /// Unix milliseconds at `now`, from the anchor given to [`Hub::new`].
    pub fn unix_ms(&self, now: Instant) -> u64 {
        let (at, unix) = self.epoch;
        let delta = now.saturating_duration_since(at);
        unix + u64::try_from(delta.as_millis()).unwrap_or(u64::MAX - unix)
    }

    /// Registers a new connection and returns its id. Credentials offered at connect
    /// are checked now: a bad token closes the connection (4001, or 4002 if
    /// expired) before any `welcome`; none at all waits for in-band auth unless
    /// anonymous connections are allowed.
    pub fn open(&mut self, now: Instant, open: Open) -> ConnId {
        self.tick(now);
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        self.conns.insert(
            conn,
            Conn {
                dialect: open.dialect,
                tenant: TenantId::new(&self.config.default_tenant),
                peer: None,
                auth: AuthState::Pending,
                room: None,
                subs: BTreeSet::new(),
                patterns: BTreeSet::new(),
                rate: RateBucket::new(&self.config.limits, now),
                ip: open.remote.map(|r| r.ip()),
                origin: open.origin.map(String::into_boxed_str),
                counted_tenant: false,
                timers: Vec::new(),
            },
        );
        self.event(Event::Opened {
            conn,
            dialect: open.dialect,
        });
        if self.shutting_down {
            self.close(conn, CloseCode::GOING_AWAY, "server shutting down");
            return conn;
        }
        if let Some(ip) = open.remote.map(|r| r.ip()) {
            let n = self.per_ip.entry(ip).or_default();
            *n += 1;
            let cap = self.config.limits.max_conns_per_ip;
            if cap > 0 && *n > cap {
                self.close(
                    conn,
                    CloseCode::OVER_CONCURRENT_LIMIT,
                    "too many connections from this address",
                );
                self.finish_tick();
                return conn;
            }
        }
        self.on_open_credentials(conn, open.credentials);
        self.finish_tick();
        conn
    }

    /// Feeds one input. Inputs for connections the hub no longer knows are ignored.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.tick(now);
        self.dispatch(input);
        self.finish_tick();
    }

    fn dispatch(&mut self, input: Input) {
        match input {
            Input::Command { conn, command } => {
                if !self.conns.contains_key(&conn) || !self.admit(conn, request_id(&command)) {
                    return;
                }
                if !self.is_authenticated(conn) {
                    return self.on_unauthenticated(conn, command);
                }
                match command {
                    // Without signing keys (or, for `AT_…`, access tokens) a `token`
                    // attribute cannot be ours to check (rtc-switchboard-style
                    // deployments): it is only stripped.
                    Command::Announce(a)
                        if a.token.as_ref().is_some_and(|t| {
                            self.policy.verifier.is_some()
                                || (t.0.starts_with(crate::access::PREFIX)
                                    && !self.policy.access_grants.is_empty())
                        }) =>
                    {
                        self.on_announce_with_token(conn, a);
                    }
                    Command::Announce(a) => self.on_announce(conn, a),
                    Command::Leave(l) => self.on_leave(conn, l),
                    Command::To(t) => self.on_to(conn, t),
                    Command::Signal(s) => self.on_signal(conn, s),
                    Command::Subscribe(s) => self.on_subscribe(conn, s),
                    Command::Unsubscribe(u) => self.on_unsubscribe(conn, u),
                    Command::Publish(p) => self.on_publish(conn, p),
                    Command::Send(s) => self.on_send(conn, s),
                    Command::Ping(p) => {
                        let unix_ms = self.unix_ms(self.now);
                        self.answer(conn, p.request_id.as_ref(), Answer::Pong { unix_ms });
                    }
                    Command::Auth(a) => self.refuse_request(
                        conn,
                        ErrorCode::AlreadyAuthenticated,
                        "this connection is already authenticated",
                        a.request_id.as_ref(),
                    ),
                }
            }
            Input::Malformed { conn, error } => {
                if self.conns.contains_key(&conn) && self.admit(conn, None) {
                    self.on_malformed(conn, &error);
                }
            }
            Input::Closed { conn, how: _ } => {
                if self.forget(conn) {
                    self.event(Event::Closed { conn, code: None });
                }
            }
            Input::Blocked { conn } => {
                self.close(conn, CloseCode::SLOW_CONSUMER, "outbound queue full");
            }
        }
    }

    /// Decodes `frame` in the connection's dialect and feeds it: the shortcut for
    /// drivers that decode on the hub's thread (like `examples/tcp_hub.rs`).
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let input = match decode_limited(c.dialect, frame, self.config.limits.max_frame_bytes) {
            Ok(command) => Input::Command { conn, command },
            Err(error) => Input::Malformed { conn, error },
        };
        self.handle(now, input);
    }

    /// Lets time pass: fires every timer due at or before `now` (auth deadlines,
    /// token expiry).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(&(at, timer)) = self.timers.first() {
            if at > self.now {
                break;
            }
            self.timers.pop_first();
            match timer {
                Timer::AuthDeadline(conn) => self.close(
                    conn,
                    CloseCode::INVALID_TOKEN,
                    "no credentials within the auth timeout",
                ),
                Timer::TokenExpiry(conn) => {
                    self.close(conn, CloseCode::TOKEN_EXPIRED, "token expired");
                }
            }
        }
        self.finish_tick();
    }

    /// The next output, if any. Drain until `None` after every input.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When the hub next needs [`Hub::handle_timeout`]. While outputs are queued this
    /// is the latest `now` the hub saw (drain first); `None` when no timer is armed.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.out.is_empty() {
            return Some(self.now);
        }
        self.timers.first().map(|(at, _)| *at)
    }

    /// Closes `conn` with `code`: it leaves every room (synthetic leave) and the
    /// driver is told to close the socket.
    pub fn close(&mut self, conn: ConnId, code: CloseCode, reason: &'static str) {
        if !self.forget(conn) {
            return;
        }
        self.out.push_back(Output::Close { conn, code, reason });
        self.event(Event::Closed {
            conn,
            code: Some(code),
        });
    }

    /// Time never goes backwards inside the hub, whatever the driver passes.
    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Work that closes every tick: presence deltas go out as one frame per channel.
    fn finish_tick(&mut self) {
        self.flush_presence();
    }

    fn on_malformed(&mut self, conn: ConnId, error: &DecodeError) {
        match error {
            DecodeError::TooLarge { .. } => {
                self.close(conn, CloseCode::MESSAGE_TOO_BIG, "frame too large");
            }
            DecodeError::Malformed { request_id, .. } => self.refuse_request(
                conn,
                ErrorCode::InvalidMessage,
                &error.to_string(),
                request_id.as_ref(),
            ),
            _ => self.refuse(conn, ErrorCode::InvalidMessage, &error.to_string()),
        }
    }

    /// Removes a connection from every channel, with synthetic leaves, and disarms
    /// its timers. Returns false if the hub did not know it.
    fn forget(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let room = c.room;
        let subs = std::mem::take(&mut c.subs);
        let patterns = std::mem::take(&mut c.patterns);
        let timers = std::mem::take(&mut c.timers);
        if let Some(room) = room {
            self.depart(room, conn, Departure::Synthetic);
        }
        for ch in subs {
            self.depart(ch, conn, Departure::Synthetic);
        }
        for (tenant, pattern) in patterns {
            self.remove_pattern_sub(conn, &tenant, &pattern);
        }
        for timer in timers {
            self.timers.remove(&timer);
        }
        let c = self.conns.remove(&conn).expect("checked above");
        if let Some(ip) = c.ip {
            decrement(&mut self.per_ip, &ip);
        }
        if c.counted_tenant {
            decrement(&mut self.per_tenant, &c.tenant);
        }
        if let Some(peer) = c.peer {
            let key = (c.tenant, peer);
            if let Some(set) = self.peers.get_mut(&key) {
                set.remove(&conn);
                if set.is_empty() {
                    self.peers.remove(&key);
                }
            }
        }
        true
    }

    /// Arms a timer for a connection.
    fn arm(&mut self, conn: ConnId, at: Instant, timer: Timer) {
        if let Some(c) = self.conns.get_mut(&conn) {
            c.timers.push((at, timer));
            self.timers.insert((at, timer));
        }
    }

    /// Sends an error frame in the connection's dialect.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        self.refuse_request(conn, code, message, None);
    }

    /// Sends an error frame answering `request_id`.
    fn refuse_request(
        &mut self,
        conn: ConnId,
        code: ErrorCode,
        message: &str,
        request_id: Option<&RequestId>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let frame = match c.dialect {
            Dialect::Signaller => signaller::error(code.as_str(), message),
            Dialect::Json => json::error(code.as_str(), message, request_id),
            Dialect::Broadcaster => broadcaster::error(code, message, request_id),
        };
        self.send(conn, frame);
        self.event(Event::Refused { conn, code });
    }

    /// Answers a request that succeeded: `ack` in JSON, `{"success":true}` in The
    /// Broadcaster; rtc-signaller has no answers.
    fn ack(&mut self, conn: ConnId, request_id: Option<&RequestId>) {
        self.answer(conn, request_id, Answer::Success);
    }

    /// Answers a request that succeeded with what its dialect shows for it (JSON
    /// acks carry nothing beyond the request id).
    fn answer(&mut self, conn: ConnId, request_id: Option<&RequestId>, answer: Answer<'_>) {
        let (Some(id), Some(c)) = (request_id, self.conns.get(&conn)) else {
            return;
        };
        let frame = match c.dialect {
            Dialect::Signaller => return,
            Dialect::Json => json::ack(id),
            Dialect::Broadcaster => broadcaster::result(id, answer),
        };
        self.send(conn, frame);
    }

    fn send(&mut self, conn: ConnId, frame: Bytes) {
        self.out.push_back(Output::Send { conn, frame });
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// The id of channel `name` in `tenant`, if anyone is in it.
    fn channel_id(&self, tenant: &TenantId, name: &str) -> Option<ChannelId> {
        self.channel_ids.get(tenant)?.get(name).copied()
    }

    /// The channel's id, creating it if needed.
    fn channel_entry(&mut self, tenant: &TenantId, name: &str) -> ChannelId {
        if let Some(id) = self.channel_id(tenant, name) {
            return id;
        }
        let name: Arc<str> = Arc::from(name);
        let id = ChannelId(self.next_channel);
        self.next_channel += 1;
        self.channels.insert(
            id,
            Channel {
                tenant: tenant.clone(),
                name: Arc::clone(&name),
                members: BTreeMap::new(),
                peers: BTreeMap::new(),
                over_cap: false,
            },
        );
        self.channel_ids
            .entry(tenant.clone())
            .or_default()
            .insert(name, id);
        id
    }

    /// Drops a channel once nobody is in it.
    fn collect_channel(&mut self, id: ChannelId) {
        if self.channels.get(&id).is_some_and(|c| c.members.is_empty()) {
            let channel = self.channels.remove(&id).expect("checked above");
            if let Some(by_name) = self.channel_ids.get_mut(&channel.tenant) {
                by_name.remove(&channel.name);
                if by_name.is_empty() {
                    self.channel_ids.remove(&channel.tenant);
                }
            }
        }
    }
}

/// Counts one connection down, dropping the entry at zero.
fn decrement<K: Ord + Clone>(counts: &mut BTreeMap<K, usize>, key: &K) {
    if let Some(n) = counts.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(key);
        }
    }
}

/// The request id a command carries, if any (for refusals before it is routed).
fn request_id(command: &Command) -> Option<&RequestId> {
    match command {
        Command::Subscribe(c) => c.request_id.as_ref(),
        Command::Unsubscribe(c) => c.request_id.as_ref(),
        Command::Publish(c) => c.request_id.as_ref(),
        Command::Send(c) => c.request_id.as_ref(),
        Command::Auth(c) => c.request_id.as_ref(),
        Command::Ping(c) => c.request_id.as_ref(),
        _ => None,
    }
}

/// Mixed into [`Config::id_seed`] for the message id stream.
const MESSAGE_ID_STREAM: u64 = 0xB0AD_CA57_0000_0001;

/// `at` plus the time until `unix_secs` on the hub's wall clock (now if past).
fn instant_at_unix(now: Instant, now_unix_ms: u64, unix_secs: u64) -> Instant {
    let target_ms = unix_secs.saturating_mul(1000);
    now + Duration::from_millis(target_ms.saturating_sub(now_unix_ms))
}

/// Decodes with a size check first (counted on the whole frame).
fn decode_limited(dialect: Dialect, frame: Bytes, max: usize) -> Result<Command, DecodeError> {
    if frame.len() > max {
        return Err(DecodeError::TooLarge {
            len: frame.len(),
            max,
        });
    }
    dialect.decode(frame)
}
