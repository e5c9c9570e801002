//! The SDK against the real server, without reconnects: connecting with each kind of
//! credential, first-connect failures, acks and typed refusals, messages, directs and
//! presence, handler isolation, and `close()`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Server, key_client, next, settings, token, token_client, until};
use serde_json::json;
use switchyard_client::{
    Connected, Direct, Disconnected, Message, Presence, SignallingClient, SignallingClientOptions,
    SignallingConnectError, SignallingError, State, StateChange, SubscribeOptions,
};

fn with_token(url: &str, token: String) -> SignallingClient {
    SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .token_provider(move || {
                let token = token.clone();
                async move { Ok::<_, std::io::Error>(token) }
            })
            .no_reconnect(),
    )
    .expect("valid options")
}

fn connect_code(result: Result<(), SignallingError>) -> u16 {
    match result {
        Err(SignallingError::Connect(SignallingConnectError { close_code, .. })) => close_code,
        other => panic!("expected a connect error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_publishable_key_and_a_token_both_connect_and_get_the_welcome_fields() {
    let server = Server::start(settings()).await;

    let keyed = key_client(&server.url());
    let mut connected = keyed.events::<Connected>();
    keyed.connect().await.expect("connect with a key");
    let welcome = next(&mut connected, "the key client's Connected").await;
    assert!(!welcome.is_reconnect);
    assert_eq!(welcome.expires_at, None, "keys do not expire");
    assert_eq!(welcome.max_message_size, 65536);
    assert_eq!(keyed.peer_id().as_deref(), Some(welcome.peer_id.as_str()));

    let alice = token_client(&server.url(), "alice");
    let mut connected = alice.events::<Connected>();
    alice.connect().await.expect("connect with a token");
    let welcome = next(&mut connected, "alice's Connected").await;
    assert_eq!(welcome.peer_id, "alice");
    assert!(
        welcome
            .expires_at
            .is_some_and(|exp| exp > common::unix_now())
    );
    assert_eq!(alice.state(), State::Connected);
}

#[tokio::test]
async fn first_connect_failures_carry_the_close_code_and_leave_the_client_closed() {
    let mut limited = settings();
    limited.driver.max_connections = 1;
    let server = Server::start(limited).await;
    let url = server.url();

    let bad = with_token(&url, "not.a.jwt".into());
    let mut states = bad.events::<StateChange>();
    assert_eq!(connect_code(bad.connect().await), 4001);
    assert_eq!(bad.state(), State::Closed);
    let transcript = [
        next(&mut states, "idle → connecting").await,
        next(&mut states, "connecting → closed").await,
    ];
    assert_eq!(
        transcript.map(|c| (c.from, c.to)),
        [
            (State::Idle, State::Connecting),
            (State::Connecting, State::Closed)
        ]
    );
    // From closed, connect() may be called again (and fails the same way).
    assert_eq!(connect_code(bad.connect().await), 4001);

    let expired = switchyard_core::testing::token_with(
        json!({"sub": "late", "exp": common::unix_now() - 60}),
    );
    assert_eq!(
        connect_code(with_token(&url, expired).connect().await),
        4002
    );

    // The one connection slot taken: the next is closed with 4010 right after accept.
    let occupant = key_client(&url);
    occupant.connect().await.expect("the occupant connects");
    let second = with_token(&url, token("bob", 3600));
    assert_eq!(connect_code(second.connect().await), 4010);

    // Nothing listening: no close frame at all.
    server.kill().await;
    assert_eq!(connect_code(second.connect().await), 1006);

    let failing = SignallingClient::new(
        SignallingClientOptions::new()
            .url(&url)
            .token_provider(|| async { Err::<String, _>(std::io::Error::other("mint is down")) }),
    )
    .expect("valid options");
    match failing.connect().await {
        Err(SignallingError::TokenProvider(e)) => assert!(e.to_string().contains("mint is down")),
        other => panic!("expected a token provider error, got {other:?}"),
    }
}

#[tokio::test]
async fn requests_resolve_on_ack_and_refusals_come_back_typed() {
    let server = Server::start(settings()).await;
    let client = key_client(&server.url());

    // Before connect: nothing leaves the client, nothing is recorded.
    match client.publish("rooms/a", &json!(1)).await {
        Err(SignallingError::NotConnected { state }) => assert_eq!(state, State::Idle),
        other => panic!("expected NotConnected, got {other:?}"),
    }
    assert!(
        client
            .subscribe("rooms/a", SubscribeOptions::default())
            .await
            .is_err()
    );
    assert!(client.subscriptions().is_empty());

    client.connect().await.expect("connect");
    match client.connect().await {
        Err(SignallingError::AlreadyActive { state }) => assert_eq!(state, State::Connected),
        other => panic!("expected AlreadyActive, got {other:?}"),
    }

    client
        .subscribe("rooms/a", SubscribeOptions::default())
        .await
        .expect("subscribe is acked");
    client
        .publish("rooms/a", &json!({"sensor": "T-12", "value": 92}))
        .await
        .expect("publish is acked");
    for (result, code) in [
        (
            client
                .subscribe("secret/x", SubscribeOptions::default())
                .await,
            "channel_not_authorized",
        ),
        (
            client
                .subscribe("_system/x", SubscribeOptions::default())
                .await,
            "channel_reserved",
        ),
        (client.send("nobody", &json!({})).await, "peer_not_found"),
        (
            client.publish("rooms/*", &json!({})).await,
            "invalid_channel",
        ),
    ] {
        assert_eq!(result.unwrap_err().server_code(), Some(code));
    }
    assert_eq!(
        client.subscriptions(),
        ["rooms/a"],
        "refused subscribes are not re-subscribed after a reconnect"
    );
    client
        .unsubscribe("rooms/a")
        .await
        .expect("unsubscribe is acked");
    assert!(client.subscriptions().is_empty());
    assert_eq!(client.state(), State::Connected, "refusals never close");
}

#[tokio::test]
async fn messages_directs_and_presence_carry_the_documented_fields() {
    let server = Server::start(settings()).await;
    let alice = token_client(&server.url(), "alice");
    let bob = token_client(&server.url(), "bob");
    let mut bob_presence = bob.events::<Presence>();
    let mut bob_messages = bob.events::<Message>();
    let mut alice_presence = alice.events::<Presence>();
    let mut alice_directs = alice.events::<Direct>();
    alice.connect().await.expect("alice connects");
    bob.connect().await.expect("bob connects");

    let with_metadata = SubscribeOptions {
        include_sender_metadata: true,
    };
    bob.subscribe("rooms/chat", with_metadata)
        .await
        .expect("bob subscribes");
    let snapshot = next(&mut bob_presence, "bob's snapshot").await;
    assert!(
        snapshot.snapshot && snapshot.joined.is_empty(),
        "{snapshot:?}"
    );

    alice
        .subscribe("rooms/chat", SubscribeOptions::default())
        .await
        .expect("alice subscribes");
    let snapshot = next(&mut alice_presence, "alice's snapshot").await;
    assert_eq!(snapshot.joined.len(), 1);
    assert_eq!(snapshot.joined[0].peer_id, "bob");
    let joined = next(&mut bob_presence, "alice joining").await;
    assert!(!joined.snapshot);
    assert_eq!(joined.joined[0].peer_id, "alice");
    assert_eq!(joined.joined[0].metadata, Some(json!({"name": "alice"})));

    alice
        .publish("rooms/chat", &json!({"text": "hi"}))
        .await
        .expect("publish");
    let message = next(&mut bob_messages, "alice's message").await;
    assert_eq!(message.channel, "rooms/chat");
    assert_eq!(message.sender_peer_id, "alice");
    assert_eq!(message.data, json!({"text": "hi"}));
    assert_eq!(message.sender_metadata, Some(json!({"name": "alice"})));

    bob.send("alice", &json!({"nonce": "abc"}))
        .await
        .expect("send");
    let direct = next(&mut alice_directs, "bob's direct").await;
    assert_eq!(direct.sender_peer_id, "bob");
    assert_eq!(direct.data, json!({"nonce": "abc"}));

    alice.close(1000, "bye").await;
    let left = until(&mut bob_presence, "alice leaving", |p| !p.left.is_empty()).await;
    assert_eq!(left.left[0].peer_id, "alice");
}

#[tokio::test]
async fn a_panicking_handler_is_isolated_from_its_siblings_and_the_connection() {
    let server = Server::start(settings()).await;
    let client = key_client(&server.url());
    let other = key_client(&server.url());
    let seen = Arc::new(AtomicUsize::new(0));
    client.on::<Message>(|_| panic!("a broken application handler"));
    let counter = Arc::clone(&seen);
    client.on::<Message>(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let mut messages = client.events::<Message>();
    client.connect().await.expect("connect");
    other.connect().await.expect("connect");
    client
        .subscribe("rooms/x", SubscribeOptions::default())
        .await
        .expect("subscribe");

    for n in 0..3 {
        other.publish("rooms/x", &json!(n)).await.expect("publish");
        assert_eq!(next(&mut messages, "a message").await.data, json!(n));
    }
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "the sibling saw every message"
    );
    assert_eq!(client.state(), State::Connected);
    client
        .publish("rooms/x", &json!("still here"))
        .await
        .expect("still acked");
}

#[tokio::test]
async fn close_is_terminal_idempotent_and_ends_the_streams() {
    let server = Server::start(settings()).await;
    let client = key_client(&server.url());
    let mut disconnected = client.events::<Disconnected>();
    let mut states = client.events::<StateChange>();
    let once = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&once);
    client.once::<Connected>(move |_| {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    client.connect().await.expect("connect");
    client.close(4321, "done here").await;
    client.close(1000, "again").await;
    assert_eq!(client.state(), State::Closed);
    assert_eq!(once.load(Ordering::SeqCst), 1);

    let d = next(&mut disconnected, "the Disconnected of close()").await;
    assert_eq!(
        (d.code, d.reason.as_str(), d.will_reconnect),
        (4321, "done here", false)
    );
    assert!(
        disconnected.recv().await.is_none(),
        "one Disconnected, then the end"
    );
    let mut transcript = Vec::new();
    while let Some(change) = states.recv().await {
        transcript.push((change.from, change.to));
    }
    assert_eq!(
        transcript,
        [
            (State::Idle, State::Connecting),
            (State::Connecting, State::Connected),
            (State::Connected, State::Closed),
        ]
    );
    assert!(matches!(
        client.publish("rooms/a", &json!(1)).await,
        Err(SignallingError::NotConnected {
            state: State::Closed
        })
    ));
    // The key is still good: a closed client may connect again.
    client.connect().await.expect("connect after close");
    assert_eq!(client.state(), State::Connected);
}
