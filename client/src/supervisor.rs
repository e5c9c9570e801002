//! The supervisor: one task per `connect()` that opens the socket, runs the session,
//! and reconnects with backoff after a drop, according to the close-code policy.
//!
//! ```text
//! first attempt ──fail──► closed (connect() returns the error)
//!      │ welcome
//!      ▼
//!   session ──drop──► policy(code) ──never / reconnect off / max_attempts 0──► closed
//!      ▲                   │ retry
//!      │ welcome           ▼
//!      └──────── backoff(attempt) ─► attempt ──fail, retry──► (attempt + 1)
//!                                        └──fail, never / attempts spent──► closed
//! ```

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::client::{Control, Inner, Pending, State, fail_disconnected};
use crate::clock::Timer;
use crate::close_code::{self, ABNORMAL, CLIENT_INACTIVITY, Retry};
use crate::error::{
    ServerRequestError, SignallingConnectError, SignallingError, TokenProviderTimeout,
};
use crate::events::TokenRefreshed;
use crate::events::{
    Connected, Direct, Disconnected, GoingAway, Message, Presence, Recovered, ServerError,
    TokenProviderError,
};
use crate::link::{Link, Received};
use crate::refresh::{Refresher, Step};
use crate::wire::{Frame, Position, Request, Welcome};

/// Frames callers may queue for the socket before `publish().await` waits.
const OUTBOUND: usize = 256;

/// The token provider failures in a row after which `TokenProviderError` is emitted.
const TOKEN_FAILURES_REPORTED: u32 = 3;

/// Why an attempt got no `welcome`.
struct Failure {
    code: u16,
    reason: String,
    token: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl Failure {
    fn closed(code: u16, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
            token: None,
        }
    }

    fn into_error(self) -> SignallingError {
        match self.token {
            Some(error) => SignallingError::TokenProvider(error),
            None => SignallingConnectError {
                close_code: self.code,
                reason: self.reason,
            }
            .into(),
        }
    }
}

/// How a session ended.
enum End {
    /// `close()` ended it: the supervisor stops without a word.
    User,
    /// The socket closed (either side) or died.
    Closed { code: u16, reason: String },
}

pub(crate) async fn run(
    inner: Arc<Inner>,
    epoch: u64,
    mut control: mpsc::Receiver<Control>,
    first: oneshot::Sender<Result<(), SignallingError>>,
) {
    let mut token_failures = 0;
    let (mut ws, welcome) = match attempt(&inner, &mut token_failures).await {
        Ok(welcomed) => welcomed,
        Err(failure) => {
            tracing::debug!(code = failure.code, reason = %failure.reason, "first connect failed");
            never_welcomed(&inner, epoch);
            let _ = first.send(Err(failure.into_error()));
            return;
        }
    };
    let Some(mut session) = Session::enter(&inner, epoch, &welcome, false) else {
        return;
    };
    let _ = first.send(Ok(()));
    loop {
        let (code, reason) = match session.run(&inner, &mut ws, &mut control).await {
            End::User => return,
            End::Closed { code, reason } => (code, reason),
        };
        drop(ws);
        let reconnect = inner
            .options
            .reconnect
            .clone()
            .filter(|r| r.max_attempts != Some(0) && close_code::retry(code) != Retry::Never);
        if !ended(&inner, epoch, code, reason, reconnect.is_some()) {
            return;
        }
        let Some(reconnect) = reconnect else {
            return;
        };
        let mut last_code = code;
        let mut attempt_no = 0;
        (ws, session) = loop {
            attempt_no += 1;
            let mut delay = reconnect.delay(attempt_no, (inner.options.jitter)());
            if let Retry::AtLeast(floor) = close_code::retry(last_code) {
                delay = delay.max(floor);
            }
            tracing::debug!(attempt = attempt_no, ?delay, "reconnecting");
            let timer = Timer::Backoff {
                attempt: attempt_no,
            };
            inner.options.clock.sleep(delay, timer).await;
            match attempt(&inner, &mut token_failures).await {
                Ok((ws, welcome)) => match Session::enter(&inner, epoch, &welcome, true) {
                    Some(session) => break (ws, session),
                    None => return,
                },
                Err(failure) => {
                    tracing::debug!(attempt = attempt_no, code = failure.code, reason = %failure.reason, "reconnect failed");
                    if let Some(error) = &failure.token {
                        if token_failures >= TOKEN_FAILURES_REPORTED {
                            let _emitting = inner.emitting();
                            inner.registry.emit(&TokenProviderError {
                                consecutive_failures: token_failures,
                                error: Arc::clone(error),
                            });
                        }
                    } else {
                        last_code = failure.code;
                    }
                    let spent = reconnect.max_attempts.is_some_and(|m| attempt_no >= m);
                    if spent || close_code::retry(failure.code) == Retry::Never {
                        ended(&inner, epoch, failure.code, failure.reason, false);
                        return;
                    }
                }
            }
        };
    }
}

/// One connect attempt: a credential, the socket, the upgrade, the `welcome`. The
/// whole attempt (after the token provider) is bounded by the inactivity window.
async fn attempt(inner: &Inner, token_failures: &mut u32) -> Result<(Link, Welcome), Failure> {
    let options = &inner.options;
    let credential = match (&options.api_key, &options.token_provider) {
        (Some(key), _) => ("key", key.clone()),
        (None, Some(provider)) => {
            let call = provider();
            let cap = options
                .clock
                .sleep(options.token_provider_timeout, Timer::TokenProvider);
            let token = tokio::select! {
                token = call => token,
                () = cap => Err(TokenProviderTimeout.into()),
            };
            match token {
                Ok(token) => {
                    *token_failures = 0;
                    ("token", token)
                }
                Err(error) => {
                    *token_failures += 1;
                    return Err(Failure {
                        code: ABNORMAL,
                        reason: format!("token provider: {error}"),
                        token: Some(Arc::from(error)),
                    });
                }
            }
        }
        // Construction checks that exactly one credential is set.
        (None, None) => unreachable!("options without credentials were refused at construction"),
    };
    let window = options
        .clock
        .sleep(options.inactivity_timeout, Timer::Inactivity);
    tokio::select! {
        welcomed = open(inner, (credential.0, &credential.1)) => welcomed,
        () = window => Err(Failure::closed(ABNORMAL, "no welcome within the inactivity window")),
    }
}

async fn open(inner: &Inner, credential: (&str, &str)) -> Result<(Link, Welcome), Failure> {
    let mut link = Link::dial(&inner.endpoint, credential)
        .await
        .map_err(|e| Failure::closed(ABNORMAL, e.reason))?;
    loop {
        match link.recv().await {
            Received::Text(text) => match serde_json::from_str::<Frame>(&text) {
                Ok(Frame::Welcome(welcome)) => return Ok((link, welcome)),
                _ => tracing::debug!(frame = %text, "frame before welcome ignored"),
            },
            Received::Nothing => {}
            Received::Closed { code, reason } => return Err(Failure::closed(code, reason)),
        }
    }
}

/// The first attempt failed: back to `closed`, no `Disconnected` (the error is
/// `connect()`'s).
fn never_welcomed(inner: &Inner, epoch: u64) {
    let _emitting = inner.emitting();
    let change = {
        let mut shared = inner.lock();
        if shared.epoch != epoch {
            return;
        }
        shared.supervisor = None;
        shared.set_state(State::Closed)
    };
    inner.emit_change(change);
}

/// A welcomed connection (or, with `will_reconnect: false`, the reconnect effort)
/// ended: fail waiting callers, emit `Disconnected` and the state change. Returns
/// `false` if a newer `connect()`/`close()` owns the client.
fn ended(inner: &Inner, epoch: u64, code: u16, reason: String, will_reconnect: bool) -> bool {
    let _emitting = inner.emitting();
    let (change, replies) = {
        let mut shared = inner.lock();
        if shared.epoch != epoch {
            return false;
        }
        shared.outbound = None;
        let to = if will_reconnect {
            State::Reconnecting
        } else {
            // This task is ending on its own; its handle is no longer needed.
            shared.supervisor = None;
            State::Closed
        };
        (shared.set_state(to), shared.take_pending())
    };
    fail_disconnected(replies);
    tracing::info!(code, %reason, will_reconnect, "disconnected");
    inner.registry.emit(&Disconnected {
        code,
        reason,
        will_reconnect,
    });
    inner.emit_change(change);
    true
}

/// A welcomed connection.
struct Session {
    outbound: mpsc::Receiver<String>,
    /// Subscribe frames for the auto-resubscribe set, written before anything else.
    resubscribe: Vec<String>,
    /// When to refresh the token in place (with a token provider).
    refresher: Refresher,
}

impl Session {
    /// Enters `connected`: opens the outbound queue, prepares the re-subscribes, emits
    /// the state change and `Connected`. `None` if a newer `connect()`/`close()` owns
    /// the client.
    fn enter(inner: &Inner, epoch: u64, welcome: &Welcome, is_reconnect: bool) -> Option<Self> {
        let (outbound_tx, outbound) = mpsc::channel(OUTBOUND);
        let _emitting = inner.emitting();
        let (change, resubscribe) = {
            let mut shared = inner.lock();
            if shared.epoch != epoch {
                return None;
            }
            shared.outbound = Some(outbound_tx);
            shared.peer_id = Some(welcome.peer_id.clone());
            let channels: Vec<_> = shared
                .subscriptions
                .iter()
                .map(|(channel, options)| (channel.clone(), *options))
                .collect();
            let mut resubscribe = Vec::with_capacity(channels.len());
            for (channel, options) in channels {
                let request_id = shared.next_request_id();
                // A channel with a history resumes where this client's copy ends.
                let recover = shared.positions.get(&channel);
                resubscribe.push(
                    Request::Subscribe {
                        channel: &channel,
                        include_sender_metadata: options.include_sender_metadata,
                        request_id: &request_id,
                        recover,
                    }
                    .encode(),
                );
                shared.pending.insert(
                    request_id,
                    Pending {
                        reply: None,
                        subscribe: Some(channel),
                    },
                );
            }
            (shared.set_state(State::Connected), resubscribe)
        };
        tracing::info!(peer_id = %welcome.peer_id, is_reconnect, "connected");
        inner.emit_change(change);
        inner.registry.emit(&Connected {
            peer_id: welcome.peer_id.clone(),
            server_time: welcome.server_time,
            expires_at: welcome.expires_at,
            is_reconnect,
            max_message_size: welcome.max_message_size,
            ice_servers: welcome.ice_servers.clone(),
        });
        let options = &inner.options;
        let margin = if options.token_provider.is_some() {
            options.refresh_margin
        } else {
            std::time::Duration::ZERO
        };
        let refresher = Refresher::new(
            &*options.clock,
            margin,
            welcome.server_time,
            welcome.expires_at,
        );
        Some(Self {
            outbound,
            resubscribe,
            refresher,
        })
    }

    /// Runs until the socket closes or `close()` asks. Consumes the session, so the
    /// outbound queue is gone as soon as it ends: a caller blocked on a full queue is
    /// released at once.
    async fn run(
        mut self,
        inner: &Inner,
        ws: &mut Link,
        control: &mut mpsc::Receiver<Control>,
    ) -> End {
        for frame in self.resubscribe.drain(..) {
            if let Err(reason) = ws.send(frame).await {
                return End::Closed {
                    code: ABNORMAL,
                    reason,
                };
            }
        }
        // Only WebSocket servers ping; a quiet QUIC or TCP session is not a dead one
        // (QUIC has its own keepalive and idle timeout).
        let heartbeat = inner.endpoint.wire.has_heartbeat();
        let clock = &inner.options.clock;
        let window = inner.options.inactivity_timeout;
        let mut idle = clock.sleep(window, Timer::Inactivity);
        let mut outbound_open = true;
        loop {
            tokio::select! {
                control = control.recv() => {
                    let (code, reason, done) = match control {
                        Some(Control::Close { code, reason, done }) => (code, reason, Some(done)),
                        None => (close_code::NORMAL, String::new(), None),
                    };
                    ws.close(code, reason).await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return End::User;
                }
                frame = ws.recv() => {
                    idle = clock.sleep(window, Timer::Inactivity);
                    match frame {
                        Received::Text(text) => {
                            let news = handle_frame(inner, &text, self.refresher.request_id.as_deref());
                            self.on_refresh_news(inner, news);
                        }
                        Received::Nothing => {}
                        Received::Closed { code, reason } => return End::Closed { code, reason },
                    }
                }
                frame = self.outbound.recv(), if outbound_open => match frame {
                    Some(frame) => {
                        if let Err(reason) = ws.send(frame).await {
                            return End::Closed { code: ABNORMAL, reason };
                        }
                    }
                    None => outbound_open = false,
                },
                step = self.refresher.next() => match step {
                    Step::Due => self.start_refresh(inner),
                    Step::Fetched(Ok(token)) => {
                        let request_id = inner.lock().next_request_id();
                        let frame = Request::Refresh { token: &token, request_id: &request_id }.encode();
                        self.refresher.request_id = Some(request_id);
                        if let Err(reason) = ws.send(frame).await {
                            return End::Closed { code: ABNORMAL, reason };
                        }
                    }
                    Step::Fetched(Err(error)) => {
                        tracing::warn!(%error, "token refresh: the provider failed; the server closes at expiry and the client reconnects");
                    }
                },
                () = &mut idle, if heartbeat => {
                    let reason = "no frame within the inactivity window";
                    ws.close(CLIENT_INACTIVITY, reason.into()).await;
                    return End::Closed { code: CLIENT_INACTIVITY, reason: reason.into() };
                }
            }
        }
    }
}

impl Session {
    /// Asks the token provider for the refresh's token (there is one: a session
    /// without it never schedules a refresh).
    fn start_refresh(&mut self, inner: &Inner) {
        let options = &inner.options;
        if let Some(provider) = &options.token_provider {
            self.refresher
                .start(&*options.clock, provider(), options.token_provider_timeout);
        }
    }

    /// What the server said about the token: an acked refresh arms the next one; a
    /// refused one leaves the fallback (the 4002 close, then a reconnect); a warning
    /// starts a refresh unless one is armed or under way (it only matters when the
    /// client has none planned: after a refused refresh, or without an expiry).
    fn on_refresh_news(&mut self, inner: &Inner, news: Option<RefreshNews>) {
        match news {
            Some(RefreshNews::Acked(expires_at)) => {
                self.refresher.request_id = None;
                tracing::debug!(?expires_at, "token refreshed");
                self.refresher.schedule(&*inner.options.clock, expires_at);
                let _emitting = inner.emitting();
                inner.registry.emit(&TokenRefreshed { expires_at });
            }
            Some(RefreshNews::Refused) => {
                self.refresher.request_id = None;
                tracing::warn!(
                    "token refresh refused; the server closes at expiry and the client reconnects"
                );
            }
            Some(RefreshNews::Warned(expires_at)) => {
                tracing::debug!(expires_at, "the server warned of the token's expiry");
                if !self.refresher.is_planned()
                    && inner.options.token_provider.is_some()
                    && !inner.options.refresh_margin.is_zero()
                {
                    self.start_refresh(inner);
                }
            }
            None => {}
        }
    }
}

/// What a frame said about the token refresh.
enum RefreshNews {
    /// The `refresh` was acknowledged, with the new expiry.
    Acked(Option<u64>),
    /// The `refresh` was refused.
    Refused,
    /// The server warned that the token expires at this time (unix seconds).
    Warned(u64),
}

/// One text frame from the server. `refresh` is the `requestId` of the refresh in
/// flight, whose answer is the session's, not a caller's.
fn handle_frame(inner: &Inner, text: &str, refresh: Option<&str>) -> Option<RefreshNews> {
    let frame = match serde_json::from_str::<Frame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, frame = %text, "unreadable frame ignored");
            return None;
        }
    };
    let _emitting = inner.emitting();
    match frame {
        Frame::Ack(ack) if Some(ack.request_id.as_str()) == refresh => {
            return Some(RefreshNews::Acked(ack.expires_at));
        }
        Frame::Error(error)
            if error.request_id.is_some() && error.request_id.as_deref() == refresh =>
        {
            inner.registry.emit(&ServerError {
                code: error.code,
                message: error.message,
                request_id: error.request_id,
            });
            return Some(RefreshNews::Refused);
        }
        Frame::TokenExpiring(t) => return Some(RefreshNews::Warned(t.expires_at)),
        Frame::Ack(ack) => {
            let (pending, recovered) = {
                let mut shared = inner.lock();
                let pending = shared.pending.remove(&ack.request_id);
                let channel = pending.as_ref().and_then(|p| p.subscribe.clone());
                let recovered = channel.and_then(|channel| {
                    match (ack.offset, ack.epoch) {
                        (Some(offset), Some(epoch))
                            if shared.subscriptions.contains_key(&channel) =>
                        {
                            shared
                                .positions
                                .insert(channel.clone(), Position { offset, epoch });
                        }
                        // No history (any more): nothing to recover from next time.
                        _ => {
                            shared.positions.remove(&channel);
                        }
                    }
                    ack.recovered
                        .map(|recovered| Recovered { channel, recovered })
                });
                (pending, recovered)
            };
            if let Some(reply) = pending.and_then(|p| p.reply) {
                let _ = reply.send(Ok(()));
            }
            if let Some(recovered) = recovered {
                tracing::debug!(channel = %recovered.channel, recovered = recovered.recovered, "recovery");
                inner.registry.emit(&recovered);
            }
        }
        Frame::Error(error) => {
            let pending = error.request_id.as_ref().and_then(|id| {
                let mut shared = inner.lock();
                let pending = shared.pending.remove(id)?;
                if let Some(channel) = &pending.subscribe {
                    shared.subscriptions.remove(channel);
                    shared.positions.remove(channel);
                }
                Some(pending)
            });
            match pending.and_then(|p| p.reply) {
                Some(reply) => {
                    let _ = reply.send(Err(ServerRequestError {
                        code: error.code,
                        message: error.message,
                        request_id: error.request_id.unwrap_or_default(),
                    }
                    .into()));
                }
                None => inner.registry.emit(&ServerError {
                    code: error.code,
                    message: error.message,
                    request_id: error.request_id,
                }),
            }
        }
        Frame::Message(m) => {
            if let Some(offset) = m.offset
                && let Some(position) = inner.lock().positions.get_mut(&m.channel)
            {
                position.offset = offset;
            }
            inner.registry.emit(&Message {
                channel: m.channel,
                sender_peer_id: m.from,
                data: m.data,
                sender_metadata: m.from_metadata,
                offset: m.offset,
            });
        }
        Frame::Direct(d) => inner.registry.emit(&Direct {
            sender_peer_id: d.from,
            data: d.data,
            sender_metadata: d.from_metadata,
        }),
        Frame::Presence(p) => inner.registry.emit(&Presence {
            channel: p.channel,
            joined: p.joined,
            left: p.left,
            snapshot: p.snapshot,
            count: p.count,
        }),
        Frame::GoingAway(g) => inner.registry.emit(&GoingAway {
            retry_after_ms: g.retry_after_ms,
        }),
        Frame::Welcome(_) | Frame::Unknown => {
            tracing::debug!(frame = %text, "frame ignored");
        }
    }
    None
}
