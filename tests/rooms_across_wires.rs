//! One room, three wires: a WebSocket peer, a TCP-line peer and a stdio-style line
//! peer (in-process pipes) share announces, `/to`, pass-through frames and synthetic
//! leaves, exactly as the protocol doc says for a single wire.

mod common;

use common::{Line, Setup, Ws, announce, leave};
use switchyard::core::{Dialect, Open};
use switchyard::transports::lines::{LineReader, LineWriter};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[tokio::test]
async fn ws_tcp_and_stdio_peers_share_a_room_and_get_synthetic_leaves() {
    let server = Setup::default().start().await;

    let mut alice = Ws::connect(server.ws, "/").await;
    alice.send(&announce("alice", "lobby")).await;
    assert_eq!(
        alice.expect_roominfo("alice's roominfo").await,
        r#"/roominfo|{"memberCount":1}"#
    );

    let mut bob = Line::connect(server.tcp).await;
    bob.send(&announce("bob", "lobby")).await;
    assert_eq!(
        bob.expect_roominfo("bob's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        alice.expect_text("bob's announce").await,
        announce("bob", "lobby")
    );

    // Carol is what `switchyard stdio` serves: lines on a pair of pipes.
    let (carol_io, served_io) = tokio::io::duplex(64 * 1024);
    let (served_read, served_write) = tokio::io::split(served_io);
    let driver = server.driver.clone();
    let carol_served = tokio::spawn(async move {
        let reader = LineReader::new(served_read, driver.max_frame_bytes());
        let writer = LineWriter::new(served_write, Dialect::Signaller);
        driver
            .serve(reader, writer, Open::new(Dialect::Signaller))
            .await;
    });
    let (carol_read, mut carol_write) = tokio::io::split(carol_io);
    let mut carol = BufReader::new(carol_read).lines();
    let mut carol_line = async |what: &str| -> String {
        tokio::time::timeout(common::WAIT, carol.next_line())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("read carol")
            .unwrap_or_else(|| panic!("carol's pipe ended while waiting for {what}"))
    };
    carol_write
        .write_all(format!("{}\n", announce("carol", "lobby")).as_bytes())
        .await
        .expect("carol writes");
    let mut roominfo = carol_line("carol's roominfo").await;
    while common::is_introduction(&roominfo) {
        roominfo = carol_line("carol's roominfo").await;
    }
    assert_eq!(roominfo, r#"/roominfo|{"memberCount":3}"#);
    assert_eq!(
        alice.expect_text("carol's announce").await,
        announce("carol", "lobby")
    );
    assert_eq!(
        bob.expect_line("carol's announce").await,
        announce("carol", "lobby")
    );

    // `/to` reaches its target only; pass-through reaches everyone else.
    alice.send(r#"/to|bob|/hello|alice|{"n":1}"#).await;
    assert_eq!(
        bob.expect_line("alice's /to").await,
        r#"/to|bob|/hello|alice|{"n":1}"#
    );
    bob.send(r#"/chat|bob|{"text":"hi"}"#).await;
    assert_eq!(
        alice.expect_text("bob's chat").await,
        r#"/chat|bob|{"text":"hi"}"#
    );
    assert_eq!(
        carol_line("bob's chat (and not alice's /to)").await,
        r#"/chat|bob|{"text":"hi"}"#
    );

    // Alice's socket vanishes without a close frame.
    drop(alice.inner.into_inner());
    assert_eq!(bob.expect_line("alice's leave").await, leave("alice"));
    assert_eq!(carol_line("alice's leave").await, leave("alice"));

    // Bob's TCP connection ends.
    drop(bob);
    assert_eq!(carol_line("bob's leave").await, leave("bob"));

    // Carol's input ends: the pump reports the close and returns.
    carol_write.shutdown().await.expect("close carol's input");
    drop(carol_write);
    tokio::time::timeout(common::WAIT, carol_served)
        .await
        .expect("carol's connection ends with its input")
        .expect("serve task");
}

#[tokio::test]
async fn the_driver_handle_runs_control_calls_on_the_hub() {
    let server = Setup::default().start().await;
    let mut a = Ws::connect(server.ws, "/").await;
    a.send(&announce("a", "r")).await;
    a.expect_roominfo("a's roominfo").await;
    let mut b = Line::connect(server.tcp).await;
    b.send(&announce("b", "r")).await;
    b.expect_roominfo("b's roominfo").await;
    let counts = server
        .driver
        .call(|hub, _now| (hub.connection_count(), hub.channel_count()))
        .await
        .expect("driver alive");
    assert_eq!(counts, (2, 1), "two connections in one room");
}

#[tokio::test]
async fn a_websocket_frame_with_line_breaks_cannot_forge_lines_for_line_peers() {
    let server = Setup::default().start().await;
    let mut web = Ws::connect(server.ws, "/").await;
    web.send(&announce("web", "r")).await;
    web.expect_roominfo("web's roominfo").await;
    let mut line = Line::connect(server.tcp).await;
    line.send(&announce("line", "r")).await;
    line.expect_roominfo("line's roominfo").await;
    web.expect_text("line's announce").await;

    // The core refuses an rtc-signaller frame with a line break inside…
    web.send("/chat|web|hi\n/leave|line|{\"id\":\"line\"}")
        .await;
    assert!(
        web.expect_text("the refusal")
            .await
            .contains("line breaks inside an rtc-signaller frame")
    );
    // …and JSON data (where a raw line break is legal whitespace) is flattened by the
    // line writer, so a JSON publish cannot forge a line either.
    let mut json = Ws::connect(server.ws, "/v1").await;
    json.expect_text("json's welcome").await;
    json.send("{\"type\":\"publish\",\"channel\":\"r\",\"data\":[1,\n2]}")
        .await;
    let forwarded = line.expect_line("the JSON publish, as one line").await;
    assert!(forwarded.starts_with("/message|"), "{forwarded}");
    assert!(forwarded.ends_with("|[1, 2]"), "{forwarded}");
    web.send(r#"/chat|web|{"next":1}"#).await;
    assert_eq!(
        line.expect_line("the next frame").await,
        r#"/chat|web|{"next":1}"#
    );
}

/// A custom wire whose reader panics on the line `panic` and whose writer panics when
/// asked to write a frame holding `boom`: code a transport author could get wrong.
mod fragile {
    use std::io;

    use async_trait::async_trait;
    use bytes::Bytes;
    use switchyard::core::CloseCode;
    use switchyard::transports::{FrameRead, FrameWrite, ReadError};
    use tokio::sync::mpsc;

    pub(crate) struct Reader(pub(crate) mpsc::UnboundedReceiver<&'static str>);
    pub(crate) struct Writer(pub(crate) mpsc::UnboundedSender<String>);

    #[async_trait]
    impl FrameRead for Reader {
        async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
            let line = self.0.recv().await?;
            assert!(line != "panic", "injected panic in a reader");
            Some(Ok(Bytes::from_static(line.as_bytes())))
        }
    }

    #[async_trait]
    impl FrameWrite for Writer {
        async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
            for frame in frames {
                let text = String::from_utf8_lossy(frame).into_owned();
                assert!(!text.contains("boom"), "injected panic in a writer");
                let _ = self.0.send(text);
            }
            Ok(())
        }
        async fn close(&mut self, code: CloseCode, reason: &str) {
            let _ = self.0.send(format!("closed {} {reason}", code.0));
        }
    }
}

#[tokio::test]
async fn a_panicking_connection_task_is_closed_in_the_hub_and_every_count_comes_back() {
    use std::sync::atomic::Ordering;

    use serde_json::Value;
    use switchyard::core::Open;

    let mut setup = Setup::default();
    setup.driver.max_connections = 4;
    // A ghost left behind by a panic would hold its peer id: the second round would
    // be refused with 4010.
    setup.hub.limits.max_conns_per_peer = 1;
    let server = setup.start().await;
    let mut watcher = Ws::connect(server.ws, "/").await;
    watcher.send(&announce("watcher", "r")).await;
    watcher.expect_roominfo("watcher's roominfo").await;
    let mut json = Ws::connect(server.ws, "/v1").await;
    json.expect_text("welcome").await;
    json.send(r#"{"type":"subscribe","channel":"r","requestId":"s"}"#)
        .await;
    assert!(json.expect_text("ack").await.contains(r#""type":"ack""#));
    json.expect_text("presence snapshot").await;
    let json_announce = watcher.expect_text("the JSON peer's announce").await;
    assert!(json_announce.starts_with("/announce|"), "{json_announce}");
    let presence_left = |text: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(text).expect("json frame");
        assert_eq!(v["type"], "presence", "{text}");
        v["left"]
            .as_array()
            .expect("left")
            .iter()
            .map(|p| p["peerId"].as_str().expect("peerId").to_owned())
            .collect()
    };

    // The same peer id and the same (made-up) address, twice.
    let remote: std::net::SocketAddr = "192.0.2.7:4242".parse().expect("addr");
    for (round, trigger) in [("reader", "panic"), ("writer", "/boom|watcher|{}")] {
        let (to_ghost, from_test) = tokio::sync::mpsc::unbounded_channel();
        let (to_test, mut ghost_out) = tokio::sync::mpsc::unbounded_channel();
        let mut open = Open::new(Dialect::Signaller);
        open.remote = Some(remote);
        let driver = server.driver.clone();
        let task = tokio::spawn(async move {
            let _counted = driver.metrics().track("fragile");
            driver
                .serve(fragile::Reader(from_test), fragile::Writer(to_test), open)
                .await;
        });
        to_ghost
            .send(r#"/announce|ghost|{"id":"ghost","room":"r"}"#)
            .expect("ghost alive");
        let roominfo = tokio::time::timeout(common::WAIT, async {
            loop {
                let line = ghost_out.recv().await.expect("ghost's writer");
                if !common::is_introduction(&line) {
                    return line;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{round}: no roominfo for the ghost"));
        assert!(roominfo.starts_with("/roominfo|"), "{round}: {roominfo}");
        assert_eq!(
            watcher.expect_text("the ghost's announce").await,
            announce("ghost", "r")
        );
        json.expect_text("the ghost's presence").await;

        if round == "reader" {
            to_ghost.send(trigger).expect("ghost alive");
        } else {
            watcher.send(trigger).await;
        }
        let joined = tokio::time::timeout(common::WAIT, task)
            .await
            .unwrap_or_else(|_| panic!("{round}: the ghost's task did not end"));
        assert!(
            joined.is_err_and(|e| e.is_panic()),
            "{round}: the task should have panicked"
        );
        assert_eq!(
            watcher.expect_text("the ghost's synthetic leave").await,
            leave("ghost"),
            "{round}"
        );
        let mut presence = json.expect_text("the ghost's presence left").await;
        while presence.contains(r#""type":"message""#) {
            presence = json.expect_text("the ghost's presence left").await;
        }
        assert_eq!(presence_left(&presence), ["ghost"], "{round}");
    }
    assert_eq!(
        server
            .driver
            .metrics()
            .connection_panics
            .load(Ordering::Relaxed),
        2
    );

    // The room carries on: a message from the watcher reaches the JSON peer.
    watcher.send("/chat|watcher|still-here").await;
    let chat = json.expect_text("the watcher's chat").await;
    assert!(chat.contains("still-here"), "{chat}");

    // Everyone leaves: the hub is empty (connections, rooms, per-IP, per-tenant and
    // per-peer counts), no wire counts a connection, and every slot is free again.
    drop((watcher, json));
    let driver = server.driver.clone();
    let settled = async {
        loop {
            let empty = driver
                .call(|hub, _| {
                    hub.check_invariants();
                    hub.is_empty()
                })
                .await
                .expect("driver alive");
            let wires = driver.metrics().connections_by_wire();
            if empty && wires.iter().all(|(_, n)| *n == 0) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(common::WAIT, settled)
        .await
        .expect("the hub and the wire gauges never came back to empty");
    let slots: Vec<_> = (0..4).filter_map(|_| server.driver.admit()).collect();
    assert_eq!(slots.len(), 4, "every connection slot is free again");
}
