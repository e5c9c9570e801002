//! QUIC peers on loopback, next to WebSocket peers on the same driver: the dialect by
//! ALPN, one stream of lines, the hub's closes as a last line plus the QUIC application
//! code, and the synthetic leave for a peer that vanished (idle timeout) or reset its
//! stream.
//!
//! One test binary (`cargo test --test quic`): the QUIC client, the server and a UDP
//! relay are here, the tests in a module per topic (`peers`, `handshake`, `closes`).

#[path = "../common/mod.rs"]
mod common;

mod closes;
mod handshake;
mod peers;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Setup, WAIT, Ws};
use switchyard::core::Dialect;
use switchyard::transports::QuicConfig;
use switchyard::transports::quic::quinn::rustls::pki_types::CertificateDer;
use switchyard::transports::quic::quinn::{self, ConnectionError, Endpoint};
use switchyard::transports::quic::{self, TlsIdentity};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UdpSocket;

/// The idle timeout of the test listeners: a vanished peer is gone after about this.
const IDLE: Duration = Duration::from_millis(300);

/// WebSocket and TCP listeners from [`Setup`], plus a QUIC listener on the same driver.
struct Server {
    ws: SocketAddr,
    quic: SocketAddr,
    certificate: CertificateDer<'static>,
}

async fn start(setup: Setup) -> Server {
    let mut config = QuicConfig::default();
    config.idle_timeout = IDLE;
    start_with(setup, config).await
}

async fn start_with(setup: Setup, config: QuicConfig) -> Server {
    let server = setup.start().await;
    let identity = TlsIdentity::self_signed(&quic::DEV_NAMES).expect("dev certificate");
    let endpoint =
        quic::bind("127.0.0.1:0".parse().expect("addr"), &identity, &config).expect("bind quic");
    let quic_addr = endpoint.local_addr().expect("quic addr");
    tokio::spawn(quic::serve(endpoint, server.driver.clone(), config));
    Server {
        ws: server.ws,
        quic: quic_addr,
        certificate: identity.certificate().clone(),
    }
}

/// A QUIC client: its own endpoint, one connection, one bidirectional stream.
struct Quic {
    connection: quinn::Connection,
    send: quinn::SendStream,
    read: BufReader<quinn::RecvStream>,
    _endpoint: Endpoint,
}

impl Quic {
    async fn connect(server: &Server, dialect: Dialect) -> Self {
        Self::connect_to(server.quic, server, dialect).await
    }

    /// Connects to `addr` (the server, or a relay in front of it), opens the stream and
    /// writes an empty line so the server learns of it at once.
    async fn connect_to(addr: SocketAddr, server: &Server, dialect: Dialect) -> Self {
        let roots = [server.certificate.clone()];
        let client = quic::client_config(&roots, dialect).expect("client config");
        let connection = handshake(addr, client)
            .await
            .unwrap_or_else(|e| panic!("quic handshake: {e}"));
        let (endpoint, connection) = connection;
        let (mut send, recv) = connection.open_bi().await.expect("open stream");
        send.write_all(b"\n").await.expect("first write");
        Self {
            connection,
            send,
            read: BufReader::new(recv),
            _endpoint: endpoint,
        }
    }

    async fn send(&mut self, line: &str) {
        self.send
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("quic write");
    }

    /// The `/roominfo` answering an announce, past the introductions before it.
    async fn expect_roominfo(&mut self, what: &str) -> String {
        loop {
            let line = self.expect_line(what).await;
            if !common::is_introduction(&line) {
                return line;
            }
        }
    }

    async fn expect_line(&mut self, what: &str) -> String {
        self.try_line(what)
            .await
            .unwrap_or_else(|| panic!("quic stream ended while waiting for {what}"))
    }

    /// The next line, or `None` at the end of the stream (FIN or connection closed).
    async fn try_line(&mut self, what: &str) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.read.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }

    /// Reads to the end of the stream, then returns the connection's close: the QUIC
    /// application code and reason.
    async fn expect_closed(&mut self, what: &str) -> (u64, String) {
        while self.try_line(what).await.is_some() {}
        let closed = tokio::time::timeout(WAIT, self.connection.closed())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for the connection close: {what}"));
        match closed {
            ConnectionError::ApplicationClosed(close) => (
                close.error_code.into_inner(),
                String::from_utf8_lossy(&close.reason).into_owned(),
            ),
            other => panic!("expected an application close for {what}, got {other}"),
        }
    }
}

/// Handshakes with `addr` from a fresh client endpoint on loopback.
async fn handshake(
    addr: SocketAddr,
    client: quinn::ClientConfig,
) -> Result<(Endpoint, quinn::Connection), ConnectionError> {
    let mut endpoint = Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
    endpoint.set_default_client_config(client);
    let connecting = endpoint.connect(addr, "localhost").expect("connect");
    let connection = tokio::time::timeout(WAIT, connecting)
        .await
        .expect("quic handshake timed out")?;
    Ok((endpoint, connection))
}

/// A JSON frame's field as a string.
fn field(frame: &str, name: &str) -> String {
    let value: serde_json::Value =
        serde_json::from_str(frame).unwrap_or_else(|e| panic!("not JSON ({e}): {frame}"));
    match &value[name] {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Reads the `welcome` and returns the peer id.
async fn quic_welcome(peer: &mut Quic) -> String {
    let welcome = peer.expect_line("welcome").await;
    assert_eq!(field(&welcome, "type"), "welcome", "{welcome}");
    field(&welcome, "peerId")
}

async fn ws_welcome(peer: &mut Ws) -> String {
    let welcome = peer.expect_text("welcome").await;
    assert_eq!(field(&welcome, "type"), "welcome", "{welcome}");
    field(&welcome, "peerId")
}

/// A UDP relay between one client and `server`; dropping it makes the client vanish
/// without a word (no close, no reset: silence).
struct Relay {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(server: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").await.expect("relay front");
        let back = UdpSocket::bind("127.0.0.1:0").await.expect("relay back");
        back.connect(server).await.expect("relay connect");
        let addr = front.local_addr().expect("relay addr");
        let task = tokio::spawn(async move {
            let (mut up, mut down) = (vec![0; 65_536], vec![0; 65_536]);
            let mut client = None;
            loop {
                tokio::select! {
                    Ok((n, from)) = front.recv_from(&mut up) => {
                        client = Some(from);
                        let _ = back.send(&up[..n]).await;
                    }
                    Ok(n) = back.recv(&mut down) => {
                        if let Some(to) = client {
                            let _ = front.send_to(&down[..n], to).await;
                        }
                    }
                }
            }
        });
        Self { addr, task }
    }

    /// Cuts the wire both ways.
    fn cut(self) {
        self.task.abort();
    }
}
