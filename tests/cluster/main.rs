//! Several `switchyard serve` processes as one cluster over a real `redis-server`
//! (`[engine] kind = "redis"`): messages, presence, direct sends and rtc-signaller
//! rooms across nodes, a node killed with `kill -9`, Redis itself restarted, and a node
//! that starts late. Every test starts its own Redis on a free port and its own nodes,
//! and kills them all when it ends, failing or not.
//!
//! One test binary (`cargo test --test cluster`): the processes in `harness`, the
//! scenarios here.

#[path = "../common/mod.rs"]
mod common;
mod control;
mod harness;
mod history;
mod rtc_io;
mod wires;

use std::time::{Duration, Instant};

use common::{WAIT, Ws, announce, http, is_introduction, leave};
use harness::{API_KEY, Node, Options, Redis, TTL};
use serde_json::{Value, json};

/// A JSON-dialect client on `/v1` (anonymous: the node names it).
struct Json {
    ws: Ws,
    peer: String,
}

impl Json {
    async fn connect(node: &Node) -> Self {
        let mut ws = Ws::connect(node.ws, "/v1").await;
        let welcome = Self::parse(&ws.expect_text("welcome").await);
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        let peer = welcome["peerId"].as_str().expect("peerId").to_owned();
        Self { ws, peer }
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    async fn send(&mut self, frame: Value) {
        self.ws.send(&frame.to_string()).await;
    }

    async fn next(&mut self, what: &str) -> Value {
        Self::parse(&self.ws.expect_text(what).await)
    }

    /// The next frame of `kind`, past acks and presence deltas.
    async fn next_of(&mut self, kind: &str, what: &str) -> Value {
        loop {
            let frame = self.next(what).await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                frame["type"] == "ack" || frame["type"] == "presence",
                "unexpected frame while waiting for {what}: {frame}"
            );
        }
    }

    /// Subscribes; returns the presence snapshot.
    async fn subscribe(&mut self, channel: &str) -> Value {
        self.send(json!({"type": "subscribe", "channel": channel, "requestId": "sub"}))
            .await;
        let ack = self.next("subscribe ack").await;
        assert_eq!(ack, json!({"type": "ack", "requestId": "sub"}));
        let snapshot = self.next("presence snapshot").await;
        assert_eq!(snapshot["snapshot"], true, "{snapshot}");
        snapshot
    }

    async fn publish(&mut self, channel: &str, data: Value, request: &str) {
        self.send(
            json!({"type": "publish", "channel": channel, "data": data, "requestId": request}),
        )
        .await;
    }

    /// Reads until the ack of `request`; no `message` may come meanwhile.
    async fn until_ack(&mut self, request: &str) {
        loop {
            let frame = self.next(&format!("ack {request}")).await;
            assert_ne!(
                frame["type"], "message",
                "the publisher got a message: {frame}"
            );
            assert_ne!(frame["type"], "error", "{frame}");
            if frame["requestId"] == request {
                return;
            }
        }
    }
}

fn peers(frame: &Value, list: &str) -> Vec<String> {
    let mut ids: Vec<String> = frame[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {frame}"))
        .iter()
        .map(|p| p["peerId"].as_str().expect("peerId").to_owned())
        .collect();
    ids.sort();
    ids
}

async fn nodes(redis: &Redis, ids: &[&str]) -> Vec<Node> {
    let with: Vec<_> = ids.iter().map(|id| (*id, Options::default())).collect();
    nodes_with(redis, &with).await
}

/// Starts each node with its options; returns once every node hears all the others.
async fn nodes_with(redis: &Redis, nodes: &[(&str, Options)]) -> Vec<Node> {
    let mut started = Vec::new();
    for (id, options) in nodes {
        started.push(Node::start_with(redis, id, *options).await);
    }
    for node in &started {
        node.wait_live_nodes(nodes.len() as u64 - 1).await;
    }
    started
}

#[tokio::test]
async fn json_publish_on_one_node_reaches_another_once_and_in_order() {
    let redis = Redis::start("publish");
    let [a, b] = <[Node; 2]>::try_from(nodes(&redis, &["pa", "pb"]).await)
        .ok()
        .unwrap();
    let mut far = Json::connect(&b).await;
    far.subscribe("news").await;
    let mut near = Json::connect(&a).await;
    near.subscribe("news").await;
    let mut publisher = Json::connect(&a).await;
    publisher.subscribe("news").await;
    b.wait_presence("news", &[&near.peer, &publisher.peer, &far.peer])
        .await;
    for n in 0..200 {
        publisher
            .publish("news", json!({"n": n}), &format!("p{n}"))
            .await;
    }
    publisher.publish("news", json!("end"), "end").await;
    publisher.until_ack("end").await;
    for client in [&mut far, &mut near] {
        for n in 0..200 {
            let m = client.next_of("message", &format!("message {n}")).await;
            assert_eq!(
                m["data"],
                json!({"n": n}),
                "out of order or duplicated: {m}"
            );
            assert_eq!(m["from"], publisher.peer.as_str());
        }
        let m = client.next_of("message", "the end marker").await;
        assert_eq!(m["data"], "end", "a duplicate came before the marker: {m}");
    }
}

#[tokio::test]
async fn presence_snapshot_is_the_union_of_every_node_and_deltas_follow() {
    let redis = Redis::start("presence");
    let [a, b] = <[Node; 2]>::try_from(nodes(&redis, &["sa", "sb"]).await)
        .ok()
        .unwrap();
    let mut alice = Json::connect(&a).await;
    alice.subscribe("room-1").await;
    b.wait_presence("room-1", &[&alice.peer]).await;
    let mut bob = Json::connect(&b).await;
    let snapshot = bob.subscribe("room-1").await;
    assert_eq!(
        peers(&snapshot, "joined"),
        vec![alice.peer.clone()],
        "{snapshot}"
    );
    let delta = alice
        .next_of("presence", "bob's arrival on alice's node")
        .await;
    assert_eq!(peers(&delta, "joined"), vec![bob.peer.clone()], "{delta}");
    alice
        .send(json!({"type": "unsubscribe", "channel": "room-1", "requestId": "u"}))
        .await;
    let delta = bob.next_of("presence", "alice's leave on bob's node").await;
    assert_eq!(peers(&delta, "left"), vec![alice.peer.clone()], "{delta}");
    assert_eq!(delta["count"], 1, "{delta}");
}

#[tokio::test]
async fn send_reaches_a_peer_held_by_another_node_and_only_unknown_peers_are_not_found() {
    let redis = Redis::start("send");
    let [a, b] = <[Node; 2]>::try_from(nodes(&redis, &["da", "db"]).await)
        .ok()
        .unwrap();
    let mut alice = Json::connect(&a).await;
    let mut bob = Json::connect(&b).await;
    // Node da knows bob is online once it sees him present in a channel: a node tells
    // its peers' coming online before their subscriptions, in order.
    bob.subscribe("dm-wait").await;
    a.wait_presence("dm-wait", &[bob.peer.as_str()]).await;
    alice
        .send(json!({"type": "send", "to": bob.peer, "data": {"x": 1}, "requestId": "s1"}))
        .await;
    let ack = alice.next("send ack").await;
    assert_eq!(ack, json!({"type": "ack", "requestId": "s1"}));
    let direct = bob.next("the direct message").await;
    assert_eq!(direct["type"], "direct", "{direct}");
    assert_eq!(direct["from"], alice.peer.as_str());
    assert_eq!(direct["data"], json!({"x": 1}));
    alice
        .send(json!({"type": "send", "to": "nobody-anywhere", "data": 1, "requestId": "s2"}))
        .await;
    let error = alice.next("peer_not_found").await;
    assert_eq!(error["code"], "peer_not_found", "{error}");
    assert_eq!(error["requestId"], "s2");
}

#[tokio::test]
async fn signaller_room_spans_nodes_and_a_killed_node_s_peers_leave_within_the_ttl() {
    let redis = Redis::start("room");
    let [mut a, b] = <[Node; 2]>::try_from(nodes(&redis, &["ra", "rb"]).await)
        .ok()
        .unwrap();
    let mut x = Ws::connect(a.ws, "/").await;
    x.send(&announce("x", "r1")).await;
    assert_eq!(
        x.expect_roominfo("x's roominfo").await,
        r#"/roominfo|{"memberCount":1}"#
    );
    b.wait_presence("r1", &["x"]).await;
    let mut y = Ws::connect(b.ws, "/").await;
    y.send(&announce("y", "r1")).await;
    let intro = y.expect_text("y's introduction to x").await;
    assert!(
        is_introduction(&intro) && intro.starts_with("/to|y|/announce|x|"),
        "{intro}"
    );
    assert_eq!(
        y.expect_text("y's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(x.expect_text("y's announce").await, announce("y", "r1"));
    y.send("/to|x|/chat|y|hello across").await;
    assert_eq!(x.expect_text("the /to").await, "/to|x|/chat|y|hello across");
    x.send("/to|y|/chat|x|and back").await;
    assert_eq!(
        y.expect_text("the /to back").await,
        "/to|y|/chat|x|and back"
    );

    let killed = Instant::now();
    a.kill9().await;
    let margin = Duration::from_millis(1500);
    let left = tokio::time::timeout(TTL + margin, y.expect_text("x's synthetic leave"))
        .await
        .unwrap_or_else(|_| panic!("no leave within presence_ttl {TTL:?} + {margin:?}"));
    assert_eq!(left, leave("x"));
    eprintln!("leave after kill -9: {:?}", killed.elapsed());
}

#[tokio::test]
async fn rest_publish_on_a_third_node_reaches_subscribers_on_the_other_two() {
    let redis = Redis::start("rest");
    let [a, b, c] = <[Node; 3]>::try_from(nodes(&redis, &["ta", "tb", "tc"]).await)
        .ok()
        .unwrap();
    let mut on_a = Json::connect(&a).await;
    on_a.subscribe("updates").await;
    let mut on_b = Json::connect(&b).await;
    on_b.subscribe("updates").await;
    c.wait_presence("updates", &[&on_a.peer, &on_b.peer]).await;
    let body = json!({"channel": "updates", "data": {"v": 7}}).to_string();
    let (status, answer) = http(c.ws, "POST", "/v1/publish", Some(API_KEY), &body).await;
    assert_eq!(status, 200, "{answer}");
    for client in [&mut on_a, &mut on_b] {
        let m = client.next_of("message", "the REST publish").await;
        assert_eq!(m["data"], json!({"v": 7}), "{m}");
    }
}

#[tokio::test]
async fn after_redis_restarts_the_nodes_reconnect_and_nothing_is_duplicated() {
    let mut redis = Redis::start("restart");
    let port = redis.port;
    let [a, b] = <[Node; 2]>::try_from(nodes(&redis, &["xa", "xb"]).await)
        .ok()
        .unwrap();
    let mut far = Json::connect(&b).await;
    far.subscribe("news").await;
    let mut publisher = Json::connect(&a).await;
    publisher.subscribe("news").await;
    b.wait_presence("news", &[&publisher.peer, &far.peer]).await;
    publisher.publish("news", json!("before"), "before").await;
    assert_eq!(far.next_of("message", "before").await["data"], "before");

    redis.kill();
    a.wait_health("engine: redis reconnecting").await;
    b.wait_health("engine: redis reconnecting").await;
    let redis = harness::until(WAIT, "redis to start again on its port", || async {
        Redis::start_on("restart", port)
    })
    .await;
    a.wait_health("engine: redis connected").await;
    b.wait_health("engine: redis connected").await;
    a.wait_live_nodes(1).await;
    b.wait_live_nodes(1).await;
    // The restarted Redis knew nothing: the heartbeats told each node the other's state.
    b.wait_presence("news", &[&publisher.peer, &far.peer]).await;
    assert!(
        b.metric("switchyard_engine_reconnects_total{engine=\"redis\"}")
            .await
            >= Some(1)
    );

    publisher.publish("news", json!("after"), "after").await;
    publisher.publish("news", json!("end"), "end").await;
    publisher.until_ack("end").await;
    assert_eq!(far.next_of("message", "after").await["data"], "after");
    assert_eq!(
        far.next_of("message", "the end marker").await["data"],
        "end"
    );
    drop(redis);
}

#[tokio::test]
async fn a_node_started_late_sees_the_members_of_every_other_node() {
    let redis = Redis::start("late");
    let [a, b] = <[Node; 2]>::try_from(nodes(&redis, &["la", "lb"]).await)
        .ok()
        .unwrap();
    let mut alice = Json::connect(&a).await;
    alice.subscribe("lobby").await;
    let mut bob = Json::connect(&b).await;
    bob.subscribe("lobby").await;
    a.wait_presence("lobby", &[&alice.peer, &bob.peer]).await;
    let c = Node::start(&redis, "lc").await;
    // Its catch-up: the keys (up to a heartbeat old), then fresh states the others
    // send when they first hear from it.
    harness::until(TTL, "the late node's catch-up", || async {
        (c.presence("lobby").await.len() == 2).then_some(())
    })
    .await;
    let mut carol = Json::connect(&c).await;
    let snapshot = carol.subscribe("lobby").await;
    let mut want = vec![alice.peer.clone(), bob.peer.clone()];
    want.sort();
    assert_eq!(peers(&snapshot, "joined"), want, "{snapshot}");
}
