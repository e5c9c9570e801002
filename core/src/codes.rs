//! Close codes and error codes: the one table in the code (the doc has the other).

use std::fmt;

/// A WebSocket-style close code. Every transport maps it onto its own close
/// (WebSocket close frame, QUIC application error code, a last line on TCP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// Normal closure.
    pub const NORMAL: Self = Self(1000);
    /// Server shutting down or peer going away.
    pub const GOING_AWAY: Self = Self(1001);
    /// The peer broke the wire's protocol (a WebSocket framing rule).
    pub const PROTOCOL_ERROR: Self = Self(1002);
    /// A text message that is not UTF-8 (WebSocket).
    pub const INVALID_PAYLOAD: Self = Self(1007);
    /// Policy violation (binary frames on a text dialect, for instance).
    pub const POLICY: Self = Self(1008);
    /// A frame over the configured maximum size.
    pub const MESSAGE_TOO_BIG: Self = Self(1009);
    /// Unexpected server condition.
    pub const INTERNAL: Self = Self(1011);
    /// No frame within the inactivity window, or no auth in time.
    pub const CLIENT_INACTIVITY: Self = Self(4000);
    /// Missing, malformed, unverifiable or refused credentials.
    pub const INVALID_TOKEN: Self = Self(4001);
    /// The token's `exp` passed (at connect or while connected).
    pub const TOKEN_EXPIRED: Self = Self(4002);
    /// The connection asked for something its grants forbid, terminally.
    pub const CHANNEL_NOT_AUTHORIZED: Self = Self(4003);
    /// A concurrency cap (per tenant, per IP, per subject, global) is reached.
    pub const OVER_CONCURRENT_LIMIT: Self = Self(4010);
    /// Persistent excess over the message rate.
    pub const OVER_MESSAGE_RATE: Self = Self(4011);
    /// The account or key is suspended.
    pub const ACCOUNT_SUSPENDED: Self = Self(4012);
    /// The connection could not keep up with what it was sent.
    pub const SLOW_CONSUMER: Self = Self(4013);
    /// An operator disconnected the peer.
    pub const ADMIN_DISCONNECT: Self = Self(4020);

    /// A short name for logs and metrics.
    pub fn name(self) -> &'static str {
        match self.0 {
            1000 => "normal",
            1001 => "going_away",
            1002 => "protocol_error",
            1007 => "invalid_payload",
            1008 => "policy",
            1009 => "message_too_big",
            1011 => "internal",
            4000 => "client_inactivity",
            4001 => "invalid_token",
            4002 => "token_expired",
            4003 => "channel_not_authorized",
            4010 => "over_concurrent_limit",
            4011 => "over_message_rate",
            4012 => "account_suspended",
            4013 => "slow_consumer",
            4020 => "admin_disconnect",
            _ => "other",
        }
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

/// Why a single frame was refused. The connection stays open; the peer gets an
/// error frame in its dialect (`error` in JSON, `/error|{..}` in rtc-signaller).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The frame could not be parsed in the connection's dialect.
    InvalidMessage,
    /// The sender id in the frame is not the connection's peer id.
    SenderMismatch,
    /// The frame needs a room, and the connection has not announced into one.
    NotInRoom,
    /// The peer id is taken or invalid.
    InvalidPeerId,
    /// Another rtc-signaller connection announced the same id in this room.
    Replaced,
    /// The channel name is malformed.
    InvalidChannel,
    /// The channel is not within the connection's grants.
    ChannelNotAuthorized,
    /// The channel starts with a reserved prefix.
    ChannelReserved,
    /// The connection is at its channel cap.
    ChannelLimitExceeded,
    /// The period's message quota is used up.
    OverMessageQuota,
    /// Frames arrive faster than the connection's rate; this one was dropped.
    OverMessageRate,
    /// The connection's permissions do not allow the action.
    ActionNotPermitted,
    /// No such peer is reachable.
    PeerNotFound,
    /// The `requestId` is too long or not a string.
    InvalidRequestId,
    /// The connection is not subscribed to that channel.
    NotSubscribed,
    /// Authentication is needed first, or failed.
    Unauthenticated,
    /// An in-band token was refused (rtc-signaller announce token); the connection
    /// stays open.
    InvalidToken,
    /// An in-band token has expired (rtc-signaller announce token).
    TokenExpired,
    /// The connection is already authenticated.
    AlreadyAuthenticated,
    /// The request names a tenant the connection's credentials do not allow.
    TenantNotAuthorized,
    /// The connection already holds this subscription (The Broadcaster; the JSON
    /// dialect treats a repeated subscribe as a no-op).
    AlreadySubscribed,
    /// The server cannot do it now: a cluster node could not have the message stored
    /// by its engine (Redis unreachable), so it was not delivered. Retrying later may
    /// succeed.
    Unavailable,
}

impl ErrorCode {
    /// The snake_case code the wire carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidMessage => "invalid_message",
            Self::SenderMismatch => "sender_mismatch",
            Self::NotInRoom => "not_in_room",
            Self::InvalidPeerId => "invalid_peer_id",
            Self::Replaced => "replaced",
            Self::InvalidChannel => "invalid_channel",
            Self::ChannelNotAuthorized => "channel_not_authorized",
            Self::ChannelReserved => "channel_reserved",
            Self::ChannelLimitExceeded => "channel_limit_exceeded",
            Self::OverMessageQuota => "over_message_quota",
            Self::OverMessageRate => "over_message_rate",
            Self::ActionNotPermitted => "action_not_permitted",
            Self::PeerNotFound => "peer_not_found",
            Self::InvalidRequestId => "invalid_request_id",
            Self::NotSubscribed => "not_subscribed",
            Self::Unauthenticated => "unauthenticated",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::AlreadyAuthenticated => "already_authenticated",
            Self::TenantNotAuthorized => "tenant_not_authorized",
            Self::AlreadySubscribed => "already_subscribed",
            Self::Unavailable => "unavailable",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
