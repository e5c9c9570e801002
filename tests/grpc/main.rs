//! The gRPC listener (`proto/switchyard.proto`) on a real server: a tonic client and
//! Python's `grpcio` (a client no one here wrote, with stubs generated from the
//! committed proto at test time) beside WebSocket, QUIC and TCP-line JSON peers in one
//! channel; tokens in metadata, refusals as statuses carrying the close code (a bad
//! token, the frame-size limit, a flood, a client that stops reading), unary
//! `Publish` with an API key, a dropped stream's leave, history recovery and token
//! refresh, and the listener under `[tls]`.
//!
//! One test binary (`cargo test --test grpc`): the tonic peer and the server's config
//! are here, the tests in a module per topic (`peers`, `closes`, `history`, `python`,
//! `tls`).

#[path = "../common/mod.rs"]
mod common;

mod closes;
mod history;
mod peers;
mod python;
mod tls;

use std::time::{SystemTime, UNIX_EPOCH};

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

/// WebSocket and gRPC listeners and `listen` lines; the frame limit and `limits`
/// lines; a signing key and an API key; then `extra` sections.
fn config(listen: &str, limits: &str, extra: &str) -> String {
    format!(
        r#"
[listen]
ws = "127.0.0.1:0"
grpc = "127.0.0.1:0"
{listen}
[limits]
max_frame_bytes = {MAX_FRAME}
{limits}
[[auth.keys]]
kid = "k1"
secret = "switchyard-test-secret-0123456789"
[[api.keys]]
id = "ak_ops"
secret = "ops-secret"
{extra}
"#
    )
}

async fn start() -> Running {
    start_with(&config("", "", "")).await
}

async fn start_with(toml: &str) -> Running {
    let settings = Settings::from_toml(toml, std::iter::empty()).expect("test config");
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
        Self::open(channel(server).await, token).await
    }

    /// Opens `Connect` on `channel` (one HTTP/2 connection, plain or TLS).
    async fn open(channel: Channel, token: &str) -> Result<Self, Status> {
        let (send, rx) = mpsc::channel(16);
        let outbound = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let mut request = tonic::Request::new(outbound);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
        let mut client = SwitchyardClient::new(channel);
        let frames = client.connect(request).await?.into_inner();
        Ok(Self { send, frames })
    }

    /// The welcome's peer id.
    async fn welcome(&mut self) -> String {
        match self.next("welcome").await {
            Ok(server_frame::Kind::Welcome(welcome)) => welcome.peer_id,
            other => panic!("the first frame is the welcome, not {other:?}"),
        }
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

    /// The next message from `from`, skipping every other frame.
    async fn message_from(&mut self, from: &str, what: &str) -> pb::Message {
        loop {
            match self.next(what).await {
                Ok(server_frame::Kind::Message(m)) if m.from == from => return m,
                Ok(_) => {}
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

/// The next presence delta (skipping snapshots and other frames).
async fn presence_delta(ws: &mut Ws, what: &str) -> Value {
    loop {
        let frame = ws_expect(ws, "presence", what).await;
        if frame["snapshot"] != true {
            return frame;
        }
    }
}
