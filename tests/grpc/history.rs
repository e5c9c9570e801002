//! History and recovery over gRPC: offsets on `Message`, the position on the
//! subscribe's `Ack`, `Subscribe.recover` replaying what a dropped stream missed;
//! and the `Refresh` frame's `Ack` with the new expiry.

use super::*;

/// `room-history` keeps its last hundred messages for a minute.
const HISTORY: &str = r#"
[[history]]
channels = "room-history"
size = 100
ttl_ms = 60000
"#;

/// How many messages the client misses while its stream is gone.
const MISSED: u64 = 20;

/// Publishes `{"n":n}` on `room-history` from `ws` and waits for the ack.
async fn publish(ws: &mut Ws, n: u64) {
    let request_id = format!("p{n}");
    ws_send(
        ws,
        serde_json::json!({"type":"publish","channel":"room-history","data":{"n":n},"requestId":request_id}),
    )
    .await;
    let ack = ws_expect(ws, "ack", "publish ack").await;
    assert_eq!(ack["requestId"], request_id.as_str(), "{ack}");
}

/// A message's `(payload, offset)`, with the payload `{"n":n}` read as `n`.
fn number_and_offset(m: &pb::Message) -> (u64, Option<u64>) {
    let data: Value = serde_json::from_slice(&m.payload).expect("a JSON payload");
    let n = data["n"].as_u64().unwrap_or_else(|| panic!("no n: {data}"));
    (n, m.offset)
}

#[tokio::test]
async fn over_grpc_a_dropped_stream_recovers_exactly_the_20_it_missed_then_live_ones() {
    let server = start_with(&config("", "", HISTORY)).await;
    let mut publisher = ws_peer(&server, &live_token("ws-publisher")).await;

    let mut away = GrpcPeer::connect(&server, &live_token("grpc-carol"))
        .await
        .expect("connect");
    away.welcome().await;
    away.subscribe("room-history", "s1").await;
    let server_frame::Kind::Ack(ack) = away.next_not_presence("subscribe ack").await else {
        panic!("an ack");
    };
    assert_eq!(
        (ack.request_id.as_str(), ack.offset, ack.recovered),
        ("s1", Some(0), None),
        "the ack says where the stream stands: {ack:?}"
    );
    let epoch = ack.epoch.expect("an epoch");
    for n in 1..=5 {
        publish(&mut publisher, n).await;
        let m = away.message_from("ws-publisher", "a live message").await;
        assert_eq!(number_and_offset(&m), (n, Some(n)));
    }
    drop(away);

    for n in 6..6 + MISSED {
        publish(&mut publisher, n).await;
    }

    let mut back = GrpcPeer::connect(&server, &live_token("grpc-carol"))
        .await
        .expect("reconnect");
    back.welcome().await;
    back.send(client_frame::Kind::Subscribe(pb::Subscribe {
        channel: "room-history".into(),
        request_id: "s2".into(),
        recover: Some(pb::Position {
            offset: 5,
            epoch: epoch.clone(),
        }),
        ..Default::default()
    }))
    .await;
    // The hub answers the subscribe in one step: the replay, then the ack.
    let mut replayed = Vec::new();
    let ack = loop {
        match back.next("the replay and the ack").await {
            Ok(server_frame::Kind::Message(m)) => replayed.push(number_and_offset(&m)),
            Ok(server_frame::Kind::Ack(ack)) => break ack,
            other => panic!("only the missed messages come before the ack: {other:?}"),
        }
    };
    let expected: Vec<(u64, Option<u64>)> = (6..6 + MISSED).map(|n| (n, Some(n))).collect();
    assert_eq!(
        replayed, expected,
        "exactly the missed messages, in order, once each"
    );
    assert_eq!(
        (
            ack.request_id.as_str(),
            ack.recovered,
            ack.offset,
            ack.epoch.as_deref()
        ),
        ("s2", Some(true), Some(5 + MISSED), Some(epoch.as_str())),
        "{ack:?}"
    );
    // Live after the seam: no gap, no repeat.
    for n in 6 + MISSED..9 + MISSED {
        publish(&mut publisher, n).await;
        let m = back
            .message_from("ws-publisher", "a live message after recovery")
            .await;
        assert_eq!(number_and_offset(&m), (n, Some(n)));
    }
}

#[tokio::test]
async fn over_grpc_a_channel_without_history_keeps_its_frames_and_cannot_recover() {
    let server = start_with(&config("", "", HISTORY)).await;
    let mut peer = GrpcPeer::connect(&server, &live_token("grpc-dave"))
        .await
        .expect("connect");
    peer.welcome().await;
    peer.send(client_frame::Kind::Subscribe(pb::Subscribe {
        channel: "room-plain".into(),
        request_id: "s1".into(),
        recover: Some(pb::Position {
            offset: 3,
            epoch: "e".into(),
        }),
        ..Default::default()
    }))
    .await;
    let server_frame::Kind::Ack(ack) = peer.next_not_presence("subscribe ack").await else {
        panic!("an ack");
    };
    assert_eq!(
        (ack.offset, ack.epoch.as_deref(), ack.recovered),
        (None, None, Some(false)),
        "{ack:?}"
    );
    let mut ws = ws_peer(&server, &live_token("ws-erin")).await;
    ws_send(
        &mut ws,
        serde_json::json!({"type":"publish","channel":"room-plain","data":1,"requestId":"p"}),
    )
    .await;
    let m = peer.message_from("ws-erin", "a message").await;
    assert_eq!(m.offset, None, "no offset without a history");
}

#[tokio::test]
async fn over_grpc_refresh_is_acked_with_the_new_expiry() {
    let server = start().await;
    let mut peer = GrpcPeer::connect(&server, &live_token("grpc-frank"))
        .await
        .expect("connect");
    peer.welcome().await;
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        + 7200;
    let token = token_with(serde_json::json!({
        "sub": "grpc-frank",
        "channels": ["room-*"],
        "permissions": ["subscribe"],
        "exp": exp,
    }));
    peer.send(client_frame::Kind::Refresh(pb::Refresh {
        token,
        request_id: "r1".into(),
    }))
    .await;
    let server_frame::Kind::Ack(ack) = peer.next_not_presence("refresh ack").await else {
        panic!("an ack");
    };
    assert_eq!((ack.request_id.as_str(), ack.expires_at), ("r1", Some(exp)));

    peer.send(client_frame::Kind::Refresh(pb::Refresh {
        token: "not a token".into(),
        request_id: "r2".into(),
    }))
    .await;
    let server_frame::Kind::Error(error) = peer.next_not_presence("refusal").await else {
        panic!("an error");
    };
    assert_eq!(
        (error.request_id.as_str(), error.code.as_str()),
        ("r2", "invalid_token")
    );
}
