//! The hub's closes over QUIC, a last line plus the same application code: a bad
//! token (4001), an oversize line (1009), over max connections (4010), a client that
//! never reads (4013), and a handshake that stalls or opens no stream.

use std::time::Duration;

use switchyard::core::Dialect;
use switchyard::transports::QuicConfig;
use switchyard::transports::quic::quinn::{self, ConnectionError, Endpoint, VarInt};
use switchyard::transports::quic::{self, TlsIdentity};
use switchyard_core::testing::keyed_config;
use tokio::io::BufReader;
use tokio::net::UdpSocket;

use super::common::{Setup, WAIT, Ws};
use super::{Quic, Server, field, handshake, quic_welcome, start, ws_welcome};

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
