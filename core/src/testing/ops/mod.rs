//! Structured hub operations, decoded from unstructured bytes (a fuzzer's input or a
//! seeded PRNG's output).
//!
//! Every field is one byte read with [`Unstructured`] (or, for raw frames, a length
//! byte and that many bytes), indexing small vocabularies of peer ids, rooms,
//! channels and grants. Small vocabularies make collisions likely, so two
//! connections of one peer, full channels and crowded rooms happen in a few dozen
//! operations. The format is simple enough to write by hand: [`Op::encode`] is the
//! inverse of [`Op::decode`], which is how the committed seed corpus is made,
//! from the hand-written sequences in [`scenarios`] (a file of their own).

mod scenarios;

pub use scenarios::scenarios;

use arbitrary::{Result, Unstructured};

/// Peer ids used by tokens, announces, `/to` and `send`. The last one is invalid.
pub const PEERS: [&str; 5] = ["alice", "bob", "carol", "dave", "x|y"];

/// Concrete channel (and room) names, the last three refused for different reasons.
pub const CHANNELS: [&str; 8] = ["r1", "r2", "c/a", "c/b", "c/a/x", "_system/x", "bad//x", ""];

/// Wildcard patterns for subscriptions.
pub const PATTERNS: [&str; 5] = ["c/*", "c/**", "**", "r*", "c/*/x"];

/// Channel grants a token can carry.
pub const GRANTS: [&[&str]; 5] = [&["**"], &["r1", "c/*"], &["c/**", "r2"], &["r1"], &[]];

/// Tenants a token can name (`None`: the default tenant).
pub const TENANTS: [Option<&str>; 2] = [None, Some("t2")];

/// `data` values for `publish` and `send` (`None`: the field is left out).
pub const DATA: [Option<&str>; 6] = [
    Some(r#"{"x":1}"#),
    Some(r#""hi|there""#),
    Some("null"),
    Some("[1,2,{\"a\":\"\\u007c\"}]"),
    None,
    Some("42"),
];

/// rtc-signaller pass-through commands and their arguments.
pub const SIGNALS: [&str; 4] = ["chat", "sdp", "candidate", "CusTom"];

/// Arguments after the sender of a pass-through command.
pub const SIGNAL_ARGS: [&str; 4] = ["", "|hello", r#"|{"text":"a|b"}|2"#, "|[1,2]|x"];

/// How far one [`Op::Advance`] moves the virtual clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// This many milliseconds (1 to 2,550).
    Millis(u16),
    /// Just past the auth timeout.
    AuthTimeout,
    /// Past a short-lived token's expiry (25 s).
    Expiry,
    /// An hour and a bit: every token expires.
    Hour,
}

/// When a minted token expires, relative to the clock at minting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// In an hour.
    Hour,
    /// In 20 s: it expires during a run.
    Soon,
    /// A minute ago: refused with 4002.
    Past,
    /// 3 s ago: accepted within the leeway, then closed 2 s later.
    InLeeway,
    /// No `exp`: refused (`missing_exp`).
    Missing,
    /// Valid claims with a broken signature.
    Tampered,
}

/// The claims of a token the harness mints with the test key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenSpec {
    /// Index into [`PEERS`].
    pub sub: u8,
    /// Index into [`GRANTS`].
    pub grants: u8,
    /// Permission bits (publish 1, subscribe 2, presence 4, send 8).
    pub perms: u8,
    /// Index into [`TENANTS`].
    pub tenant: u8,
    /// With presence metadata (`{"name":..}`, plus `iceServers` when 2).
    pub metadata: u8,
    /// Expiry.
    pub exp: Expiry,
}

/// Credentials offered at open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Creds {
    /// Nothing (anonymous, or in-band auth within the timeout).
    None,
    /// The configured publishable key (`true`) or an unknown one.
    Key(bool),
    /// A minted token.
    Token(TokenSpec),
    /// A string that is not a JWT.
    Garbage,
}

/// One frame a connection sends. `kind` picks the command in the connection's own
/// dialect (so most frames are well-formed); `a`..`d` index the vocabularies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FrameSpec {
    /// A frame built from the vocabularies.
    Built {
        /// Which command (0..60, per dialect and state; see `model::Run::render`).
        kind: u8,
        /// Vocabulary indices and flags.
        a: u8,
        /// Vocabulary indices and flags.
        b: u8,
        /// Vocabulary indices and flags.
        c: u8,
        /// In-band token, for `auth` and announces.
        token: Option<TokenSpec>,
    },
    /// Bytes exactly as given (garbage, golden frames, fuzzer finds).
    Raw(Vec<u8>),
    /// A well-formed frame one byte over the size limit.
    Oversize,
}

/// One operation on the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// A transport accepts a connection.
    Open {
        /// rtc-signaller (`false`) or JSON (`true`).
        json: bool,
        /// The Broadcaster (overrides `json`).
        broadcaster: bool,
        /// What it offers.
        creds: Creds,
    },
    /// A connection sends a frame. Connection indices pick among the open
    /// connections, except that one value in eight picks among every connection
    /// opened so far, closed ones included (whose inputs must be ignored).
    Frame {
        /// Connection index.
        conn: u8,
        /// The frame.
        frame: FrameSpec,
    },
    /// The transport reports the connection gone.
    Close {
        /// Connection index.
        conn: u8,
        /// A clean close (`true`) or a reset.
        graceful: bool,
    },
    /// The connection's outbound queue is full.
    Blocked {
        /// Connection index.
        conn: u8,
    },
    /// Virtual time passes; every due timer fires on the way.
    Advance(Step),
}

/// Longest operation sequence decoded from one input.
pub const MAX_OPS: usize = 96;

// Tags and kinds are chosen by a byte modulo their count, with more values for the
// operations worth doing often: frames most, opens next, closes and time rarely.
const TAG_OPEN: u8 = 0;
const TAG_FRAME: u8 = 6;
const TAG_CLOSE: u8 = 27;
const TAG_BLOCKED: u8 = 29;
const TAG_ADVANCE: u8 = 30;
const TAGS: u8 = 32;

/// An open is a Broadcaster connection when these bits of its flags are set (one in
/// four).
const BROADCASTER_BITS: u8 = 0x30;
const KIND_RAW: u8 = 61;
const KIND_OVERSIZE: u8 = 60;
const KINDS: u8 = 64;
/// A built frame carries a token spec when these bits of `c` are set (one in eight).
const TOKEN_BITS: u8 = 0xE0;
/// Raw frames are at most this long, so one does not eat a whole input.
const RAW_MAX: u8 = 64;

fn byte(u: &mut Unstructured<'_>) -> Result<u8> {
    u.arbitrary::<u8>()
}

impl TokenSpec {
    // Mostly valid tokens with every permission on `**` in the default tenant, so
    // that most connections get far; the rest exercise each refusal.
    fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        let sub = byte(u)? % PEERS.len() as u8;
        let grants_byte = byte(u)?;
        let grants = match grants_byte % 8 {
            g @ 0..5 => g,
            _ => 0,
        };
        // One token in four has a custom permission set.
        let custom = grants_byte & 0xC0 == 0xC0;
        let flags = byte(u)?;
        let exp = match byte(u)? % 16 {
            0..10 => Expiry::Hour,
            10 | 11 => Expiry::Soon,
            12 => Expiry::Past,
            13 => Expiry::InLeeway,
            14 => Expiry::Missing,
            _ => Expiry::Tampered,
        };
        Ok(Self {
            sub,
            grants,
            perms: if custom { flags & 15 } else { 15 },
            tenant: u8::from(flags >> 5 == 7),
            metadata: (flags >> 5) % 3,
            exp,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let exp = match self.exp {
            Expiry::Hour => 0,
            Expiry::Soon => 10,
            Expiry::Past => 12,
            Expiry::InLeeway => 13,
            Expiry::Missing => 14,
            Expiry::Tampered => 15,
        };
        // The tenant rides on the metadata bits: all three set is tenant `t2` (with
        // metadata 1).
        let high = if self.tenant == 1 {
            7
        } else {
            self.metadata % 3
        };
        let (grants, perms) = if self.perms == 15 {
            (self.grants, 0)
        } else {
            (self.grants | 0xC0, self.perms)
        };
        out.extend_from_slice(&[self.sub, grants, perms | (high << 5), exp]);
    }

    /// A token with every permission on every channel for `PEERS[sub]`, valid for
    /// an hour.
    pub fn full(sub: u8) -> Self {
        Self {
            sub,
            grants: 0,
            perms: 15,
            tenant: 0,
            metadata: 1,
            exp: Expiry::Hour,
        }
    }
}

impl Op {
    /// Decodes one operation.
    pub fn decode(u: &mut Unstructured<'_>) -> Result<Self> {
        let tag = byte(u)? % TAGS;
        Ok(match tag {
            TAG_OPEN..TAG_FRAME => {
                let flags = byte(u)?;
                let creds = match (flags >> 1) & 7 {
                    0 | 1 => Creds::None,
                    2 => Creds::Key(true),
                    3..=6 => Creds::Token(TokenSpec::decode(u)?),
                    _ if flags & 0x80 == 0 => Creds::Key(false),
                    _ => Creds::Garbage,
                };
                Self::Open {
                    json: flags & 1 == 1,
                    broadcaster: flags & BROADCASTER_BITS == BROADCASTER_BITS,
                    creds,
                }
            }
            TAG_FRAME..TAG_CLOSE => {
                let conn = byte(u)?;
                let kind = byte(u)? % KINDS;
                let frame = match kind {
                    KIND_RAW.. => {
                        let len = usize::from(byte(u)? % RAW_MAX).min(u.len());
                        FrameSpec::Raw(u.bytes(len)?.to_vec())
                    }
                    KIND_OVERSIZE => FrameSpec::Oversize,
                    _ => {
                        let (a, b, c) = (byte(u)?, byte(u)?, byte(u)?);
                        let token = if c & TOKEN_BITS == TOKEN_BITS {
                            Some(TokenSpec::decode(u)?)
                        } else {
                            None
                        };
                        FrameSpec::Built {
                            kind,
                            a,
                            b,
                            c,
                            token,
                        }
                    }
                };
                Self::Frame { conn, frame }
            }
            TAG_CLOSE..TAG_BLOCKED => {
                let conn = byte(u)?;
                Self::Close {
                    conn,
                    graceful: conn & 0x80 != 0,
                }
            }
            TAG_BLOCKED..TAG_ADVANCE => Self::Blocked { conn: byte(u)? },
            TAG_ADVANCE.. => Self::Advance(match byte(u)? % 8 {
                0..=3 => Step::Millis(u16::from(byte(u)?) * 10 + 1),
                4 | 5 => Step::AuthTimeout,
                6 => Step::Expiry,
                _ => Step::Hour,
            }),
        })
    }

    /// Appends the bytes [`Op::decode`] reads back as this operation.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Open {
                json,
                broadcaster,
                creds,
            } => {
                out.push(TAG_OPEN);
                let j = u8::from(*json) | if *broadcaster { BROADCASTER_BITS } else { 0 };
                match creds {
                    Creds::None => out.push(j),
                    Creds::Key(true) => out.push(j | (2 << 1)),
                    Creds::Key(false) => out.push(j | (7 << 1)),
                    Creds::Token(spec) => {
                        out.push(j | (3 << 1));
                        spec.encode(out);
                    }
                    Creds::Garbage => out.push(j | (7 << 1) | 0x80),
                }
            }
            Self::Frame { conn, frame } => {
                out.extend_from_slice(&[TAG_FRAME, *conn]);
                match frame {
                    FrameSpec::Raw(bytes) => {
                        let len = bytes.len().min(usize::from(RAW_MAX) - 1);
                        out.push(KIND_RAW);
                        out.push(len as u8);
                        out.extend_from_slice(&bytes[..len]);
                    }
                    FrameSpec::Oversize => out.push(KIND_OVERSIZE),
                    FrameSpec::Built {
                        kind,
                        a,
                        b,
                        c,
                        token,
                    } => {
                        let c = if token.is_some() {
                            c | TOKEN_BITS
                        } else if c & TOKEN_BITS == TOKEN_BITS {
                            c & !0x80
                        } else {
                            *c
                        };
                        out.extend_from_slice(&[*kind % KIND_OVERSIZE, *a, *b, c]);
                        if let Some(spec) = token {
                            spec.encode(out);
                        }
                    }
                }
            }
            Self::Close { conn, graceful } => {
                out.push(TAG_CLOSE);
                out.push(if *graceful { conn | 0x80 } else { conn & 0x7f });
            }
            Self::Blocked { conn } => out.extend_from_slice(&[TAG_BLOCKED, *conn]),
            Self::Advance(step) => {
                out.push(TAG_ADVANCE);
                match step {
                    Step::Millis(ms) => {
                        out.push(0);
                        out.push(u8::try_from((ms.saturating_sub(1)) / 10).unwrap_or(u8::MAX));
                    }
                    Step::AuthTimeout => out.push(4),
                    Step::Expiry => out.push(6),
                    Step::Hour => out.push(7),
                }
            }
        }
    }
}

/// Decodes a whole input: a configuration byte, then operations until the bytes
/// (or [`MAX_OPS`]) run out.
pub fn decode_ops(data: &[u8]) -> (u8, Vec<Op>) {
    let mut u = Unstructured::new(data);
    let variant = byte(&mut u).unwrap_or(0);
    let mut ops = Vec::new();
    while !u.is_empty() && ops.len() < MAX_OPS {
        match Op::decode(&mut u) {
            Ok(op) => ops.push(op),
            Err(_) => break,
        }
    }
    (variant, ops)
}

/// The inverse of [`decode_ops`].
pub fn encode_ops(variant: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![variant];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

/// A small deterministic PRNG (splitmix64) for property tests: same seed, same
/// bytes, on every machine.
#[derive(Clone, Debug)]
pub struct SeededBytes(u64);

impl SeededBytes {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_is_the_inverse_of_decode() {
        let mut rng = SeededBytes::new(7);
        for _ in 0..200 {
            let (variant, ops) = decode_ops(&rng.bytes(300));
            let bytes = encode_ops(variant, &ops);
            assert_eq!(decode_ops(&bytes), (variant, ops));
        }
    }
}
