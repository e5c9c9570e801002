//! Presence: per peer across its connections, coalesced per tick, and capped.

use std::time::Duration;

use serde_json::json;
use switchyard_core::Dialect;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for, token_with};

use super::subscribe;

#[test]
fn presence_is_per_peer_and_leaves_with_the_last_connection() {
    let mut t = TestHub::with_config(keyed_config());
    let tok = token_for("bob", &["c"]);
    t.connect_token("alice", Dialect::Json, &token_for("alice", &["c"]));
    t.connect_token("bob-phone", Dialect::Json, &tok);
    t.connect_token("bob-laptop", Dialect::Json, &tok);
    subscribe(&mut t, "alice", "c");
    subscribe(&mut t, "bob-phone", "c");
    t.transcript();
    subscribe(&mut t, "bob-laptop", "c");
    // bob was already present: no delta for alice; the snapshot lists alice only.
    assert_eq!(
        t.transcript(),
        [
            r#"bob-laptop <- {"type":"ack","requestId":"s-c"}"#,
            r#"bob-laptop <- {"type":"presence","channel":"c","joined":[{"peerId":"alice","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
        ]
    );
    t.hard_close("bob-phone");
    assert_eq!(t.transcript(), Vec::<String>::new());
    t.send(
        "bob-laptop",
        r#"{"type":"unsubscribe","channel":"c","requestId":"u"}"#,
    );
    assert_eq!(
        t.transcript(),
        [
            r#"bob-laptop <- {"type":"ack","requestId":"u"}"#,
            r#"alice <- {"type":"presence","channel":"c","joined":[],"left":[{"peerId":"bob"}],"count":1}"#,
        ]
    );
}

#[test]
fn presence_deltas_of_one_tick_are_coalesced() {
    let mut t = TestHub::with_config(keyed_config());
    let short = |sub: &str| {
        token_with(json!({"sub": sub, "channels": ["c"], "exp": TEST_UNIX + 10,
            "permissions": ["subscribe", "presence"]}))
    };
    t.connect_token("alice", Dialect::Json, &token_for("alice", &["c"]));
    t.connect_token("bob", Dialect::Json, &short("bob"));
    t.connect_token("carol", Dialect::Json, &short("carol"));
    for n in ["alice", "bob", "carol"] {
        subscribe(&mut t, n, "c");
    }
    t.transcript();
    // Both tokens expire at the same instant: alice gets one frame with both.
    t.advance(Duration::from_secs(16));
    assert_eq!(
        t.transcript(),
        [
            "bob closed 4002 token expired",
            "carol closed 4002 token expired",
            r#"alice <- {"type":"presence","channel":"c","joined":[],"left":[{"peerId":"bob"},{"peerId":"carol"}],"count":1}"#,
        ]
    );
}

#[test]
fn above_the_presence_cap_deltas_stop_and_a_snapshot_resyncs() {
    let mut config = keyed_config();
    config.limits.presence_cap = 2;
    let mut t = TestHub::with_config(config);
    for n in ["a", "b", "c"] {
        t.connect_token(n, Dialect::Json, &token_for(n, &["ch"]));
        subscribe(&mut t, n, "ch");
    }
    let out = t.transcript();
    assert!(out.contains(&r#"a <- {"type":"presence","channel":"ch","joined":[],"left":[],"count":3,"truncated":true}"#.to_owned()), "{out:#?}");
    assert!(out.contains(&r#"c <- {"type":"presence","channel":"ch","joined":[{"peerId":"a","metadata":{}},{"peerId":"b","metadata":{}}],"left":[],"count":3,"snapshot":true,"truncated":true}"#.to_owned()), "{out:#?}");
    t.connect_token("d", Dialect::Json, &token_for("d", &["ch"]));
    subscribe(&mut t, "d", "ch");
    let out = t.transcript();
    assert!(
        out.iter().all(|l| l.starts_with("d <- ")),
        "deltas above the cap: {out:#?}"
    );
    t.hard_close("d");
    t.hard_close("c");
    assert_eq!(
        t.transcript(),
        [
            r#"a <- {"type":"presence","channel":"ch","joined":[{"peerId":"b","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
            r#"b <- {"type":"presence","channel":"ch","joined":[{"peerId":"a","metadata":{}}],"left":[],"count":2,"snapshot":true}"#,
        ]
    );
}
