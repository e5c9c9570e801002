//! [`SignallingClient`]: the public handle, its state, and the requests it sends.
//!
//! Implementation notes:
//! - One supervisor task per `connect()` owns the socket (see `supervisor.rs`). The
//!   handle and the supervisor share a small state under one mutex; every transition
//!   is checked against an `epoch` that `connect()` and `close()` bump, so a
//!   supervisor that lost a race with `close()` changes nothing.
//! - Events are emitted under a second lock, taken before the state lock, so
//!   `StateChange` events come out in the order the transitions happened.
//! - `state == Connected` exactly when the outbound queue to the socket exists.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{DisconnectedError, OptionsError, SignallingError};
use crate::events::{Disconnected, Event, EventStream, HandlerId, Registry, StateChange};
use crate::options::{Endpoint, SignallingClientOptions, SubscribeOptions};
use crate::supervisor;
use crate::wire::{Position, Request};

/// Where a client is in its life.
///
/// ```text
///        connect()                          close()
/// idle ────────────► connecting ──► connected ───────► closed
///                        │             │  ▲
///        first failure   │   transient │  │ welcome again
///        (connect() errs)▼        drop ▼  │
///                     closed      reconnecting ──► closed
///                                   caller-action code or max_attempts
/// ```
/// `connect()` runs from `idle` or `closed` only; `close()` reaches `closed` from
/// anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum State {
    /// Built, never connected.
    Idle,
    /// The first connect is under way.
    Connecting,
    /// Welcomed: requests can be sent.
    Connected,
    /// The connection dropped; the client is backing off or retrying.
    Reconnecting,
    /// Closed by `close()`, a terminal close code, or after `max_attempts`.
    Closed,
}

impl State {
    /// The seed SDK's name for the state.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Connected => "connected",
            Self::Reconnecting => "reconnecting",
            Self::Closed => "closed",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pub/sub and direct-message client for Switchyard's JSON dialect: requests are
/// acknowledged by the server, the connection is supervised and re-established with
/// backoff, and subscriptions survive reconnects.
///
/// Cheap to clone: clones share one connection. Dropping the last clone aborts the
/// connection without a close frame; await [`close`](Self::close) for a clean one.
#[derive(Clone)]
pub struct SignallingClient {
    inner: Arc<Inner>,
    _owner: Arc<Owner>,
}

/// Stops the supervisor when the last user handle goes (the supervisor holds the
/// `Inner` too, so it cannot rely on `Inner`'s drop).
struct Owner(Arc<Inner>);

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(supervisor) = self.0.lock().supervisor.take() {
            supervisor.task.abort();
        }
    }
}

pub(crate) struct Inner {
    pub(crate) options: SignallingClientOptions,
    pub(crate) endpoint: Endpoint,
    pub(crate) registry: Registry,
    shared: Mutex<Shared>,
    emitting: Mutex<()>,
}

pub(crate) struct Shared {
    pub(crate) state: State,
    pub(crate) epoch: u64,
    /// Frames for the live socket; `Some` exactly while `Connected`.
    pub(crate) outbound: Option<mpsc::Sender<String>>,
    pub(crate) pending: HashMap<String, Pending>,
    /// The auto-resubscribe set: channel → options.
    pub(crate) subscriptions: BTreeMap<String, SubscribeOptions>,
    /// Where each subscribed channel with a history stands (from its subscribe ack
    /// and each message's offset): a re-subscribe recovers from there.
    pub(crate) positions: BTreeMap<String, Position>,
    pub(crate) supervisor: Option<Supervisor>,
    pub(crate) peer_id: Option<String>,
    next_request: u64,
}

/// A request waiting for its `ack` or `error`.
pub(crate) struct Pending {
    /// The caller waiting, or `None` for an automatic re-subscribe.
    pub(crate) reply: Option<oneshot::Sender<Result<(), SignallingError>>>,
    /// A subscribe's channel: taken out of the auto-resubscribe set if refused.
    pub(crate) subscribe: Option<String>,
}

pub(crate) struct Supervisor {
    task: JoinHandle<()>,
    control: mpsc::Sender<Control>,
}

/// What `close()` asks of a supervisor whose socket is open.
pub(crate) enum Control {
    Close {
        code: u16,
        reason: String,
        done: oneshot::Sender<()>,
    },
}

impl Shared {
    pub(crate) fn set_state(&mut self, to: State) -> Option<StateChange> {
        let from = std::mem::replace(&mut self.state, to);
        (from != to).then_some(StateChange { from, to })
    }

    pub(crate) fn next_request_id(&mut self) -> String {
        self.next_request += 1;
        format!("c{}", self.next_request)
    }

    /// Every waiting caller, to be failed with [`DisconnectedError`] outside the lock.
    pub(crate) fn take_pending(&mut self) -> Vec<oneshot::Sender<Result<(), SignallingError>>> {
        self.pending
            .drain()
            .filter_map(|(_, pending)| pending.reply)
            .collect()
    }
}

pub(crate) fn fail_disconnected(replies: Vec<oneshot::Sender<Result<(), SignallingError>>>) {
    for reply in replies {
        let _ = reply.send(Err(DisconnectedError.into()));
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Held while a transition is made and its events are emitted. Taken before
    /// [`lock`](Self::lock), never held across an await.
    pub(crate) fn emitting(&self) -> MutexGuard<'_, ()> {
        self.emitting.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn emit_change(&self, change: Option<StateChange>) {
        if let Some(change) = change {
            tracing::debug!(from = %change.from, to = %change.to, "state");
            self.registry.emit(&change);
        }
    }
}

/// What a request does to the auto-resubscribe set.
enum Track<'a> {
    Nothing,
    Subscribe(&'a str, SubscribeOptions),
    Unsubscribe(&'a str),
}

/// How long `close()` waits for the supervisor to flush the close frame.
const CLOSE_FLUSH: Duration = Duration::from_secs(1);

impl SignallingClient {
    /// A client with `options`, checked once here. It does not connect: call
    /// [`connect`](Self::connect).
    pub fn new(options: SignallingClientOptions) -> Result<Self, OptionsError> {
        let endpoint = options.validate()?;
        let inner = Arc::new(Inner {
            options,
            endpoint,
            registry: Registry::default(),
            shared: Mutex::new(Shared {
                state: State::Idle,
                epoch: 0,
                outbound: None,
                pending: HashMap::new(),
                subscriptions: BTreeMap::new(),
                positions: BTreeMap::new(),
                supervisor: None,
                peer_id: None,
                next_request: 0,
            }),
            emitting: Mutex::new(()),
        });
        Ok(Self {
            _owner: Arc::new(Owner(Arc::clone(&inner))),
            inner,
        })
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner.lock().state
    }

    /// The peer id from the latest `welcome`.
    pub fn peer_id(&self) -> Option<String> {
        self.inner.lock().peer_id.clone()
    }

    /// The channels that will be re-subscribed after a reconnect.
    pub fn subscriptions(&self) -> Vec<String> {
        self.inner.lock().subscriptions.keys().cloned().collect()
    }

    /// Opens the WebSocket and waits for the server's `welcome`. From then on the
    /// client reconnects by itself until [`close`](Self::close) or a terminal close.
    ///
    /// # Errors
    ///
    /// - [`SignallingError::AlreadyActive`] unless the state is `idle` or `closed`.
    /// - [`SignallingError::Connect`] if the socket closed or failed before the
    ///   welcome; there is no automatic retry of a first connect.
    /// - [`SignallingError::TokenProvider`] if the token provider failed or timed out.
    /// - [`SignallingError::Closed`] if `close()` was called meanwhile.
    pub async fn connect(&self) -> Result<(), SignallingError> {
        let first = {
            let _emitting = self.inner.emitting();
            let (change, first) = {
                let mut shared = self.inner.lock();
                if !matches!(shared.state, State::Idle | State::Closed) {
                    return Err(SignallingError::AlreadyActive {
                        state: shared.state,
                    });
                }
                shared.epoch += 1;
                let (control, control_rx) = mpsc::channel(1);
                let (first_tx, first_rx) = oneshot::channel();
                let task = tokio::spawn(supervisor::run(
                    Arc::clone(&self.inner),
                    shared.epoch,
                    control_rx,
                    first_tx,
                ));
                shared.supervisor = Some(Supervisor { task, control });
                (shared.set_state(State::Connecting), first_rx)
            };
            self.inner.emit_change(change);
            first
        };
        first.await.unwrap_or(Err(SignallingError::Closed))
    }

    /// Closes the connection with `code` (1000, or 3000–4999) and `reason`. Terminal:
    /// no reconnect follows. Fails in-flight requests with `DisconnectedError`, emits
    /// `Disconnected` (if a socket was open) and `StateChange`, then drops every
    /// handler and ends every event stream. Returns after the server acknowledged the
    /// close, or after a 1 s flush timeout. Idempotent.
    pub async fn close(&self, code: u16, reason: &str) {
        let (supervisor, was_connected) = {
            let _emitting = self.inner.emitting();
            let (change, replies, supervisor, was_connected) = {
                let mut shared = self.inner.lock();
                if shared.state == State::Closed && shared.supervisor.is_none() {
                    // Already closed (maybe by the supervisor giving up): nothing to
                    // emit, but forget what a later connect() would have restored.
                    shared.subscriptions.clear();
                    shared.positions.clear();
                    drop(shared);
                    self.inner.registry.clear();
                    return;
                }
                shared.epoch += 1;
                let was_connected = shared.outbound.take().is_some();
                shared.subscriptions.clear();
                shared.positions.clear();
                (
                    shared.set_state(State::Closed),
                    shared.take_pending(),
                    shared.supervisor.take(),
                    was_connected,
                )
            };
            fail_disconnected(replies);
            if was_connected {
                self.inner.registry.emit(&Disconnected {
                    code,
                    reason: reason.to_owned(),
                    will_reconnect: false,
                });
            }
            self.inner.emit_change(change);
            (supervisor, was_connected)
        };
        if let Some(supervisor) = supervisor {
            if was_connected {
                let (done, flushed) = oneshot::channel();
                let close = Control::Close {
                    code,
                    reason: reason.to_owned(),
                    done,
                };
                if supervisor.control.send(close).await.is_ok() {
                    let _ = tokio::time::timeout(CLOSE_FLUSH, flushed).await;
                }
            }
            supervisor.task.abort();
        }
        self.inner.registry.clear();
    }

    /// Subscribes to `channel` (or a pattern like `rooms/*`); resolves on the server's
    /// `ack`. The channel joins the auto-resubscribe set *before* the frame is sent,
    /// so a drop between send and ack cannot lose it; a refusal takes it out again.
    ///
    /// # Errors
    ///
    /// [`SignallingError::ServerRequest`] with `channel_not_authorized`,
    /// `channel_reserved`, `channel_limit_exceeded`, `invalid_channel` or
    /// `action_not_permitted`; `NotConnected`; `Disconnected`.
    pub async fn subscribe(
        &self,
        channel: &str,
        options: SubscribeOptions,
    ) -> Result<(), SignallingError> {
        self.request(Track::Subscribe(channel, options), |request_id| {
            Request::Subscribe {
                channel,
                include_sender_metadata: options.include_sender_metadata,
                request_id,
                recover: None,
            }
            .encode()
        })
        .await
    }

    /// Takes `channel` out of the auto-resubscribe set (even when not connected),
    /// then sends the unsubscribe and waits for the `ack`.
    pub async fn unsubscribe(&self, channel: &str) -> Result<(), SignallingError> {
        self.request(Track::Unsubscribe(channel), |request_id| {
            Request::Unsubscribe {
                channel,
                request_id,
            }
            .encode()
        })
        .await
    }

    /// Broadcasts `data` (any JSON-serialisable value) to every other subscriber of
    /// `channel`; resolves on the server's `ack`. You need not be subscribed.
    ///
    /// # Errors
    ///
    /// `over_message_quota` or `action_not_permitted` from the server; an oversize
    /// frame closes the connection with 1009 instead.
    pub async fn publish(
        &self,
        channel: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(), SignallingError> {
        let data = serde_json::value::to_raw_value(data).map_err(SignallingError::InvalidData)?;
        self.request(Track::Nothing, |request_id| {
            Request::Publish {
                channel,
                data: &data,
                request_id,
            }
            .encode()
        })
        .await
    }

    /// Sends `data` to every connection of `to_peer_id`, through the server.
    ///
    /// # Errors
    ///
    /// `peer_not_found` if the peer is not connected.
    pub async fn send(
        &self,
        to_peer_id: &str,
        data: &(impl Serialize + ?Sized),
    ) -> Result<(), SignallingError> {
        let data = serde_json::value::to_raw_value(data).map_err(SignallingError::InvalidData)?;
        self.request(Track::Nothing, |request_id| {
            Request::Send {
                to: to_peer_id,
                data: &data,
                request_id,
            }
            .encode()
        })
        .await
    }

    /// Calls `handler` for every event of type `E`, on the client's task: keep it
    /// short, and spawn for async work. A panic in it is caught and logged.
    pub fn on<E: Event>(&self, handler: impl Fn(&E) + Send + Sync + 'static) -> HandlerId {
        self.inner.registry.add(handler, false)
    }

    /// Like [`on`](Self::on), for the next event of type `E` only.
    pub fn once<E: Event>(&self, handler: impl Fn(&E) + Send + Sync + 'static) -> HandlerId {
        self.inner.registry.add(handler, true)
    }

    /// Removes a handler; `false` if it was already gone.
    pub fn off(&self, id: HandlerId) -> bool {
        self.inner.registry.remove(id)
    }

    /// A stream of the events of type `E`, holding at most 4096; when full, the oldest
    /// is dropped. Dropping the stream unsubscribes it; it ends after `close()`.
    pub fn events<E: Event>(&self) -> EventStream<E> {
        self.events_with_capacity(4096)
    }

    /// Like [`events`](Self::events) with another bound; 0 is unbounded.
    pub fn events_with_capacity<E: Event>(&self, capacity: usize) -> EventStream<E> {
        self.inner.registry.stream(capacity)
    }

    async fn request(
        &self,
        track: Track<'_>,
        encode: impl FnOnce(&str) -> String,
    ) -> Result<(), SignallingError> {
        let (reply, outbound, request_id) = {
            let mut shared = self.inner.lock();
            if let Track::Unsubscribe(channel) = track {
                shared.subscriptions.remove(channel);
                shared.positions.remove(channel);
            }
            let Some(outbound) = shared.outbound.clone() else {
                return Err(SignallingError::NotConnected {
                    state: shared.state,
                });
            };
            let request_id = shared.next_request_id();
            let subscribe = match track {
                Track::Subscribe(channel, options) if self.inner.options.auto_resubscribe => {
                    shared.subscriptions.insert(channel.to_owned(), options);
                    Some(channel.to_owned())
                }
                _ => None,
            };
            let (reply, wait) = oneshot::channel();
            shared.pending.insert(
                request_id.clone(),
                Pending {
                    reply: Some(reply),
                    subscribe,
                },
            );
            (wait, outbound, request_id)
        };
        if outbound.send(encode(&request_id)).await.is_err() {
            self.inner.lock().pending.remove(&request_id);
            return Err(DisconnectedError.into());
        }
        reply
            .await
            .unwrap_or_else(|_| Err(DisconnectedError.into()))
    }
}

impl fmt::Debug for SignallingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shared = self.inner.lock();
        f.debug_struct("SignallingClient")
            .field("state", &shared.state)
            .field("peer_id", &shared.peer_id)
            .field("subscriptions", &shared.subscriptions.len())
            .field("pending", &shared.pending.len())
            .finish_non_exhaustive()
    }
}
