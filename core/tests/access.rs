//! fastpubsub parity in the hub: opaque access tokens (`AT_<id>_<secret>`) carry the
//! same grants as JWTs and are checked by the same code; requests may name a tenant
//! the credentials allow; revocation closes live connections.

use std::time::Duration;

use switchyard_core::access::{AccessToken, hash_secret};
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_with};
use switchyard_core::{Config, Credentials, Dialect, Event, Open};

const SECRET: &str = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3T";

fn at(id: &str) -> String {
    format!("AT_{id}_{SECRET}")
}

/// `t1`: tenants acme (its own) and globex; publishes to `out/*`, subscribes to `in/*`
/// and `feed/**`.
fn t1() -> AccessToken {
    let mut t = AccessToken::new("t1", hash_secret(SECRET));
    t.tenants = vec!["acme".into(), "globex".into()];
    t.publish = vec!["out/*".into()];
    t.subscribe = vec!["in/*".into(), "feed/**".into()];
    t
}

fn config(tokens: Vec<AccessToken>) -> Config {
    let mut config = keyed_config();
    config.auth.access_tokens = tokens;
    config
}

fn open(token: &str, remote: Option<&str>, origin: Option<&str>) -> Open {
    let mut open = Open::new(Dialect::Json);
    open.credentials = Credentials::Token(token.to_owned());
    open.remote = remote.map(|r| r.parse().unwrap());
    open.origin = origin.map(str::to_owned);
    open
}

/// A JWT peer in `tenant` with every permission on `**`.
fn jwt(sub: &str, tenant: &str) -> String {
    token_with(serde_json::json!({
        "sub": sub,
        "tenant": tenant,
        "channels": ["**"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": TEST_UNIX + 3600,
    }))
}

/// Sends `frame` and returns what `name` got back.
fn ask(t: &mut TestHub, name: &str, frame: serde_json::Value) -> Vec<String> {
    t.send(name, &frame.to_string());
    t.take(name)
}

fn ack(rid: &str) -> String {
    format!(r#"{{"type":"ack","requestId":"{rid}"}}"#)
}

fn error(code: &str, message: &str, rid: &str) -> String {
    format!(r#"{{"type":"error","code":"{code}","message":"{message}","requestId":"{rid}"}}"#)
}

fn welcome_peer(t: &mut TestHub, name: &str) -> String {
    let out = t.take(name);
    let welcome: serde_json::Value = serde_json::from_str(&out[0]).expect("welcome");
    assert_eq!(welcome["type"], "welcome", "{out:?}");
    welcome["peerId"].as_str().unwrap().to_owned()
}

/// Publish and subscribe lists are separate and each is checked on its own, for an
/// access token and for a JWT with `publishChannels`/`subscribeChannels` alike.
#[test]
fn access_tokens_and_jwts_share_the_split_publish_and_subscribe_grants() {
    let mut t = TestHub::with_config(config(vec![t1()]));
    let split_jwt = token_with(serde_json::json!({
        "sub": "j",
        "tenant": "acme",
        "tenants": ["globex"],
        "publishChannels": ["out/*"],
        "subscribeChannels": ["in/*", "feed/**"],
        "permissions": ["publish", "subscribe", "presence"],
        "exp": TEST_UNIX + 3600,
    }));
    t.connect_with("at", open(&at("t1"), None, None));
    t.connect_with("jwt", open(&split_jwt, None, None));
    assert!(!welcome_peer(&mut t, "at").is_empty());
    assert_eq!(welcome_peer(&mut t, "jwt"), "j");
    for name in ["at", "jwt"] {
        let sub = |ch: &str| serde_json::json!({"type":"subscribe","channel":ch,"requestId":"s"});
        let publish =
            |ch: &str| serde_json::json!({"type":"publish","channel":ch,"data":1,"requestId":"p"});
        let out = ask(&mut t, name, sub("in/a"));
        assert_eq!(out[0], ack("s"), "{name}");
        assert_eq!(
            ask(&mut t, name, sub("out/a")),
            [error(
                "channel_not_authorized",
                "channel not in your grants",
                "s"
            )],
            "{name}"
        );
        assert_eq!(ask(&mut t, name, sub("feed/**")), [ack("s")], "{name}");
        assert_eq!(
            ask(&mut t, name, sub("in/**")),
            [error(
                "channel_not_authorized",
                "channel not in your grants",
                "s"
            )],
            "{name}: a pattern wider than the grant"
        );
        assert_eq!(ask(&mut t, name, publish("out/a")), [ack("p")], "{name}");
        assert_eq!(
            ask(&mut t, name, publish("in/a")),
            [error(
                "channel_not_authorized",
                "channel not in your grants",
                "p"
            )],
            "{name}"
        );
    }
}

/// A request may name one of the credentials' tenants; channels and wildcard
/// subscriptions are keyed by that tenant, and messages delivered across tenants
/// name theirs.
#[test]
fn requests_name_allowed_tenants_and_wildcards_work_per_tenant() {
    let mut t = TestHub::with_config(config(vec![t1()]));
    t.connect_with("at", open(&at("t1"), None, None));
    t.connect_with("g", open(&jwt("g", "globex"), None, None));
    t.connect_with("a", open(&jwt("a", "acme"), None, None));
    let at_peer = welcome_peer(&mut t, "at");
    t.transcript();

    let out = ask(
        &mut t,
        "at",
        serde_json::json!({"type":"subscribe","tenant":"globex","channel":"in/x","requestId":"1"}),
    );
    assert_eq!(
        out,
        [
            ack("1"),
            r#"{"type":"presence","tenant":"globex","channel":"in/x","joined":[],"left":[],"count":1,"snapshot":true}"#.to_owned()
        ],
        "presence from another tenant names it too"
    );
    t.send(
        "g",
        r#"{"type":"subscribe","channel":"in/x","requestId":"g"}"#,
    );
    assert_eq!(
        t.take("at"),
        [
            r#"{"type":"presence","tenant":"globex","channel":"in/x","joined":[{"peerId":"g","metadata":{}}],"left":[],"count":2}"#
        ]
    );
    assert_eq!(
        t.take("g"),
        [
            ack("g"),
            format!(
                r#"{{"type":"presence","channel":"in/x","joined":[{{"peerId":"{at_peer}","metadata":{{}}}}],"left":[],"count":2,"snapshot":true}}"#
            )
        ],
        "globex's own peer sees the visitor as any member"
    );
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"subscribe","tenant":"globex","channel":"feed/**","requestId":"2"})
        ),
        [ack("2")]
    );
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"subscribe","tenant":"initech","channel":"in/x","requestId":"3"})
        ),
        [error(
            "tenant_not_authorized",
            "tenant not in your grants",
            "3"
        )]
    );
    // Its own tenant, named or not, is always allowed.
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"subscribe","tenant":"acme","channel":"feed/**","requestId":"4"})
        )[0],
        ack("4")
    );

    // globex traffic reaches it, naming the tenant; the same names in acme stay apart.
    t.send(
        "g",
        r#"{"type":"publish","channel":"in/x","data":{"n":1},"requestId":"p"}"#,
    );
    assert_eq!(
        t.take("at"),
        [r#"{"type":"message","tenant":"globex","channel":"in/x","from":"g","data":{"n":1}}"#]
    );
    t.send(
        "g",
        r#"{"type":"publish","channel":"feed/a/b","data":2,"requestId":"p"}"#,
    );
    assert_eq!(
        t.take("at"),
        [r#"{"type":"message","tenant":"globex","channel":"feed/a/b","from":"g","data":2}"#]
    );
    t.send("a", r#"{"type":"publish","channel":"in/x","data":3}"#);
    assert_eq!(
        t.take("at"),
        Vec::<String>::new(),
        "acme's in/x is another channel"
    );
    t.send("a", r#"{"type":"publish","channel":"feed/z","data":4}"#);
    assert_eq!(
        t.take("at"),
        [r#"{"type":"message","channel":"feed/z","from":"a","data":4}"#],
        "its own tenant's messages carry no tenant"
    );

    // Publishing into a named tenant reaches that tenant's subscribers as usual.
    t.send(
        "g",
        r#"{"type":"subscribe","channel":"out/y","requestId":"s"}"#,
    );
    t.transcript();
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"publish","tenant":"globex","channel":"out/y","data":5,"requestId":"5"})
        ),
        [ack("5")]
    );
    assert_eq!(
        t.take("g"),
        [format!(
            r#"{{"type":"message","channel":"out/y","from":"{at_peer}","data":5}}"#
        )]
    );
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"publish","tenant":"initech","channel":"out/y","data":6,"requestId":"6"})
        ),
        [error(
            "tenant_not_authorized",
            "tenant not in your grants",
            "6"
        )]
    );

    // A JWT without `tenants` may name only its own tenant.
    assert_eq!(
        ask(
            &mut t,
            "a",
            serde_json::json!({"type":"subscribe","tenant":"globex","channel":"in/x","requestId":"7"})
        ),
        [error(
            "tenant_not_authorized",
            "tenant not in your grants",
            "7"
        )]
    );

    // Unsubscribing names the tenant too; then globex's messages stop.
    assert_eq!(
        ask(
            &mut t,
            "at",
            serde_json::json!({"type":"unsubscribe","tenant":"globex","channel":"feed/**","requestId":"8"})
        ),
        [ack("8")]
    );
    t.send("g", r#"{"type":"publish","channel":"feed/a","data":9}"#);
    assert_eq!(t.take("at"), Vec::<String>::new());
    t.hard_close("at");
    t.hard_close("g");
    t.hard_close("a");
    assert!(t.hub.is_empty());
}

fn refused(t: &mut TestHub, name: &str, open: Open) -> (String, &'static str) {
    let conn = t.connect_with(name, open);
    let close = t.transcript().pop().expect("a close");
    let reason = t
        .events()
        .into_iter()
        .find_map(|e| match e {
            Event::AuthFailed { conn: c, reason } if c == conn => Some(reason),
            _ => None,
        })
        .expect("an AuthFailed event");
    (close, reason)
}

#[test]
fn refused_access_tokens_close_4001_or_4002_with_distinct_reasons() {
    let mut revoked = AccessToken::new("gone", hash_secret(SECRET));
    revoked.revoked = true;
    let mut expired = AccessToken::new("old", hash_secret(SECRET));
    expired.expires_at = Some(TEST_UNIX - 1);
    let mut private = AccessToken::new("lan", hash_secret(SECRET));
    private.allowed_ips = vec!["10.0.0.0/8".parse().unwrap()];
    let mut web = AccessToken::new("web", hash_secret(SECRET));
    web.allowed_origins = vec!["https://app.example.com".into()];
    let mut t = TestHub::with_config(config(vec![t1(), revoked, expired, private, web]));
    let cases = [
        (
            "malformed",
            open("AT_t1_short", None, None),
            "x closed 4001 invalid token",
            "malformed_access_token",
        ),
        (
            "unknown",
            open(&at("nope"), None, None),
            "x closed 4001 invalid token",
            "unknown_access_token",
        ),
        (
            "secret",
            open(&format!("AT_t1_{}", SECRET.to_lowercase()), None, None),
            "x closed 4001 invalid token",
            "bad_secret",
        ),
        (
            "revoked",
            open(&at("gone"), None, None),
            "x closed 4001 invalid token",
            "revoked",
        ),
        (
            "expired",
            open(&at("old"), None, None),
            "x closed 4002 token expired",
            "expired",
        ),
        (
            "loopback",
            open(&at("lan"), Some("127.0.0.1:4000"), None),
            "x closed 4001 invalid token",
            "ip_not_allowed",
        ),
        (
            "origin",
            open(&at("web"), None, Some("https://evil.example")),
            "x closed 4001 invalid token",
            "origin_not_allowed",
        ),
    ];
    for (what, open, close, reason) in cases {
        let got = refused(&mut t, "x", open);
        assert_eq!(got, (close.to_owned(), reason), "{what}");
    }
    // The same tokens from an allowed network and origin pass.
    t.connect_with("lan", open(&at("lan"), Some("10.1.2.3:4000"), None));
    assert!(t.take("lan")[0].contains(r#""type":"welcome""#));
    t.connect_with(
        "web",
        open(&at("web"), None, Some("https://app.example.com")),
    );
    assert!(t.take("web")[0].contains(r#""type":"welcome""#));
    // In-band `auth` takes access tokens too (TCP lines, QUIC).
    let mut config = config(vec![t1()]);
    config.auth.anonymous = None;
    let mut t = TestHub::with_config(config);
    t.connect("line", Dialect::Json);
    t.send(
        "line",
        &format!(
            r#"{{"type":"auth","token":"{}","requestId":"a"}}"#,
            at("t1")
        ),
    );
    let out = t.take("line");
    assert!(out[0].contains(r#""type":"welcome""#), "{out:?}");
    assert_eq!(out[1], ack("a"));
}

#[test]
fn revoking_an_access_token_closes_its_connections_4001_and_nobody_else() {
    let mut t = TestHub::with_config(config(vec![t1()]));
    t.connect_with("at1", open(&at("t1"), None, None));
    t.connect_with("at2", open(&at("t1"), None, None));
    t.connect_with("jwt", open(&jwt("j", "acme"), None, None));
    t.transcript();
    let mut revoked = t1();
    revoked.revoked = true;
    let now = t.now;
    assert_eq!(t.hub.set_access_tokens(now, vec![revoked]), Ok(2));
    t.collect_outputs();
    assert_eq!(
        t.transcript(),
        [
            "at1 closed 4001 access token revoked",
            "at2 closed 4001 access token revoked"
        ]
    );
    // Deleting the token has the same effect for a newcomer; the JWT peer stays.
    let now = t.now;
    assert_eq!(t.hub.set_access_tokens(now, vec![]), Ok(0));
    let (close, reason) = refused(&mut t, "late", open(&at("t1"), None, None));
    assert_eq!(
        (close.as_str(), reason),
        ("late closed 4001 invalid token", "unknown_access_token")
    );
    t.send(
        "jwt",
        r#"{"type":"subscribe","channel":"c","requestId":"s"}"#,
    );
    assert_eq!(t.take("jwt")[0], ack("s"));
    // An invalid table changes nothing.
    let now = t.now;
    let bad = AccessToken::new("bad id", hash_secret(SECRET));
    assert!(t.hub.set_access_tokens(now, vec![bad]).is_err());
}

#[test]
fn an_access_token_expiring_while_connected_closes_4002() {
    let mut token = t1();
    token.expires_at = Some(TEST_UNIX + 60);
    let mut t = TestHub::with_config(config(vec![token]));
    t.connect_with("at", open(&at("t1"), None, None));
    let welcome = t.take("at");
    assert!(
        welcome[0].contains(&format!(r#""expiresAt":{}"#, TEST_UNIX + 60)),
        "{welcome:?}"
    );
    t.transcript();
    // The server's own expiry, so no clock-skew leeway (a JWT gets 5 s): closed at
    // `expiresAt` exactly, as a new connection would be refused from then on.
    t.advance(Duration::from_millis(59_999));
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.advance(Duration::from_millis(1));
    assert_eq!(t.transcript(), ["at closed 4002 token expired"]);
}

/// rtc-signaller peers carry the token in their announce; the room must be in the
/// subscribe list, and room messages in the publish list. Even on a server without
/// signing keys, an `AT_…` announce token is checked rather than stripped.
#[test]
fn an_rtc_signaller_announce_may_carry_an_access_token() {
    let mut config = Config::default();
    config.auth.access_tokens = vec![t1()];
    let mut t = TestHub::with_config(config);
    t.connect("rtc", Dialect::Signaller);
    let announce = |room: &str| {
        format!(
            r#"/announce|rtc|{{"id":"rtc","room":"{room}","token":"{}"}}"#,
            at("t1")
        )
    };
    t.send("rtc", &announce("out/r"));
    assert_eq!(
        t.take("rtc"),
        [r#"/error|{"code":"channel_not_authorized","message":"room not in your grants"}"#]
    );
    t.send("rtc", &announce("in/r"));
    assert_eq!(t.take("rtc"), [r#"/roominfo|{"memberCount":1}"#]);
    t.send("rtc", "/chat|rtc|hi");
    assert_eq!(
        t.take("rtc"),
        [r#"/error|{"code":"channel_not_authorized","message":"room not in your publish grants"}"#]
    );
    t.send(
        "rtc",
        &format!(
            r#"/announce|rtc|{{"id":"rtc","room":"in/r","token":"AT_t1_{}"}}"#,
            "x".repeat(32)
        ),
    );
    let out = t.take("rtc");
    assert!(out[0].contains(r#""code":"invalid_token""#), "{out:?}");
}

/// The Broadcaster's in-band `auth` takes an access token too. An access token names
/// no audience (the server issued it for itself), so the Broadcaster audience check
/// is for JWTs only; its grants apply as on any other wire, and a wrong secret is
/// answered `Unauthenticated` like a refused JWT.
#[test]
fn a_broadcaster_client_authenticates_in_band_with_an_access_token() {
    let mut t = TestHub::with_config(config(vec![t1()]));
    t.connect("b", Dialect::Broadcaster);
    let wrong = format!("AT_t1_{}", "x".repeat(36));
    t.send(
        "b",
        &format!(r#"{{"id":1,"method":"auth","params":{{"token":"{wrong}"}}}}"#),
    );
    t.send(
        "b",
        &format!(
            r#"{{"id":2,"method":"auth","params":{{"token":"{}"}}}}"#,
            at("t1")
        ),
    );
    t.send(
        "b",
        r#"{"id":3,"method":"subscribe","params":{"channel":"in/x"}}"#,
    );
    t.send(
        "b",
        r#"{"id":4,"method":"subscribe","params":{"channel":"out/x"}}"#,
    );
    let out = t.take("b");
    assert_eq!(out.len(), 4, "{out:?}");
    assert!(
        out[0].starts_with(r#"{"requestId":1,"error":{"code":"Unauthenticated""#),
        "{out:?}"
    );
    assert_eq!(out[1], r#"{"requestId":2,"result":{"success":true}}"#);
    assert!(
        out[2].starts_with(r#"{"requestId":3,"result":{"subscriptionId":"#),
        "{out:?}"
    );
    assert!(
        out[3].starts_with(r#"{"requestId":4,"error":{"code":"PermissionDenied""#),
        "the subscribe list does not hold out/*: {out:?}"
    );
}

#[test]
fn an_access_token_connection_refreshes_with_another_access_token_of_its_tenant_only() {
    let mut first = t1();
    first.expires_at = Some(TEST_UNIX + 60);
    let mut later = AccessToken::new("t2", hash_secret(SECRET));
    later.tenants = vec!["acme".into()];
    later.subscribe = vec!["in/*".into()];
    later.expires_at = Some(TEST_UNIX + 3600);
    let mut elsewhere = AccessToken::new("t3", hash_secret(SECRET));
    elsewhere.tenants = vec!["globex".into()];
    let mut t = TestHub::with_config(config(vec![first, later, elsewhere]));
    t.connect_with("at", open(&at("t1"), None, None));
    t.take("at");
    let refresh = |token: &str, rid: &str| serde_json::json!({"type": "refresh", "token": token, "requestId": rid});
    // A JWT cannot stand in for an access token, nor a token of another tenant.
    let got = ask(&mut t, "at", refresh(&jwt("x", "acme"), "r1"));
    assert!(got[0].contains(r#""code":"invalid_token""#), "{got:?}");
    assert!(got[0].contains("kind"), "{got:?}");
    let got = ask(&mut t, "at", refresh(&at("t3"), "r2"));
    assert!(got[0].contains("another tenant"), "{got:?}");
    // The same tenant's later token: acked with its expiry, and it outlives the first.
    let got = ask(&mut t, "at", refresh(&at("t2"), "r3"));
    assert_eq!(
        got,
        [format!(
            r#"{{"type":"ack","requestId":"r3","expiresAt":{}}}"#,
            TEST_UNIX + 3600
        )]
    );
    t.advance(Duration::from_secs(120));
    let got = ask(
        &mut t,
        "at",
        serde_json::json!({"type": "subscribe", "channel": "in/x", "requestId": "s"}),
    );
    assert_eq!(
        got.first().map(String::as_str),
        Some(ack("s").as_str()),
        "{got:?}"
    );
}
