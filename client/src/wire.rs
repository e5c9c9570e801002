//! The JSON dialect on `/v1`, as the client speaks it (`docs/protocol.md`): the
//! requests it sends and the frames it understands. Unknown frame types and fields are
//! ignored, so a newer server does not break an older client.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::events::{IceServer, PresencePeer};

/// A request, with its `requestId`.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Request<'a> {
    Subscribe {
        channel: &'a str,
        #[serde(rename = "includeSenderMetadata")]
        include_sender_metadata: bool,
        #[serde(rename = "requestId")]
        request_id: &'a str,
        /// Where the client's copy of a history channel ends (re-subscribes only).
        #[serde(skip_serializing_if = "Option::is_none")]
        recover: Option<&'a Position>,
    },
    Unsubscribe {
        channel: &'a str,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    },
    Publish {
        channel: &'a str,
        data: &'a RawValue,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    },
    Send {
        to: &'a str,
        data: &'a RawValue,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    },
    Refresh {
        token: &'a str,
        #[serde(rename = "requestId")]
        request_id: &'a str,
    },
}

impl Request<'_> {
    pub(crate) fn encode(&self) -> String {
        // Every field is a string, a bool or already-valid JSON: serialising cannot fail.
        serde_json::to_string(self).expect("requests always serialise")
    }
}

/// A point in a channel's stream: the last offset received, in the stream's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Position {
    pub(crate) offset: u64,
    pub(crate) epoch: String,
}

/// A frame from the server.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Frame {
    Welcome(Welcome),
    Ack(Ack),
    Error(ErrorFrame),
    Message(MessageFrame),
    Direct(DirectFrame),
    Presence(PresenceFrame),
    GoingAway(GoingAwayFrame),
    TokenExpiring(TokenExpiringFrame),
    #[serde(other)]
    Unknown,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Welcome {
    pub(crate) peer_id: String,
    #[serde(default)]
    pub(crate) server_time: u64,
    #[serde(default)]
    pub(crate) expires_at: Option<u64>,
    #[serde(default)]
    pub(crate) max_message_size: u64,
    #[serde(default)]
    pub(crate) ice_servers: Option<Vec<IceServer>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Ack {
    pub(crate) request_id: String,
    /// Only a `refresh`'s ack says it: the new token's expiry.
    #[serde(default)]
    pub(crate) expires_at: Option<u64>,
    /// A subscribe to a channel with a history: where its stream stands.
    #[serde(default)]
    pub(crate) offset: Option<u64>,
    #[serde(default)]
    pub(crate) epoch: Option<String>,
    /// A subscribe that asked to recover: whether every missed message was replayed.
    #[serde(default)]
    pub(crate) recovered: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenExpiringFrame {
    pub(crate) expires_at: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ErrorFrame {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
    #[serde(default)]
    pub(crate) request_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageFrame {
    pub(crate) channel: String,
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) data: Value,
    #[serde(default)]
    pub(crate) from_metadata: Option<Value>,
    /// The message's offset in the channel's stream (channels with a history).
    #[serde(default)]
    pub(crate) offset: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DirectFrame {
    pub(crate) from: String,
    #[serde(default)]
    pub(crate) data: Value,
    #[serde(default)]
    pub(crate) from_metadata: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PresenceFrame {
    pub(crate) channel: String,
    #[serde(default)]
    pub(crate) joined: Vec<PresencePeer>,
    #[serde(default)]
    pub(crate) left: Vec<PresencePeer>,
    #[serde(default)]
    pub(crate) snapshot: bool,
    #[serde(default)]
    pub(crate) count: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GoingAwayFrame {
    #[serde(default)]
    pub(crate) retry_after_ms: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_use_the_protocols_field_names() {
        let data = RawValue::from_string(r#"{"n":1}"#.to_owned()).unwrap();
        assert_eq!(
            Request::Subscribe {
                channel: "room-1",
                include_sender_metadata: true,
                request_id: "r1",
                recover: None,
            }
            .encode(),
            r#"{"type":"subscribe","channel":"room-1","includeSenderMetadata":true,"requestId":"r1"}"#
        );
        let position = Position {
            offset: 7,
            epoch: "e1".into(),
        };
        assert_eq!(
            Request::Subscribe {
                channel: "chat/a",
                include_sender_metadata: false,
                request_id: "r3",
                recover: Some(&position),
            }
            .encode(),
            r#"{"type":"subscribe","channel":"chat/a","includeSenderMetadata":false,"requestId":"r3","recover":{"offset":7,"epoch":"e1"}}"#
        );
        assert_eq!(
            Request::Send {
                to: "bob",
                data: &data,
                request_id: "r2",
            }
            .encode(),
            r#"{"type":"send","to":"bob","data":{"n":1},"requestId":"r2"}"#
        );
    }

    #[test]
    fn the_documented_server_frames_parse() {
        let welcome: Frame = serde_json::from_str(
            r#"{"type":"welcome","peerId":"alice","serverTime":1700000000,"expiresAt":null,"maxMessageSize":65536,"iceServers":[{"urls":"turn:t","username":"u","credential":"c"}],"limits":{"maxChannels":100}}"#,
        )
        .unwrap();
        let Frame::Welcome(w) = welcome else {
            panic!("not a welcome")
        };
        assert_eq!(w.peer_id, "alice");
        assert_eq!(w.ice_servers.unwrap()[0].urls, ["turn:t"]);
        let presence: Frame = serde_json::from_str(
            r#"{"type":"presence","channel":"c","joined":[{"peerId":"bob","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
        )
        .unwrap();
        assert!(matches!(presence, Frame::Presence(p) if p.snapshot && p.joined.len() == 1));
        let ack: Frame = serde_json::from_str(
            r#"{"type":"ack","requestId":"c1","offset":9,"epoch":"e1","recovered":true}"#,
        )
        .unwrap();
        assert!(matches!(ack, Frame::Ack(a)
            if a.offset == Some(9) && a.epoch.as_deref() == Some("e1") && a.recovered == Some(true)));
        let message: Frame = serde_json::from_str(
            r#"{"type":"message","channel":"c","from":"bob","data":{},"offset":9}"#,
        )
        .unwrap();
        assert!(matches!(message, Frame::Message(m) if m.offset == Some(9)));
        let future: Frame = serde_json::from_str(r#"{"type":"from_the_future","x":1}"#).unwrap();
        assert!(matches!(future, Frame::Unknown));
    }
}
