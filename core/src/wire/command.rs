//! Dialect-neutral commands: what a JSON or Broadcaster frame asks of the hub.

use bytes::Bytes;

use super::Secret;

/// A client's request id, kept as the JSON literal it arrived as (`"sub-1"` in the
/// JSON dialect, a number in JSON-RPC style dialects), so answers echo it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(Box<str>);

impl RequestId {
    /// Wraps a JSON literal (already validated by the codec).
    pub(crate) fn from_json(literal: &str) -> Self {
        Self(literal.into())
    }

    /// A request id from a plain string (JSON-escaped here).
    pub fn from_str_id(id: &str) -> Self {
        Self(serde_json::to_string(id).expect("strings serialise").into())
    }

    /// The JSON literal (`"sub-1"`, `123`).
    pub fn as_json(&self) -> &str {
        &self.0
    }
}

/// `subscribe`: start receiving a channel (or a wildcard pattern).
#[derive(Clone, Debug, PartialEq)]
pub struct Subscribe {
    /// Channel name or pattern (`rooms/*`, `app/**`).
    pub channel: String,
    /// Echoed in the `ack` or `error`.
    pub request_id: Option<RequestId>,
    /// Every `message` on this subscription carries `fromMetadata`.
    pub include_sender_metadata: bool,
    /// The tenant to subscribe in (fastpubsub style); `None`: the connection's own.
    pub tenant: Option<String>,
    /// Where the client's copy of the channel ends: the messages after it are
    /// replayed before live ones (JSON `recover`).
    pub recover: Option<Position>,
}

/// A point in a channel's stream: the offset of the last message seen, in the
/// channel's epoch (an epoch names one life of a stream; offsets restart when it
/// changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Position {
    /// The last offset seen (0: none).
    pub offset: u64,
    /// The stream's epoch.
    pub epoch: String,
}

/// `unsubscribe`: stop receiving a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Unsubscribe {
    /// The name or pattern given to `subscribe`.
    pub channel: String,
    /// Echoed in the `ack` or `error`.
    pub request_id: Option<RequestId>,
    /// The tenant given to `subscribe`; `None`: the connection's own.
    pub tenant: Option<String>,
}

/// `publish`: send `data` to every other subscriber of a channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Publish {
    /// A concrete channel (patterns are refused).
    pub channel: String,
    /// The JSON value, as the bytes the client sent (never re-serialised).
    pub data: Bytes,
    /// Echoed in the `ack` or `error`.
    pub request_id: Option<RequestId>,
    /// The tenant to publish in (fastpubsub style); `None`: the connection's own.
    pub tenant: Option<String>,
    /// The Broadcaster's `event` name (`None` from dialects without one; such
    /// messages reach Broadcaster subscribers as event `message`).
    pub event: Option<String>,
}

/// `send`: a direct message to a peer anywhere in the sender's tenant. (Not named
/// `Send`, which would shadow the marker trait wherever it is imported.)
#[derive(Clone, Debug, PartialEq)]
pub struct DirectSend {
    /// The target peer id.
    pub to: String,
    /// The JSON value, as the bytes the client sent.
    pub data: Bytes,
    /// Echoed in the `ack` or `error`.
    pub request_id: Option<RequestId>,
}

/// `auth`: in-band credentials, for wires that cannot carry them at connect time.
#[derive(Clone, Debug, PartialEq)]
pub struct Auth {
    /// The JWT (never printed by `Debug`).
    pub token: Secret,
    /// Echoed in the answer.
    pub request_id: Option<RequestId>,
}

/// `ping`: a keepalive the server answers with its time (The Broadcaster).
#[derive(Clone, Debug, PartialEq)]
pub struct Ping {
    /// Echoed in the answer.
    pub request_id: Option<RequestId>,
}
