//! History and recovery: offsets on messages of channels a rule keeps, positions in
//! subscribe acks, replay of what a reconnecting client missed, and the bounds.

use std::time::Duration;

use serde_json::Value;
use switchyard_core::testing::{TestHub, keyed_config, token_for};
use switchyard_core::{ControlError, Dialect, HistoryRule};

/// A keyed hub whose `rooms/**` channels keep `size` messages for `ttl`.
fn hub(size: usize, ttl: Duration, names: &[&str]) -> TestHub {
    let mut config = keyed_config();
    config.history = vec![HistoryRule {
        channels: "rooms/**".into(),
        size,
        ttl,
    }];
    let mut t = TestHub::with_config(config);
    for n in names {
        connect(&mut t, n);
    }
    t
}

fn connect(t: &mut TestHub, name: &str) {
    t.connect_token(
        name,
        Dialect::Json,
        &token_for(name, &["room-1", "rooms/**"]),
    );
    t.take(name);
}

fn json(frame: &str) -> Value {
    serde_json::from_str(frame).expect("frames are JSON")
}

/// Subscribes `name` (optionally recovering) and returns every frame it got.
fn subscribe(
    t: &mut TestHub,
    name: &str,
    channel: &str,
    recover: Option<(u64, &str)>,
) -> Vec<Value> {
    let recover = recover.map_or(String::new(), |(offset, epoch)| {
        format!(r#","recover":{{"offset":{offset},"epoch":"{epoch}"}}"#)
    });
    t.send(
        name,
        &format!(r#"{{"type":"subscribe","channel":"{channel}","requestId":"s"{recover}}}"#),
    );
    t.take(name).iter().map(|f| json(f)).collect()
}

fn publish(t: &mut TestHub, name: &str, channel: &str, n: u64) {
    t.send(
        name,
        &format!(r#"{{"type":"publish","channel":"{channel}","data":{{"n":{n}}}}}"#),
    );
}

/// The `(data.n, offset)` of each `message` frame.
fn messages(frames: &[Value]) -> Vec<(u64, u64)> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| {
            (
                f["data"]["n"].as_u64().unwrap(),
                f["offset"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn ack(frames: &[Value]) -> &Value {
    frames.iter().find(|f| f["type"] == "ack").expect("an ack")
}

#[test]
fn a_history_channel_numbers_messages_and_a_returning_client_gets_exactly_what_it_missed() {
    let mut t = hub(100, Duration::from_secs(60), &["alice", "bob"]);
    subscribe(&mut t, "alice", "rooms/x", None);
    let first = subscribe(&mut t, "bob", "rooms/x", None);
    let a = ack(&first);
    assert_eq!(a["offset"], 0, "{a}");
    let epoch = a["epoch"].as_str().expect("an epoch").to_owned();
    assert!(a.get("recovered").is_none(), "{a}");
    for n in 1..=5 {
        publish(&mut t, "alice", "rooms/x", n);
    }
    let got = t.take("bob").iter().map(|f| json(f)).collect::<Vec<_>>();
    assert_eq!(messages(&got), (1..=5).map(|n| (n, n)).collect::<Vec<_>>());

    t.hard_close("bob");
    for n in 6..=8 {
        publish(&mut t, "alice", "rooms/x", n);
    }
    connect(&mut t, "bob2");
    let frames = subscribe(&mut t, "bob2", "rooms/x", Some((5, &epoch)));
    // The missed messages, in order, then the ack, then the presence snapshot.
    let kinds: Vec<&str> = frames.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "message", "message", "ack", "presence"]);
    assert_eq!(messages(&frames), [(6, 6), (7, 7), (8, 8)]);
    let a = ack(&frames);
    assert_eq!(
        (a["recovered"].clone(), a["offset"].clone()),
        (true.into(), 8.into())
    );
    assert_eq!(a["epoch"], epoch.as_str());
    publish(&mut t, "alice", "rooms/x", 9);
    let live = t.take("bob2").iter().map(|f| json(f)).collect::<Vec<_>>();
    assert_eq!(
        messages(&live),
        [(9, 9)],
        "live after the seam, no gap, no duplicate"
    );
}

#[test]
fn too_old_another_epoch_or_a_future_offset_is_not_recovered_and_nothing_is_replayed() {
    let mut t = hub(3, Duration::from_secs(60), &["alice", "bob"]);
    let epoch = ack(&subscribe(&mut t, "bob", "rooms/x", None))["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=10 {
        publish(&mut t, "alice", "rooms/x", n);
    }
    t.take("bob");
    for (offset, epoch, recovered) in [
        (2, epoch.as_str(), false),  // 3..=7 are gone
        (6, epoch.as_str(), false),  // 7 is gone
        (7, epoch.as_str(), true),   // 8, 9, 10 kept
        (10, epoch.as_str(), true),  // nothing missed
        (11, epoch.as_str(), false), // never published
        (7, "another-epoch", false), // another life of the stream
    ] {
        connect(&mut t, "carol");
        let frames = subscribe(&mut t, "carol", "rooms/x", Some((offset, epoch)));
        assert_eq!(
            ack(&frames)["recovered"],
            recovered,
            "from {offset}@{epoch}"
        );
        let replayed = messages(&frames).len();
        let want = if recovered { (10 - offset) as usize } else { 0 };
        assert_eq!(replayed, want, "from {offset}@{epoch}");
        t.hard_close("carol");
    }
}

#[test]
fn channels_without_history_keep_their_frames_and_say_they_cannot_recover() {
    let mut t = hub(10, Duration::from_secs(60), &["alice", "bob"]);
    let frames = subscribe(&mut t, "bob", "room-1", None);
    assert_eq!(
        serde_json::to_string(ack(&frames)).unwrap(),
        r#"{"requestId":"s","type":"ack"}"#
    );
    publish(&mut t, "alice", "room-1", 1);
    assert_eq!(
        t.take("bob"),
        [r#"{"type":"message","channel":"room-1","from":"alice","data":{"n":1}}"#]
    );
    let frames = subscribe(&mut t, "alice", "room-1", Some((0, "e")));
    assert_eq!(
        serde_json::to_string(ack(&frames)).unwrap(),
        r#"{"recovered":false,"requestId":"s","type":"ack"}"#
    );
    // A pattern spans many streams: no position to resume from.
    let frames = subscribe(&mut t, "alice", "rooms/*", Some((0, "e")));
    assert_eq!(ack(&frames)["recovered"], false);
    assert!(ack(&frames).get("epoch").is_none());
}

#[test]
fn a_channels_history_never_exceeds_its_count_or_its_age() {
    let ttl = Duration::from_secs(1);
    let mut t = hub(5, ttl, &["alice"]);
    for n in 1..=20 {
        publish(&mut t, "alice", "rooms/a", n);
        publish(&mut t, "alice", "rooms/b", n);
        assert!(t.hub().stats().history_messages <= 10);
        t.advance(Duration::from_millis(30));
    }
    assert_eq!(t.hub().stats().history_messages, 10);
    assert_eq!(t.hub().stats().history_streams, 2);
    let now = t.now();
    let page = t
        .hub_mut()
        .history(now, "default", "rooms/a", 0, 100)
        .unwrap();
    let offsets: Vec<u64> = page.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [16, 17, 18, 19, 20]);
    // Aged out on the timer the hub asks for, then the idle streams go too.
    t.advance(ttl);
    assert_eq!(t.hub().stats().history_messages, 0);
    t.advance(ttl);
    assert_eq!(t.hub().stats().history_streams, 0);
    // The next life of the stream has another epoch: old positions do not recover.
    connect(&mut t, "bob");
    let frames = subscribe(&mut t, "bob", "rooms/a", Some((20, &page.epoch)));
    assert_eq!(ack(&frames)["recovered"], false);
    assert_ne!(ack(&frames)["epoch"], page.epoch.as_str());
    assert_eq!(ack(&frames)["offset"], 0);
}

#[test]
fn the_control_plane_reads_history_in_pages_and_its_publishes_are_kept_too() {
    let mut t = hub(100, Duration::from_secs(60), &["alice"]);
    for n in 1..=7 {
        publish(&mut t, "alice", "rooms/x", n);
    }
    let now = t.now();
    t.hub_mut()
        .publish(
            now,
            "default",
            "rooms/x",
            bytes::Bytes::from_static(br#"{"n":8}"#),
        )
        .unwrap();
    t.collect_outputs();
    let first = t
        .hub_mut()
        .history(now, "default", "rooms/x", 0, 5)
        .unwrap();
    assert_eq!(first.offset, 8);
    assert_eq!(first.messages.len(), 5);
    let last = first.messages.last().unwrap().offset;
    let second = t
        .hub_mut()
        .history(now, "default", "rooms/x", last, 5)
        .unwrap();
    let offsets: Vec<u64> = second.messages.iter().map(|m| m.offset).collect();
    assert_eq!(offsets, [6, 7, 8]);
    assert_eq!(second.messages[2].from, "_server");
    assert_eq!(&second.messages[2].data[..], br#"{"n":8}"#);
    assert_eq!(
        t.hub_mut().history(now, "default", "room-1", 0, 5),
        Err(ControlError::NoHistory)
    );
    assert!(matches!(
        t.hub_mut().history(now, "default", "rooms/*", 0, 5),
        Err(ControlError::InvalidChannel(_))
    ));
}

#[test]
fn recovering_a_channel_outside_ones_grants_is_refused_before_anything_is_replayed() {
    let mut t = hub(100, Duration::from_secs(60), &["alice"]);
    let epoch = ack(&subscribe(&mut t, "alice", "rooms/secret", None))["epoch"]
        .as_str()
        .unwrap()
        .to_owned();
    for n in 1..=3 {
        publish(&mut t, "alice", "rooms/secret", n);
    }
    // mallory may read room-1 only.
    t.connect_token("mallory", Dialect::Json, &token_for("mallory", &["room-1"]));
    t.take("mallory");
    let frames = subscribe(&mut t, "mallory", "rooms/secret", Some((0, &epoch)));
    assert!(messages(&frames).is_empty(), "{frames:?}");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["code"], "channel_not_authorized");
}
