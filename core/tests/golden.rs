//! Golden frames: the exact bytes the rtc-signaller 6.3 client sends, routed through
//! the hub. Forwarded frames must arrive byte for byte (a v6 client parses them itself).

use std::collections::BTreeMap;

use switchyard_core::Dialect;
use switchyard_core::testing::TestHub;

const A: &str = "ck9a1x0qz0000a1b2c3d4e5f6";
const B: &str = "ck9a1x0r00001g7h8i9j0k1l2";

fn frames() -> BTreeMap<String, String> {
    include_str!("fixtures/rtc-signaller-6.3.frames")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (name, frame) = l.split_once(": ").expect("name: frame");
            (name.to_owned(), frame.to_owned())
        })
        .collect()
}

fn session() -> (TestHub, BTreeMap<String, String>) {
    let f = frames();
    let mut t = TestHub::new();
    t.connect(A, Dialect::Signaller);
    t.connect(B, Dialect::Signaller);
    t.send(A, &f["announce_a"]);
    t.send(B, &f["announce_b"]);
    (t, f)
}

#[test]
fn v6_announces_are_forwarded_verbatim() {
    let (mut t, f) = session();
    assert_eq!(
        t.transcript(),
        [
            format!(r#"{A} <- /roominfo|{{"memberCount":1}}"#),
            format!("{A} <- {}", f["announce_b"]),
            // The newcomer is introduced to A as a direct announce (no autoreply).
            format!(
                r#"{B} <- /to|{B}|/announce|{A}|{{"agent":"signaller@6.3.0","browser":"chrome","browserVersion":"120.0.0","id":"{A}","nick":"ann","room":"demo-room"}}"#
            ),
            format!(r#"{B} <- /roominfo|{{"memberCount":2}}"#),
        ]
    );
}

#[test]
fn v6_autoreply_offer_and_candidate_reach_only_their_target() {
    let (mut t, f) = session();
    t.transcript();
    t.send(A, &f["autoreply_a_to_b"]);
    t.send(A, &f["offer_a_to_b"]);
    t.send(B, &f["candidate_b_to_a"]);
    assert_eq!(
        t.transcript(),
        [
            format!("{B} <- {}", f["autoreply_a_to_b"]),
            format!("{B} <- {}", f["offer_a_to_b"]),
            format!("{A} <- {}", f["candidate_b_to_a"]),
        ]
    );
}

#[test]
fn v6_custom_commands_in_both_sender_forms() {
    let (mut t, f) = session();
    t.transcript();
    t.send(A, &f["chat_a"]);
    t.send(A, &f["chat_a_json_sender"]);
    assert_eq!(
        t.transcript(),
        [
            format!("{B} <- {}", f["chat_a"]),
            format!("{B} <- {}", f["chat_a_json_sender"]),
        ]
    );
}

#[test]
fn v6_leave_then_close() {
    let (mut t, f) = session();
    t.transcript();
    t.send(A, &f["leave_a"]);
    t.hard_close(A);
    assert_eq!(t.transcript(), [format!("{B} <- {}", f["leave_a"])]);
}

#[test]
fn v6_hard_close_gives_the_bare_id_leave_the_client_parses() {
    let (mut t, _) = session();
    t.transcript();
    t.hard_close(B);
    assert_eq!(
        t.transcript(),
        [format!(r#"{A} <- /leave|{B}|{{"id":"{B}"}}"#)]
    );
}

#[test]
fn v6_tokens_never_travel() {
    let (mut t, f) = session();
    t.transcript();
    t.send(B, &f["announce_with_token"]);
    t.send(B, &f["autoreply_with_token"]);
    let out = t.transcript();
    assert_eq!(out.len(), 3, "{out:?}");
    assert!(
        out.iter().all(|l| !l.contains("secret-session-token")),
        "{out:?}"
    );
    assert!(out[0].starts_with(&format!("{A} <- /announce|{B}|{{")));
    assert!(out[2].starts_with(&format!("{A} <- /to|{A}|/announce|{B}|{{")));
}
