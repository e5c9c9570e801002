//! Two hubs as two nodes of one cluster, wired in memory: what one emits as
//! `Output::Cluster` is fed to the other as `Input::Remote`. The rules are those of
//! `docs/cluster.md`; the Redis engine only carries these values.

use switchyard_core::Dialect;
use switchyard_core::cluster::{NodeState, RemoteEvent};
use switchyard_core::testing::{TestHub, keyed_config, token_for};

/// Nodes `a` and `b`, with signing keys (JSON peers get stable ids from tokens) and
/// anonymous rtc-signaller peers allowed.
struct Pair {
    a: TestHub,
    b: TestHub,
}

impl Pair {
    fn new() -> Self {
        let node = || {
            let mut config = keyed_config();
            config.cluster = true;
            config.auth.anonymous = switchyard_core::Config::default().auth.anonymous;
            TestHub::with_config(config)
        };
        Self {
            a: node(),
            b: node(),
        }
    }

    /// Carries what each node told the cluster to the other, until both are quiet.
    fn pump(&mut self) {
        loop {
            let from_a = self.a.cluster_outputs();
            let from_b = self.b.cluster_outputs();
            if from_a.is_empty() && from_b.is_empty() {
                return;
            }
            for out in from_a {
                self.b.remote("a", RemoteEvent::Changed(out));
            }
            for out in from_b {
                self.a.remote("b", RemoteEvent::Changed(out));
            }
        }
    }

    fn clear(&mut self) {
        self.a.transcript();
        self.b.transcript();
    }
}

fn announce(id: &str, room: &str) -> String {
    format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#)
}

/// alice on node a and bob on node b, both announced into room `r`.
fn room_across_nodes() -> Pair {
    let mut p = Pair::new();
    p.a.connect("alice", Dialect::Signaller);
    p.b.connect("bob", Dialect::Signaller);
    p.a.send("alice", &announce("alice", "r"));
    p.pump();
    p.b.send("bob", &announce("bob", "r"));
    p.pump();
    p
}

#[test]
fn a_room_spans_nodes_with_announces_and_introductions() {
    let mut p = room_across_nodes();
    assert_eq!(
        p.a.transcript(),
        [
            r#"alice <- /roominfo|{"memberCount":1}"#,
            r#"alice <- /announce|bob|{"id":"bob","room":"r"}"#,
        ]
    );
    assert_eq!(
        p.b.transcript(),
        [
            r#"bob <- /to|bob|/announce|alice|{"id":"alice","room":"r"}"#,
            r#"bob <- /roominfo|{"memberCount":2}"#,
        ]
    );
}

#[test]
fn room_messages_and_to_cross_nodes_as_sent() {
    let mut p = room_across_nodes();
    p.clear();
    p.a.send("alice", "/chat|alice|hello");
    p.a.send("alice", r#"/to|bob|/offer|alice|{"sdp":"x"}"#);
    p.pump();
    assert!(p.a.transcript().is_empty(), "no echo, no refusal");
    assert_eq!(
        p.b.transcript(),
        [
            "bob <- /chat|alice|hello",
            r#"bob <- /to|bob|/offer|alice|{"sdp":"x"}"#,
        ]
    );
}

#[test]
fn to_a_peer_no_node_has_is_peer_not_found() {
    let mut p = room_across_nodes();
    p.clear();
    p.a.send("alice", "/to|carol|/offer|alice|{}");
    assert_eq!(
        p.a.take("alice"),
        [r#"/error|{"code":"peer_not_found","message":"no such peer in your room"}"#]
    );
}

#[test]
fn a_node_that_is_gone_leaves_its_peers_everywhere() {
    let mut p = room_across_nodes();
    p.clear();
    p.b.remote("a", RemoteEvent::Gone);
    assert_eq!(p.b.transcript(), [r#"bob <- /leave|alice|{"id":"alice"}"#]);
    // Its state coming back (a heartbeat after a Redis outage) brings it back.
    p.b.remote("a", RemoteEvent::State(p.a.hub().node_state()));
    assert_eq!(
        p.b.transcript(),
        [r#"bob <- /announce|alice|{"id":"alice","room":"r"}"#]
    );
    // An empty state is the same as gone.
    p.b.remote("a", RemoteEvent::State(NodeState::default()));
    assert_eq!(p.b.transcript(), [r#"bob <- /leave|alice|{"id":"alice"}"#]);
}

#[test]
fn a_hard_close_on_one_node_is_one_leave_on_the_other() {
    let mut p = room_across_nodes();
    p.clear();
    p.a.hard_close("alice");
    p.pump();
    assert_eq!(p.b.transcript(), [r#"bob <- /leave|alice|{"id":"alice"}"#]);
}

#[test]
fn the_newest_announce_takes_a_room_over_across_nodes() {
    let mut p = room_across_nodes();
    p.clear();
    p.b.connect("alice2", Dialect::Signaller);
    p.b.send("alice2", &announce("alice", "r"));
    p.pump();
    let a = p.a.transcript();
    assert!(
        a.contains(&r#"alice <- /error|{"code":"replaced","message":"another connection announced this peer id in this room"}"#.to_owned()),
        "{a:?}"
    );
    // bob never saw alice leave: she stayed present throughout.
    let b = p.b.transcript();
    assert!(!b.iter().any(|l| l.contains("/leave")), "{b:?}");
}

/// jane on node a and john on node b, JSON peers subscribed to `news`.
fn channel_across_nodes() -> Pair {
    let mut p = Pair::new();
    p.a.connect_token("jane", Dialect::Json, &token_for("jane", &["**"]));
    p.b.connect_token("john", Dialect::Json, &token_for("john", &["**"]));
    p.pump();
    p.a.send("jane", r#"{"type":"subscribe","channel":"news"}"#);
    p.pump();
    p.b.send("john", r#"{"type":"subscribe","channel":"news"}"#);
    p.pump();
    p
}

#[test]
fn presence_is_the_union_of_the_nodes() {
    let mut p = channel_across_nodes();
    let john = p.b.take("john");
    assert_eq!(
        john.last().unwrap(),
        r#"{"type":"presence","channel":"news","joined":[{"peerId":"jane","metadata":{}}],"left":[],"count":2,"snapshot":true}"#
    );
    let jane = p.a.take("jane");
    assert_eq!(
        jane.last().unwrap(),
        r#"{"type":"presence","channel":"news","joined":[{"peerId":"john","metadata":{}}],"left":[],"count":2}"#
    );
    p.b.send("john", r#"{"type":"unsubscribe","channel":"news"}"#);
    p.pump();
    assert_eq!(
        p.a.take("jane"),
        [
            r#"{"type":"presence","channel":"news","joined":[],"left":[{"peerId":"john"}],"count":1}"#
        ]
    );
    assert_eq!(p.a.hub().presence("default", "news").len(), 1);
}

#[test]
fn a_publish_reaches_every_node_once_stamped_alike() {
    let mut p = channel_across_nodes();
    p.clear();
    p.a.send(
        "jane",
        r#"{"type":"publish","channel":"news","data":{"n":1},"requestId":"p1"}"#,
    );
    p.pump();
    assert_eq!(
        p.a.transcript(),
        [r#"jane <- {"type":"ack","requestId":"p1"}"#]
    );
    assert_eq!(
        p.b.transcript(),
        [r#"john <- {"type":"message","channel":"news","from":"jane","data":{"n":1}}"#]
    );
}

#[test]
fn send_finds_a_peer_on_another_node() {
    let mut p = channel_across_nodes();
    p.clear();
    p.a.send(
        "jane",
        r#"{"type":"send","to":"john","data":"hi","requestId":"s1"}"#,
    );
    p.pump();
    assert_eq!(
        p.a.transcript(),
        [r#"jane <- {"type":"ack","requestId":"s1"}"#]
    );
    assert_eq!(
        p.b.transcript(),
        [r#"john <- {"type":"direct","from":"jane","data":"hi"}"#]
    );
    p.a.send(
        "jane",
        r#"{"type":"send","to":"nobody","data":"hi","requestId":"s2"}"#,
    );
    assert_eq!(
        p.a.take("jane"),
        [
            r#"{"type":"error","code":"peer_not_found","message":"no such peer is connected","requestId":"s2"}"#
        ]
    );
}

#[test]
fn a_peer_on_two_nodes_stays_present_until_both_are_gone() {
    let mut p = channel_across_nodes();
    p.b.connect_token("jane-b", Dialect::Json, &token_for("jane", &["**"]));
    p.pump();
    p.b.send("jane-b", r#"{"type":"subscribe","channel":"news"}"#);
    p.pump();
    p.clear();
    p.a.hard_close("jane");
    p.pump();
    assert!(
        p.b.take("john").is_empty(),
        "jane is still present through node b"
    );
    p.b.hard_close("jane-b");
    p.pump();
    assert_eq!(
        p.b.take("john"),
        [
            r#"{"type":"presence","channel":"news","joined":[],"left":[{"peerId":"jane"}],"count":1}"#
        ]
    );
}

#[test]
fn an_operator_disconnect_closes_the_peer_on_every_node() {
    let mut p = channel_across_nodes();
    p.clear();
    let now = p.a.now();
    p.a.hub_mut().disconnect(
        now,
        "default",
        "john",
        switchyard_core::CloseCode(4020),
        "kicked",
    );
    p.a.collect_outputs();
    p.pump();
    let b = p.b.transcript();
    assert!(b.iter().any(|l| l.starts_with("john closed 4020")), "{b:?}");
}

#[test]
fn a_one_node_hub_tells_no_cluster() {
    let mut t = TestHub::new();
    t.connect("alice", Dialect::Signaller);
    t.send("alice", &announce("alice", "r"));
    t.send("alice", "/chat|alice|x");
    assert!(t.cluster_outputs().is_empty());
}

#[test]
fn a_broadcaster_subscriber_gets_another_nodes_publishes_with_its_own_seq_and_the_same_id() {
    let mut p = channel_across_nodes();
    let token = switchyard_core::testing::token_with(serde_json::json!({
        "sub": "bea", "aud": "broadcaster", "authorizedChannels": ["news"],
        "scope": ["subscribe"], "exp": switchyard_core::testing::TEST_UNIX + 3600,
    }));
    p.b.connect("bea", Dialect::Broadcaster);
    p.b.send(
        "bea",
        &format!(r#"{{"id":1,"method":"auth","params":{{"token":"{token}"}}}}"#),
    );
    p.b.send(
        "bea",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    // And one on the publishing node, to compare ids with.
    p.a.connect("ann", Dialect::Broadcaster);
    p.a.send(
        "ann",
        &format!(r#"{{"id":1,"method":"auth","params":{{"token":"{token}"}}}}"#),
    );
    p.a.send(
        "ann",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    p.pump();
    p.clear();
    for n in 1..=2 {
        p.a.send(
            "jane",
            &format!(r#"{{"type":"publish","channel":"news","data":{{"n":{n}}}}}"#),
        );
    }
    p.pump();
    let pushes = p.b.take("bea");
    assert_eq!(pushes.len(), 2, "{pushes:?}");
    for (seq, push) in (1..=2).zip(&pushes) {
        let v: serde_json::Value = serde_json::from_str(push).expect("JSON");
        assert_eq!(v["method"], "message");
        assert_eq!(v["params"]["seq"], seq);
        assert_eq!(v["params"]["event"], "message");
        assert_eq!(v["params"]["payload"]["n"], seq);
    }
    // The id and time are the publishing node's: one message, one id everywhere.
    let local = p.a.take("ann");
    assert_eq!(local.len(), 2, "{local:?}");
    for (remote, local) in pushes.iter().zip(&local) {
        let (r, l): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(remote).expect("JSON"),
            serde_json::from_str(local).expect("JSON"),
        );
        assert_eq!(r["params"]["id"], l["params"]["id"]);
        assert_eq!(r["params"]["createTime"], l["params"]["createTime"]);
    }
}
