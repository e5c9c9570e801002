//! The Broadcaster dialect: exact bytes for every method, answer, error and push
//! (`docs/protocol.md`, "The Broadcaster"). Ids come from the hub's seeded stream and
//! time from the virtual clock, so every frame is known in advance.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_with};
use switchyard_core::{Config, Dialect};

/// A Broadcaster client token: `aud`, `authorizedChannels` and `scope` as The
/// Broadcaster issues them.
fn token(sub: &str, channels: &[&str], scope: &[&str]) -> String {
    token_with(json!({
        "sub": sub,
        "aud": "broadcaster",
        "authorizedChannels": channels,
        "scope": scope,
        "iat": TEST_UNIX,
        "exp": TEST_UNIX + 3600,
    }))
}

fn auth_frame(id: &str, token: &str) -> String {
    format!(r#"{{"id":{id},"method":"auth","params":{{"token":"{token}"}}}}"#)
}

/// A hub with `names` connected over The Broadcaster and authenticated, allowed on
/// `news` and `room-*` with both scopes.
fn authed(names: &[&str]) -> TestHub {
    let mut t = TestHub::with_config(keyed_config());
    for name in names {
        t.connect(name, Dialect::Broadcaster);
        let tok = token(name, &["news", "room-*"], &["subscribe", "publish"]);
        t.send(name, &auth_frame("0", &tok));
    }
    t.transcript();
    t
}

const SUB_1: &str = "sub-c5ffbc7926464b02";
const T0: &str = "2023-11-14T22:13:20.000Z";

#[test]
fn auth_answers_success_and_requests_before_it_are_unauthenticated() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("b", Dialect::Broadcaster);
    t.send("b", r#"{"id":1,"method":"ping"}"#);
    t.send(
        "b",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    let tok = token("bob", &["news"], &["subscribe"]);
    t.send("b", &auth_frame("3", &tok));
    t.send("b", r#"{"id":4,"method":"ping"}"#);
    // A second `auth` is a token refresh (here with the same token), answered as
    // the first: `an_auth_on_an_authenticated_connection_refreshes_its_token`.
    t.send("b", &auth_frame("5", &tok));
    assert_eq!(
        t.transcript(),
        [
            r#"b <- {"requestId":1,"error":{"code":"Unauthenticated","message":"authenticate first"}}"#,
            r#"b <- {"requestId":2,"error":{"code":"Unauthenticated","message":"authenticate first"}}"#,
            r#"b <- {"requestId":3,"result":{"success":true}}"#,
            r#"b <- {"requestId":4,"result":{"timestamp":"2023-11-14T22:13:20.000Z"}}"#,
            r#"b <- {"requestId":5,"result":{"success":true}}"#,
        ]
    );
}

#[test]
fn request_ids_are_echoed_exactly_as_numbers_or_strings() {
    let mut t = authed(&["b"]);
    t.send("b", r#"{"id":7,"method":"ping"}"#);
    t.send("b", r#"{"id":"p-1","method":"ping"}"#);
    t.send("b", r#"{"id":1.50,"method":"ping"}"#);
    t.send("b", r#"{"id":"\u0041","method":"ping","params":null}"#);
    assert_eq!(
        t.take("b"),
        [
            format!(r#"{{"requestId":7,"result":{{"timestamp":"{T0}"}}}}"#),
            format!(r#"{{"requestId":"p-1","result":{{"timestamp":"{T0}"}}}}"#),
            format!(r#"{{"requestId":1.50,"result":{{"timestamp":"{T0}"}}}}"#),
            format!(r#"{{"requestId":"\u0041","result":{{"timestamp":"{T0}"}}}}"#),
        ]
    );
}

#[test]
fn timestamps_follow_the_drivers_clock() {
    let mut t = authed(&["b"]);
    t.advance(Duration::from_millis(61_234));
    t.send("b", r#"{"id":1,"method":"ping"}"#);
    assert_eq!(
        t.take("b"),
        [r#"{"requestId":1,"result":{"timestamp":"2023-11-14T22:14:21.234Z"}}"#]
    );
}

#[test]
fn subscribe_answers_a_subscription_id_and_a_repeat_is_already_exists() {
    let mut t = authed(&["b"]);
    t.send(
        "b",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "b",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    assert_eq!(
        t.take("b"),
        [
            format!(
                r#"{{"requestId":1,"result":{{"subscriptionId":"{SUB_1}","timestamp":"{T0}"}}}}"#
            ),
            r#"{"requestId":2,"error":{"code":"AlreadyExists","message":"already subscribed to this channel"}}"#.to_owned(),
        ]
    );
}

#[test]
fn unsubscribe_answers_success_and_an_unknown_channel_is_not_found() {
    let mut t = authed(&["b"]);
    t.send(
        "b",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.take("b");
    t.send(
        "b",
        r#"{"id":2,"method":"unsubscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "b",
        r#"{"id":3,"method":"unsubscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "b",
        r#"{"id":4,"method":"unsubscribe","params":{"channel":"room-*"}}"#,
    );
    assert_eq!(
        t.take("b"),
        [
            r#"{"requestId":2,"result":{"success":true}}"#,
            r#"{"requestId":3,"error":{"code":"NotFound","message":"not subscribed to this channel"}}"#,
            r#"{"requestId":4,"error":{"code":"NotFound","message":"not subscribed to this channel"}}"#,
        ]
    );
    assert_eq!(t.hub.channel_count(), 0);
}

#[test]
fn publish_answers_the_message_id_and_each_subscription_counts_its_own_seq() {
    let mut t = authed(&["pub", "early", "late"]);
    t.send(
        "early",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    let publish = |n: u32| {
        format!(
            r#"{{"id":{n},"method":"publish","params":{{"channel":"news","event":"tick","payload":{{"n":{n}}}}}}}"#
        )
    };
    t.send("pub", &publish(10));
    t.send(
        "late",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.transcript();
    t.send("pub", &publish(11));
    t.send("pub", &publish(12));
    let out = t.transcript();
    let push = |to: &str, seq: u64, n: u32, id: &str| {
        format!(
            r#"{to} <- {{"method":"message","params":{{"id":"{id}","seq":{seq},"createTime":"{T0}","channel":"news","event":"tick","payload":{{"n":{n}}}}}}}"#
        )
    };
    let (m2, m3) = ("msg-5e57d39231cbc4dd", "msg-819fef45cbad7883");
    assert_eq!(
        out,
        [
            push("early", 2, 11, m2),
            push("late", 1, 11, m2),
            format!(r#"pub <- {{"requestId":11,"result":{{"id":"{m2}","createTime":"{T0}"}}}}"#),
            push("early", 3, 12, m3),
            push("late", 2, 12, m3),
            format!(r#"pub <- {{"requestId":12,"result":{{"id":"{m3}","createTime":"{T0}"}}}}"#),
        ]
    );
}

#[test]
fn the_first_push_of_a_subscription_is_seq_1_and_resubscribing_starts_again() {
    let mut t = authed(&["pub", "sub"]);
    t.send(
        "sub",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    let publish = r#"{"id":9,"method":"publish","params":{"channel":"news","payload":[1]}}"#;
    t.send("pub", publish);
    t.send("pub", publish);
    t.send(
        "sub",
        r#"{"id":2,"method":"unsubscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "sub",
        r#"{"id":3,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.send("pub", publish);
    let seqs: Vec<u64> = t
        .take("sub")
        .iter()
        .filter_map(|f| {
            let v: serde_json::Value = serde_json::from_str(f).unwrap();
            // No event named: the push says `message`.
            if v["method"] == "message" {
                assert_eq!(v["params"]["event"], "message");
                assert_eq!(v["params"]["payload"], json!([1]));
            }
            v["params"]["seq"].as_u64()
        })
        .collect();
    assert_eq!(seqs, [1, 2, 1]);
}

#[test]
fn publishing_needs_the_publish_scope_and_a_granted_channel() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("reader", Dialect::Broadcaster);
    let tok = token("reader", &["news"], &["subscribe"]);
    t.send("reader", &auth_frame("0", &tok));
    t.take("reader");
    t.send(
        "reader",
        r#"{"id":1,"method":"publish","params":{"channel":"news","event":"e","payload":{}}}"#,
    );
    t.send(
        "reader",
        r#"{"id":2,"method":"subscribe","params":{"channel":"sports"}}"#,
    );
    t.send(
        "reader",
        r#"{"id":3,"method":"subscribe","params":{"channel":"_system/x"}}"#,
    );
    t.send(
        "reader",
        r#"{"id":4,"method":"subscribe","params":{"channel":"news/*"}}"#,
    );
    t.send(
        "reader",
        r#"{"id":5,"method":"subscribe","params":{"channel":""}}"#,
    );
    assert_eq!(
        t.take("reader"),
        [
            r#"{"requestId":1,"error":{"code":"PermissionDenied","message":"your permissions do not allow this"}}"#,
            r#"{"requestId":2,"error":{"code":"PermissionDenied","message":"channel not in your grants"}}"#,
            r#"{"requestId":3,"error":{"code":"PermissionDenied","message":"reserved channel prefix"}}"#,
            r#"{"requestId":4,"error":{"code":"PermissionDenied","message":"channel not in your grants"}}"#,
            r#"{"requestId":5,"error":{"code":"InvalidArgument","message":"channel name is empty"}}"#,
        ]
    );
}

#[test]
fn wildcard_subscriptions_are_invalid_arguments() {
    let mut t = authed(&["b"]);
    t.send(
        "b",
        r#"{"id":1,"method":"subscribe","params":{"channel":"room-*"}}"#,
    );
    assert_eq!(
        t.take("b"),
        [
            r#"{"requestId":1,"error":{"code":"InvalidArgument","message":"wildcard channels are not part of The Broadcaster protocol"}}"#
        ]
    );
}

#[test]
fn malformed_requests_are_invalid_arguments_and_never_close() {
    let mut t = authed(&["b"]);
    for frame in [
        "not json",
        "[1,2]",
        r#"{"method":"ping"}"#,
        r#"{"id":null,"method":"ping"}"#,
        r#"{"id":true,"method":"ping"}"#,
        r#"{"id":{"a":1},"method":"ping"}"#,
        r#"{"id":1,"id":2,"method":"ping"}"#,
        r#"{"id":1}"#,
        r#"{"id":2,"method":7}"#,
        r#"{"id":3,"method":"shout"}"#,
        r#"{"id":4,"method":"subscribe"}"#,
        r#"{"id":5,"method":"subscribe","params":{"channel":5}}"#,
        r#"{"id":6,"method":"subscribe","params":"news"}"#,
        r#"{"id":7,"method":"publish","params":{"channel":"news","event":3}}"#,
        r#"{"id":8,"method":"auth","params":{}}"#,
        r#"{"id":9,"method":"auth","params":{"token":["x"]}}"#,
        r#"{"id":"x","method":"publish","params":{"channel":"news","channel":"b"}}"#,
    ] {
        t.send("b", frame);
    }
    t.send_bytes("b", Bytes::from_static(b"{\"id\":1,\"method\":\"\xff\"}"));
    let long_id = format!(r#"{{"id":"{}","method":"ping"}}"#, "x".repeat(129));
    t.send("b", &long_id);
    let err = |id: &str, message: &str| {
        format!(
            r#"{{"requestId":{id},"error":{{"code":"InvalidArgument","message":"{message}"}}}}"#
        )
    };
    let shape = "frame is not a JSON object of the expected shape";
    assert_eq!(
        t.take("b"),
        [
            err("null", shape),
            err("null", shape),
            err("null", r#"missing \"id\""#),
            // A null id is no id (JSON-RPC notifications are not supported).
            err("null", r#"missing \"id\""#),
            err("null", r#"\"id\" must be a number or a string"#),
            err("null", r#"\"id\" must be a number or a string"#),
            err("null", shape),
            err("1", r#"missing \"method\""#),
            err("2", r#"\"method\" must be a string"#),
            err("3", r#"unknown \"method\""#),
            err("4", r#"missing \"params.channel\""#),
            err("5", r#"\"params.channel\" must be a string"#),
            err("6", r#"\"params\" must be an object without repeated keys"#),
            err("7", r#"\"params.event\" must be a string"#),
            err("8", r#"missing \"params.token\""#),
            err("9", r#"\"params.token\" must be a string"#),
            err(
                r#""x""#,
                r#"\"params\" must be an object without repeated keys"#
            ),
            err("null", "frame is not UTF-8 text"),
            err("null", r#"\"id\" is longer than 128 characters"#),
        ]
    );
    assert_eq!(t.hub.connection_count(), 1, "bad input never closes");
}

#[test]
fn an_oversize_frame_closes_with_1009() {
    let mut config = keyed_config();
    config.limits.max_frame_bytes = 64;
    let mut t = TestHub::with_config(config);
    t.connect("b", Dialect::Broadcaster);
    t.send(
        "b",
        &format!(
            r#"{{"id":1,"method":"ping","params":{{"pad":"{}"}}}}"#,
            "x".repeat(64)
        ),
    );
    assert_eq!(t.transcript(), ["b closed 1009 frame too large"]);
}

#[test]
fn a_token_for_another_audience_is_unauthenticated_and_the_deadline_still_closes() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("b", Dialect::Broadcaster);
    let wrong = token_with(json!({
        "sub": "bob", "aud": "someone-else", "authorizedChannels": ["news"],
        "scope": ["subscribe"], "exp": TEST_UNIX + 3600,
    }));
    let none = token_with(json!({"sub": "bob", "exp": TEST_UNIX + 3600}));
    let expired = token_with(json!({"sub": "bob", "aud": "broadcaster", "exp": TEST_UNIX - 60}));
    t.send("b", &auth_frame("1", &wrong));
    t.send("b", &auth_frame("2", &none));
    t.send("b", &auth_frame("3", &expired));
    t.send("b", &auth_frame("4", "not-a-jwt"));
    let err = |id: u8, why: &str| {
        format!(
            r#"b <- {{"requestId":{id},"error":{{"code":"Unauthenticated","message":"token refused: {why}"}}}}"#
        )
    };
    assert_eq!(
        t.transcript(),
        [
            err(1, "token audience mismatch"),
            err(2, "token audience mismatch"),
            err(3, "token expired"),
            err(4, "malformed token"),
        ]
    );
    // The deadline armed at open keeps running through the refusals.
    t.advance(Duration::from_millis(9_999));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_millis(1));
    assert_eq!(
        t.transcript(),
        ["b closed 4001 no credentials within the auth timeout"]
    );
}

#[test]
fn the_audience_is_configurable_and_can_be_switched_off() {
    let mut config = keyed_config();
    config.auth.broadcaster_audience = Some("my-app".into());
    let mut t = TestHub::with_config(config);
    t.connect("b", Dialect::Broadcaster);
    t.send(
        "b",
        &auth_frame("1", &token("bob", &["news"], &["subscribe"])),
    );
    let mine = token_with(json!({"sub": "bob", "aud": ["x", "my-app"], "exp": TEST_UNIX + 60}));
    t.send("b", &auth_frame("2", &mine));
    assert_eq!(
        t.take("b"),
        [
            r#"{"requestId":1,"error":{"code":"Unauthenticated","message":"token refused: token audience mismatch"}}"#,
            r#"{"requestId":2,"result":{"success":true}}"#,
        ]
    );

    let mut config = keyed_config();
    config.auth.broadcaster_audience = None;
    let mut t = TestHub::with_config(config);
    t.connect("b", Dialect::Broadcaster);
    let any = token_with(json!({"sub": "bob", "exp": TEST_UNIX + 60}));
    t.send("b", &auth_frame("1", &any));
    assert_eq!(
        t.take("b"),
        [r#"{"requestId":1,"result":{"success":true}}"#]
    );
}

#[test]
fn a_token_offered_at_connect_must_name_the_audience_too() {
    let mut t = TestHub::with_config(keyed_config());
    let json_token = token_with(json!({"sub": "bob", "exp": TEST_UNIX + 60}));
    t.connect_token("b", Dialect::Broadcaster, &json_token);
    assert_eq!(t.transcript(), ["b closed 4001 invalid token"]);
    t.connect_token(
        "ok",
        Dialect::Broadcaster,
        &token("ok", &["news"], &["subscribe"]),
    );
    t.send("ok", r#"{"id":1,"method":"ping"}"#);
    assert_eq!(
        t.transcript(),
        [format!(
            r#"ok <- {{"requestId":1,"result":{{"timestamp":"{T0}"}}}}"#
        )]
    );
}

#[test]
fn anonymous_access_does_not_apply_to_broadcaster_connections() {
    let mut config = Config::default();
    config.auth.keys = vec![switchyard_core::testing::test_key()];
    assert!(config.auth.anonymous.is_some());
    let mut t = TestHub::with_config(config);
    t.connect("b", Dialect::Broadcaster);
    t.send(
        "b",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"b <- {"requestId":1,"error":{"code":"Unauthenticated","message":"authenticate first"}}"#
        ]
    );
    t.advance(Duration::from_secs(10));
    assert_eq!(
        t.transcript(),
        ["b closed 4001 no credentials within the auth timeout"]
    );
}

#[test]
fn the_publisher_does_not_receive_its_own_message() {
    let mut t = authed(&["b"]);
    t.send(
        "b",
        r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "b",
        r#"{"id":2,"method":"publish","params":{"channel":"news","payload":1}}"#,
    );
    assert_eq!(
        t.take("b"),
        [
            format!(
                r#"{{"requestId":1,"result":{{"subscriptionId":"{SUB_1}","timestamp":"{T0}"}}}}"#
            ),
            format!(
                r#"{{"requestId":2,"result":{{"id":"msg-fdf6bd54eb94deba","createTime":"{T0}"}}}}"#
            ),
        ]
    );
}

#[test]
fn shutdown_closes_broadcaster_connections_with_1001_and_no_notice() {
    let mut t = authed(&["b"]);
    let now = t.now;
    assert_eq!(t.hub.shutdown(now, Duration::from_secs(1)), 1);
    t.collect_outputs();
    assert_eq!(t.transcript(), ["b closed 1001 server shutting down"]);
}

#[test]
fn an_auth_on_an_authenticated_connection_refreshes_its_token() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("b", Dialect::Broadcaster);
    let short = |exp: u64, channels: &[&str]| {
        token_with(json!({
            "sub": "bob", "aud": "broadcaster", "authorizedChannels": channels,
            "scope": ["subscribe", "publish"], "exp": exp,
        }))
    };
    t.send(
        "b",
        &auth_frame("1", &short(TEST_UNIX + 30, &["news", "sport"])),
    );
    t.send(
        "b",
        r#"{"id":2,"method":"subscribe","params":{"channel":"news"}}"#,
    );
    t.send(
        "b",
        r#"{"id":3,"method":"subscribe","params":{"channel":"sport"}}"#,
    );
    t.transcript();
    t.advance(Duration::from_secs(20));
    // Same peer: accepted, answered as an auth is, the old expiry replaced.
    t.send("b", &auth_frame("4", &short(TEST_UNIX + 120, &["news"])));
    assert_eq!(
        t.transcript(),
        [r#"b <- {"requestId":4,"result":{"success":true}}"#]
    );
    // Another peer's token: refused, the connection keeps its token.
    let other = token("carol", &["news"], &["subscribe"]);
    t.send("b", &auth_frame("5", &other));
    assert_eq!(
        t.transcript(),
        [
            r#"b <- {"requestId":5,"error":{"code":"Unauthenticated","message":"the refresh token is for another peer id"}}"#
        ]
    );
    // Past the first token's exp + leeway: still open; `sport` ended with the
    // refresh (The Broadcaster has no frame to say so), `news` still delivers.
    t.advance(Duration::from_secs(20));
    t.connect("p", Dialect::Broadcaster);
    t.send(
        "p",
        &auth_frame("1", &token("pub", &["news", "sport"], &["publish"])),
    );
    t.send(
        "p",
        r#"{"id":2,"method":"publish","params":{"channel":"sport","payload":1}}"#,
    );
    t.send(
        "p",
        r#"{"id":3,"method":"publish","params":{"channel":"news","payload":2}}"#,
    );
    let out = t.take("b");
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].contains(r#""channel":"news""#), "{out:?}");
    t.transcript();
    // The Broadcaster has no expiry warning: the close comes at the new exp + leeway.
    t.advance(Duration::from_secs(84));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(2));
    assert_eq!(t.transcript(), ["b closed 4002 token expired"]);
}
