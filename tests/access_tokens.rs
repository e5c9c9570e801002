//! fastpubsub parity end to end, against a real server on loopback: an operator issues
//! an `AT_<id>_<secret>` token over REST, a server-side client connects with
//! `Authorization: Bearer`, a browser-style client with `Sec-WebSocket-Protocol`, both
//! name tenants per request, and revoking the token closes them (4001). Tokens are
//! persisted hashed, atomically, and survive a restart.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use common::{WAIT, Ws};
use serde_json::{Value, json};
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir =
            std::env::temp_dir().join(format!("switchyard-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The secret of the token written in the config (`AT_cfg1_<this>`).
const CONFIG_SECRET: &str = "configSecret0123456789configSecret0123";

fn settings(file: &Path) -> Settings {
    let hash =
        switchyard_core::access::to_hex(&switchyard_core::access::hash_secret(CONFIG_SECRET));
    let config = format!(
        r#"
[listen]
ws = "127.0.0.1:0"
[auth]
anonymous = false
access_token_file = {file:?}
[[api.keys]]
id = "ak_ops"
secret = "ops-secret"
[[api.keys]]
id = "ak_acme"
secret = "acme-secret"
tenant = "acme"
[[auth.access_tokens]]
id = "cfg1"
secret_sha256 = "{hash}"
tenants = ["acme"]
subscribe = ["c"]
"#
    );
    Settings::from_toml(&config, std::iter::empty()).expect("test config")
}

async fn start(file: &Path) -> (Running, SocketAddr) {
    let running = server::start(&settings(file)).await.expect("server starts");
    let addr = running.ws_addr.expect("ws listener");
    (running, addr)
}

/// One HTTP/1.1 request with the given API key; returns the status and the body.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, String) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    common::http(addr, method, path, Some(key), &body).await
}

/// Issues a token; returns the full response.
async fn issue(addr: SocketAddr, key: &str, body: Value) -> (u16, Value) {
    let (status, text) = http(addr, "POST", "/v1/access-tokens", key, Some(body)).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("JSON body: {text}")),
    )
}

/// A server-side client: the token in `Authorization: Bearer`.
async fn bearer(addr: SocketAddr, token: &str) -> Ws {
    let mut request = format!("ws://{addr}/v1")
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (inner, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
        .await
        .expect("handshake timed out")
        .expect("handshake");
    Ws { inner }
}

async fn expect_frame(ws: &mut Ws, what: &str) -> Value {
    let text = ws.expect_text(what).await;
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{what}: not JSON: {text}"))
}

async fn expect_type(ws: &mut Ws, kind: &str, what: &str) -> Value {
    let frame = expect_frame(ws, what).await;
    assert_eq!(frame["type"], kind, "{what}: {frame}");
    frame
}

#[tokio::test]
async fn an_issued_token_works_by_header_and_subprotocol_with_tenants_and_revocation_closes_4001() {
    let dir = TempDir::new("at-flow");
    let file = dir.0.join("access-tokens.json");
    let (_server, addr) = start(&file).await;
    let (status, issued) = issue(
        addr,
        "ak_ops:ops-secret",
        json!({
            "tenants": ["acme", "globex"],
            "publishChannels": ["updates/*"],
            "subscribeChannels": ["updates/**"],
            "description": "fastpubsub parity test",
        }),
    )
    .await;
    assert_eq!(status, 201, "{issued}");
    let token = issued["token"]
        .as_str()
        .expect("the token, once")
        .to_owned();
    let id = issued["id"].as_str().unwrap().to_owned();
    assert!(token.starts_with(&format!("AT_{id}_")), "{token}");
    let secret = token.rsplit('_').next().unwrap().to_owned();

    // A server-side client (Bearer header) listens in globex, by wildcard.
    let mut listener = bearer(addr, &token).await;
    expect_type(&mut listener, "welcome", "the listener's welcome").await;
    listener
        .send(r#"{"type":"subscribe","tenant":"globex","channel":"updates/**","requestId":"s1"}"#)
        .await;
    expect_type(&mut listener, "ack", "the wildcard subscribe's ack").await;
    listener
        .send(r#"{"type":"subscribe","tenant":"initech","channel":"updates/a","requestId":"s2"}"#)
        .await;
    let refused = expect_type(&mut listener, "error", "a tenant the token lacks").await;
    assert_eq!(refused["code"], "tenant_not_authorized");

    // A browser-style client (token as the subprotocol) writes into globex.
    let (mut writer, response) = Ws::handshake(addr, "/v1", Some(&token))
        .await
        .expect("subprotocol handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(token.as_bytes()),
        "the offered entry is echoed"
    );
    expect_type(&mut writer, "welcome", "the writer's welcome").await;
    writer
        .send(r#"{"type":"publish","tenant":"globex","channel":"updates/eu","data":"hello","requestId":"p1"}"#)
        .await;
    expect_type(&mut writer, "ack", "the publish's ack").await;
    let message = expect_type(&mut listener, "message", "the message from globex").await;
    assert_eq!(
        message,
        json!({"type":"message","tenant":"globex","channel":"updates/eu","from":message["from"],"data":"hello"})
    );
    writer
        .send(r#"{"type":"publish","channel":"news","data":1,"requestId":"p2"}"#)
        .await;
    let refused = expect_type(&mut writer, "error", "a channel outside the publish grants").await;
    assert_eq!(refused["code"], "channel_not_authorized");

    // The list never shows the secret or its hash; neither does the file hold the secret.
    let (status, listed) = http(addr, "GET", "/v1/access-tokens", "ak_ops:ops-secret", None).await;
    assert_eq!(status, 200, "{listed}");
    let hash = {
        let stored = std::fs::read_to_string(&file).expect("the token file");
        assert!(!stored.contains(&secret), "the file holds the secret");
        let stored: Value = serde_json::from_str(&stored).expect("JSON file");
        stored["tokens"][0]["secretSha256"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert!(
        !listed.contains(&secret) && !listed.contains(&hash),
        "{listed}"
    );
    let listed: Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["tokens"][0]["id"], id.as_str());
    assert_eq!(listed["tokens"][0]["tenants"], json!(["acme", "globex"]));
    assert_eq!(listed["tokens"][1]["id"], "cfg1");
    assert_eq!(listed["tokens"][1]["source"], "config");
    assert!(listed["tokens"][0].get("token").is_none());
    let leftovers: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["access-tokens.json"],
        "no temp files left behind"
    );

    // A key bound to acme neither sees nor revokes it (it spans globex too).
    let (status, body) = http(
        addr,
        "DELETE",
        &format!("/v1/access-tokens/{id}"),
        "ak_acme:acme-secret",
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");

    // Revoking closes both live connections with 4001, and the token is refused after.
    let (status, body) = http(
        addr,
        "DELETE",
        &format!("/v1/access-tokens/{id}"),
        "ak_ops:ops-secret",
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["disconnected"],
        2
    );
    for ws in [&mut listener, &mut writer] {
        let (code, reason) = ws.expect_close("the revocation's close").await;
        assert_eq!((code, reason.as_str()), (4001, "access token revoked"));
    }
    let mut late = bearer(addr, &token).await;
    assert_eq!(
        late.expect_close("a revoked token at connect").await.0,
        4001
    );
    let (status, listed) = http(addr, "GET", "/v1/access-tokens", "ak_ops:ops-secret", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&listed).unwrap()["tokens"][0]["revoked"],
        true
    );
}

#[tokio::test]
async fn tokens_survive_a_restart_with_the_same_file_and_revocations_too() {
    let dir = TempDir::new("at-restart");
    let file = dir.0.join("tokens.json");
    let (server, addr) = start(&file).await;
    let (_, kept) = issue(
        addr,
        "ak_ops:ops-secret",
        json!({"channels": ["c"], "ttl": 3600}),
    )
    .await;
    let (_, dropped) = issue(addr, "ak_ops:ops-secret", json!({"channels": ["c"]})).await;
    let (status, _) = http(
        addr,
        "DELETE",
        &format!("/v1/access-tokens/{}", dropped["id"].as_str().unwrap()),
        "ak_ops:ops-secret",
        None,
    )
    .await;
    assert_eq!(status, 200);
    drop(server);

    let (_server, addr) = start(&file).await;
    let mut ws = bearer(addr, kept["token"].as_str().unwrap()).await;
    let welcome = expect_type(&mut ws, "welcome", "the kept token after a restart").await;
    assert_eq!(welcome["expiresAt"], kept["expiresAt"]);
    ws.send(r#"{"type":"subscribe","channel":"c","requestId":"s"}"#)
        .await;
    expect_type(&mut ws, "ack", "a subscribe after the restart").await;
    let mut gone = bearer(addr, dropped["token"].as_str().unwrap()).await;
    assert_eq!(
        gone.expect_close("the revoked token after a restart")
            .await
            .0,
        4001
    );
}

#[tokio::test]
async fn an_ip_restricted_token_is_refused_from_loopback_and_keys_stay_in_their_tenant() {
    let dir = TempDir::new("at-ip");
    let (_server, addr) = start(&dir.0.join("t.json")).await;
    let (status, lan) = issue(
        addr,
        "ak_ops:ops-secret",
        json!({"channels": ["c"], "allowedIps": ["10.0.0.0/8"]}),
    )
    .await;
    assert_eq!(status, 201, "{lan}");
    let mut ws = bearer(addr, lan["token"].as_str().unwrap()).await;
    assert_eq!(ws.expect_close("a 10/8 token from 127.0.0.1").await.0, 4001);

    for (body, want, code) in [
        (
            json!({"allowedIps": ["10.0.0.0/33"]}),
            400,
            "invalid_message",
        ),
        (json!({"publishChannels": ["a b"]}), 400, "invalid_message"),
        (json!({"permissions": ["fly"]}), 400, "invalid_message"),
        (json!({"nope": 1}), 400, "invalid_message"),
    ] {
        let (status, error) = issue(addr, "ak_ops:ops-secret", body.clone()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (want, Some(code)),
            "{body}"
        );
    }
    // The config's token works, is listed, and is revoked in the config, not here.
    let mut cfg = bearer(addr, &format!("AT_cfg1_{CONFIG_SECRET}")).await;
    expect_type(&mut cfg, "welcome", "the config token's welcome").await;
    let (status, body) = http(
        addr,
        "DELETE",
        "/v1/access-tokens/cfg1",
        "ak_ops:ops-secret",
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("configured_token"), "{body}");
    let (status, error) = issue(addr, "ak_acme:acme-secret", json!({"tenants": ["globex"]})).await;
    assert_eq!(
        (status, error["code"].as_str()),
        (403, Some("tenant_not_allowed"))
    );
    let (status, own) = issue(addr, "ak_acme:acme-secret", json!({"channels": ["c"]})).await;
    assert_eq!((status, &own["tenants"]), (201, &json!(["acme"])));
    let (_, listed) = http(
        addr,
        "GET",
        "/v1/access-tokens",
        "ak_acme:acme-secret",
        None,
    )
    .await;
    let listed: Value = serde_json::from_str(&listed).unwrap();
    let sources: Vec<_> = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tenants"].clone(),
                t["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        sources,
        [
            (json!(["acme"]), "rest".to_owned()),
            (json!(["acme"]), "config".to_owned())
        ],
        "only its own tenant's: {listed}"
    );
    let (status, _) = http(addr, "GET", "/v1/access-tokens", "wrong", None).await;
    assert_eq!(status, 401);
}
