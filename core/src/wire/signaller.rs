//! The rtc-signaller dialect: pipe-delimited text frames, as rtc.io clients speak them.
//!
//! Frames are `/command|part|part…`. Part 2 is the sender metadata: the bare peer id
//! (what the v6 client sends) or `{"id":".."}` (what the older protocol doc shows).
//! `/to|<target>|<wrapped frame>` carries its sender inside the wrapped frame. Frames
//! the server makes itself (`/roominfo`, `/leave`, `/error`, `/announce` and `/message`
//! on behalf of JSON peers) use the bare-id form the v6 client parses.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::{Map, Value};

use super::codec::{Abilities, Answer, Arrival, Codec, Direct, Frame, Message, Original};
use super::command::RequestId;
use super::{Command, DecodeError, Dialect, Secret};
use crate::codes::ErrorCode;
use crate::ids::PeerId;

/// `/announce|<sender>|{"id":..,"room":..,...}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Announce {
    /// Part 2, if it named an id.
    pub sender: Option<String>,
    /// The payload's `id`: the peer id being announced.
    pub id: String,
    /// The payload's `room`.
    pub room: String,
    /// The payload without `token`: the peer's presence metadata.
    pub metadata: Map<String, Value>,
    /// The payload's `token`, if any: in-band credentials for this dialect.
    pub token: Option<Secret>,
    /// The frame to forward: the bytes the peer sent, or a copy without `token`.
    pub frame: Bytes,
}

/// `/leave|<sender>|...`.
#[derive(Clone, Debug, PartialEq)]
pub struct Leave {
    /// Part 2, if it named an id.
    pub sender: Option<String>,
    /// The frame as sent, forwarded unchanged.
    pub frame: Bytes,
}

/// `/to|<target>|/<command>|<sender>|...`.
#[derive(Clone, Debug, PartialEq)]
pub struct To {
    /// The peer the frame is for.
    pub target: String,
    /// The wrapped frame's command, lowercased, without the slash.
    pub name: String,
    /// The wrapped frame's sender (part 4 of the whole frame).
    pub sender: Option<String>,
    /// The frame to forward (with `token` stripped from a wrapped announce).
    pub frame: Bytes,
    /// Byte offset in `frame` where the wrapped frame's arguments start.
    pub(crate) args_at: usize,
}

/// Any other `/command|<sender>|...`, passed through to the room.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    /// The command, lowercased, without the slash.
    pub name: String,
    /// Part 2, if it named an id.
    pub sender: Option<String>,
    /// The frame as sent, forwarded unchanged.
    pub frame: Bytes,
    /// Byte offset in `frame` where the arguments after the sender start.
    pub(crate) args_at: usize,
}

impl To {
    /// The wrapped frame's arguments, as JSON (see [`args_json`]).
    pub fn args(&self) -> Value {
        args_json(&self.frame[self.args_at..])
    }
}

impl Signal {
    /// The arguments after the sender, as JSON (see [`args_json`]).
    pub fn args(&self) -> Value {
        args_json(&self.frame[self.args_at..])
    }
}

/// Decodes one frame.
pub(crate) fn decode(frame: Bytes) -> Result<Command, DecodeError> {
    let text = std::str::from_utf8(&frame).map_err(|_| DecodeError::NotText)?;
    let text = text.trim_end_matches(['\r', '\n']);
    if text.contains(['\r', '\n']) {
        // One frame is one line on line transports: a line break inside would let a
        // sender forge a second frame for line clients.
        return Err(DecodeError::malformed(
            "line breaks inside an rtc-signaller frame",
        ));
    }
    if !text.starts_with('/') {
        return Err(DecodeError::malformed(
            "rtc-signaller frames start with '/<command>'",
        ));
    }
    let (name, rest) = split_command(text)?;
    match name.as_str() {
        "announce" => decode_announce(text, rest, &frame),
        "leave" => {
            let sender = rest.and_then(|r| sender_id(r.split('|').next().unwrap_or("")));
            Ok(Command::Leave(Leave {
                sender,
                frame: frame.slice(..text.len()),
            }))
        }
        "to" => decode_to(text, rest, &frame),
        _ => {
            let (sender, args_at) = sender_and_args(text, rest);
            Ok(Command::Signal(Signal {
                name,
                sender,
                frame: frame.slice(..text.len()),
                args_at,
            }))
        }
    }
}

/// Splits `/name|rest` into the lowercased name and the text after the first `|`.
fn split_command(text: &str) -> Result<(String, Option<&str>), DecodeError> {
    let (head, rest) = match text.split_once('|') {
        Some((h, r)) => (h, Some(r)),
        None => (text, None),
    };
    let name = &head[1..];
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(DecodeError::malformed("bad command name"));
    }
    Ok((name.to_ascii_lowercase(), rest))
}

/// The sender id in a part-2 string: bare id, or JSON with an `id` string.
fn sender_id(part: &str) -> Option<String> {
    if part.starts_with('{') {
        let v: Value = serde_json::from_str(part).ok()?;
        return v.get("id")?.as_str().map(str::to_owned);
    }
    if part.is_empty() {
        None
    } else {
        Some(part.to_owned())
    }
}

/// Sender of `rest` (`<sender>|args…`) and the offset in `text` where args start.
fn sender_and_args(text: &str, rest: Option<&str>) -> (Option<String>, usize) {
    let Some(rest) = rest else {
        return (None, text.len());
    };
    let rest_at = text.len() - rest.len();
    match rest.split_once('|') {
        Some((sender, _)) => (sender_id(sender), rest_at + sender.len() + 1),
        None => (sender_id(rest), text.len()),
    }
}

fn decode_announce(text: &str, rest: Option<&str>, frame: &Bytes) -> Result<Command, DecodeError> {
    let rest = rest.ok_or(DecodeError::malformed("announce needs sender and payload"))?;
    let (sender, payload) = rest
        .split_once('|')
        .ok_or(DecodeError::malformed("announce needs sender and payload"))?;
    let (id, room, metadata, token) = parse_announce_payload(payload)?;
    let frame = match token {
        None => frame.slice(..text.len()),
        Some(_) => {
            let mut out = BytesMut::with_capacity(text.len());
            out.put_slice(b"/announce|");
            out.put_slice(sender.as_bytes());
            out.put_u8(b'|');
            put_json_escaped(&mut out, &Value::Object(metadata.clone()));
            out.freeze()
        }
    };
    Ok(Command::Announce(Announce {
        sender: sender_id(sender),
        id,
        room,
        metadata,
        token,
        frame,
    }))
}

/// An announce payload, parsed: id, room, the rest (metadata) and the token.
type AnnouncePayload = (String, String, Map<String, Value>, Option<Secret>);

/// Parses an announce payload. The token, if any, is taken out of the metadata.
fn parse_announce_payload(payload: &str) -> Result<AnnouncePayload, DecodeError> {
    let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(payload) else {
        return Err(DecodeError::malformed(
            "announce payload must be a JSON object",
        ));
    };
    let stripped = match data.remove("token") {
        Some(Value::String(t)) => Some(Secret(t)),
        Some(other) => Some(Secret(other.to_string())),
        None => None,
    };
    let id = match data.get("id") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(DecodeError::malformed(
                "announce payload needs a string \"id\"",
            ));
        }
    };
    let room = match data.get("room") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(DecodeError::malformed(
                "announce payload needs a string \"room\"",
            ));
        }
    };
    Ok((id, room, data, stripped))
}

fn decode_to(text: &str, rest: Option<&str>, frame: &Bytes) -> Result<Command, DecodeError> {
    let rest = rest.ok_or(DecodeError::malformed("/to needs a target and a message"))?;
    let (target, inner) = rest
        .split_once('|')
        .ok_or(DecodeError::malformed("/to needs a target and a message"))?;
    if target.is_empty() {
        return Err(DecodeError::malformed("/to needs a target"));
    }
    if !inner.starts_with('/') {
        return Err(DecodeError::malformed("/to must wrap a '/command' message"));
    }
    let inner_at = text.len() - inner.len();
    let (name, inner_rest) = split_command(inner)?;
    let (sender, args_in_inner) = sender_and_args(inner, inner_rest);
    let mut frame = frame.slice(..text.len());
    let mut args_at = inner_at + args_in_inner;
    if name == "announce" {
        // The v6 client's autoreply repeats its announce attributes to each newcomer:
        // a token in them must not travel either.
        if let Some((inner_sender, payload)) = inner_rest.and_then(|r| r.split_once('|'))
            && let Ok(Value::Object(mut data)) = serde_json::from_str::<Value>(payload)
            && data.remove("token").is_some()
        {
            let mut out = BytesMut::with_capacity(text.len());
            out.put_slice(b"/to|");
            out.put_slice(target.as_bytes());
            out.put_slice(b"|/announce|");
            out.put_slice(inner_sender.as_bytes());
            out.put_u8(b'|');
            args_at = out.len();
            put_json_escaped(&mut out, &Value::Object(data));
            frame = out.freeze();
        }
    }
    Ok(Command::To(To {
        target: target.to_owned(),
        name,
        sender,
        frame,
        args_at,
    }))
}

/// Pipe-separated arguments as a JSON array: each part parsed as JSON where it is
/// JSON, kept as a string where it is not. This is how rtc-signaller commands look to
/// JSON peers (`{"command":..,"args":[..]}`).
pub fn args_json(args: &[u8]) -> Value {
    let text = String::from_utf8_lossy(args);
    if text.is_empty() {
        return Value::Array(Vec::new());
    }
    Value::Array(
        text.split('|')
            .map(|part| {
                serde_json::from_str::<Value>(part).unwrap_or_else(|_| Value::String(part.into()))
            })
            .collect(),
    )
}

/// Writes JSON with every `|` as `\u007c`, so the value stays one pipe part. A `|` can
/// only occur inside JSON strings, where the escape means the same character.
pub(crate) fn put_json_escaped(out: &mut BytesMut, value: &Value) {
    // Writing to a Vec cannot fail, and a `Value` always serialises.
    let json = serde_json::to_vec(value).expect("Value serialises");
    put_escaped_bytes(out, &json);
}

/// Copies already-serialised JSON with every `|` escaped.
pub(crate) fn put_escaped_bytes(out: &mut BytesMut, json: &[u8]) {
    for chunk in json.split_inclusive(|&b| b == b'|') {
        match chunk.split_last() {
            Some((b'|', head)) => {
                out.put_slice(head);
                out.put_slice(b"\\u007c");
            }
            _ => out.put_slice(chunk),
        }
    }
}

/// `/roominfo|{"memberCount":N}`, the announcer's reply.
pub(crate) fn roominfo(member_count: usize) -> Bytes {
    Bytes::from(format!("/roominfo|{{\"memberCount\":{member_count}}}"))
}

/// `/leave|<id>|{"id":"<id>"}`, the server-made (synthetic) leave.
pub(crate) fn leave(id: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + 2 * id.len());
    out.put_slice(b"/leave|");
    out.put_slice(id.as_bytes());
    out.put_slice(b"|");
    put_json_escaped(&mut out, &serde_json::json!({ "id": id }));
    out.freeze()
}

/// `/error|{"code":"..","message":"..","retryAfterMs":N}`: the shutdown notice.
pub(crate) fn error_with_retry(code: &str, message: &str, retry_after_ms: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(64 + message.len());
    out.put_slice(b"/error|");
    put_json_escaped(
        &mut out,
        &serde_json::json!({ "code": code, "message": message, "retryAfterMs": retry_after_ms }),
    );
    out.freeze()
}

/// `/error|{"code":"..","message":".."}`, Switchyard's addition to the dialect.
pub(crate) fn error(code: &str, message: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + message.len());
    out.put_slice(b"/error|");
    put_json_escaped(
        &mut out,
        &serde_json::json!({ "code": code, "message": message }),
    );
    out.freeze()
}

/// `/message|<from>|<data>`, or `/to|<target>|/message|<from>|<data>` for a direct
/// message: how JSON traffic looks to rtc-signaller peers. A Broadcaster event name
/// follows as one more argument, a JSON string.
fn message(target: Option<&PeerId>, from: &PeerId, data: &[u8], event: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(16 + data.len());
    if let Some(target) = target {
        out.extend_from_slice(b"/to|");
        out.extend_from_slice(target.as_str().as_bytes());
        out.extend_from_slice(b"|");
    }
    out.extend_from_slice(b"/message|");
    out.extend_from_slice(from.as_str().as_bytes());
    out.extend_from_slice(b"|");
    put_escaped_bytes(&mut out, data);
    if let Some(event) = event {
        out.extend_from_slice(b"|");
        let event = serde_json::to_vec(event).expect("strings serialise");
        put_escaped_bytes(&mut out, &event);
    }
    out.freeze()
}

/// `/announce|<id>|{"id":..,"room":..,...metadata}`: how a peer of another dialect
/// appears to rtc-signaller peers.
fn server_announce(peer: &PeerId, room: &str, metadata: &Map<String, Value>) -> Bytes {
    let mut payload = metadata.clone();
    payload.insert("id".into(), Value::String(peer.as_str().into()));
    payload.insert("room".into(), Value::String(room.into()));
    let mut out = BytesMut::with_capacity(64);
    out.extend_from_slice(b"/announce|");
    out.extend_from_slice(peer.as_str().as_bytes());
    out.extend_from_slice(b"|");
    put_json_escaped(&mut out, &Value::Object(payload));
    out.freeze()
}

/// The sender's own frame, when the sender speaks rtc-signaller.
fn own(original: Option<&Original<'_>>) -> Option<Bytes> {
    original
        .filter(|o| o.dialect == Dialect::Signaller)
        .map(|o| o.frame.clone())
}

/// The rtc-signaller dialect's [`Codec`].
#[derive(Debug)]
pub(crate) struct Signaller;

impl Codec for Signaller {
    fn name(&self) -> &'static str {
        "rtc-signaller"
    }

    fn title(&self) -> &'static str {
        "the rtc-signaller"
    }

    fn abilities(&self) -> Abilities {
        Abilities {
            presence: false,
            direct: true,
            wildcards: false,
            strict_subscriptions: false,
            anonymous: true,
            auth_retry: false,
            binds_by_announce: true,
            needs_audience: false,
            subscription_ids: false,
            auth_refreshes: false,
            warns_expiry: false,
        }
    }

    fn decode(&self, frame: Bytes) -> Result<Command, DecodeError> {
        decode(frame)
    }

    fn error(&self, code: ErrorCode, message: &str, _request_id: Option<&RequestId>) -> Bytes {
        error(code.as_str(), message)
    }

    /// rtc-signaller has no answers.
    fn answer(&self, _request_id: &RequestId, _answer: Answer<'_>) -> Option<Bytes> {
        None
    }

    fn message(&self, m: &Message<'_>, _with_meta: bool) -> Option<Frame> {
        let frame = own(m.original.as_ref())
            .unwrap_or_else(|| message(None, m.from, &m.payload.json(), m.event));
        Some(frame.into())
    }

    fn direct(&self, d: &Direct<'_>) -> Option<Bytes> {
        Some(
            own(d.original.as_ref())
                .unwrap_or_else(|| message(Some(d.to), d.from, &d.payload.json(), None)),
        )
    }

    fn arrived(&self, a: &Arrival<'_>) -> Option<Bytes> {
        Some(
            own(a.original.as_ref()).unwrap_or_else(|| server_announce(a.peer, a.room, a.metadata)),
        )
    }

    fn departed(&self, peer: &PeerId, own_leave: Option<&Original<'_>>) -> Option<Bytes> {
        Some(own(own_leave).unwrap_or_else(|| leave(peer.as_str())))
    }

    /// `/to|<to>|/announce|<id>|{"id":..,"room":..,...metadata}`: a direct message,
    /// so the v6 client registers the peer without sending an autoreply.
    fn introduction(&self, to: &PeerId, a: &Arrival<'_>) -> Option<Bytes> {
        let announce = server_announce(a.peer, a.room, a.metadata);
        let mut out = BytesMut::with_capacity(8 + to.as_str().len() + announce.len());
        out.extend_from_slice(b"/to|");
        out.extend_from_slice(to.as_str().as_bytes());
        out.extend_from_slice(b"|");
        out.extend_from_slice(&announce);
        Some(out.freeze())
    }

    fn room_info(&self, peer_count: usize) -> Option<Bytes> {
        Some(roominfo(peer_count))
    }

    fn going_away(&self, retry_after_ms: u64) -> Option<Bytes> {
        Some(error_with_retry(
            "going_away",
            "server shutting down",
            retry_after_ms,
        ))
    }
}
