//! Refusals and limits: malformed frames, the channel limit, frame size, rate and
//! quota.

use std::time::Duration;

use switchyard_core::Dialect;
use switchyard_core::config::Quota;
use switchyard_core::testing::{TestHub, keyed_config, token_for};

use super::{hub_with, subscribe};

#[test]
fn channel_limit_exceeded() {
    let mut config = keyed_config();
    config.limits.max_channels_per_conn = 2;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["**"]));
    t.transcript();
    subscribe(&mut t, "a", "x");
    subscribe(&mut t, "a", "y/*");
    subscribe(&mut t, "a", "x"); // re-subscribing is not a new channel
    t.transcript();
    subscribe(&mut t, "a", "z");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"channel_limit_exceeded","message":"this connection is at its channel limit","requestId":"s-z"}"#
        ]
    );
}

#[test]
fn malformed_frames_get_invalid_message_with_the_request_id_when_readable() {
    let mut t = hub_with(&["a"]);
    let cases = [
        ("not json", None),
        (r#"{"type":"publish","requestId":"r1"}"#, Some("r1")),
        (r#"{"type":"nope","requestId":"r2"}"#, Some("r2")),
        (
            r#"{"type":"subscribe","channel":5,"requestId":"r3"}"#,
            Some("r3"),
        ),
        (r#"{"requestId":"r4"}"#, Some("r4")),
        (r#"{"type":"subscribe","channel":"c","requestId":7}"#, None),
        ("[1,2]", None),
    ];
    for (frame, rid) in cases {
        t.send("a", frame);
        let out = t.transcript();
        assert_eq!(out.len(), 1, "{frame}: {out:?}");
        assert!(
            out[0].starts_with(r#"a <- {"type":"error","code":"invalid_message""#),
            "{frame}: {out:?}"
        );
        match rid {
            Some(id) => assert!(
                out[0].ends_with(&format!(r#""requestId":"{id}"}}"#)),
                "{frame}: {out:?}"
            ),
            None => assert!(!out[0].contains(r#","requestId":"#), "{frame}: {out:?}"),
        }
    }
    let long = "x".repeat(129);
    t.send(
        "a",
        &format!(r#"{{"type":"subscribe","channel":"c","requestId":"{long}"}}"#),
    );
    assert!(t.transcript()[0].contains("longer than 128"));
    t.send_bytes("a", bytes::Bytes::from_static(b"\xff\x00"));
    assert!(t.transcript()[0].contains("invalid_message"));
}

#[test]
fn oversize_frame_closes_1009() {
    let mut t = hub_with(&["a", "b"]);
    subscribe(&mut t, "a", "room-1");
    subscribe(&mut t, "b", "room-1");
    t.transcript();
    let big = format!(
        r#"{{"type":"publish","channel":"room-1","data":"{}"}}"#,
        "x".repeat(65_536)
    );
    t.send("a", &big);
    assert_eq!(
        t.transcript(),
        [
            "a closed 1009 frame too large",
            r#"b <- {"type":"presence","channel":"room-1","joined":[],"left":[{"peerId":"a"}],"count":1}"#,
        ]
    );
}

#[test]
fn over_the_rate_frames_are_refused_then_the_connection_closes_4011() {
    let mut config = keyed_config();
    config.limits.message_rate = 10;
    config.limits.message_burst = 3;
    config.limits.rate_close_after = 2;
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["c"]));
    t.transcript();
    let publish = r#"{"type":"publish","channel":"c","data":1,"requestId":"p"}"#;
    for _ in 0..3 {
        t.send("a", publish);
    }
    assert_eq!(t.transcript().len(), 3);
    t.send("a", publish);
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"error","code":"over_message_rate","message":"too many frames; slow down","requestId":"p"}"#
        ]
    );
    // 100 ms later one token is back.
    t.advance(Duration::from_millis(100));
    t.send("a", publish);
    assert_eq!(t.transcript(), [r#"a <- {"type":"ack","requestId":"p"}"#]);
    t.send("a", publish);
    t.send("a", publish);
    t.send("a", publish);
    let out = t.transcript();
    assert_eq!(
        out.last().unwrap(),
        "a closed 4011 over message rate",
        "{out:?}"
    );
}

#[test]
fn over_the_quota_messages_are_refused_and_the_connection_stays_open() {
    let mut config = keyed_config();
    config.limits.quota = Some(Quota {
        messages: 2,
        period: Duration::from_secs(60),
    });
    let mut t = TestHub::with_config(config);
    t.connect_token("a", Dialect::Json, &token_for("a", &["c"]));
    t.transcript();
    let publish = r#"{"type":"publish","channel":"c","data":1,"requestId":"p"}"#;
    t.send("a", publish);
    t.send("a", publish);
    t.send("a", publish);
    assert_eq!(
        t.transcript()[2],
        r#"a <- {"type":"error","code":"over_message_quota","message":"message quota for this period is used up","requestId":"p"}"#
    );
    t.advance(Duration::from_secs(60));
    t.send("a", publish);
    assert_eq!(t.transcript(), [r#"a <- {"type":"ack","requestId":"p"}"#]);
}
