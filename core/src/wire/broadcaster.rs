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
//! as a [`Push`] (a prefix and a suffix around `seq`), and each recipient's frame is
//! those two slices with its own number spliced between them. `payload` is the
//! publisher's bytes, never parsed or re-serialised.

use std::borrow::Cow;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::command::{Auth, Ping, Publish, RequestId, Subscribe, Unsubscribe};
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

/// What a successful request is answered with.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Answer<'a> {
    /// `auth`, `unsubscribe`: `{"success":true}`.
    Success,
    /// `subscribe`: `{"subscriptionId":..,"timestamp":..}`.
    Subscribed {
        /// `sub-…`, from the hub's seeded ids.
        subscription_id: &'a str,
        /// Unix milliseconds.
        unix_ms: u64,
    },
    /// `publish`: `{"id":..,"createTime":..}`.
    Published(&'a Stamp),
    /// `ping`: `{"timestamp":..}`.
    Pong {
        /// Unix milliseconds.
        unix_ms: u64,
    },
}

/// `{"requestId":<id>,"result":{..}}`.
pub(crate) fn result(request_id: &RequestId, answer: Answer<'_>) -> Bytes {
    let mut out = BytesMut::with_capacity(96);
    put_request_id(&mut out, Some(request_id));
    out.put_slice(b",\"result\":");
    match answer {
        Answer::Success => out.put_slice(b"{\"success\":true}"),
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

/// A published message's identity: its number (shown as `msg-<16 hex digits>`) and
/// the wall-clock time it was accepted. Every dialect's copy of one message and the
/// publisher's answer show the same stamp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// From the hub's seeded id generator.
    pub number: u64,
    /// Unix milliseconds when the hub accepted the message.
    pub unix_ms: u64,
}

impl Stamp {
    /// The message id as the wire shows it, e.g. `msg-1f3a…`.
    pub fn id(&self) -> String {
        format!("msg-{:016x}", self.number)
    }

    /// The creation time as RFC 3339 UTC with milliseconds.
    pub fn create_time(&self) -> String {
        format_timestamp(self.unix_ms)
    }

    fn put_id(&self, out: &mut BytesMut) {
        out.put_slice(self.id().as_bytes());
    }
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

    /// One recipient's frame: the shared slices with `seq` between them. Transports
    /// write a frame as one contiguous buffer (a WebSocket text message, a line), so
    /// this is one copy of the shared bytes; nothing is re-serialised. Only tests and the
    /// `testing` harness cut single frames (fan-out uses [`Push::write_seq`]).
    #[cfg(any(test, feature = "testing"))]
    pub(crate) fn with_seq(&self, seq: u64) -> Bytes {
        self.write_seq(&mut BytesMut::new(), seq)
    }

    /// [`Push::with_seq`], written into `arena`: consecutive frames share its
    /// allocation, which grows by [`ARENA_FRAMES`] frames at a time, so a fan-out
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

/// Writes `n` in decimal at the end of `buf` and returns those digits.
fn put_u64(buf: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        // A digit is below 10: the cast cannot truncate.
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds: `2023-11-14T22:13:20.000Z`.
/// The hub has no clock: the milliseconds come from the driver.
pub fn format_timestamp(unix_ms: u64) -> String {
    let mut out = BytesMut::with_capacity(24);
    put_timestamp(&mut out, unix_ms);
    String::from_utf8(out.to_vec()).expect("ASCII digits")
}

fn put_timestamp(out: &mut BytesMut, unix_ms: u64) {
    let (secs, millis) = (unix_ms / 1000, unix_ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    let two =
        |out: &mut BytesMut, n: u64| out.put_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
    let mut digits = [0u8; 20];
    let y = put_u64(&mut digits, year);
    for _ in y.len()..4 {
        out.put_u8(b'0');
    }
    out.put_slice(y);
    out.put_u8(b'-');
    two(out, month);
    out.put_u8(b'-');
    two(out, day);
    out.put_u8(b'T');
    two(out, rem / 3600);
    out.put_u8(b':');
    two(out, rem / 60 % 60);
    out.put_u8(b':');
    two(out, rem % 60);
    out.put_u8(b'.');
    out.put_u8(b'0' + (millis / 100) as u8);
    two(out, millis % 100);
    out.put_u8(b'Z');
}

/// The proleptic Gregorian date of a day count since 1970-01-01, by 400-year eras
/// (146,097 days each) counted from 0000-03-01, so the leap day ends each era's year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468; // days from 0000-03-01 to 1970-01-01
    let era = z / 146_097;
    let doe = z % 146_097; // day of era, 0..=146_096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month, March = 0
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc_with_millis() {
        assert_eq!(format_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_timestamp(1_700_000_000_000),
            "2023-11-14T22:13:20.000Z"
        );
        assert_eq!(
            format_timestamp(951_782_400_007),
            "2000-02-29T00:00:00.007Z"
        );
        assert_eq!(
            format_timestamp(951_868_799_999),
            "2000-02-29T23:59:59.999Z"
        );
        assert_eq!(
            format_timestamp(4_107_542_400_000),
            "2100-03-01T00:00:00.000Z"
        );
        assert_eq!(
            format_timestamp(253_402_300_799_123),
            "9999-12-31T23:59:59.123Z"
        );
        assert_eq!(
            format_timestamp(1_672_531_199_500),
            "2022-12-31T23:59:59.500Z"
        );
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        // Walks 1970..2400 day by day: month lengths and leap years (2000 yes, 2100
        // no) must come out of the era arithmetic.
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..(430 * 366) {
            let (y, m, d) = civil_from_days(days);
            let (py, pm, pd) = prev;
            let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
            let len = match pm {
                2 if leap => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if pd < len {
                (py, pm, pd + 1)
            } else if pm < 12 {
                (py, pm + 1, 1)
            } else {
                (py + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "day {days}");
            prev = (y, m, d);
        }
    }

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
