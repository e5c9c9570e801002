//! History on a cluster: the stream lives with the engine, shared by the nodes. Two
//! hubs and a small in-memory engine (numbering, storing, answering recover
//! requests, as `docs/cluster.md` says the Redis engine does), plus hand-fed answers
//! for the orderings at the seam.

use std::time::Duration;

use serde_json::Value;
use switchyard_core::Dialect;
use switchyard_core::HistoryRule;
use switchyard_core::cluster::{Outbound, Publication, Recovered, RemoteEvent};
use switchyard_core::testing::{TestHub, keyed_config, token_for};

fn node() -> TestHub {
    let mut config = keyed_config();
    config.cluster = true;
    config.history = vec![HistoryRule {
        channels: "rooms/**".into(),
        size: 50,
        ttl: Duration::from_secs(60),
    }];
    TestHub::with_config(config)
}

fn connect(t: &mut TestHub, name: &str) {
    t.connect_token(name, Dialect::Json, &token_for(name, &["rooms/**"]));
    t.take(name);
}

fn frames(t: &mut TestHub, name: &str) -> Vec<Value> {
    t.take(name)
        .iter()
        .map(|f| serde_json::from_str(f).unwrap())
        .collect()
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames
        .iter()
        .filter(|f| f["type"] == "message")
        .map(|f| f["offset"].as_u64().unwrap())
        .collect()
}

fn subscribe(t: &mut TestHub, name: &str, recover: Option<(u64, &str)>) {
    let recover = recover.map_or(String::new(), |(offset, epoch)| {
        format!(r#","recover":{{"offset":{offset},"epoch":"{epoch}"}}"#)
    });
    t.send(
        name,
        &format!(r#"{{"type":"subscribe","channel":"rooms/x","requestId":"s"{recover}}}"#),
    );
}

fn publish(t: &mut TestHub, name: &str, n: u64) {
    t.send(
        name,
        &format!(r#"{{"type":"publish","channel":"rooms/x","data":{{"n":{n}}}}}"#),
    );
}

/// The engine: one shared stream, numbering and storing what nodes hand it.
#[derive(Default)]
struct Engine {
    stream: Vec<Publication>,
    top: u64,
}

const EPOCH: &str = "e1";

impl Engine {
    /// Carries everything both nodes emitted until they are quiet.
    fn pump(&mut self, nodes: &mut [(&str, &mut TestHub)]) {
        loop {
            let mut quiet = true;
            for i in 0..nodes.len() {
                for out in nodes[i].1.cluster_outputs() {
                    quiet = false;
                    self.carry(nodes, i, out);
                }
            }
            if quiet {
                return;
            }
        }
    }

    fn carry(&mut self, nodes: &mut [(&str, &mut TestHub)], from: usize, out: Outbound) {
        let name = nodes[from].0;
        match out {
            Outbound::Publish(mut p) if p.history.is_some() => {
                self.top += 1;
                p.offset = Some(self.top);
                p.epoch = Some(EPOCH.into());
                self.stream.push(p.clone());
                for (i, (_, hub)) in nodes.iter_mut().enumerate() {
                    if i == from {
                        hub.remote(name, RemoteEvent::Stored(p.clone()));
                    } else {
                        let mut other = p.clone();
                        other.origin_conn = None;
                        hub.remote(name, RemoteEvent::Changed(Outbound::Publish(other)));
                    }
                }
            }
            Outbound::Recover(r) => {
                let reply = self.answer(r.request, r.since);
                nodes[from].1.remote(name, RemoteEvent::Recovered(reply));
            }
            other => {
                for (i, (_, hub)) in nodes.iter_mut().enumerate() {
                    if i != from {
                        hub.remote(name, RemoteEvent::Changed(other.clone()));
                    }
                }
            }
        }
    }

    fn answer(&self, request: u64, since: Option<u64>) -> Recovered {
        Recovered {
            request,
            epoch: EPOCH.into(),
            offset: self.top,
            publications: since.map_or_else(Vec::new, |s| {
                self.stream
                    .iter()
                    .filter(|p| p.offset.unwrap() > s)
                    .cloned()
                    .collect()
            }),
            error: None,
        }
    }
}

#[test]
fn messages_go_through_the_shared_stream_and_a_client_recovers_on_another_node() {
    let (mut a, mut b) = (node(), node());
    let mut engine = Engine::default();
    connect(&mut a, "alice");
    connect(&mut a, "bob");
    connect(&mut b, "dave");
    subscribe(&mut a, "alice", None);
    subscribe(&mut a, "bob", None);
    subscribe(&mut b, "dave", None);
    // The ack waits for the engine to say where the stream stands.
    assert!(frames(&mut a, "bob").iter().all(|f| f["type"] != "ack"));
    engine.pump(&mut [("a", &mut a), ("b", &mut b)]);
    let acks = frames(&mut a, "bob");
    let ack = acks.iter().find(|f| f["type"] == "ack").expect("acked");
    assert_eq!(
        (ack["offset"].clone(), ack["epoch"].clone()),
        (0.into(), EPOCH.into())
    );
    frames(&mut a, "alice");
    frames(&mut b, "dave");

    for n in 1..=3 {
        publish(&mut a, "alice", n);
    }
    // Nothing is delivered before the engine numbered it, not even on this node.
    assert!(offsets(&frames(&mut a, "bob")).is_empty());
    engine.pump(&mut [("a", &mut a), ("b", &mut b)]);
    assert_eq!(offsets(&frames(&mut a, "bob")), [1, 2, 3]);
    assert_eq!(offsets(&frames(&mut b, "dave")), [1, 2, 3]);
    assert!(
        offsets(&frames(&mut a, "alice")).is_empty(),
        "never the publisher"
    );

    // bob goes; 4..=6 are published; he comes back on node b.
    a.hard_close("bob");
    for n in 4..=6 {
        publish(&mut a, "alice", n);
    }
    engine.pump(&mut [("a", &mut a), ("b", &mut b)]);
    connect(&mut b, "bob2");
    subscribe(&mut b, "bob2", Some((3, EPOCH)));
    engine.pump(&mut [("a", &mut a), ("b", &mut b)]);
    let got = frames(&mut b, "bob2");
    assert_eq!(offsets(&got), [4, 5, 6]);
    let ack = got.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(ack["recovered"], true);
    assert_eq!(ack["offset"], 6);
    publish(&mut a, "alice", 7);
    engine.pump(&mut [("a", &mut a), ("b", &mut b)]);
    assert_eq!(offsets(&frames(&mut b, "bob2")), [7]);
}

/// A numbered message as node `b` would carry it to node `a`.
fn stored(offset: u64) -> Publication {
    Publication {
        tenant: "default".into(),
        channel: "rooms/x".into(),
        from: "zed".into(),
        meta: serde_json::Map::new(),
        payload: switchyard_core::cluster::Payload::Json {
            data: format!(r#"{{"n":{offset}}}"#),
        },
        event: None,
        number: offset,
        unix_ms: switchyard_core::testing::TEST_UNIX_MS,
        original: None,
        history: None,
        offset: Some(offset),
        epoch: Some(EPOCH.into()),
        origin_conn: None,
    }
}

fn live(t: &mut TestHub, offset: u64) {
    t.remote("b", RemoteEvent::Changed(Outbound::Publish(stored(offset))));
}

/// Subscribes carol recovering from 1 and returns the request number asked.
fn recovering_carol(t: &mut TestHub) -> u64 {
    connect(t, "carol");
    subscribe(t, "carol", Some((1, EPOCH)));
    let asked: Vec<_> = t
        .cluster_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Outbound::Recover(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0].since, Some(1));
    asked[0].request
}

#[test]
fn live_messages_before_the_answer_are_held_and_those_already_replayed_dropped() {
    let mut t = node();
    let request = recovering_carol(&mut t);
    frames(&mut t, "carol");
    // 2 and 3 arrive live before the engine's answer (read after 3 was stored).
    live(&mut t, 2);
    live(&mut t, 3);
    let before = frames(&mut t, "carol");
    assert!(
        offsets(&before).is_empty(),
        "held until the answer: {before:?}"
    );
    let reply = Recovered {
        request,
        epoch: EPOCH.into(),
        offset: 3,
        publications: vec![stored(2), stored(3)],
        error: None,
    };
    t.remote("b", RemoteEvent::Recovered(reply));
    live(&mut t, 4);
    let got = frames(&mut t, "carol");
    let kinds: Vec<&str> = got.iter().map(|f| f["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["message", "message", "ack", "message"]);
    assert_eq!(offsets(&got), [2, 3, 4], "no duplicate, no gap");
}

#[test]
fn live_messages_lagging_behind_the_answer_are_not_delivered_twice() {
    let mut t = node();
    let request = recovering_carol(&mut t);
    let reply = Recovered {
        request,
        epoch: EPOCH.into(),
        offset: 3,
        publications: vec![stored(2), stored(3)],
        error: None,
    };
    t.remote("b", RemoteEvent::Recovered(reply));
    // The bus delivers 2 and 3 only now, then 4.
    for n in [2, 3, 4, 5] {
        live(&mut t, n);
    }
    assert_eq!(offsets(&frames(&mut t, "carol")), [2, 3, 4, 5]);
}

#[test]
fn an_engine_error_or_a_gap_in_the_answer_is_not_recovered() {
    let mut t = node();
    let request = recovering_carol(&mut t);
    let reply = Recovered {
        request,
        epoch: String::new(),
        offset: 0,
        publications: Vec::new(),
        error: Some("not connected".into()),
    };
    t.remote("b", RemoteEvent::Recovered(reply));
    let got = frames(&mut t, "carol");
    let ack = got.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(ack["recovered"], false);
    t.hard_close("carol");

    let request = recovering_carol(&mut t);
    // 2 was trimmed away: only 3 is left, so 2 cannot be recovered.
    let reply = Recovered {
        request,
        epoch: EPOCH.into(),
        offset: 3,
        publications: vec![stored(3)],
        error: None,
    };
    t.remote("b", RemoteEvent::Recovered(reply));
    let got = frames(&mut t, "carol");
    assert!(offsets(&got).is_empty(), "nothing replayed: {got:?}");
    let ack = got.iter().find(|f| f["type"] == "ack").unwrap();
    assert_eq!(
        (ack["recovered"].clone(), ack["offset"].clone()),
        (false.into(), 3.into())
    );
    live(&mut t, 4);
    assert_eq!(offsets(&frames(&mut t, "carol")), [4]);
}

/// Every interleaving of the engine's answer with live deliveries, against a plain
/// account: the recovering subscriber gets each offset after its position exactly
/// once, in order, whatever arrives first. The bus delivers offsets in order; the
/// engine read the stream when Redis had stored `read_at` of them, and its answer
/// reaches the hub after `k` bus deliveries (`k` below `read_at`: the bus lagged
/// behind the read; above: newer messages overtook the answer).
#[test]
fn the_seam_has_no_gap_and_no_duplicate_in_any_interleaving() {
    let since = 1;
    for total in 2..=8u64 {
        for read_at in since..=total {
            for k in since..=total {
                let mut t = node();
                let request = recovering_carol(&mut t);
                frames(&mut t, "carol");
                for n in (since + 1)..=k {
                    live(&mut t, n);
                }
                let reply = Recovered {
                    request,
                    epoch: EPOCH.into(),
                    offset: read_at,
                    publications: ((since + 1)..=read_at).map(stored).collect(),
                    error: None,
                };
                t.remote("b", RemoteEvent::Recovered(reply));
                for n in (k + 1)..=total {
                    live(&mut t, n);
                }
                let got = offsets(&frames(&mut t, "carol"));
                let want: Vec<u64> = ((since + 1)..=total).collect();
                assert_eq!(
                    got, want,
                    "total {total}, read at {read_at}, answer after {k} bus deliveries"
                );
            }
        }
    }
}

#[test]
fn a_publisher_is_acked_once_the_engine_stored_its_message_or_told_it_was_not() {
    let mut t = node();
    connect(&mut t, "alice");
    let send = |t: &mut TestHub, rid: &str| {
        t.send(
            "alice",
            &format!(r#"{{"type":"publish","channel":"rooms/x","data":1,"requestId":"{rid}"}}"#),
        );
    };
    let handed = |t: &mut TestHub| -> Publication {
        let mut out = t.cluster_outputs().into_iter().filter_map(|o| match o {
            Outbound::Publish(p) => Some(p),
            _ => None,
        });
        out.next().expect("the publication for the engine")
    };
    send(&mut t, "p1");
    assert!(
        t.take("alice").is_empty(),
        "no ack before the engine stored it"
    );
    let mut p = handed(&mut t);
    p.offset = Some(1);
    p.epoch = Some(EPOCH.into());
    t.remote("a", RemoteEvent::Stored(p));
    assert_eq!(t.take("alice"), [r#"{"type":"ack","requestId":"p1"}"#]);

    send(&mut t, "p2");
    let p = handed(&mut t);
    t.remote("a", RemoteEvent::NotStored(p));
    let got = frames(&mut t, "alice");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (got[0]["code"].clone(), got[0]["requestId"].clone()),
        ("unavailable".into(), "p2".into())
    );

    // A publisher gone before the answer: nothing to answer, nothing left waiting.
    send(&mut t, "p3");
    let mut p = handed(&mut t);
    t.hard_close("alice");
    p.offset = Some(2);
    p.epoch = Some(EPOCH.into());
    t.remote("a", RemoteEvent::Stored(p));
    t.hub().check_invariants();
}
