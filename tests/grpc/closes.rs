//! How a `Connect` stream ends when the hub closes it: the status carrying the close
//! code for a bad token (4001), an oversize frame (1009), a client that stops reading
//! (4013) and a flood (4011).

use tonic::Code;

use super::*;

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

/// The `n` of a flood message's JSON payload.
fn flood_number(payload: &[u8]) -> u64 {
    let data: Value = serde_json::from_slice(payload).expect("JSON text");
    data["n"].as_u64().expect("a flood message")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_stops_reading_is_closed_resource_exhausted_with_4013() {
    // This test is about a reader that cannot keep up, not about a sender's rate.
    let limits = "message_rate = 1000000\nmessage_burst = 1000000";
    let server = start_with(&config("", limits, "[driver]\noutbound_queue = 4")).await;
    let mut watcher = GrpcPeer::connect(&server, &live_token("grpc-watcher"))
        .await
        .expect("connect");
    watcher.welcome().await;
    watcher.subscribe("room-slow", "s").await;
    watcher.next_not_presence("the watcher's ack").await;
    let mut ws = ws_peer(&server, &live_token("ws-watcher")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-slow","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "ws subscribe ack").await;

    // A small HTTP/2 stream window, so flow control stops the server's writes after a
    // frame or two that the client does not read.
    let addr = server.grpc_addr.expect("gRPC");
    let small_window = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .initial_stream_window_size(4096)
        .connect()
        .await
        .expect("gRPC connect");
    let mut slow = GrpcPeer::open(small_window, &live_token("grpc-slow"))
        .await
        .expect("connect");
    slow.welcome().await;
    slow.subscribe("room-slow", "s").await;
    slow.next_not_presence("the slow reader's ack").await;
    // From here on the slow client reads nothing.

    // The flood goes one message at a time, each seen by both watchers in order before
    // the next, until both have seen the slow reader leave.
    let mut flooder = ws_peer(&server, &live_token("ws-flooder")).await;
    let pad = "x".repeat(3000);
    let (mut grpc_saw_leave, mut ws_saw_leave) = (false, false);
    let mut sent = 0_u64;
    while !(grpc_saw_leave && ws_saw_leave) {
        assert!(sent < 2_000, "the slow reader was never closed");
        let data = serde_json::json!({"n": sent, "pad": pad});
        let frame = serde_json::json!({"type":"publish","channel":"room-slow","data":data});
        ws_send(&mut flooder, frame).await;
        loop {
            match watcher.next("the flood").await {
                Ok(server_frame::Kind::Message(m)) => {
                    assert_eq!(flood_number(&m.payload), sent, "the gRPC watcher");
                    break;
                }
                Ok(server_frame::Kind::Presence(p)) => {
                    grpc_saw_leave |= p.left.iter().any(|id| id == "grpc-slow");
                }
                other => panic!("unexpected for the gRPC watcher: {other:?}"),
            }
        }
        loop {
            let frame = ws_json(&mut ws, "the flood").await;
            match frame["type"].as_str() {
                Some("message") => {
                    assert_eq!(frame["data"]["n"], sent, "the WebSocket watcher");
                    break;
                }
                Some("presence") => ws_saw_leave |= frame["left"][0]["peerId"] == "grpc-slow",
                _ => panic!("unexpected for the WebSocket watcher: {frame}"),
            }
        }
        sent += 1;
    }

    // The slow reader gets an unbroken prefix of the flood, then the status.
    let mut received = 0_u64;
    let status = loop {
        match slow.next("the slow reader's frames and status").await {
            Ok(server_frame::Kind::Message(m)) => {
                assert_eq!(
                    flood_number(&m.payload),
                    received,
                    "the slow reader got a gap"
                );
                received += 1;
            }
            Ok(server_frame::Kind::Presence(_)) => {}
            Ok(other) => panic!("unexpected for the slow reader: {other:?}"),
            Err(status) => break status,
        }
    };
    assert_closed(&status, Code::ResourceExhausted, 4013);
    assert!(
        status.message().contains("outbound queue full"),
        "{status:?}"
    );
    assert!(received < sent, "the slow reader cannot have kept up");
}

#[tokio::test]
async fn a_flood_is_refused_then_ends_the_stream_resource_exhausted_with_4011() {
    let limits = "message_rate = 1\nmessage_burst = 5\nrate_close_after = 3";
    let server = start_with(&config("", limits, "")).await;
    let mut ws = ws_peer(&server, &live_token("ws-room")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"subscribe","channel":"room-rate","requestId":"w"}),
    )
    .await;
    ws_expect(&mut ws, "ack", "ws subscribe ack").await;

    let mut flooder = GrpcPeer::connect(&server, &live_token("grpc-flooder"))
        .await
        .expect("connect");
    flooder.welcome().await;
    // Fewer frames than the request channel holds: nothing here waits on the server.
    for n in 0..12 {
        let frame = pb::ClientFrame {
            kind: Some(client_frame::Kind::Publish(pb::Publish {
                channel: "room-rate".into(),
                payload: format!(r#"{{"n":{n}}}"#).into_bytes().into(),
                request_id: format!("p{n}"),
                ..Default::default()
            })),
        };
        if flooder.send.try_send(frame).is_err() {
            break;
        }
    }
    let (mut acked, mut refused) = (0_u64, 0);
    let status = loop {
        match flooder.next("the flood's answers").await {
            Ok(server_frame::Kind::Ack(ack)) => {
                assert_eq!(ack.request_id, format!("p{acked}"), "acks in order");
                acked += 1;
            }
            Ok(server_frame::Kind::Error(error)) => {
                assert_eq!(error.code, "over_message_rate", "{error:?}");
                refused += 1;
            }
            Ok(other) => panic!("unexpected for the flooder: {other:?}"),
            Err(status) => break status,
        }
    };
    assert_closed(&status, Code::ResourceExhausted, 4011);
    assert!(acked >= 5, "the burst passes: {acked} acked");
    assert!(refused >= 1, "no over_message_rate error before the close");

    // The room got the admitted publishes, in order and without gaps.
    for n in 0..acked {
        let message = ws_expect(&mut ws, "message", "an admitted publish").await;
        assert_eq!(message["data"]["n"], n, "{message}");
    }
}
