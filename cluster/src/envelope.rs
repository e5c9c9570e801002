//! The JSON envelope nodes exchange: `{"node":"<id>","event":…}`.
//!
//! The event is tagged externally, a key per kind, with the core's own shapes inside
//! it (the same JSON as the core's serde derives give a [`Remote`]; a test checks it):
//!
//! ```json
//! {"node":"a1","event":{"changed":{"type":"publish","tenant":"default",…}}}
//! {"node":"a1","event":{"state":{"channels":{…},"peers":{…}}}}
//! {"node":"a1","event":"gone"}
//! {"node":"a1","event":{"table":{"table":"access-tokens","key":"…","value":"…"}}}
//! ```
//!
//! `table` is the engine's own (a write to a shared table, see [`crate::Tables`]), not
//! the core's: it never reaches the hub.

use serde::{Deserialize, Serialize};
use switchyard_core::cluster::{NodeId, NodeState, Outbound, Remote, RemoteEvent};

/// One message on the cluster's bus: who said it and what happened there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The node that published it.
    pub node: NodeId,
    /// What happened on that node.
    pub event: WireEvent,
}

/// [`RemoteEvent`] as it travels (externally tagged; see the module docs).
// An envelope lives for one bus message, and nearly all of them are changes: boxing
// the common variant would cost an allocation each to save memory nobody holds.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireEvent {
    /// [`RemoteEvent::Changed`].
    Changed(Outbound),
    /// [`RemoteEvent::State`].
    State(NodeState),
    /// [`RemoteEvent::Gone`].
    Gone,
    /// A write to a shared table (the engine's, not the hub's).
    Table(TableEntry),
}

/// A record written to a shared table, as other nodes hear of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableEntry {
    /// The table.
    pub table: String,
    /// The record's key.
    pub key: String,
    /// The record.
    pub value: String,
}

/// An envelope that does not parse.
#[derive(Debug)]
pub struct EnvelopeError(serde_json::Error);

impl std::fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cluster envelope: {}", self.0)
    }
}

impl std::error::Error for EnvelopeError {}

impl Envelope {
    /// Wraps `remote` for the wire; `None` for what never goes on it (an engine's
    /// answer to its own node).
    pub fn new(remote: Remote) -> Option<Self> {
        let event = match remote.event {
            RemoteEvent::Changed(out) => WireEvent::Changed(out),
            RemoteEvent::Stored(p) => WireEvent::Changed(Outbound::Publish(p)),
            RemoteEvent::State(state) => WireEvent::State(state),
            RemoteEvent::Gone => WireEvent::Gone,
            RemoteEvent::Recovered(_) | RemoteEvent::NotStored(_) => return None,
        };
        Some(Self {
            node: remote.node,
            event,
        })
    }

    /// The JSON text.
    pub fn encode(&self) -> String {
        // Invariant: every field is a string-keyed map, a string, a number or a
        // bool, which serde_json always serialises.
        serde_json::to_string(self).expect("a cluster envelope serialises")
    }

    /// Parses the JSON text.
    pub fn decode(text: &[u8]) -> Result<Self, EnvelopeError> {
        serde_json::from_slice(text).map_err(EnvelopeError)
    }

    /// The core's value; `None` for the engine's own events (a table write).
    pub fn into_remote(self) -> Option<Remote> {
        let event = match self.event {
            WireEvent::Changed(out) => RemoteEvent::Changed(out),
            WireEvent::State(state) => RemoteEvent::State(state),
            WireEvent::Gone => RemoteEvent::Gone,
            WireEvent::Table(_) => return None,
        };
        Some(Remote {
            node: self.node,
            event,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::cluster::{Member, Payload, Publication};

    fn roundtrip(event: RemoteEvent) {
        let remote = Remote {
            node: NodeId::new("a1"),
            event,
        };
        let text = Envelope::new(remote.clone()).expect("wire event").encode();
        let back = Envelope::decode(text.as_bytes())
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .into_remote()
            .expect("a core event");
        assert_eq!(back, remote, "{text}");
    }

    #[test]
    fn every_kind_of_event_survives_the_wire() {
        roundtrip(RemoteEvent::Gone);
        let mut state = NodeState::default();
        state
            .channels
            .entry("default".into())
            .or_default()
            .entry("lobby".into())
            .or_default()
            .insert(
                "alice".into(),
                Member {
                    metadata: serde_json::Map::new(),
                    room: true,
                },
            );
        roundtrip(RemoteEvent::State(state));
        roundtrip(RemoteEvent::Changed(Outbound::Publish(Publication {
            tenant: "default".into(),
            channel: "lobby".into(),
            from: "alice".into(),
            meta: serde_json::Map::new(),
            payload: Payload::Json {
                data: r#"{"n":1}"#.into(),
            },
            event: None,
            number: 7,
            unix_ms: 1,
            original: None,
            history: None,
            offset: None,
            epoch: None,
            origin_conn: None,
        })));
        roundtrip(RemoteEvent::Changed(Outbound::Peer {
            tenant: "default".into(),
            peer: "bob".into(),
            online: true,
        }));
    }

    #[test]
    fn a_table_write_reads_back_and_never_reaches_the_hub() {
        let envelope = Envelope {
            node: NodeId::new("a1"),
            event: WireEvent::Table(TableEntry {
                table: "access-tokens".into(),
                key: "k1".into(),
                value: r#"{"id":"k1"}"#.into(),
            }),
        };
        let text = envelope.encode();
        assert_eq!(
            text,
            r#"{"node":"a1","event":{"table":{"table":"access-tokens","key":"k1","value":"{\"id\":\"k1\"}"}}}"#
        );
        let back = Envelope::decode(text.as_bytes()).expect("reads back");
        assert_eq!(back, envelope);
        assert_eq!(back.into_remote(), None);
    }

    /// Whatever else appears on the bus is refused, never a panic.
    #[test]
    fn garbage_on_the_bus_is_refused() {
        for text in [
            &b""[..],
            b"\xff\xfe",
            b"null",
            b"[]",
            b"{}",
            br#"{"node":"a"}"#,
            br#"{"node":"a","event":"exploded"}"#,
            br#"{"node":"a","event":{"changed":{"type":"teleport"}}}"#,
            br#"{"node":7,"event":"gone"}"#,
            br#"{"node":"a","event":{"state":{"channels":[]}}}"#,
        ] {
            assert!(
                Envelope::decode(text).is_err(),
                "{:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn the_envelope_is_node_then_event() {
        let text = Envelope::new(Remote {
            node: NodeId::new("a1"),
            event: RemoteEvent::Gone,
        })
        .expect("a wire event")
        .encode();
        assert_eq!(text, r#"{"node":"a1","event":"gone"}"#);
    }

    /// The envelope is exactly the core's own serialisation of a [`Remote`].
    #[test]
    fn the_envelope_is_the_cores_own_serialisation() {
        let remote = Remote {
            node: NodeId::new("a1"),
            event: RemoteEvent::Changed(Outbound::Peer {
                tenant: "default".into(),
                peer: "bob".into(),
                online: true,
            }),
        };
        let text = serde_json::to_string(&remote).expect("serialises");
        assert_eq!(
            text,
            Envelope::new(remote.clone()).expect("wire event").encode()
        );
        assert_eq!(
            serde_json::from_str::<Remote>(&text).expect("reads back"),
            remote
        );
    }
}
