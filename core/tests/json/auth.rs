//! Who may connect: tokens at connect and in-band, expiry, the auth timeout,
//! publishable keys, anonymous peers, every refusal's reason and key rotation.

use std::time::Duration;

use serde_json::json;
use switchyard_core::config::{Grant, PublishableKey};
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for, token_with};
use switchyard_core::token::Permissions;
use switchyard_core::{Config, Credentials, Dialect, Event, Open};

use super::{subscribe, welcome};

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
