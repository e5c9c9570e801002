//! The SDK over QUIC and TCP lines against the real server, next to a WebSocket
//! peer: the in-band token, request acks, messages both ways, and the server's close
//! codes (the QUIC application code, the close line) going through the same policy.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{fast, key_client, next, settings, token, until};
use serde_json::json;
use switchyard::server::Running;
use switchyard_client::{
    CertificateDer, Connected, Disconnected, Message, OptionsError, SignallingClient,
    SignallingClientOptions, State, StateChange, SubscribeOptions, Transport,
};

/// The real server with WebSocket, QUIC (dev certificate) and TCP-line listeners.
async fn start() -> Running {
    let mut s = settings();
    s.listen.quic = "127.0.0.1:0".into();
    s.listen.tcp = "127.0.0.1:0".into();
    switchyard::server::start(&s).await.expect("server starts")
}

fn quic_transport(server: &Running) -> Transport {
    let der = server.quic_certificate.clone().expect("a dev certificate");
    Transport::Quic {
        server_name: Some("localhost".into()),
        trusted_certs: vec![CertificateDer::from(der)],
    }
}

fn quic_url(server: &Running) -> String {
    format!("quic://{}", server.quic_addr.expect("a QUIC listener"))
}

fn ws_url(server: &Running) -> String {
    format!("ws://{}", server.ws_addr.expect("a WebSocket listener"))
}

/// A client on `options` with a token provider handing out `tokens(n)` for call `n`.
fn provided(
    options: SignallingClientOptions,
    tokens: impl Fn(u32) -> String + Send + Sync + 'static,
) -> (SignallingClient, Arc<AtomicU32>) {
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let tokens = Arc::new(tokens);
    let client = SignallingClient::new(options.reconnect(fast()).token_provider(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let token = tokens(n);
        async move { Ok::<_, std::io::Error>(token) }
    }))
    .expect("valid options");
    (client, calls)
}

/// Subscribes both, then publishes both ways; every request is acked.
async fn round_trip(line: &SignallingClient, web: &SignallingClient, line_id: &str) {
    let mut line_messages = line.events::<Message>();
    let mut web_messages = web.events::<Message>();
    for client in [line, web] {
        client
            .subscribe("rooms/a", SubscribeOptions::default())
            .await
            .expect("subscribe acked");
    }
    line.publish("rooms/a", &json!({"from": "line"}))
        .await
        .expect("publish acked");
    let got = next(&mut web_messages, "the line client's message").await;
    assert_eq!(
        (got.sender_peer_id.as_str(), &got.data),
        (line_id, &json!({"from": "line"}))
    );
    web.publish("rooms/a", &json!({"from": "web", "text": "a\nb"}))
        .await
        .expect("publish acked");
    let got = next(&mut line_messages, "the web client's message").await;
    assert_eq!(got.data, json!({"from": "web", "text": "a\nb"}));
}

#[tokio::test]
async fn over_quic_a_client_subscribes_publishes_and_hears_a_websocket_peer() {
    let server = start().await;
    let options = SignallingClientOptions::new()
        .url(quic_url(&server))
        .transport(quic_transport(&server));
    let (quic, _) = provided(options, |_| token("alice", 3600));
    let mut connected = quic.events::<Connected>();
    quic.connect().await.expect("connect over QUIC");
    assert_eq!(next(&mut connected, "Connected").await.peer_id, "alice");
    let web = key_client(&ws_url(&server));
    web.connect().await.expect("connect over WebSocket");
    round_trip(&quic, &web, "alice").await;
    quic.close(1000, "done").await;
    assert_eq!(quic.state(), State::Closed);
}

#[tokio::test]
async fn over_tcp_lines_a_client_subscribes_publishes_and_hears_a_websocket_peer() {
    let server = start().await;
    let url = format!("tcp://{}", server.tcp_addr.expect("a TCP listener"));
    let (tcp, _) = provided(SignallingClientOptions::new().url(url), |_| {
        token("bob", 3600)
    });
    tcp.connect().await.expect("connect over TCP lines");
    let web = key_client(&ws_url(&server));
    web.connect().await.expect("connect over WebSocket");
    round_trip(&tcp, &web, "bob").await;
}

#[tokio::test]
async fn over_quic_token_expiry_4002_reconnects_with_a_fresh_token_and_4001_stops() {
    let server = start().await;
    let options = SignallingClientOptions::new()
        .url(quic_url(&server))
        .transport(quic_transport(&server))
        // The reconnect fallback, not the in-place refresh (client/tests/refresh.rs).
        .refresh_margin(Duration::ZERO);
    // Tokens that expire in a second, twice; then the backend hands out garbage.
    let (client, calls) = provided(options, |n| match n {
        0 | 1 => token("alice", 1),
        _ => "not.a.jwt".to_owned(),
    });
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    let mut states = client.events::<StateChange>();
    client.connect().await.expect("connect");
    client
        .subscribe("rooms/a", SubscribeOptions::default())
        .await
        .expect("subscribe");
    next(&mut connected, "the first Connected").await;

    let expiry = next(&mut disconnected, "the expiry close").await;
    assert_eq!((expiry.code, expiry.will_reconnect), (4002, true));
    let again = next(&mut connected, "the reconnect with a fresh token").await;
    assert!(again.is_reconnect);
    assert_eq!(client.subscriptions(), ["rooms/a"]);

    // The fresh token expires too; the next attempt's is refused in band with 4001.
    let expiry = next(&mut disconnected, "the second expiry").await;
    assert_eq!((expiry.code, expiry.will_reconnect), (4002, true));
    let terminal = next(&mut disconnected, "the terminal Disconnected").await;
    assert_eq!((terminal.code, terminal.will_reconnect), (4001, false));
    until(&mut states, "reconnecting → closed", |c| {
        c.to == State::Closed
    })
    .await;
    assert_eq!(calls.load(Ordering::SeqCst), 3, "no attempt after the 4001");
}

#[test]
fn quic_needs_trusted_certificates_and_a_token_provider() {
    let no_certs = SignallingClientOptions::new()
        .url("quic://127.0.0.1:4433")
        .token_provider(|| async { Ok::<_, std::io::Error>(String::new()) });
    assert!(matches!(
        SignallingClient::new(no_certs.clone()),
        Err(OptionsError::Url { .. })
    ));
    let empty = no_certs.transport(Transport::Quic {
        server_name: None,
        trusted_certs: Vec::new(),
    });
    assert!(matches!(
        SignallingClient::new(empty),
        Err(OptionsError::Invalid(_))
    ));
    let keyed = SignallingClientOptions::new()
        .url("tcp://127.0.0.1:7000")
        .api_key("pk");
    assert!(matches!(
        SignallingClient::new(keyed),
        Err(OptionsError::Invalid(_))
    ));
    let mismatch = SignallingClientOptions::new()
        .url("ws://127.0.0.1:8080")
        .api_key("pk")
        .transport(Transport::TcpLines { hello: true });
    assert!(matches!(
        SignallingClient::new(mismatch),
        Err(OptionsError::Url { .. })
    ));
}
