//! The control plane: server publish, disconnect, presence listing, stats, graceful
//! shutdown and reconfiguration without restart.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use switchyard_core::config::Quota;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, test_key, token_for, token_with};
use switchyard_core::token::{SigningKey, mint};
use switchyard_core::{CloseCode, Config, ControlError, Dialect};

/// `sig` (rtc-signaller) and `js` (JSON) in `lobby`, with tokens.
fn lobby() -> TestHub {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("sig", Dialect::Signaller, &token_for("sig", &["lobby"]));
    t.send("sig", r#"/announce|sig|{"id":"sig","room":"lobby"}"#);
    t.connect_token("js", Dialect::Json, &token_for("js", &["lobby"]));
    t.send("js", r#"{"type":"subscribe","channel":"lobby"}"#);
    t.transcript();
    t
}

#[test]
fn server_publish_reaches_every_dialect_from_the_server() {
    let mut t = lobby();
    let now = t.now;
    let sent = t.hub.publish(
        now,
        "default",
        "lobby",
        Bytes::from_static(br#"{"news":1}"#),
    );
    assert_eq!(sent, Ok(2));
    t.collect_outputs();
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /message|_server|{"news":1}"#,
            r#"js <- {"type":"message","channel":"lobby","from":"_server","data":{"news":1}}"#,
        ]
    );
    assert!(matches!(
        t.hub
            .publish(now, "default", "lobby/*", Bytes::from_static(b"1")),
        Err(ControlError::InvalidChannel(_))
    ));
    assert_eq!(
        t.hub
            .publish(now, "default", "lobby", Bytes::from_static(b"{nope")),
        Err(ControlError::InvalidData)
    );
    // Other tenants see nothing.
    assert_eq!(
        t.hub
            .publish(now, "acme", "lobby", Bytes::from_static(b"1")),
        Ok(0)
    );
}

#[test]
fn server_publish_counts_against_the_tenant_quota() {
    let mut config = keyed_config();
    config.limits.quota = Some(Quota {
        messages: 1,
        period: Duration::from_secs(60),
    });
    let mut t = TestHub::with_config(config);
    let now = t.now;
    assert_eq!(
        t.hub.publish(now, "default", "c", Bytes::from_static(b"1")),
        Ok(0)
    );
    assert_eq!(t.hub.quota_usage("default"), Some((1, 1)));
    assert_eq!(
        t.hub.publish(now, "default", "c", Bytes::from_static(b"1")),
        Err(ControlError::OverQuota)
    );
}

#[test]
fn disconnect_closes_every_connection_of_the_peer_with_4020() {
    let mut t = lobby();
    t.connect_token("js2", Dialect::Json, &token_for("js", &["lobby"]));
    t.transcript();
    let now = t.now;
    assert_eq!(
        t.hub.disconnect(
            now,
            "default",
            "js",
            CloseCode::ADMIN_DISCONNECT,
            "disconnected by an operator"
        ),
        2
    );
    t.collect_outputs();
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /leave|js|{"id":"js"}"#,
            "js closed 4020 disconnected by an operator",
            "js2 closed 4020 disconnected by an operator",
        ]
    );
}

#[test]
fn presence_and_stats_describe_the_hub() {
    let t = lobby();
    let peers: Vec<String> = t
        .hub
        .presence("default", "lobby")
        .into_iter()
        .map(|(p, _)| p.to_string())
        .collect();
    assert_eq!(peers, ["js", "sig"]);
    assert!(t.hub.presence("default", "nowhere").is_empty());
    let stats = t.hub.stats();
    assert_eq!(stats.connections, 2);
    assert_eq!(stats.channels, 1);
    assert_eq!(stats.memberships, 2);
    assert_eq!(
        stats.connections_by_dialect,
        [
            (Dialect::Signaller, 1),
            (Dialect::Json, 1),
            (Dialect::Broadcaster, 0)
        ]
    );
}

#[test]
fn shutdown_says_going_away_then_closes_1001_without_leaves() {
    let mut t = lobby();
    let now = t.now;
    assert_eq!(t.hub.shutdown(now, Duration::from_secs(5)), 2);
    t.collect_outputs();
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /error|{"code":"going_away","message":"server shutting down","retryAfterMs":5000}"#,
            "sig closed 1001 server shutting down",
            r#"js <- {"type":"going_away","retryAfterMs":5000}"#,
            "js closed 1001 server shutting down",
        ]
    );
    assert!(t.hub.is_empty());
    t.connect("late", Dialect::Json);
    assert_eq!(t.transcript(), ["late closed 1001 server shutting down"]);
}

#[test]
fn reconfigure_swaps_keys_and_closes_connections_of_removed_keys() {
    let mut t = lobby();
    let next = SigningKey {
        kid: "k2".into(),
        secret: b"the-next-secret-after-rotation-42".to_vec(),
        ..test_key()
    };
    // Step 1: add k2 next to k1. Nobody is closed.
    let mut both = keyed_config();
    both.auth.keys.push(next.clone());
    let now = t.now;
    assert_eq!(t.hub.reconfigure(now, both), Ok(0));
    let claims = json!({"sub": "new", "channels": ["lobby"], "exp": TEST_UNIX + 60,
        "permissions": ["subscribe", "presence"]});
    t.connect_token("new", Dialect::Json, &mint(&next, &claims).unwrap());
    assert!(t.transcript()[0].starts_with(r#"new <- {"type":"welcome""#));
    // Step 2: drop k1. Its connections are closed with 4001; k2's stay.
    let mut only_next = Config::default();
    only_next.auth.keys = vec![next];
    only_next.auth.anonymous = None;
    assert_eq!(t.hub.reconfigure(now, only_next), Ok(2));
    t.collect_outputs();
    let out = t.transcript();
    assert!(
        out.contains(&"sig closed 4001 credentials revoked by reconfiguration".to_owned()),
        "{out:?}"
    );
    assert!(
        out.contains(&"js closed 4001 credentials revoked by reconfiguration".to_owned()),
        "{out:?}"
    );
    assert_eq!(t.hub.stats().connections, 1);
    // A token of the removed key is refused now.
    t.connect_token("old", Dialect::Json, &token_for("old", &["lobby"]));
    assert_eq!(t.transcript(), ["old closed 4001 invalid token"]);
    // An invalid config changes nothing.
    let mut broken = Config::default();
    broken.limits.message_rate = 0;
    assert!(t.hub.reconfigure(now, broken).is_err());
    assert_eq!(t.hub.stats().connections, 1);
}

#[test]
fn ids_starting_with_underscore_are_the_servers() {
    let mut t = TestHub::with_config(keyed_config());
    let token = token_with(json!({"sub": "_server", "exp": TEST_UNIX + 60}));
    t.connect_token("fake", Dialect::Json, &token);
    assert_eq!(t.transcript(), ["fake closed 4001 invalid token"]);
    let mut t = TestHub::new();
    t.connect("fake", Dialect::Signaller);
    t.send("fake", r#"/announce|_server|{"id":"_server","room":"r"}"#);
    assert_eq!(
        t.transcript(),
        [r#"fake <- /error|{"code":"invalid_peer_id","message":"invalid peer id"}"#]
    );
}

#[test]
fn connection_caps_per_ip_tenant_and_peer_close_4010_and_count_back_down() {
    use switchyard_core::{Credentials, Open};
    let mut config = keyed_config();
    config.limits.max_conns_per_ip = 2;
    config.limits.max_conns_per_tenant = 3;
    config.limits.max_conns_per_peer = 1;
    let mut t = TestHub::with_config(config);
    let from = |ip: &str, token: &str| Open {
        dialect: Dialect::Json,
        credentials: Credentials::Token(token.to_owned()),
        remote: Some(format!("{ip}:5000").parse().unwrap()),
        origin: None,
    };
    // Per IP: two from 192.0.2.1, the third is refused; another address is fine.
    t.connect_with("a1", from("192.0.2.1", &token_for("a1", &["c"])));
    t.connect_with("a2", from("192.0.2.1", &token_for("a2", &["c"])));
    t.connect_with("a3", from("192.0.2.1", &token_for("a3", &["c"])));
    let out = t.transcript();
    assert_eq!(
        out.last().unwrap(),
        "a3 closed 4010 too many connections from this address",
        "{out:?}"
    );
    // Per peer: a second connection of a1 is refused.
    t.connect_with("a1-again", from("198.51.100.1", &token_for("a1", &["c"])));
    assert_eq!(
        t.transcript(),
        ["a1-again closed 4010 too many connections for this peer id"]
    );
    // Per tenant: a1, a2, then b1 makes 3; b2 is the 4th in the tenant.
    t.connect_with("b1", from("198.51.100.2", &token_for("b1", &["c"])));
    t.connect_with("b2", from("198.51.100.3", &token_for("b2", &["c"])));
    let out = t.transcript();
    assert_eq!(
        out.last().unwrap(),
        "b2 closed 4010 too many connections in this tenant",
        "{out:?}"
    );
    // Counts go back down: after a1 leaves, its address and tenant have room again.
    t.hard_close("a1");
    t.connect_with("a4", from("192.0.2.1", &token_for("a4", &["c"])));
    assert!(t.transcript()[0].starts_with(r#"a4 <- {"type":"welcome""#));
    for n in ["a2", "b1", "a4"] {
        t.hard_close(n);
    }
    assert!(t.hub.is_empty(), "counters did not return to zero");
}
