//! The client's errors, one type per way a call can fail (the seed SDK's hierarchy,
//! as an enum of typed cases).

use std::sync::Arc;

use crate::State;

/// A token provider's error.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a call on [`SignallingClient`](crate::SignallingClient) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignallingError {
    /// The call needs a connected client: the frame never left the client. Await
    /// `connect()` first, or wait for the `Connected` event.
    #[error("not connected (state {state}): the frame was not sent")]
    NotConnected {
        /// The state at the time of the call.
        state: State,
    },
    /// `connect()` runs only from `idle` or `closed`: one supervisor at a time.
    #[error("connect() needs state idle or closed, not {state}")]
    AlreadyActive {
        /// The state at the time of the call.
        state: State,
    },
    /// The first connect failed before the server's `welcome`.
    #[error(transparent)]
    Connect(#[from] SignallingConnectError),
    /// The server refused the request.
    #[error(transparent)]
    ServerRequest(#[from] ServerRequestError),
    /// The frame was sent, but the connection dropped before the server answered.
    #[error(transparent)]
    Disconnected(#[from] DisconnectedError),
    /// The token provider failed or timed out on the first connect.
    #[error("token provider failed: {0}")]
    TokenProvider(Arc<dyn std::error::Error + Send + Sync>),
    /// `close()` was called while `connect()` was waiting.
    #[error("the client was closed")]
    Closed,
    /// The data could not be serialised as JSON.
    #[error("data is not serialisable as JSON: {0}")]
    InvalidData(#[source] serde_json::Error),
}

impl SignallingError {
    /// The server's error code, when the server refused the request.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Self::ServerRequest(e) => Some(&e.code),
            _ => None,
        }
    }
}

/// The connection closed (or never opened) before the server's `welcome`. Branch on
/// [`close_code`](Self::close_code): 4001 means bad credentials, 4010 a capacity
/// limit; 1006 means no close frame arrived (refused, reset, timed out).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection closed before welcome: {close_code} {reason}")]
pub struct SignallingConnectError {
    /// The close code (see [`close_code`](crate::close_code)).
    pub close_code: u16,
    /// The close reason, or what went wrong on the transport.
    pub reason: String,
}

/// The server answered a request with an `error` frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("server refused {request_id}: {code}: {message}")]
pub struct ServerRequestError {
    /// The protocol's error code: `channel_not_authorized`, `channel_reserved`,
    /// `channel_limit_exceeded`, `over_message_quota`, `action_not_permitted`,
    /// `peer_not_found`, `over_message_rate`, `invalid_channel`…
    pub code: String,
    /// The server's human-readable message.
    pub message: String,
    /// The request's id.
    pub request_id: String,
}

/// The connection dropped after the frame was sent and before the server confirmed
/// it: the request may or may not have taken effect.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the connection dropped before the server confirmed the request")]
pub struct DisconnectedError;

/// The token provider did not answer within `token_provider_timeout`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the token provider did not answer within the timeout")]
pub struct TokenProviderTimeout;

/// Options that cannot work: the construction error (the seed's `ValueError`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OptionsError {
    /// Neither or both of `api_key` and `token_provider` were given.
    #[error("exactly one of api_key or token_provider is required")]
    Credentials,
    /// The URL does not parse, or is `ws://` to a host that is not loopback.
    #[error("invalid url {url:?}: {why}")]
    Url {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// A reconnect knob would make a zero-delay reconnect loop, or is not a number.
    #[error("invalid reconnect options: {0}")]
    Reconnect(&'static str),
    /// Another option is out of range.
    #[error("invalid option: {0}")]
    Invalid(&'static str),
}
