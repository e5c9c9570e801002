//! What a connection received, parsed back from the bytes the hub emitted, so the
//! model can compare meaning (who, which channel, which peer) instead of bytes
//! where the bytes are the hub's own choice.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::wire::Dialect;

/// One frame as its recipient understands it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Seen {
    /// rtc-signaller `/roominfo|{"memberCount":N}`.
    RoomInfo(u64),
    /// An error frame of either dialect, with its code.
    Error(String),
    /// rtc-signaller `/leave|<peer>|…`.
    Leave,
    /// rtc-signaller `/announce|<peer>|{…"room":..}`.
    Announce { peer: String, room: Option<String> },
    /// rtc-signaller `/to|<me>|/announce|<peer>|{…"room":..}`: a member introduced to a
    /// newcomer (or a client's autoreply, which the model matches by its bytes).
    Introduction { peer: String, room: Option<String> },
    /// Any other rtc-signaller frame: pass-through, `/to`, `/message`.
    Signal,
    /// JSON `welcome`.
    Welcome(String),
    /// JSON `ack`, with the request id literal.
    Ack(String),
    /// JSON `ack` of a subscribe that says where a channel's stream stands
    /// (`offset`, `epoch`) or whether it recovered (`recovered`).
    Positioned {
        rid: String,
        position: Option<(u64, String)>,
        recovered: Option<bool>,
    },
    /// JSON `token_expiring`.
    TokenExpiring,
    /// JSON `error` naming a `channel`: a subscription the refreshed grants ended.
    Ended(String),
    /// JSON `message`.
    Message {
        channel: String,
        from: String,
        data: Bytes,
        with_meta: bool,
        /// Its place in the channel's history, where the channel keeps one.
        offset: Option<u64>,
    },
    /// JSON `direct`.
    Direct { from: String, data: Bytes },
    /// JSON `presence`.
    Presence(Presence),
    /// Broadcaster push (`{"method":"message","params":{..}}`).
    Push {
        channel: String,
        event: String,
        data: Bytes,
        seq: u64,
    },
}

/// A JSON presence frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Presence {
    pub(crate) channel: String,
    pub(crate) joined: Vec<String>,
    pub(crate) left: Vec<String>,
    pub(crate) count: usize,
    pub(crate) snapshot: bool,
    pub(crate) truncated: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JsonFrame<'a> {
    #[serde(rename = "type")]
    kind: String,
    channel: Option<String>,
    from: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    from_metadata: Option<Value>,
    peer_id: Option<String>,
    code: Option<String>,
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    joined: Option<Vec<Entry>>,
    left: Option<Vec<Entry>>,
    count: Option<usize>,
    snapshot: Option<bool>,
    truncated: Option<bool>,
    expires_at: Option<u64>,
    offset: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Entry {
    peer_id: String,
}

/// Parses a frame the hub sent to a connection of `dialect`. Panics on a JSON frame
/// the protocol does not define: the hub must only emit well-formed frames. (An
/// rtc-signaller frame that does not parse as a server frame is a forwarded one.)
pub(crate) fn parse(dialect: Dialect, frame: &Bytes) -> Seen {
    match dialect {
        Dialect::Signaller => parse_signaller(frame),
        Dialect::Json => parse_json(frame),
        Dialect::Broadcaster => parse_broadcaster(frame),
    }
}

fn parse_signaller(frame: &Bytes) -> Seen {
    let text = std::str::from_utf8(frame).expect("rtc-signaller frames are text");
    let mut parts = text.splitn(3, '|');
    let head = parts.next().unwrap_or_default();
    let second = parts.next();
    let rest = parts.next();
    let payload = || second.and_then(|p| serde_json::from_str::<Value>(p).ok());
    match head {
        "/roominfo" => match payload().and_then(|v| v["memberCount"].as_u64()) {
            Some(n) => Seen::RoomInfo(n),
            None => Seen::Signal,
        },
        "/error" => match payload().and_then(|v| v["code"].as_str().map(str::to_owned)) {
            Some(code) => Seen::Error(code),
            None => Seen::Signal,
        },
        "/leave" => Seen::Leave,
        "/announce" => Seen::Announce {
            peer: sender(second.unwrap_or_default()),
            room: rest
                .and_then(|r| serde_json::from_str::<Value>(r).ok())
                .and_then(|v| v.get("room").and_then(Value::as_str).map(str::to_owned)),
        },
        "/to" => match parse_signaller_inner(rest) {
            Some(Seen::Announce { peer, room }) => Seen::Introduction { peer, room },
            _ => Seen::Signal,
        },
        _ => Seen::Signal,
    }
}

/// The frame wrapped in a `/to`, when it is an announce.
fn parse_signaller_inner(inner: Option<&str>) -> Option<Seen> {
    let inner = inner?;
    inner
        .starts_with("/announce|")
        .then(|| parse_signaller(&Bytes::copy_from_slice(inner.as_bytes())))
}

/// A sender part: bare id or `{"id":..}`.
fn sender(part: &str) -> String {
    if part.starts_with('{')
        && let Ok(v) = serde_json::from_str::<Value>(part)
        && let Some(id) = v.get("id").and_then(Value::as_str)
    {
        return id.to_owned();
    }
    part.to_owned()
}

fn parse_json(frame: &Bytes) -> Seen {
    let f: JsonFrame<'_> = serde_json::from_slice(frame)
        .unwrap_or_else(|e| panic!("hub sent a bad JSON frame {frame:?}: {e}"));
    // `Option<&RawValue>` reads a JSON `null` as `None`.
    let data = |d: Option<&RawValue>| match d {
        Some(d) => frame.slice_ref(d.get().as_bytes()),
        None => Bytes::from_static(b"null"),
    };
    match f.kind.as_str() {
        "welcome" => Seen::Welcome(f.peer_id.expect("welcome has peerId")),
        "ack" => {
            let rid = f.request_id.expect("ack has requestId").get().to_owned();
            let position = match (f.offset, f.epoch) {
                (Some(offset), Some(epoch)) => {
                    let hex = epoch.len() == 16
                        && epoch
                            .bytes()
                            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
                    assert!(hex, "epoch is not 16 hex digits: {frame:?}");
                    Some((offset, epoch))
                }
                (None, None) => None,
                _ => panic!("an ack with half a position: {frame:?}"),
            };
            if position.is_none() && f.recovered.is_none() {
                Seen::Ack(rid)
            } else {
                Seen::Positioned {
                    rid,
                    position,
                    recovered: f.recovered,
                }
            }
        }
        "error" => match f.channel {
            Some(channel) => {
                assert_eq!(
                    f.code.as_deref(),
                    Some("channel_not_authorized"),
                    "{frame:?}"
                );
                Seen::Ended(channel)
            }
            None => Seen::Error(f.code.expect("error has code")),
        },
        "token_expiring" => {
            assert!(f.expires_at.is_some(), "token_expiring without expiresAt");
            Seen::TokenExpiring
        }
        "message" => Seen::Message {
            channel: f.channel.expect("message has channel"),
            from: f.from.expect("message has from"),
            data: data(f.data),
            with_meta: f.from_metadata.is_some(),
            offset: f.offset,
        },
        "direct" => Seen::Direct {
            from: f.from.expect("direct has from"),
            data: data(f.data),
        },
        "presence" => Seen::Presence(Presence {
            channel: f.channel.expect("presence has channel"),
            joined: ids(f.joined),
            left: ids(f.left),
            count: f.count.expect("presence has count"),
            snapshot: f.snapshot.unwrap_or(false),
            truncated: f.truncated.unwrap_or(false),
        }),
        other => panic!("unexpected JSON frame type {other}: {frame:?}"),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BroadcasterFrame<'a> {
    #[serde(borrow)]
    request_id: Option<&'a RawValue>,
    result: Option<Value>,
    error: Option<BroadcasterError>,
    method: Option<String>,
    #[serde(borrow)]
    params: Option<PushParams<'a>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcasterError {
    code: String,
    #[allow(dead_code)]
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PushParams<'a> {
    id: String,
    seq: u64,
    create_time: String,
    channel: String,
    event: String,
    #[serde(borrow)]
    payload: &'a RawValue,
}

/// A Broadcaster frame: an answer (`Ack` with the request id literal, `requestId`
/// present even when `null`), an error (its Broadcaster code), or a push. Panics on
/// anything else, or on a push whose id or time is not of the documented shape.
fn parse_broadcaster(frame: &Bytes) -> Seen {
    let f: BroadcasterFrame<'_> = serde_json::from_slice(frame)
        .unwrap_or_else(|e| panic!("hub sent a bad Broadcaster frame {frame:?}: {e}"));
    match (f.result, f.error, f.method.as_deref(), f.params) {
        (Some(_), None, None, None) => {
            Seen::Ack(f.request_id.expect("answers echo the id").get().to_owned())
        }
        (None, Some(e), None, None) => Seen::Error(e.code),
        (None, None, Some("message"), Some(p)) => {
            assert!(
                p.id.len() == 20 && p.id.starts_with("msg-"),
                "push id {}",
                p.id
            );
            assert_eq!(p.create_time.len(), 24, "createTime {}", p.create_time);
            Seen::Push {
                channel: p.channel,
                event: p.event,
                data: frame.slice_ref(p.payload.get().as_bytes()),
                seq: p.seq,
            }
        }
        _ => panic!("unexpected Broadcaster frame {frame:?}"),
    }
}

fn ids(entries: Option<Vec<Entry>>) -> Vec<String> {
    entries
        .expect("presence lists joined and left")
        .into_iter()
        .map(|e| e.peer_id)
        .collect()
}

/// Copies already-serialised JSON into a pipe frame with every `|` escaped, as the
/// protocol says the server writes it (`\u007c`).
pub(crate) fn pipe_escaped(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    for &b in json {
        if b == b'|' {
            out.extend_from_slice(b"\\u007c");
        } else {
            out.push(b);
        }
    }
    out
}

/// The server-made leave for `peer`: `/leave|<peer>|{"id":"<peer>"}`.
pub(crate) fn synthetic_leave(peer: &str) -> Bytes {
    let id = serde_json::to_vec(&serde_json::json!({ "id": peer })).expect("serialises");
    let mut out = format!("/leave|{peer}|").into_bytes();
    out.extend_from_slice(&pipe_escaped(&id));
    Bytes::from(out)
}

/// A channel name or pattern match as `docs/protocol.md` defines it, written
/// independently of `crate::pattern` so the model does not trust the code it
/// checks: `*` is any run without `/`, a final `**` is anything.
pub(crate) fn glob(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        if p == b"**" {
            return true;
        }
        match p.split_first() {
            None => s.is_empty(),
            Some((b'*', rest)) => {
                for k in 0..=s.len() {
                    if go(rest, &s[k..]) {
                        return true;
                    }
                    if k < s.len() && s[k] == b'/' {
                        return false;
                    }
                }
                false
            }
            Some((c, rest)) => s.first() == Some(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_follows_the_protocol_doc() {
        assert!(glob("rooms/*", "rooms/a"));
        assert!(!glob("rooms/*", "rooms/a/b"));
        assert!(glob("room-*", "room-"));
        assert!(glob("app/**", "app/a/b"));
        assert!(!glob("app/**", "app"));
        assert!(glob("**", "x/y"));
        assert!(glob("c/*/x", "c/a/x"));
        assert!(!glob("r1", "r10"));
    }
}
