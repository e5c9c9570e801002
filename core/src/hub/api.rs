//! The hub's public vocabulary: what a transport tells it ([`Open`], [`Input`]) and
//! what it asks back ([`Output`], [`Event`]).

use std::net::SocketAddr;

use bytes::Bytes;

use crate::codes::{CloseCode, ErrorCode};
use crate::ids::{ConnId, PeerId, TenantId};
use crate::wire::{Command, DecodeError, Dialect};

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
///
/// Exhaustive on purpose: a driver matches every input and output, so a new one is a
/// compile error in every driver of the workspace rather than a silently dropped
/// case.
#[derive(Clone, Debug)]
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
        how: Hangup,
    },
    /// Another node of the cluster did something (fed by the cluster engine; see
    /// [`crate::cluster`]).
    /// (Boxed: it is large and rare, and inputs travel through channels.)
    Remote(Box<crate::cluster::Remote>),
    /// The transport must end the connection: its peer broke the wire's rules, or
    /// cannot keep up. The hub closes it with the fault's code, like a close it
    /// decides itself (synthetic leave, presence changes).
    Failed {
        /// The connection at fault.
        conn: ConnId,
        /// What went wrong.
        fault: Fault,
    },
}

/// Why a transport gives up on a connection ([`Input::Failed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection's bounded outbound queue is full: a slow consumer (4013).
    SlowConsumer,
    /// The peer broke the wire's framing rules (a WebSocket protocol error is 1002,
    /// invalid UTF-8 1007).
    Protocol {
        /// The close code to send.
        code: CloseCode,
        /// The close frame's reason.
        reason: &'static str,
    },
}

/// How a connection ended, as far as the transport could tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hangup {
    /// The client closed cleanly (close frame, EOF).
    Graceful,
    /// Reset, timeout, dead keepalive, read error.
    Hard,
}

/// What the hub asks of the driver. Drain with [`Hub::poll_output`](crate::Hub::poll_output) after every input.
/// Exhaustive, like [`Input`].
#[derive(Clone, Debug, PartialEq)]
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
    /// Something the other nodes of the cluster must hear (only with
    /// [`Config::cluster`](crate::Config::cluster) on): hand it to the engine.
    /// (Boxed: it is large and rare, and every `Send` of a fan-out is moved through
    /// the same queue: an inline one made each output 4× larger.)
    Cluster(Box<crate::cluster::Outbound>),
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
    Disconnected {
        /// The connection.
        conn: ConnId,
        /// The code, when the hub closed it.
        code: Option<CloseCode>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every frame of a fan-out moves through the output queue: keep outputs small.
    #[test]
    fn outputs_and_inputs_stay_small() {
        assert!(
            size_of::<Output>() <= 64,
            "Output is {} bytes",
            size_of::<Output>()
        );
        assert!(
            size_of::<Input>() <= 160,
            "Input is {} bytes",
            size_of::<Input>()
        );
    }
}
