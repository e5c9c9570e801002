//! Small identifiers the hub hands out or interns.

use std::fmt;
use std::sync::Arc;

/// One transport connection, as the hub knows it.
///
/// Handed out by [`Hub::open`](crate::Hub::open) in increasing order, never reused
/// within one hub, so a late input for a closed connection can never hit a new one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The raw number, for logs and for transports' own maps.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// A peer's identity: the token's `sub`, the rtc-signaller announce id, or a
/// server-invented id. Cheap to clone because it is stamped on every delivery.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(Arc<str>);

impl PeerId {
    /// Wraps an already validated id.
    pub(crate) fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    /// The id as the wire shows it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Lets maps keyed by `PeerId` be searched with the `&str` a frame carries. Sound
/// because `PeerId` orders, hashes and compares exactly as its string.
impl std::borrow::Borrow<str> for PeerId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Peer ids starting with this are the server's own (`_server` stamps control-plane
/// publishes); clients cannot take them.
pub const RESERVED_ID_PREFIX: &str = "_";

/// The sender id of messages the server publishes itself (REST publish).
pub const SERVER_PEER_ID: &str = "_server";

/// Why a proposed peer id is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BadPeerId {
    Empty,
    TooLong,
    BadChar,
}

/// Checks a peer id: it is written bare into pipe frames, so it must not hold `|`,
/// and it is logged, so no control characters either.
pub(crate) fn validate_peer_id(id: &str, max_len: usize) -> Result<(), BadPeerId> {
    if id.is_empty() {
        return Err(BadPeerId::Empty);
    }
    if id.len() > max_len {
        return Err(BadPeerId::TooLong);
    }
    if id.starts_with(RESERVED_ID_PREFIX) {
        return Err(BadPeerId::BadChar);
    }
    if id
        .chars()
        .any(|c| c == '|' || c == '"' || c == '\\' || c.is_control())
    {
        return Err(BadPeerId::BadChar);
    }
    Ok(())
}

/// A tenant: nothing crosses tenants. Channels and peer ids are scoped by it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Wraps a tenant name.
    pub fn new(name: &str) -> Self {
        Self(Arc::from(name))
    }

    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An interned channel (an rtc-signaller room is a channel too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ChannelId(pub(crate) u64);

/// Invents ids deterministically from a seed (splitmix64), so that two hubs fed the
/// same inputs with the same seed produce the same bytes.
#[derive(Clone, Debug)]
pub(crate) struct IdGen {
    state: u64,
}

#[allow(dead_code)]
impl IdGen {
    pub(crate) fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A fresh id with a prefix, e.g. `msg-1f3a…`.
    pub(crate) fn next_id(&mut self, prefix: &str) -> String {
        format!("{prefix}{:016x}", self.next_u64())
    }

    /// A fresh UUID-shaped id (version 4 layout), for server-assigned peer ids.
    pub(crate) fn next_uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0x0fff,
            ((b >> 48) & 0x3fff) | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}
