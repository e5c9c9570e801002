//! Line wires over real sockets: TCP (fixed dialect and `hello` auto-detection), the
//! Unix-socket example transport, and the stdio-to-WebSocket bridge.

mod common;

use common::{Line, Setup, WAIT, Ws, announce, leave};
use switchyard::transports::{LineDialect, TcpConfig, stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

#[allow(dead_code)]
#[path = "../examples/unix_socket.rs"]
mod unix_socket;

#[tokio::test]
async fn an_endless_tcp_line_is_closed_with_1009_and_the_room_carries_on() {
    let mut setup = Setup::default();
    setup.hub.limits.max_frame_bytes = 1024;
    let server = setup.start().await;
    let mut watcher = Line::connect(server.tcp).await;
    watcher.send(&announce("w", "r")).await;
    watcher.expect_roominfo("w's roominfo").await;
    let mut peer = Line::connect(server.tcp).await;
    peer.send(&announce("p", "r")).await;
    peer.expect_roominfo("p's roominfo").await;
    watcher.expect_line("p's announce").await;

    // limit + 1 bytes and no newline: refused as soon as the limit is passed.
    peer.write
        .write_all(&[b'x'; 1025])
        .await
        .expect("write junk");
    assert_eq!(
        peer.expect_line("the close line").await,
        r#"/close|{"code":1009,"reason":"frame too large"}"#
    );
    assert_eq!(peer.try_line("the end of the stream").await, None);
    assert_eq!(watcher.expect_line("p's leave").await, leave("p"));

    watcher.send(r#"/chat|w|{"still":"here"}"#).await;
    let mut other = Line::connect(server.tcp).await;
    other.send(&announce("o", "r")).await;
    assert_eq!(
        other.expect_roominfo("o's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
}

#[tokio::test]
async fn an_auto_listener_takes_the_dialect_from_a_hello_line() {
    let server = Setup {
        tcp: TcpConfig::new(LineDialect::Auto),
        ..Setup::default()
    }
    .start()
    .await;

    let mut good = Line::connect(server.tcp).await;
    good.send("hello rtc-signaller").await;
    good.send(&announce("a", "r")).await;
    assert_eq!(
        good.expect_roominfo("a's roominfo").await,
        r#"/roominfo|{"memberCount":1}"#
    );

    let mut unknown = Line::connect(server.tcp).await;
    unknown.send("hello klingon").await;
    assert_eq!(
        unknown.expect_line("the 1008 close line").await,
        r#"{"type":"close","code":1008,"reason":"expected: hello <dialect-name>"}"#
    );
    assert_eq!(unknown.try_line("the end of the stream").await, None);

    // A client that skips the hello is answered in the form it spoke.
    let mut rude = Line::connect(server.tcp).await;
    rude.send(&announce("b", "r")).await;
    assert_eq!(
        rude.expect_line("the 1008 close line").await,
        r#"/close|{"code":1008,"reason":"expected: hello <dialect-name>"}"#
    );
}

#[tokio::test]
async fn the_unix_socket_example_is_a_full_transport() {
    let server = Setup::default().start().await;
    let dir = std::env::temp_dir().join(format!("switchyard-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("hub.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).expect("bind unix socket");
    tokio::spawn(unix_socket::serve(listener, server.driver.clone()));

    let mut ws = Ws::connect(server.ws, "/").await;
    ws.send(&announce("web", "r")).await;
    ws.expect_roominfo("web's roominfo").await;

    let stream = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect unix");
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(format!("{}\n", announce("local", "r")).as_bytes())
        .await
        .expect("announce over unix");
    let roominfo = loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("timed out waiting for local's roominfo")
            .expect("read unix");
        if !line.as_deref().is_some_and(common::is_introduction) {
            break line;
        }
    };
    assert_eq!(roominfo.as_deref(), Some(r#"/roominfo|{"memberCount":2}"#));
    assert_eq!(
        ws.expect_text("local's announce").await,
        announce("local", "r")
    );

    ws.send(r#"/to|local|/offer|web|{"sdp":"v=0"}"#).await;
    let direct = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("timed out waiting for the /to")
        .expect("read unix");
    assert_eq!(
        direct.as_deref(),
        Some(r#"/to|local|/offer|web|{"sdp":"v=0"}"#)
    );

    drop(write);
    drop(lines);
    assert_eq!(ws.expect_text("local's leave").await, leave("local"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_stdio_bridge_carries_lines_to_a_websocket_server_and_back() {
    let server = Setup::default().start().await;
    let mut ws = Ws::connect(server.ws, "/").await;
    ws.send(&announce("web", "r")).await;
    ws.expect_roominfo("web's roominfo").await;

    // The bridge's stdin and stdout, as in-process pipes.
    let (mut stdin, bridge_in) = tokio::io::duplex(4096);
    let (bridge_out, stdout) = tokio::io::duplex(4096);
    let url = format!("ws://{}/", server.ws);
    let bridge =
        tokio::spawn(async move { stdio::bridge_to_ws(&url, bridge_in, bridge_out).await });
    let mut stdout = BufReader::new(stdout).lines();
    let mut out_line = async |what: &str| {
        tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
            .expect("read bridge output")
    };

    stdin
        .write_all(format!("{}\n", announce("cli", "r")).as_bytes())
        .await
        .expect("bridge input");
    let roominfo = loop {
        let line = out_line("cli's roominfo").await;
        if !line.as_deref().is_some_and(common::is_introduction) {
            break line;
        }
    };
    assert_eq!(roominfo.as_deref(), Some(r#"/roominfo|{"memberCount":2}"#));
    assert_eq!(ws.expect_text("cli's announce").await, announce("cli", "r"));
    ws.send(r#"/chat|web|{"text":"hello cli"}"#).await;
    assert_eq!(
        out_line("web's chat").await.as_deref(),
        Some(r#"/chat|web|{"text":"hello cli"}"#)
    );

    // End of input: the bridge closes normally; the room sees the peer go.
    drop(stdin);
    tokio::time::timeout(WAIT, bridge)
        .await
        .expect("the bridge ends with its input")
        .expect("bridge task")
        .expect("bridge result");
    assert_eq!(ws.expect_text("cli's leave").await, leave("cli"));
}
