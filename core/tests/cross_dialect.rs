//! rtc-signaller and JSON peers in one room/channel see each other. The mapping is
//! in `docs/protocol.md` ("Cross-dialect mapping").

use bytes::Bytes;
use serde_json::json;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for, token_with};
use switchyard_core::{Config, Dialect};

/// sig (rtc-signaller, announced into "lobby") and js (JSON, subscribed to "lobby").
fn mixed_room() -> TestHub {
    let mut t = TestHub::with_config(Config::default());
    t.connect("sig", Dialect::Signaller);
    t.connect("js", Dialect::Json);
    t.send(
        "sig",
        r#"/announce|sig|{"id":"sig","room":"lobby","nick":"S"}"#,
    );
    t.transcript();
    t
}

#[test]
fn json_subscriber_appears_to_signaller_peers_as_a_server_made_announce() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("sig", Dialect::Signaller, &token_for("sig", &["lobby"]));
    t.send("sig", r#"/announce|sig|{"id":"sig","room":"lobby"}"#);
    let js = token_with(
        json!({"sub": "js", "channels": ["lobby"], "exp": TEST_UNIX + 60,
        "permissions": ["subscribe", "presence", "publish", "send"], "metadata": {"nick": "J|son"}}),
    );
    t.connect_token("js", Dialect::Json, &js);
    t.transcript();
    t.send(
        "js",
        r#"{"type":"subscribe","channel":"lobby","requestId":"s"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"js <- {"type":"ack","requestId":"s"}"#,
            r#"js <- {"type":"presence","channel":"lobby","joined":[{"peerId":"sig","metadata":{"id":"sig","room":"lobby"}}],"left":[],"count":2,"snapshot":true}"#,
            r#"sig <- /announce|js|{"id":"js","nick":"J\u007cson","room":"lobby"}"#,
        ]
    );
    // A signaller newcomer learns of the JSON peer already there.
    t.connect_token("sig2", Dialect::Signaller, &token_for("sig2", &["lobby"]));
    t.send("sig2", r#"/announce|sig2|{"id":"sig2","room":"lobby"}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /announce|sig2|{"id":"sig2","room":"lobby"}"#,
            r#"sig2 <- /to|sig2|/announce|js|{"id":"js","nick":"J\u007cson","room":"lobby"}"#,
            r#"sig2 <- /to|sig2|/announce|sig|{"id":"sig","room":"lobby"}"#,
            r#"sig2 <- /roominfo|{"memberCount":3}"#,
            r#"js <- {"type":"presence","channel":"lobby","joined":[{"peerId":"sig2","metadata":{"id":"sig2","room":"lobby"}}],"left":[],"count":3}"#,
        ]
    );
}

#[test]
fn signaller_announce_and_leave_become_json_presence() {
    let mut t = mixed_room();
    t.send("js", r#"{"type":"subscribe","channel":"lobby"}"#);
    t.transcript();
    t.send(
        "sig",
        r#"/announce|sig|{"id":"sig","room":"lobby","nick":"S2","token":"t0ps3cret"}"#,
    );
    let out = t.transcript();
    assert_eq!(
        out,
        [
            r#"sig <- /roominfo|{"memberCount":2}"#,
            r#"js <- {"type":"presence","channel":"lobby","joined":[{"peerId":"sig","metadata":{"id":"sig","nick":"S2","room":"lobby"}}],"left":[],"count":2}"#,
        ]
    );
    t.hard_close("sig");
    assert_eq!(
        t.transcript(),
        [
            r#"js <- {"type":"presence","channel":"lobby","joined":[],"left":[{"peerId":"sig"}],"count":1}"#
        ]
    );
}

#[test]
fn signaller_commands_reach_json_peers_as_messages() {
    let mut t = mixed_room();
    t.send("js", r#"{"type":"subscribe","channel":"lobby"}"#);
    t.transcript();
    t.send("sig", r#"/chat|sig|hello|{"n":1}"#);
    assert_eq!(
        t.transcript(),
        [
            r#"js <- {"type":"message","channel":"lobby","from":"sig","data":{"args":["hello",{"n":1}],"command":"chat"}}"#
        ]
    );
}

#[test]
fn json_publish_reaches_signaller_peers_as_message_frames() {
    let mut t = mixed_room();
    t.send("js", r#"{"type":"subscribe","channel":"lobby"}"#);
    let out = t.transcript();
    let id = out
        .iter()
        .find_map(|l| l.strip_prefix("sig <- /announce|"))
        .and_then(|rest| rest.split('|').next())
        .expect("sig saw js announce")
        .to_owned();
    t.send(
        "js",
        r#"{"type":"publish","channel":"lobby","data":{"text":"a|b"}}"#,
    );
    assert_eq!(
        t.transcript(),
        [format!(r#"sig <- /message|{id}|{{"text":"a\u007cb"}}"#)]
    );
    // Direct both ways.
    t.send("js", r#"{"type":"send","to":"sig","data":[1,2]}"#);
    assert_eq!(
        t.transcript(),
        [format!("sig <- /to|sig|/message|{id}|[1,2]")]
    );
    t.send("sig", &format!(r#"/to|{id}|/offer|sig|{{"sdp":"v=0"}}"#));
    assert_eq!(
        t.transcript(),
        [
            r#"js <- {"type":"direct","from":"sig","data":{"args":[{"sdp":"v=0"}],"command":"offer"},"fromMetadata":{"id":"sig","nick":"S","room":"lobby"}}"#
        ]
    );
    // The JSON peer unsubscribes: the signaller peer sees a leave.
    t.send("js", r#"{"type":"unsubscribe","channel":"lobby"}"#);
    assert_eq!(
        t.transcript(),
        [format!(r#"sig <- /leave|{id}|{{"id":"{id}"}}"#)]
    );
}

#[test]
fn wildcard_json_subscribers_see_signaller_rooms_traffic() {
    let mut t = TestHub::with_config(Config::default());
    t.connect("sig", Dialect::Signaller);
    t.connect("watch", Dialect::Json);
    t.send("watch", r#"{"type":"subscribe","channel":"rooms/*"}"#);
    t.send("sig", r#"/announce|sig|{"id":"sig","room":"rooms/a"}"#);
    t.transcript();
    t.send("sig", r#"/x|sig|1"#);
    assert_eq!(
        t.transcript(),
        [
            r#"watch <- {"type":"message","channel":"rooms/a","from":"sig","data":{"args":[1],"command":"x"}}"#
        ]
    );
}

#[test]
fn token_bound_signaller_peers_must_announce_their_sub() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("sig", Dialect::Signaller, &token_for("alice", &["lobby"]));
    t.send(
        "sig",
        r#"/announce|mallory|{"id":"mallory","room":"lobby"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /error|{"code":"sender_mismatch","message":"this connection is bound to another peer id"}"#
        ]
    );
    t.send(
        "sig",
        r#"/announce|alice|{"id":"alice","room":"elsewhere"}"#,
    );
    assert_eq!(
        t.transcript(),
        [r#"sig <- /error|{"code":"channel_not_authorized","message":"room not in your grants"}"#]
    );
    t.send("sig", r#"/announce|alice|{"id":"alice","room":"lobby"}"#);
    assert_eq!(t.transcript(), [r#"sig <- /roominfo|{"memberCount":1}"#]);
}

#[test]
fn signaller_peers_can_authenticate_in_band_with_an_announce_token() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect("sig", Dialect::Signaller);
    t.send("sig", r#"/chat|x|hi"#);
    assert_eq!(
        t.transcript(),
        [r#"sig <- /error|{"code":"unauthenticated","message":"authenticate first"}"#]
    );
    let token = token_for("alice", &["lobby"]);
    t.send(
        "sig",
        &format!(r#"/announce|alice|{{"id":"alice","room":"lobby","token":"{token}"}}"#),
    );
    assert_eq!(t.transcript(), [r#"sig <- /roominfo|{"memberCount":1}"#]);
    // A refused token is answered, not closed: the v6 client reconnects 50 ms after any
    // close and would repeat the same token forever.
    t.connect("bad", Dialect::Signaller);
    t.send(
        "bad",
        r#"/announce|b|{"id":"b","room":"lobby","token":"nope"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bad <- /error|{"code":"invalid_token","message":"announce token refused: malformed token"}"#
        ]
    );
    let expired = token_with(json!({"sub": "b", "channels": ["lobby"], "exp": TEST_UNIX - 60}));
    t.send(
        "bad",
        &format!(r#"/announce|b|{{"id":"b","room":"lobby","token":"{expired}"}}"#),
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bad <- /error|{"code":"token_expired","message":"announce token refused: token expired"}"#
        ]
    );
    // It still has to authenticate in time.
    t.advance(std::time::Duration::from_secs(10));
    assert_eq!(
        t.transcript(),
        ["bad closed 4001 no credentials within the auth timeout"]
    );
}

#[test]
fn an_announce_token_is_checked_even_where_anonymous_peers_are_allowed() {
    let mut config = keyed_config();
    config.auth.anonymous = Some(switchyard_core::config::Grant::everything());
    let mut t = TestHub::with_config(config);
    t.connect("anon", Dialect::Signaller);
    let expired = token_with(json!({"sub": "a", "channels": ["lobby"], "exp": TEST_UNIX - 60}));
    t.send(
        "anon",
        &format!(r#"/announce|a|{{"id":"a","room":"lobby","token":"{expired}"}}"#),
    );
    assert_eq!(
        t.transcript(),
        [
            r#"anon <- /error|{"code":"token_expired","message":"announce token refused: token expired"}"#
        ]
    );
    // A valid one upgrades the anonymous connection to the token's identity and grants.
    let good = token_with(
        json!({"sub": "a", "channels": ["lobby"], "exp": TEST_UNIX + 60,
        "permissions": ["subscribe"]}),
    );
    t.send(
        "anon",
        &format!(r#"/announce|a|{{"id":"a","room":"lobby","token":"{good}"}}"#),
    );
    assert_eq!(t.transcript(), [r#"anon <- /roominfo|{"memberCount":1}"#]);
    // Its grants are the token's now: no publish permission.
    t.send("anon", "/chat|a|hi");
    assert!(t.transcript()[0].contains("action_not_permitted"));
    // And its token now expires it.
    t.advance(std::time::Duration::from_secs(66));
    assert_eq!(t.transcript(), ["anon closed 4002 token expired"]);
}

#[test]
fn a_token_for_another_peer_cannot_take_over_a_bound_connection() {
    let mut t = TestHub::with_config(keyed_config());
    t.connect_token("sig", Dialect::Signaller, &token_for("alice", &["lobby"]));
    let mallory = token_for("mallory", &["lobby"]);
    t.send(
        "sig",
        &format!(r#"/announce|alice|{{"id":"alice","room":"lobby","token":"{mallory}"}}"#),
    );
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /error|{"code":"sender_mismatch","message":"the token is for another peer id"}"#
        ]
    );
}

// ------------------------------------------------------------- The Broadcaster

/// sig (rtc-signaller, announced into "lobby"), js (JSON, subscribed) and bc (The
/// Broadcaster, authenticated in band and subscribed). JSON and rtc-signaller peers
/// are anonymous; the Broadcaster one has a token for the `broadcaster` audience.
fn three_dialects() -> TestHub {
    let mut config = Config::default();
    config.auth.keys = vec![switchyard_core::testing::test_key()];
    let mut t = TestHub::with_config(config);
    t.connect("sig", Dialect::Signaller);
    t.send("sig", r#"/announce|sig|{"id":"sig","room":"lobby"}"#);
    t.connect("js", Dialect::Json);
    t.send("js", r#"{"type":"subscribe","channel":"lobby"}"#);
    t.connect("bc", Dialect::Broadcaster);
    let token = token_with(json!({
        "sub": "bc", "aud": "broadcaster", "authorizedChannels": ["lobby"],
        "scope": ["subscribe", "publish"], "exp": TEST_UNIX + 3600,
    }));
    t.send(
        "bc",
        &format!(r#"{{"id":1,"method":"auth","params":{{"token":"{token}"}}}}"#),
    );
    t.send(
        "bc",
        r#"{"id":2,"method":"subscribe","params":{"channel":"lobby"}}"#,
    );
    t
}

const T0: &str = "2023-11-14T22:13:20.000Z";

#[test]
fn a_broadcaster_subscriber_appears_to_json_presence_and_to_signaller_peers() {
    let mut t = three_dialects();
    let out = t.transcript();
    let tail: Vec<&str> = out.iter().rev().take(3).rev().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            r#"bc <- {"requestId":2,"result":{"subscriptionId":"sub-c5ffbc7926464b02","timestamp":"2023-11-14T22:13:20.000Z"}}"#,
            r#"sig <- /announce|bc|{"id":"bc","room":"lobby"}"#,
            r#"js <- {"type":"presence","channel":"lobby","joined":[{"peerId":"bc","metadata":{}}],"left":[],"count":3}"#,
        ]
    );
    // And leaves like anyone else, with no presence of its own to receive.
    t.hard_close("bc");
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /leave|bc|{"id":"bc"}"#,
            r#"js <- {"type":"presence","channel":"lobby","joined":[],"left":[{"peerId":"bc"}],"count":2}"#,
        ]
    );
}

#[test]
fn a_broadcaster_publish_reaches_json_with_its_event_and_signaller_as_a_message() {
    let mut t = three_dialects();
    t.transcript();
    t.send(
        "bc",
        r#"{"id":3,"method":"publish","params":{"channel":"lobby","event":"chat","payload":{"text":"a|b"}}}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /message|bc|{"text":"a\u007cb"}|"chat""#.to_owned(),
            r#"js <- {"type":"message","channel":"lobby","from":"bc","data":{"text":"a|b"},"event":"chat"}"#.to_owned(),
            format!(r#"bc <- {{"requestId":3,"result":{{"id":"msg-fdf6bd54eb94deba","createTime":"{T0}"}}}}"#),
        ]
    );
}

#[test]
fn json_and_signaller_traffic_reaches_broadcaster_subscribers_as_event_message() {
    let mut t = three_dialects();
    t.transcript();
    t.send(
        "js",
        r#"{"type":"publish","channel":"lobby","data":[1,"x"]}"#,
    );
    t.send("sig", r#"/chat|sig|{"text":"hi"}|2"#);
    let push = |seq: u64, id: &str, payload: &str| {
        format!(
            r#"bc <- {{"method":"message","params":{{"id":"{id}","seq":{seq},"createTime":"{T0}","channel":"lobby","event":"message","payload":{payload}}}}}"#
        )
    };
    assert_eq!(
        t.transcript(),
        [
            // The anonymous JSON peer's id is server-made (seeded, so stable).
            r#"sig <- /message|9a6f4c34-6953-4b1b-90a1-aa68d3e7e8c9|[1,"x"]"#.to_owned(),
            push(1, "msg-fdf6bd54eb94deba", r#"[1,"x"]"#),
            r#"js <- {"type":"message","channel":"lobby","from":"sig","data":{"args":[{"text":"hi"},2],"command":"chat"}}"#.to_owned(),
            push(2, "msg-0c5e16bf5fb8b0a0", r#"{"args":[{"text":"hi"},2],"command":"chat"}"#),
        ]
    );
}

#[test]
fn a_server_publish_with_an_event_reaches_every_dialect_with_one_id() {
    let mut t = three_dialects();
    t.transcript();
    let now = t.now;
    let published = t
        .hub
        .publish_event(
            now,
            "default",
            "lobby",
            Some("news"),
            Bytes::from_static(b"{\"n\":1}"),
        )
        .expect("valid publish");
    t.collect_outputs();
    assert_eq!(published.deliveries, 3);
    assert_eq!(published.stamp.id(), "msg-fdf6bd54eb94deba");
    assert_eq!(published.stamp.create_time(), T0);
    assert_eq!(
        t.transcript(),
        [
            r#"sig <- /message|_server|{"n":1}|"news""#.to_owned(),
            r#"js <- {"type":"message","channel":"lobby","from":"_server","data":{"n":1},"event":"news"}"#.to_owned(),
            format!(
                r#"bc <- {{"method":"message","params":{{"id":"msg-fdf6bd54eb94deba","seq":1,"createTime":"{T0}","channel":"lobby","event":"news","payload":{{"n":1}}}}}}"#
            ),
        ]
    );
}

#[test]
fn broadcaster_peers_are_not_targets_of_direct_messages() {
    let mut t = three_dialects();
    t.transcript();
    t.send(
        "js",
        r#"{"type":"send","to":"bc","data":1,"requestId":"d"}"#,
    );
    t.send("sig", "/to|bc|/hello|sig|{}");
    assert_eq!(
        t.transcript(),
        [
            r#"js <- {"type":"error","code":"peer_not_found","message":"no such peer is connected","requestId":"d"}"#,
            r#"sig <- /error|{"code":"peer_not_found","message":"no such peer in your room"}"#,
        ]
    );
}
