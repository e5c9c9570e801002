//! Recovery across a server-side kick, against the real server with a `[[history]]`
//! rule: the SDK remembers where each history channel stands, re-subscribes with
//! `recover`, and the messages published while it was away arrive once each, in
//! order, before `Recovered`; a gap the history no longer holds says
//! `recovered: false`.

mod common;

use bytes::Bytes;
use common::{Server, key_client, next, settings};
use serde_json::json;
use switchyard::settings::HistorySettings;
use switchyard_client::{Disconnected, Message, Recovered, SignallingClient, SubscribeOptions};
use switchyard_core::CloseCode;

/// `rooms/small/**` keeps five messages; the rest of `rooms/**` keeps plenty.
fn server_settings() -> switchyard::settings::Settings {
    let mut s = settings();
    for (channels, size) in [("rooms/small/**", 5), ("rooms/**", 1000)] {
        s.history.push(HistorySettings {
            channels: channels.into(),
            size,
            ttl_ms: 60_000,
        });
    }
    s
}

fn data(n: u64) -> serde_json::Value {
    json!({"n": n})
}

/// Closes `client`'s connection from the server with a code the SDK retries (4013,
/// a slow consumer) and, in the same turn of the hub, publishes `missed` into
/// `channel`: every one of them is published after the close.
async fn kick_and_publish(
    server: &Server,
    client: &SignallingClient,
    channel: &'static str,
    missed: std::ops::RangeInclusive<u64>,
) {
    let peer = client.peer_id().expect("a peer id");
    let closed = server
        .driver()
        .call(move |hub, now| {
            let closed = hub.disconnect(
                now,
                "default",
                &peer,
                CloseCode::SLOW_CONSUMER,
                "kicked by the test",
            );
            for n in missed {
                let data = Bytes::from(data(n).to_string());
                hub.publish_event(now, "default", channel, None, data)
                    .expect("a server publish");
            }
            closed
        })
        .await
        .expect("the driver runs");
    assert_eq!(closed, 1, "the kick closes the client's one connection");
}

/// The `(data.n, offset)` of messages on `channel` until the one with `last`.
async fn received_until(
    messages: &mut switchyard_client::EventStream<Message>,
    channel: &str,
    last: u64,
) -> Vec<(u64, Option<u64>)> {
    let mut got = Vec::new();
    loop {
        let m = next(messages, &format!("message {last} on {channel}")).await;
        if m.channel != channel {
            continue;
        }
        let n = m.data["n"].as_u64().expect("data.n");
        got.push((n, m.offset));
        if n == last {
            return got;
        }
    }
}

#[tokio::test]
async fn the_sdk_recovers_across_a_server_side_kick_once_each_in_order() {
    const CHANNEL: &str = "rooms/history";
    let server = Server::start(server_settings()).await;
    let client = key_client(&server.url());
    let mut messages = client.events::<Message>();
    let mut recovered = client.events::<Recovered>();
    let mut disconnected = client.events::<Disconnected>();
    client.connect().await.expect("connect");
    client
        .subscribe(CHANNEL, SubscribeOptions::default())
        .await
        .expect("subscribe");
    let publisher = key_client(&server.url());
    publisher.connect().await.expect("the publisher connects");
    for n in 1..=3 {
        publisher.publish(CHANNEL, &data(n)).await.expect("publish");
    }
    let before = received_until(&mut messages, CHANNEL, 3).await;
    assert_eq!(before, [(1, Some(1)), (2, Some(2)), (3, Some(3))]);

    kick_and_publish(&server, &client, CHANNEL, 4..=23).await;
    let drop = next(&mut disconnected, "the kick").await;
    assert_eq!((drop.code, drop.will_reconnect), (4013, true));
    // These race the reconnect: replayed or live, each must still come once.
    for n in 24..=30 {
        publisher.publish(CHANNEL, &data(n)).await.expect("publish");
    }
    let r = next(&mut recovered, "Recovered after the reconnect").await;
    assert_eq!((r.channel.as_str(), r.recovered), (CHANNEL, true));
    for n in 31..=33 {
        publisher.publish(CHANNEL, &data(n)).await.expect("publish");
    }
    let after = received_until(&mut messages, CHANNEL, 33).await;
    let expected: Vec<_> = (4..=33).map(|n| (n, Some(n))).collect();
    assert_eq!(after, expected, "once each, in order, no gap");
    assert!(
        recovered.try_recv().is_none(),
        "one Recovered per reconnect"
    );
}

#[tokio::test]
async fn a_gap_the_history_no_longer_holds_is_recovered_false_then_live_messages_follow() {
    const CHANNEL: &str = "rooms/small/x";
    let server = Server::start(server_settings()).await;
    let client = key_client(&server.url());
    let mut messages = client.events::<Message>();
    let mut recovered = client.events::<Recovered>();
    client.connect().await.expect("connect");
    client
        .subscribe(CHANNEL, SubscribeOptions::default())
        .await
        .expect("subscribe");
    // Twenty missed into a history of five: the gap cannot be replayed.
    kick_and_publish(&server, &client, CHANNEL, 1..=20).await;
    let r = next(&mut recovered, "Recovered after the reconnect").await;
    assert_eq!((r.channel.as_str(), r.recovered), (CHANNEL, false));
    assert!(
        messages.try_recv().is_none(),
        "nothing is replayed when the gap cannot be"
    );
    let publisher = key_client(&server.url());
    publisher.connect().await.expect("the publisher connects");
    publisher
        .publish(CHANNEL, &data(21))
        .await
        .expect("publish");
    assert_eq!(
        received_until(&mut messages, CHANNEL, 21).await,
        [(21, Some(21))]
    );
}

/// A private `redis-server` on a free loopback port, without persistence, killed
/// when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Self {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let mut child = std::process::Command::new("redis-server")
                .args(["--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("redis-server is installed (scripts/test installs it)");
            let deadline = std::time::Instant::now() + common::WAIT;
            while std::time::Instant::now() < deadline {
                if child.try_wait().ok().flatten().is_some() {
                    break; // the port was taken: another one
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("redis-server did not start on any of 5 free ports");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A cluster node of `redis` with the test's history rules.
fn node_settings(redis: &Redis) -> switchyard::settings::Settings {
    let mut s = server_settings();
    s.engine.kind = "redis".into();
    s.engine.url = format!("redis://127.0.0.1:{}", redis.port);
    s.engine.presence_ttl_ms = 1_000;
    s
}

#[tokio::test]
async fn the_sdk_recovers_across_a_server_restart_from_the_stream_in_redis() {
    const CHANNEL: &str = "rooms/restart";
    let redis = Redis::start();
    let server = Server::start(node_settings(&redis)).await;
    let port = server.addr.port();
    // Another node of the cluster publishes while the client's server is down.
    let other = Server::start(node_settings(&redis)).await;
    let publisher = key_client(&other.url());
    publisher.connect().await.expect("the publisher connects");

    let client = key_client(&server.url());
    let mut messages = client.events::<Message>();
    let mut recovered = client.events::<Recovered>();
    let mut disconnected = client.events::<Disconnected>();
    client.connect().await.expect("connect");
    client
        .subscribe(CHANNEL, SubscribeOptions::default())
        .await
        .expect("subscribe");
    for n in 1..=3 {
        publisher.publish(CHANNEL, &data(n)).await.expect("publish");
    }
    let before = received_until(&mut messages, CHANNEL, 3).await;
    assert_eq!(before, [(1, Some(1)), (2, Some(2)), (3, Some(3))]);

    server.kill().await;
    let gone = next(&mut disconnected, "the server going away").await;
    assert!(gone.will_reconnect, "{gone:?}");
    for n in 4..=20 {
        publisher.publish(CHANNEL, &data(n)).await.expect("publish");
    }
    // The same address again: a fresh process's memory, the stream still in Redis.
    let restarted = Server::start_on(port, node_settings(&redis)).await;
    let r = next(&mut recovered, "Recovered after the restart").await;
    assert_eq!((r.channel.as_str(), r.recovered), (CHANNEL, true));
    publisher
        .publish(CHANNEL, &data(21))
        .await
        .expect("publish");
    let after = received_until(&mut messages, CHANNEL, 21).await;
    let expected: Vec<_> = (4..=21).map(|n| (n, Some(n))).collect();
    assert_eq!(after, expected, "once each, in order, no gap");
    drop(restarted);
}
