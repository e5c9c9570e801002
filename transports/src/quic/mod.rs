//! QUIC listener on quinn: one bidirectional stream of lines per connection.
//!
//! - **Dialect by ALPN.** The client offers one ALPN name, `switchyard-<dialect>`
//!   ([`alpn`]: `switchyard-json`, `switchyard-rtc-signaller`,
//!   `switchyard-broadcaster`). An unknown name fails the TLS handshake
//!   (`no_application_protocol`), before the hub hears of it.
//! - **One stream.** The client opens one bidirectional stream and writes first (a
//!   frame, or an empty line, which is ignored): QUIC tells the server about a stream
//!   only when data arrives on it. The hub opens the connection then. The server
//!   grants exactly one bidirectional stream and no unidirectional one, so a second
//!   stream can never be opened while the first one lives: one connection is one peer,
//!   as on every other wire. Both directions carry newline-delimited frames with the
//!   TCP-line rules ([`crate::lines`]): at most `max_frame_bytes` a line (1009 past
//!   it), raw line breaks in outgoing frames written as spaces.
//! - **Credentials** are in band, as on TCP lines: `{"type":"auth","token":".."}`
//!   (JSON, answered by `welcome`) or a `token` attribute in the first `/announce`
//!   (rtc-signaller). The connection is opened with no credentials.
//! - **Closing.** When the hub closes a connection, the server writes the last line
//!   (`/close|{..}` or `{"type":"close",..}`), finishes the stream, waits for the
//!   peer's acknowledgement, then closes the connection with the hub's close code as
//!   the QUIC application error code and its reason: a client reads the code either
//!   way. The client finishing its stream or closing the connection is a graceful end;
//!   a reset stream, or a peer silent past [`QuicConfig::idle_timeout`], a hard one. Both
//!   give its room the synthetic leave.
//! - **Liveness.** The server sends QUIC pings every third of the idle timeout, so a
//!   live client answers within it whatever it is doing; a vanished one is timed out.
//! - **Connection cap.** The slot is taken before the handshake; over the cap the
//!   handshake completes and the connection is closed with 4010 at once, so the client
//!   can read the code.
//! - **Slowloris.** The TLS handshake and the first stream must both arrive within
//!   [`QuicConfig::handshake_timeout`]; else the connection is dropped (1008 when only
//!   the stream is missing).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::{Connection, Endpoint, Incoming, TransportConfig, VarInt};
use switchyard_core::{CloseCode, Dialect, Open};
use tokio::time::{Instant, timeout_at};

use crate::driver::{Admission, DriverHandle};
use crate::lines::LineReader;

mod stream;
mod tls;

pub use quinn;
pub use tls::{alpn, client_config};
// The certificate types, shared with `wss://`: they live in `crate::tls` and are
// re-exported here so that a QUIC listener's whole setup is in one place.
pub use crate::tls::{CertResolver, DEV_NAMES, TlsError, TlsIdentity};

use stream::{QuicReader, QuicWriter, close_connection};

/// A QUIC listener's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct QuicConfig {
    /// How long a peer may stay silent before its connection is dropped as dead (its
    /// room then gets the synthetic leave). The server pings every third of it.
    pub idle_timeout: Duration,
    /// Time allowed from the first packet to a completed handshake and an opened stream.
    pub handshake_timeout: Duration,
}

impl Default for QuicConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a QUIC listener cannot be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuicError {
    /// The certificate or its key is unusable (unreadable, missing, or not a pair).
    #[error(transparent)]
    Certificate(#[from] TlsError),
    /// rustls refused a root, or the QUIC crypto config.
    #[error("TLS: {0}")]
    Tls(#[from] quinn::rustls::Error),
    /// A setting is out of range (an idle timeout QUIC cannot encode).
    #[error("{0}")]
    Config(String),
    /// The UDP socket could not be bound.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// The quinn server config for `identity` and `config`: for embedding the listener in
/// an endpoint of your own; [`bind`] uses it.
///
/// # Errors
///
/// The identity is unusable, or the idle timeout is out of QUIC's range.
pub fn server_config(
    identity: &TlsIdentity,
    config: &QuicConfig,
) -> Result<quinn::ServerConfig, QuicError> {
    server_config_with(&CertResolver::new(identity)?, config)
}

/// As [`server_config`], presenting whatever `certificate` holds at each handshake, so
/// [`CertResolver::replace`] rotates the certificate without a restart.
///
/// # Errors
///
/// The idle timeout is out of QUIC's range.
pub fn server_config_with(
    certificate: &Arc<CertResolver>,
    config: &QuicConfig,
) -> Result<quinn::ServerConfig, QuicError> {
    let crypto = tls::server_crypto(certificate)?;
    let idle = quinn::IdleTimeout::try_from(config.idle_timeout)
        .map_err(|_| QuicError::Config(format!("idle timeout {:?}", config.idle_timeout)))?;
    let mut transport = TransportConfig::default();
    transport
        .max_idle_timeout(Some(idle))
        .keep_alive_interval(Some(
            (config.idle_timeout / 3).max(Duration::from_millis(1)),
        ))
        .max_concurrent_bidi_streams(VarInt::from_u32(1))
        .max_concurrent_uni_streams(VarInt::from_u32(0));
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Binds a UDP socket on `addr` and makes it a QUIC server endpoint; pass it to
/// [`serve`]. Must run inside a tokio runtime.
///
/// # Errors
///
/// See [`server_config`]; or the socket cannot be bound.
pub fn bind(
    addr: SocketAddr,
    identity: &TlsIdentity,
    config: &QuicConfig,
) -> Result<Endpoint, QuicError> {
    bind_with(addr, &CertResolver::new(identity)?, config)
}

/// As [`bind`], presenting whatever `certificate` holds at each handshake.
///
/// # Errors
///
/// See [`server_config_with`]; or the socket cannot be bound.
pub fn bind_with(
    addr: SocketAddr,
    certificate: &Arc<CertResolver>,
    config: &QuicConfig,
) -> Result<Endpoint, QuicError> {
    Ok(Endpoint::server(
        server_config_with(certificate, config)?,
        addr,
    )?)
}

/// Accepts QUIC connections on `endpoint` and serves each on its own task, until the
/// endpoint is closed.
pub async fn serve(endpoint: Endpoint, driver: DriverHandle, config: QuicConfig) {
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(connection(incoming, driver.clone(), config.clone()));
    }
}

async fn connection(incoming: Incoming, driver: DriverHandle, config: QuicConfig) {
    let remote = incoming.remote_address();
    // Taken before the handshake; over the cap the handshake still completes, so that
    // the client can read the 4010.
    let admission = driver.admit();
    let deadline = Instant::now() + config.handshake_timeout;
    let Some(Ready {
        connection,
        dialect,
        admission,
        send,
        recv,
    }) = handshake(incoming, admission, deadline).await
    else {
        return;
    };
    let reader = QuicReader {
        lines: LineReader::new(recv, driver.max_frame_bytes()),
    };
    let writer = QuicWriter::new(send, connection.clone(), dialect);
    let mut open = Open::new(dialect);
    open.remote = Some(remote);
    let _counted = driver.metrics().track("quic");
    admission.serve(reader, writer, open).await;
    // A no-op when the hub closed it; otherwise the peer ended it first.
    close_connection(&connection, CloseCode::NORMAL, "");
}

/// A connection with its dialect, its slot and its one stream.
struct Ready {
    connection: Connection,
    dialect: Dialect,
    admission: Admission,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
}

/// The TLS handshake, the dialect from ALPN, the slot, and the client's stream, all by
/// `deadline`. `None` when the connection is over already (failed, refused, closed).
async fn handshake(
    incoming: Incoming,
    admission: Option<Admission>,
    deadline: Instant,
) -> Option<Ready> {
    let remote = incoming.remote_address();
    let connection = match timeout_at(deadline, incoming).await {
        Ok(Ok(connection)) => connection,
        // Unknown ALPN names end here too, refused by rustls.
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "quic handshake failed");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "quic handshake timed out");
            return None;
        }
    };
    let Some(dialect) = negotiated_dialect(&connection) else {
        // Unreachable with our server config: rustls refuses a handshake without ALPN.
        close_connection(&connection, CloseCode::POLICY, "unknown ALPN protocol");
        return None;
    };
    let Some(admission) = admission else {
        tracing::debug!(%remote, "quic connection over the cap");
        let code = CloseCode::OVER_CONCURRENT_LIMIT;
        close_connection(&connection, code, "too many connections");
        return None;
    };
    let (send, recv) = match timeout_at(deadline, connection.accept_bi()).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "quic connection ended before its stream");
            return None;
        }
        Err(_) => {
            tracing::debug!(%remote, "quic connection opened no stream in time");
            close_connection(
                &connection,
                CloseCode::POLICY,
                "expected a bidirectional stream",
            );
            return None;
        }
    };
    Some(Ready {
        connection,
        dialect,
        admission,
        send,
        recv,
    })
}

/// The dialect named by the negotiated ALPN protocol.
fn negotiated_dialect(connection: &Connection) -> Option<Dialect> {
    let data = connection.handshake_data()?;
    let data = data.downcast_ref::<quinn::crypto::rustls::HandshakeData>()?;
    tls::dialect_of(data.protocol.as_deref()?)
}
