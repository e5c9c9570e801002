//! Between the typed gRPC messages and the JSON dialect's frames.
//!
//! Inbound, a `ClientFrame` becomes the JSON frame a WebSocket client would send for
//! it, and [`Dialect::Json`](switchyard_core::Dialect::Json) decodes it like any
//! other: one grammar, one set of refusals. Outbound, each JSON frame the hub sends
//! (`welcome`, `ack`, `error`, `message`, `direct`, `presence`, `going_away`,
//! `token_expiring`) is read into its `ServerFrame`. Payloads are the JSON text of the
//! value, spliced through unparsed both ways. History fields (`recover`, `offset`,
//! `epoch`, `recovered`) and a refresh's `expiresAt` map to the proto's optional fields:
//! absent in one is absent in the other (a `null` `expiresAt` is absent too).

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::pb::{self, client_frame, server_frame};

/// The JSON dialect's frame for `frame`. A frame with no command, or a payload that
/// is not JSON, gives a frame the dialect refuses (`malformed`).
pub fn client_frame_json(frame: &pb::ClientFrame) -> Bytes {
    let Some(kind) = &frame.kind else {
        return Bytes::from_static(b"{}");
    };
    let mut out = Json::new();
    match kind {
        client_frame::Kind::Subscribe(s) => {
            out.str("type", "subscribe");
            out.str("channel", &s.channel);
            out.opt_str("tenant", &s.tenant);
            out.opt_str("requestId", &s.request_id);
            if s.include_sender_metadata {
                out.raw("includeSenderMetadata", b"true");
            }
            if let Some(at) = &s.recover {
                let mut recover = Json::new();
                recover.raw("offset", at.offset.to_string().as_bytes());
                recover.str("epoch", &at.epoch);
                out.raw("recover", &recover.finish());
            }
        }
        client_frame::Kind::Unsubscribe(u) => {
            out.str("type", "unsubscribe");
            out.str("channel", &u.channel);
            out.opt_str("tenant", &u.tenant);
            out.opt_str("requestId", &u.request_id);
        }
        client_frame::Kind::Publish(p) => {
            out.str("type", "publish");
            out.str("channel", &p.channel);
            out.opt_str("tenant", &p.tenant);
            out.opt_str("requestId", &p.request_id);
            out.payload(&p.payload);
        }
        client_frame::Kind::Send(s) => {
            out.str("type", "send");
            out.str("to", &s.to);
            out.opt_str("requestId", &s.request_id);
            out.payload(&s.payload);
        }
        client_frame::Kind::Refresh(r) => {
            out.str("type", "refresh");
            out.str("token", &r.token);
            out.opt_str("requestId", &r.request_id);
        }
    }
    out.finish()
}

/// A JSON object written field by field (the dialect's own field names).
struct Json(Vec<u8>);

impl Json {
    fn new() -> Self {
        Self(vec![b'{'])
    }

    fn key(&mut self, key: &str) {
        if self.0.len() > 1 {
            self.0.push(b',');
        }
        self.0.push(b'"');
        self.0.extend_from_slice(key.as_bytes());
        self.0.extend_from_slice(b"\":");
    }

    fn str(&mut self, key: &str, value: &str) {
        self.key(key);
        serde_json::to_writer(&mut self.0, value).expect("Vec write");
    }

    /// Proto3 strings have no absence: empty means not given.
    fn opt_str(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.str(key, value);
        }
    }

    fn raw(&mut self, key: &str, json: &[u8]) {
        self.key(key);
        self.0.extend_from_slice(json);
    }

    /// `data`: the payload as it is (empty: `null`). Not checked here: a payload that
    /// is not JSON makes the whole frame unreadable, and the dialect refuses it.
    fn payload(&mut self, payload: &[u8]) {
        let payload = if payload.is_empty() { b"null" } else { payload };
        self.raw("data", payload);
    }

    fn finish(mut self) -> Bytes {
        self.0.push(b'}');
        Bytes::from(self.0)
    }
}

/// Every field of every JSON server frame, borrowed where it can be.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: &'a str,
    #[serde(default)]
    peer_id: String,
    #[serde(default)]
    server_time: u64,
    expires_at: Option<u64>,
    #[serde(default)]
    max_message_size: u64,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    from: String,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    event: String,
    #[serde(borrow, default)]
    from_metadata: Option<&'a RawValue>,
    #[serde(default)]
    joined: Vec<Joined<'a>>,
    #[serde(default)]
    left: Vec<Left>,
    #[serde(default)]
    count: u64,
    #[serde(default)]
    snapshot: bool,
    #[serde(default)]
    truncated: bool,
    #[serde(default)]
    retry_after_ms: u64,
    offset: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Limits {
    #[serde(default)]
    max_channels: u32,
    #[serde(default)]
    message_rate: u32,
    #[serde(default)]
    message_burst: u32,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Joined<'a> {
    peer_id: String,
    #[serde(borrow, default)]
    metadata: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Left {
    peer_id: String,
}

/// The `ServerFrame` for one JSON frame the hub sent; `None` for a frame this
/// service has no message for.
pub fn server_frame(json: &[u8]) -> Option<pb::ServerFrame> {
    let o: Outbound<'_> = match serde_json::from_slice(json) {
        Ok(o) => o,
        Err(error) => {
            tracing::warn!(%error, "a hub frame the gRPC wire could not read");
            return None;
        }
    };
    let payload = |data: Option<&RawValue>| {
        Bytes::copy_from_slice(data.map_or(&b"null"[..], |d| d.get().as_bytes()))
    };
    let object = |meta: Option<&RawValue>| {
        meta.map(|m| m.get())
            .filter(|m| *m != "null")
            .unwrap_or_default()
            .to_owned()
    };
    let kind = match o.kind {
        "welcome" => server_frame::Kind::Welcome(pb::Welcome {
            peer_id: o.peer_id,
            server_time: o.server_time,
            expires_at: o.expires_at,
            max_message_size: o.max_message_size,
            max_channels: o.limits.max_channels,
            message_rate: o.limits.message_rate,
            message_burst: o.limits.message_burst,
        }),
        "ack" => server_frame::Kind::Ack(pb::Ack {
            request_id: o.request_id.unwrap_or_default(),
            offset: o.offset,
            epoch: o.epoch,
            recovered: o.recovered,
            expires_at: o.expires_at,
        }),
        "error" => server_frame::Kind::Error(pb::Error {
            code: o.code,
            message: o.message,
            request_id: o.request_id.unwrap_or_default(),
            channel: o.channel,
        }),
        "message" => server_frame::Kind::Message(pb::Message {
            tenant: o.tenant,
            channel: o.channel,
            from: o.from,
            payload: payload(o.data),
            event: o.event,
            from_metadata_json: object(o.from_metadata),
            offset: o.offset,
        }),
        "direct" => server_frame::Kind::Direct(pb::Direct {
            from: o.from,
            payload: payload(o.data),
            from_metadata_json: object(o.from_metadata),
        }),
        "presence" => server_frame::Kind::Presence(pb::Presence {
            tenant: o.tenant,
            channel: o.channel,
            joined: o
                .joined
                .into_iter()
                .map(|j| pb::PresencePeer {
                    peer_id: j.peer_id,
                    metadata_json: object(j.metadata),
                })
                .collect(),
            left: o.left.into_iter().map(|l| l.peer_id).collect(),
            count: o.count,
            snapshot: o.snapshot,
            truncated: o.truncated,
        }),
        "going_away" => server_frame::Kind::GoingAway(pb::GoingAway {
            retry_after_ms: o.retry_after_ms,
        }),
        "token_expiring" => server_frame::Kind::TokenExpiring(pb::TokenExpiring {
            expires_at: o.expires_at.unwrap_or_default(),
        }),
        _ => return None,
    };
    Some(pb::ServerFrame { kind: Some(kind) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_core::{Command, Dialect};

    #[test]
    fn a_publish_is_the_json_dialects_publish() {
        let frame = pb::ClientFrame {
            kind: Some(client_frame::Kind::Publish(pb::Publish {
                tenant: "acme".into(),
                channel: "room\"1".into(),
                payload: Bytes::from_static(br#"{"x":1}"#),
                request_id: "p-1".into(),
            })),
        };
        let json = client_frame_json(&frame);
        assert_eq!(
            &json[..],
            br#"{"type":"publish","channel":"room\"1","tenant":"acme","requestId":"p-1","data":{"x":1}}"#
        );
        let Ok(Command::Publish(p)) = Dialect::Json.decode(json) else {
            panic!("decodes as a publish");
        };
        assert_eq!(&p.data[..], br#"{"x":1}"#);
        assert_eq!(p.tenant.as_deref(), Some("acme"));
    }

    #[test]
    fn an_empty_frame_and_a_non_json_payload_are_refused_by_the_dialect() {
        assert!(
            Dialect::Json
                .decode(client_frame_json(&pb::ClientFrame::default()))
                .is_err()
        );
        let frame = pb::ClientFrame {
            kind: Some(client_frame::Kind::Send(pb::Send {
                to: "p".into(),
                payload: Bytes::from_static(b"not json"),
                request_id: String::new(),
            })),
        };
        assert!(Dialect::Json.decode(client_frame_json(&frame)).is_err());
    }

    #[test]
    fn hub_frames_become_typed_frames() {
        let message = br#"{"type":"message","tenant":"t","channel":"c","from":"p1","data":[1,"a"],"fromMetadata":{"n":1}}"#;
        let Some(server_frame::Kind::Message(m)) = server_frame(message).and_then(|f| f.kind)
        else {
            panic!("a message");
        };
        assert_eq!(
            (&m.tenant[..], &m.channel[..], &m.from[..]),
            ("t", "c", "p1")
        );
        assert_eq!(&m.payload[..], br#"[1,"a"]"#);
        assert_eq!(m.from_metadata_json, r#"{"n":1}"#);

        let presence = br#"{"type":"presence","channel":"c","joined":[{"peerId":"a","metadata":null}],"left":[{"peerId":"b"}],"count":1,"snapshot":true}"#;
        let Some(server_frame::Kind::Presence(p)) = server_frame(presence).and_then(|f| f.kind)
        else {
            panic!("a presence frame");
        };
        assert_eq!(p.joined[0].peer_id, "a");
        assert_eq!(p.joined[0].metadata_json, "");
        assert_eq!(p.left, ["b"]);
        assert!(p.snapshot && !p.truncated);

        let welcome = br#"{"type":"welcome","peerId":"p","serverTime":5,"expiresAt":null,"maxMessageSize":65536,"iceServers":null,"limits":{"maxChannels":100,"messageRate":50,"messageBurst":100}}"#;
        let Some(server_frame::Kind::Welcome(w)) = server_frame(welcome).and_then(|f| f.kind)
        else {
            panic!("a welcome");
        };
        assert_eq!(
            (w.expires_at, w.max_channels, w.message_burst),
            (None, 100, 100)
        );

        let error = br#"{"type":"error","code":"malformed","message":"m","requestId":"r"}"#;
        let Some(server_frame::Kind::Error(e)) = server_frame(error).and_then(|f| f.kind) else {
            panic!("an error");
        };
        assert_eq!((&e.code[..], &e.request_id[..]), ("malformed", "r"));
    }

    #[test]
    fn a_subscribe_with_recover_is_the_json_dialects_recover() {
        let frame = pb::ClientFrame {
            kind: Some(client_frame::Kind::Subscribe(pb::Subscribe {
                channel: "chat/lobby".into(),
                request_id: "sub-3".into(),
                recover: Some(pb::Position {
                    offset: 41,
                    epoch: "9f2c4e1a7b3d5c60".into(),
                }),
                ..Default::default()
            })),
        };
        let json = client_frame_json(&frame);
        assert_eq!(
            &json[..],
            br#"{"type":"subscribe","channel":"chat/lobby","requestId":"sub-3","recover":{"offset":41,"epoch":"9f2c4e1a7b3d5c60"}}"#
        );
        let Ok(Command::Subscribe(s)) = Dialect::Json.decode(json) else {
            panic!("decodes as a subscribe");
        };
        let recover = s.recover.expect("a recover position");
        assert_eq!(
            (recover.offset, &recover.epoch[..]),
            (41, "9f2c4e1a7b3d5c60")
        );

        let plain = pb::ClientFrame {
            kind: Some(client_frame::Kind::Subscribe(pb::Subscribe {
                channel: "chat/lobby".into(),
                ..Default::default()
            })),
        };
        let Ok(Command::Subscribe(s)) = Dialect::Json.decode(client_frame_json(&plain)) else {
            panic!("decodes as a subscribe");
        };
        assert_eq!(s.recover, None, "no recover without a position");
    }

    #[test]
    fn a_refresh_is_the_json_dialects_refresh() {
        let frame = pb::ClientFrame {
            kind: Some(client_frame::Kind::Refresh(pb::Refresh {
                token: "AT_new".into(),
                request_id: "r1".into(),
            })),
        };
        let json = client_frame_json(&frame);
        assert_eq!(
            &json[..],
            br#"{"type":"refresh","token":"AT_new","requestId":"r1"}"#
        );
        let Ok(Command::Refresh(auth)) = Dialect::Json.decode(json) else {
            panic!("decodes as a refresh");
        };
        assert_eq!(auth.token.0, "AT_new");
    }

    fn ack(json: &[u8]) -> pb::Ack {
        let Some(server_frame::Kind::Ack(ack)) = server_frame(json).and_then(|f| f.kind) else {
            panic!("an ack");
        };
        ack
    }

    #[test]
    fn history_acks_and_messages_carry_their_position() {
        let a = ack(
            br#"{"type":"ack","requestId":"sub-3","offset":57,"epoch":"9f2c4e1a7b3d5c60","recovered":true}"#,
        );
        assert_eq!(
            (a.offset, a.epoch.as_deref(), a.recovered, a.expires_at),
            (Some(57), Some("9f2c4e1a7b3d5c60"), Some(true), None)
        );
        let a = ack(br#"{"type":"ack","requestId":"s","offset":0,"epoch":"e"}"#);
        assert_eq!(
            (a.offset, a.recovered),
            (Some(0), None),
            "offset 0 is present"
        );
        let a = ack(br#"{"type":"ack","requestId":"s","recovered":false}"#);
        assert_eq!(
            (a.offset, a.epoch, a.recovered),
            (None, None, Some(false)),
            "no history: no position"
        );
        let a = ack(br#"{"type":"ack","requestId":"pub-1"}"#);
        assert_eq!(
            (
                a.request_id.as_str(),
                a.offset,
                a.epoch,
                a.recovered,
                a.expires_at
            ),
            ("pub-1", None, None, None, None)
        );

        let history = br#"{"type":"message","channel":"chat/lobby","from":"alice","data":{"text":"hi"},"offset":57}"#;
        let Some(server_frame::Kind::Message(m)) = server_frame(history).and_then(|f| f.kind)
        else {
            panic!("a message");
        };
        assert_eq!(
            (m.offset, &m.payload[..]),
            (Some(57), &br#"{"text":"hi"}"#[..])
        );
        let plain = br#"{"type":"message","channel":"room-1","from":"alice","data":"hi"}"#;
        let Some(server_frame::Kind::Message(m)) = server_frame(plain).and_then(|f| f.kind) else {
            panic!("a message");
        };
        assert_eq!(m.offset, None);
    }

    #[test]
    fn refresh_frames_become_typed_frames() {
        let a = ack(br#"{"type":"ack","requestId":"r1","expiresAt":1700007200}"#);
        assert_eq!((a.expires_at, a.offset), (Some(1_700_007_200), None));
        let a = ack(br#"{"type":"ack","requestId":"r1","expiresAt":null}"#);
        assert_eq!(a.expires_at, None, "a token that does not expire");

        let warning = br#"{"type":"token_expiring","expiresAt":1700003600}"#;
        let Some(server_frame::Kind::TokenExpiring(t)) = server_frame(warning).and_then(|f| f.kind)
        else {
            panic!("a token_expiring");
        };
        assert_eq!(t.expires_at, 1_700_003_600);

        let ended =
            br#"{"type":"error","code":"channel_not_authorized","message":"m","channel":"room-1"}"#;
        let Some(server_frame::Kind::Error(e)) = server_frame(ended).and_then(|f| f.kind) else {
            panic!("an error");
        };
        assert_eq!((&e.channel[..], &e.request_id[..]), ("room-1", ""));
    }
}
