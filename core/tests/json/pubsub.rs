//! Subscriptions and what flows through them: acks and snapshots, publish, `send`,
//! wildcards, grants and reserved prefixes, tenants, and release on leave.

use serde_json::json;
use switchyard_core::Dialect;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for, token_with};

use super::{hub_with, subscribe};

#[test]
fn subscribe_ack_then_snapshot_of_the_others_even_when_empty() {
    let mut t = hub_with(&["alice", "bob"]);
    subscribe(&mut t, "alice", "room-1");
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- {"type":"ack","requestId":"s-room-1"}"#,
            r#"alice <- {"type":"presence","channel":"room-1","joined":[],"left":[],"count":1,"snapshot":true}"#,
        ]
    );
    subscribe(&mut t, "bob", "room-1");
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- {"type":"ack","requestId":"s-room-1"}"#,
            r#"bob <- {"type":"presence","channel":"room-1","joined":[{"peerId":"alice","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
            r#"alice <- {"type":"presence","channel":"room-1","joined":[{"peerId":"bob","metadata":{}}],"left":[],"count":2}"#,
        ]
    );
}

#[test]
fn publish_reaches_the_others_never_the_publisher() {
    let mut t = hub_with(&["alice", "bob", "carol"]);
    for n in ["alice", "bob", "carol"] {
        subscribe(&mut t, n, "room-1");
    }
    t.transcript();
    t.send(
        "alice",
        r#"{"type":"publish","channel":"room-1","data":{"hello":"world"},"requestId":"pub-1"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- {"type":"message","channel":"room-1","from":"alice","data":{"hello":"world"}}"#,
            r#"carol <- {"type":"message","channel":"room-1","from":"alice","data":{"hello":"world"}}"#,
            r#"alice <- {"type":"ack","requestId":"pub-1"}"#,
        ]
    );
}

#[test]
fn include_sender_metadata_adds_from_metadata_for_that_subscription() {
    let mut t = TestHub::with_config(keyed_config());
    let alice = token_with(
        json!({"sub": "alice", "channels": ["c"], "exp": TEST_UNIX + 60,
        "permissions": ["publish", "subscribe"], "peerMetadata": {"name": "Alice"}}),
    );
    t.connect_token("alice", Dialect::Json, &alice);
    t.connect_token("bob", Dialect::Json, &token_for("bob", &["c"]));
    t.connect_token("carol", Dialect::Json, &token_for("carol", &["c"]));
    t.send(
        "bob",
        r#"{"type":"subscribe","channel":"c","includeSenderMetadata":true}"#,
    );
    t.send("carol", r#"{"type":"subscribe","channel":"c"}"#);
    t.transcript();
    t.send("alice", r#"{"type":"publish","channel":"c","data":"hi"}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- {"type":"message","channel":"c","from":"alice","data":"hi","fromMetadata":{"name":"Alice"}}"#,
            r#"carol <- {"type":"message","channel":"c","from":"alice","data":"hi"}"#,
        ]
    );
}

#[test]
fn send_reaches_the_peer_anywhere_in_the_tenant() {
    let mut t = hub_with(&["alice", "bob"]);
    t.send(
        "alice",
        r#"{"type":"send","to":"bob","data":{"nonce":"abc"},"requestId":"d1"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- {"type":"direct","from":"alice","data":{"nonce":"abc"}}"#,
            r#"alice <- {"type":"ack","requestId":"d1"}"#,
        ]
    );
    t.send(
        "alice",
        r#"{"type":"send","to":"nobody","data":1,"requestId":"d2"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- {"type":"error","code":"peer_not_found","message":"no such peer is connected","requestId":"d2"}"#
        ]
    );
}

#[test]
fn wildcard_subscriptions_get_messages_but_no_presence() {
    let mut t = hub_with(&["alice", "bob", "carol"]);
    subscribe(&mut t, "alice", "rooms/*");
    assert_eq!(
        t.transcript(),
        [r#"alice <- {"type":"ack","requestId":"s-rooms/*"}"#]
    );
    subscribe(&mut t, "bob", "rooms/a");
    subscribe(&mut t, "alice", "rooms/**");
    t.transcript();
    t.send(
        "carol",
        r#"{"type":"publish","channel":"rooms/a","data":1}"#,
    );
    t.send(
        "carol",
        r#"{"type":"publish","channel":"rooms/a/deep","data":2}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- {"type":"message","channel":"rooms/a","from":"carol","data":1}"#,
            r#"alice <- {"type":"message","channel":"rooms/a","from":"carol","data":1}"#,
            r#"alice <- {"type":"message","channel":"rooms/a/deep","from":"carol","data":2}"#,
        ]
    );
    t.send(
        "carol",
        r#"{"type":"publish","channel":"rooms/*","data":1,"requestId":"p"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"carol <- {"type":"error","code":"invalid_channel","message":"cannot publish to a pattern","requestId":"p"}"#
        ]
    );
}

#[test]
fn grants_reserved_prefixes_and_permissions_are_enforced() {
    let mut t = TestHub::with_config(keyed_config());
    let reader = token_with(
        json!({"sub": "r", "channels": ["room-1", "_system/x"], "exp": TEST_UNIX + 60,
        "permissions": ["subscribe"]}),
    );
    t.connect_token("r", Dialect::Json, &reader);
    t.transcript();
    let cases = [
        (
            r#"{"type":"subscribe","channel":"room-2","requestId":"1"}"#,
            "channel_not_authorized",
        ),
        (
            r#"{"type":"subscribe","channel":"room-*","requestId":"1"}"#,
            "channel_not_authorized",
        ),
        (
            r#"{"type":"subscribe","channel":"_system/x","requestId":"1"}"#,
            "channel_reserved",
        ),
        (
            r#"{"type":"subscribe","channel":"bad name","requestId":"1"}"#,
            "invalid_channel",
        ),
        (
            r#"{"type":"publish","channel":"room-1","data":1,"requestId":"1"}"#,
            "action_not_permitted",
        ),
        (
            r#"{"type":"send","to":"x","data":1,"requestId":"1"}"#,
            "action_not_permitted",
        ),
    ];
    for (frame, code) in cases {
        t.send("r", frame);
        let out = t.transcript();
        assert_eq!(out.len(), 1, "{frame}: {out:?}");
        assert!(
            out[0].contains(&format!(r#""code":"{code}""#))
                && out[0].contains(r#""requestId":"1""#),
            "{frame}: {out:?}"
        );
    }
    // Without the presence permission the subscriber gets no roster.
    t.send(
        "r",
        r#"{"type":"subscribe","channel":"room-1","requestId":"ok"}"#,
    );
    assert_eq!(t.transcript(), [r#"r <- {"type":"ack","requestId":"ok"}"#]);
}

#[test]
fn tenants_are_isolated() {
    let mut t = TestHub::with_config(keyed_config());
    let tok = |sub: &str, tenant: &str| {
        token_with(
            json!({"sub": sub, "tenant": tenant, "channels": ["c"], "exp": TEST_UNIX + 60,
            "permissions": ["publish", "subscribe", "presence", "send"]}),
        )
    };
    t.connect_token("a1", Dialect::Json, &tok("a1", "acme"));
    t.connect_token("b1", Dialect::Json, &tok("b1", "globex"));
    t.connect_token("a2", Dialect::Json, &tok("a2", "acme"));
    for n in ["a1", "b1", "a2"] {
        t.send(n, r#"{"type":"subscribe","channel":"c"}"#);
    }
    t.transcript();
    t.send("b1", r#"{"type":"publish","channel":"c","data":1}"#);
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.send(
        "b1",
        r#"{"type":"send","to":"a1","data":1,"requestId":"x"}"#,
    );
    assert!(t.transcript()[0].contains("peer_not_found"));
    t.send("a1", r#"{"type":"publish","channel":"c","data":1}"#);
    assert_eq!(
        t.transcript(),
        [r#"a2 <- {"type":"message","channel":"c","from":"a1","data":1}"#]
    );
}

#[test]
fn everything_is_released_when_everyone_leaves() {
    let mut t = hub_with(&["a", "b"]);
    subscribe(&mut t, "a", "room-1");
    subscribe(&mut t, "a", "rooms/*");
    subscribe(&mut t, "b", "room-1");
    t.hard_close("a");
    t.graceful_close("b");
    assert!(t.hub.is_empty());
}
