//! Refreshing a connected client's token in place: when to ask the token provider,
//! and the one refresh in flight at a time.
//!
//! The server says when the token expires (`expiresAt` in `welcome`, then in each
//! `refresh` ack, or a `token_expiring` warning) in its own unix seconds. The client
//! keeps the server's time at `welcome` and how long ago that was on its own
//! monotonic clock, so skew between the two wall clocks does not matter.

use std::future::pending;
use std::time::Duration;

use tokio::time::Instant;

use crate::clock::{Sleep, Timer};
use crate::error::BoxError;
use crate::options::TokenFuture;
use crate::{Clock, TokenProviderTimeout};

/// The refresh schedule of one session.
pub(crate) struct Refresher {
    /// The server's unix seconds at `welcome`, and when it arrived here.
    anchor: (u64, Instant),
    margin: Duration,
    /// Armed when the current token expires and no refresh is in flight.
    due: Option<Sleep>,
    /// The token provider's call, bounded by its timeout.
    call: Option<TokenFuture>,
    /// The `requestId` of the `refresh` sent and not yet answered.
    pub(crate) request_id: Option<String>,
}

impl Refresher {
    /// A schedule for a session welcomed at server time `server_time`, whose token
    /// expires at `expires_at`. A zero margin never refreshes.
    pub(crate) fn new(
        clock: &dyn Clock,
        margin: Duration,
        server_time: u64,
        expires_at: Option<u64>,
    ) -> Self {
        let mut r = Self {
            anchor: (server_time, Instant::now()),
            margin,
            due: None,
            call: None,
            request_id: None,
        };
        r.schedule(clock, expires_at);
        r
    }

    /// Arms the next refresh for a token expiring at `expires_at` (server unix
    /// seconds): `margin` before it, but not before half its remaining life.
    pub(crate) fn schedule(&mut self, clock: &dyn Clock, expires_at: Option<u64>) {
        self.due = None;
        let Some(exp) = expires_at.filter(|_| !self.margin.is_zero()) else {
            return;
        };
        let (server_time, at) = self.anchor;
        let now = server_time.saturating_add(at.elapsed().as_secs());
        let remaining = Duration::from_secs(exp.saturating_sub(now));
        let wait = remaining.saturating_sub(self.margin).max(remaining / 2);
        self.due = Some(clock.sleep(wait, Timer::Refresh));
    }

    /// Whether a refresh is armed, being fetched, or awaits its answer.
    pub(crate) fn is_planned(&self) -> bool {
        self.due.is_some() || self.in_flight()
    }

    /// Whether a refresh is being fetched or awaits its answer.
    pub(crate) fn in_flight(&self) -> bool {
        self.call.is_some() || self.request_id.is_some()
    }

    /// Starts fetching a token now (the schedule came due, or the server warned).
    pub(crate) fn start(&mut self, clock: &dyn Clock, provider: TokenFuture, cap: Duration) {
        self.due = None;
        let cap = clock.sleep(cap, Timer::TokenProvider);
        self.call = Some(Box::pin(async move {
            tokio::select! {
                token = provider => token,
                () = cap => Err(BoxError::from(TokenProviderTimeout)),
            }
        }));
    }

    /// The next thing to do: a fetched token to send, or a due schedule to start.
    /// Never completes while neither is armed. Cancel-safe: the sleep and the call
    /// live in `self`, so a dropped `next` resumes where it was.
    pub(crate) async fn next(&mut self) -> Step {
        if let Some(call) = &mut self.call {
            let token = call.await;
            self.call = None;
            return Step::Fetched(token);
        }
        if let Some(sleep) = &mut self.due {
            sleep.await;
            self.due = None;
            return Step::Due;
        }
        pending().await
    }
}

/// What [`Refresher::next`] came to.
pub(crate) enum Step {
    /// Time to ask the token provider.
    Due,
    /// The token provider answered.
    Fetched(Result<String, BoxError>),
}
