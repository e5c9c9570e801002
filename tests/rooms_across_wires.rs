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
