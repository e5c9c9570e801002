//! What nodes of one cluster tell each other, in the core's terms.
//!
//! With [`Config::cluster`](crate::Config::cluster) on, the hub emits an
//! [`Output::Cluster`](crate::Output::Cluster) for everything other nodes must hear
//! (a publish, a peer arriving in or leaving a channel, a peer coming online, a
//! direct message for a peer it does not hold, an operator's disconnect), and takes
//! [`Input::Remote`](crate::Input::Remote) for what other nodes did. An *engine*
//! outside the core (Redis, NATS, or nothing for one node) carries these values
//! between nodes; the routing rules stay here. All of them are plain data with
//! serde derives, so an engine can ship them as they are.
//!
//! Each node's view of another node is that node's [`NodeState`]: its peers'
//! presence per channel and the peers it holds connections of. Incremental
//! [`Outbound`] values keep the view current; a full state (sent periodically by the
//! engine as a heartbeat, and read by a node that starts late) replaces it, and a
//! node that is gone is forgotten as if its state were empty: the synthetic leaves
//! for its peers follow from the difference.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A node of the cluster, named by the engine (a random id per process by default).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(String);

impl NodeId {
    /// Wraps a node's name.
    pub fn new(id: &str) -> Self {
        Self(id.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a message carries, as other nodes need it to render it per dialect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A JSON value, as the publisher sent it.
    Json {
        /// The JSON text.
        data: String,
    },
    /// An rtc-signaller command with its pipe-separated arguments.
    Signal {
        /// The command name (`chat` for `/chat|…`).
        name: String,
        /// The arguments after the sender, as sent.
        args: String,
    },
}

/// The sender's own frame, passed through unchanged to recipients of its dialect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Original {
    /// The sender's dialect (its [`Dialect::name`](crate::Dialect::name)).
    pub dialect: String,
    /// The frame as it arrived.
    pub frame: String,
}

/// A channel (or room) message published on some node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// The channel's tenant.
    pub tenant: String,
    /// The channel or room.
    pub channel: String,
    /// The sender's peer id (`_server` for the control plane).
    pub from: String,
    /// The sender's presence metadata.
    pub meta: Map<String, Value>,
    /// What was published.
    pub payload: Payload,
    /// The Broadcaster event name, when the publisher gave one.
    pub event: Option<String>,
    /// The message's number and time, the same on every node.
    pub number: u64,
    /// Unix milliseconds when the publishing node accepted it.
    pub unix_ms: u64,
    /// The sender's own frame.
    pub original: Option<Original>,
    /// Set by the publishing node when the channel keeps a history: the engine stores
    /// the message in the channel's shared stream, numbers it and only then carries
    /// it to every node, the publishing one included (as [`RemoteEvent::Stored`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Retention>,
    /// The message's offset in the channel's stream, once the engine numbered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The stream's epoch, with `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// The publishing connection on the publishing node, which does not receive its
    /// own message back. Meaningful only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin_conn: Option<u64>,
}

/// How much of a channel's past the shared stream keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Messages kept.
    pub size: usize,
    /// How long one is kept, and how long an idle stream lives.
    pub ttl_ms: u64,
}

/// A node asks the engine where a channel's shared stream stands and, for a client
/// recovering, for the messages after `since`. Answered with
/// [`RemoteEvent::Recovered`]; never carried to other nodes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverRequest {
    /// Matches the answer to the question (the hub's own number).
    pub request: u64,
    /// Tenant.
    pub tenant: String,
    /// Channel.
    pub channel: String,
    /// The last offset the client saw, when it asks to recover.
    pub since: Option<u64>,
    /// The channel's retention (a stream that does not exist yet is created with it).
    pub retention: Retention,
}

/// The engine's answer to a [`RecoverRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recovered {
    /// The request's number.
    pub request: u64,
    /// The stream's epoch (empty on `error`).
    pub epoch: String,
    /// Its last offset.
    pub offset: u64,
    /// The messages after `since` still kept, oldest first, numbered.
    pub publications: Vec<Publication>,
    /// Why the stream could not be read (the engine is not connected, say); the
    /// client is then told it did not recover.
    pub error: Option<String>,
}

/// A message for one peer that the sending node does not hold (or not only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The tenant of both peers.
    pub tenant: String,
    /// The target peer.
    pub to: String,
    /// The sender's peer id.
    pub from: String,
    /// The sender's metadata.
    pub meta: Map<String, Value>,
    /// What is sent.
    pub payload: Payload,
    /// The sender's own frame (rtc-signaller `/to`).
    pub original: Option<Original>,
    /// For `/to`: only the target's connections in this room receive it.
    pub room: Option<String>,
}

/// A peer's presence in a channel as seen from one node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its presence metadata.
    pub metadata: Map<String, Value>,
    /// It entered as a room member (rtc-signaller): at most one node holds a peer
    /// in a room, so an arrival elsewhere replaces it.
    pub room: bool,
}

/// What one node holds: its peers' presence per channel, and the peers it has
/// connections of. The unit of resynchronisation between nodes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Tenant → channel → peer → presence.
    pub channels: BTreeMap<String, BTreeMap<String, BTreeMap<String, Member>>>,
    /// Tenant → peers with a connection on the node.
    pub peers: BTreeMap<String, BTreeSet<String>>,
}

/// What the other nodes must hear. Emitted as [`Output::Cluster`](crate::Output::Cluster).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outbound {
    /// A message was published to a channel or room here.
    Publish(Publication),
    /// A peer became present in a channel here, or changed its metadata.
    Joined {
        /// Tenant.
        tenant: String,
        /// Channel or room.
        channel: String,
        /// Peer id.
        peer: String,
        /// Its presence here.
        member: Member,
    },
    /// A peer is no longer present in a channel here.
    Left {
        /// Tenant.
        tenant: String,
        /// Channel or room.
        channel: String,
        /// Peer id.
        peer: String,
    },
    /// The node holds a connection of `peer` now (`online`), or no longer.
    Peer {
        /// Tenant.
        tenant: String,
        /// Peer id.
        peer: String,
        /// Whether the node holds one of its connections.
        online: bool,
    },
    /// A direct message for a peer other nodes hold.
    Direct(Delivery),
    /// Close every connection of `peer` (an operator's disconnect or kick).
    Disconnect {
        /// Tenant.
        tenant: String,
        /// Peer id.
        peer: String,
        /// Close code.
        code: u16,
    },
    /// A question for the engine itself: where a channel's stream stands.
    Recover(RecoverRequest),
}

/// What another node did, fed with [`Input::Remote`](crate::Input::Remote).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remote {
    /// The node it came from.
    pub node: NodeId,
    /// What happened there.
    pub event: RemoteEvent,
}

/// The kinds of [`Remote`] news. Externally tagged (`{"changed":{"type":..}}`,
/// `{"state":..}`, `"gone"`): the [`Outbound`] inside `Changed` carries its own
/// `type` tag, and two `type` keys in one object would not read back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoteEvent {
    /// One of the node's incremental changes.
    Changed(Outbound),
    /// The node's whole state: replaces what this node knew of it.
    State(NodeState),
    /// The node is gone (its heartbeat expired): its peers leave everywhere.
    Gone,
    /// One of this node's own publications to a channel with a history, stored and
    /// numbered by the engine: deliver it here now.
    Stored(Publication),
    /// The engine's answer to this node's [`Outbound::Recover`].
    Recovered(Recovered),
    /// One of this node's own publications to a channel with a history that the
    /// engine could not store (Redis unreachable): nobody receives it, and its
    /// publisher is told so.
    NotStored(Publication),
}
