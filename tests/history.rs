//! Channel history end to end, against the real server (`server::start`) on loopback:
//! a JSON client away for two seconds while a hundred messages are published gets
//! exactly those, in order, then live ones, over WebSocket and over QUIC; a position
//! the history no longer covers gets `recovered: false` and no replay; a reload turns
//! history on for the channels a new rule names.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{WAIT, Ws};
use serde_json::{Value, json};
use switchyard::core::Dialect;
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use switchyard::transports::quic::{self, quinn};
use tokio::io::{AsyncBufReadExt, BufReader};

/// `chat/**` keeps plenty; `small/**` keeps ten, so a long absence outruns it.
const CONFIG: &str = r#"
[listen]
ws = "127.0.0.1:0"
quic = "127.0.0.1:0"
[auth]
anonymous = true
[limits]
message_rate = 10000
message_burst = 10000
[[history]]
channels = "chat/**"
size = 1000
ttl_ms = 60000
[[history]]
channels = "small/**"
size = 10
ttl_ms = 60000
"#;

/// How long the subscriber is away, and how many messages it misses meanwhile.
const AWAY: Duration = Duration::from_secs(2);
const MISSED: u64 = 100;

/// Where a test's server writes its QUIC dev certificate: its own file, so parallel
/// tests do not share one.
fn cert_file(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!(
        "switchyard-history-{name}-{}.pem",
        std::process::id()
    ))
}

fn settings(toml: &str, name: &str) -> Settings {
    let cert = cert_file(name);
    let env = [(
        "SWITCHYARD_QUIC_DEV_CERT_FILE".to_owned(),
        cert.display().to_string(),
    )];
    Settings::from_toml(toml, env).expect("test config")
}

async fn start(name: &str) -> Running {
    let running = server::start(&settings(CONFIG, name))
        .await
        .expect("server starts");
    // The clients take the certificate from `Running`; the files are not needed.
    let pem = cert_file(name);
    let _ = std::fs::remove_file(pem.with_extension("der"));
    let _ = std::fs::remove_file(pem);
    running
}

#[derive(Clone, Copy, Debug)]
enum Wire {
    Ws,
    Quic,
}

/// A JSON-dialect client on either wire: one frame per WebSocket text message or
/// per QUIC line.
enum Peer {
    Ws(Ws),
    Quic {
        send: quinn::SendStream,
        read: BufReader<quinn::RecvStream>,
        _connection: quinn::Connection,
        _endpoint: quinn::Endpoint,
    },
}

impl Peer {
    /// Connects and reads the `welcome`.
    async fn connect(wire: Wire, server: &Running) -> Self {
        let mut peer = match wire {
            Wire::Ws => Self::Ws(Ws::connect(server.ws_addr.expect("ws listener"), "/v1").await),
            Wire::Quic => Self::quic(server).await,
        };
        let welcome = peer.expect("welcome").await;
        assert_eq!(welcome["type"], "welcome", "{welcome}");
        peer
    }

    async fn quic(server: &Running) -> Self {
        let addr: SocketAddr = server.quic_addr.expect("quic listener");
        let der = server.quic_certificate.clone().expect("a QUIC certificate");
        let roots = [der.into()];
        let client = quic::client_config(&roots, Dialect::Json).expect("client config");
        let mut endpoint =
            quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("client");
        endpoint.set_default_client_config(client);
        let connecting = endpoint.connect(addr, "localhost").expect("connect");
        let connection = tokio::time::timeout(WAIT, connecting)
            .await
            .expect("quic handshake timed out")
            .expect("quic handshake");
        let (mut send, recv) = connection.open_bi().await.expect("open stream");
        // An empty line, so the server learns of the stream at once.
        send.write_all(b"\n").await.expect("first write");
        Self::Quic {
            send,
            read: BufReader::new(recv),
            _connection: connection,
            _endpoint: endpoint,
        }
    }

    async fn send(&mut self, frame: &Value) {
        match self {
            Self::Ws(ws) => ws.send(&frame.to_string()).await,
            Self::Quic { send, .. } => send
                .write_all(format!("{frame}\n").as_bytes())
                .await
                .expect("quic write"),
        }
    }

    /// The next frame, as JSON, within [`WAIT`].
    async fn expect(&mut self, what: &str) -> Value {
        let text = match self {
            Self::Ws(ws) => ws.expect_text(what).await,
            Self::Quic { read, .. } => {
                let mut line = String::new();
                let n = tokio::time::timeout(WAIT, read.read_line(&mut line))
                    .await
                    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
                    .unwrap_or_else(|e| panic!("quic read while waiting for {what}: {e}"));
                assert!(n > 0, "the quic stream ended while waiting for {what}");
                line
            }
        };
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: not JSON ({e}): {text}"))
    }

    /// Subscribes to `channel` (recovering from `recover` when given) and returns
    /// every frame up to and including the `ack` (or `error`), presence aside.
    async fn subscribe(&mut self, channel: &str, recover: Option<(u64, &str)>) -> Vec<Value> {
        let mut frame = json!({"type": "subscribe", "channel": channel, "requestId": "sub"});
        if let Some((offset, epoch)) = recover {
            frame["recover"] = json!({"offset": offset, "epoch": epoch});
        }
        self.send(&frame).await;
        let mut frames = Vec::new();
        loop {
            let f = self
                .expect(&format!("the subscribe ack for {channel}"))
                .await;
            // Presence snapshots follow acks: an earlier subscribe's may come first.
            if f["type"] == "presence" {
                continue;
            }
            let done = f["type"] == "ack" || f["type"] == "error";
            frames.push(f);
            if done {
                return frames;
            }
        }
    }

    /// Publishes `{"n": n}` and waits for the ack, so that publishes are ordered.
    async fn publish(&mut self, channel: &str, n: u64) {
        self.send(&json!({"type": "publish", "channel": channel, "data": {"n": n}, "requestId": format!("p{n}")}))
            .await;
        let ack = self.expect(&format!("the ack of publish {n}")).await;
        assert_eq!(ack, json!({"type": "ack", "requestId": format!("p{n}")}));
    }

    /// The next `message`, past presence frames: its `(data.n, offset)`.
    async fn expect_message(&mut self, what: &str) -> (u64, u64) {
        loop {
            let f = self.expect(what).await;
            if f["type"] == "presence" {
                continue;
            }
            assert_eq!(f["type"], "message", "{what}: {f}");
            return number_and_offset(&f);
        }
    }
}

fn number_and_offset(f: &Value) -> (u64, u64) {
    (
        f["data"]["n"]
            .as_u64()
            .unwrap_or_else(|| panic!("no data.n: {f}")),
        f["offset"]
            .as_u64()
            .unwrap_or_else(|| panic!("no offset: {f}")),
    )
}

/// The subscribe's ack, last of `frames`.
fn ack(frames: &[Value]) -> &Value {
    let ack = frames.last().expect("frames up to the ack");
    assert_eq!(ack["type"], "ack", "{ack}");
    ack
}

async fn a_client_away_two_seconds_gets_exactly_what_it_missed_then_live_ones(wire: Wire) {
    let server = start(&format!("recover-{wire:?}")).await;
    let mut publisher = Peer::connect(Wire::Ws, &server).await;
    let mut away = Peer::connect(wire, &server).await;
    let first = away.subscribe("chat/room", None).await;
    let a = ack(&first);
    assert_eq!(
        (a["offset"].as_u64(), a.get("recovered")),
        (Some(0), None),
        "{a}"
    );
    let epoch = a["epoch"].as_str().expect("an epoch").to_owned();
    for n in 1..=5 {
        publisher.publish("chat/room", n).await;
        assert_eq!(away.expect_message("a live message").await, (n, n));
    }
    drop(away);

    // A hundred messages spread over the absence.
    let mut pace = tokio::time::interval(AWAY / MISSED as u32);
    for n in 6..6 + MISSED {
        pace.tick().await;
        publisher.publish("chat/room", n).await;
    }

    let mut back = Peer::connect(wire, &server).await;
    let frames = back.subscribe("chat/room", Some((5, &epoch))).await;
    let replayed: Vec<(u64, u64)> = frames[..frames.len() - 1]
        .iter()
        .map(|f| {
            assert_eq!(
                f["type"], "message",
                "only the missed messages come before the ack: {f}"
            );
            number_and_offset(f)
        })
        .collect();
    let expected: Vec<(u64, u64)> = (6..6 + MISSED).map(|n| (n, n)).collect();
    assert_eq!(
        replayed, expected,
        "exactly the missed messages, in order, once each"
    );
    let a = ack(&frames);
    assert_eq!(
        (
            a["recovered"].as_bool(),
            a["offset"].as_u64(),
            a["epoch"].as_str()
        ),
        (Some(true), Some(5 + MISSED), Some(epoch.as_str())),
        "{a}"
    );
    // Live after the seam: no gap, no repeat.
    for n in 6 + MISSED..9 + MISSED {
        publisher.publish("chat/room", n).await;
        assert_eq!(
            back.expect_message("a live message after recovery").await,
            (n, n)
        );
    }
}

#[tokio::test]
async fn over_websocket_a_client_away_two_seconds_gets_exactly_the_100_it_missed_then_live_ones() {
    a_client_away_two_seconds_gets_exactly_what_it_missed_then_live_ones(Wire::Ws).await;
}

#[tokio::test]
async fn over_quic_a_client_away_two_seconds_gets_exactly_the_100_it_missed_then_live_ones() {
    a_client_away_two_seconds_gets_exactly_what_it_missed_then_live_ones(Wire::Quic).await;
}

#[tokio::test]
async fn a_position_the_history_no_longer_covers_or_another_epoch_is_not_recovered_and_nothing_is_replayed()
 {
    let server = start("too-old").await;
    let mut publisher = Peer::connect(Wire::Ws, &server).await;
    for wire in [Wire::Ws, Wire::Quic] {
        let channel = format!("small/{wire:?}");
        let mut away = Peer::connect(wire, &server).await;
        let epoch = ack(&away.subscribe(&channel, None).await)["epoch"]
            .as_str()
            .expect("an epoch")
            .to_owned();
        drop(away);
        // Twenty messages into a history of ten: offsets 1 to 10 are gone.
        for n in 1..=20 {
            publisher.publish(&channel, n).await;
        }
        let mut back = Peer::connect(wire, &server).await;
        for (position, why) in [
            ((0, epoch.as_str()), "too old"),
            ((3, "0000000000000000"), "another epoch"),
            ((21, epoch.as_str()), "a future offset"),
        ] {
            let frames = back.subscribe(&channel, Some(position)).await;
            assert_eq!(
                frames.len(),
                1,
                "{wire:?}, {why}: no replay before the ack: {frames:?}"
            );
            assert_eq!(
                frames[0],
                json!({"type": "ack", "requestId": "sub", "offset": 20, "epoch": epoch, "recovered": false}),
                "{wire:?}, {why}"
            );
        }
        // From a position it still covers, the same connection recovers.
        let frames = back.subscribe(&channel, Some((10, &epoch))).await;
        assert_eq!(frames.len(), 11, "{wire:?}: {frames:?}");
        assert_eq!(ack(&frames)["recovered"], true);
    }
}

#[tokio::test]
async fn a_reload_turns_history_on_for_the_channels_a_new_rule_names() {
    let server = start("reload").await;
    let mut publisher = Peer::connect(Wire::Ws, &server).await;
    let mut peer = Peer::connect(Wire::Ws, &server).await;
    let frames = peer.subscribe("later/x", None).await;
    assert_eq!(ack(&frames), &json!({"type": "ack", "requestId": "sub"}));
    let more = CONFIG.replace(
        "[[history]]\nchannels = \"small/**\"",
        "[[history]]\nchannels = \"later/**\"\nsize = 5\nttl_ms = 1000\n[[history]]\nchannels = \"small/**\"",
    );
    server
        .reload(&settings(&more, "reload"))
        .await
        .expect("reload");
    let frames = peer.subscribe("later/y", None).await;
    let a = ack(&frames);
    assert_eq!(a["offset"], 0, "{a}");
    assert!(a["epoch"].is_string(), "{a}");
    publisher.publish("later/y", 1).await;
    assert_eq!(
        peer.expect_message("the first message of the new history")
            .await,
        (1, 1)
    );
}
