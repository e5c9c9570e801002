//! WebSocket close codes the server uses, and what the client does after each one.
//!
//! The policy follows the seed SDK's close-code table: the client does not retry
//! blindly. Codes that need the caller to act (new credentials, new grants, an
//! operator) stop reconnecting; a concurrency-cap rejection waits at least
//! [`CONCURRENT_LIMIT_FLOOR`]; everything else uses the normal backoff.

use std::time::Duration;

/// The client closed normally (what [`close`](crate::SignallingClient::close) sends
/// by default).
pub const NORMAL: u16 = 1000;
/// The server is shutting down or restarting.
pub const GOING_AWAY: u16 = 1001;
/// No close frame: the socket died (reset, refused, timed out). Never sent on the wire.
pub const ABNORMAL: u16 = 1006;
/// Transport policy violation.
pub const POLICY: u16 = 1008;
/// A frame over the server's size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// No frame within the inactivity window (the client closes with it too).
pub const CLIENT_INACTIVITY: u16 = 4000;
/// Bad, unknown or refused credentials.
pub const INVALID_TOKEN: u16 = 4001;
/// The token's `exp` passed; the next attempt asks the token provider for a new one.
pub const TOKEN_EXPIRED: u16 = 4002;
/// A terminal grant violation.
pub const CHANNEL_NOT_AUTHORIZED: u16 = 4003;
/// A connection cap is reached.
pub const OVER_CONCURRENT_LIMIT: u16 = 4010;
/// Persistent excess over the message rate.
pub const OVER_MESSAGE_RATE: u16 = 4011;
/// The account or key is suspended.
pub const ACCOUNT_SUSPENDED: u16 = 4012;
/// The connection could not keep up with what it was sent.
pub const SLOW_CONSUMER: u16 = 4013;
/// An operator disconnected the peer.
pub const ADMIN_DISCONNECT: u16 = 4020;

/// The shortest wait before retrying after [`OVER_CONCURRENT_LIMIT`]: retrying every
/// 500 ms against a capacity rejection only hammers the server.
pub const CONCURRENT_LIMIT_FLOOR: Duration = Duration::from_secs(30);

/// What the client does after a close with a given code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Reconnect with the normal backoff.
    Backoff,
    /// Reconnect, but wait at least this long.
    AtLeast(Duration),
    /// Do not reconnect: the caller must act first.
    Never,
}

/// The reconnect policy for a close code.
///
/// | code | policy |
/// |---|---|
/// | 4001, 4003, 4012, 4020 | [`Retry::Never`] |
/// | 4010 | [`Retry::AtLeast`]`(30 s)` |
/// | 1001, 1006, 1008, 1009, 4000, 4002, 4011, 4013, and any other | [`Retry::Backoff`] |
///
/// 4013 (slow consumer) retries: the client fell behind once (a burst, a slow
/// handler), and a new connection starts clean, with fresh presence snapshots after
/// the automatic re-subscribe. Unlisted codes (1000 from the server, 1011…) retry too:
/// only the codes above are known to need the caller.
pub fn retry(code: u16) -> Retry {
    match code {
        INVALID_TOKEN | CHANNEL_NOT_AUTHORIZED | ACCOUNT_SUSPENDED | ADMIN_DISCONNECT => {
            Retry::Never
        }
        OVER_CONCURRENT_LIMIT => Retry::AtLeast(CONCURRENT_LIMIT_FLOOR),
        _ => Retry::Backoff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_close_code_table() {
        for code in [1001, 1006, 1008, 1009, 4000, 4002, 4011, 4013, 1000, 1011] {
            assert_eq!(retry(code), Retry::Backoff, "{code}");
        }
        for code in [4001, 4003, 4012, 4020] {
            assert_eq!(retry(code), Retry::Never, "{code}");
        }
        assert_eq!(retry(4010), Retry::AtLeast(Duration::from_secs(30)));
    }
}
