//! gRPC listener on tonic: the service of `proto/switchyard.proto`, on the same hub.
//!
//! - **A wire for the JSON dialect.** `Connect` is one bidirectional stream per
//!   connection. Each typed `ClientFrame` is written as the JSON dialect's frame and
//!   decoded by [`Dialect::Json`] on the connection's task, like a WebSocket text
//!   frame; each JSON frame the hub sends back is read into a typed `ServerFrame`
//!   ([`frames`]). The pump is [`DriverHandle::serve`]'s, so the outbound queue,
//!   slow-consumer close (4013), frame size (1009) and rate limits are every wire's.
//! - **Credentials in metadata.** `authorization: Bearer <JWT or AT_…>` is the
//!   connection's [`Credentials::Token`]; none is an anonymous connection.
//! - **Closes as statuses.** A hub close ends the response stream with a gRPC status
//!   ([`status_for`]): 1000 is `OK`, 4001 `UNAUTHENTICATED`, 4013
//!   `RESOURCE_EXHAUSTED`, …; the message starts with the close code
//!   (`4001 invalid token`) and the trailer `switchyard-close-code` carries it alone.
//! - **Backpressure.** Frames reach tonic through a small bounded channel, and tonic
//!   pulls only as HTTP/2 flow control lets it: a client that stops reading fills the
//!   channel, then the connection's outbound queue, and the hub closes it with 4013.
//! - **Unary `Publish`** is the control plane's (API keys live in the binary): the
//!   server hands in a [`Publisher`]; without one it answers `UNIMPLEMENTED`.
//! - **TLS** is the listener's own tokio-rustls acceptor ([`GrpcConfig::tls`], ALPN
//!   `h2`), with the server's one crypto backend; tonic's TLS features stay off.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use switchyard_core::{CloseCode, Credentials, Dialect, Open};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::accept::Acceptor;
use crate::conn::{FrameRead, FrameWrite, ReadError};
use crate::driver::DriverHandle;

pub mod frames;

/// The code generated from `proto/switchyard.proto` (package `switchyard.v1`):
/// messages, the server trait and a client. Committed; a test checks it is current.
#[allow(
    missing_docs,
    unreachable_pub,
    unused_qualifications,
    clippy::all,
    clippy::pedantic,
    clippy::use_self,
    rustdoc::all
)]
pub mod pb {
    include!("switchyard.v1.rs");
}

pub use pb::switchyard_server::SwitchyardServer;

/// The ALPN name gRPC over TLS negotiates.
pub const ALPN: [&[u8]; 1] = [b"h2"];

/// The trailer that carries the close code of a closed `Connect` stream.
pub const CLOSE_CODE_TRAILER: &str = "switchyard-close-code";

/// Frames between the connection's pump and tonic's response stream: small, so that
/// a client that stops reading is the outbound queue's problem (and then 4013).
const RESPONSE_BUFFER: usize = 8;

/// Room above `max_frame_bytes` for a message's protobuf framing, so that an
/// oversize payload reaches the hub's own size check (1009) with its request id.
const DECODE_SLACK: usize = 4096;

/// Unary `Publish`, answered by the control plane (which holds the API keys).
#[async_trait]
pub trait Publisher: Send + Sync + 'static {
    /// Publishes `request` for the caller whose metadata is `metadata`, or refuses it
    /// (`UNAUTHENTICATED` without a valid API key).
    async fn publish(
        &self,
        metadata: &MetadataMap,
        request: pb::PublishRequest,
    ) -> Result<pb::PublishReply, Status>;
}

/// A gRPC listener's settings.
#[derive(Clone, Default)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// TLS (ALPN `h2`); `None`: plaintext HTTP/2 (h2c).
    pub tls: Option<Arc<ServerConfig>>,
    /// Who answers unary `Publish`; `None`: `UNIMPLEMENTED`.
    pub publisher: Option<Arc<dyn Publisher>>,
}

impl std::fmt::Debug for GrpcConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcConfig")
            .field("tls", &self.tls.is_some())
            .field("publisher", &self.publisher.is_some())
            .finish()
    }
}

/// Serves the gRPC service on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, driver: DriverHandle, config: GrpcConfig) {
    let max_decoding = driver.max_frame_bytes().saturating_add(DECODE_SLACK);
    let service = Service {
        driver,
        publisher: config.publisher,
    };
    let service = SwitchyardServer::new(service).max_decoding_message_size(max_decoding);
    let (accepted, incoming) = mpsc::channel::<io::Result<Io>>(64);
    let tls = config.tls.map(TlsAcceptor::from);
    let accepting = accept_loop(listener, tls, accepted);
    let incoming = futures_util::stream::unfold(incoming, |mut rx| async move {
        rx.recv().await.map(|io| (io, rx))
    });
    let serving = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming(incoming);
    tokio::select! {
        () = accepting => {}
        served = serving => if let Err(error) = served {
            tracing::error!(%error, "gRPC listener failed");
        },
    }
}

/// Accepts connections and, with TLS, completes each handshake on its own task, so a
/// slow handshake never holds up the next accept.
async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    accepted: mpsc::Sender<io::Result<Io>>,
) {
    let mut acceptor = Acceptor::new(listener);
    loop {
        let (stream, remote) = acceptor.accept().await;
        let _ = stream.set_nodelay(true);
        let local = stream.local_addr().ok();
        let Some(tls) = tls.clone() else {
            let io = Io {
                stream: Wire::Plain(stream),
                local,
                remote,
            };
            if accepted.send(Ok(io)).await.is_err() {
                return;
            }
            continue;
        };
        let accepted = accepted.clone();
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await;
            match handshake {
                Ok(Ok(stream)) => {
                    let io = Io {
                        stream: Wire::Tls(Box::new(stream)),
                        local,
                        remote,
                    };
                    let _ = accepted.send(Ok(io)).await;
                }
                Ok(Err(error)) => tracing::debug!(%remote, %error, "gRPC TLS handshake failed"),
                Err(_) => tracing::debug!(%remote, "gRPC TLS handshake timed out"),
            }
        });
    }
}

/// Time from accept to a completed TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An accepted connection, plain or TLS, with the addresses tonic reports.
struct Io {
    stream: Wire,
    local: Option<SocketAddr>,
    remote: SocketAddr,
}

enum Wire {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl Connected for Io {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        TcpConnectInfo {
            local_addr: self.local,
            remote_addr: Some(self.remote),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Wire::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Wire::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Wire::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Wire::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Wire::Plain(s) => Pin::new(s).poll_flush(cx),
            Wire::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Wire::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Wire::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Wire::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Wire::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Wire::Plain(s) => s.is_write_vectored(),
            Wire::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The service: every `Connect` is a connection of the hub.
struct Service {
    driver: DriverHandle,
    publisher: Option<Arc<dyn Publisher>>,
}

/// What the response stream yields.
type Item = Result<pb::ServerFrame, Status>;

#[async_trait]
impl pb::switchyard_server::Switchyard for Service {
    type ConnectStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

    async fn connect(
        &self,
        request: Request<Streaming<pb::ClientFrame>>,
    ) -> Result<Response<Self::ConnectStream>, Status> {
        let mut open = Open::new(Dialect::Json);
        open.remote = request.remote_addr();
        if let Some(token) = bearer(request.metadata()) {
            open.credentials = Credentials::Token(token.to_owned());
        }
        let reader = GrpcRead(request.into_inner());
        let (frames, rx) = mpsc::channel(RESPONSE_BUFFER);
        let (abort, aborted) = oneshot::channel();
        let writer = GrpcWrite {
            frames: Some(frames),
            abort: Some(abort),
        };
        let driver = self.driver.clone();
        tokio::spawn(async move {
            let _counted = driver.metrics().track("grpc");
            driver.serve(reader, writer, open).await;
        });
        Ok(Response::new(Box::pin(response_stream(rx, aborted))))
    }

    async fn publish(
        &self,
        request: Request<pb::PublishRequest>,
    ) -> Result<Response<pb::PublishReply>, Status> {
        let Some(publisher) = &self.publisher else {
            return Err(Status::unimplemented("publishing is not served here"));
        };
        let (metadata, _, request) = request.into_parts();
        publisher
            .publish(&metadata, request)
            .await
            .map(Response::new)
    }
}

/// The frames, then the end: the stream ends after the writer's close (a status, or
/// nothing for a normal close), or at once with the status of an abort.
fn response_stream(
    frames: mpsc::Receiver<Item>,
    aborted: oneshot::Receiver<Status>,
) -> impl Stream<Item = Item> + Send {
    struct Pending {
        frames: mpsc::Receiver<Item>,
        /// `None` once the writer is gone without an abort: only its frames are left.
        aborted: Option<oneshot::Receiver<Status>>,
    }
    let pending = Pending {
        frames,
        aborted: Some(aborted),
    };
    futures_util::stream::unfold(Some(pending), |pending| async move {
        let mut pending = pending?;
        loop {
            let Pending { frames, aborted } = &mut pending;
            let item = tokio::select! {
                biased;
                status = async { aborted.as_mut().expect("guarded by the precondition").await },
                    if aborted.is_some() => match status {
                    Ok(status) => return Some((Err(status), None)),
                    Err(_) => {
                        pending.aborted = None;
                        continue;
                    }
                },
                item = frames.recv() => item?,
            };
            // A status is the stream's last item.
            let next = item.is_ok().then_some(pending);
            return Some((item, next));
        }
    })
}

/// `authorization: Bearer <token>` → the token.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then_some(token)
}

/// The gRPC status a hub close ends the stream with; `None` for a normal close
/// (1000), which ends it with `OK`. The table is in docs/protocol.md, "gRPC".
pub fn status_for(code: CloseCode, reason: &str) -> Option<Status> {
    let grpc = match code {
        CloseCode::NORMAL => return None,
        CloseCode::GOING_AWAY => Code::Unavailable,
        CloseCode::PROTOCOL_ERROR | CloseCode::INVALID_PAYLOAD => Code::InvalidArgument,
        CloseCode::POLICY | CloseCode::CHANNEL_NOT_AUTHORIZED | CloseCode::ACCOUNT_SUSPENDED => {
            Code::PermissionDenied
        }
        CloseCode::MESSAGE_TOO_BIG => Code::OutOfRange,
        CloseCode::INTERNAL => Code::Internal,
        CloseCode::CLIENT_INACTIVITY => Code::DeadlineExceeded,
        CloseCode::INVALID_TOKEN | CloseCode::TOKEN_EXPIRED => Code::Unauthenticated,
        CloseCode::OVER_CONCURRENT_LIMIT
        | CloseCode::OVER_MESSAGE_RATE
        | CloseCode::SLOW_CONSUMER => Code::ResourceExhausted,
        CloseCode::ADMIN_DISCONNECT => Code::Aborted,
        _ => Code::Unknown,
    };
    let mut metadata = MetadataMap::new();
    metadata.insert(CLOSE_CODE_TRAILER, MetadataValue::from(code.0));
    let message = if reason.is_empty() {
        code.0.to_string()
    } else {
        format!("{} {reason}", code.0)
    };
    Some(Status::with_metadata(grpc, message, metadata))
}

/// The request stream: each `ClientFrame` as the JSON dialect's frame.
struct GrpcRead(Streaming<pb::ClientFrame>);

#[async_trait]
impl FrameRead for GrpcRead {
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
        match self.0.message().await {
            Ok(Some(frame)) => Some(Ok(frames::client_frame_json(&frame))),
            Ok(None) => None,
            // tonic refuses a message over its decoding limit before we see it.
            Err(status) if status.code() == Code::OutOfRange => Some(Err(ReadError::TooLarge {
                len: usize::MAX,
                max: usize::MAX,
            })),
            Err(status) => Some(Err(ReadError::Io(io::Error::other(status.to_string())))),
        }
    }
}

/// The response stream's sending half.
struct GrpcWrite {
    /// `None` once closed.
    frames: Option<mpsc::Sender<Item>>,
    abort: Option<oneshot::Sender<Status>>,
}

#[async_trait]
impl FrameWrite for GrpcWrite {
    async fn write_frames(&mut self, batch: &[Bytes]) -> io::Result<()> {
        let frames = self.frames.as_ref().ok_or(io::ErrorKind::BrokenPipe)?;
        for frame in batch {
            let Some(frame) = frames::server_frame(frame) else {
                tracing::debug!("a JSON frame with no gRPC form, skipped");
                continue;
            };
            frames
                .send(Ok(frame))
                .await
                .map_err(|_| io::Error::from(io::ErrorKind::BrokenPipe))?;
        }
        Ok(())
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let Some(frames) = self.frames.take() else {
            return;
        };
        if let Some(status) = status_for(code, reason) {
            let _ = frames.send(Err(status)).await;
        }
        // Dropping the sender ends the stream (with `OK` after a normal close).
        drop(frames);
    }

    fn abort(&mut self, code: CloseCode, reason: &str) {
        self.frames = None;
        let status = status_for(code, reason).unwrap_or_else(|| Status::aborted(reason.to_owned()));
        if let Some(abort) = self.abort.take() {
            let _ = abort.send(status);
        }
    }
}
