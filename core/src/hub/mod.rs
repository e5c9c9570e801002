//! The hub: one state machine for every connection, room and channel.
//!
//! Who is where lives in the [`directory::Directory`]; the hub keeps what is about
//! connections themselves (credentials, rate, the per-IP and per-tenant caps), the
//! timers and the output queue, decides what each input means, and has the
//! recipients' codecs render it.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::codes::{CloseCode, ErrorCode};
use crate::config::{Config, ConfigError};
use crate::ids::{ChannelId, ConnId, IdGen, TenantId};
use crate::wire::codec::{Answer, Codec, Original};
use crate::wire::{Command, DecodeError, Dialect, RequestId};

mod api;
pub use api::{Credentials, Event, Fault, Hangup, Input, Open, Output};
mod auth;
mod cluster;
mod control;
pub use control::{ControlError, HistoryPage, PeerConnection, Published, Stats, StoredMessage};
mod directory;
mod fanout;
mod grants;
mod history;
#[cfg(any(test, feature = "testing"))]
mod invariants;
mod limits;
mod membership;
mod pubsub;
mod refresh;
mod rooms;
mod shared_history;
mod timers;

use auth::AuthState;
use directory::Directory;
use limits::{QuotaWindow, RateBucket};
use timers::{Timer, Timers};

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
    /// Keys and grants, parsed once from the config (and again on reconfigure).
    policy: auth::Policy,
    /// After `shutdown`: every new connection is closed with 1001.
    shutting_down: bool,
    /// Connections: credentials, rate, address. Same keys as the directory's places.
    conns: BTreeMap<ConnId, Conn>,
    /// Who is where: channels, members, presence, peers, patterns.
    dir: Directory,
    /// Presence deltas of this step, per channel, flushed as one frame each.
    pending_presence: BTreeMap<ChannelId, membership::Changes>,
    quotas: BTreeMap<TenantId, QuotaWindow>,
    /// Live connections per remote IP, and authenticated ones per tenant (the per-peer
    /// count is the directory's), for the concurrency caps.
    per_ip: BTreeMap<IpAddr, usize>,
    per_tenant: BTreeMap<TenantId, usize>,
    timers: Timers,
    /// The channels' streams, where a rule keeps them.
    history: history::History,
    /// On a cluster: subscriptions waiting for the engine to say where their
    /// channel's shared stream stands.
    waiting: shared_history::Waiting,
    out: VecDeque<Output>,
}

/// What the hub knows of a connection beyond where it is.
#[derive(Debug)]
struct Conn {
    auth: AuthState,
    rate: RateBucket,
    /// The client's IP (for the per-IP cap and access tokens' networks).
    ip: Option<IpAddr>,
    /// The browser's `Origin` (for access tokens' origins).
    origin: Option<Box<str>>,
    /// Whether this connection counts against its tenant's cap (once authenticated).
    counted_tenant: bool,
    /// It has sent a token refresh, so it knows the refresh vocabulary and is sent
    /// `token_expiring` (see `AuthConfig::refresh_warning_all` for the others).
    refreshes: bool,
}

/// How a peer's connection leaves a channel, for what the other members are told.
#[derive(Clone, Copy, Debug)]
enum Departure<'a> {
    /// The peer sent `/leave`: forward its own frame.
    Leave(Original<'a>),
    /// The peer unsubscribed.
    Unsubscribed,
    /// The server noticed the peer is gone (close, move to another room).
    Synthetic,
}

impl Hub {
    /// Creates a hub. `now` and `unix_ms` anchor its clocks; nothing else reads time.
    /// Fails only on a configuration that cannot work (bad keys or grant patterns).
    pub fn new(config: Config, now: Instant, unix_ms: u64) -> Result<Self, ConfigError> {
        let policy = auth::Policy::from_config(&config)?;
        let history = history::History::from_config(&config)?;
        Ok(Self {
            ids: IdGen::new(config.id_seed),
            message_ids: IdGen::new(config.id_seed ^ MESSAGE_ID_STREAM),
            config,
            epoch: (now, unix_ms),
            now,
            next_conn: 1,
            policy,
            shutting_down: false,
            conns: BTreeMap::new(),
            dir: Directory::default(),
            pending_presence: BTreeMap::new(),
            quotas: BTreeMap::new(),
            per_ip: BTreeMap::new(),
            per_tenant: BTreeMap::new(),
            timers: Timers::default(),
            history,
            waiting: shared_history::Waiting::default(),
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
        self.dir.channels().count()
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
        let ip = open.remote.map(|r| r.ip());
        self.conns.insert(
            conn,
            Conn {
                auth: AuthState::Pending,
                rate: RateBucket::new(&self.config.limits, now),
                ip,
                origin: open.origin.map(String::into_boxed_str),
                counted_tenant: false,
                refreshes: false,
            },
        );
        let tenant = TenantId::new(&self.config.default_tenant);
        self.dir.add(conn, open.dialect, tenant);
        if let Some(ip) = ip {
            *self.per_ip.entry(ip).or_default() += 1;
        }
        self.event(Event::Opened {
            conn,
            dialect: open.dialect,
        });
        let cap = self.config.limits.max_conns_per_ip;
        if self.shutting_down {
            self.close(conn, CloseCode::GOING_AWAY, "server shutting down");
        } else if ip.is_some_and(|ip| cap > 0 && self.per_ip[&ip] > cap) {
            self.close(
                conn,
                CloseCode::OVER_CONCURRENT_LIMIT,
                "too many connections from this address",
            );
        } else {
            self.on_open_credentials(conn, open.credentials);
        }
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
                if !self.conns.contains_key(&conn)
                    || !self.take_rate_token(conn, request_id(&command))
                {
                    return;
                }
                if !self.is_authenticated(conn) {
                    return self.on_unauthenticated(conn, command);
                }
                self.on_command(conn, command);
            }
            Input::Malformed { conn, error } => {
                if self.conns.contains_key(&conn) && self.take_rate_token(conn, None) {
                    self.on_malformed(conn, &error);
                }
            }
            Input::Closed { conn, how: _ } => {
                if self.teardown(conn, true) {
                    self.event(Event::Disconnected { conn, code: None });
                }
            }
            Input::Remote(remote) => self.on_remote(*remote),
            Input::Failed { conn, fault } => match fault {
                Fault::SlowConsumer => {
                    self.close(conn, CloseCode::SLOW_CONSUMER, "outbound queue full");
                }
                Fault::Protocol { code, reason } => self.close(conn, code, reason),
            },
        }
    }

    /// A command from an authenticated connection.
    fn on_command(&mut self, conn: ConnId, command: Command) {
        match command {
            // Without signing keys (or, for `AT_…`, access tokens) a `token`
            // attribute cannot be ours to check (rtc-switchboard-style deployments):
            // it is only stripped.
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
            Command::Refresh(a) => self.on_refresh(conn, a),
            Command::Auth(a) if self.codec(conn).abilities().auth_refreshes => {
                self.on_refresh(conn, a);
            }
            Command::Auth(a) => self.refuse_request(
                conn,
                ErrorCode::AlreadyAuthenticated,
                "this connection is already authenticated",
                a.request_id.as_ref(),
            ),
        }
    }

    /// Decodes `frame` in the connection's dialect and feeds it: the shortcut for
    /// drivers that decode on the hub's thread (like `examples/tcp_hub.rs`).
    pub fn handle_frame(&mut self, now: Instant, conn: ConnId, frame: Bytes) {
        let Some(place) = self.dir.get(conn) else {
            return;
        };
        let max = self.config.limits.max_frame_bytes;
        let input = match place.dialect().decode_limited(frame, max) {
            Ok(command) => Input::Command { conn, command },
            Err(error) => Input::Malformed { conn, error },
        };
        self.handle(now, input);
    }

    /// Lets time pass: fires every timer due at or before `now` (auth deadlines,
    /// token expiry warnings, token expiry) and ages out channel history.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
        while let Some(timer) = self.timers.pop_due(self.now) {
            match timer {
                Timer::AuthDeadline(conn) => self.close(
                    conn,
                    CloseCode::INVALID_TOKEN,
                    "no credentials within the auth timeout",
                ),
                Timer::TokenWarning(conn, close_at) => self.warn_expiry(conn, close_at),
                Timer::TokenExpiry(conn) => self.expire(conn),
            }
        }
        self.history.expire(self.now);
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
        match (self.timers.next(), self.history.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Closes `conn` with `code`: it leaves every channel (the others hear of it) and
    /// the driver is told to close the socket.
    fn close(&mut self, conn: ConnId, code: CloseCode, reason: &'static str) {
        if !self.teardown(conn, true) {
            return;
        }
        self.out.push_back(Output::Close { conn, code, reason });
        self.event(Event::Disconnected {
            conn,
            code: Some(code),
        });
    }

    /// The one way a connection goes: out of the directory (its departures told to
    /// the channels it leaves, when `tell` is set), its timer disarmed, its caps
    /// released. Returns false if the hub did not know it.
    fn teardown(&mut self, conn: ConnId, tell: bool) -> bool {
        let Some(c) = self.conns.remove(&conn) else {
            return false;
        };
        let removed = self
            .dir
            .remove(conn)
            .expect("the directory holds exactly the hub's connections");
        self.timers.disarm(conn);
        self.waiting.forget_conn(conn);
        if let Some(ip) = c.ip {
            decrement(&mut self.per_ip, &ip);
        }
        if c.counted_tenant {
            decrement(&mut self.per_tenant, &removed.tenant);
        }
        if let Some(peer) = &removed.offline {
            self.tell_peer(&removed.tenant, peer, false);
        }
        if tell {
            for departed in removed.departed {
                self.tell_departure(departed, Departure::Synthetic);
            }
        }
        true
    }

    /// Time never goes backwards inside the hub, whatever the driver passes.
    fn tick(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
    }

    /// Work that closes every step: presence deltas go out as one frame per channel.
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

    /// Arms a connection's timer (replacing the one it had).
    fn arm(&mut self, at: Instant, timer: Timer) {
        self.timers.arm(at, timer);
    }

    /// The codec of a live connection's dialect.
    fn codec(&self, conn: ConnId) -> &'static dyn Codec {
        self.dir.place(conn).dialect().codec()
    }

    /// The dialect of a live connection.
    fn dialect(&self, conn: ConnId) -> Dialect {
        self.dir.place(conn).dialect()
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
        let Some(place) = self.dir.get(conn) else {
            return;
        };
        let frame = place.dialect().codec().error(code, message, request_id);
        self.send(conn, frame);
        self.event(Event::Refused { conn, code });
    }

    /// Answers a request that succeeded with nothing more to say.
    fn ack(&mut self, conn: ConnId, request_id: Option<&RequestId>) {
        self.answer(conn, request_id, Answer::Success);
    }

    /// Answers a request that succeeded, as its dialect shows it (some dialects have
    /// no answers, others show only some of what `answer` carries).
    fn answer(&mut self, conn: ConnId, request_id: Option<&RequestId>, answer: Answer<'_>) {
        let (Some(id), Some(place)) = (request_id, self.dir.get(conn)) else {
            return;
        };
        if let Some(frame) = place.dialect().codec().answer(id, answer) {
            self.send(conn, frame);
        }
    }

    fn send(&mut self, conn: ConnId, frame: Bytes) {
        self.out.push_back(Output::Send { conn, frame });
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
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
        Command::Auth(c) | Command::Refresh(c) => c.request_id.as_ref(),
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
