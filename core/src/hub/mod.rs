//! The hub: one state machine for every connection, room and channel.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::{Map, Value};

use crate::codes::{CloseCode, ErrorCode};
use crate::config::Config;
use crate::ids::{ChannelId, ConnId, IdGen, PeerId, TenantId};
use crate::wire::{Command, DecodeError, Dialect, signaller};

mod fanout;
#[cfg(any(test, feature = "testing"))]
mod invariants;
mod rooms;

/// What a transport knows when a connection opens.
#[derive(Clone, Debug)]
pub struct Open {
    /// The wire language the connection speaks.
    pub dialect: Dialect,
    /// What the client offered at connect (query string, header, subprotocol).
    pub credentials: Credentials,
    /// The peer's address, for per-IP limits and logs.
    pub remote: Option<SocketAddr>,
}

impl Open {
    /// An anonymous connection in `dialect`.
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            credentials: Credentials::None,
            remote: None,
        }
    }
}

/// Credentials offered at connect time.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Credentials {
    /// Nothing offered (in-band auth may follow, or the hub allows anonymous peers).
    None,
    /// A JWT (`?token=`, `Authorization: Bearer`, subprotocol).
    Token(String),
    /// A publishable key (`?key=`).
    Key(String),
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
    #[allow(dead_code)]
    ids: IdGen,
    next_conn: u64,
    next_channel: u64,
    conns: BTreeMap<ConnId, Conn>,
    channels: BTreeMap<ChannelId, Channel>,
    channel_ids: BTreeMap<(TenantId, Arc<str>), ChannelId>,
    out: VecDeque<Output>,
}

#[derive(Debug)]
struct Conn {
    dialect: Dialect,
    tenant: TenantId,
    /// Bound by the first announce, or by the token's `sub`.
    peer: Option<PeerId>,
    /// The rtc-signaller room (at most one).
    room: Option<ChannelId>,
}

#[derive(Debug)]
struct Channel {
    tenant: TenantId,
    name: Arc<str>,
    /// Member connections. A peer may have several (across dialects).
    members: BTreeMap<ConnId, Member>,
    /// Presence, per peer id: a peer is present while any of its connections is.
    peers: BTreeMap<PeerId, Presence>,
}

#[derive(Debug)]
struct Member {
    peer: PeerId,
    dialect: Dialect,
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
    /// The server notices the peer is gone (close, move to another room).
    Synthetic,
}

impl Hub {
    /// Creates a hub. `now` and `unix_ms` anchor its clocks; nothing else reads time.
    pub fn new(config: Config, now: Instant, unix_ms: u64) -> Self {
        Self {
            ids: IdGen::new(config.id_seed),
            config,
            epoch: (now, unix_ms),
            now,
            next_conn: 1,
            next_channel: 1,
            conns: BTreeMap::new(),
            channels: BTreeMap::new(),
            channel_ids: BTreeMap::new(),
            out: VecDeque::new(),
        }
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

    /// Registers a new connection and returns its id.
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
                room: None,
            },
        );
        self.event(Event::Opened {
            conn,
            dialect: open.dialect,
        });
        conn
    }

    /// Feeds one input. Inputs for connections the hub no longer knows are ignored.
    pub fn handle(&mut self, now: Instant, input: Input) {
        self.tick(now);
        match input {
            Input::Command { conn, command } => {
                if !self.conns.contains_key(&conn) {
                    return;
                }
                match command {
                    Command::Announce(a) => self.on_announce(conn, a),
                    Command::Leave(l) => self.on_leave(conn, l),
                    Command::To(t) => self.on_to(conn, t),
                    Command::Signal(s) => self.on_signal(conn, s),
                }
            }
            Input::Malformed { conn, error } => self.on_malformed(conn, &error),
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

    /// Lets time pass. Nothing in the core is time-driven yet beyond what the
    /// driver reports, so this only keeps the contract for future timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
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
        None
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

    fn on_malformed(&mut self, conn: ConnId, error: &DecodeError) {
        match error {
            DecodeError::TooLarge { .. } => {
                self.close(conn, CloseCode::MESSAGE_TOO_BIG, "frame too large");
            }
            _ => self.refuse(conn, ErrorCode::InvalidMessage, &error.to_string()),
        }
    }

    /// Removes a connection from every channel, with synthetic leaves. Returns false
    /// if the hub did not know it.
    fn forget(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        if let Some(room) = c.room {
            self.depart(room, conn, Departure::Synthetic);
        }
        self.conns.remove(&conn);
        true
    }

    /// Sends an error frame in the connection's dialect.
    fn refuse(&mut self, conn: ConnId, code: ErrorCode, message: &str) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let frame = match c.dialect {
            Dialect::Signaller => signaller::error(code.as_str(), message),
        };
        self.send(conn, frame);
        self.event(Event::Refused { conn, code });
    }

    fn send(&mut self, conn: ConnId, frame: Bytes) {
        self.out.push_back(Output::Send { conn, frame });
    }

    fn event(&mut self, event: Event) {
        self.out.push_back(Output::Event(event));
    }

    /// The channel's id, creating it if needed.
    fn channel_entry(&mut self, tenant: &TenantId, name: &str) -> ChannelId {
        let key = (tenant.clone(), Arc::<str>::from(name));
        if let Some(id) = self.channel_ids.get(&key) {
            return *id;
        }
        let id = ChannelId(self.next_channel);
        self.next_channel += 1;
        self.channels.insert(
            id,
            Channel {
                tenant: tenant.clone(),
                name: key.1.clone(),
                members: BTreeMap::new(),
                peers: BTreeMap::new(),
            },
        );
        self.channel_ids.insert(key, id);
        id
    }

    /// Drops a channel once nobody is in it.
    fn collect_channel(&mut self, id: ChannelId) {
        if self.channels.get(&id).is_some_and(|c| c.members.is_empty()) {
            let channel = self.channels.remove(&id).expect("checked above");
            self.channel_ids.remove(&(channel.tenant, channel.name));
        }
    }
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
