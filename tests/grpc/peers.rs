//! gRPC peers beside the other wires: WebSocket, QUIC and TCP lines in one channel,
//! unary `Publish`, and the leave of a stream that vanished.

use serde_json::Value;
use switchyard::server::Running;
use switchyard::transports::quic::quinn::rustls::pki_types::CertificateDer;
use switchyard::transports::quic::{self, quinn};
use switchyard_core::Dialect;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, Lines};
use tonic::Code;

use super::*;

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

/// A JSON-dialect peer on a line wire (TCP lines or a QUIC stream), authenticating
/// in-band.
struct JsonLines {
    write: Box<dyn AsyncWrite + Unpin + Send>,
    read: Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>,
    /// The QUIC endpoint and connection, which must outlive the stream.
    _quic: Option<(quinn::Endpoint, quinn::Connection)>,
}

impl JsonLines {
    async fn tcp(server: &Running, token: &str) -> Self {
        let addr = server.tcp_addr.expect("a TCP listener");
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("tcp connect");
        let (read, write) = stream.into_split();
        Self::authenticate(Box::new(read), Box::new(write), None, token).await
    }

    async fn quic(server: &Running, token: &str) -> Self {
        let addr = server.quic_addr.expect("a QUIC listener");
        let certificate = server
            .quic_certificate
            .clone()
            .expect("the QUIC certificate");
        let roots = [CertificateDer::from(certificate)];
        let client = quic::client_config(&roots, Dialect::Json).expect("client config");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        endpoint.set_default_client_config(client);
        let connecting = endpoint.connect(addr, "localhost").expect("connect");
        let connection = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("QUIC handshake in time")
            .expect("QUIC handshake");
        let (send, recv) = connection.open_bi().await.expect("open stream");
        let quic = Some((endpoint, connection));
        Self::authenticate(Box::new(recv), Box::new(send), quic, token).await
    }

    async fn authenticate(
        read: Box<dyn AsyncRead + Unpin + Send>,
        write: Box<dyn AsyncWrite + Unpin + Send>,
        quic: Option<(quinn::Endpoint, quinn::Connection)>,
        token: &str,
    ) -> Self {
        let mut peer = Self {
            write,
            read: BufReader::new(read).lines(),
            _quic: quic,
        };
        peer.send(serde_json::json!({"type": "auth", "token": token}))
            .await;
        peer.expect("welcome", "the welcome").await;
        peer
    }

    async fn send(&mut self, frame: Value) {
        let line = format!("{frame}\n");
        self.write.write_all(line.as_bytes()).await.expect("write");
        self.write.flush().await.expect("flush");
    }

    /// The next frame of type `kind`, skipping others.
    async fn expect(&mut self, kind: &str, what: &str) -> Value {
        loop {
            let line = tokio::time::timeout(WAIT, self.read.next_line())
                .await
                .unwrap_or_else(|_| panic!("nothing within {WAIT:?} waiting for {what}"))
                .expect("read")
                .unwrap_or_else(|| panic!("the wire ended waiting for {what}"));
            let frame: Value = serde_json::from_str(&line).expect("a JSON line");
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next message from `from`, skipping every other frame.
    async fn message_from(&mut self, from: &str, what: &str) -> Value {
        loop {
            let message = self.expect("message", what).await;
            if message["from"] == from {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn grpc_quic_and_tcp_line_peers_share_one_channel() {
    let listen = "tcp = \"127.0.0.1:0\"\ntcp_dialect = \"json\"\nquic = \"127.0.0.1:0\"";
    let server = start_with(&config(listen, "", "")).await;
    let mut grpc = GrpcPeer::connect(&server, &live_token("g"))
        .await
        .expect("connect");
    assert_eq!(grpc.welcome().await, "g");
    grpc.subscribe("room-wires", "s").await;
    let server_frame::Kind::Ack(_) = grpc.next_not_presence("gRPC subscribe ack").await else {
        panic!("an ack");
    };
    let mut tcp = JsonLines::tcp(&server, &live_token("t")).await;
    let mut quic = JsonLines::quic(&server, &live_token("q")).await;
    for peer in [&mut tcp, &mut quic] {
        peer.send(serde_json::json!({"type":"subscribe","channel":"room-wires","requestId":"s"}))
            .await;
        peer.expect("ack", "subscribe ack").await;
    }

    grpc.publish("room-wires", br#"{"via":"grpc"}"#, "").await;
    for peer in [&mut tcp, &mut quic] {
        let m = peer.message_from("g", "the gRPC peer's publish").await;
        assert_eq!(m["data"], serde_json::json!({"via": "grpc"}), "{m}");
    }
    for (from, publisher) in [("t", &mut tcp), ("q", &mut quic)] {
        let frame =
            serde_json::json!({"type":"publish","channel":"room-wires","data":{"via":from}});
        publisher.send(frame).await;
        let m = grpc.message_from(from, "a line peer's publish").await;
        assert_eq!(m.channel, "room-wires");
        let data: Value = serde_json::from_slice(&m.payload).expect("JSON text");
        assert_eq!(data, serde_json::json!({"via": from}));
    }
    let m = quic.message_from("t", "the TCP peer's publish").await;
    assert_eq!(m["data"], serde_json::json!({"via": "t"}), "{m}");
    let m = tcp.message_from("q", "the QUIC peer's publish").await;
    assert_eq!(m["data"], serde_json::json!({"via": "q"}), "{m}");
}
