//! The one surface a dialect implements: decoding its frames, what it can express,
//! and how it shows each thing the hub delivers.
//!
//! The hub decides *what* happens (a message to these members, a refusal, a
//! departure) in the dialect-neutral values below; a [`Codec`] turns each into its
//! wire text, or into nothing when the dialect has no way to say it (The
//! Broadcaster has no presence, rtc-signaller has no answers). Routing rules that
//! differ between dialects read the dialect's [`Abilities`], never its name.

use std::fmt;

use bytes::Bytes;
use serde_json::{Map, Value};

use super::broadcaster::Push;
use super::command::RequestId;
use super::stamp::Stamp;
use super::{Command, DecodeError, Dialect, signaller};
use crate::codes::ErrorCode;
use crate::ids::PeerId;

/// A dialect: its decoder, its abilities and its encoders. Implemented by one unit
/// type per module of `wire/` and registered in [`Dialect::codec`].
pub(crate) trait Codec: fmt::Debug + Sync {
    /// The name used in config, subprotocols and metrics.
    fn name(&self) -> &'static str;

    /// The protocol's name in prose ("The Broadcaster"), for refusal messages.
    fn title(&self) -> &'static str;

    /// What the dialect can express.
    fn abilities(&self) -> Abilities;

    /// Parses one inbound frame (pure, so it runs on the connection's task).
    fn decode(&self, frame: Bytes) -> Result<Command, DecodeError>;

    /// A refused request (or a frame that could not be read).
    fn error(&self, code: ErrorCode, message: &str, request_id: Option<&RequestId>) -> Bytes;

    /// A request that succeeded; `None` where the dialect has no answers.
    fn answer(&self, request_id: &RequestId, answer: Answer<'_>) -> Option<Bytes>;

    /// What a connection is told once it is authenticated, before the answer to its
    /// `auth` (if it sent one).
    fn welcome(&self, _welcome: &Welcome<'_>) -> Option<Bytes> {
        None
    }

    /// A channel message, for a member that asked for the sender's metadata or not.
    fn message(&self, message: &Message<'_>, with_meta: bool) -> Option<Frame>;

    /// A message for one peer.
    fn direct(&self, direct: &Direct<'_>) -> Option<Bytes>;

    /// A peer arrived in a room, or changed its metadata there (room dialects).
    fn arrived(&self, _arrival: &Arrival<'_>) -> Option<Bytes> {
        None
    }

    /// A peer left a room (room dialects). `own` is the peer's own leave frame, when
    /// it sent one.
    fn departed(&self, _peer: &PeerId, _own: Option<&Original<'_>>) -> Option<Bytes> {
        None
    }

    /// A peer already in the room, introduced to a newcomer (room dialects).
    fn introduction(&self, _to: &PeerId, _arrival: &Arrival<'_>) -> Option<Bytes> {
        None
    }

    /// What an announcer is told after entering a room: how many peers are in it.
    fn room_info(&self, _peer_count: usize) -> Option<Bytes> {
        None
    }

    /// A presence snapshot or delta (dialects with presence).
    fn presence(&self, _presence: &PresenceView<'_>) -> Option<Bytes> {
        None
    }

    /// `frame` (a message or presence frame of this dialect) naming `tenant`, for a
    /// recipient whose own tenant is another. Dialects that never subscribe across
    /// tenants return it as it is.
    fn with_tenant(&self, frame: &Bytes, _tenant: &str) -> Bytes {
        frame.clone()
    }

    /// The notice sent before a graceful shutdown closes the connection.
    fn going_away(&self, _retry_after_ms: u64) -> Option<Bytes> {
        None
    }

    /// The warning that the connection's token expires at `expires_at` (unix
    /// seconds) unless it refreshes; `None` where the dialect has no such frame.
    fn token_expiring(&self, _expires_at: u64) -> Option<Bytes> {
        None
    }

    /// The notice that a subscription to `channel` ended because the connection's
    /// new grants no longer allow it; `None` where the dialect cannot say it.
    fn subscription_ended(
        &self,
        _channel: &str,
        _code: ErrorCode,
        _message: &str,
    ) -> Option<Bytes> {
        None
    }
}

/// What a dialect can express, for the routing rules that depend on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Abilities {
    /// Members receive presence snapshots and deltas (with the `presence`
    /// permission).
    pub(crate) presence: bool,
    /// The dialect can receive direct messages (`send`, `/to`); connections of one
    /// that cannot are not targets.
    pub(crate) direct: bool,
    /// Wildcard subscriptions are part of the protocol.
    pub(crate) wildcards: bool,
    /// Subscribing twice to one channel is refused, and unsubscribing from an
    /// unknown one answers `not_subscribed` (resource-style protocols).
    pub(crate) strict_subscriptions: bool,
    /// The anonymous grant applies to connections that offer no credentials.
    pub(crate) anonymous: bool,
    /// A refused in-band `auth` is answered and may be retried until the auth
    /// deadline; otherwise it closes the connection.
    pub(crate) auth_retry: bool,
    /// Peers bind their id by announcing into a room, not at authentication: the
    /// server invents no id for them.
    pub(crate) binds_by_announce: bool,
    /// JWTs must name the configured Broadcaster audience.
    pub(crate) needs_audience: bool,
    /// A `subscribe` is answered with a subscription id.
    pub(crate) subscription_ids: bool,
    /// An `auth` on an authenticated connection is a token refresh (dialects with
    /// no `refresh` of their own); otherwise it is refused `already_authenticated`.
    pub(crate) auth_refreshes: bool,
    /// The dialect has a frame warning that the token is about to expire.
    pub(crate) warns_expiry: bool,
}

/// The frame a dialect writes for one message.
#[derive(Clone, Debug)]
pub(crate) enum Frame {
    /// The same bytes for every recipient.
    Shared(Bytes),
    /// A push whose per-subscription `seq` is spliced in per recipient.
    Sequenced(Push),
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Self::Shared(bytes)
    }
}

/// What a successful request is answered with.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer<'a> {
    /// `auth`, `unsubscribe`, and requests with nothing to report.
    Success,
    /// `subscribe`, where the dialect names subscriptions.
    Subscribed {
        /// `sub-…`, from the hub's seeded ids.
        subscription_id: &'a str,
        /// Unix milliseconds.
        unix_ms: u64,
    },
    /// `publish`: the message's id and time.
    Published(&'a Stamp),
    /// `ping`: the server's time.
    Pong {
        /// Unix milliseconds.
        unix_ms: u64,
    },
    /// `subscribe` to a channel with a history, or one that asked to recover: where
    /// the channel's stream stands (`None` without a history) and, when asked,
    /// whether everything missed was replayed.
    Positioned {
        /// The channel's last offset and its epoch.
        position: Option<(u64, &'a str)>,
        /// `Some` when the subscribe asked to recover.
        recovered: Option<bool>,
    },
    /// A token refresh (JSON `refresh`, a Broadcaster `auth` on an authenticated
    /// connection): the new token's expiry.
    Refreshed {
        /// Unix seconds; `None` when the new credentials do not expire.
        expires_at: Option<u64>,
    },
}

/// What `welcome` tells a client about itself and the server's limits.
pub(crate) struct Welcome<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) server_time: u64,
    pub(crate) expires_at: Option<u64>,
    pub(crate) max_message_size: usize,
    pub(crate) ice_servers: Option<&'a Value>,
    pub(crate) max_channels: usize,
    pub(crate) message_rate: u32,
    pub(crate) message_burst: u32,
}

/// A sender's own frame, passed through unchanged to recipients of its dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Original<'a> {
    /// The sender's dialect.
    pub(crate) dialect: Dialect,
    /// The frame as it arrived.
    pub(crate) frame: &'a Bytes,
}

/// What is being delivered, before it is encoded per dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Payload<'a> {
    /// A JSON value, as the bytes the client sent.
    Json(&'a Bytes),
    /// An rtc-signaller command; JSON peers see `{"command":..,"args":[..]}`.
    Signal {
        /// The command name.
        name: &'a str,
        /// The pipe-separated arguments after the sender.
        args: &'a [u8],
    },
}

impl Payload<'_> {
    /// The JSON value JSON peers get as `data`.
    pub(crate) fn json(&self) -> Bytes {
        match self {
            Self::Json(data) => (*data).clone(),
            Self::Signal { name, args } => {
                let value = serde_json::json!({
                    "command": name,
                    "args": signaller::args_json(args),
                });
                Bytes::from(serde_json::to_vec(&value).expect("Value serialises"))
            }
        }
    }
}

/// One channel message, before it is encoded per dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Message<'a> {
    /// The channel (or room) name.
    pub(crate) channel: &'a str,
    /// The sender (`_server` for the control plane).
    pub(crate) from: &'a PeerId,
    /// The sender's presence metadata, for `fromMetadata`.
    pub(crate) meta: &'a Map<String, Value>,
    pub(crate) payload: Payload<'a>,
    /// The Broadcaster event name, when the publisher gave one.
    pub(crate) event: Option<&'a str>,
    /// Message id and time.
    pub(crate) stamp: Stamp,
    /// Its place in the channel's history, where the channel keeps one.
    pub(crate) offset: Option<u64>,
    /// The sender's own frame.
    pub(crate) original: Option<Original<'a>>,
}

/// A message for one peer, before it is encoded for the target's dialect.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Direct<'a> {
    /// The sender.
    pub(crate) from: &'a PeerId,
    /// The target peer.
    pub(crate) to: &'a PeerId,
    /// The sender's metadata.
    pub(crate) meta: &'a Map<String, Value>,
    pub(crate) payload: Payload<'a>,
    /// The sender's own frame.
    pub(crate) original: Option<Original<'a>>,
}

/// A peer present in a room, with its metadata.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Arrival<'a> {
    pub(crate) peer: &'a PeerId,
    pub(crate) room: &'a str,
    pub(crate) metadata: &'a Map<String, Value>,
    /// The peer's own announce, when it just sent one.
    pub(crate) original: Option<Original<'a>>,
}

/// One presence entry: a peer and, for joins, its metadata.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PresenceEntry<'a> {
    pub(crate) peer_id: &'a str,
    pub(crate) metadata: Option<&'a Map<String, Value>>,
}

/// A presence frame. `snapshot` marks the full roster sent after a subscribe (or a
/// resync); `count` is the number of peers in the channel, `truncated` says the
/// roster was cut at the presence cap.
#[derive(Clone, Debug)]
pub(crate) struct PresenceView<'a> {
    pub(crate) channel: &'a str,
    pub(crate) joined: Vec<PresenceEntry<'a>>,
    pub(crate) left: Vec<&'a str>,
    pub(crate) snapshot: bool,
    pub(crate) count: usize,
    pub(crate) truncated: bool,
}
