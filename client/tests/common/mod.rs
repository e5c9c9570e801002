//! Helpers for the SDK tests: the real server in its own runtime (so a test can kill
//! it like a crashed process), a scripted WebSocket server for codes the real one
//! never sends, a manual clock, and bounded waits that fail with what was awaited.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use switchyard::server::Running;
use switchyard::settings::{KeySettings, PublishableSettings, Settings};
use switchyard_client::{
    Clock, EventStream, ReconnectOptions, SignallingClient, SignallingClientOptions, Sleep, Timer,
};
use switchyard_core::testing::{test_key, token_with};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// How long any single expectation may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// The publishable key the test server knows: `rooms/**`, every permission.
pub const PK: &str = "pk_test_sdk";

/// A server config: WebSocket on loopback port 0, the core's test key, [`PK`], and
/// no clock leeway (so token expiry tests are short).
pub fn settings() -> Settings {
    let mut s = Settings::default();
    s.listen.ws = "127.0.0.1:0".into();
    s.auth.leeway_secs = 0;
    let key = test_key();
    s.auth.keys.push(KeySettings {
        kid: key.kid,
        secret: String::from_utf8(key.secret).expect("the test secret is text"),
        algorithm: "HS256".into(),
        audience: None,
        tenant: None,
    });
    s.auth.publishable_keys.push(PublishableSettings {
        key: PK.into(),
        channels: vec!["rooms/**".into()],
        permissions: ["publish", "subscribe", "presence", "send"]
            .map(String::from)
            .to_vec(),
        tenant: None,
    });
    s
}

/// The real server (`switchyard::server::start`) in a runtime of its own: killing it
/// drops every task and socket at once, as a crashed process would.
pub struct Server {
    pub addr: SocketAddr,
    running: Option<Running>,
    runtime: Option<Runtime>,
}

impl Server {
    pub async fn start(settings: Settings) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("server runtime");
        // A restart on the same port may find the old socket still closing: retry
        // the bind, within bounds.
        let deadline = tokio::time::Instant::now() + WAIT;
        let running = loop {
            let s = settings.clone();
            let started = runtime
                .spawn(async move {
                    switchyard::server::start(&s)
                        .await
                        .map_err(|e| e.to_string())
                })
                .await
                .expect("server start task");
            match started {
                Ok(running) => break running,
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("server did not start: {e}"),
            }
        };
        Self {
            addr: running.ws_addr.expect("a WebSocket listener"),
            running: Some(running),
            runtime: Some(runtime),
        }
    }

    /// A second server on this one's port (after [`kill`](Self::kill)).
    pub async fn start_on(port: u16, mut settings: Settings) -> Self {
        settings.listen.ws = format!("127.0.0.1:{port}");
        Self::start(settings).await
    }

    /// The server's driver, for calls into its hub (a server-side kick).
    pub fn driver(&self) -> switchyard::transports::DriverHandle {
        self.running
            .as_ref()
            .expect("a running server")
            .driver
            .clone()
    }

    /// The URL a client is given (the SDK appends `/v1`).
    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// Drops the server and every connection without a close frame; returns once
    /// its sockets are gone.
    pub async fn kill(mut self) {
        drop(self.running.take());
        let runtime = self.runtime.take().expect("a running server");
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(WAIT))
            .await
            .expect("server shutdown");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.running.take());
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
}

/// A token for `sub` on `rooms/**` with every permission, expiring `secs` from now.
pub fn token(sub: &str, secs: u64) -> String {
    token_with(serde_json::json!({
        "sub": sub,
        "channels": ["rooms/**"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "metadata": {"name": sub},
        "exp": unix_now() + secs,
    }))
}

/// Reconnect quickly and forever, without jitter: for tests on tokio's clock.
pub fn fast() -> ReconnectOptions {
    ReconnectOptions {
        initial_delay: Duration::from_millis(20),
        multiplier: 2.0,
        max_delay: Duration::from_millis(200),
        jitter_ratio: 0.0,
        max_attempts: None,
    }
}

/// A client on `url` with the publishable key and [`fast`] reconnects.
pub fn key_client(url: &str) -> SignallingClient {
    SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .api_key(PK)
            .reconnect(fast()),
    )
    .expect("valid options")
}

/// A client on `url` whose token provider mints a live token for `sub`.
pub fn token_client(url: &str, sub: &'static str) -> SignallingClient {
    SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .token_provider(move || async move { Ok::<_, std::io::Error>(token(sub, 3600)) })
            .reconnect(fast()),
    )
    .expect("valid options")
}

/// The next event on `stream`, within [`WAIT`].
pub async fn next<E>(stream: &mut EventStream<E>, what: &str) -> E {
    tokio::time::timeout(WAIT, stream.recv())
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
}

/// The next event on `stream` that matches `pred`, skipping others, within [`WAIT`].
pub async fn until<E>(stream: &mut EventStream<E>, what: &str, pred: impl Fn(&E) -> bool) -> E {
    tokio::time::timeout(WAIT, async {
        loop {
            match stream.recv().await {
                Some(event) if pred(&event) => return event,
                Some(_) => {}
                None => panic!("the stream ended while waiting for {what}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A clock that moves only when told, and records every sleep asked of it.
#[derive(Clone, Default)]
pub struct ManualClock {
    inner: Arc<ClockInner>,
}

#[derive(Default)]
struct ClockInner {
    state: Mutex<ClockState>,
    changed: Notify,
}

#[derive(Default)]
struct ClockState {
    now: Duration,
    sleepers: Vec<(Duration, oneshot::Sender<()>)>,
    /// Every sleep asked for, and whether a test has looked at it.
    log: Vec<(Timer, Duration, bool)>,
}

impl Clock for ManualClock {
    fn sleep(&self, duration: Duration, timer: Timer) -> Sleep {
        let (wake, woken) = oneshot::channel();
        {
            let mut state = self.inner.state.lock().expect("clock lock");
            state.sleepers.retain(|(_, s)| !s.is_closed());
            let deadline = state.now + duration;
            state.sleepers.push((deadline, wake));
            state.log.push((timer, duration, false));
        }
        self.inner.changed.notify_waiters();
        Box::pin(async move {
            // The sender lives until the deadline passes (or the clock is dropped).
            let _ = woken.await;
        })
    }
}

impl ManualClock {
    /// Moves time forward, waking every sleep that is due.
    pub fn advance(&self, by: Duration) {
        let mut state = self.inner.state.lock().expect("clock lock");
        state.now += by;
        let now = state.now;
        let (due, later) = std::mem::take(&mut state.sleepers)
            .into_iter()
            .partition(|(deadline, _)| *deadline <= now);
        state.sleepers = later;
        for (_, wake) in due {
            let _ = wake.send(());
        }
    }

    /// The next sleep matching `pred` not yet returned, waiting for it within [`WAIT`].
    pub async fn next_sleep(&self, what: &str, pred: impl Fn(Timer) -> bool) -> (Timer, Duration) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut state = self.inner.state.lock().expect("clock lock");
                if let Some(entry) = state.log.iter_mut().find(|(t, _, seen)| !seen && pred(*t)) {
                    entry.2 = true;
                    return (entry.0, entry.1);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("timed out waiting for {what}");
            }
        }
    }

    /// The next reconnect backoff: its attempt number and duration.
    pub async fn next_backoff(&self, what: &str) -> (u32, Duration) {
        match self
            .next_sleep(what, |t| matches!(t, Timer::Backoff { .. }))
            .await
        {
            (Timer::Backoff { attempt }, d) => (attempt, d),
            _ => unreachable!("filtered on backoff"),
        }
    }

    /// How many sleeps of a kind were asked for so far.
    pub fn count(&self, pred: impl Fn(Timer) -> bool) -> usize {
        let state = self.inner.state.lock().expect("clock lock");
        state.log.iter().filter(|(t, _, _)| pred(*t)).count()
    }
}

/// A scripted WebSocket server: each accepted connection is handed to the test.
pub struct FakeServer {
    pub addr: SocketAddr,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// One connection to the [`FakeServer`].
pub struct FakeConn {
    pub ws: WebSocketStream<TcpStream>,
    /// The request's path and query.
    pub target: String,
}

impl FakeServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, conns) = mpsc::unbounded_channel();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let target = Arc::new(Mutex::new(String::new()));
                let seen = Arc::clone(&target);
                #[allow(clippy::result_large_err)] // tungstenite's callback signature
                let callback =
                    move |request: &tokio_tungstenite::tungstenite::handshake::server::Request,
                          response| {
                        *seen.lock().expect("target lock") = request.uri().to_string();
                        Ok(response)
                    };
                if let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await {
                    let target = target.lock().expect("target lock").clone();
                    let _ = tx.send(FakeConn { ws, target });
                }
            }
        });
        Self {
            addr,
            conns,
            accepted,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    pub async fn accept(&mut self, what: &str) -> FakeConn {
        tokio::time::timeout(WAIT, self.conns.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("the fake server stopped")
    }

    /// TCP connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeConn {
    pub async fn send(&mut self, frame: Value) {
        self.ws
            .send(WsMessage::text(frame.to_string()))
            .await
            .expect("fake server send");
    }

    pub async fn welcome(&mut self, peer_id: &str) {
        self.send(serde_json::json!({
            "type": "welcome", "peerId": peer_id, "serverTime": unix_now(),
            "expiresAt": null, "maxMessageSize": 65536, "iceServers": null,
        }))
        .await;
    }

    /// The next JSON frame from the client.
    pub async fn recv(&mut self, what: &str) -> Value {
        loop {
            let next = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            match next {
                Some(Ok(WsMessage::Text(text))) => {
                    return serde_json::from_str(&text).expect("the client sends JSON");
                }
                Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                other => panic!("connection ended while waiting for {what}: {other:?}"),
            }
        }
    }

    /// Closes with `code`, and waits for the client's reply.
    pub async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.into(),
        };
        let _ = self.ws.close(Some(frame)).await;
        let _ = tokio::time::timeout(WAIT, async {
            while let Some(Ok(_)) = self.ws.next().await {}
        })
        .await;
    }
}
