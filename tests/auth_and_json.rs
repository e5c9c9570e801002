//! The transports carry credentials and the JSON dialect to the core unchanged: tokens
//! from each place a client may put them, a close ordered right at open, a timer the
//! hub arms, and JSON peers on WebSocket and TCP lines.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Line, Setup, Ws};
use futures_util::SinkExt;
use switchyard::transports::{LineDialect, TcpConfig};
use switchyard_core::testing::{keyed_config, token_with};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A token for `sub` valid for an hour of real time (the driver's clock is real).
fn live_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    token_with(serde_json::json!({
        "sub": sub,
        "channels": ["room-*"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": now + 3600,
    }))
}

fn keyed() -> Setup {
    Setup {
        hub: keyed_config(),
        ..Setup::default()
    }
}

/// The `welcome` frame's peer id, asserting it is the first frame.
async fn welcome_peer(ws: &mut Ws, what: &str) -> String {
    let text = ws.expect_text(what).await;
    let frame: serde_json::Value = serde_json::from_str(&text).expect("json frame");
    assert_eq!(frame["type"], "welcome", "{what}: first frame was {text}");
    frame["peerId"].as_str().expect("peerId").to_owned()
}

#[tokio::test]
async fn a_token_reaches_the_hub_from_the_query_the_header_or_the_subprotocol() {
    let server = keyed().start().await;
    let token = live_token("alice");

    // rtc.io-style query, with the endpoint's trailing slash.
    let mut by_query = Ws::connect(server.ws, &format!("/v1?token={token}/")).await;
    assert_eq!(
        welcome_peer(&mut by_query, "welcome (query)").await,
        "alice"
    );

    // Authorization header.
    let mut request = format!("ws://{}/v1", server.ws)
        .into_client_request()
        .expect("request");
    let bearer = format!("Bearer {token}");
    request
        .headers_mut()
        .insert("Authorization", bearer.parse().expect("header"));
    let stream = tokio::net::TcpStream::connect(server.ws)
        .await
        .expect("connect");
    let (inner, _) = tokio_tungstenite::client_async(request, stream)
        .await
        .expect("handshake with a header");
    let mut by_header = Ws { inner };
    assert_eq!(
        welcome_peer(&mut by_header, "welcome (header)").await,
        "alice"
    );

    // A bare JWT as the only subprotocol entry: echoed, and it authenticates.
    let (mut by_protocol, response) = Ws::handshake(server.ws, "/v1", Some(&token))
        .await
        .expect("handshake with a subprotocol token");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(token.as_bytes())
    );
    assert_eq!(
        welcome_peer(&mut by_protocol, "welcome (subprotocol)").await,
        "alice"
    );
}

#[tokio::test]
async fn a_bad_token_at_the_handshake_is_closed_4001_before_any_frame() {
    let server = keyed().start().await;
    let mut ws = Ws::connect(server.ws, "/v1?token=not.a.jwt").await;
    match ws.next("the 4001 close").await {
        Message::Close(Some(frame)) => assert_eq!(u16::from(frame.code), 4001),
        other => panic!("expected a close before any frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed_by_the_hubs_timer() {
    let mut setup = keyed();
    setup.hub.auth.auth_timeout = Duration::from_millis(200);
    let server = setup.start().await;
    let mut line = Line::connect(server.tcp).await;
    let close = line.expect_line("the auth-timeout close line").await;
    assert!(
        close.starts_with(r#"/close|{"code":4001,"#),
        "expected a 4001 close line, got {close}"
    );
}

#[tokio::test]
async fn json_peers_on_websocket_and_tcp_lines_publish_to_each_other() {
    let server = Setup {
        tcp: TcpConfig::new(LineDialect::Auto),
        ..Setup::default()
    }
    .start()
    .await;
    let mut web = Ws::connect(server.ws, "/v1").await;
    welcome_peer(&mut web, "web's welcome").await;
    web.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert!(
        web.expect_text("web's ack")
            .await
            .contains(r#""type":"ack""#)
    );
    web.expect_text("web's presence snapshot").await;

    let mut cli = Line::connect(server.tcp).await;
    cli.send("hello json").await;
    assert!(
        cli.expect_line("cli's welcome")
            .await
            .contains(r#""type":"welcome""#)
    );
    cli.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert!(
        cli.expect_line("cli's ack")
            .await
            .contains(r#""type":"ack""#)
    );
    cli.expect_line("cli's presence snapshot").await;
    assert!(
        web.expect_text("cli's join")
            .await
            .contains(r#""type":"presence""#)
    );

    cli.send(r#"{"type":"publish","channel":"room-1","data":{"n":1}}"#)
        .await;
    let message = web.expect_text("cli's message").await;
    assert!(
        message.contains(r#""type":"message""#) && message.contains(r#""data":{"n":1}"#),
        "got {message}"
    );
    web.inner
        .send(Message::text(
            r#"{"type":"publish","channel":"room-1","data":"hi"}"#,
        ))
        .await
        .expect("web publishes");
    let message = cli.expect_line("web's message").await;
    assert!(message.contains(r#""data":"hi""#), "got {message}");

    // An endless JSON line: the close line takes the JSON form.
    cli.write
        .write_all(&vec![b'{'; 64 * 1024 + 1])
        .await
        .expect("write junk");
    assert_eq!(
        cli.expect_line("the JSON close line").await,
        r#"{"type":"close","code":1009,"reason":"frame too large"}"#
    );
}

#[tokio::test]
async fn an_expired_token_at_the_handshake_is_closed_4002() {
    let server = keyed().start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let expired = token_with(serde_json::json!({"sub": "late", "exp": now - 60}));
    let mut ws = Ws::connect(server.ws, &format!("/v1?token={expired}")).await;
    match ws.next("the 4002 close").await {
        Message::Close(Some(frame)) => {
            assert_eq!(u16::from(frame.code), 4002, "{frame:?}");
        }
        other => panic!("expected a close before any frame, got {other:?}"),
    }
}

#[tokio::test]
async fn a_flood_is_refused_then_closed_4011_and_the_room_carries_on() {
    let mut setup = Setup::default();
    setup.hub.limits.message_rate = 1;
    setup.hub.limits.message_burst = 5;
    setup.hub.limits.rate_close_after = 3;
    let server = setup.start().await;
    let mut watcher = Ws::connect(server.ws, "/").await;
    watcher.send(&common::announce("watcher", "r")).await;
    assert!(
        watcher
            .expect_roominfo("roominfo")
            .await
            .starts_with("/roominfo")
    );
    let mut flooder = Ws::connect(server.ws, "/").await;
    flooder.send(&common::announce("flooder", "r")).await;
    assert!(
        flooder
            .expect_roominfo("roominfo")
            .await
            .starts_with("/roominfo")
    );
    assert!(
        watcher
            .expect_text("flooder's announce")
            .await
            .starts_with("/announce|flooder")
    );
    // One frame of the burst went into the announce; 4 more pass, then refusals, then the close.
    for i in 0..20 {
        let frame = format!("/x|flooder|{i}");
        if flooder.inner.send(Message::text(frame)).await.is_err() {
            break;
        }
    }
    let mut refused = 0;
    let (code, reason) = loop {
        match flooder.next("the flood's refusals and close").await {
            Message::Text(t) if t.contains("over_message_rate") => refused += 1,
            Message::Close(Some(frame)) => break (u16::from(frame.code), frame.reason.to_string()),
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!((code, reason.as_str()), (4011, "over message rate"));
    assert!(refused >= 1, "no over_message_rate error before the close");
    // The watcher got the admitted frames, in order and without gaps (the burst, plus
    // any token that refilled on a slow machine), then the synthetic leave.
    let mut admitted = 0;
    loop {
        let text = watcher.expect_text("admitted frames, then the leave").await;
        if text == common::leave("flooder") {
            break;
        }
        assert_eq!(text, format!("/x|flooder|{admitted}"));
        admitted += 1;
    }
    assert!(
        admitted >= 4,
        "only {admitted} frames of the burst were admitted"
    );
}

#[tokio::test]
async fn a_refresh_over_websocket_outlives_the_first_token_then_warns_and_closes_4002() {
    let mut setup = keyed();
    setup.hub.auth.leeway_secs = 0;
    let server = setup.start().await;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let token = |exp: u64| {
        token_with(serde_json::json!({
            "sub": "alice", "channels": ["room-*"], "permissions": ["subscribe"], "exp": exp,
        }))
    };
    let mut ws = Ws::connect(server.ws, &format!("/v1?token={}", token(now + 1))).await;
    welcome_peer(&mut ws, "welcome").await;
    let second = now + 3;
    ws.send(&format!(
        r#"{{"type":"refresh","token":"{}","requestId":"r1"}}"#,
        token(second)
    ))
    .await;
    assert_eq!(
        ws.expect_text("the refresh ack").await,
        format!(r#"{{"type":"ack","requestId":"r1","expiresAt":{second}}}"#)
    );
    // Shorter than the warning period (30 s): warned at once.
    assert_eq!(
        ws.expect_text("the expiry warning").await,
        format!(r#"{{"type":"token_expiring","expiresAt":{second}}}"#)
    );
    let (code, _) = ws.expect_close("the 4002 at the second token's exp").await;
    assert_eq!(code, 4002);
    let closed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    assert!(
        closed_at >= second,
        "closed at {closed_at}, before the refreshed exp {second}: the refresh did not hold"
    );
}
