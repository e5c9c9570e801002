//! The wires the load tool speaks, so one scenario runs unchanged against every server:
//! Switchyard's JSON dialect, the rtc-signaller dialect (Switchyard and rtc-switchboard),
//! the NATS text protocol over WebSocket (nats-server), and the baseline's raw broadcast.
//!
//! A scenario asks for frames by intent (join a channel, publish, send to one peer) and
//! gets back what a received frame means ([`Incoming`]). Payloads are the tool's own
//! ([`crate::payload`]) and survive every wire byte for byte, so latency is read the
//! same way everywhere.

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Message;

/// Which wire a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Proto {
    /// Switchyard's JSON dialect (`/v1`).
    Json,
    /// rtc-signaller pipe frames (`/` on Switchyard, rtc-switchboard).
    Signaller,
    /// NATS text protocol in binary WebSocket frames (nats-server's `websocket {}`).
    Nats,
    /// The baseline: whatever a client sends goes to every other client on its path.
    Raw,
}

impl Proto {
    /// Parses a command-line name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "json" => Self::Json,
            "signaller" | "rtc-signaller" => Self::Signaller,
            "nats" => Self::Nats,
            "raw" | "baseline" => Self::Raw,
            _ => return None,
        })
    }

    /// The name used in results.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Signaller => "signaller",
            Self::Nats => "nats",
            Self::Raw => "raw",
        }
    }

    /// Whether the server announces departures (`/leave`, presence `left`).
    pub fn has_leaves(self) -> bool {
        matches!(self, Self::Json | Self::Signaller)
    }

    /// Frames that put a fresh connection in `channel` as peer `id`; the connection is
    /// ready once [`Incoming::Ready`] arrives. `inbox` also subscribes the peer's
    /// direct-message subject (NATS has no addressing of its own).
    pub fn join(self, channel: &str, id: &str, inbox: bool) -> Vec<Message> {
        match self {
            Self::Json => vec![text(format!(
                r#"{{"type":"subscribe","channel":"{channel}","requestId":"j"}}"#
            ))],
            Self::Signaller => vec![text(format!(
                r#"/announce|{id}|{{"id":"{id}","room":"{channel}"}}"#
            ))],
            Self::Nats => {
                let mut s = String::from(
                    "CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1,\"echo\":false}\r\n",
                );
                if !channel.is_empty() {
                    s.push_str(&format!("SUB {channel} 1\r\n"));
                }
                if inbox {
                    s.push_str(&format!("SUB {} 2\r\n", nats_inbox(channel, id)));
                }
                s.push_str("PING\r\n");
                vec![Message::Binary(Bytes::from(s))]
            }
            // The baseline greets every registered connection.
            Self::Raw => Vec::new(),
        }
    }

    /// A frame that publishes `payload` to everyone else in `channel`.
    pub fn publish(self, channel: &str, id: &str, payload: &str) -> Message {
        match self {
            Self::Json => text(format!(
                r#"{{"type":"publish","channel":"{channel}","data":"{payload}"}}"#
            )),
            Self::Signaller => text(format!("/bench|{id}|{payload}")),
            Self::Nats => Message::Binary(Bytes::from(format!(
                "PUB {channel} {}\r\n{payload}\r\n",
                payload.len()
            ))),
            Self::Raw => text(payload.to_owned()),
        }
    }

    /// A frame for peer `to` only (`/to`, `send`, the peer's NATS inbox). `command` is
    /// the signalling verb (`offer`, `answer`, `candidate`).
    pub fn direct(
        self,
        channel: &str,
        from: &str,
        to: &str,
        command: &str,
        payload: &str,
    ) -> Message {
        match self {
            Self::Json => text(format!(
                r#"{{"type":"send","to":"{to}","data":"{payload}"}}"#
            )),
            Self::Signaller => text(format!("/to|{to}|/{command}|{from}|{payload}")),
            Self::Nats => Message::Binary(Bytes::from(format!(
                "PUB {} {}\r\n{payload}\r\n",
                nats_inbox(channel, to),
                payload.len()
            ))),
            // The baseline has no addressing: everyone on the path gets it.
            Self::Raw => text(payload.to_owned()),
        }
    }
}

/// A NATS peer's direct-message subject.
fn nats_inbox(channel: &str, id: &str) -> String {
    format!("{channel}.to.{id}")
}

fn text(s: String) -> Message {
    Message::Text(s.into())
}

/// What a received frame means to a scenario.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming<'a> {
    /// The join completed (ack, roominfo, PONG, the baseline's greeting).
    Ready,
    /// A frame carrying one of our payloads (the bytes from its marker on).
    Data(&'a [u8]),
    /// A peer left (synthetic `/leave`, presence `left`): its id.
    Left(&'a str),
    /// The server refused something.
    Error(&'a str),
    /// Anything else (welcome, announces, presence joins, INFO, +OK).
    Other,
}

/// Classifies one whole frame of the JSON, rtc-signaller or raw wire.
pub fn classify(proto: Proto, frame: &[u8]) -> Incoming<'_> {
    if let Some(at) = crate::payload::find(frame) {
        return Incoming::Data(&frame[at..]);
    }
    let s = std::str::from_utf8(frame).unwrap_or("");
    match proto {
        Proto::Json => {
            if s.starts_with(r#"{"type":"ack""#) {
                Incoming::Ready
            } else if s.starts_with(r#"{"type":"error""#) {
                Incoming::Error(s)
            } else if s.starts_with(r#"{"type":"presence""#) {
                match s.split_once(r#""left":[{"peerId":""#) {
                    Some((_, rest)) => Incoming::Left(rest.split('"').next().unwrap_or("")),
                    None => Incoming::Other,
                }
            } else {
                Incoming::Other
            }
        }
        Proto::Signaller => {
            if s.starts_with("/roominfo") {
                Incoming::Ready
            } else if let Some(rest) = s.strip_prefix("/leave|") {
                Incoming::Left(rest.split('|').next().unwrap_or(""))
            } else if s.starts_with("/error") {
                Incoming::Error(s)
            } else {
                Incoming::Other
            }
        }
        Proto::Raw if s == crate::baseline::GREETING => Incoming::Ready,
        Proto::Raw | Proto::Nats => Incoming::Other,
    }
}

/// What one parsed NATS protocol line or message means.
#[derive(Debug, PartialEq, Eq)]
pub enum NatsEvent {
    /// `MSG`: the payload.
    Msg(Bytes),
    /// `PONG`.
    Pong,
    /// `PING`: answer with `PONG`.
    Ping,
    /// `-ERR …`.
    Err(String),
}

/// A streaming parser for the server side of the NATS protocol: WebSocket frames do not
/// keep protocol boundaries, so bytes accumulate until a whole line (and payload) is in.
#[derive(Debug, Default)]
pub struct NatsParser {
    buf: Vec<u8>,
}

impl NatsParser {
    /// Feeds one frame's bytes and calls `on` for every complete event.
    pub fn feed(&mut self, bytes: &[u8], mut on: impl FnMut(NatsEvent)) {
        self.buf.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = &rest[..eol];
            if let Some(args) = line.strip_prefix(b"MSG ") {
                // MSG <subject> <sid> [reply-to] <#bytes>
                let len = std::str::from_utf8(args)
                    .ok()
                    .and_then(|a| a.rsplit(' ').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                let start = eol + 2;
                if rest.len() < start + len + 2 {
                    break; // the payload is not all here yet
                }
                on(NatsEvent::Msg(Bytes::copy_from_slice(
                    &rest[start..start + len],
                )));
                at += start + len + 2;
                continue;
            }
            match line {
                b"PING" => on(NatsEvent::Ping),
                b"PONG" => on(NatsEvent::Pong),
                l if l.starts_with(b"-ERR") => {
                    on(NatsEvent::Err(String::from_utf8_lossy(l).into_owned()));
                }
                _ => {} // INFO, +OK
            }
            at += eol + 2;
        }
        self.buf.drain(..at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_messages_split_across_frames_are_reassembled() {
        let mut p = NatsParser::default();
        let mut got = Vec::new();
        p.feed(b"INFO {}\r\nMSG a 1 5\r\nhel", |e| got.push(e));
        assert!(got.is_empty());
        p.feed(b"lo\r\nPING\r\nMSG a 1 r 2\r\nok\r\n", |e| got.push(e));
        assert_eq!(
            got,
            vec![
                NatsEvent::Msg(Bytes::from_static(b"hello")),
                NatsEvent::Ping,
                NatsEvent::Msg(Bytes::from_static(b"ok")),
            ]
        );
    }

    #[test]
    fn leaves_name_the_peer() {
        assert_eq!(
            classify(Proto::Signaller, br#"/leave|p3|{"id":"p3"}"#),
            Incoming::Left("p3")
        );
        assert_eq!(
            classify(
                Proto::Json,
                br#"{"type":"presence","channel":"r","joined":[],"left":[{"peerId":"p3"}],"count":1}"#
            ),
            Incoming::Left("p3")
        );
    }
}
