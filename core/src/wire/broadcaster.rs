//! The Broadcaster dialect: JSON-RPC-style requests over one connection.
//!
//! Client → server: `{"id":<number|string>,"method":"..","params":{..}}` with the
//! methods `auth`, `subscribe`, `unsubscribe`, `publish` and `ping`. Every request is
//! answered with `{"requestId":<id>,"result":{..}}` or
//! `{"requestId":<id>,"error":{"code":"..","message":".."}}`, the id echoed as the
//! exact JSON literal the client sent (`requestId` is `null` when the frame was too
//! broken to read one).
//!
//! Server push: `{"method":"message","params":{"id","seq","createTime","channel",
//! "event","payload"}}`. `seq` counts the messages of one subscription (1, 2, 3…),
//! so it differs per recipient: the rest of the frame is serialised once per message
//! as a `Push` (a prefix and a suffix around `seq`), and each recipient's frame is
//! those two slices with its own number spliced between them. `payload` is the
//! publisher's bytes, never parsed or re-serialised.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::codec::{Abilities, Answer, Codec, Direct, Frame, Message};
use super::command::{Auth, Ping, Publish, RequestId, Subscribe, Unsubscribe};
pub use super::stamp::format_timestamp;
use super::stamp::{Stamp, put_timestamp, put_u64};
use super::{Command, DecodeError, Secret};
use crate::codes::ErrorCode;

/// Longest string request id, in characters (a number id is at most this many bytes).
pub const MAX_REQUEST_ID_CHARS: usize = 128;

#[derive(Deserialize)]
struct Inbound<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

/// Every field any method takes. Each one is read as raw JSON first so a wrong type
/// gets its own message instead of a generic one.
#[derive(Deserialize, Default)]
struct Params<'a> {
    #[serde(borrow)]
    token: Option<&'a RawValue>,
    #[serde(borrow)]
    channel: Option<&'a RawValue>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

/// Only the id, for answering frames that fail to decode otherwise.
#[derive(Deserialize)]
struct JustId<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
}

/// Decodes one frame.
pub(crate) fn decode(frame: Bytes) -> Result<Command, DecodeError> {
    let text = std::str::from_utf8(&frame).map_err(|_| DecodeError::NotText)?;
    let Ok(inbound) = serde_json::from_str::<Inbound<'_>>(text) else {
        let request_id = serde_json::from_str::<JustId<'_>>(text)
            .ok()
            .and_then(|r| r.id)
            .and_then(|r| request_id(r).ok());
        return Err(DecodeError::Malformed {
            reason: "frame is not a JSON object of the expected shape",
            request_id,
        });
    };
    let request_id = match inbound.id.map(request_id) {
        Some(Ok(id)) => id,
        Some(Err(reason)) => return Err(DecodeError::malformed(reason)),
        None => return Err(DecodeError::malformed("missing \"id\"")),
    };
    let fail = |reason: &'static str| DecodeError::Malformed {
        reason,
        request_id: Some(request_id.clone()),
    };
    let method = match inbound.method.map(as_str) {
        Some(Some(m)) => m,
        Some(None) => return Err(fail("\"method\" must be a string")),
        None => return Err(fail("missing \"method\"")),
    };
    let params: Params<'_> = match inbound.params {
        None => Params::default(),
        Some(raw) if raw.get() == "null" => Params::default(),
        Some(raw) => serde_json::from_str(raw.get())
            .map_err(|_| fail("\"params\" must be an object without repeated keys"))?,
    };
    let string = |v: Option<&RawValue>, missing: &'static str, wrong: &'static str| match v {
        None => Err(fail(missing)),
        Some(v) => as_str(v).map(Cow::into_owned).ok_or_else(|| fail(wrong)),
    };
    let channel = || {
        string(
            params.channel,
            "missing \"params.channel\"",
            "\"params.channel\" must be a string",
        )
    };
    Ok(match &*method {
        "auth" => Command::Auth(Auth {
            token: Secret(string(
                params.token,
                "missing \"params.token\"",
                "\"params.token\" must be a string",
            )?),
            request_id: Some(request_id),
        }),
        "subscribe" => Command::Subscribe(Subscribe {
            channel: channel()?,
            request_id: Some(request_id),
            include_sender_metadata: false,
            // The Broadcaster has no tenants: its requests act in the connection's own.
            tenant: None,
            // Its `seq` counts per subscription, so it cannot name a point in the
            // channel's stream (docs/protocol.md, "History and recovery").
            recover: None,
        }),
        "unsubscribe" => Command::Unsubscribe(Unsubscribe {
            channel: channel()?,
            request_id: Some(request_id),
            tenant: None,
        }),
        "publish" => {
            let channel = channel()?;
            let event = match params.event {
                None => None,
                Some(v) if v.get() == "null" => None,
                Some(v) => Some(
                    as_str(v)
                        .ok_or_else(|| fail("\"params.event\" must be a string"))?
                        .into_owned(),
                ),
            };
            let data = match params.payload {
                Some(v) => frame.slice_ref(v.get().as_bytes()),
                None => Bytes::from_static(b"null"),
            };
            Command::Publish(Publish {
                channel,
                data,
                request_id: Some(request_id),
                tenant: None,
                event,
            })
        }
        "ping" => Command::Ping(Ping {
            request_id: Some(request_id),
        }),
        _ => return Err(fail("unknown \"method\"")),
    })
}

/// A JSON string literal's value, or `None` for any other JSON value.
fn as_str(raw: &RawValue) -> Option<Cow<'_, str>> {
    serde_json::from_str::<Cow<'_, str>>(raw.get()).ok()
}

/// A request id is a string of at most 128 characters or a JSON number; either is
/// kept as its literal so the answer echoes it byte for byte.
fn request_id(raw: &RawValue) -> Result<RequestId, &'static str> {
    let literal = raw.get();
    if literal.starts_with('"') {
        return match as_str(raw) {
            Some(s) if s.chars().count() <= MAX_REQUEST_ID_CHARS => {
                Ok(RequestId::from_json(literal))
            }
            _ => Err("\"id\" is longer than 128 characters"),
        };
    }
    let is_number = serde_json::from_str::<serde_json::Number>(literal).is_ok();
    if is_number && literal.len() <= MAX_REQUEST_ID_CHARS {
        Ok(RequestId::from_json(literal))
    } else {
        Err("\"id\" must be a number or a string")
    }
}

/// The Broadcaster error code for one of the hub's codes (the table is in
/// `docs/protocol.md`, "The Broadcaster").
pub fn error_code(code: ErrorCode) -> &'static str {
    match code {
        ErrorCode::InvalidMessage
        | ErrorCode::InvalidChannel
        | ErrorCode::InvalidPeerId
        | ErrorCode::InvalidRequestId => "InvalidArgument",
        ErrorCode::PeerNotFound | ErrorCode::NotSubscribed => "NotFound",
        ErrorCode::AlreadySubscribed | ErrorCode::Replaced => "AlreadyExists",
        ErrorCode::NotInRoom
        | ErrorCode::AlreadyAuthenticated
        | ErrorCode::ChannelLimitExceeded
        | ErrorCode::OverMessageQuota
        | ErrorCode::OverMessageRate => "FailedPrecondition",
        ErrorCode::ChannelNotAuthorized
        | ErrorCode::ChannelReserved
        | ErrorCode::ActionNotPermitted
        | ErrorCode::TenantNotAuthorized
        | ErrorCode::SenderMismatch => "PermissionDenied",
        ErrorCode::Unauthenticated | ErrorCode::InvalidToken | ErrorCode::TokenExpired => {
            "Unauthenticated"
        }
        ErrorCode::Unavailable => "Unavailable",
    }
}

fn put_request_id(out: &mut BytesMut, request_id: Option<&RequestId>) {
    out.put_slice(b"{\"requestId\":");
    out.put_slice(request_id.map_or("null", RequestId::as_json).as_bytes());
}

fn put_string(out: &mut BytesMut, s: &str) {
    // Writing to a BytesMut cannot fail.
    serde_json::to_writer((&mut *out).writer(), s).expect("BytesMut write");
}

/// `{"requestId":<id>,"error":{"code":..,"message":..}}`.
pub(crate) fn error(code: ErrorCode, message: &str, request_id: Option<&RequestId>) -> Bytes {
    let mut out = BytesMut::with_capacity(96 + message.len());
    put_request_id(&mut out, request_id);
    out.put_slice(b",\"error\":{\"code\":\"");
    out.put_slice(error_code(code).as_bytes());
    out.put_slice(b"\",\"message\":");
    put_string(&mut out, message);
    out.put_slice(b"}}");
    out.freeze()
}

/// `{"requestId":<id>,"result":{..}}`.
pub(crate) fn result(request_id: &RequestId, answer: Answer<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(96);
    put_request_id(&mut out, Some(request_id));
    out.put_slice(b",\"result\":");
    match answer {
        // The Broadcaster's `auth` answer has no room for an expiry: a refresh is
        // answered as an `auth` is. It has no recovery: a subscribe's position is
        // not news to it.
        Answer::Success | Answer::Refreshed { .. } | Answer::Positioned { .. } => {
            out.put_slice(b"{\"success\":true}");
        }
        Answer::Subscribed {
            subscription_id,
            unix_ms,
        } => {
            out.put_slice(b"{\"subscriptionId\":");
            put_string(&mut out, subscription_id);
            out.put_slice(b",\"timestamp\":\"");
            put_timestamp(&mut out, unix_ms);
            out.put_slice(b"\"}");
        }
        Answer::Published(stamp) => {
            out.put_slice(b"{\"id\":\"");
            stamp.put_id(&mut out);
            out.put_slice(b"\",\"createTime\":\"");
            put_timestamp(&mut out, stamp.unix_ms);
            out.put_slice(b"\"}");
        }
        Answer::Pong { unix_ms } => {
            out.put_slice(b"{\"timestamp\":\"");
            put_timestamp(&mut out, unix_ms);
            out.put_slice(b"\"}");
        }
    }
    out.put_slice(b"}");
    out.freeze()
}

/// A server push with its per-subscription `seq` left out: everything before the
/// number and everything after it, serialised once per message and shared by every
/// Broadcaster recipient.
#[derive(Clone, Debug)]
pub(crate) struct Push {
    prefix: Bytes,
    suffix: Bytes,
}

impl Push {
    /// Serialises the shared part of `{"method":"message","params":{..}}`.
    pub(crate) fn new(stamp: &Stamp, channel: &str, event: &str, payload: &[u8]) -> Self {
        let mut out = BytesMut::with_capacity(160 + channel.len() + payload.len());
        out.put_slice(b"{\"method\":\"message\",\"params\":{\"id\":\"");
        stamp.put_id(&mut out);
        out.put_slice(b"\",\"seq\":");
        let prefix = out.split().freeze();
        out.put_slice(b",\"createTime\":\"");
        put_timestamp(&mut out, stamp.unix_ms);
        out.put_slice(b"\",\"channel\":");
        put_string(&mut out, channel);
        out.put_slice(b",\"event\":");
        put_string(&mut out, event);
        out.put_slice(b",\"payload\":");
        out.put_slice(payload);
        out.put_slice(b"}}");
        Self {
            prefix,
            suffix: out.freeze(),
        }
    }

    /// One recipient's frame on its own allocation (for tests and fuzz targets; the
    /// hub uses [`Push::write_seq`]).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn with_seq(&self, seq: u64) -> Bytes {
        self.write_seq(&mut BytesMut::new(), seq)
    }

    /// One recipient's frame: the shared slices with `seq` between them, written into
    /// `arena`. Transports write a frame as one contiguous buffer (a WebSocket text
    /// message, a line), so this is one copy of the shared bytes; nothing is
    /// re-serialised. Consecutive frames share the arena's allocation, which grows by [`ARENA_FRAMES`] frames at a time, so a fan-out
    /// allocates once per that many recipients instead of once per recipient.
    pub(crate) fn write_seq(&self, arena: &mut BytesMut, seq: u64) -> Bytes {
        let mut digits = [0u8; 20];
        let digits = put_u64(&mut digits, seq);
        let len = self.prefix.len() + digits.len() + self.suffix.len();
        if arena.capacity() < len {
            arena.reserve(len * ARENA_FRAMES);
        }
        arena.put_slice(&self.prefix);
        arena.put_slice(digits);
        arena.put_slice(&self.suffix);
        arena.split().freeze()
    }
}

/// How many push frames one arena allocation holds. Every frame cut from it keeps
/// the whole allocation alive until the last of them is written, so it stays small.
const ARENA_FRAMES: usize = 32;

/// The Broadcaster's [`Codec`].
#[derive(Debug)]
pub(crate) struct Broadcaster;

impl Codec for Broadcaster {
    fn name(&self) -> &'static str {
        "broadcaster"
    }

    fn title(&self) -> &'static str {
        "The Broadcaster"
    }

    fn abilities(&self) -> Abilities {
        Abilities {
            presence: false,
            direct: false,
            wildcards: false,
            strict_subscriptions: true,
            anonymous: false,
            auth_retry: true,
            binds_by_announce: false,
            needs_audience: true,
            subscription_ids: true,
            auth_refreshes: true,
            warns_expiry: false,
        }
    }

    fn decode(&self, frame: Bytes) -> Result<Command, DecodeError> {
        decode(frame)
    }

    fn error(&self, code: ErrorCode, message: &str, request_id: Option<&RequestId>) -> Bytes {
        error(code, message, request_id)
    }

    fn answer(&self, request_id: &RequestId, answer: Answer<'_>) -> Option<Bytes> {
        Some(result(request_id, answer))
    }

    /// A push whose `payload` is what JSON peers get as `data`, with event
    /// `message` unless the publisher named one.
    fn message(&self, m: &Message<'_>, _with_meta: bool) -> Option<Frame> {
        let payload = m.payload.json();
        let event = m.event.unwrap_or("message");
        Some(Frame::Sequenced(Push::new(
            &m.stamp, m.channel, event, &payload,
        )))
    }

    /// The Broadcaster has no direct messages.
    fn direct(&self, _direct: &Direct<'_>) -> Option<Bytes> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_spliced_between_the_shared_slices() {
        let stamp = Stamp {
            number: 0xab,
            unix_ms: 1_700_000_000_123,
        };
        let push = Push::new(&stamp, "c\"1", "ev", br#"{"k":[1,2]}"#);
        for (seq, digits) in [(1, "1"), (10, "10"), (u64::MAX, "18446744073709551615")] {
            assert_eq!(
                push.with_seq(seq),
                format!(
                    r#"{{"method":"message","params":{{"id":"msg-00000000000000ab","seq":{digits},"createTime":"2023-11-14T22:13:20.123Z","channel":"c\"1","event":"ev","payload":{{"k":[1,2]}}}}}}"#
                )
            );
        }
    }

    #[test]
    fn frames_cut_from_one_arena_stay_whole() {
        let stamp = Stamp {
            number: 1,
            unix_ms: 0,
        };
        let push = Push::new(&stamp, "c", "e", b"[1]");
        let mut arena = BytesMut::new();
        let frames: Vec<Bytes> = (1..=100)
            .map(|seq| push.write_seq(&mut arena, seq))
            .collect();
        for (seq, frame) in (1..=100).zip(&frames) {
            assert_eq!(frame, &push.with_seq(seq));
        }
    }

    #[test]
    fn request_ids_keep_their_literal() {
        let id = |s: &str| request_id(serde_json::from_str::<&RawValue>(s).unwrap());
        assert_eq!(id("123").unwrap().as_json(), "123");
        assert_eq!(id("-1.5e3").unwrap().as_json(), "-1.5e3");
        assert_eq!(id(r#""a\"b""#).unwrap().as_json(), r#""a\"b""#);
        assert!(id("null").is_err());
        assert!(id("true").is_err());
        assert!(id("{}").is_err());
        assert!(id(&format!("\"{}\"", "x".repeat(129))).is_err());
    }
}
