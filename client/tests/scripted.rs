//! The SDK against a scripted WebSocket server, for what the real server never does
//! (closes with 4003, 4012, 4020, 4013 or 1001 after `going_away` on demand) and for
//! exact orderings: a drop between a request and its ack.

mod common;

use std::time::Duration;

use common::{FakeServer, ManualClock, next};
use serde_json::json;
use switchyard_client::{
    Connected, Disconnected, GoingAway, ReconnectOptions, ServerError, SignallingClient,
    SignallingClientOptions, SignallingError, State, SubscribeOptions, Timer,
};

fn client(url: &str, clock: &ManualClock) -> SignallingClient {
    SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .api_key("pk_scripted")
            .reconnect(ReconnectOptions::default())
            .inactivity_timeout(Duration::from_secs(3600))
            .clock(clock.clone())
            .jitter(|| 0.0),
    )
    .expect("valid options")
}

fn backoffs(clock: &ManualClock) -> usize {
    clock.count(|t| matches!(t, Timer::Backoff { .. }))
}

#[tokio::test]
async fn caller_action_codes_4003_4012_4020_never_retry() {
    for code in [4003, 4012, 4020] {
        let mut server = FakeServer::start().await;
        let clock = ManualClock::default();
        let client = client(&server.url(), &clock);
        let mut disconnected = client.events::<Disconnected>();
        let connecting = tokio::spawn({
            let client = client.clone();
            async move { client.connect().await }
        });
        let mut conn = server.accept("the connection").await;
        assert!(
            conn.target.starts_with("/v1?key=pk_scripted"),
            "{}",
            conn.target
        );
        conn.welcome("p1").await;
        connecting.await.expect("join").expect("connect");
        conn.close(code, "caller action required").await;

        let d = next(&mut disconnected, "the terminal Disconnected").await;
        assert_eq!((d.code, d.will_reconnect), (code, false), "{code}");
        assert_eq!(client.state(), State::Closed, "{code}");
        assert_eq!(backoffs(&clock), 0, "{code}: no backoff was even started");
        assert_eq!(server.accepted(), 1, "{code}");
    }
}

#[tokio::test]
async fn slow_consumer_4013_and_going_away_1001_retry_with_the_normal_backoff() {
    let mut server = FakeServer::start().await;
    let clock = ManualClock::default();
    let client = client(&server.url(), &clock);
    let mut disconnected = client.events::<Disconnected>();
    let mut going_away = client.events::<GoingAway>();
    let conn = welcomed(&mut server, &client, "the first connection").await;

    conn.close(4013, "outbound queue full").await;
    let d = next(&mut disconnected, "the 4013").await;
    assert_eq!((d.code, d.will_reconnect), (4013, true));
    let (attempt, delay) = clock.next_backoff("the backoff after 4013").await;
    assert_eq!((attempt, delay), (1, Duration::from_millis(500)));
    clock.advance(delay);

    let mut conn = server.accept("the second connection").await;
    conn.welcome("p1").await;
    conn.send(json!({"type": "going_away", "retryAfterMs": 5000}))
        .await;
    let hint = next(&mut going_away, "the going_away").await;
    assert_eq!(hint.retry_after_ms, Some(5000));
    conn.close(1001, "restarting").await;
    let d = next(&mut disconnected, "the 1001").await;
    assert_eq!((d.code, d.will_reconnect), (1001, true));
    let (attempt, delay) = clock.next_backoff("the backoff after 1001").await;
    assert_eq!(
        (attempt, delay),
        (1, Duration::from_millis(500)),
        "the welcome reset the counter; going_away's hint is not applied"
    );
}

#[tokio::test]
async fn a_subscribe_dropped_before_its_ack_is_re_subscribed_on_the_next_connection() {
    let mut server = FakeServer::start().await;
    let clock = ManualClock::default();
    let client = client(&server.url(), &clock);
    let mut conn = welcomed(&mut server, &client, "the first connection").await;

    let subscribing = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .subscribe(
                    "rooms/a",
                    SubscribeOptions {
                        include_sender_metadata: true,
                    },
                )
                .await
        }
    });
    let frame = conn.recv("the subscribe").await;
    assert_eq!(frame["type"], "subscribe");
    drop(conn); // no ack, no close frame
    match subscribing.await.expect("join") {
        Err(SignallingError::Disconnected(_)) => {}
        other => panic!("expected DisconnectedError, got {other:?}"),
    }
    assert_eq!(client.subscriptions(), ["rooms/a"]);

    let (_, delay) = clock.next_backoff("the backoff").await;
    clock.advance(delay);
    let mut conn = server.accept("the second connection").await;
    conn.welcome("p1").await;
    let frame = conn.recv("the re-subscribe").await;
    assert_eq!(frame["type"], "subscribe");
    assert_eq!(frame["channel"], "rooms/a");
    assert_eq!(frame["includeSenderMetadata"], true);
}

#[tokio::test]
async fn a_request_in_flight_fails_with_disconnected_and_stray_errors_are_events() {
    let mut server = FakeServer::start().await;
    let clock = ManualClock::default();
    let client = client(&server.url(), &clock);
    let mut errors = client.events::<ServerError>();
    let mut conn = welcomed(&mut server, &client, "the connection").await;

    // An error for no pending request: an event, and the connection stays.
    conn.send(json!({"type": "error", "code": "over_message_rate", "message": "slow down"}))
        .await;
    let e = next(&mut errors, "the stray error").await;
    assert_eq!((e.code.as_str(), e.request_id), ("over_message_rate", None));

    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("rooms/a", &json!({"n": 1})).await }
    });
    let frame = conn.recv("the publish").await;
    assert_eq!(frame["data"], json!({"n": 1}));
    let request_id = frame["requestId"].as_str().expect("a requestId").to_owned();
    conn.send(json!({"type": "error", "code": "over_message_quota", "message": "quota", "requestId": request_id}))
        .await;
    match publishing.await.expect("join") {
        Err(e) => assert_eq!(e.server_code(), Some("over_message_quota")),
        Ok(()) => panic!("the refusal was lost"),
    }

    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("rooms/a", &json!({"n": 2})).await }
    });
    conn.recv("the second publish").await;
    conn.close(1011, "internal error").await;
    match publishing.await.expect("join") {
        Err(SignallingError::Disconnected(_)) => {}
        other => panic!("expected DisconnectedError, got {other:?}"),
    }
    assert_eq!(client.state(), State::Reconnecting);
}

/// Connects `client` to the next connection of `server`, welcomed as `p1`.
async fn welcomed(
    server: &mut FakeServer,
    client: &SignallingClient,
    what: &str,
) -> common::FakeConn {
    let connecting = tokio::spawn({
        let client = client.clone();
        async move { client.connect().await }
    });
    let mut conn = server.accept(what).await;
    conn.welcome("p1").await;
    connecting.await.expect("join").expect("connect");
    conn
}

#[tokio::test]
async fn with_reconnect_off_every_drop_is_terminal() {
    let mut server = FakeServer::start().await;
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .api_key("pk_scripted")
            .no_reconnect(),
    )
    .expect("valid options");
    let mut disconnected = client.events::<Disconnected>();
    let conn = welcomed(&mut server, &client, "the connection").await;
    conn.close(1001, "restarting").await;
    let d = next(&mut disconnected, "the terminal Disconnected").await;
    assert_eq!((d.code, d.will_reconnect), (1001, false));
    assert_eq!(client.state(), State::Closed);
}

#[tokio::test]
async fn without_auto_resubscribe_nothing_is_recorded_or_replayed() {
    let mut server = FakeServer::start().await;
    let clock = ManualClock::default();
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .api_key("pk_scripted")
            .auto_resubscribe(false)
            .clock(clock.clone())
            .jitter(|| 0.0),
    )
    .expect("valid options");
    let mut connected = client.events::<Connected>();
    let mut conn = welcomed(&mut server, &client, "the first connection").await;
    let subscribing = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .subscribe("rooms/a", SubscribeOptions::default())
                .await
        }
    });
    let frame = conn.recv("the subscribe").await;
    conn.send(json!({"type": "ack", "requestId": frame["requestId"]}))
        .await;
    subscribing.await.expect("join").expect("acked");
    assert!(client.subscriptions().is_empty());

    conn.close(4000, "idle").await;
    let (_, delay) = clock.next_backoff("the backoff").await;
    clock.advance(delay);
    let mut conn = server.accept("the second connection").await;
    conn.welcome("p1").await;
    common::until(&mut connected, "the reconnect", |c| c.is_reconnect).await;
    let publishing = tokio::spawn({
        let client = client.clone();
        async move { client.publish("rooms/a", &json!("first")).await }
    });
    let frame = conn.recv("the first frame on the new connection").await;
    assert_eq!(
        frame["type"], "publish",
        "no subscribe was replayed: {frame}"
    );
    publishing.abort();
}
