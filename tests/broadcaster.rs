//! The Broadcaster over real loopback sockets, against the real server: a client
//! written for The Broadcaster connects to `/broadcaster`, authenticates in band,
//! subscribes, and receives a REST publish and a JSON peer's publish; requests before
//! `auth` are `Unauthenticated`, and a socket that never authenticates is closed by
//! the auth timeout. The dialect is also reachable by subprotocol and by
//! `hello broadcaster` on TCP lines.

mod common;

use std::net::SocketAddr;

use common::{Line, Ws};
use serde_json::{Value, json};
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use switchyard_core::token::{Algorithm, SigningKey, mint};

const SECRET: &str = "broadcaster-test-secret-0123456789";

const CONFIG: &str = r#"
[listen]
ws = "127.0.0.1:0"
tcp = "127.0.0.1:0"
[auth]
anonymous = true
auth_timeout_ms = 250
[[auth.keys]]
kid = "k1"
secret = "broadcaster-test-secret-0123456789"
[[api.keys]]
id = "ak_server"
secret = "server-api-key"
"#;

async fn start() -> (Running, SocketAddr) {
    let settings = Settings::from_toml(CONFIG, std::iter::empty()).expect("test config");
    let running = server::start(&settings).await.expect("server starts");
    let addr = running.ws_addr.expect("ws listener");
    (running, addr)
}

/// A token as The Broadcaster's backend would mint it for a client.
fn client_token(sub: &str, channels: &[&str], scope: &[&str]) -> String {
    let key = SigningKey {
        kid: "k1".into(),
        secret: SECRET.as_bytes().to_vec(),
        algorithm: Algorithm::HS256,
        public_key: None,
        audience: None,
        tenant: None,
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    mint(
        &key,
        &json!({
            "sub": sub, "aud": "broadcaster", "authorizedChannels": channels,
            "scope": scope, "iat": now, "exp": now + 600,
        }),
    )
    .expect("mint")
}

/// The next text frame, parsed.
async fn next_json(ws: &mut Ws, what: &str) -> Value {
    let text = ws.expect_text(what).await;
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

/// An RFC 3339 UTC timestamp with milliseconds, as the dialect writes them.
fn assert_timestamp(v: &Value, what: &str) {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    let shape: String = s
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:dd.dddZ", "{what}: {s}");
}

/// One HTTP/1.1 POST; returns the status and the body as JSON (`null` if it is not).
async fn post(addr: SocketAddr, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
    let (status, body) = common::http(addr, "POST", path, auth, body).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_broadcaster_client_authenticates_subscribes_and_receives_rest_and_json_publishes() {
    let (_server, addr) = start().await;
    let mut bc = Ws::connect(addr, "/broadcaster").await;

    bc.send(r#"{"id":1,"method":"subscribe","params":{"channel":"news"}}"#)
        .await;
    assert_eq!(
        next_json(&mut bc, "the refusal before auth").await,
        json!({"requestId": 1, "error": {"code": "Unauthenticated", "message": "authenticate first"}})
    );

    let token = client_token("bob", &["news"], &["subscribe"]);
    bc.send(&json!({"id": 2, "method": "auth", "params": {"token": token}}).to_string())
        .await;
    assert_eq!(
        next_json(&mut bc, "the auth answer").await,
        json!({"requestId": 2, "result": {"success": true}})
    );

    bc.send(r#"{"id":"s","method":"subscribe","params":{"channel":"news"}}"#)
        .await;
    let subscribed = next_json(&mut bc, "the subscribe answer").await;
    assert_eq!(subscribed["requestId"], "s");
    assert!(
        subscribed["result"]["subscriptionId"]
            .as_str()
            .is_some_and(|id| id.starts_with("sub-")),
        "{subscribed}"
    );
    assert_timestamp(
        &subscribed["result"]["timestamp"],
        "the subscribe timestamp",
    );

    // A JSON peer (anonymous) in the same channel publishes.
    let mut js = Ws::connect(addr, "/v1").await;
    next_json(&mut js, "welcome").await;
    js.send(r#"{"type":"subscribe","channel":"news","requestId":"j"}"#)
        .await;
    assert_eq!(next_json(&mut js, "ack").await["type"], "ack");
    assert_eq!(next_json(&mut js, "presence").await["type"], "presence");
    js.send(r#"{"type":"publish","channel":"news","data":{"from":"json"},"requestId":"p"}"#)
        .await;
    let push = next_json(&mut bc, "the JSON peer's message").await;
    assert_eq!(push["method"], "message");
    let p = &push["params"];
    assert_eq!(
        (&p["seq"], &p["channel"], &p["event"], &p["payload"]),
        (
            &json!(1),
            &json!("news"),
            &json!("message"),
            &json!({"from": "json"})
        )
    );
    assert!(p["id"].as_str().is_some_and(|id| id.starts_with("msg-")));
    assert_timestamp(&p["createTime"], "the push's createTime");
    assert_eq!(next_json(&mut js, "the publish ack").await["type"], "ack");

    // The server publishes over REST, The Broadcaster's way.
    let (status, published) = post(
        addr,
        "/broadcaster/publish",
        Some("server-api-key"),
        r#"{"channel":"news","event":"alert","payload":{"level":3}}"#,
    )
    .await;
    assert_eq!(status, 200, "{published}");
    assert_timestamp(&published["createTime"], "the REST createTime");
    let push = next_json(&mut bc, "the REST publish").await;
    let p = &push["params"];
    assert_eq!(
        p["id"], published["id"],
        "one message id for answer and push"
    );
    assert_eq!(p["createTime"], published["createTime"]);
    assert_eq!(
        (&p["seq"], &p["event"], &p["payload"]),
        (&json!(2), &json!("alert"), &json!({"level": 3}))
    );
    assert_eq!(
        next_json(&mut js, "the REST publish, JSON side").await,
        json!({"type": "message", "channel": "news", "from": "_server", "data": {"level": 3}, "event": "alert"})
    );

    // Without the publish scope, the client's own publish is refused.
    bc.send(r#"{"id":9,"method":"publish","params":{"channel":"news","event":"e","payload":1}}"#)
        .await;
    assert_eq!(
        next_json(&mut bc, "the publish refusal").await["error"]["code"],
        "PermissionDenied"
    );
}

#[tokio::test]
async fn a_broadcaster_socket_that_never_authenticates_is_closed_after_the_auth_timeout() {
    let (_server, addr) = start().await;
    let mut bc = Ws::connect(addr, "/broadcaster").await;
    bc.send(r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(
        next_json(&mut bc, "the refusal").await["error"]["code"],
        "Unauthenticated"
    );
    // A refused token does not stop the clock either.
    bc.send(r#"{"id":2,"method":"auth","params":{"token":"nope"}}"#)
        .await;
    assert_eq!(
        next_json(&mut bc, "the token refusal").await,
        json!({"requestId": 2, "error": {"code": "Unauthenticated", "message": "token refused: malformed token"}})
    );
    let (code, reason) = bc.expect_close("the auth-timeout close").await;
    assert_eq!(
        (code, reason.as_str()),
        (4001, "no credentials within the auth timeout")
    );
}

#[tokio::test]
async fn bad_frames_get_typed_errors_and_the_connection_stays_up() {
    let (_server, addr) = start().await;
    let mut bc = Ws::connect(addr, "/broadcaster").await;
    for (frame, id) in [
        ("{", json!(null)),
        (r#"{"id":4,"method":"frobnicate"}"#, json!(4)),
        (
            r#"{"id":5,"method":"subscribe","params":{"channel":[]}}"#,
            json!(5),
        ),
    ] {
        bc.send(frame).await;
        let answer = next_json(&mut bc, frame).await;
        assert_eq!(answer["requestId"], id, "{frame}");
        assert_eq!(answer["error"]["code"], "InvalidArgument", "{frame}");
    }
    bc.send(r#"{"id":6,"method":"ping"}"#).await;
    assert_eq!(next_json(&mut bc, "still up").await["requestId"], 6);
}

#[tokio::test]
async fn the_rest_publish_answers_in_the_broadcasters_terms() {
    let (_server, addr) = start().await;
    let body = r#"{"channel":"news","event":"e","payload":{}}"#;
    let (status, answer) = post(addr, "/broadcaster/publish", None, body).await;
    assert_eq!((status, &answer["code"]), (401, &json!("Unauthenticated")));
    let (status, answer) = post(addr, "/broadcaster/publish", Some("wrong"), body).await;
    assert_eq!((status, &answer["code"]), (401, &json!("Unauthenticated")));
    for bad in [
        "not json",
        r#"{"event":"e"}"#,
        r#"{"channel":"a/*","payload":1}"#,
        r#"{"channel":"news","payload":1,"data":2}"#,
    ] {
        let (status, answer) =
            post(addr, "/broadcaster/publish", Some("server-api-key"), bad).await;
        assert_eq!(
            (status, &answer["code"]),
            (400, &json!("InvalidArgument")),
            "{bad}"
        );
    }
    // No subscriber: still an id and a time.
    let (status, answer) = post(addr, "/broadcaster/publish", Some("server-api-key"), body).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["createTime".to_owned(), "id".to_owned()])
    );
}

#[tokio::test]
async fn the_dialect_is_also_chosen_by_subprotocol_and_by_a_tcp_hello_line() {
    let (server, addr) = start().await;
    let (mut ws, response) = Ws::handshake(addr, "/", Some("broadcaster"))
        .await
        .expect("handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"broadcaster"[..])
    );
    ws.send(r#"{"id":1,"method":"ping"}"#).await;
    assert_eq!(
        next_json(&mut ws, "the subprotocol peer's refusal").await["error"]["code"],
        "Unauthenticated"
    );

    let mut line = Line::connect(server.tcp_addr.expect("tcp listener")).await;
    line.send("hello broadcaster").await;
    let token = client_token("tina", &["news"], &["subscribe", "publish"]);
    line.send(&json!({"id": 1, "method": "auth", "params": {"token": token}}).to_string())
        .await;
    assert_eq!(
        line.expect_line("the line auth answer").await,
        r#"{"requestId":1,"result":{"success":true}}"#
    );
    line.send(r#"{"id":2,"method":"ping"}"#).await;
    let pong: Value = serde_json::from_str(&line.expect_line("the pong").await).expect("JSON");
    assert_timestamp(&pong["result"]["timestamp"], "the pong's timestamp");
}
