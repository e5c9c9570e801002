//! Reconnecting against the real server: restarts and killed connections, token
//! expiry with a fresh token, codes that stop the retries, the 4010 floor, backoff and
//! `max_attempts`, inactivity, and the token provider's failures. Timing-sensitive
//! tests drive the client's policy timers with a manual clock.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{ManualClock, Server, fast, key_client, next, settings, token, until};
use serde_json::json;
use switchyard_client::{
    Connected, Disconnected, Message, Presence, ReconnectOptions, SignallingClient,
    SignallingClientOptions, State, StateChange, SubscribeOptions, Timer, TokenProviderError,
    TokenProviderTimeout,
};

const HOUR: Duration = Duration::from_secs(3600);

/// A key client on `url` whose policy timers run on `clock`, without jitter.
fn clocked(url: &str, clock: &ManualClock, reconnect: ReconnectOptions) -> SignallingClient {
    SignallingClient::new(
        SignallingClientOptions::new()
            .url(url)
            .api_key(common::PK)
            .reconnect(reconnect)
            .inactivity_timeout(HOUR)
            .clock(clock.clone())
            .jitter(|| 0.0),
    )
    .expect("valid options")
}

#[tokio::test]
async fn a_server_restart_walks_the_state_machine_and_loses_no_subscription() {
    let server = Server::start(settings()).await;
    let port = server.addr.port();
    let client = key_client(&server.url());
    let mut states = client.events::<StateChange>();
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    let mut messages = client.events::<Message>();
    client.connect().await.expect("connect");
    let channels = ["rooms/a", "rooms/b", "rooms/c"];
    for channel in channels {
        client
            .subscribe(channel, SubscribeOptions::default())
            .await
            .expect("subscribe");
    }

    server.kill().await;
    let drop = next(&mut disconnected, "the drop").await;
    assert_eq!((drop.code, drop.will_reconnect), (1006, true));
    let server = Server::start_on(port, settings()).await;
    next(&mut connected, "the first Connected").await;
    let again = next(&mut connected, "the reconnect").await;
    assert!(again.is_reconnect);
    assert_eq!(client.subscriptions(), channels);

    // The new server knows nothing: only the re-subscribes can bring messages back.
    let me = client.peer_id().expect("a peer id");
    let other = key_client(&server.url());
    let mut presence = other.events::<Presence>();
    other.connect().await.expect("the other peer connects");
    let mut present = BTreeSet::new();
    for channel in channels {
        other
            .subscribe(channel, SubscribeOptions::default())
            .await
            .expect("subscribe");
    }
    while present.len() < channels.len() {
        let p = until(&mut presence, "the client back in every channel", |p| {
            p.joined.iter().any(|j| j.peer_id == me)
        })
        .await;
        present.insert(p.channel);
    }
    for channel in channels {
        other
            .publish(channel, &json!(channel))
            .await
            .expect("publish");
    }
    let mut received = BTreeSet::new();
    while received.len() < channels.len() {
        received.insert(next(&mut messages, "a message per channel").await.channel);
    }
    assert_eq!(received, BTreeSet::from(channels.map(String::from)));

    client.close(1000, "done").await;
    let mut transcript = Vec::new();
    while let Some(change) = states.recv().await {
        transcript.push((change.from, change.to));
    }
    assert_eq!(
        transcript,
        [
            (State::Idle, State::Connecting),
            (State::Connecting, State::Connected),
            (State::Connected, State::Reconnecting),
            (State::Reconnecting, State::Connected),
            (State::Connected, State::Closed),
        ]
    );
}

#[tokio::test]
async fn an_expired_token_4002_reconnects_with_a_fresh_token_from_the_provider() {
    let server = Server::start(settings()).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .reconnect(fast())
            // The fallback when no refresh happens in place (see tests/refresh.rs).
            .refresh_margin(Duration::ZERO)
            .token_provider(move || {
                // The first token expires in a second; the next ones in an hour.
                let secs = if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                    1
                } else {
                    3600
                };
                async move { Ok::<_, std::io::Error>(token("alice", secs)) }
            }),
    )
    .expect("valid options");
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    client.connect().await.expect("connect");
    client
        .subscribe("rooms/a", SubscribeOptions::default())
        .await
        .expect("subscribe");
    let first = next(&mut connected, "the first Connected").await;

    let drop = next(&mut disconnected, "the expiry close").await;
    assert_eq!((drop.code, drop.will_reconnect), (4002, true));
    let again = next(&mut connected, "the reconnect with a fresh token").await;
    assert!(again.is_reconnect);
    assert_eq!(again.peer_id, "alice");
    assert!(again.expires_at > first.expires_at);
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "one provider call per connect"
    );
    assert_eq!(client.subscriptions(), ["rooms/a"]);
}

#[tokio::test]
async fn a_4001_on_reconnect_stops_the_retries() {
    let server = Server::start(settings()).await;
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .reconnect(fast())
            .refresh_margin(Duration::ZERO)
            .token_provider(move || {
                // A short-lived token, then the backend hands out garbage.
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    Ok::<_, std::io::Error>(if n == 0 {
                        token("alice", 1)
                    } else {
                        "not.a.jwt".to_owned()
                    })
                }
            }),
    )
    .expect("valid options");
    let mut disconnected = client.events::<Disconnected>();
    let mut states = client.events::<StateChange>();
    client.connect().await.expect("connect");

    let expiry = next(&mut disconnected, "the expiry close").await;
    assert_eq!((expiry.code, expiry.will_reconnect), (4002, true));
    let terminal = next(&mut disconnected, "the terminal Disconnected").await;
    assert_eq!((terminal.code, terminal.will_reconnect), (4001, false));
    until(&mut states, "reconnecting → closed", |c| {
        c.to == State::Closed
    })
    .await;
    assert_eq!(client.state(), State::Closed);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "no attempt after the 4001");
}

#[tokio::test]
async fn a_4010_on_reconnect_waits_at_least_thirty_seconds() {
    let mut limited = settings();
    limited.driver.max_connections = 1;
    let server = Server::start(limited.clone()).await;
    let port = server.addr.port();
    let clock = ManualClock::default();
    let client = clocked(&server.url(), &clock, ReconnectOptions::default());
    let mut connected = client.events::<Connected>();
    client.connect().await.expect("connect");

    server.kill().await;
    let (attempt, delay) = clock.next_backoff("the first backoff").await;
    assert_eq!((attempt, delay), (1, Duration::from_millis(500)));
    let server = Server::start_on(port, limited).await;
    let occupant = key_client(&server.url());
    occupant
        .connect()
        .await
        .expect("the occupant takes the only slot");
    clock.advance(delay);

    let (attempt, delay) = clock.next_backoff("the backoff after 4010").await;
    assert_eq!(attempt, 2);
    assert_eq!(
        delay,
        Duration::from_secs(30),
        "the floor, not backoff(2) = 1 s"
    );
    clock.advance(delay - Duration::from_millis(1));
    assert_eq!(
        client.state(),
        State::Reconnecting,
        "still waiting out the floor"
    );

    occupant.close(1000, "making room").await;
    clock.advance(Duration::from_millis(1));
    // The freed slot may lag the occupant's close by a moment: a second 4010 only
    // means one more floor to wait out.
    loop {
        tokio::select! {
            c = next(&mut connected, "the reconnect") => {
                if c.is_reconnect {
                    break;
                }
            }
            (_, delay) = clock.next_backoff("another floor") => {
                assert!(delay >= Duration::from_secs(30));
                clock.advance(delay);
            }
        }
    }
    assert_eq!(client.state(), State::Connected);
}

#[tokio::test]
async fn backoff_follows_the_formula_and_max_attempts_ends_in_a_terminal_disconnect() {
    let server = Server::start(settings()).await;
    let clock = ManualClock::default();
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .api_key(common::PK)
            .reconnect(ReconnectOptions {
                max_attempts: Some(3),
                ..ReconnectOptions::default()
            })
            .inactivity_timeout(HOUR)
            .clock(clock.clone())
            .jitter(|| 0.5),
    )
    .expect("valid options");
    let mut disconnected = client.events::<Disconnected>();
    let mut states = client.events::<StateChange>();
    client.connect().await.expect("connect");
    server.kill().await;
    let drop = next(&mut disconnected, "the drop").await;
    assert!(drop.will_reconnect);

    // min(0.5 s · 2^(n−1), 30 s) · (1 + 0.2 · 0.5)
    for (expected_attempt, ms) in [(1, 550), (2, 1100), (3, 2200)] {
        let (attempt, delay) = clock.next_backoff("a backoff").await;
        assert_eq!(
            (attempt, delay),
            (expected_attempt, Duration::from_millis(ms))
        );
        clock.advance(delay);
    }
    let terminal = next(&mut disconnected, "the terminal Disconnected").await;
    assert_eq!((terminal.code, terminal.will_reconnect), (1006, false));
    until(&mut states, "reconnecting → closed", |c| {
        c.from == State::Reconnecting && c.to == State::Closed
    })
    .await;
    assert_eq!(clock.count(|t| matches!(t, Timer::Backoff { .. })), 3);
}

#[tokio::test]
async fn no_frame_within_the_inactivity_window_closes_4000_and_reconnects() {
    let server = Server::start(settings()).await;
    let clock = ManualClock::default();
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .api_key(common::PK)
            .inactivity_timeout(Duration::from_secs(60))
            .clock(clock.clone())
            .jitter(|| 0.0),
    )
    .expect("valid options");
    let mut connected = client.events::<Connected>();
    let mut disconnected = client.events::<Disconnected>();
    client.connect().await.expect("connect");
    next(&mut connected, "the first Connected").await;

    clock.advance(Duration::from_secs(60));
    let drop = next(&mut disconnected, "the inactivity close").await;
    assert_eq!((drop.code, drop.will_reconnect), (4000, true));
    let (_, delay) = clock.next_backoff("the backoff").await;
    clock.advance(delay);
    assert!(next(&mut connected, "the reconnect").await.is_reconnect);
}

#[tokio::test]
async fn every_server_ping_restarts_the_inactivity_window() {
    let mut fast_pings = settings();
    fast_pings.ws.ping_interval_ms = 20;
    let server = Server::start(fast_pings).await;
    let clock = ManualClock::default();
    let client = clocked(&server.url(), &clock, fast());
    client.connect().await.expect("connect");
    let is_window = |t| t == Timer::Inactivity;
    // One window for the connect attempt, one for the session, then one per frame:
    // with no application traffic, only pings can restart it.
    for n in 0..5 {
        clock
            .next_sleep(&format!("inactivity window {n}"), is_window)
            .await;
    }
    assert!(clock.count(is_window) >= 5);
    assert_eq!(client.state(), State::Connected);
}

#[tokio::test]
async fn token_provider_failures_and_timeouts_are_retried_and_reported_after_three() {
    let server = Server::start(settings()).await;
    let port = server.addr.port();
    let clock = ManualClock::default();
    let calls = Arc::new(AtomicU32::new(0));
    let counter = Arc::clone(&calls);
    let client = SignallingClient::new(
        SignallingClientOptions::new()
            .url(server.url())
            .reconnect(fast())
            .inactivity_timeout(HOUR)
            .clock(clock.clone())
            .jitter(|| 0.0)
            .token_provider(move || {
                let n = counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    match n {
                        0 | 5.. => Ok(token("alice", 3600)),
                        1..=3 => Err(std::io::Error::other("mint endpoint down")),
                        // The fourth reconnect's call hangs until the cap.
                        _ => std::future::pending().await,
                    }
                }
            }),
    )
    .expect("valid options");
    let mut reports = client.events::<TokenProviderError>();
    let mut connected = client.events::<Connected>();
    client.connect().await.expect("connect");
    server.kill().await;
    let _server = Server::start_on(port, settings()).await;

    clock
        .next_sleep("the first connect's cap", |t| t == Timer::TokenProvider)
        .await;
    for attempt in 1..=4 {
        let (n, delay) = clock.next_backoff("a backoff").await;
        assert_eq!(n, attempt);
        clock.advance(delay);
        clock
            .next_sleep("the provider's cap", |t| t == Timer::TokenProvider)
            .await;
        if attempt == 4 {
            clock.advance(Duration::from_secs(10));
        }
        if attempt >= 3 {
            let report = next(&mut reports, "a TokenProviderError").await;
            assert_eq!(report.consecutive_failures, attempt);
            assert_eq!(
                report
                    .error
                    .downcast_ref::<TokenProviderTimeout>()
                    .is_some(),
                attempt == 4,
                "{}",
                report.error
            );
        }
    }
    let report = reports.try_recv();
    assert!(report.is_none(), "one report per failure from the third on");
    let (_, delay) = clock.next_backoff("the last backoff").await;
    clock.advance(delay);
    until(&mut connected, "the reconnect", |c| c.is_reconnect).await;
    assert_eq!(calls.load(Ordering::SeqCst), 6);
}

/// A graceful server shutdown (what SIGTERM does) tells the client `going_away`, then
/// closes with 1001, which the client retries with its normal backoff.
#[tokio::test]
async fn a_graceful_shutdown_says_going_away_then_1001_and_the_client_will_reconnect() {
    let mut running = switchyard::server::start(&settings())
        .await
        .expect("server starts");
    let addr = running.ws_addr.expect("a WebSocket listener");
    let client = key_client(&format!("ws://{addr}"));
    let mut disconnected = client.events::<Disconnected>();
    let mut going_away = client.events::<switchyard_client::GoingAway>();
    client.connect().await.expect("connect");

    running
        .shutdown(Duration::from_millis(250), Duration::from_secs(5))
        .await;
    let hint = next(&mut going_away, "going_away before the 1001").await;
    assert_eq!(hint.retry_after_ms, Some(250));
    let drop = next(&mut disconnected, "the close after going_away").await;
    assert_eq!((drop.code, drop.will_reconnect), (1001, true));
    client.close(1000, "done").await;
}
