//! QUIC peers on loopback, next to WebSocket peers on the same driver: the dialect by
//! ALPN, one stream of lines, the hub's closes as a last line plus the QUIC application
//! code, and the synthetic leave for a peer that vanished (idle timeout) or reset its
//! stream.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Setup, WAIT, Ws, announce, leave};
use futures_util::FutureExt;
use switchyard::core::Dialect;
use switchyard::server;
use switchyard::settings::Settings;
use switchyard::transports::QuicConfig;
use switchyard::transports::quic::quinn::rustls::pki_types::CertificateDer;
use switchyard::transports::quic::quinn::rustls::pki_types::pem::PemObject;
use switchyard::transports::quic::quinn::{self, ConnectionError, Endpoint, VarInt};
use switchyard::transports::quic::{self, TlsIdentity};
use switchyard_core::testing::keyed_config;
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

#[tokio::test]
async fn quic_and_websocket_peers_share_presence_publish_direct_and_a_vanished_peer_leaves() {
    let server = start(Setup::default()).await;

    let mut web = Ws::connect(server.ws, "/v1").await;
    let web_id = ws_welcome(&mut web).await;
    web.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert_eq!(field(&web.expect_text("web's ack").await, "type"), "ack");
    web.expect_text("web's empty snapshot").await;

    // The QUIC peer goes through a relay, so it can vanish later.
    let relay = Relay::start(server.quic).await;
    let mut far = Quic::connect_to(relay.addr, &server, Dialect::Json).await;
    let far_id = quic_welcome(&mut far).await;
    far.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert_eq!(field(&far.expect_line("far's ack").await, "type"), "ack");
    let snapshot = far.expect_line("far's snapshot").await;
    assert!(
        snapshot.contains(&format!(r#""peerId":"{web_id}""#)),
        "far's snapshot should list web: {snapshot}"
    );
    let joined = web.expect_text("far joined").await;
    assert_eq!(field(&joined, "type"), "presence", "{joined}");
    assert!(joined.contains(&far_id), "{joined}");

    // Publish both ways.
    far.send(r#"{"type":"publish","channel":"room-1","data":{"n":1}}"#)
        .await;
    assert_eq!(
        web.expect_text("far's message").await,
        format!(r#"{{"type":"message","channel":"room-1","from":"{far_id}","data":{{"n":1}}}}"#)
    );
    web.send(r#"{"type":"publish","channel":"room-1","data":"hi\nthere"}"#)
        .await;
    let message = far.expect_line("web's message").await;
    assert_eq!(field(&message, "from"), web_id);
    assert_eq!(
        field(&message, "data"),
        "hi\nthere",
        "JSON escapes keep it one line"
    );

    // Directs both ways.
    web.send(&format!(
        r#"{{"type":"send","to":"{far_id}","data":"psst","requestId":"d"}}"#
    ))
    .await;
    assert_eq!(
        field(&web.expect_text("web's send ack").await, "type"),
        "ack"
    );
    let direct = far.expect_line("web's direct").await;
    assert_eq!(
        (field(&direct, "type"), field(&direct, "from")),
        ("direct".into(), web_id.clone())
    );
    far.send(&format!(
        r#"{{"type":"send","to":"{web_id}","data":"back"}}"#
    ))
    .await;
    let direct = web.expect_text("far's direct").await;
    assert_eq!(field(&direct, "from"), far_id);

    // The far peer vanishes: no close, no reset, no packet. The idle timeout ends it:
    // counted from the server's last ping (every third of it), so about 4/3 of it.
    let cut = tokio::time::Instant::now();
    relay.cut();
    let left = web.expect_text("far's synthetic leave").await;
    assert_eq!(field(&left, "type"), "presence", "{left}");
    assert!(
        left.contains(&format!(r#""left":[{{"peerId":"{far_id}"}}]"#)),
        "{left}"
    );
    let after = cut.elapsed();
    assert!(
        after >= IDLE / 2 && after < IDLE * 3,
        "the leave came {after:?} after the cut; the idle timeout is {IDLE:?}"
    );
    drop(far);
}

#[tokio::test]
async fn a_bad_token_is_closed_4001_with_a_close_line_and_the_same_application_code() {
    let server = start(Setup {
        hub: keyed_config(),
        ..Setup::default()
    })
    .await;
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    peer.send(r#"{"type":"auth","token":"not.a.jwt","requestId":"a"}"#)
        .await;
    let close = peer.expect_line("the close line").await;
    assert!(
        close.starts_with(r#"{"type":"close","code":4001,"#),
        "expected a 4001 close line, got {close}"
    );
    let (code, reason) = peer.expect_closed("the 4001 close").await;
    assert_eq!(code, 4001);
    assert_eq!(reason, field(&close, "reason"));
}

#[tokio::test]
async fn the_broadcaster_alpn_speaks_the_broadcaster_and_authenticates_in_band() {
    let server = start(Setup {
        hub: keyed_config(),
        ..Setup::default()
    })
    .await;
    let mut peer = Quic::connect(&server, Dialect::Broadcaster).await;
    peer.send(r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(
        peer.expect_line("the refusal before auth").await,
        r#"{"requestId":1,"error":{"code":"Unauthenticated","message":"authenticate first"}}"#
    );
    // The server runs on the real clock: the token expires ten minutes from now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let token = switchyard_core::testing::token_with(serde_json::json!({
        "sub": "bo", "aud": "broadcaster", "authorizedChannels": ["news"],
        "scope": ["subscribe"], "exp": now + 600,
    }));
    peer.send(&format!(
        r#"{{"id":2,"method":"auth","params":{{"token":"{token}"}}}}"#
    ))
    .await;
    assert_eq!(
        peer.expect_line("the auth answer").await,
        r#"{"requestId":2,"result":{"success":true}}"#
    );
    peer.send(r#"{"id":3,"method":"nope"}"#).await;
    assert_eq!(
        peer.expect_line("the unknown method").await,
        r#"{"requestId":3,"error":{"code":"InvalidArgument","message":"unknown \"method\""}}"#
    );
}

#[tokio::test]
async fn an_oversize_line_is_closed_1009() {
    let mut setup = Setup::default();
    setup.hub.limits.max_frame_bytes = 1024;
    let server = start(setup).await;
    let mut peer = Quic::connect(&server, Dialect::Signaller).await;
    // No newline: the limit is hit mid-line, and the rest is never buffered.
    let long = format!("/chat|x|{}", "a".repeat(2048));
    peer.send.write_all(long.as_bytes()).await.expect("write");
    let close = peer.expect_line("the close line").await;
    assert!(
        close.starts_with(r#"/close|{"code":1009,"#),
        "expected a 1009 close line, got {close}"
    );
    assert_eq!(peer.expect_closed("the 1009 close").await.0, 1009);
}

#[tokio::test]
async fn a_stream_reset_mid_frame_is_a_hard_close_the_room_gets_the_leave_and_others_carry_on() {
    let server = start(Setup::default()).await;
    let mut bob = Ws::connect(server.ws, "/").await;
    bob.send(&announce("bob", "lobby")).await;
    bob.expect_roominfo("bob's roominfo").await;

    let mut alice = Quic::connect(&server, Dialect::Signaller).await;
    alice.send(&announce("alice", "lobby")).await;
    assert_eq!(
        alice.expect_roominfo("alice's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        bob.expect_text("alice's announce").await,
        announce("alice", "lobby")
    );

    // Half a frame, then the stream is reset.
    alice
        .send
        .write_all(b"/chat|alice|{\"half\":")
        .await
        .expect("write");
    alice.send.reset(VarInt::from_u32(7)).expect("reset");
    assert_eq!(bob.expect_text("alice's leave").await, leave("alice"));

    // The listener serves on: a new QUIC peer joins the same room.
    let mut carol = Quic::connect(&server, Dialect::Signaller).await;
    carol.send(&announce("carol", "lobby")).await;
    assert_eq!(
        carol.expect_roominfo("carol's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        bob.expect_text("carol's announce").await,
        announce("carol", "lobby")
    );
    bob.send(r#"/to|carol|/hello|bob|{}"#).await;
    assert_eq!(
        carol.expect_line("bob's /to").await,
        r#"/to|carol|/hello|bob|{}"#
    );
}

#[tokio::test]
async fn an_unknown_alpn_fails_the_handshake() {
    let server = start(Setup::default()).await;
    let mut roots = quinn::rustls::RootCertStore::empty();
    roots.add(server.certificate.clone()).expect("root");
    let provider = quinn::rustls::crypto::aws_lc_rs::default_provider();
    let mut tls = quinn::rustls::ClientConfig::builder_with_provider(provider.into())
        .with_protocol_versions(&[&quinn::rustls::version::TLS13])
        .expect("tls 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h3".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("quic tls");
    let client = quinn::ClientConfig::new(std::sync::Arc::new(crypto));
    match handshake(server.quic, client).await {
        Err(ConnectionError::ConnectionClosed(close)) => {
            // TLS alert 120, no_application_protocol, as a QUIC crypto error.
            assert_eq!(close.error_code, quinn::TransportErrorCode::crypto(120));
        }
        Err(other) => panic!("expected a TLS alert, got {other}"),
        Ok(_) => panic!("the handshake should fail for an unknown ALPN name"),
    }
}

#[tokio::test]
async fn over_max_connections_a_quic_client_is_closed_4010() {
    let mut setup = Setup::default();
    setup.driver.max_connections = 1;
    let server = start(setup).await;
    let mut first = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut first).await;
    let roots = [server.certificate.clone()];
    let client = quic::client_config(&roots, Dialect::Json).expect("client config");
    let (_endpoint, second) = handshake(server.quic, client)
        .await
        .expect("the handshake completes over the cap");
    let closed = tokio::time::timeout(WAIT, second.closed())
        .await
        .expect("timed out waiting for the 4010");
    match closed {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 4010);
        }
        other => panic!("expected 4010, got {other}"),
    }
}

#[tokio::test]
async fn the_server_starts_a_quic_listener_from_settings_and_writes_its_dev_certificate() {
    let dir = std::env::temp_dir().join(format!("switchyard-quic-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pem_path = dir.join("dev.pem");
    let toml = format!(
        "[listen]\nws = \"127.0.0.1:0\"\nquic = \"127.0.0.1:0\"\n\
         [quic]\ndev_cert_file = {:?}\n[auth]\nanonymous = true\n",
        pem_path.display().to_string()
    );
    let env = [(
        "SWITCHYARD_QUIC_IDLE_TIMEOUT_MS".to_owned(),
        "300".to_owned(),
    )];
    let settings = Settings::from_toml(&toml, env).expect("settings");
    assert_eq!(settings.quic_config().idle_timeout, IDLE);
    let running = server::start(&settings).await.expect("server starts");

    // What a client would do: trust the PEM file the server wrote.
    let pem = std::fs::read(&pem_path).expect("the dev certificate's PEM");
    let certificate = CertificateDer::from_pem_slice(&pem).expect("a PEM certificate");
    let der = std::fs::read(pem_path.with_extension("der")).expect("the DER beside it");
    assert_eq!(certificate.as_ref(), der.as_slice());
    assert_eq!(running.quic_certificate.as_deref(), Some(der.as_slice()));
    let server = Server {
        ws: running.ws_addr.expect("ws"),
        quic: running.quic_addr.expect("quic addr"),
        certificate,
    };
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut peer).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_server_grants_one_bidirectional_stream_and_no_other() {
    let server = start(Setup::default()).await;
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut peer).await;
    // Stream credit is known from the handshake: opening more cannot even start.
    assert!(peer.connection.open_bi().now_or_never().is_none());
    assert!(peer.connection.open_uni().now_or_never().is_none());
    // The one stream carries on.
    peer.send(r#"{"type":"subscribe","channel":"c","requestId":"s"}"#)
        .await;
    assert_eq!(field(&peer.expect_line("ack").await, "type"), "ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quic_client_that_never_reads_is_closed_with_application_code_4013() {
    let mut setup = Setup::default();
    setup.driver.outbound_queue = 4;
    setup.driver.close_timeout = Duration::from_millis(300);
    // This test is about a reader that cannot keep up, not about a sender's rate.
    setup.hub.limits.message_rate = 1_000_000;
    setup.hub.limits.message_burst = 1_000_000;
    let server = start(setup).await;

    // A tiny stream window, so that QUIC flow control stops the server's writes after a
    // few kilobytes the client does not read.
    let roots = [server.certificate.clone()];
    let mut client = quic::client_config(&roots, Dialect::Json).expect("client config");
    let mut transport = quinn::TransportConfig::default();
    transport
        .stream_receive_window(VarInt::from_u32(4096))
        .receive_window(VarInt::from_u32(8192));
    client.transport_config(std::sync::Arc::new(transport));
    let (_endpoint, connection) = handshake(server.quic, client)
        .await
        .expect("quic handshake");
    let (mut send, recv) = connection.open_bi().await.expect("open stream");
    send.write_all(b"{\"type\":\"subscribe\",\"channel\":\"r\",\"requestId\":\"s\"}\n")
        .await
        .expect("subscribe");
    let mut slow = Quic {
        connection,
        send,
        read: BufReader::new(recv),
        _endpoint,
    };
    quic_welcome(&mut slow).await;
    assert_eq!(field(&slow.expect_line("slow's ack").await, "type"), "ack");
    slow.expect_line("slow's snapshot").await;
    // From here on the slow client reads nothing.

    let mut flooder = Ws::connect(server.ws, "/v1").await;
    ws_welcome(&mut flooder).await;
    let pad = "x".repeat(8 * 1024);
    let mut sent = 0;
    while slow.connection.close_reason().is_none() {
        assert!(sent < 2_000, "the slow client was never closed");
        flooder
            .send(&format!(
                r#"{{"type":"publish","channel":"r","data":{{"n":{sent},"pad":"{pad}"}}}}"#
            ))
            .await;
        sent += 1;
        if sent % 16 == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let closed = tokio::time::timeout(WAIT, slow.connection.closed())
        .await
        .expect("timed out waiting for the close");
    match closed {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 4013, "{close:?}");
            assert_eq!(
                String::from_utf8_lossy(&close.reason),
                "outbound queue full"
            );
        }
        other => panic!("expected an application close with 4013, got {other}"),
    }
}

/// Waits (bounded) until `slot_free` says what is wanted of the driver's only slot.
async fn until_slot(driver: &switchyard::transports::DriverHandle, free: bool, what: &str) {
    let wait = async {
        while driver.admit().is_some() != free {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
}

#[tokio::test]
async fn a_quic_client_that_stalls_its_handshake_or_opens_no_stream_is_dropped_at_the_handshake_timeout()
 {
    let mut setup = Setup::default();
    // One slot: a stalled client holds it until the handshake timeout frees it.
    setup.driver.max_connections = 1;
    let driver_setup = setup.start().await;
    let driver = driver_setup.driver.clone();
    let identity = TlsIdentity::self_signed(&quic::DEV_NAMES).expect("dev certificate");
    let mut config = QuicConfig::default();
    // Far longer than the test: only the handshake timeout can drop these clients.
    config.idle_timeout = Duration::from_secs(60);
    config.handshake_timeout = Duration::from_millis(500);
    let endpoint =
        quic::bind("127.0.0.1:0".parse().expect("addr"), &identity, &config).expect("bind quic");
    let quic_addr = endpoint.local_addr().expect("quic addr");
    tokio::spawn(quic::serve(endpoint, driver.clone(), config));
    let roots = [identity.certificate().clone()];

    // The handshake completes, but no stream ever comes: closed with 1008.
    let client = quic::client_config(&roots, Dialect::Json).expect("client config");
    let (_endpoint, streamless) = handshake(quic_addr, client)
        .await
        .expect("the handshake completes");
    let closed = tokio::time::timeout(WAIT, streamless.closed())
        .await
        .expect("a client without a stream was never dropped");
    match closed {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code.into_inner(), 1008);
            assert_eq!(&close.reason[..], b"expected a bidirectional stream");
        }
        other => panic!("expected 1008, got {other}"),
    }
    until_slot(&driver, true, "the streamless client's slot").await;

    // The handshake never finishes: the server hears the client's Initial packets
    // through a one-way relay, but the client never hears back.
    let front = UdpSocket::bind("127.0.0.1:0").await.expect("relay front");
    let back = UdpSocket::bind("127.0.0.1:0").await.expect("relay back");
    back.connect(quic_addr).await.expect("relay connect");
    let relay_addr = front.local_addr().expect("relay addr");
    let relay = tokio::spawn(async move {
        let mut buf = vec![0; 65_536];
        while let Ok((n, _)) = front.recv_from(&mut buf).await {
            let _ = back.send(&buf[..n]).await;
        }
    });
    let mut stalled_endpoint =
        Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client endpoint");
    stalled_endpoint.set_default_client_config(
        quic::client_config(&roots, Dialect::Json).expect("client config"),
    );
    let stalled = stalled_endpoint
        .connect(relay_addr, "localhost")
        .expect("connect");
    until_slot(&driver, false, "the stalled handshake to take the slot").await;
    until_slot(&driver, true, "the stalled handshake to be dropped").await;

    // The slot serves a well-behaved client again.
    let server = Server {
        ws: driver_setup.ws,
        quic: quic_addr,
        certificate: roots[0].clone(),
    };
    let mut peer = Quic::connect(&server, Dialect::Json).await;
    quic_welcome(&mut peer).await;
    relay.abort();
    drop(stalled);
}
