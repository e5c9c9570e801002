//! Token refresh without a reconnect (`docs/protocol.md`, "Token refresh"): the
//! `refresh` request and its `ack`, the `token_expiring` warning, the 4002 close
//! when no refresh comes, refusals that keep the old token, and grants that narrow.

use std::time::Duration;

use serde_json::json;
use switchyard_core::Dialect;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_with};

use super::subscribe;

/// A token for `sub` on `channels`, every permission, expiring `secs` after the
/// harness's start.
fn token(sub: &str, channels: &[&str], secs: u64) -> String {
    token_with(json!({
        "sub": sub, "channels": channels, "exp": TEST_UNIX + secs,
        "permissions": ["publish", "subscribe", "presence", "send"],
    }))
}

fn refresh(t: &mut TestHub, name: &str, token: &str, rid: &str) {
    t.send(
        name,
        &format!(r#"{{"type":"refresh","token":"{token}","requestId":"{rid}"}}"#),
    );
}

/// `a` connected with a token expiring at +30 s (closed at +35 s, the leeway 5 s).
fn connected() -> TestHub {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("a", Dialect::Json, &token("a", &["c"], 30));
    t.transcript();
    t
}

#[test]
fn refresh_is_acked_with_the_new_expiry_and_extends_the_connection_past_the_first_exp() {
    let mut t = connected();
    t.advance(Duration::from_secs(20));
    refresh(&mut t, "a", &token("a", &["c"], 120), "r1");
    assert_eq!(
        t.transcript(),
        [format!(
            r#"a <- {{"type":"ack","requestId":"r1","expiresAt":{}}}"#,
            TEST_UNIX + 120
        )]
    );
    // Past the first token's exp + leeway (35 s): nothing.
    t.advance(Duration::from_secs(40));
    assert_eq!(t.transcript(), Vec::<String>::new());
    // A refresh without a requestId is applied, unanswered, like any request.
    t.send(
        "a",
        &format!(
            r#"{{"type":"refresh","token":"{}"}}"#,
            token("a", &["c"], 200)
        ),
    );
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(140));
    assert_eq!(
        t.transcript(),
        [format!(
            r#"a <- {{"type":"token_expiring","expiresAt":{}}}"#,
            TEST_UNIX + 200
        )],
        "warned at 170 s, not closed before 205 s"
    );
}

#[test]
fn a_connection_that_refreshed_is_warned_refresh_warning_before_exp_then_closed_4002() {
    let mut t = connected();
    refresh(&mut t, "a", &token("a", &["c"], 100), "r1");
    t.transcript();
    // Default warning: 30 s before exp, so at +70 s.
    t.advance(Duration::from_secs(69));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(1));
    assert_eq!(
        t.transcript(),
        [format!(
            r#"a <- {{"type":"token_expiring","expiresAt":{}}}"#,
            TEST_UNIX + 100
        )]
    );
    // No refresh came: closed at exp + leeway, not before.
    t.advance(Duration::from_secs(34));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(1));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
    assert!(t.hub.is_empty());
}

#[test]
fn a_connection_that_never_refreshed_is_not_warned_unless_refresh_warning_all() {
    let mut t = connected();
    t.advance(Duration::from_secs(35));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);

    let mut config = keyed_config();
    config.auth.refresh_warning = Duration::from_secs(10);
    config.auth.refresh_warning_all = true;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token("a", &["c"], 30));
    t.transcript();
    t.advance(Duration::from_secs(20));
    assert_eq!(
        t.transcript(),
        [format!(
            r#"a <- {{"type":"token_expiring","expiresAt":{}}}"#,
            TEST_UNIX + 30
        )]
    );
    t.advance(Duration::from_secs(15));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
}

#[test]
fn refresh_warning_zero_turns_the_warning_off() {
    let mut config = keyed_config();
    config.auth.refresh_warning = Duration::ZERO;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token("a", &["c"], 30));
    refresh(&mut t, "a", &token("a", &["c"], 60), "r1");
    t.transcript();
    t.advance(Duration::from_secs(64));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(1));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
}

#[test]
fn a_token_shorter_than_the_warning_period_is_warned_at_once() {
    let mut t = connected();
    refresh(&mut t, "a", &token("a", &["c"], 10), "r1");
    t.advance(Duration::ZERO);
    assert_eq!(
        t.transcript(),
        [
            format!(
                r#"a <- {{"type":"ack","requestId":"r1","expiresAt":{}}}"#,
                TEST_UNIX + 10
            ),
            format!(
                r#"a <- {{"type":"token_expiring","expiresAt":{}}}"#,
                TEST_UNIX + 10
            ),
        ]
    );
    t.advance(Duration::from_secs(15));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
}

#[test]
fn a_refresh_token_for_another_peer_or_tenant_is_refused_and_the_old_token_stays() {
    let mut t = connected();
    refresh(&mut t, "a", &token("b", &["c"], 3600), "r1");
    let other_tenant = token_with(json!({
        "sub": "a", "channels": ["c"], "exp": TEST_UNIX + 3600, "tenant": "t2",
        "permissions": ["subscribe"],
    }));
    refresh(&mut t, "a", &other_tenant, "r2");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"invalid_token","message":"the refresh token is for another peer id","requestId":"r1"}"#,
            r#"a <- {"type":"error","code":"invalid_token","message":"the refresh token is for another tenant","requestId":"r2"}"#,
        ]
    );
    t.advance(Duration::from_secs(35));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
}

#[test]
fn an_expired_or_bad_refresh_token_is_refused_and_the_connection_stays() {
    let mut t = connected();
    refresh(
        &mut t,
        "a",
        &token_with(json!({"sub": "a", "exp": TEST_UNIX - 60})),
        "r1",
    );
    refresh(&mut t, "a", "not-a-jwt", "r2");
    let out = t.transcript();
    assert_eq!(out.len(), 2, "{out:?}");
    assert!(
        out[0].starts_with(
            r#"a <- {"type":"error","code":"token_expired","message":"refresh token refused: "#
        ) && out[0].ends_with(r#","requestId":"r1"}"#),
        "{out:?}"
    );
    assert!(
        out[1].starts_with(
            r#"a <- {"type":"error","code":"invalid_token","message":"refresh token refused: "#
        ),
        "{out:?}"
    );
    t.advance(Duration::from_secs(34));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_secs(1));
    assert_eq!(t.transcript(), ["a closed 4002 token expired"]);
}

#[test]
fn refresh_before_authentication_is_refused_unauthenticated() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("a", Dialect::Json);
    refresh(&mut t, "a", &token("a", &["c"], 60), "r1");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"unauthenticated","message":"authenticate first","requestId":"r1"}"#
        ]
    );
}

#[test]
fn narrowed_grants_end_the_subscription_with_an_error_naming_it_and_presence_left() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token(
        "a",
        Dialect::Json,
        &token("a", &["room-1", "rooms/**"], 3600),
    );
    t.connect_token("b", Dialect::Json, &token("b", &["room-1"], 3600));
    subscribe(&mut t, "a", "room-1");
    subscribe(&mut t, "a", "rooms/*");
    subscribe(&mut t, "b", "room-1");
    t.transcript();
    refresh(&mut t, "a", &token("a", &["rooms/x"], 3600), "r1");
    assert_eq!(
        t.transcript(),
        [
            format!(r#"a <- {{"type":"ack","requestId":"r1","expiresAt":{}}}"#, TEST_UNIX + 3600),
            r#"a <- {"type":"error","code":"channel_not_authorized","message":"the refreshed token does not allow this channel: subscription ended","channel":"room-1"}"#.to_owned(),
            r#"a <- {"type":"error","code":"channel_not_authorized","message":"the refreshed token does not allow this channel: subscription ended","channel":"rooms/*"}"#.to_owned(),
            r#"b <- {"type":"presence","channel":"room-1","joined":[],"left":[{"peerId":"a"}],"count":1}"#.to_owned(),
        ]
    );
    // Nothing reaches `a` on the ended subscriptions any more.
    t.send("b", r#"{"type":"publish","channel":"room-1","data":1}"#);
    assert_eq!(t.take("a"), Vec::<String>::new());
}

#[test]
fn a_refresh_without_the_presence_permission_stops_presence_frames_but_not_messages() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("a", Dialect::Json, &token("a", &["room-1"], 3600));
    t.connect_token("b", Dialect::Json, &token("b", &["room-1"], 3600));
    subscribe(&mut t, "a", "room-1");
    t.transcript();
    let no_presence = token_with(json!({
        "sub": "a", "channels": ["room-1"], "exp": TEST_UNIX + 3600,
        "permissions": ["publish", "subscribe"],
    }));
    refresh(&mut t, "a", &no_presence, "r1");
    t.transcript();
    // b arrives and publishes: a gets the message, not b's arrival.
    subscribe(&mut t, "b", "room-1");
    t.send("b", r#"{"type":"publish","channel":"room-1","data":1}"#);
    assert_eq!(
        t.take("a"),
        [r#"{"type":"message","channel":"room-1","from":"b","data":1}"#]
    );
}

#[test]
fn metadata_from_the_refreshed_token_reaches_later_messages() {
    let mut t = TestHub::with_config(keyed_config());
    let with_name = |name: &str| {
        token_with(json!({
            "sub": "a", "channels": ["c"], "exp": TEST_UNIX + 3600,
            "permissions": ["publish", "subscribe"], "metadata": {"name": name},
        }))
    };
    t.connect_token("a", Dialect::Json, &with_name("Old"));
    t.connect_token("b", Dialect::Json, &token("b", &["c"], 3600));
    t.send(
        "b",
        r#"{"type":"subscribe","channel":"c","includeSenderMetadata":true}"#,
    );
    refresh(&mut t, "a", &with_name("New"), "r1");
    t.transcript();
    t.send("a", r#"{"type":"publish","channel":"c","data":1}"#);
    assert_eq!(
        t.take("b"),
        [r#"{"type":"message","channel":"c","from":"a","data":1,"fromMetadata":{"name":"New"}}"#]
    );
}
