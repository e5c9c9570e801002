//! The WebSocket transport over real loopback sockets: keepalive, limits, garbage,
//! slow consumers, handshake negotiation and the connection cap.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Line, Setup, WAIT, Ws, announce, leave};
use futures_util::SinkExt;
use switchyard::core::Dialect;
use switchyard::transports::ws::Routes;
use tokio::sync::{oneshot, watch};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// Joins `room` as `id` and consumes the roominfo.
async fn join(ws: &mut Ws, id: &str, room: &str) {
    ws.send(&announce(id, room)).await;
    let info = ws.expect_roominfo(&format!("{id}'s roominfo")).await;
    assert!(info.starts_with("/roominfo|"), "{id} got {info}");
}

#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_dropped_within_the_keepalive_window() {
    let mut setup = Setup::default();
    setup.ws.ping_interval = Duration::from_millis(100);
    setup.ws.pong_timeout = Duration::from_millis(200);
    let server = setup.start().await;
    let mut watcher = Ws::connect(server.ws, "/").await;
    join(&mut watcher, "watcher", "r").await;
    let mut silent = Ws::connect(server.ws, "/").await;
    join(&mut silent, "silent", "r").await;
    assert_eq!(
        watcher.expect_text("silent's announce").await,
        announce("silent", "r")
    );

    // Keep the socket open but never read again: no pong ever answers a ping.
    let _socket = silent.inner.into_inner();
    let went_silent = Instant::now();
    assert_eq!(
        watcher.expect_text("silent's synthetic leave").await,
        leave("silent")
    );
    let took = went_silent.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "the leave should come after the 300 ms window, not long after; took {took:?}"
    );

    // The watcher, which answers pings while it reads, outlived several windows.
    let mut late = Ws::connect(server.ws, "/").await;
    join(&mut late, "late", "r").await;
    assert_eq!(
        watcher.expect_text("late's announce").await,
        announce("late", "r")
    );
}

#[tokio::test]
async fn an_oversize_message_is_closed_1009_whole_or_fragmented_and_others_carry_on() {
    let mut setup = Setup::default();
    setup.hub.limits.max_frame_bytes = 1024;
    let server = setup.start().await;
    let mut watcher = Ws::connect(server.ws, "/").await;
    join(&mut watcher, "watcher", "r").await;

    // One message of limit + 1 bytes.
    let mut big = Ws::connect(server.ws, "/").await;
    join(&mut big, "big", "r").await;
    watcher.expect_text("big's announce").await;
    let frame = format!("/chat|big|{}", "x".repeat(1024 - 10 + 1));
    assert_eq!(frame.len(), 1025);
    big.send(&frame).await;
    assert_eq!(
        big.expect_close("the 1009 close").await,
        (1009, "frame too large".into())
    );
    assert_eq!(watcher.expect_text("big's leave").await, leave("big"));

    // The same size in two fragments, each under the frame limit.
    let mut frag = Ws::connect(server.ws, "/").await;
    join(&mut frag, "frag", "r").await;
    watcher.expect_text("frag's announce").await;
    let (head, tail) = frame.as_bytes().split_at(600);
    let first = Frame::message(head.to_vec(), OpCode::Data(Data::Text), false);
    let last = Frame::message(tail.to_vec(), OpCode::Data(Data::Continue), true);
    frag.inner
        .send(Message::Frame(first))
        .await
        .expect("send head");
    // The server may already be closing when the tail goes out.
    let _ = frag.inner.send(Message::Frame(last)).await;
    assert_eq!(
        frag.expect_close("the fragmented 1009 close").await,
        (1009, "frame too large".into())
    );
    assert_eq!(watcher.expect_text("frag's leave").await, leave("frag"));

    // The watcher is unaffected and a frame of exactly the limit still passes.
    let mut other = Ws::connect(server.ws, "/").await;
    join(&mut other, "other", "r").await;
    watcher.expect_text("other's announce").await;
    let exact = format!("/chat|other|{}", "y".repeat(1024 - 12));
    assert_eq!(exact.len(), 1024);
    other.send(&exact).await;
    assert_eq!(watcher.expect_text("the 1024-byte chat").await, exact);
}

#[tokio::test]
async fn binary_garbage_gets_invalid_message_and_the_connection_stays_open() {
    let server = Setup::default().start().await;
    let mut ws = Ws::connect(server.ws, "/").await;
    ws.inner
        .send(Message::binary(vec![0xff, 0xfe, 0x00, 0x80]))
        .await
        .expect("send binary");
    let error = ws.expect_text("the error frame").await;
    assert!(
        error.starts_with(r#"/error|{"code":"invalid_message""#),
        "got {error}"
    );
    join(&mut ws, "still-here", "r").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_4013_and_the_others_get_everything_in_order() {
    let mut setup = Setup::default();
    setup.driver.outbound_queue = 8;
    // This test is about a reader that cannot keep up, not about a sender's rate.
    setup.hub.limits.message_rate = 1_000_000;
    setup.hub.limits.message_burst = 1_000_000;
    setup.driver.batch = 4;
    setup.driver.close_timeout = Duration::from_secs(5);
    let server = setup.start().await;

    let mut watcher = Ws::connect(server.ws, "/").await;
    join(&mut watcher, "watcher", "r").await;
    // A tiny receive window, so the kernel cannot hide the slow reader for long.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small rcvbuf");
    let stream = socket.connect(server.ws).await.expect("connect slow");
    let (mut slow, _) = Ws::handshake_on(stream, server.ws, "/", None)
        .await
        .expect("slow handshake");
    join(&mut slow, "slow", "r").await;
    watcher.expect_text("slow's announce").await;
    let mut flooder = Ws::connect(server.ws, "/").await;
    join(&mut flooder, "f", "r").await;
    watcher.expect_text("f's announce").await;

    // The watcher reads on its own task from here on, checking order as it goes and
    // publishing its progress: the flood is paced to it, so a healthy reader is never
    // more than `AHEAD` frames behind however busy the machine is, while the slow
    // reader, which reads nothing, must fill up.
    const AHEAD: u64 = 4;
    let (progress, mut watcher_progress) = watch::channel(0_u64);
    let (saw_leave, leave_seen) = oneshot::channel();
    let watching = tokio::spawn(async move {
        let mut saw_leave = Some(saw_leave);
        let mut expected = 0_u64;
        loop {
            let text = watcher.expect_text("the flood").await;
            if let Some(n) = flood_number(&text) {
                assert_eq!(n, expected, "the watcher got the flood out of order");
                expected += 1;
                let _ = progress.send(expected);
            } else if text == leave("slow") {
                saw_leave
                    .take()
                    .expect("one leave")
                    .send(())
                    .expect("test waits");
            } else if text.starts_with("/done|") {
                return expected;
            } else {
                panic!("unexpected frame for the watcher: {text}");
            }
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let stop_flood = Arc::clone(&stop);
    let flooding = tokio::spawn(async move {
        // Big frames, so that the slow reader fills up in a few dozen: far below any
        // per-connection message-rate burst the hub may enforce.
        let pad = "x".repeat(16 * 1024);
        let mut sent = 0_u64;
        while !stop_flood.load(Ordering::Relaxed) && sent < 20_000 {
            let paced = watcher_progress.wait_for(|&seen| sent < seen + AHEAD);
            tokio::time::timeout(WAIT, paced)
                .await
                .expect("the watcher stopped making progress")
                .expect("watcher task alive");
            flooder
                .send(&format!(r#"/flood|f|{{"n":{sent},"pad":"{pad}"}}"#))
                .await;
            sent += 1;
        }
        flooder.send("/done|f|{}").await;
        (flooder, sent)
    });

    tokio::time::timeout(Duration::from_secs(10), leave_seen)
        .await
        .expect("the slow reader was never closed")
        .expect("watcher task alive");
    stop.store(true, Ordering::Relaxed);

    // The slow reader gets an unbroken prefix of the flood, then its 4013.
    let mut expected = 0_u64;
    let close = loop {
        match slow.next("the slow reader's frames and close").await {
            Message::Text(text) => {
                if let Some(n) = flood_number(&text) {
                    assert_eq!(n, expected, "the slow reader got a gap");
                    expected += 1;
                }
            }
            Message::Close(Some(frame)) => break (u16::from(frame.code), frame.reason.to_string()),
            other => panic!("unexpected message for the slow reader: {other:?}"),
        }
    };
    assert_eq!(close, (4013, "outbound queue full".into()));

    let (_flooder, sent) = tokio::time::timeout(WAIT, flooding)
        .await
        .expect("flood ends")
        .expect("flood task");
    let received = tokio::time::timeout(WAIT, watching)
        .await
        .expect("watcher ends")
        .expect("watcher task");
    assert_eq!(received, sent, "the watcher missed part of the flood");
    assert!(expected < sent, "the slow reader cannot have kept up");
}

/// The `n` of a `/flood|f|{"n":N,...}` frame.
fn flood_number(text: &str) -> Option<u64> {
    let rest = text.strip_prefix(r#"/flood|f|{"n":"#)?;
    rest.split(',').next()?.parse().ok()
}

#[tokio::test]
async fn the_token_subprotocol_entry_or_the_dialect_is_echoed() {
    let server = Setup::default().start().await;
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln";
    for (offered, echoed) in [
        ("bearer.T0KEN", "bearer.T0KEN"),
        (jwt, jwt),
        ("chat, rtc-signaller, bearer.T0KEN", "rtc-signaller"),
    ] {
        let (_ws, response) = Ws::handshake(server.ws, "/", Some(offered))
            .await
            .unwrap_or_else(|e| panic!("handshake offering {offered}: {e}"));
        let protocol = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().expect("ascii"));
        assert_eq!(protocol, Some(echoed), "offered {offered}");
    }
}

#[tokio::test]
async fn the_path_or_a_subprotocol_picks_the_dialect_and_unknown_paths_are_404() {
    let mut setup = Setup::default();
    setup.ws.routes = Routes::new([
        ("/", "rtc-signaller"),
        ("/rtc", "rtc-signaller"),
        ("/v1", "json"),
    ]);
    let server = setup.start().await;

    let mut by_path = Ws::connect(server.ws, "/rtc/").await;
    join(&mut by_path, "a", "r").await;
    let (mut by_protocol, response) = Ws::handshake(server.ws, "/", Some("rtc-signaller"))
        .await
        .expect("subprotocol handshake");
    assert_eq!(
        response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.as_bytes()),
        Some(&b"rtc-signaller"[..])
    );
    join(&mut by_protocol, "b", "r").await;

    let refused = Ws::handshake(server.ws, "/nope", None).await;
    assert!(
        matches!(&refused, Err(WsError::Http(r)) if r.status() == 404),
        "unknown path: {:?}",
        refused.map(|_| ())
    );
    // `/v1` serves JSON once the core has that dialect; until then it is a 404.
    let v1 = Ws::handshake(server.ws, "/v1", None).await;
    match Dialect::from_name("json") {
        Some(_) => assert!(v1.is_ok(), "json is known, /v1 must upgrade"),
        None => assert!(matches!(&v1, Err(WsError::Http(r)) if r.status() == 404)),
    }
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_4010() {
    let mut setup = Setup::default();
    setup.driver.max_connections = 2;
    let server = setup.start().await;
    let mut first = Ws::connect(server.ws, "/").await;
    join(&mut first, "one", "r").await;
    let mut second = Line::connect(server.tcp).await;
    second.send(&announce("two", "r")).await;
    second.expect_roominfo("two's roominfo").await;

    let mut third = Ws::connect(server.ws, "/").await;
    assert_eq!(
        third.expect_close("the ws 4010").await,
        (4010, "too many connections".into())
    );
    let mut fourth = Line::connect(server.tcp).await;
    assert_eq!(
        fourth.expect_line("the tcp close line").await,
        r#"/close|{"code":4010,"reason":"too many connections"}"#
    );

    // A freed slot is usable again (bounded retries while the close is processed).
    drop(second);
    first.expect_text("two's leave").await;
    let deadline = Instant::now() + WAIT;
    loop {
        let mut again = Ws::connect(server.ws, "/").await;
        again.send(&announce("again", "r")).await;
        let mut next = again.next("a roominfo or a close").await;
        while matches!(&next, Message::Text(t) if common::is_introduction(t)) {
            next = again.next("a roominfo or a close").await;
        }
        match next {
            Message::Text(text) if text.starts_with("/roominfo|") => break,
            other => assert!(Instant::now() < deadline, "slot never freed: {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_upgrade_is_dropped_after_the_handshake_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut setup = Setup::default();
    setup.ws.handshake_timeout = Duration::from_millis(200);
    let server = setup.start().await;
    let mut slowloris = tokio::net::TcpStream::connect(server.ws)
        .await
        .expect("connect");
    slowloris
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")
        .await
        .expect("half a request");
    let started = Instant::now();
    let mut buf = [0_u8; 64];
    let read = tokio::time::timeout(WAIT, slowloris.read(&mut buf))
        .await
        .expect("the server never dropped the half-open upgrade");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "expected the socket to be dropped, read {read:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(150));
}

#[tokio::test]
async fn a_foreign_browser_origin_is_refused_403_before_the_upgrade() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut setup = Setup::default();
    setup.ws.allowed_origins = vec!["https://app.example.com".into()];
    let server = setup.start().await;
    let attempt = |origin: Option<&'static str>| {
        let addr = server.ws;
        async move {
            let mut request = format!("ws://{addr}/v1").into_client_request().unwrap();
            if let Some(origin) = origin {
                request
                    .headers_mut()
                    .insert("Origin", origin.parse().unwrap());
            }
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            tokio::time::timeout(WAIT, tokio_tungstenite::client_async(request, stream))
                .await
                .expect("handshake answered")
        }
    };
    match attempt(Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("expected a 403, got {:?}", other.map(|_| ())),
    }
    for origin in [Some("https://app.example.com"), None] {
        let (inner, _) = attempt(origin).await.expect("allowed origin upgrades");
        let mut ws = Ws { inner };
        assert!(
            ws.expect_text("welcome").await.contains("welcome"),
            "{origin:?}"
        );
    }
}

#[tokio::test]
async fn a_protocol_violation_is_failed_with_1002_or_1007_and_the_room_gets_the_leave() {
    let server = Setup::default().start().await;
    let mut watcher = Ws::connect(server.ws, "/").await;
    join(&mut watcher, "watcher", "r").await;
    let bad_utf8 = Frame::message(vec![0xce, 0xba, 0xff], OpCode::Data(Data::Text), true);
    let reserved_opcode = Frame::message(vec![1, 2], OpCode::Data(Data::Reserved(3)), true);
    for (id, frame, close) in [
        ("utf8", bad_utf8, (1007, "text message is not UTF-8")),
        ("opcode", reserved_opcode, (1002, "protocol error")),
    ] {
        let mut peer = Ws::connect(server.ws, "/").await;
        join(&mut peer, id, "r").await;
        assert_eq!(watcher.expect_text("the announce").await, announce(id, "r"));
        peer.inner
            .send(Message::Frame(frame))
            .await
            .expect("send the bad frame");
        assert_eq!(
            peer.expect_close("the failed connection's close").await,
            (close.0, close.1.to_owned()),
            "{id}"
        );
        assert_eq!(watcher.expect_text("the leave").await, leave(id));
    }
}
