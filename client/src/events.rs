//! Typed events, and the two ways to receive them: handlers registered per event type
//! (`on`/`once`/`off`), and bounded async streams that drop the oldest event when full.
//!
//! Implementation note: an event is pushed to the streams first, then handed to the
//! handlers in registration order. Handlers run inline on the client's task, each
//! under `catch_unwind`: a panicking handler is logged and skipped, never propagated
//! to the emitter or to its siblings. No lock is held while a handler runs, so a
//! handler may call `on`/`off`/`state()` itself.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value;

use crate::State;

/// An event the client emits. Sealed: the set is the client's.
pub trait Event: Clone + Send + Sync + 'static + sealed::Sealed {}

mod sealed {
    pub trait Sealed {}
}

macro_rules! events {
    ($($name:ident),* $(,)?) => {$(
        impl sealed::Sealed for $name {}
        impl Event for $name {}
    )*};
}

events!(
    Connected,
    Disconnected,
    StateChange,
    Message,
    Direct,
    Presence,
    ServerError,
    GoingAway,
    TokenProviderError,
    TokenRefreshed,
    Recovered,
);

/// After every successful `welcome`: the first connect and every reconnect.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Connected {
    /// The server-assigned peer id, or the token's `sub`.
    pub peer_id: String,
    /// Unix seconds when the server stamped the welcome (to estimate clock skew).
    pub server_time: u64,
    /// The token's `exp` (unix seconds), `None` for publishable keys.
    pub expires_at: Option<u64>,
    /// `false` on the first connect, `true` on every automatic reconnect.
    pub is_reconnect: bool,
    /// The server's frame size cap, in bytes (counted on the whole frame).
    pub max_message_size: u64,
    /// ICE servers from the token's `metadata.iceServers`, `None` without any.
    pub ice_servers: Option<Vec<IceServer>>,
}

/// One ICE server, as the token's `metadata.iceServers` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct IceServer {
    /// `stun:`/`turn:` URLs (a single string on the wire is one URL).
    #[serde(deserialize_with = "one_or_many")]
    pub urls: Vec<String>,
    /// TURN username.
    #[serde(default)]
    pub username: Option<String>,
    /// TURN credential.
    #[serde(default)]
    pub credential: Option<String>,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

/// A connection that had been welcomed closed. `will_reconnect` says whether the
/// client will retry; `false` is terminal (a caller-action code, reconnect off,
/// `max_attempts` spent, or `close()`).
///
/// While reconnecting, failed attempts emit nothing: the next `Disconnected` is the
/// terminal one (with the last attempt's code) if the client gives up.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Disconnected {
    /// The close code (1006 when the socket died without a close frame).
    pub code: u16,
    /// The close reason.
    pub reason: String,
    /// Whether the client will try again.
    pub will_reconnect: bool,
}

/// Every state transition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StateChange {
    /// The state left.
    pub from: State,
    /// The state entered.
    pub to: State,
}

/// A peer published to a channel you are subscribed to.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Message {
    /// The concrete channel (also for wildcard subscriptions).
    pub channel: String,
    /// The sender's peer id, stamped by the server: trustworthy.
    pub sender_peer_id: String,
    /// What the sender published: untrusted.
    pub data: Value,
    /// The sender's token-asserted metadata, on subscriptions made with
    /// `include_sender_metadata`. Untrusted peer input: validate it.
    pub sender_metadata: Option<Value>,
    /// The message's offset in the channel's stream, on channels the server keeps a
    /// history of (`None` elsewhere). Offsets increase by one within an epoch.
    pub offset: Option<u64>,
}

/// The answer to an automatic re-subscribe that asked to recover a channel with a
/// history. With `recovered: true`, every message published while the client was
/// away has arrived as a [`Message`] before this event, once each and in order, and
/// live ones follow. With `recovered: false`, the server could not replay the gap (it
/// no longer holds it, or the stream started again): reload the channel's state (for
/// instance from `GET /v1/history`), since messages were missed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// The channel.
    pub channel: String,
    /// Whether nothing was missed.
    pub recovered: bool,
}

/// A peer sent to you directly.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Direct {
    /// The sender's peer id, stamped by the server.
    pub sender_peer_id: String,
    /// What the sender sent.
    pub data: Value,
    /// The sender's metadata, when it has any.
    pub sender_metadata: Option<Value>,
}

/// A roster change on a subscribed channel. The first one after a subscribe is a
/// snapshot of everyone else already there (sent even when empty); later ones are
/// deltas. You never appear in your own presence events.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Presence {
    /// The channel.
    pub channel: String,
    /// Peers that joined (or, in a snapshot, are there).
    pub joined: Vec<PresencePeer>,
    /// Peers that left.
    pub left: Vec<PresencePeer>,
    /// A full roster (after a subscribe, or a resync): replace, do not merge.
    pub snapshot: bool,
    /// Peers in the channel, when the server says.
    pub count: Option<u64>,
}

/// A peer in a presence event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct PresencePeer {
    /// The peer's id.
    pub peer_id: String,
    /// Its token-asserted metadata (`None` in `left` entries).
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// A server error not tied to a pending request (per-request refusals come back as
/// `ServerRequestError` from the awaited call instead). Not fatal.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerError {
    /// The protocol's error code.
    pub code: String,
    /// The server's message.
    pub message: String,
    /// The request it answers, if it carried one the caller no longer waits for
    /// (an automatic re-subscribe, for instance).
    pub request_id: Option<String>,
}

/// The server is shutting down. Informational: the client uses its normal backoff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GoingAway {
    /// The server's hint, in milliseconds.
    pub retry_after_ms: Option<u64>,
}

/// The token provider failed three or more times in a row (emitted on the third
/// failure and every one after it). Informational: the client keeps retrying.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TokenProviderError {
    /// Failures in a row.
    pub consecutive_failures: u32,
    /// The last error.
    pub error: Arc<dyn std::error::Error + Send + Sync>,
}

/// The connection's token was replaced in place (`refresh`, acknowledged by the
/// server) before it expired: no reconnect, subscriptions kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenRefreshed {
    /// The new token's `exp` (unix seconds), `None` if it has none.
    pub expires_at: Option<u64>,
}

/// Identifies a registered handler, for [`off`](crate::SignallingClient::off).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HandlerId(u64);

type Handler<E> = Arc<dyn Fn(&E) + Send + Sync>;

/// The handlers and streams of one event type.
struct Slot<E> {
    handlers: BTreeMap<u64, (Handler<E>, bool)>,
    streams: Vec<Arc<Shared<E>>>,
}

/// A type-erased [`Slot`], so `off` and `clear` need not know the type.
trait AnySlot: Send + Sync {
    fn remove(&mut self, id: u64) -> bool;
    fn clear(&mut self);
    fn as_any(&mut self) -> &mut dyn Any;
}

impl<E: Event> AnySlot for Slot<E> {
    fn remove(&mut self, id: u64) -> bool {
        self.handlers.remove(&id).is_some()
    }

    fn clear(&mut self) {
        self.handlers.clear();
        for stream in self.streams.drain(..) {
            stream.end();
        }
    }

    fn as_any(&mut self) -> &mut dyn Any {
        self
    }
}

/// Every handler and stream of a client.
#[derive(Default)]
pub(crate) struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Default)]
struct RegistryInner {
    next: u64,
    slots: HashMap<TypeId, Box<dyn AnySlot>>,
}

impl RegistryInner {
    fn slot<E: Event>(&mut self) -> &mut Slot<E> {
        let slot = self.slots.entry(TypeId::of::<E>()).or_insert_with(|| {
            Box::new(Slot::<E> {
                handlers: BTreeMap::new(),
                streams: Vec::new(),
            })
        });
        // The slot under `TypeId::of::<E>()` is always a `Slot<E>`: inserted just above.
        slot.as_any()
            .downcast_mut()
            .expect("slot type matches its key")
    }
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, RegistryInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn add<E: Event>(
        &self,
        handler: impl Fn(&E) + Send + Sync + 'static,
        once: bool,
    ) -> HandlerId {
        let mut inner = self.lock();
        inner.next += 1;
        let id = inner.next;
        inner
            .slot::<E>()
            .handlers
            .insert(id, (Arc::new(handler), once));
        HandlerId(id)
    }

    pub(crate) fn remove(&self, id: HandlerId) -> bool {
        self.lock().slots.values_mut().any(|slot| slot.remove(id.0))
    }

    pub(crate) fn stream<E: Event>(&self, capacity: usize) -> EventStream<E> {
        let shared = Arc::new(Shared {
            state: Mutex::new(StreamState {
                queue: VecDeque::new(),
                capacity,
                dropped: 0,
                ended: false,
                waker: None,
            }),
            detached: AtomicBool::new(false),
        });
        self.lock().slot::<E>().streams.push(Arc::clone(&shared));
        EventStream { shared }
    }

    /// Drops every handler and ends every stream (after `close()`).
    pub(crate) fn clear(&self) {
        for slot in self.lock().slots.values_mut() {
            slot.clear();
        }
    }

    pub(crate) fn emit<E: Event>(&self, event: &E) {
        let (handlers, streams) = {
            let mut inner = self.lock();
            let slot = inner.slot::<E>();
            slot.streams.retain(|s| !s.detached.load(Ordering::Relaxed));
            let handlers: Vec<Handler<E>> =
                slot.handlers.values().map(|(h, _)| Arc::clone(h)).collect();
            slot.handlers.retain(|_, (_, once)| !*once);
            (handlers, slot.streams.clone())
        };
        for stream in streams {
            stream.push(event.clone());
        }
        for handler in handlers {
            if catch_unwind(AssertUnwindSafe(|| handler(event))).is_err() {
                tracing::error!(
                    event = std::any::type_name::<E>(),
                    "an event handler panicked; it was skipped"
                );
            }
        }
    }
}

struct Shared<E> {
    state: Mutex<StreamState<E>>,
    detached: AtomicBool,
}

struct StreamState<E> {
    queue: VecDeque<E>,
    capacity: usize,
    dropped: u64,
    ended: bool,
    waker: Option<Waker>,
}

impl<E> Shared<E> {
    fn lock(&self) -> MutexGuard<'_, StreamState<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, event: E) {
        let mut state = self.lock();
        if state.capacity > 0 && state.queue.len() >= state.capacity {
            state.queue.pop_front();
            state.dropped += 1;
        }
        state.queue.push_back(event);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    fn end(&self) {
        let mut state = self.lock();
        state.ended = true;
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }
}

/// A bounded stream of one event type. When full, the oldest event is dropped (and
/// counted in [`dropped`](Self::dropped)). It ends after `close()`; dropping it
/// unsubscribes.
pub struct EventStream<E> {
    shared: Arc<Shared<E>>,
}

impl<E> fmt::Debug for EventStream<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.lock();
        f.debug_struct("EventStream")
            .field("queued", &state.queue.len())
            .field("capacity", &state.capacity)
            .field("dropped", &state.dropped)
            .field("ended", &state.ended)
            .finish()
    }
}

impl<E> EventStream<E> {
    /// The next event, or `None` once the client is closed and the queue is drained.
    pub async fn recv(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next event if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<E> {
        self.shared.lock().queue.pop_front()
    }

    /// Events dropped so far because the stream was full.
    pub fn dropped(&self) -> u64 {
        self.shared.lock().dropped
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Option<E>> {
        let mut state = self.shared.lock();
        if let Some(event) = state.queue.pop_front() {
            return Poll::Ready(Some(event));
        }
        if state.ended {
            return Poll::Ready(None);
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl<E> Stream for EventStream<E> {
    type Item = E;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        self.poll_recv(cx)
    }
}

impl<E> Drop for EventStream<E> {
    fn drop(&mut self) {
        self.shared.detached.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn going_away(ms: u64) -> GoingAway {
        GoingAway {
            retry_after_ms: Some(ms),
        }
    }

    #[test]
    fn a_full_stream_drops_the_oldest() {
        let registry = Registry::default();
        let mut stream = registry.stream::<GoingAway>(2);
        for ms in 1..=5 {
            registry.emit(&going_away(ms));
        }
        assert_eq!(stream.dropped(), 3);
        assert_eq!(stream.try_recv(), Some(going_away(4)));
        assert_eq!(stream.try_recv(), Some(going_away(5)));
        assert_eq!(stream.try_recv(), None);
    }

    #[test]
    fn capacity_zero_is_unbounded_and_streams_end_on_clear() {
        let registry = Registry::default();
        let mut stream = registry.stream::<GoingAway>(0);
        for ms in 0..10_000 {
            registry.emit(&going_away(ms));
        }
        assert_eq!(stream.dropped(), 0);
        registry.clear();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let drained = runtime.block_on(async {
            let mut n = 0;
            while stream.recv().await.is_some() {
                n += 1;
            }
            n
        });
        assert_eq!(drained, 10_000, "queued events are drained before the end");
    }

    #[test]
    fn handlers_once_off_and_a_panicking_sibling() {
        let registry = Registry::default();
        let seen = Arc::new(AtomicUsize::new(0));
        let once = Arc::new(AtomicUsize::new(0));
        registry.add::<GoingAway>(|_| panic!("a broken handler"), false);
        let s = Arc::clone(&seen);
        let id = registry.add::<GoingAway>(
            move |_| {
                s.fetch_add(1, Ordering::SeqCst);
            },
            false,
        );
        let o = Arc::clone(&once);
        registry.add::<GoingAway>(
            move |_| {
                o.fetch_add(1, Ordering::SeqCst);
            },
            true,
        );
        registry.emit(&going_away(1));
        registry.emit(&going_away(2));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
        assert_eq!(once.load(Ordering::SeqCst), 1);
        assert!(registry.remove(id));
        assert!(!registry.remove(id));
        registry.emit(&going_away(3));
        assert_eq!(seen.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_dropped_stream_is_unsubscribed() {
        let registry = Registry::default();
        let stream = registry.stream::<GoingAway>(1);
        drop(stream);
        registry.emit(&going_away(1));
        assert!(registry.lock().slot::<GoingAway>().streams.is_empty());
    }
}
