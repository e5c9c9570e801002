//! The wire under a session: a WebSocket (plain or over TLS), or newline-delimited
//! JSON frames over QUIC
//! (one client-opened bidirectional stream) or TCP. The supervisor sees only text
//! frames in and out and one close code at the end, so reconnect, backoff,
//! re-subscribe and events are the same on every wire.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use quinn::crypto::rustls::QuicClientConfig;
use quinn::rustls::{self, RootCertStore};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};

use crate::close_code::{ABNORMAL, MESSAGE_TOO_BIG};
use crate::error::OptionsError;
use crate::options::{Endpoint, Transport};

/// How long a close handshake may take before the wire is simply dropped.
pub(crate) const CLOSE_FLUSH: Duration = Duration::from_secs(1);

/// The longest line accepted from a line wire (well above any server frame limit).
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The ALPN name a `wss://` client offers (the server's WebSocket/HTTP port speaks
/// HTTP/1.1 only).
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The QUIC ALPN name of the JSON dialect.
const ALPN_JSON: &[u8] = b"switchyard-json";

/// A transport, checked and ready to dial.
#[derive(Clone, Debug)]
pub(crate) enum Wire {
    /// `tls`: `wss://`, `None`: `ws://`.
    WebSocket {
        tls: Option<Tls>,
    },
    Quic {
        config: quinn::ClientConfig,
        server_name: String,
    },
    Tcp {
        hello: bool,
    },
}

impl Wire {
    /// Builds the wire for `transport` (QUIC: the TLS config trusting its roots, with a
    /// keepalive and an idle timeout of `inactivity`).
    pub(crate) fn new(
        transport: &Transport,
        host: &str,
        inactivity: Duration,
    ) -> Result<Self, OptionsError> {
        Ok(match transport {
            Transport::WebSocket => Self::WebSocket { tls: None },
            Transport::TcpLines { hello } => Self::Tcp { hello: *hello },
            Transport::Quic {
                server_name,
                trusted_certs,
            } => {
                if trusted_certs.is_empty() {
                    return Err(OptionsError::Invalid(
                        "Transport::Quic needs at least one trusted certificate",
                    ));
                }
                let mut roots = RootCertStore::empty();
                for cert in trusted_certs {
                    roots.add(cert.clone()).map_err(|_| {
                        OptionsError::Invalid("a trusted QUIC certificate is unusable")
                    })?;
                }
                let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
                let mut tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(|_| OptionsError::Invalid("TLS 1.3 is unavailable"))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                tls.alpn_protocols = vec![ALPN_JSON.to_vec()];
                let crypto = QuicClientConfig::try_from(tls)
                    .map_err(|_| OptionsError::Invalid("no QUIC cipher suite"))?;
                let mut config = quinn::ClientConfig::new(Arc::new(crypto));
                let mut transport = quinn::TransportConfig::default();
                let idle = quinn::IdleTimeout::try_from(inactivity)
                    .map_err(|_| OptionsError::Invalid("inactivity_timeout is too long"))?;
                transport
                    .max_idle_timeout(Some(idle))
                    .keep_alive_interval(Some((inactivity / 3).max(Duration::from_millis(1))));
                config.transport_config(Arc::new(transport));
                Self::Quic {
                    config,
                    server_name: server_name.clone().unwrap_or_else(|| host.to_owned()),
                }
            }
        })
    }

    /// A `wss://` wire: TLS 1.3 to `host` (a DNS name or an IP address, checked against
    /// the certificate), trusting the web PKI roots (if `web_pki_roots`) and `extra`.
    pub(crate) fn secure_websocket(
        host: &str,
        extra: &[CertificateDer<'static>],
        web_pki_roots: bool,
    ) -> Result<Self, OptionsError> {
        if !web_pki_roots && extra.is_empty() {
            return Err(OptionsError::Invalid(
                "wss:// without the web PKI roots needs at least one trusted certificate",
            ));
        }
        let mut roots = RootCertStore::empty();
        if web_pki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in extra {
            roots
                .add(cert.clone())
                .map_err(|_| OptionsError::Invalid("a trusted wss:// certificate is unusable"))?;
        }
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| OptionsError::Invalid("the wss:// host is not a valid TLS server name"))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|_| OptionsError::Invalid("TLS 1.3 is unavailable"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
        Ok(Self::WebSocket {
            tls: Some(Tls {
                connector: TlsConnector::from(Arc::new(tls)),
                server_name,
            }),
        })
    }

    /// Whether the server keeps the session visibly alive (WebSocket pings). On line
    /// wires nothing arrives while the rooms are quiet: QUIC has its own keepalive and
    /// idle timeout, TCP relies on the kernel.
    pub(crate) fn has_heartbeat(&self) -> bool {
        matches!(self, Self::WebSocket { .. })
    }
}

/// What a `wss://` wire dials with.
#[derive(Clone)]
pub(crate) struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// The byte stream under a WebSocket: TCP, or TLS over TCP.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An open connection.
pub(crate) enum Link {
    Ws(Box<WebSocketStream<Box<dyn Io>>>),
    Lines(Box<Lines>),
}

/// What [`Link::recv`] got.
pub(crate) enum Received {
    Text(String),
    /// A ping or another frame without content.
    Nothing,
    /// The wire is closed: the server's close code (or 1006) and reason.
    Closed {
        code: u16,
        reason: String,
    },
}

/// Why a connection could not be opened.
pub(crate) struct DialError {
    pub(crate) reason: String,
}

fn dial_error(e: impl std::fmt::Display) -> DialError {
    DialError {
        reason: e.to_string(),
    }
}

impl Link {
    /// Connects and presents the credential: `credential` is the `(name, value)` pair
    /// (`token` or `key`). WebSocket: in the URL. Line wires: an `auth` frame, written
    /// first (only tokens; construction refuses API keys there).
    pub(crate) async fn dial(
        endpoint: &Endpoint,
        credential: (&str, &str),
    ) -> Result<Self, DialError> {
        match &endpoint.wire {
            Wire::WebSocket { tls } => {
                let url = endpoint.with_credential(credential.0, credential.1);
                let request = url.into_client_request().map_err(dial_error)?;
                let tcp = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(dial_error)?;
                let _ = tcp.set_nodelay(true);
                let stream: Box<dyn Io> = match tls {
                    None => Box::new(tcp),
                    Some(tls) => Box::new(
                        tls.connector
                            .connect(tls.server_name.clone(), tcp)
                            .await
                            .map_err(|e| DialError {
                                reason: format!("TLS handshake failed: {e}"),
                            })?,
                    ),
                };
                let (ws, _) = tokio_tungstenite::client_async(request, stream)
                    .await
                    .map_err(|e| match e {
                        WsError::Http(response) => DialError {
                            reason: format!("the upgrade was refused: HTTP {}", response.status()),
                        },
                        e => dial_error(e),
                    })?;
                Ok(Self::Ws(Box::new(ws)))
            }
            Wire::Tcp { hello } => {
                let stream = TcpStream::connect((endpoint.host.as_str(), endpoint.port))
                    .await
                    .map_err(dial_error)?;
                let _ = stream.set_nodelay(true);
                let (read, write) = stream.into_split();
                let mut lines = Lines {
                    read: Box::new(read),
                    write: Box::new(write),
                    buf: Vec::new(),
                    quic: None,
                };
                if *hello {
                    lines.send("hello json").await.map_err(dial_error)?;
                }
                lines
                    .send(&auth_frame(credential.1))
                    .await
                    .map_err(dial_error)?;
                Ok(Self::Lines(Box::new(lines)))
            }
            Wire::Quic {
                config,
                server_name,
            } => {
                let addr = resolve(&endpoint.host, endpoint.port).await?;
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0_u16; 8], 0).into()
                };
                let mut quic = quinn::Endpoint::client(local).map_err(dial_error)?;
                quic.set_default_client_config(config.clone());
                let connection = quic
                    .connect(addr, server_name)
                    .map_err(dial_error)?
                    .await
                    .map_err(|e| match e {
                        quinn::ConnectionError::ApplicationClosed(c) => DialError {
                            reason: format!(
                                "closed with {}: {}",
                                c.error_code,
                                String::from_utf8_lossy(&c.reason)
                            ),
                        },
                        e => dial_error(e),
                    })?;
                let (send, recv) = connection.open_bi().await.map_err(dial_error)?;
                let mut lines = Lines {
                    read: Box::new(recv),
                    write: Box::new(send),
                    buf: Vec::new(),
                    quic: Some(Quic {
                        endpoint: quic,
                        connection,
                    }),
                };
                // The stream exists for the server once this first line arrives.
                lines
                    .send(&auth_frame(credential.1))
                    .await
                    .map_err(dial_error)?;
                Ok(Self::Lines(Box::new(lines)))
            }
        }
    }

    /// Sends one text frame.
    pub(crate) async fn send(&mut self, text: String) -> Result<(), String> {
        match self {
            Self::Ws(ws) => ws
                .send(WsMessage::text(text))
                .await
                .map_err(|e| e.to_string()),
            Self::Lines(lines) => lines.send(&text).await.map_err(|e| e.to_string()),
        }
    }

    /// The next frame, or the end of the wire. Cancel-safe. After a WebSocket close
    /// frame, drives the close handshake (bounded) before returning.
    pub(crate) async fn recv(&mut self) -> Received {
        match self {
            Self::Ws(ws) => match ws.next().await {
                Some(Ok(WsMessage::Text(text))) => Received::Text(text.as_str().to_owned()),
                Some(Ok(WsMessage::Close(frame))) => {
                    // Drive the close handshake (our reply) to its end.
                    let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                        while let Some(Ok(_)) = ws.next().await {}
                    })
                    .await;
                    ws_closed(frame)
                }
                Some(Ok(_)) => Received::Nothing,
                Some(Err(e)) => Received::Closed {
                    code: ABNORMAL,
                    reason: e.to_string(),
                },
                None => Received::Closed {
                    code: ABNORMAL,
                    reason: "the connection ended".into(),
                },
            },
            Self::Lines(lines) => lines.recv().await,
        }
    }

    /// Closes the wire with `code` (a close frame, or the QUIC application code) and
    /// waits, bounded, for the end.
    pub(crate) async fn close(&mut self, code: u16, reason: String) {
        match self {
            Self::Ws(ws) => {
                let frame = CloseFrame {
                    code: code.into(),
                    reason: reason.into(),
                };
                let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                    if (**ws).close(Some(frame)).await.is_ok() {
                        while let Some(Ok(_)) = ws.next().await {}
                    }
                })
                .await;
            }
            Self::Lines(lines) => lines.close(code, &reason).await,
        }
    }
}

fn ws_closed(frame: Option<CloseFrame>) -> Received {
    match frame {
        Some(frame) => Received::Closed {
            code: frame.code.into(),
            reason: frame.reason.as_str().to_owned(),
        },
        None => Received::Closed {
            code: ABNORMAL,
            reason: "closed without a code".into(),
        },
    }
}

async fn resolve(host: &str, port: u16) -> Result<SocketAddr, DialError> {
    tokio::net::lookup_host((host, port))
        .await
        .map_err(dial_error)?
        .next()
        .ok_or_else(|| dial_error(format!("{host} resolves to no address")))
}

fn auth_frame(token: &str) -> String {
    serde_json::json!({"type": "auth", "token": token}).to_string()
}

/// The QUIC connection under a line wire.
pub(crate) struct Quic {
    endpoint: quinn::Endpoint,
    connection: quinn::Connection,
}

/// Newline-delimited frames both ways.
pub(crate) struct Lines {
    read: Box<dyn AsyncRead + Send + Unpin>,
    write: Box<dyn AsyncWrite + Send + Unpin>,
    /// Bytes read and not yet returned as lines.
    buf: Vec<u8>,
    quic: Option<Quic>,
}

/// The server's last line: `{"type":"close","code":N,"reason":".."}`.
#[derive(Deserialize)]
struct CloseLine {
    #[serde(rename = "type")]
    kind: String,
    code: u16,
    #[serde(default)]
    reason: String,
}

impl Lines {
    async fn send(&mut self, text: &str) -> std::io::Result<()> {
        // A line is a frame: raw line breaks (JSON whitespace) become spaces.
        let mut line = text.replace(['\n', '\r'], " ");
        line.push('\n');
        self.write.write_all(line.as_bytes()).await?;
        self.write.flush().await
    }

    /// Cancel-safe: bytes are only ever moved into `buf` by `read_buf`.
    async fn recv(&mut self) -> Received {
        loop {
            while let Some(at) = self.buf.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.buf.drain(..=at).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                if line.is_empty() {
                    continue;
                }
                let text = String::from_utf8_lossy(&line).into_owned();
                if let Ok(close) = serde_json::from_str::<CloseLine>(&text)
                    && close.kind == "close"
                {
                    self.await_close().await;
                    return Received::Closed {
                        code: close.code,
                        reason: close.reason,
                    };
                }
                return Received::Text(text);
            }
            if self.buf.len() > MAX_LINE {
                return Received::Closed {
                    code: MESSAGE_TOO_BIG,
                    reason: "a line from the server is too long".into(),
                };
            }
            match self.read.read_buf(&mut self.buf).await {
                Ok(0) => return self.ended("the connection ended".into()).await,
                Ok(_) => {}
                Err(e) => return self.ended(e.to_string()).await,
            }
        }
    }

    /// After the close line, QUIC: let the server's connection close arrive.
    async fn await_close(&mut self) {
        if let Some(quic) = &self.quic {
            let _ = tokio::time::timeout(CLOSE_FLUSH, quic.connection.closed()).await;
        }
    }

    /// The stream ended without a close line: QUIC carries the code in the connection
    /// close (a slow consumer's 4013 has no line before it); TCP has none.
    async fn ended(&mut self, why: String) -> Received {
        let Some(quic) = &self.quic else {
            return Received::Closed {
                code: ABNORMAL,
                reason: why,
            };
        };
        match tokio::time::timeout(CLOSE_FLUSH, quic.connection.closed()).await {
            Ok(quinn::ConnectionError::ApplicationClosed(close)) => Received::Closed {
                code: u16::try_from(close.error_code.into_inner()).unwrap_or(ABNORMAL),
                reason: String::from_utf8_lossy(&close.reason).into_owned(),
            },
            Ok(error) => Received::Closed {
                code: ABNORMAL,
                reason: error.to_string(),
            },
            Err(_) => Received::Closed {
                code: ABNORMAL,
                reason: why,
            },
        }
    }

    async fn close(&mut self, code: u16, reason: &str) {
        match &self.quic {
            Some(quic) => {
                quic.connection.close(code.into(), reason.as_bytes());
                let _ = tokio::time::timeout(CLOSE_FLUSH, quic.endpoint.wait_idle()).await;
            }
            None => {
                let _ = tokio::time::timeout(CLOSE_FLUSH, async {
                    let _ = self.write.shutdown().await;
                    let mut sink = [0_u8; 4096];
                    while matches!(self.read.read(&mut sink).await, Ok(n) if n > 0) {}
                })
                .await;
            }
        }
    }
}
