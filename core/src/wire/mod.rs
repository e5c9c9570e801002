//! Dialects: pure codecs beside the hub. Every byte of dialect text is written here.
//!
//! A transport decodes each inbound frame on its own task with [`Dialect::decode`] and
//! hands the typed [`Command`] to the hub. The hub decides what to deliver in
//! dialect-neutral values (a message, a refusal, a departure, a presence view) and
//! asks each recipient dialect's codec to encode it, once per dialect per message;
//! the resulting [`Bytes`] are shared among all recipients.
//!
//! Adding a dialect means: one module here with a unit type implementing the
//! crate-internal `Codec` trait (decode, the dialect's abilities, and the encoders it
//! supports; those it has no way to say default to nothing), one variant of
//! [`Dialect`] and its line in `Dialect::codec` (the registration). The hub names no
//! dialect: rules that differ between dialects read the codec's abilities.

use bytes::Bytes;

pub mod broadcaster;
pub(crate) mod codec;
mod command;
pub mod json;
pub mod signaller;
mod stamp;

pub use command::{Auth, DirectSend, Ping, Position, Publish, RequestId, Subscribe, Unsubscribe};
pub use stamp::{Stamp, format_timestamp};

use codec::Codec;
pub use signaller::{Announce, Leave, Signal, To};

/// The wire languages a connection can speak. Chosen by the transport at open time
/// (WebSocket path or subprotocol, QUIC ALPN, TCP listener config or `hello` line).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// rtc.io's pipe-delimited text (`/announce|id|{..}`).
    Signaller = 0,
    /// Metered-style JSON objects (`{"type":"publish",..}`).
    Json = 1,
    /// The Broadcaster's JSON-RPC-style requests (`{"id":1,"method":"publish",..}`).
    Broadcaster = 2,
}

impl Dialect {
    /// Every dialect, in a fixed order (for per-dialect caches and metrics).
    pub const ALL: [Self; 3] = [Self::Signaller, Self::Json, Self::Broadcaster];

    /// Parses one inbound frame. Pure and stateless, so transports call it on the
    /// connection's own task and the hub only ever sees typed commands.
    pub fn decode(self, frame: Bytes) -> Result<Command, DecodeError> {
        self.codec().decode(frame)
    }

    /// [`Dialect::decode`] after a size check on the whole frame: a frame over `max`
    /// bytes is [`DecodeError::TooLarge`] (the hub closes with 1009). What every
    /// transport calls, and [`Hub::handle_frame`](crate::Hub::handle_frame) too.
    pub fn decode_limited(self, frame: Bytes, max: usize) -> Result<Command, DecodeError> {
        if frame.len() > max {
            return Err(DecodeError::TooLarge {
                len: frame.len(),
                max,
            });
        }
        self.decode(frame)
    }

    /// The name used in config, subprotocols and metrics.
    pub fn name(self) -> &'static str {
        self.codec().name()
    }

    /// The registration: each dialect's codec.
    pub(crate) fn codec(self) -> &'static dyn Codec {
        match self {
            Self::Signaller => &signaller::Signaller,
            Self::Json => &json::Json,
            Self::Broadcaster => &broadcaster::Broadcaster,
        }
    }

    /// The inverse of [`Dialect::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The dialect's position in [`Dialect::ALL`], for per-dialect caches.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// A decoded inbound frame, in the hub's terms.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Command {
    /// rtc-signaller `/announce`: join (or update presence in) a room.
    Announce(Announce),
    /// rtc-signaller `/leave`: leave the room gracefully.
    Leave(Leave),
    /// rtc-signaller `/to|<id>|...`: a message for one peer in the sender's room.
    To(To),
    /// Any other rtc-signaller `/command`: passed through to the sender's room.
    Signal(Signal),
    /// Start receiving a channel or pattern.
    Subscribe(Subscribe),
    /// Stop receiving a channel or pattern.
    Unsubscribe(Unsubscribe),
    /// Publish to a channel.
    Publish(Publish),
    /// Send to one peer.
    Send(DirectSend),
    /// In-band credentials.
    Auth(Auth),
    /// A new token for an authenticated connection (JSON `refresh`): same peer and
    /// tenant, new expiry and grants, no reconnect.
    Refresh(Auth),
    /// A keepalive that asks for the server's time (The Broadcaster's `ping`).
    Ping(Ping),
}

/// Why a frame could not be decoded. The hub answers it with an error frame in the
/// connection's dialect (or a 1009 close for [`DecodeError::TooLarge`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is over the configured size; the connection is closed with 1009.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// The frame's length (or the length seen so far).
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The frame is not valid UTF-8 text.
    #[error("frame is not UTF-8 text")]
    NotText,
    /// The frame does not follow the dialect's grammar.
    #[error("{reason}")]
    Malformed {
        /// What was wrong, for the error frame's message.
        reason: &'static str,
        /// The frame's request id, when it could be read, so the error answers it.
        request_id: Option<RequestId>,
    },
}

impl DecodeError {
    pub(crate) fn malformed(reason: &'static str) -> Self {
        Self::Malformed {
            reason,
            request_id: None,
        }
    }
}

/// A credential that must never reach a log: its `Debug` prints `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}
