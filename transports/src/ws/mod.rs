//! WebSocket server on tokio-tungstenite.
//!
//! Each accepted socket is upgraded within [`WsConfig::handshake_timeout`] (so a
//! slowloris cannot hold it; with [`WsConfig::tls`] the TLS handshake counts too),
//! negotiated by [`handshake::negotiate`] (dialect by path
//! or subprotocol, credentials by header > subprotocol > query; see that module), then
//! served by the generic pump. Text and binary messages are frames; a close frame from
//! the client is a graceful close; a read error, a reset or a peer silent for
//! [`WsConfig::ping_interval`] + [`WsConfig::pong_timeout`] is a hard one.
//!
//! # TLS and plain HTTP on the same port
//!
//! With [`WsConfig::tls`] set, every connection is TLS (`wss://`, `https://`); there
//! is no plain fallback on that port. To tell a WebSocket upgrade from a plain HTTP
//! request (handed to [`WsConfig::http`]), the listener reads the request head (up to
//! 8 KiB) and replays it to whichever side serves the connection, so both work over
//! plain TCP and TLS alike.
//!
//! Memory per idle connection is kept small: tungstenite's read and write buffers are
//! [`WsConfig::read_buffer_size`] (2 KiB: a larger frame grows it for the time it takes
//! to read) and [`WsConfig::write_buffer_size`] (its 128 KiB default read buffer would
//! cost about that much per idle socket), and no message or
//! frame over the hub's `max_frame_bytes` is ever assembled: it is refused with 1009.
//!
//! Logs never carry secrets: URIs are logged with `token`/`key` values redacted, and
//! the `Authorization` and `Sec-WebSocket-Protocol` values are never logged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use switchyard_core::Open;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, timeout_at};
use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::rustls::ServerConfig;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::accept::Acceptor;
use crate::conn::reject_over_capacity;
use crate::driver::DriverHandle;

#[cfg(feature = "echo")]
pub mod echo;
pub mod handshake;
mod io;
mod rewind;

pub use handshake::Routes;
use handshake::{Negotiated, Redacted};
use io::{WsReader, WsWriter};
use rewind::{Rewind, read_head};

/// A WebSocket listener's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WsConfig {
    /// Which dialect each path serves.
    pub routes: Routes,
    /// How often the server pings an otherwise quiet connection.
    pub ping_interval: Duration,
    /// How much longer than `ping_interval` a peer may stay silent before it is
    /// dropped as dead (its room then gets the synthetic leave).
    pub pong_timeout: Duration,
    /// Time allowed from accept to a completed upgrade (TLS handshake and request
    /// head included), or to a plain HTTP request's head.
    pub handshake_timeout: Duration,
    /// tungstenite's read buffer per connection.
    pub read_buffer_size: usize,
    /// tungstenite's write buffer per connection (writes flush past it).
    pub write_buffer_size: usize,
    /// Where plain HTTP requests on this port go (REST, `/metrics`); `None` answers
    /// them like tungstenite does (400).
    pub http: Option<HttpFallback>,
    /// Browser origins allowed to open WebSockets (`https://app.example.com`; `*` for
    /// any). Empty: every origin. A request without `Origin` (not a browser) is always
    /// allowed; a listed-but-foreign one gets 403 before the upgrade (cross-site
    /// WebSocket hijacking).
    pub allowed_origins: Vec<String>,
    /// Proxies whose `X-Forwarded-For` names the client (per-IP limits and logs use
    /// the client's address). Empty: the socket's peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// TLS for every connection on this port (`wss://`, `https://`); `None`: plain
    /// (e.g. behind a TLS-terminating proxy). Build it with
    /// [`TlsIdentity::rustls_server_config`](crate::tls::TlsIdentity::rustls_server_config),
    /// or [`CertResolver::rustls_server_config`](crate::tls::CertResolver::rustls_server_config)
    /// to replace the certificate while serving, and [`ALPN`].
    pub tls: Option<Arc<ServerConfig>>,
}

/// The ALPN names the WebSocket/HTTP port offers over TLS: HTTP/1.1 only (WebSocket
/// upgrades and the REST control plane both ride it).
pub const ALPN: [&[u8]; 1] = [b"http/1.1"];

/// Any byte stream an [`HttpFallback`] can serve: a plain socket or a TLS stream, with
/// the request head the listener already read replayed first.
pub trait HttpIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> HttpIo for T {}

/// Serves a plain HTTP connection (not a WebSocket upgrade) that arrived on the
/// WebSocket port, from its first byte (TLS, if any, already undone). The control plane shares the port
/// this way without the transport knowing what it serves.
#[derive(Clone)]
pub struct HttpFallback(pub Arc<HttpHandler>);

/// What an [`HttpFallback`] runs for one connection.
pub type HttpHandler = dyn Fn(Box<dyn HttpIo>, SocketAddr) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    + Send
    + Sync;

impl std::fmt::Debug for HttpFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpFallback")
    }
}

impl Default for WsConfig {
    fn default() -> Self {
        Self {
            routes: Routes::default(),
            ping_interval: Duration::from_secs(25),
            pong_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            read_buffer_size: 2 * 1024,
            write_buffer_size: 4 * 1024,
            http: None,
            allowed_origins: Vec::new(),
            trusted_proxies: Vec::new(),
            tls: None,
        }
    }
}

/// Accepts WebSocket connections on `listener` and serves each on its own task,
/// forever.
pub async fn serve(listener: TcpListener, driver: DriverHandle, config: WsConfig) {
    let mut acceptor = Acceptor::new(listener);
    loop {
        let (stream, remote) = acceptor.accept().await;
        tokio::spawn(connection(stream, remote, driver.clone(), config.clone()));
    }
}

async fn connection(stream: TcpStream, remote: SocketAddr, driver: DriverHandle, config: WsConfig) {
    let _ = stream.set_nodelay(true);
    // One deadline for the TLS handshake, the request head and the upgrade.
    let deadline = Instant::now() + config.handshake_timeout;
    let Some(tls) = config.tls.clone() else {
        return upgrade_or_fallback(stream, remote, driver, config, deadline).await;
    };
    // Boxed: the TLS handshake and stream state is most of this future's size, and
    // every plain connection's task would otherwise carry that room for its whole life
    // (the task was 22 KiB instead of 4 KiB per idle connection).
    Box::pin(tls_connection(
        stream, tls, remote, driver, config, deadline,
    ))
    .await;
}

async fn tls_connection(
    stream: TcpStream,
    tls: Arc<ServerConfig>,
    remote: SocketAddr,
    driver: DriverHandle,
    config: WsConfig,
    deadline: Instant,
) {
    match timeout_at(deadline, TlsAcceptor::from(tls).accept(stream)).await {
        Ok(Ok(stream)) => upgrade_or_fallback(stream, remote, driver, config, deadline).await,
        Ok(Err(error)) => tracing::debug!(%remote, %error, "tls handshake failed"),
        Err(_) => tracing::debug!(%remote, "tls handshake timed out"),
    }
}

/// Reads the request head (when plain HTTP has somewhere to go), then hands the
/// connection, head replayed, to the fallback or to the WebSocket upgrade.
async fn upgrade_or_fallback<S: HttpIo>(
    mut stream: S,
    remote: SocketAddr,
    driver: DriverHandle,
    config: WsConfig,
    deadline: Instant,
) {
    let mut head = Vec::new();
    if let Some(http) = &config.http {
        head = match timeout_at(deadline, read_head(&mut stream)).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(_) => return tracing::debug!(%remote, "request head timed out"),
        };
        if !has_upgrade_header(&head) {
            return (http.0)(Box::new(Rewind::new(head, stream)), remote).await;
        }
    }
    let stream = Rewind::new(head, stream);
    // Taken before the upgrade; over the cap the upgrade still completes, so that a
    // browser can read the 4010.
    let admission = driver.admit();
    let Some((ws, negotiated)) =
        upgrade(stream, remote, &config, driver.max_frame_bytes(), deadline).await
    else {
        return;
    };
    let Negotiated {
        dialect,
        credentials,
        forwarded_for,
        origin,
        ..
    } = negotiated;
    let remote = handshake::client_addr(remote, forwarded_for.as_deref(), &config.trusted_proxies);
    let (sink, stream) = ws.split();
    let writer = WsWriter {
        sink,
        ping_interval: config.ping_interval,
    };
    let Some(admission) = admission else {
        return reject_over_capacity(writer, driver.close_timeout()).await;
    };
    let reader = WsReader {
        stream,
        window: config.ping_interval + config.pong_timeout,
    };
    let mut open = Open::new(dialect);
    open.credentials = credentials;
    open.remote = Some(remote);
    open.origin = origin;
    let counted = driver.metrics().track("ws");
    // A task of its own: this one's future is sized for the handshake too, and an idle
    // connection should hold only what serving it needs.
    tokio::spawn(async move {
        let _counted = counted;
        admission.serve(reader, writer, open).await;
    });
}

/// tungstenite's settings for one connection: small buffers, and no message or frame
/// over `max` bytes ever assembled (refused with 1009 instead).
fn websocket_config(config: &WsConfig, max: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(config.read_buffer_size)
        .write_buffer_size(config.write_buffer_size)
        .max_message_size(Some(max))
        .max_frame_size(Some(max))
}

/// The upgrade every route goes through, by `deadline`: the origin check, the
/// negotiation ([`on_request`]) and tungstenite sized by [`websocket_config`]. `None`
/// when it failed, was refused or timed out (logged here).
#[allow(
    clippy::result_large_err,
    reason = "the upgrade callback's signature is tungstenite's"
)]
async fn upgrade<S: HttpIo>(
    stream: Rewind<S>,
    remote: SocketAddr,
    config: &WsConfig,
    max: usize,
    deadline: Instant,
) -> Option<(WebSocketStream<Rewind<S>>, Negotiated)> {
    let mut negotiated = None;
    let callback = |request: &Request, response: Response| {
        on_request(config, request, response, &mut negotiated)
    };
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        callback,
        Some(websocket_config(config, max)),
    );
    let ws = match timeout_at(deadline, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "websocket upgrade failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "websocket upgrade timed out");
            return None;
        }
    };
    // Always set in practice: a completed upgrade went through the callback.
    negotiated.map(|n| (ws, n))
}

/// `Upgrade: websocket` among the head's header lines (names and values compared
/// without case).
fn has_upgrade_header(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n').skip(1).any(|line| {
        let line = String::from_utf8_lossy(line);
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("upgrade")
                && value.trim().eq_ignore_ascii_case("websocket")
        })
    })
}

/// The upgrade callback: negotiate, answer 404 or echo the chosen subprotocol.
#[allow(
    clippy::result_large_err,
    reason = "the upgrade callback's signature is tungstenite's"
)]
fn on_request(
    config: &WsConfig,
    request: &Request,
    mut response: Response,
    out: &mut Option<Negotiated>,
) -> Result<Response, ErrorResponse> {
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let origin = request
        .headers()
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok());
    if !handshake::origin_allowed(origin, &config.allowed_origins) {
        tracing::debug!(uri = %Redacted(target), origin, "websocket upgrade refused: origin not allowed");
        return Err(refusal(StatusCode::FORBIDDEN));
    }
    let negotiated = match handshake::negotiate(&config.routes, request) {
        Ok(negotiated) => negotiated,
        Err(status) => {
            tracing::debug!(uri = %Redacted(target), %status, "websocket upgrade refused");
            return Err(refusal(status));
        }
    };
    if let Some(protocol) = &negotiated.protocol {
        let Ok(value) = HeaderValue::from_str(protocol) else {
            return Err(refusal(StatusCode::BAD_REQUEST));
        };
        response
            .headers_mut()
            .insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    }
    tracing::debug!(uri = %Redacted(target), dialect = negotiated.dialect.name(), "websocket upgrade");
    *out = Some(negotiated);
    Ok(response)
}

fn refusal(status: StatusCode) -> ErrorResponse {
    let mut response = ErrorResponse::new(status.canonical_reason().map(str::to_owned));
    *response.status_mut() = status;
    response
}
