//! QUIC peers beside WebSocket peers on one driver: presence, publish and directs both
//! ways, and the synthetic leave for a peer that vanished (idle timeout) or reset its
//! stream.

use switchyard::core::Dialect;
use switchyard::transports::quic::quinn::VarInt;

use super::common::{Setup, Ws, announce, leave};
use super::{IDLE, Quic, Relay, field, quic_welcome, start, ws_welcome};

#[tokio::test]
async fn quic_and_websocket_peers_share_presence_publish_direct_and_a_vanished_peer_leaves() {
    let server = start(Setup::default()).await;

    let mut web = Ws::connect(server.ws, "/v1").await;
    let web_id = ws_welcome(&mut web).await;
    web.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert_eq!(field(&web.expect_text("web's ack").await, "type"), "ack");
    web.expect_text("web's empty snapshot").await;

    // The QUIC peer goes through a relay, so it can vanish later.
    let relay = Relay::start(server.quic).await;
    let mut far = Quic::connect_to(relay.addr, &server, Dialect::Json).await;
    let far_id = quic_welcome(&mut far).await;
    far.send(r#"{"type":"subscribe","channel":"room-1","requestId":"s"}"#)
        .await;
    assert_eq!(field(&far.expect_line("far's ack").await, "type"), "ack");
    let snapshot = far.expect_line("far's snapshot").await;
    assert!(
        snapshot.contains(&format!(r#""peerId":"{web_id}""#)),
        "far's snapshot should list web: {snapshot}"
    );
    let joined = web.expect_text("far joined").await;
    assert_eq!(field(&joined, "type"), "presence", "{joined}");
    assert!(joined.contains(&far_id), "{joined}");

    // Publish both ways.
    far.send(r#"{"type":"publish","channel":"room-1","data":{"n":1}}"#)
        .await;
    assert_eq!(
        web.expect_text("far's message").await,
        format!(r#"{{"type":"message","channel":"room-1","from":"{far_id}","data":{{"n":1}}}}"#)
    );
    web.send(r#"{"type":"publish","channel":"room-1","data":"hi\nthere"}"#)
        .await;
    let message = far.expect_line("web's message").await;
    assert_eq!(field(&message, "from"), web_id);
    assert_eq!(
        field(&message, "data"),
        "hi\nthere",
        "JSON escapes keep it one line"
    );

    // Directs both ways.
    web.send(&format!(
        r#"{{"type":"send","to":"{far_id}","data":"psst","requestId":"d"}}"#
    ))
    .await;
    assert_eq!(
        field(&web.expect_text("web's send ack").await, "type"),
        "ack"
    );
    let direct = far.expect_line("web's direct").await;
    assert_eq!(
        (field(&direct, "type"), field(&direct, "from")),
        ("direct".into(), web_id.clone())
    );
    far.send(&format!(
        r#"{{"type":"send","to":"{web_id}","data":"back"}}"#
    ))
    .await;
    let direct = web.expect_text("far's direct").await;
    assert_eq!(field(&direct, "from"), far_id);

    // The far peer vanishes: no close, no reset, no packet. The idle timeout ends it:
    // counted from the server's last ping (every third of it), so about 4/3 of it.
    let cut = tokio::time::Instant::now();
    relay.cut();
    let left = web.expect_text("far's synthetic leave").await;
    assert_eq!(field(&left, "type"), "presence", "{left}");
    assert!(
        left.contains(&format!(r#""left":[{{"peerId":"{far_id}"}}]"#)),
        "{left}"
    );
    let after = cut.elapsed();
    assert!(
        after >= IDLE / 2 && after < IDLE * 3,
        "the leave came {after:?} after the cut; the idle timeout is {IDLE:?}"
    );
    drop(far);
}

#[tokio::test]
async fn a_stream_reset_mid_frame_is_a_hard_close_the_room_gets_the_leave_and_others_carry_on() {
    let server = start(Setup::default()).await;
    let mut bob = Ws::connect(server.ws, "/").await;
    bob.send(&announce("bob", "lobby")).await;
    bob.expect_roominfo("bob's roominfo").await;

    let mut alice = Quic::connect(&server, Dialect::Signaller).await;
    alice.send(&announce("alice", "lobby")).await;
    assert_eq!(
        alice.expect_roominfo("alice's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        bob.expect_text("alice's announce").await,
        announce("alice", "lobby")
    );

    // Half a frame, then the stream is reset.
    alice
        .send
        .write_all(b"/chat|alice|{\"half\":")
        .await
        .expect("write");
    alice.send.reset(VarInt::from_u32(7)).expect("reset");
    assert_eq!(bob.expect_text("alice's leave").await, leave("alice"));

    // The listener serves on: a new QUIC peer joins the same room.
    let mut carol = Quic::connect(&server, Dialect::Signaller).await;
    carol.send(&announce("carol", "lobby")).await;
    assert_eq!(
        carol.expect_roominfo("carol's roominfo").await,
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        bob.expect_text("carol's announce").await,
        announce("carol", "lobby")
    );
    bob.send(r#"/to|carol|/hello|bob|{}"#).await;
    assert_eq!(
        carol.expect_line("bob's /to").await,
        r#"/to|carol|/hello|bob|{}"#
    );
}
