//! The gRPC listener (`proto/switchyard.proto`) on a real server: a tonic client and
//! Python's `grpcio` (a client no one here wrote, with stubs generated from the
//! committed proto at test time) beside WebSocket JSON peers in one channel; tokens in
//! metadata, refusals as statuses carrying the close code, the frame-size limit,
//! unary `Publish` with an API key, and a dropped stream's leave.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{WAIT, Ws};
use futures_util::SinkExt;
use serde_json::Value;
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use switchyard::transports::grpc::pb::switchyard_client::SwitchyardClient;
use switchyard::transports::grpc::pb::{self, client_frame, server_frame};
use switchyard_core::testing::token_with;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tonic::transport::Channel;
use tonic::{Code, Status, Streaming};

/// Frames over this many bytes close the connection with 1009.
const MAX_FRAME: usize = 4096;

const CONFIG: &str = r#"
[listen]
ws = "127.0.0.1:0"
grpc = "127.0.0.1:0"
[limits]
max_frame_bytes = 4096
[[auth.keys]]
kid = "k1"
secret = "switchyard-test-secret-0123456789"
[[api.keys]]
id = "ak_ops"
secret = "ops-secret"
"#;

async fn start() -> Running {
    let settings = Settings::from_toml(CONFIG, std::iter::empty()).expect("test config");
    server::start(&settings).await.expect("server starts")
}

/// A token for `sub` in `room-*`, valid for an hour of real time.
fn live_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    token_with(serde_json::json!({
        "sub": sub,
        "channels": ["room-*"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": now + 3600,
    }))
}

async fn channel(server: &Running) -> Channel {
    let addr = server.grpc_addr.expect("a gRPC listener");
    tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("gRPC connect")
}

/// One `Connect` stream from a tonic client.
struct GrpcPeer {
    send: mpsc::Sender<pb::ClientFrame>,
    frames: Streaming<pb::ServerFrame>,
}

impl GrpcPeer {
    /// Opens `Connect` with `authorization: Bearer <token>`; the status when the
    /// server refuses at once.
    async fn connect(server: &Running, token: &str) -> Result<Self, Status> {
        let (send, rx) = mpsc::channel(16);
        let outbound = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let mut request = tonic::Request::new(outbound);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
        let mut client = SwitchyardClient::new(channel(server).await);
        let frames = client.connect(request).await?.into_inner();
        Ok(Self { send, frames })
    }

    async fn send(&self, kind: client_frame::Kind) {
        let frame = pb::ClientFrame { kind: Some(kind) };
        self.send.send(frame).await.expect("request stream open");
    }

    async fn subscribe(&self, channel: &str, request_id: &str) {
        self.send(client_frame::Kind::Subscribe(pb::Subscribe {
            channel: channel.into(),
            request_id: request_id.into(),
            ..Default::default()
        }))
        .await;
    }

    async fn publish(&self, channel: &str, payload: &[u8], request_id: &str) {
        self.send(client_frame::Kind::Publish(pb::Publish {
            channel: channel.into(),
            payload: bytes::Bytes::copy_from_slice(payload),
            request_id: request_id.into(),
            ..Default::default()
        }))
        .await;
    }

    /// The next frame, within [`WAIT`].
    async fn next(&mut self, what: &str) -> Result<server_frame::Kind, Status> {
        let next = tokio::time::timeout(WAIT, self.frames.message())
            .await
            .unwrap_or_else(|_| panic!("nothing within {WAIT:?} waiting for {what}"));
        match next {
            Ok(Some(frame)) => Ok(frame.kind.expect("a frame with a kind")),
            Ok(None) => panic!("stream ended with OK waiting for {what}"),
            Err(status) => Err(status),
        }
    }

    /// The next frame that is not presence.
    async fn next_not_presence(&mut self, what: &str) -> server_frame::Kind {
        loop {
            match self.next(what).await {
                Ok(server_frame::Kind::Presence(_)) => continue,
                Ok(kind) => return kind,
                Err(status) => panic!("{what}: stream ended with {status:?}"),
            }
        }
    }

    /// The status the stream ends with, skipping frames.
    async fn end_status(&mut self, what: &str) -> Status {
        loop {
            if let Err(status) = self.next(what).await {
                return status;
            }
        }
    }
}

/// Asserts `status` is `code` and carries the close code in its message and trailer.
fn assert_closed(status: &Status, code: Code, close: u16) {
    assert_eq!(status.code(), code, "{status:?}");
    assert!(
        status.message().starts_with(&close.to_string()),
        "the message names {close}: {status:?}"
    );
    let trailer = status.metadata().get("switchyard-close-code");
    assert_eq!(
        trailer.and_then(|v| v.to_str().ok()),
        Some(close.to_string().as_str()),
        "{status:?}"
    );
}

/// A JSON-dialect WebSocket peer with `token` in the query.
async fn ws_peer(server: &Running, token: &str) -> Ws {
    let addr = server.ws_addr.expect("a WebSocket listener");
    let mut ws = Ws::connect(addr, &format!("/v1?token={token}")).await;
    let welcome = ws_json(&mut ws, "welcome").await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    ws
}

async fn ws_json(ws: &mut Ws, what: &str) -> Value {
    serde_json::from_str(&ws.expect_text(what).await).expect("a JSON frame")
}

/// The next frame of `kind` (skipping others).
async fn ws_expect(ws: &mut Ws, kind: &str, what: &str) -> Value {
    loop {
        let frame = ws_json(ws, what).await;
        if frame["type"] == kind {
            return frame;
        }
    }
}

async fn ws_send(ws: &mut Ws, frame: Value) {
    ws.inner
        .send(Message::text(frame.to_string()))
        .await
        .expect("ws send");
}

#[tokio::test]
async fn a_grpc_peer_and_a_websocket_peer_talk_in_one_channel() {
    let server = start().await;
    let mut grpc = GrpcPeer::connect(&server, &live_token("grpc-alice"))
        .await
        .expect("connect");
    let Ok(server_frame::Kind::Welcome(welcome)) = grpc.next("welcome").await else {
        panic!("the first frame is the welcome");
    };
    assert_eq!(welcome.peer_id, "grpc-alice");
    assert_eq!(welcome.max_message_size, MAX_FRAME as u64);
    grpc.subscribe("room-1", "s1").await;
    let server_frame::Kind::Ack(ack) = grpc.next_not_presence("subscribe ack").await else {
        panic!("an ack");
    };
    assert_eq!(ack.request_id, "s1");

    let mut ws = ws_peer(&server, &live_token("ws-bob")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-1","requestId":"w1"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "ws subscribe ack").await;

    // WebSocket → gRPC: the JSON value arrives as its text.
    ws_send(
        &mut ws,
        serde_json::json!({"type":"publish","channel":"room-1","data":{"hi":1}}),
    )
    .await;
    let server_frame::Kind::Message(m) = grpc.next_not_presence("ws message").await else {
        panic!("a message");
    };
    assert_eq!((&m.channel[..], &m.from[..]), ("room-1", "ws-bob"));
    assert_eq!(&m.payload[..], br#"{"hi":1}"#);

    // gRPC → WebSocket.
    grpc.publish("room-1", br#"["from","grpc"]"#, "p1").await;
    let server_frame::Kind::Ack(ack) = grpc.next_not_presence("publish ack").await else {
        panic!("an ack");
    };
    assert_eq!(ack.request_id, "p1");
    let message = ws_expect(&mut ws, "message", "grpc message").await;
    assert_eq!(message["from"], "grpc-alice");
    assert_eq!(message["data"], serde_json::json!(["from", "grpc"]));

    // A refusal is an error frame; the connection goes on.
    grpc.subscribe("elsewhere", "s2").await;
    let server_frame::Kind::Error(error) = grpc.next_not_presence("refusal").await else {
        panic!("an error frame");
    };
    assert_eq!(error.request_id, "s2");
    assert_eq!(error.code, "channel_not_authorized");
}

#[tokio::test]
async fn a_bad_token_ends_the_stream_unauthenticated_with_4001() {
    let server = start().await;
    let status = match GrpcPeer::connect(&server, "not-a-token").await {
        Err(status) => status,
        Ok(mut peer) => peer.end_status("the refusal").await,
    };
    assert_closed(&status, Code::Unauthenticated, 4001);
}

#[tokio::test]
async fn an_oversize_payload_closes_the_stream_out_of_range_with_1009() {
    let server = start().await;
    let mut grpc = GrpcPeer::connect(&server, &live_token("big"))
        .await
        .expect("connect");
    grpc.next("welcome").await.expect("welcome");
    let payload = format!("\"{}\"", "x".repeat(MAX_FRAME));
    grpc.publish("room-1", payload.as_bytes(), "big").await;
    let status = grpc.end_status("the 1009 close").await;
    assert_closed(&status, Code::OutOfRange, 1009);

    // Far over tonic's own decoding limit: the same close.
    let mut grpc = GrpcPeer::connect(&server, &live_token("huge"))
        .await
        .expect("connect");
    grpc.next("welcome").await.expect("welcome");
    let payload = format!("\"{}\"", "x".repeat(MAX_FRAME * 4));
    grpc.publish("room-1", payload.as_bytes(), "huge").await;
    let status = grpc.end_status("the 1009 close").await;
    assert_closed(&status, Code::OutOfRange, 1009);
}

#[tokio::test]
async fn unary_publish_needs_an_api_key_and_reaches_every_wire() {
    let server = start().await;
    let mut ws = ws_peer(&server, &live_token("ws-listener")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-2","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "subscribe ack").await;
    let mut client = SwitchyardClient::new(channel(&server).await);
    let publish = |auth: Option<&str>| {
        let mut request = tonic::Request::new(pb::PublishRequest {
            tenant: String::new(),
            channel: "room-2".into(),
            payload: bytes::Bytes::from_static(br#"{"n":7}"#),
        });
        if let Some(auth) = auth {
            request.metadata_mut().insert(
                "authorization",
                format!("Bearer {auth}").parse().expect("ascii"),
            );
        }
        request
    };

    let refused = client.publish(publish(None)).await.expect_err("no API key");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().starts_with("unauthenticated"),
        "{refused:?}"
    );
    let refused = client
        .publish(publish(Some("ak_ops:wrong")))
        .await
        .expect_err("a wrong secret");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");

    let reply = client
        .publish(publish(Some("ak_ops:ops-secret")))
        .await
        .expect("published")
        .into_inner();
    assert_eq!(reply.deliveries, 1);
    assert!(!reply.id.is_empty());
    let message = ws_expect(&mut ws, "message", "the server's message").await;
    assert_eq!(message["from"], "_server");
    assert_eq!(message["data"], serde_json::json!({"n": 7}));
}

#[tokio::test]
async fn a_dropped_stream_gives_the_room_its_leave() {
    let server = start().await;
    let mut ws = ws_peer(&server, &live_token("ws-watcher")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-3","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "subscribe ack").await;

    let mut grpc = GrpcPeer::connect(&server, &live_token("grpc-leaver"))
        .await
        .expect("connect");
    grpc.next("welcome").await.expect("welcome");
    grpc.subscribe("room-3", "s").await;
    let joined = presence_delta(&mut ws, "the gRPC peer's join").await;
    assert_eq!(joined["joined"][0]["peerId"], "grpc-leaver", "{joined}");

    drop(grpc); // the client goes away without a word
    let left = presence_delta(&mut ws, "the gRPC peer's leave").await;
    assert_eq!(left["left"][0]["peerId"], "grpc-leaver", "{left}");
}

/// The next presence delta (skipping snapshots and other frames).
async fn presence_delta(ws: &mut Ws, what: &str) -> Value {
    loop {
        let frame = ws_expect(ws, "presence", what).await;
        if frame["snapshot"] != true {
            return frame;
        }
    }
}

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyclients/bin/python")
}

/// Python's grpcio, generating its stubs from `proto/switchyard.proto` into a temp dir
/// with `grpc_tools.protoc`: two streams in one channel, a bad token and unary
/// Publish; a WebSocket peer in the same channel sees the Python peer's message.
#[tokio::test]
async fn python_grpcio_speaks_to_the_service_from_the_committed_proto() {
    let python = venv_python();
    let probe = Command::new(&python)
        .args(["-c", "import grpc, grpc_tools"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import grpc and grpc_tools ({probe:?}): run scripts/test, which installs \
         tests/clients/requirements.txt into target/pyclients",
        python.display()
    );
    let server = start().await;
    let mut ws = ws_peer(&server, &live_token("ws-py-watcher")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-py","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "subscribe ack").await;

    let out = std::env::temp_dir().join(format!("switchyard-grpc-py-{}", std::process::id()));
    std::fs::create_dir_all(&out).expect("temp dir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let args = vec![
        root.join("tests/clients/grpc_client.py")
            .display()
            .to_string(),
        root.join("proto").display().to_string(),
        out.display().to_string(),
        server.grpc_addr.expect("gRPC").to_string(),
        live_token("py-sub"),
        live_token("py-pub"),
        "ak_ops:ops-secret".into(),
    ];
    let run = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args(args)
            .output()
            .expect("python runs")
    });
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("the Python client finishes within a minute")
        .expect("join");
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        output.status.success(),
        "the Python client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let message = ws_expect(&mut ws, "message", "the Python peer's publish").await;
    assert_eq!(message["from"], "py-pub");
    assert_eq!(message["data"], serde_json::json!({"py": true}));
}
