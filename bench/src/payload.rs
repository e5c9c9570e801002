//! The tool's payloads: a send timestamp, a sequence number, the sender's index and a
//! kind, padded to a fixed size with characters that need no escaping on any wire
//! (no `"`, `\`, `|`, line breaks or spaces).
//!
//! `~<kind><nanoseconds since the run's start>.<seq>.<from>~xxxx…`

use std::time::Instant;

/// What a payload is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A fan-out message.
    Fanout,
    /// A WebRTC offer (the receiver answers it).
    Offer,
    /// The answer to an offer.
    Answer,
    /// An ICE candidate.
    Candidate,
}

impl Kind {
    fn tag(self) -> u8 {
        match self {
            Self::Fanout => b'f',
            Self::Offer => b'o',
            Self::Answer => b'a',
            Self::Candidate => b'c',
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'f' => Self::Fanout,
            b'o' => Self::Offer,
            b'a' => Self::Answer,
            b'c' => Self::Candidate,
            _ => return None,
        })
    }

    /// The rtc-signaller command name for it.
    pub fn command(self) -> &'static str {
        match self {
            Self::Fanout => "bench",
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Candidate => "candidate",
        }
    }
}

/// A decoded payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    /// What it is.
    pub kind: Kind,
    /// Send time, nanoseconds since [`Clock`]'s origin.
    pub sent_ns: u64,
    /// Sequence number.
    pub seq: u64,
    /// The sender's index.
    pub from: u32,
}

/// The run's time origin: publishers and receivers share it (one process).
#[derive(Clone, Copy, Debug)]
pub struct Clock(Instant);

impl Clock {
    /// Starts the clock.
    pub fn start() -> Self {
        Self(Instant::now())
    }

    /// Nanoseconds since the start.
    pub fn now_ns(self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Writes a payload of `size` bytes (at least the stamp's own length).
pub fn encode(stamp: Stamp, size: usize) -> String {
    let mut s = format!(
        "~{}{}.{}.{}~",
        char::from(stamp.kind.tag()),
        stamp.sent_ns,
        stamp.seq,
        stamp.from
    );
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Where a payload starts in a frame, if it carries one.
pub fn find(frame: &[u8]) -> Option<usize> {
    let at = frame.iter().position(|&b| b == b'~')?;
    Kind::from_tag(*frame.get(at + 1)?).map(|_| at)
}

/// Reads the stamp at the start of `bytes` (as returned by [`find`]).
pub fn decode(bytes: &[u8]) -> Option<Stamp> {
    let bytes = bytes.strip_prefix(b"~")?;
    let kind = Kind::from_tag(*bytes.first()?)?;
    let end = bytes[1..].iter().position(|&b| b == b'~')? + 1;
    let body = std::str::from_utf8(&bytes[1..end]).ok()?;
    let mut parts = body.split('.');
    let sent_ns = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let from = parts.next()?.parse().ok()?;
    Some(Stamp {
        kind,
        sent_ns,
        seq,
        from,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_inside_any_frame() {
        let stamp = Stamp {
            kind: Kind::Offer,
            sent_ns: 123_456_789,
            seq: 42,
            from: 7,
        };
        let p = encode(stamp, 100);
        assert_eq!(p.len(), 100);
        let frame = format!(r#"{{"type":"message","channel":"c","from":"p","data":"{p}"}}"#);
        let at = find(frame.as_bytes()).expect("marker");
        assert_eq!(decode(&frame.as_bytes()[at..]), Some(stamp));
    }
}
