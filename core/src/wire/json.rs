//! The JSON dialect (Metered-style): one JSON object per frame, with a `type`.
//!
//! Client → server: `subscribe`, `unsubscribe`, `publish`, `send`, `auth`, `refresh`.
//! Server → client: `welcome`, `ack`, `error`, `message`, `direct`, `presence`,
//! `going_away`, `token_expiring`. Field names are camelCase. `data` is kept as the exact bytes the
//! publisher sent and spliced into each delivery: it is never parsed or re-serialised.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::codec::{Abilities, Answer, Codec, Direct, Frame, Message, PresenceView, Welcome};
use super::command::{Auth, DirectSend, Position, Publish, RequestId, Subscribe, Unsubscribe};
use super::{Command, DecodeError, Secret};
use crate::codes::ErrorCode;

/// Longest `requestId`, in characters.
pub const MAX_REQUEST_ID_CHARS: usize = 128;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inbound<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    include_sender_metadata: Option<bool>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    to: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
    #[serde(borrow)]
    tenant: Option<Cow<'a, str>>,
    #[serde(borrow)]
    recover: Option<Recover<'a>>,
}

/// `recover` on `subscribe`: the last offset seen and its epoch.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Recover<'a> {
    offset: u64,
    #[serde(borrow)]
    epoch: Cow<'a, str>,
}

/// Only the request id, for answering frames that fail to decode otherwise.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JustRequestId<'a> {
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
}

/// Decodes one frame.
pub(crate) fn decode(frame: Bytes) -> Result<Command, DecodeError> {
    let text = std::str::from_utf8(&frame).map_err(|_| DecodeError::NotText)?;
    let inbound: Inbound<'_> = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            let request_id = serde_json::from_str::<JustRequestId<'_>>(text)
                .ok()
                .and_then(|r| r.request_id)
                .and_then(|r| request_id(r).ok());
            return Err(DecodeError::Malformed {
                reason: "frame is not a JSON object of the expected shape",
                request_id,
            });
        }
    };
    let request_id = match inbound.request_id.map(request_id).transpose() {
        Ok(id) => id,
        Err(reason) => {
            return Err(DecodeError::Malformed {
                reason,
                request_id: None,
            });
        }
    };
    let fail = |reason: &'static str| DecodeError::Malformed {
        reason,
        request_id: request_id.clone(),
    };
    let raw = |v: Option<&RawValue>| match v {
        Some(v) => frame.slice_ref(v.get().as_bytes()),
        None => Bytes::from_static(b"null"),
    };
    let kind = inbound
        .kind
        .as_deref()
        .ok_or_else(|| fail("missing \"type\""))?;
    Ok(match kind {
        "subscribe" => Command::Subscribe(Subscribe {
            channel: inbound
                .channel
                .ok_or_else(|| fail("missing \"channel\""))?
                .into_owned(),
            include_sender_metadata: inbound.include_sender_metadata.unwrap_or(false),
            request_id,
            tenant: inbound.tenant.map(Cow::into_owned),
            recover: inbound.recover.map(|r| Position {
                offset: r.offset,
                epoch: r.epoch.into_owned(),
            }),
        }),
        "unsubscribe" => Command::Unsubscribe(Unsubscribe {
            channel: inbound
                .channel
                .ok_or_else(|| fail("missing \"channel\""))?
                .into_owned(),
            request_id,
            tenant: inbound.tenant.map(Cow::into_owned),
        }),
        "publish" => Command::Publish(Publish {
            channel: inbound
                .channel
                .ok_or_else(|| fail("missing \"channel\""))?
                .into_owned(),
            data: raw(inbound.data),
            request_id,
            tenant: inbound.tenant.map(Cow::into_owned),
            event: None,
        }),
        "send" => Command::Send(DirectSend {
            to: inbound
                .to
                .ok_or_else(|| fail("missing \"to\""))?
                .into_owned(),
            data: raw(inbound.data),
            request_id,
        }),
        "auth" => Command::Auth(Auth {
            token: Secret(
                inbound
                    .token
                    .ok_or_else(|| fail("missing \"token\""))?
                    .into_owned(),
            ),
            request_id,
        }),
        "refresh" => Command::Refresh(Auth {
            token: Secret(
                inbound
                    .token
                    .ok_or_else(|| fail("missing \"token\""))?
                    .into_owned(),
            ),
            request_id,
        }),
        _ => return Err(fail("unknown \"type\"")),
    })
}

/// A `requestId` must be a string of at most 128 characters.
fn request_id(raw: &RawValue) -> Result<RequestId, &'static str> {
    match serde_json::from_str::<Cow<'_, str>>(raw.get()) {
        Ok(s) if s.chars().count() <= MAX_REQUEST_ID_CHARS => Ok(RequestId::from_json(raw.get())),
        Ok(_) => Err("\"requestId\" is longer than 128 characters"),
        Err(_) => Err("\"requestId\" must be a string"),
    }
}

/// A small writer for server frames: fields are appended in a fixed order.
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    pub(crate) fn new(kind: &str) -> Self {
        let mut w = Self(Vec::with_capacity(128));
        w.0.extend_from_slice(b"{\"type\":");
        w.string(kind);
        w
    }

    fn key(&mut self, key: &str) {
        self.0.push(b',');
        self.string(key);
        self.0.push(b':');
    }

    fn string(&mut self, s: &str) {
        // Writing to a Vec cannot fail.
        serde_json::to_writer(&mut self.0, s).expect("Vec write");
    }

    pub(crate) fn str_field(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.string(value);
        self
    }

    pub(crate) fn raw_field(mut self, key: &str, json: &[u8]) -> Self {
        self.key(key);
        self.0.extend_from_slice(json);
        self
    }

    pub(crate) fn num_field(self, key: &str, n: u64) -> Self {
        self.raw_field(key, n.to_string().as_bytes())
    }

    pub(crate) fn value_field(mut self, key: &str, value: &impl serde::Serialize) -> Self {
        self.key(key);
        serde_json::to_writer(&mut self.0, value).expect("Vec write");
        self
    }

    pub(crate) fn request_id(self, id: Option<&RequestId>) -> Self {
        match id {
            Some(id) => self.raw_field("requestId", id.as_json().as_bytes()),
            None => self,
        }
    }

    pub(crate) fn finish(mut self) -> Bytes {
        self.0.push(b'}');
        Bytes::from(self.0)
    }
}

pub(crate) fn welcome(w: &Welcome<'_>) -> Bytes {
    let out = Writer::new("welcome")
        .str_field("peerId", w.peer_id)
        .num_field("serverTime", w.server_time);
    let out = match w.expires_at {
        Some(exp) => out.num_field("expiresAt", exp),
        None => out.raw_field("expiresAt", b"null"),
    };
    let out = out.num_field("maxMessageSize", w.max_message_size as u64);
    let out = match w.ice_servers {
        Some(ice) => out.value_field("iceServers", ice),
        None => out.raw_field("iceServers", b"null"),
    };
    out.raw_field(
        "limits",
        format!(
            r#"{{"maxChannels":{},"messageRate":{},"messageBurst":{}}}"#,
            w.max_channels, w.message_rate, w.message_burst
        )
        .as_bytes(),
    )
    .finish()
}

pub(crate) fn ack(request_id: &RequestId) -> Bytes {
    Writer::new("ack").request_id(Some(request_id)).finish()
}

/// The `ack` of a `refresh`: the new token's expiry (`null`: none).
pub(crate) fn refreshed(request_id: &RequestId, expires_at: Option<u64>) -> Bytes {
    let out = Writer::new("ack").request_id(Some(request_id));
    match expires_at {
        Some(exp) => out.num_field("expiresAt", exp),
        None => out.raw_field("expiresAt", b"null"),
    }
    .finish()
}

/// `token_expiring`: the connection's token expires at `expiresAt` (unix seconds);
/// `refresh` before then (plus the server's leeway) or be closed 4002.
pub fn token_expiring(expires_at: u64) -> Bytes {
    Writer::new("token_expiring")
        .num_field("expiresAt", expires_at)
        .finish()
}

/// An `error` that ends a subscription the connection's new grants no longer
/// allow: like any error, plus the `channel` it names (and no `requestId`).
pub(crate) fn subscription_ended(channel: &str, code: &str, message: &str) -> Bytes {
    Writer::new("error")
        .str_field("code", code)
        .str_field("message", message)
        .str_field("channel", channel)
        .finish()
}

pub(crate) fn error(code: &str, message: &str, request_id: Option<&RequestId>) -> Bytes {
    Writer::new("error")
        .str_field("code", code)
        .str_field("message", message)
        .request_id(request_id)
        .finish()
}

/// A `message` or `presence` frame with `"tenant":<tenant>` spliced in after its
/// type, for a recipient outside the channel's tenant (it subscribed there by naming
/// it): the shared encoding is reused, only the small tenant part is added. Other
/// frames come back as they are.
pub(crate) fn with_tenant(frame: &Bytes, tenant: &str) -> Bytes {
    let head_len = [&br#"{"type":"message","#[..], br#"{"type":"presence","#]
        .into_iter()
        .find(|head| frame.starts_with(head))
        .map(<[u8]>::len);
    let Some(head_len) = head_len else {
        return frame.clone();
    };
    let mut out = Vec::with_capacity(frame.len() + tenant.len() + 12);
    out.extend_from_slice(&frame[..head_len]);
    out.extend_from_slice(br#""tenant":"#);
    serde_json::to_writer(&mut out, tenant).expect("Vec write");
    out.push(b',');
    out.extend_from_slice(&frame[head_len..]);
    Bytes::from(out)
}

/// `message`: `data` is spliced in as sent; `event` when the publisher (a
/// Broadcaster client) named one; `fromMetadata` only when asked for.
pub(crate) fn message(
    channel: &str,
    from: &str,
    data: &[u8],
    event: Option<&str>,
    from_metadata: Option<&Map<String, Value>>,
    offset: Option<u64>,
) -> Bytes {
    let out = Writer::new("message")
        .str_field("channel", channel)
        .str_field("from", from)
        .raw_field("data", data);
    let out = match event {
        Some(event) => out.str_field("event", event),
        None => out,
    };
    let out = match from_metadata {
        Some(m) => out.value_field("fromMetadata", m),
        None => out,
    };
    match offset {
        Some(offset) => out.num_field("offset", offset),
        None => out,
    }
    .finish()
}

/// The `ack` of a `subscribe` to a channel with a history (`offset`, `epoch`) or one
/// that asked to recover (`recovered`).
pub(crate) fn positioned_ack(
    request_id: &RequestId,
    position: Option<(u64, &str)>,
    recovered: Option<bool>,
) -> Bytes {
    let mut out = Writer::new("ack").request_id(Some(request_id));
    if let Some((offset, epoch)) = position {
        out = out.num_field("offset", offset).str_field("epoch", epoch);
    }
    if let Some(recovered) = recovered {
        out = out.raw_field("recovered", if recovered { b"true" } else { b"false" });
    }
    out.finish()
}

pub(crate) fn direct(from: &str, data: &[u8], from_metadata: Option<&Map<String, Value>>) -> Bytes {
    let out = Writer::new("direct")
        .str_field("from", from)
        .raw_field("data", data);
    match from_metadata {
        Some(m) if !m.is_empty() => out.value_field("fromMetadata", m),
        _ => out,
    }
    .finish()
}

/// `presence`: a snapshot or a delta.
pub(crate) fn presence(p: &PresenceView<'_>) -> Bytes {
    let mut out = Writer::new("presence").str_field("channel", p.channel);
    out.key("joined");
    out.0.push(b'[');
    for (i, e) in p.joined.iter().enumerate() {
        if i > 0 {
            out.0.push(b',');
        }
        out.0.extend_from_slice(b"{\"peerId\":");
        out.string(e.peer_id);
        out.0.extend_from_slice(b",\"metadata\":");
        match e.metadata {
            Some(m) => serde_json::to_writer(&mut out.0, m).expect("Vec write"),
            None => out.0.extend_from_slice(b"null"),
        }
        out.0.push(b'}');
    }
    out.0.push(b']');
    out.key("left");
    out.0.push(b'[');
    for (i, id) in p.left.iter().enumerate() {
        if i > 0 {
            out.0.push(b',');
        }
        out.0.extend_from_slice(b"{\"peerId\":");
        out.string(id);
        out.0.push(b'}');
    }
    out.0.push(b']');
    let mut out = out.num_field("count", p.count as u64);
    if p.snapshot {
        out = out.raw_field("snapshot", b"true");
    }
    if p.truncated {
        out = out.raw_field("truncated", b"true");
    }
    out.finish()
}

/// `going_away`: the server is shutting down; reconnect after the hint.
pub fn going_away(retry_after_ms: u64) -> Bytes {
    Writer::new("going_away")
        .num_field("retryAfterMs", retry_after_ms)
        .finish()
}

/// The JSON dialect's [`Codec`].
#[derive(Debug)]
pub(crate) struct Json;

impl Codec for Json {
    fn name(&self) -> &'static str {
        "json"
    }

    fn title(&self) -> &'static str {
        "the JSON"
    }

    fn abilities(&self) -> Abilities {
        Abilities {
            presence: true,
            direct: true,
            wildcards: true,
            strict_subscriptions: false,
            anonymous: true,
            auth_retry: false,
            binds_by_announce: false,
            needs_audience: false,
            subscription_ids: false,
            auth_refreshes: false,
            warns_expiry: true,
        }
    }

    fn decode(&self, frame: Bytes) -> Result<Command, DecodeError> {
        decode(frame)
    }

    fn error(&self, code: ErrorCode, message: &str, request_id: Option<&RequestId>) -> Bytes {
        error(code.as_str(), message, request_id)
    }

    /// Every success is a bare `ack`, except a `refresh`'s, which says the new
    /// expiry, and a subscribe's to a channel with a history (or that asked to
    /// recover), which says where the stream stands.
    fn answer(&self, request_id: &RequestId, answer: Answer<'_>) -> Option<Bytes> {
        Some(match answer {
            Answer::Refreshed { expires_at } => refreshed(request_id, expires_at),
            Answer::Positioned {
                position,
                recovered,
            } => positioned_ack(request_id, position, recovered),
            _ => ack(request_id),
        })
    }

    fn token_expiring(&self, expires_at: u64) -> Option<Bytes> {
        Some(token_expiring(expires_at))
    }

    fn subscription_ended(&self, channel: &str, code: ErrorCode, message: &str) -> Option<Bytes> {
        Some(subscription_ended(channel, code.as_str(), message))
    }

    fn welcome(&self, w: &Welcome<'_>) -> Option<Bytes> {
        Some(welcome(w))
    }

    fn message(&self, m: &Message<'_>, with_meta: bool) -> Option<Frame> {
        let data = m.payload.json();
        let meta = with_meta.then_some(m.meta);
        Some(message(m.channel, m.from.as_str(), &data, m.event, meta, m.offset).into())
    }

    fn direct(&self, d: &Direct<'_>) -> Option<Bytes> {
        Some(direct(d.from.as_str(), &d.payload.json(), Some(d.meta)))
    }

    fn presence(&self, p: &PresenceView<'_>) -> Option<Bytes> {
        Some(presence(p))
    }

    fn with_tenant(&self, frame: &Bytes, tenant: &str) -> Bytes {
        with_tenant(frame, tenant)
    }

    fn going_away(&self, retry_after_ms: u64) -> Option<Bytes> {
        Some(going_away(retry_after_ms))
    }
}
