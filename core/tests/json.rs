//! The JSON dialect and the pub/sub model: auth, subscriptions, presence, limits.
//! Names follow `docs/protocol.md`.

use std::time::Duration;

use serde_json::json;
use switchyard_core::config::{Grant, PublishableKey, Quota};
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for, token_with};
use switchyard_core::token::Permissions;
use switchyard_core::{Config, Credentials, Dialect, Event, Open};

const WELCOME_TAIL: &str = r#""maxMessageSize":65536,"iceServers":null,"limits":{"maxChannels":100,"messageRate":50,"messageBurst":100}}"#;

fn welcome(peer: &str) -> String {
    format!(
        r#"{{"type":"welcome","peerId":"{peer}","serverTime":{TEST_UNIX},"expiresAt":{},{WELCOME_TAIL}"#,
        TEST_UNIX + 3600
    )
}

/// A keyed hub with JSON peers connected with tokens for `room-1` and `rooms/**`.
fn hub_with(names: &[&str]) -> TestHub {
    let mut t = TestHub::with_config(keyed_config());
    for n in names {
        t.connect_token(n, Dialect::Json, &token_for(n, &["room-1", "rooms/**"]));
    }
    t.transcript();
    t
}

fn subscribe(t: &mut TestHub, name: &str, channel: &str) {
    t.send(
        name,
        &format!(r#"{{"type":"subscribe","channel":"{channel}","requestId":"s-{channel}"}}"#),
    );
}

#[test]
fn token_at_connect_gets_welcome_first() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("alice", Dialect::Json, &token_for("alice", &["room-1"]));
    assert_eq!(t.transcript(), [format!("alice <- {}", welcome("alice"))]);
}

#[test]
fn ice_servers_go_only_into_the_peers_own_welcome() {
    let mut t = TestHub::with_config(keyed_config());
    let token = token_with(json!({
        "sub": "alice", "channels": ["room-1"], "exp": TEST_UNIX + 60,
        "permissions": ["subscribe", "presence"],
        "metadata": {"name": "Alice", "iceServers": [{"urls": "turn:turn.example:3478", "credential": "c"}]},
    }));
    t.connect_token("alice", Dialect::Json, &token);
    let out = t.transcript();
    assert!(
        out[0].contains(r#""iceServers":[{"credential":"c","urls":"turn:turn.example:3478"}]"#),
        "{out:?}"
    );
    t.connect_token("bob", Dialect::Json, &token_for("bob", &["room-1"]));
    subscribe(&mut t, "bob", "room-1");
    subscribe(&mut t, "alice", "room-1");
    let out = t.transcript().join("\n");
    assert!(out.contains(r#""metadata":{"name":"Alice"}"#), "{out}");
    assert!(!out.contains("turn.example"), "ICE servers leaked: {out}");
}

#[test]
fn bad_tokens_close_4001_and_expired_4002_before_any_welcome() {
    let cases = [
        ("garbage", "not-a-jwt".to_owned(), 4001),
        (
            "expired",
            token_with(json!({"sub": "a", "exp": TEST_UNIX - 60})),
            4002,
        ),
        (
            "not_yet_valid",
            token_with(json!({"sub": "a", "exp": TEST_UNIX + 60, "nbf": TEST_UNIX + 60})),
            4001,
        ),
        ("missing_exp", token_with(json!({"sub": "a"})), 4001),
        // header {"alg":"none","kid":"k1"}, payload {"sub":"a"}, no signature
        (
            "alg_none",
            "eyJhbGciOiJub25lIiwia2lkIjoiazEifQ.eyJzdWIiOiJhIn0.".to_owned(),
            4001,
        ),
    ];
    for (what, token, code) in cases {
        let mut t = TestHub::with_config(keyed_config());
        t.connect_token("x", Dialect::Json, &token);
        let out = t.transcript();
        assert_eq!(out.len(), 1, "{what}: {out:?}");
        assert!(
            out[0].starts_with(&format!("x closed {code} ")),
            "{what}: {out:?}"
        );
        assert!(
            t.events()
                .iter()
                .any(|e| matches!(e, Event::AuthFailed { .. })),
            "{what}"
        );
    }
}

#[test]
fn wrong_key_or_tampered_token_is_refused() {
    let good = token_for("alice", &["room-1"]);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload = "eyJzdWIiOiJtYWxsb3J5IiwiY2hhbm5lbHMiOlsiKioiXSwiZXhwIjo5OTk5OTk5OTk5fQ";
    parts[1] = forged_payload;
    let tampered = parts.join(".");
    let mut config = keyed_config();
    config.auth.keys[0].secret = b"another-secret-entirely-0123456789".to_vec();
    for (config, token) in [(keyed_config(), tampered), (config, good)] {
        let mut t = TestHub::with_config(config);
        t.connect_token("x", Dialect::Json, &token);
        assert_eq!(t.transcript(), ["x closed 4001 invalid token"]);
    }
}

#[test]
fn token_expiry_while_connected_closes_4002() {
    let mut t = TestHub::with_config(keyed_config());
    let token = token_with(
        json!({"sub": "a", "channels": ["c"], "permissions": ["subscribe"], "exp": TEST_UNIX + 30}),
    );
    t.connect_token("a", Dialect::Json, &token);
    t.transcript();
    t.advance(Duration::from_secs(34));
    assert_eq!(
        t.transcript(),
        Vec::<String>::new(),
        "closed before exp + leeway"
    );
    t.advance(Duration::from_secs(2));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
    assert!(t.hub.is_empty());
}

#[test]
fn in_band_auth_is_answered_by_welcome() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("a", Dialect::Json);
    assert_eq!(t.transcript(), Vec::<String>::new());
    subscribe(&mut t, "a", "room-1");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"unauthenticated","message":"authenticate first","requestId":"s-room-1"}"#
        ]
    );
    let token = token_for("a", &["room-1"]);
    t.send(
        "a",
        &format!(r#"{{"type":"auth","token":"{token}","requestId":"auth-1"}}"#),
    );
    assert_eq!(
        t.transcript(),
        [
            format!("a <- {}", welcome("a")),
            r#"a <- {"type":"ack","requestId":"auth-1"}"#.to_owned()
        ]
    );
    t.send("a", &format!(r#"{{"type":"auth","token":"{token}"}}"#));
    assert!(t.transcript()[0].contains("already_authenticated"));
}

#[test]
fn no_auth_within_the_timeout_closes_4001() {
    let mut config = keyed_config();
    config.auth.auth_timeout = Duration::from_millis(200);
    let mut t = TestHub::with_config(config);
    t.connect("a", Dialect::Json);
    t.advance(Duration::from_millis(199));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_millis(1));
    assert_eq!(
        t.transcript(),
        ["a closed 4001 no credentials within the auth timeout"]
    );
}

#[test]
fn publishable_key_gets_fixed_grants_and_a_server_assigned_id() {
    let mut config = keyed_config();
    config.auth.publishable_keys = vec![PublishableKey {
        key: "pk_live_demo".into(),
        grant: Grant {
            channels: vec!["public/*".into()],
            permissions: Permissions::SUBSCRIBE,
            tenant: None,
        },
    }];
    let mut t = TestHub::with_config(config);
    let key = |k: &str| Open {
        dialect: Dialect::Json,
        credentials: Credentials::Key(k.into()),
        remote: None,
        origin: None,
    };
    t.connect_with("k", key("pk_live_demo"));
    let out = t.transcript();
    assert!(
        out[0].starts_with(r#"k <- {"type":"welcome","peerId":""#),
        "{out:?}"
    );
    assert!(out[0].contains(r#""expiresAt":null"#), "{out:?}");
    subscribe(&mut t, "k", "public/news");
    assert_eq!(
        t.transcript()[0],
        r#"k <- {"type":"ack","requestId":"s-public/news"}"#
    );
    t.send(
        "k",
        r#"{"type":"publish","channel":"public/news","data":1,"requestId":"p"}"#,
    );
    assert!(t.transcript()[0].contains(r#""code":"action_not_permitted""#));
    t.connect_with("bad", key("pk_nope"));
    assert_eq!(t.transcript(), ["bad closed 4001 unknown publishable key"]);
}

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
fn channel_limit_exceeded() {
    let mut config = keyed_config();
    config.limits.max_channels_per_conn = 2;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["**"]));
    t.transcript();
    subscribe(&mut t, "a", "x");
    subscribe(&mut t, "a", "y/*");
    subscribe(&mut t, "a", "x"); // re-subscribing is not a new channel
    t.transcript();
    subscribe(&mut t, "a", "z");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"channel_limit_exceeded","message":"this connection is at its channel limit","requestId":"s-z"}"#
        ]
    );
}

#[test]
fn presence_is_per_peer_and_leaves_with_the_last_connection() {
    let mut t = TestHub::with_config(keyed_config());
    let tok = token_for("bob", &["c"]);
    t.connect_token("alice", Dialect::Json, &token_for("alice", &["c"]));
    t.connect_token("bob-phone", Dialect::Json, &tok);
    t.connect_token("bob-laptop", Dialect::Json, &tok);
    subscribe(&mut t, "alice", "c");
    subscribe(&mut t, "bob-phone", "c");
    t.transcript();
    subscribe(&mut t, "bob-laptop", "c");
    // bob was already present: no delta for alice; the snapshot lists alice only.
    assert_eq!(
        t.transcript(),
        [
            r#"bob-laptop <- {"type":"ack","requestId":"s-c"}"#,
            r#"bob-laptop <- {"type":"presence","channel":"c","joined":[{"peerId":"alice","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
        ]
    );
    t.hard_close("bob-phone");
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.send(
        "bob-laptop",
        r#"{"type":"unsubscribe","channel":"c","requestId":"u"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob-laptop <- {"type":"ack","requestId":"u"}"#,
            r#"alice <- {"type":"presence","channel":"c","joined":[],"left":[{"peerId":"bob"}],"count":1}"#,
        ]
    );
}

#[test]
fn presence_deltas_of_one_tick_are_coalesced() {
    let mut t = TestHub::with_config(keyed_config());
    let short = |sub: &str| {
        token_with(json!({"sub": sub, "channels": ["c"], "exp": TEST_UNIX + 10,
            "permissions": ["subscribe", "presence"]}))
    };
    t.connect_token("alice", Dialect::Json, &token_for("alice", &["c"]));
    t.connect_token("bob", Dialect::Json, &short("bob"));
    t.connect_token("carol", Dialect::Json, &short("carol"));
    for n in ["alice", "bob", "carol"] {
        subscribe(&mut t, n, "c");
    }
    t.transcript();
    // Both tokens expire at the same instant: alice gets one frame with both.
    t.advance(Duration::from_secs(16));
    assert_eq!(
        t.transcript(),
        [
            "bob closed 4002 token expired",
            "carol closed 4002 token expired",
            r#"alice <- {"type":"presence","channel":"c","joined":[],"left":[{"peerId":"bob"},{"peerId":"carol"}],"count":1}"#,
        ]
    );
}

#[test]
fn above_the_presence_cap_deltas_stop_and_a_snapshot_resyncs() {
    let mut config = keyed_config();
    config.limits.presence_cap = 2;
    let mut t = TestHub::with_config(config);
    for n in ["a", "b", "c"] {
        t.connect_token(n, Dialect::Json, &token_for(n, &["ch"]));
        subscribe(&mut t, n, "ch");
    }
    let out = t.transcript();
    assert!(out.contains(&r#"a <- {"type":"presence","channel":"ch","joined":[],"left":[],"count":3,"truncated":true}"#.to_owned()), "{out:#?}");
    assert!(out.contains(&r#"c <- {"type":"presence","channel":"ch","joined":[{"peerId":"a","metadata":{}},{"peerId":"b","metadata":{}}],"left":[],"count":3,"snapshot":true,"truncated":true}"#.to_owned()), "{out:#?}");
    t.connect_token("d", Dialect::Json, &token_for("d", &["ch"]));
    subscribe(&mut t, "d", "ch");
    let out = t.transcript();
    assert!(
        out.iter().all(|l| l.starts_with("d <- ")),
        "deltas above the cap: {out:#?}"
    );
    t.hard_close("d");
    t.hard_close("c");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"presence","channel":"ch","joined":[{"peerId":"b","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
            r#"b <- {"type":"presence","channel":"ch","joined":[{"peerId":"a","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
        ]
    );
}

#[test]
fn malformed_frames_get_invalid_message_with_the_request_id_when_readable() {
    let mut t = hub_with(&["a"]);
    let cases = [
        ("not json", None),
        (r#"{"type":"publish","requestId":"r1"}"#, Some("r1")),
        (r#"{"type":"nope","requestId":"r2"}"#, Some("r2")),
        (
            r#"{"type":"subscribe","channel":5,"requestId":"r3"}"#,
            Some("r3"),
        ),
        (r#"{"requestId":"r4"}"#, Some("r4")),
        (r#"{"type":"subscribe","channel":"c","requestId":7}"#, None),
        ("[1,2]", None),
    ];
    for (frame, rid) in cases {
        t.send("a", frame);
        let out = t.transcript();
        assert_eq!(out.len(), 1, "{frame}: {out:?}");
        assert!(
            out[0].starts_with(r#"a <- {"type":"error","code":"invalid_message""#),
            "{frame}: {out:?}"
        );
        match rid {
            Some(id) => assert!(
                out[0].ends_with(&format!(r#""requestId":"{id}"}}"#)),
                "{frame}: {out:?}"
            ),
            None => assert!(!out[0].contains(r#","requestId":"#), "{frame}: {out:?}"),
        }
    }
    let long = "x".repeat(129);
    t.send(
        "a",
        &format!(r#"{{"type":"subscribe","channel":"c","requestId":"{long}"}}"#),
    );
    assert!(t.transcript()[0].contains("longer than 128"));
    t.send_bytes("a", bytes::Bytes::from_static(b"\xff\x00"));
    assert!(t.transcript()[0].contains("invalid_message"));
}

#[test]
fn oversize_frame_closes_1009() {
    let mut t = hub_with(&["a", "b"]);
    subscribe(&mut t, "a", "room-1");
    subscribe(&mut t, "b", "room-1");
    t.transcript();
    let big = format!(
        r#"{{"type":"publish","channel":"room-1","data":"{}"}}"#,
        "x".repeat(65_536)
    );
    t.send("a", &big);
    assert_eq!(
        t.transcript(),
        [
            "a closed 1009 frame too large",
            r#"b <- {"type":"presence","channel":"room-1","joined":[],"left":[{"peerId":"a"}],"count":1}"#,
        ]
    );
}

#[test]
fn over_the_rate_frames_are_refused_then_the_connection_closes_4011() {
    let mut config = keyed_config();
    config.limits.message_rate = 10;
    config.limits.message_burst = 3;
    config.limits.rate_close_after = 2;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["c"]));
    t.transcript();
    let publish = r#"{"type":"publish","channel":"c","data":1,"requestId":"p"}"#;
    for _ in 0..3 {
        t.send("a", publish);
    }
    assert_eq!(t.transcript().len(), 3);
    t.send("a", publish);
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"over_message_rate","message":"too many frames; slow down","requestId":"p"}"#
        ]
    );
    // 100 ms later one token is back.
    t.advance(Duration::from_millis(100));
    t.send("a", publish);
    assert_eq!(t.transcript(), [r#"a <- {"type":"ack","requestId":"p"}"#]);
    t.send("a", publish);
    t.send("a", publish);
    t.send("a", publish);
    let out = t.transcript();
    assert_eq!(
        out.last().unwrap(),
        "a closed 4011 over message rate",
        "{out:?}"
    );
}

#[test]
fn over_the_quota_messages_are_refused_and_the_connection_stays_open() {
    let mut config = keyed_config();
    config.limits.quota = Some(Quota {
        messages: 2,
        period: Duration::from_secs(60),
    });
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["c"]));
    t.transcript();
    let publish = r#"{"type":"publish","channel":"c","data":1,"requestId":"p"}"#;
    t.send("a", publish);
    t.send("a", publish);
    t.send("a", publish);
    assert_eq!(
        t.transcript()[2],
        r#"a <- {"type":"error","code":"over_message_quota","message":"message quota for this period is used up","requestId":"p"}"#
    );
    t.advance(Duration::from_secs(60));
    t.send("a", publish);
    assert_eq!(t.transcript(), [r#"a <- {"type":"ack","requestId":"p"}"#]);
}

#[test]
fn anonymous_json_peers_get_a_server_assigned_id() {
    let mut t = TestHub::with_config(Config::default());
    t.connect("a", Dialect::Json);
    let out = t.transcript();
    assert!(
        out[0].starts_with(r#"a <- {"type":"welcome","peerId":""#),
        "{out:?}"
    );
    let peer: serde_json::Value = serde_json::from_str(out[0].trim_start_matches("a <- ")).unwrap();
    let id = peer["peerId"].as_str().unwrap();
    assert_eq!(id.len(), 36, "UUID-shaped: {id}");
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

#[test]
fn every_token_rejection_has_its_own_reason() {
    use switchyard_core::testing::test_key;
    use switchyard_core::token::{Algorithm, SigningKey, mint};
    let claims = json!({"sub": "a", "exp": TEST_UNIX + 60, "aud": "other"});
    let other_kid = SigningKey {
        kid: "k2".into(),
        ..test_key()
    };
    let hs512 = SigningKey {
        algorithm: Algorithm::HS512,
        ..test_key()
    };
    let mut config = keyed_config();
    config.auth.keys[0].audience = Some("switchyard".into());
    let cases = [
        ("unknown_kid", mint(&other_kid, &claims).unwrap()),
        ("wrong_algorithm", mint(&hs512, &claims).unwrap()),
        ("wrong_audience", mint(&test_key(), &claims).unwrap()),
        ("bad_signature", {
            let forger = SigningKey {
                secret: b"a-guess-at-the-secret-0123456789".to_vec(),
                ..test_key()
            };
            mint(&forger, &claims).unwrap()
        }),
        ("malformed", "a.b".to_owned()),
    ];
    for (reason, token) in cases {
        let mut t = TestHub::with_config(config.clone());
        t.connect_token("x", Dialect::Json, &token);
        assert_eq!(t.transcript(), ["x closed 4001 invalid token"], "{reason}");
        let failed: Vec<_> = t
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::AuthFailed { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(failed, [reason]);
    }
    // The audience it expects is accepted.
    let mut t = TestHub::with_config(config);
    let good = mint(
        &test_key(),
        &json!({"sub": "a", "exp": TEST_UNIX + 60, "aud": ["x", "switchyard"]}),
    )
    .unwrap();
    t.connect_token("ok", Dialect::Json, &good);
    assert!(t.transcript()[0].starts_with(r#"ok <- {"type":"welcome""#));
}

#[test]
fn two_live_keys_both_verify_for_rotation() {
    use switchyard_core::testing::test_key;
    use switchyard_core::token::{SigningKey, mint};
    let new_key = SigningKey {
        kid: "k2".into(),
        secret: b"the-next-secret-after-rotation-42".to_vec(),
        ..test_key()
    };
    let mut config = keyed_config();
    config.auth.keys.push(new_key.clone());
    let mut t = TestHub::with_config(config);
    let claims = json!({"sub": "a", "exp": TEST_UNIX + 60});
    t.connect_token("old", Dialect::Json, &mint(&test_key(), &claims).unwrap());
    t.connect_token("new", Dialect::Json, &mint(&new_key, &claims).unwrap());
    let out = t.transcript();
    assert!(out[0].starts_with(r#"old <- {"type":"welcome""#), "{out:?}");
    assert!(out[1].starts_with(r#"new <- {"type":"welcome""#), "{out:?}");
}
