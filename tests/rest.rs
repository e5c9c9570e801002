//! The REST control plane and operations endpoints on the WebSocket port, against a
//! real server: API keys, publish, token minting, presence, disconnect, usage,
//! channel history pages, Prometheus metrics read by a real parser, graceful
//! shutdown under load, and the OpenAPI file against the router.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::Ws;
use serde_json::{Value, json};
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[listen]
ws = "127.0.0.1:0"
[auth]
anonymous = true
[[auth.keys]]
kid = "k1"
secret = "rest-test-secret-0123456789abcdef"
[[api.keys]]
id = "ak_ops"
secret = "ops-secret"
[[api.keys]]
id = "ak_acme"
secret = "acme-secret"
tenant = "acme"
[[history]]
channels = "chat/**"
size = 3
ttl_ms = 60000
"#;

async fn start() -> (Running, SocketAddr) {
    let settings = Settings::from_toml(CONFIG, std::iter::empty()).expect("test config");
    let running = server::start(&settings).await.expect("server starts");
    let addr = running.ws_addr.expect("ws listener");
    (running, addr)
}

/// One HTTP/1.1 request with an optional JSON body; returns the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: Option<Value>,
) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::http(addr, method, path, auth, &body).await
}

async fn json_peer(addr: SocketAddr, channel: &str) -> (Ws, String) {
    let mut ws = Ws::connect(addr, "/v1").await;
    let welcome: Value = serde_json::from_str(&ws.expect_text("welcome").await).unwrap();
    let peer = welcome["peerId"].as_str().unwrap().to_owned();
    ws.send(&json!({"type": "subscribe", "channel": channel, "requestId": "s"}).to_string())
        .await;
    assert!(ws.expect_text("ack").await.contains(r#""type":"ack""#));
    ws.expect_text("presence snapshot").await;
    (ws, peer)
}

#[tokio::test]
async fn publish_needs_a_good_key_and_reaches_subscribers_from_the_server() {
    let (_server, addr) = start().await;
    let (mut peer, _) = json_peer(addr, "news").await;
    let (status, body) = http(
        addr,
        "POST",
        "/v1/publish",
        Some("ak_ops:ops-secret"),
        Some(json!({"channel": "news", "data": {"n": 1}})),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"deliveries":1}"#));
    assert_eq!(
        peer.expect_text("the server's message").await,
        r#"{"type":"message","channel":"news","from":"_server","data":{"n":1}}"#
    );
    // An opaque key (the secret alone) works too.
    let (status, _) = http(
        addr,
        "POST",
        "/v1/publish",
        Some("ops-secret"),
        Some(json!({"channel": "news", "data": 2})),
    )
    .await;
    assert_eq!(status, 200);
    for (auth, want) in [
        (None, 401),
        (Some("ak_ops:wrong"), 401),
        (Some("wrong"), 401),
    ] {
        let (status, body) = http(
            addr,
            "POST",
            "/v1/publish",
            auth,
            Some(json!({"channel": "news", "data": 1})),
        )
        .await;
        assert_eq!(status, want, "{auth:?}: {body}");
        let error: Value = serde_json::from_str(&body).expect("JSON error body");
        assert_eq!(error["code"], "unauthenticated");
    }
    let (status, body) = http(
        addr,
        "POST",
        "/v1/publish",
        Some("ak_ops:ops-secret"),
        Some(json!({"channel": "news/*", "data": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(r#""code":"invalid_channel""#), "{body}");
    let (status, body) = http(
        addr,
        "POST",
        "/v1/publish",
        Some("ak_ops:ops-secret"),
        Some(json!({"data": 1})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    // A key bound to a tenant cannot act on another.
    let (status, body) = http(
        addr,
        "POST",
        "/v1/publish",
        Some("ak_acme:acme-secret"),
        Some(json!({"channel": "news", "data": 1, "tenant": "default"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http(addr, "GET", "/v1/nothing", Some("ops-secret"), None).await;
    assert_eq!((status, body.contains("not_found")), (404, true));
}

#[tokio::test]
async fn minted_tokens_work_and_presence_and_disconnect_act_on_peers() {
    let (_server, addr) = start().await;
    let (status, body) = http(addr, "POST", "/v1/tokens", Some("ak_ops:ops-secret"),
        Some(json!({"sub": "alice", "channels": ["room-*"], "permissions": ["subscribe", "presence"], "ttl": 60}))).await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut alice = Ws::connect(addr, &format!("/v1?token={token}")).await;
    assert!(
        alice
            .expect_text("welcome")
            .await
            .contains(r#""peerId":"alice""#)
    );
    alice
        .send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert!(alice.expect_text("ack").await.contains("ack"));

    let (status, body) = http(
        addr,
        "GET",
        "/v1/presence?channel=room-1",
        Some("ak_ops:ops-secret"),
        None,
    )
    .await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            r#"{"channel":"room-1","peers":[{"metadata":{},"peerId":"alice"}]}"#
        )
    );

    let (status, body) = http(
        addr,
        "POST",
        "/v1/disconnect",
        Some("ak_ops:ops-secret"),
        Some(json!({"peerId": "alice"})),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, r#"{"disconnected":1}"#));
    assert_eq!(alice.expect_close("the operator's close").await.0, 4020);
    let (status, _) = http(
        addr,
        "POST",
        "/v1/disconnect",
        Some("ak_ops:ops-secret"),
        Some(json!({"peerId": "alice"})),
    )
    .await;
    assert_eq!(status, 404);

    let (status, body) = http(addr, "GET", "/v1/usage", Some("ak_ops:ops-secret"), None).await;
    assert_eq!(status, 200, "{body}");
    let usage: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(usage["tenant"], "default");
    let (status, body) = http(addr, "GET", "/healthz", None, None).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, body) = http(addr, "GET", "/v1/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["openapi"],
        "3.0.3"
    );
}

#[tokio::test]
async fn metrics_parse_with_a_prometheus_parser_and_count_what_happened() {
    let (_server, addr) = start().await;
    let (_a, _) = json_peer(addr, "c").await;
    let (mut b, _) = json_peer(addr, "c").await;
    let mut bad = Ws::connect(addr, "/v1?token=not-a-jwt").await;
    assert_eq!(bad.expect_close("4001").await.0, 4001);
    b.send(r#"{"type":"publish","channel":"c","data":1}"#).await;
    b.send("garbage").await;
    assert!(
        b.expect_text("invalid_message")
            .await
            .contains("invalid_message")
    );
    let (status, text) = http(addr, "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text");
    let value = |name: &str, label: Option<(&str, &str)>| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no sample {name} {label:?} in\n{text}"))
    };
    assert_eq!(
        value("switchyard_connections", Some(("transport", "ws"))),
        2.0
    );
    assert_eq!(
        value(
            "switchyard_connections_by_dialect",
            Some(("dialect", "json"))
        ),
        2.0
    );
    assert_eq!(value("switchyard_channels", None), 1.0);
    assert!(value("switchyard_messages_total", None) >= 1.0);
    assert!(value("switchyard_deliveries_total", None) >= 1.0);
    assert_eq!(
        value(
            "switchyard_auth_failures_total",
            Some(("reason", "malformed"))
        ),
        1.0
    );
    assert_eq!(
        value("switchyard_server_closes_total", Some(("code", "4001"))),
        1.0
    );
    assert_eq!(
        value("switchyard_errors_total", Some(("code", "invalid_message"))),
        1.0
    );
}

#[tokio::test]
async fn graceful_shutdown_delivers_every_acked_publish_then_says_going_away() {
    let (mut server, addr) = start().await;
    let (mut receiver, _) = json_peer(addr, "load").await;
    let (mut publisher, _) = json_peer(addr, "load").await;
    receiver.expect_text("publisher's presence").await;
    let mut rtc = Ws::connect(addr, "/").await;
    rtc.send(&common::announce("rtc", "load")).await;
    // Publish a burst and wait for every ack: these must all be delivered.
    const N: usize = 40;
    for i in 0..N {
        publisher.send(&json!({"type": "publish", "channel": "load", "data": i, "requestId": i.to_string()}).to_string()).await;
    }
    let mut acked = 0;
    while acked < N {
        if publisher
            .expect_text("acks")
            .await
            .contains(r#""type":"ack""#)
        {
            acked += 1;
        }
    }
    let told = server
        .shutdown(Duration::from_millis(1500), Duration::from_secs(5))
        .await;
    assert_eq!(told, 3);
    let mut received = Vec::new();
    let going_away = loop {
        match receiver.next("messages, going_away, close").await {
            Message::Text(t) if t.contains(r#""type":"message""#) => {
                let m: Value = serde_json::from_str(&t).unwrap();
                received.push(m["data"].as_u64().unwrap() as usize);
            }
            Message::Text(t) if t.contains("going_away") => break t,
            Message::Text(t) if t.contains(r#""type":"presence""#) => {}
            other => panic!("unexpected before going_away: {other:?}"),
        }
    };
    assert_eq!(
        received,
        (0..N).collect::<Vec<_>>(),
        "acked publishes lost or reordered"
    );
    assert_eq!(going_away, r#"{"type":"going_away","retryAfterMs":1500}"#);
    assert_eq!(receiver.expect_close("1001").await.0, 1001);
    let (code, _) = rtc.expect_close("the rtc-signaller peer's 1001").await;
    assert_eq!(code, 1001);
    // The listener is gone.
    assert!(
        TcpStream::connect(addr).await.is_err() || {
            let (status, _) = http(addr, "GET", "/healthz", None, None).await;
            status == 0
        }
    );
}

#[tokio::test]
async fn reload_swaps_keys_while_clients_are_connected() {
    let (server, addr) = start().await;
    let mint = |secret: &str, kid: &str, sub: &str| {
        let key = switchyard_core::token::SigningKey {
            kid: kid.into(),
            secret: secret.as_bytes().to_vec(),
            ..switchyard_core::testing::test_key()
        };
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 600;
        switchyard_core::token::mint(
            &key,
            &json!({"sub": sub, "exp": exp, "channels": ["**"], "permissions": ["subscribe"]}),
        )
        .unwrap()
    };
    let old_token = mint("rest-test-secret-0123456789abcdef", "k1", "old");
    let mut old = Ws::connect(addr, &format!("/v1?token={old_token}")).await;
    assert!(
        old.expect_text("welcome")
            .await
            .contains(r#""peerId":"old""#)
    );

    // Rotate: k2 replaces k1, and the ops API key changes.
    let next = CONFIG
        .replace(r#"kid = "k1""#, r#"kid = "k2""#)
        .replace(
            "rest-test-secret-0123456789abcdef",
            "rotated-secret-0123456789abcdefgh",
        )
        .replace(r#"secret = "ops-secret""#, r#"secret = "ops-secret-2""#);
    let settings = Settings::from_toml(&next, std::iter::empty()).expect("next config");
    assert_eq!(server.reload(&settings).await.expect("reload"), 1);
    let (code, reason) = old.expect_close("the revoked token's close").await;
    assert_eq!(
        (code, reason.as_str()),
        (4001, "credentials revoked by reconfiguration")
    );

    let new_token = mint("rotated-secret-0123456789abcdefgh", "k2", "new");
    let mut new = Ws::connect(addr, &format!("/v1?token={new_token}")).await;
    assert!(
        new.expect_text("welcome")
            .await
            .contains(r#""peerId":"new""#)
    );
    let mut stale = Ws::connect(addr, &format!("/v1?token={old_token}")).await;
    assert_eq!(stale.expect_close("the old key's token").await.0, 4001);

    let (status, _) = http(addr, "GET", "/v1/usage", Some("ak_ops:ops-secret"), None).await;
    assert_eq!(status, 401);
    let (status, _) = http(addr, "GET", "/v1/usage", Some("ak_ops:ops-secret-2"), None).await;
    assert_eq!(status, 200);

    // An invalid config is refused and changes nothing.
    let broken = Settings::from_toml(
        &next,
        [("SWITCHYARD_LIMITS_MESSAGE_RATE".to_owned(), "0".to_owned())],
    );
    assert!(broken.is_err());
    new.send(r#"{"type":"subscribe","channel":"x","requestId":"s"}"#)
        .await;
    assert!(new.expect_text("still served").await.contains("ack"));
}

#[tokio::test]
async fn a_reload_does_not_hand_out_a_peer_id_again() {
    let (server, addr) = start().await;
    let (_before, first) = json_peer(addr, "lobby").await;
    // A reconfiguration that seeded the id stream again would repeat `first` here.
    let settings = Settings::from_toml(CONFIG, std::iter::empty()).expect("test config");
    assert_eq!(server.reload(&settings).await.expect("reload"), 0);
    let (_after, second) = json_peer(addr, "lobby").await;
    assert_ne!(first, second, "a reload restarted the peer id stream");
}

#[test]
fn a_reload_names_what_only_a_restart_applies() {
    let with = |env: &[(&str, &str)]| {
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        Settings::from_toml(CONFIG, env).expect("test config")
    };
    let started = with(&[]);
    // Credentials, limits and the shutdown timings are a reload's to change.
    let reloadable = with(&[
        ("SWITCHYARD_AUTH_ANONYMOUS", "false"),
        ("SWITCHYARD_AUTH_AUTH_TIMEOUT_MS", "300"),
        ("SWITCHYARD_LIMITS_MESSAGE_RATE", "5"),
        ("SWITCHYARD_LIMITS_MAX_FRAME_BYTES", "1024"),
        ("SWITCHYARD_SHUTDOWN_RETRY_AFTER_MS", "1"),
        (
            "SWITCHYARD_HISTORY",
            r#"[{channels = "news", size = 1, ttl_ms = 1}]"#,
        ),
    ]);
    let none = started.restart_only_changes(&reloadable);
    assert!(none.is_empty(), "{none:?}");
    let restart = with(&[
        ("SWITCHYARD_LISTEN_TCP", "127.0.0.1:0"),
        (
            "SWITCHYARD_WS_ALLOWED_ORIGINS",
            r#"["https://app.example.com"]"#,
        ),
        ("SWITCHYARD_QUIC_IDLE_TIMEOUT_MS", "1000"),
        ("SWITCHYARD_DRIVER_MAX_CONNECTIONS", "5"),
        ("SWITCHYARD_AUTH_ACCESS_TOKEN_FILE", "/nowhere/tokens.json"),
        ("SWITCHYARD_LIMITS_MAX_FRAME_BYTES", "1048576"),
    ]);
    assert_eq!(
        started.restart_only_changes(&restart),
        [
            "[listen]",
            "[ws]",
            "[quic] idle_timeout_ms, handshake_timeout_ms or dev_cert_file",
            "[driver]",
            "[auth] access_token_file",
            "[limits] max_frame_bytes above its value at start",
        ]
    );
}

#[tokio::test]
async fn a_reload_lowers_max_frame_bytes_but_cannot_raise_it_past_what_the_listeners_read() {
    let (server, addr) = start().await;
    let started = Settings::from_toml(CONFIG, std::iter::empty())
        .expect("test config")
        .limits
        .max_frame_bytes;
    let advertised = |welcome: String| {
        let welcome: Value = serde_json::from_str(&welcome).expect("welcome is JSON");
        welcome["maxMessageSize"].as_u64().expect("maxMessageSize")
    };
    for (asked, applied) in [(started * 4, started), (1024, 1024)] {
        let env = [(
            "SWITCHYARD_LIMITS_MAX_FRAME_BYTES".to_owned(),
            asked.to_string(),
        )];
        let settings = Settings::from_toml(CONFIG, env).expect("next config");
        assert_eq!(server.reload(&settings).await.expect("reload"), 0);
        let mut ws = Ws::connect(addr, "/v1").await;
        assert_eq!(
            advertised(ws.expect_text("welcome").await),
            applied as u64,
            "max_frame_bytes {asked} after a start with {started}"
        );
    }
}

const OPS: Option<&str> = Some("ak_ops:ops-secret");

async fn rest_publish(addr: SocketAddr, body: &str) {
    let (status, answer) = common::http(addr, "POST", "/v1/publish", OPS, body).await;
    assert_eq!(status, 200, "publish {body}: {answer}");
}

async fn history_page(addr: SocketAddr, query: &str, auth: Option<&str>) -> (u16, Value) {
    let (status, body) = http(addr, "GET", &format!("/v1/history?{query}"), auth, None).await;
    let body = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{query}: {e}: {body}"));
    (status, body)
}

#[tokio::test]
async fn history_pages_a_channel_with_data_as_published_and_next_until_the_end() {
    let (_server, addr) = start().await;
    // Numbers a parse-and-print would change: the page must carry the publisher's bytes.
    let exact = r#"{"n":1,"exact":1.0000000000000001,"big":1E400}"#;
    rest_publish(addr, &format!(r#"{{"channel":"chat/a","data":{exact}}}"#)).await;
    for n in 2..=4 {
        rest_publish(
            addr,
            &format!(r#"{{"channel":"chat/a","data":{{"n":{n}}},"event":"e{n}"}}"#),
        )
        .await;
    }
    // size = 3: offsets 2 to 4 are kept, 1 is gone.
    let (status, body) = http(addr, "GET", "/v1/history?channel=chat/a&limit=2", OPS, None).await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page["channel"], "chat/a");
    assert_eq!(page["offset"], 4);
    assert_eq!(page["next"], 3, "{page}");
    let epoch = page["epoch"].as_str().expect("an epoch").to_owned();
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(
        messages
            .iter()
            .map(|m| m["offset"].clone())
            .collect::<Vec<_>>(),
        [2, 3]
    );
    let m = &messages[0];
    assert_eq!(
        (m["from"].as_str(), m["event"].as_str()),
        (Some("_server"), Some("e2"))
    );
    assert_eq!(m["data"], json!({"n": 2}));
    assert!(m["id"].as_str().unwrap().starts_with("msg-"), "{m}");
    assert!(m["timestamp"].as_str().unwrap().ends_with('Z'), "{m}");
    assert!(m["unixMs"].as_u64().unwrap() > 1_700_000_000_000, "{m}");

    let (status, page) = history_page(addr, "channel=chat/a&since=3", OPS).await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["offset"], 4);
    assert_eq!(page["next"], Value::Null, "the end of the stream: {page}");
    assert_eq!(page["epoch"], epoch.as_str());

    // A fresh channel: its data spliced raw, byte for byte.
    rest_publish(addr, &format!(r#"{{"channel":"chat/raw","data":{exact}}}"#)).await;
    let (status, body) = http(addr, "GET", "/v1/history?channel=chat/raw", OPS, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(r#""from":"_server","data":{exact},"timestamp""#)),
        "{body}"
    );
    assert!(!body.contains(r#""event""#), "no event, no field: {body}");

    // A channel nobody published to yet still has a stream: offset 0, nothing to read.
    let (status, page) = history_page(addr, "channel=chat/quiet", OPS).await;
    assert_eq!(status, 200);
    assert_eq!(
        (page["offset"].clone(), page["next"].clone()),
        (json!(0), Value::Null)
    );
    assert_eq!(page["messages"], json!([]));
}

#[tokio::test]
async fn history_refuses_without_a_key_another_tenant_a_channel_without_history_and_bad_params() {
    let (_server, addr) = start().await;
    rest_publish(addr, r#"{"channel":"chat/a","data":1}"#).await;
    let (status, body) = http(addr, "GET", "/v1/history?channel=chat/a", None, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = http(
        addr,
        "GET",
        "/v1/history?channel=chat/a",
        Some("ak_ops:wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // A tenant-bound key reads its own tenant, and only it.
    let acme = Some("ak_acme:acme-secret");
    let (status, page) = history_page(addr, "channel=chat/a&tenant=default", acme).await;
    assert_eq!(
        (status, page["code"].as_str()),
        (403, Some("tenant_not_allowed"))
    );
    let (status, page) = history_page(addr, "channel=chat/a", acme).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(
        page["messages"],
        json!([]),
        "acme's chat/a is not default's"
    );
    let (status, page) = history_page(addr, "channel=chat/a&tenant=default", OPS).await;
    assert_eq!((status, page["offset"].clone()), (200, json!(1)));

    let (status, page) = history_page(addr, "channel=news", OPS).await;
    assert_eq!(
        (status, page["code"].as_str()),
        (404, Some("no_history")),
        "{page}"
    );
    for query in ["channel=chat/*", "channel=chat//a"] {
        let (status, page) = history_page(addr, query, OPS).await;
        assert_eq!(
            (status, page["code"].as_str()),
            (400, Some("invalid_channel")),
            "{query}: {page}"
        );
    }
    for query in [
        "channel=chat/a&limit=0",
        "channel=chat/a&limit=1001",
        "channel=chat/a&since=-1",
        "channel=chat/a&since=abc",
        "since=1",
        "channel=chat/a&color=blue",
    ] {
        let (status, page) = history_page(addr, query, OPS).await;
        assert_eq!(
            (status, page["code"].as_str()),
            (400, Some("invalid_request")),
            "{query}: {page}"
        );
    }
}

/// Every route the router serves is in `docs/openapi.json` with its methods, and the
/// file describes no route the router lacks (`/v1/openapi.json` is the file itself).
#[test]
fn openapi_describes_every_route_and_method() {
    let source = include_str!("../src/rest/mod.rs");
    let router = source
        .split_once("fn router(")
        .and_then(|(_, rest)| rest.split_once(".fallback("))
        .expect("src/rest/mod.rs has fn router(…) ending in .fallback(")
        .0;
    let mut served = std::collections::BTreeSet::new();
    for route in router.split(".route(").skip(1) {
        let path = route.split('"').nth(1).expect("a route's path");
        if path == "/v1/openapi.json" {
            continue;
        }
        for method in ["get", "post", "delete", "put", "patch"] {
            let called =
                route.contains(&format!(" {method}(")) || route.contains(&format!(".{method}("));
            if called {
                served.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let openapi: Value = serde_json::from_str(include_str!("../docs/openapi.json")).unwrap();
    let described: std::collections::BTreeSet<String> = openapi["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|k| ["get", "post", "delete", "put", "patch"].contains(&k.as_str()))
                .map(move |m| format!("{} {path}", m.to_uppercase()))
        })
        .collect();
    assert_eq!(
        served, described,
        "the router (left) and docs/openapi.json (right) differ"
    );
}
