//! rtc-signaller and JSON peers in one room/channel see each other. The mapping is
//! in `docs/protocol.md` ("Cross-dialect mapping").

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
