//! rtc-signaller scenarios, named as in `docs/protocol.md`, asserting exact transcripts.

use switchyard_core::testing::TestHub;
use switchyard_core::{Dialect, ErrorCode, Event};

fn hub_with(names: &[&str]) -> TestHub {
    let mut t = TestHub::new();
    for n in names {
        t.connect(n, Dialect::Signaller);
    }
    t
}

fn announce(id: &str, room: &str) -> String {
    format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#)
}

/// alice, bob and carol announced into "r", transcripts cleared.
fn room_of_three() -> TestHub {
    let mut t = hub_with(&["alice", "bob", "carol"]);
    for n in ["alice", "bob", "carol"] {
        t.send(n, &announce(n, "r"));
    }
    t.transcript();
    t
}

#[test]
fn announce_reaches_others_and_announcer_gets_roominfo() {
    let mut t = hub_with(&["alice", "bob"]);
    t.send("alice", &announce("alice", "r"));
    assert_eq!(t.transcript(), [r#"alice <- /roominfo|{"memberCount":1}"#]);
    t.send("bob", &announce("bob", "r"));
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /announce|bob|{"id":"bob","room":"r"}"#,
            r#"bob <- /to|bob|/announce|alice|{"id":"alice","room":"r"}"#,
            r#"bob <- /roominfo|{"memberCount":2}"#,
        ]
    );
}

#[test]
fn reannounce_in_same_room_is_an_update() {
    let mut t = room_of_three();
    t.send(
        "alice",
        r#"/announce|alice|{"id":"alice","room":"r","nick":"Al"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /announce|alice|{"id":"alice","room":"r","nick":"Al"}"#,
            r#"carol <- /announce|alice|{"id":"alice","room":"r","nick":"Al"}"#,
            r#"alice <- /roominfo|{"memberCount":3}"#,
        ]
    );
    // Still one member: a hard close now yields exactly one leave each.
    t.hard_close("alice");
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /leave|alice|{"id":"alice"}"#,
            r#"carol <- /leave|alice|{"id":"alice"}"#,
        ]
    );
}

#[test]
fn announce_in_another_room_leaves_the_old_one_first() {
    let mut t = room_of_three();
    t.connect("dave", Dialect::Signaller);
    t.send("dave", &announce("dave", "s"));
    t.transcript();
    t.send("alice", &announce("alice", "s"));
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /leave|alice|{"id":"alice"}"#,
            r#"carol <- /leave|alice|{"id":"alice"}"#,
            r#"dave <- /announce|alice|{"id":"alice","room":"s"}"#,
            r#"alice <- /to|alice|/announce|dave|{"id":"dave","room":"s"}"#,
            r#"alice <- /roominfo|{"memberCount":2}"#,
        ]
    );
    // The old room no longer routes to alice.
    t.send("bob", r#"/chat|bob|"hi""#);
    assert_eq!(t.transcript(), [r#"carol <- /chat|bob|"hi""#]);
}

#[test]
fn leave_is_forwarded_unchanged_and_never_followed_by_a_synthetic_one() {
    let mut t = room_of_three();
    t.send("alice", r#"/leave|alice|{"id":"alice","reason":"bye"}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /leave|alice|{"id":"alice","reason":"bye"}"#,
            r#"carol <- /leave|alice|{"id":"alice","reason":"bye"}"#,
        ]
    );
    t.hard_close("alice");
    assert_eq!(t.transcript(), Vec::<String>::new());
}

#[test]
fn hard_close_sends_one_synthetic_leave() {
    let mut t = room_of_three();
    t.hard_close("bob");
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /leave|bob|{"id":"bob"}"#,
            r#"carol <- /leave|bob|{"id":"bob"}"#,
        ]
    );
    // A second close report for the same connection is a no-op.
    t.hard_close("bob");
    assert_eq!(t.transcript(), Vec::<String>::new());
    let left: Vec<_> = t
        .events()
        .into_iter()
        .filter(|e| matches!(e, Event::Left { .. }))
        .collect();
    assert_eq!(left.len(), 1);
    assert!(matches!(
        &left[0],
        Event::Left {
            synthetic: true,
            ..
        }
    ));
}

#[test]
fn clean_close_without_leave_also_sends_a_synthetic_leave() {
    let mut t = room_of_three();
    t.graceful_close("carol");
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /leave|carol|{"id":"carol"}"#,
            r#"bob <- /leave|carol|{"id":"carol"}"#,
        ]
    );
}

#[test]
fn to_reaches_only_its_target() {
    let mut t = room_of_three();
    t.send("alice", r#"/to|bob|/hello|alice|{"x":1}"#);
    assert_eq!(t.transcript(), [r#"bob <- /to|bob|/hello|alice|{"x":1}"#]);
}

#[test]
fn to_outside_the_senders_room_is_refused() {
    let mut t = room_of_three();
    t.connect("eve", Dialect::Signaller);
    t.send("eve", &announce("eve", "elsewhere"));
    t.transcript();
    t.send("eve", r#"/to|bob|/hello|eve|{}"#);
    assert_eq!(
        t.transcript(),
        [r#"eve <- /error|{"code":"peer_not_found","message":"no such peer in your room"}"#]
    );
}

#[test]
fn pass_through_commands_reach_the_rest_of_the_room_never_the_sender() {
    let mut t = room_of_three();
    t.send("bob", r#"/custom|bob|a|{"b":2}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /custom|bob|a|{"b":2}"#,
            r#"carol <- /custom|bob|a|{"b":2}"#,
        ]
    );
}

#[test]
fn sender_id_may_be_bare_or_json() {
    let mut t = room_of_three();
    t.send("bob", r#"/custom|{"id":"bob"}|x"#);
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /custom|{"id":"bob"}|x"#,
            r#"carol <- /custom|{"id":"bob"}|x"#,
        ]
    );
}

#[test]
fn spoofed_sender_is_refused_and_not_forwarded() {
    let mut t = room_of_three();
    let refusal =
        r#"mallory <- /error|{"code":"sender_mismatch","message":"the sender id must be the connection's peer id"}"#
            .replace("mallory", "bob");
    for frame in [
        r#"/custom|alice|x"#,
        r#"/custom|{"id":"alice"}|x"#,
        r#"/custom"#,
        r#"/to|carol|/hello|alice|{}"#,
        r#"/leave|alice|{"id":"alice"}"#,
    ] {
        t.send("bob", frame);
        assert_eq!(
            t.transcript(),
            std::slice::from_ref(&refusal),
            "frame {frame}"
        );
    }
    // Announcing someone else's id once bound is refused as well.
    t.send("bob", &announce("alice", "r"));
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /error|{"code":"sender_mismatch","message":"this connection is bound to another peer id"}"#
        ]
    );
    // Part 2 must match the payload id.
    t.connect("x", Dialect::Signaller);
    t.send("x", r#"/announce|alice|{"id":"x","room":"r"}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"x <- /error|{"code":"sender_mismatch","message":"the sender id must equal the announced id"}"#
        ]
    );
}

#[test]
fn frames_before_announce_are_refused() {
    let mut t = hub_with(&["alice"]);
    t.send("alice", r#"/chat|alice|hi"#);
    assert_eq!(
        t.transcript(),
        [r#"alice <- /error|{"code":"not_in_room","message":"announce into a room first"}"#]
    );
}

#[test]
fn malformed_frames_get_invalid_message_and_disturb_nobody() {
    let mut t = room_of_three();
    for frame in [
        "hello",
        "",
        "/",
        "/announce",
        "/announce|bob|not json",
        r#"/announce|bob|{"room":"r"}"#,
        r#"/announce|bob|{"id":"bob"}"#,
        "/to|bob",
        "/to||/x|bob",
        "/to|alice|not-a-command",
    ] {
        t.send("bob", frame);
        let out = t.transcript();
        assert_eq!(out.len(), 1, "frame {frame:?}: {out:?}");
        assert!(
            out[0].starts_with(r#"bob <- /error|{"code":"invalid_message""#),
            "frame {frame:?}: {out:?}"
        );
    }
    t.send_bytes("bob", bytes::Bytes::from_static(&[0xff, 0xfe, b'/']));
    assert!(t.transcript()[0].contains("invalid_message"));
    // The room still works.
    t.send("alice", r#"/chat|alice|ok"#);
    assert_eq!(
        t.transcript(),
        [r#"bob <- /chat|alice|ok"#, r#"carol <- /chat|alice|ok"#]
    );
}

#[test]
fn oversize_frame_closes_with_1009_and_sends_a_synthetic_leave() {
    let mut t = room_of_three();
    let big = format!("/chat|bob|{}", "x".repeat(70 * 1024));
    t.send("bob", &big);
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /leave|bob|{"id":"bob"}"#,
            r#"carol <- /leave|bob|{"id":"bob"}"#,
            "bob closed 1009 frame too large",
        ]
    );
    // Later frames from the closed connection are ignored.
    t.send("bob", r#"/chat|bob|late"#);
    assert_eq!(t.transcript(), Vec::<String>::new());
}

#[test]
fn token_is_stripped_from_announce_before_forwarding() {
    let mut t = room_of_three();
    t.send(
        "alice",
        r#"/announce|alice|{"id":"alice","room":"r","token":"s3cret","nick":"a|b"}"#,
    );
    let out = t.transcript();
    assert_eq!(
        out[0],
        r#"bob <- /announce|alice|{"id":"alice","nick":"a\u007cb","room":"r"}"#
    );
    assert!(out.iter().all(|l| !l.contains("s3cret")));
    t.send(
        "alice",
        r#"/to|bob|/announce|alice|{"id":"alice","room":"r","token":"s3cret"}"#,
    );
    assert_eq!(
        t.transcript(),
        [r#"bob <- /to|bob|/announce|alice|{"id":"alice","room":"r"}"#]
    );
}

#[test]
fn second_connection_with_the_same_id_takes_over_the_room() {
    let mut t = room_of_three();
    // alice reconnects (the old socket is half-open) and re-announces.
    t.connect("alice2", Dialect::Signaller);
    t.send("alice2", &announce("alice", "r"));
    assert_eq!(
        t.transcript(),
        [
            r#"alice <- /error|{"code":"replaced","message":"another connection announced this peer id in this room"}"#,
            r#"bob <- /announce|alice|{"id":"alice","room":"r"}"#,
            r#"carol <- /announce|alice|{"id":"alice","room":"r"}"#,
            r#"alice2 <- /to|alice|/announce|bob|{"id":"bob","room":"r"}"#,
            r#"alice2 <- /to|alice|/announce|carol|{"id":"carol","room":"r"}"#,
            r#"alice2 <- /roominfo|{"memberCount":3}"#,
        ]
    );
    // Direct messages now go to the new connection only.
    t.send("bob", r#"/to|alice|/ping|bob|1"#);
    assert_eq!(t.transcript(), [r#"alice2 <- /to|alice|/ping|bob|1"#]);
    // The old socket finally dies: alice is still present, so nobody sees a leave.
    t.hard_close("alice");
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.hard_close("alice2");
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /leave|alice|{"id":"alice"}"#,
            r#"carol <- /leave|alice|{"id":"alice"}"#,
        ]
    );
}

#[test]
fn reserved_and_invalid_rooms_are_refused() {
    let mut t = hub_with(&["alice"]);
    t.send("alice", &announce("alice", "_system/x"));
    assert_eq!(
        t.transcript(),
        [r#"alice <- /error|{"code":"channel_reserved","message":"reserved channel prefix"}"#]
    );
    t.send("alice", &announce("alice", "has space"));
    assert!(t.transcript()[0].contains(ErrorCode::InvalidChannel.as_str()));
    t.send("alice", r#"/announce|a\|b|{"id":"a|b","room":"r"}"#);
    assert!(t.transcript()[0].contains("error"));
}

#[test]
fn everything_is_released_when_everyone_leaves() {
    let mut t = room_of_three();
    t.send("alice", r#"/leave|alice|{"id":"alice"}"#);
    t.hard_close("bob");
    t.graceful_close("carol");
    t.hard_close("alice");
    assert!(t.hub.is_empty());
}

#[test]
fn rooms_are_isolated() {
    let mut t = hub_with(&["a1", "a2", "b1"]);
    t.send("a1", &announce("a1", "a"));
    t.send("a2", &announce("a2", "a"));
    t.send("b1", &announce("b1", "b"));
    t.transcript();
    t.send("a1", r#"/x|a1|1"#);
    assert_eq!(t.transcript(), [r#"a2 <- /x|a1|1"#]);
    t.hard_close("b1");
    assert_eq!(t.transcript(), Vec::<String>::new());
}

#[test]
fn same_inputs_give_the_same_bytes() {
    let run = || {
        let mut t = room_of_three();
        t.send(
            "alice",
            r#"/announce|alice|{"id":"alice","room":"r","token":"t","z":1,"a":2}"#,
        );
        t.send("bob", r#"/to|carol|/x|bob|1"#);
        t.hard_close("carol");
        t.transcript()
    };
    assert_eq!(run(), run());
}

#[test]
fn line_breaks_inside_a_frame_are_refused() {
    let mut t = room_of_three();
    t.send("bob", "/chat|bob|x\n/leave|alice|{\"id\":\"alice\"}");
    assert_eq!(
        t.transcript(),
        [
            r#"bob <- /error|{"code":"invalid_message","message":"line breaks inside an rtc-signaller frame"}"#
        ]
    );
    // A trailing line break is just the end of the line.
    t.send("bob", "/chat|bob|ok\r\n");
    assert_eq!(
        t.transcript(),
        [r#"alice <- /chat|bob|ok"#, r#"carol <- /chat|bob|ok"#]
    );
}
