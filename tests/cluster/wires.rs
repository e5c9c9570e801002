//! QUIC and TCP line clients on different nodes: the same hub traffic over other wires,
//! carried between nodes by the engine like any other.

use std::net::SocketAddr;

use serde_json::{Value, json};
use switchyard::core::Dialect;
use switchyard::transports::quic::{self, quinn};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::common::WAIT;
use crate::harness::{Node, Options, Redis};
use crate::{Json, nodes_with};

/// A JSON-dialect client over a line wire (one QUIC stream, or a TCP connection).
struct LineClient {
    read: Box<dyn AsyncBufRead + Unpin + Send>,
    write: Box<dyn AsyncWrite + Unpin + Send>,
    peer: String,
    /// Keeps a QUIC connection (and its endpoint) open.
    _quic: Option<(quinn::Endpoint, quinn::Connection)>,
}

impl LineClient {
    /// Over QUIC (ALPN picks the JSON dialect), trusting the node's dev certificate.
    async fn quic(node: &Node) -> Self {
        let (addr, der) = node.quic.clone().expect("a node with a QUIC listener");
        let roots = [quinn::rustls::pki_types::CertificateDer::from(der)];
        let config = quic::client_config(&roots, Dialect::Json).expect("client config");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("endpoint");
        endpoint.set_default_client_config(config);
        let connecting = endpoint.connect(addr, "localhost").expect("connect");
        let connection = tokio::time::timeout(WAIT, connecting)
            .await
            .unwrap_or_else(|_| panic!("QUIC handshake with node {} timed out", node.id))
            .unwrap_or_else(|e| panic!("QUIC handshake with node {}: {e}", node.id));
        let (mut send, recv) = connection.open_bi().await.expect("open a stream");
        // An empty line, so the server learns of the stream at once.
        send.write_all(b"\n").await.expect("first write");
        Self::welcomed(
            Box::new(BufReader::new(recv)),
            Box::new(send),
            Some((endpoint, connection)),
        )
        .await
    }

    /// Over TCP lines (`hello json` to the `auto` listener).
    async fn tcp(node: &Node) -> Self {
        let addr: SocketAddr = node.tcp.expect("a node with a TCP listener");
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .expect("tcp connect");
        let (read, write) = stream.into_split();
        let mut client = Self {
            read: Box::new(BufReader::new(read)),
            write: Box::new(write),
            peer: String::new(),
            _quic: None,
        };
        client.send_line("hello json").await;
        client.welcome().await;
        client
    }

    async fn welcomed(
        read: Box<dyn AsyncBufRead + Unpin + Send>,
        write: Box<dyn AsyncWrite + Unpin + Send>,
        quic: Option<(quinn::Endpoint, quinn::Connection)>,
    ) -> Self {
        let mut client = Self {
            read,
            write,
            peer: String::new(),
            _quic: quic,
        };
        client.welcome().await;
        client
    }

    async fn welcome(&mut self) {
        let welcome = self.next("welcome").await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        self.peer = welcome["peerId"].as_str().expect("peerId").to_owned();
    }

    async fn send_line(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write a line");
        self.write.flush().await.expect("flush");
    }

    async fn send(&mut self, frame: Value) {
        self.send_line(&frame.to_string()).await;
    }

    async fn next(&mut self, what: &str) -> Value {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.read.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("timed out after {WAIT:?} waiting for {what}"));
        match read {
            Ok(0) | Err(_) => panic!("the stream ended while waiting for {what}"),
            Ok(_) => serde_json::from_str(line.trim_end())
                .unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {line}")),
        }
    }

    /// The next frame of `kind`, past acks and presence deltas.
    async fn next_of(&mut self, kind: &str, what: &str) -> Value {
        loop {
            let frame = self.next(what).await;
            if frame["type"] == kind {
                return frame;
            }
            assert!(
                frame["type"] == "ack" || frame["type"] == "presence",
                "unexpected frame while waiting for {what}: {frame}"
            );
        }
    }

    async fn subscribe(&mut self, channel: &str) {
        self.send(json!({"type": "subscribe", "channel": channel, "requestId": "sub"}))
            .await;
        let ack = self.next("subscribe ack").await;
        assert_eq!(ack, json!({"type": "ack", "requestId": "sub"}));
    }
}

#[tokio::test]
async fn quic_and_tcp_clients_on_two_nodes_exchange_messages_and_a_third_node_s_publish_reaches_both()
 {
    let redis = Redis::start("wires");
    let quic = Options {
        quic: true,
        ..Options::default()
    };
    let tcp = Options {
        tcp: true,
        ..Options::default()
    };
    let [a, b, c] = <[Node; 3]>::try_from(
        nodes_with(
            &redis,
            &[("wa", quic), ("wb", tcp), ("wc", Options::default())],
        )
        .await,
    )
    .ok()
    .unwrap();
    let mut on_quic = LineClient::quic(&a).await;
    on_quic.subscribe("wires").await;
    let mut on_tcp = LineClient::tcp(&b).await;
    on_tcp.subscribe("wires").await;
    c.wait_presence("wires", &[&on_quic.peer, &on_tcp.peer])
        .await;
    a.wait_presence("wires", &[&on_quic.peer, &on_tcp.peer])
        .await;

    // QUIC → TCP on a channel, and TCP → QUIC directly.
    on_quic
        .send(json!({"type": "publish", "channel": "wires", "data": {"over": "quic"}, "requestId": "p1"}))
        .await;
    let m = on_tcp.next_of("message", "the QUIC client's publish").await;
    assert_eq!(m["data"], json!({"over": "quic"}), "{m}");
    assert_eq!(m["from"], on_quic.peer.as_str(), "{m}");
    on_tcp
        .send(
            json!({"type": "send", "to": on_quic.peer, "data": {"over": "tcp"}, "requestId": "s1"}),
        )
        .await;
    let d = on_quic
        .next_of("direct", "the TCP client's direct send")
        .await;
    assert_eq!(d["data"], json!({"over": "tcp"}), "{d}");
    assert_eq!(d["from"], on_tcp.peer.as_str(), "{d}");

    // A WebSocket JSON client on the third node reaches both.
    let mut publisher = Json::connect(&c).await;
    publisher.publish("wires", json!({"from": "c"}), "pc").await;
    publisher.until_ack("pc").await;
    for (client, what) in [(&mut on_quic, "QUIC"), (&mut on_tcp, "TCP")] {
        let m = client
            .next_of(
                "message",
                &format!("node wc's publish on the {what} client"),
            )
            .await;
        assert_eq!(m["data"], json!({"from": "c"}), "{what}: {m}");
        assert_eq!(m["from"], publisher.peer.as_str(), "{what}: {m}");
    }
}
