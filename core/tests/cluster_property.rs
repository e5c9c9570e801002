//! Seeded random operations on two hubs wired as two nodes: after every step (and the
//! cluster traffic it causes) both nodes' presence of every channel must equal the
//! ground truth: the peers with a live connection in it on either node, after room
//! take-overs; and every JSON subscriber's view, built from the presence frames it was
//! sent, must show the same peers but its own. The invariant checker runs after every
//! input of either hub.
//! `SWITCHYARD_CLUSTER_SEED=<n>` reruns one case; `SWITCHYARD_CLUSTER_CASES` runs more.

use std::collections::{BTreeMap, BTreeSet};

use switchyard_core::Dialect;
use switchyard_core::cluster::RemoteEvent;
use switchyard_core::testing::{TestHub, keyed_config, token_for};

const CHANNELS: [&str; 2] = ["r0", "r1"];
const PEERS: [&str; 4] = ["p0", "p1", "p2", "p3"];

/// splitmix64: a small deterministic generator for the test's choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The ground truth of one connection.
struct Conn {
    node: usize,
    rtc: bool,
    peer: &'static str,
    /// The rtc-signaller room, or the JSON channels.
    channels: BTreeSet<&'static str>,
    /// A JSON connection's view of each channel's other peers, from the presence
    /// frames it was sent.
    views: BTreeMap<String, BTreeSet<String>>,
}

struct World {
    nodes: [TestHub; 2],
    conns: BTreeMap<String, Conn>,
    next: usize,
    trace: Vec<String>,
}

impl World {
    fn new() -> Self {
        let node = || {
            let mut config = keyed_config();
            config.cluster = true;
            config.auth.anonymous = switchyard_core::Config::default().auth.anonymous;
            config.limits.message_rate = 100_000;
            config.limits.message_burst = 100_000;
            TestHub::with_config(config)
        };
        Self {
            nodes: [node(), node()],
            conns: BTreeMap::new(),
            next: 0,
            trace: Vec::new(),
        }
    }

    fn pump(&mut self) {
        loop {
            let from: [Vec<_>; 2] = [
                self.nodes[0].cluster_outputs(),
                self.nodes[1].cluster_outputs(),
            ];
            if from.iter().all(Vec::is_empty) {
                break;
            }
            for (i, outs) in from.into_iter().enumerate() {
                let (name, other) = (["a", "b"][i], 1 - i);
                for out in outs {
                    self.nodes[other].remote(name, RemoteEvent::Changed(out));
                }
            }
        }
        for (name, c) in &mut self.conns {
            for frame in self.nodes[c.node].take(name) {
                let v = match serde_json::from_str::<serde_json::Value>(&frame) {
                    Ok(v) if v["type"] == "presence" => v,
                    _ => continue,
                };
                let channel = v["channel"].as_str().expect("channel").to_owned();
                let ids = |key: &str| -> Vec<String> {
                    v[key]
                        .as_array()
                        .expect("list")
                        .iter()
                        .map(|e| e["peerId"].as_str().expect("peerId").to_owned())
                        .collect()
                };
                let view = c.views.entry(channel).or_default();
                if v["snapshot"] == true {
                    view.clear();
                }
                view.extend(ids("joined"));
                for left in ids("left") {
                    view.remove(&left);
                }
            }
        }
        for n in &mut self.nodes {
            n.transcript();
        }
    }

    fn step(&mut self, rng: &mut Rng) {
        let names: Vec<String> = self.conns.keys().cloned().collect();
        let pick = |rng: &mut Rng| names[rng.below(names.len())].clone();
        match rng.below(10) {
            0 | 1 if self.conns.len() < 8 => {
                let (node, rtc) = (rng.below(2), rng.below(2) == 0);
                let peer = PEERS[rng.below(PEERS.len())];
                let name = format!("c{}", self.next);
                self.next += 1;
                self.trace
                    .push(format!("{name}: {peer} on node {node}, rtc {rtc}"));
                if rtc {
                    self.nodes[node].connect(&name, Dialect::Signaller);
                } else {
                    let token = token_for(peer, &["**"]);
                    self.nodes[node].connect_token(&name, Dialect::Json, &token);
                }
                let channels = BTreeSet::new();
                self.conns.insert(
                    name,
                    Conn {
                        node,
                        rtc,
                        peer,
                        channels,
                        views: BTreeMap::new(),
                    },
                );
            }
            _ if names.is_empty() => {}
            2..=4 => {
                let name = pick(rng);
                let channel = CHANNELS[rng.below(2)];
                let c = &self.conns[&name];
                self.trace.push(format!("{name} joins {channel}"));
                let (node, rtc, peer) = (c.node, c.rtc, c.peer);
                if rtc {
                    let frame = format!(r#"/announce|{peer}|{{"id":"{peer}","room":"{channel}"}}"#);
                    self.nodes[node].send(&name, &frame);
                    // The newest room connection of an id takes the room over.
                    for (other, o) in &mut self.conns {
                        if *other != name && o.rtc && o.peer == peer && o.channels.contains(channel)
                        {
                            o.channels.clear();
                        }
                    }
                    let c = self.conns.get_mut(&name).expect("picked");
                    c.channels = BTreeSet::from([channel]);
                } else {
                    let frame = format!(r#"{{"type":"subscribe","channel":"{channel}"}}"#);
                    self.nodes[node].send(&name, &frame);
                    self.conns
                        .get_mut(&name)
                        .expect("picked")
                        .channels
                        .insert(channel);
                }
            }
            5 | 6 => {
                let name = pick(rng);
                let c = self.conns.get_mut(&name).expect("picked");
                let channel = CHANNELS[rng.below(2)];
                self.trace.push(format!("{name} leaves {channel}"));
                if c.rtc {
                    if c.channels.remove(channel) {
                        let frame = format!(r#"/leave|{}|{{"id":"{}"}}"#, c.peer, c.peer);
                        self.nodes[c.node].send(&name, &frame);
                    }
                } else {
                    c.channels.remove(channel);
                    c.views.remove(channel);
                    let frame = format!(r#"{{"type":"unsubscribe","channel":"{channel}"}}"#);
                    self.nodes[c.node].send(&name, &frame);
                }
            }
            7 | 8 => {
                let name = pick(rng);
                let c = self.conns.remove(&name).expect("picked");
                self.trace.push(format!("{name} closes"));
                self.nodes[c.node].hard_close(&name);
            }
            _ => {
                // Node b loses node a (a heartbeat missed) and hears its state again.
                self.trace.push("b forgets a, then reads its state".into());
                self.nodes[1].remote("a", RemoteEvent::Gone);
                let state = self.nodes[0].hub().node_state();
                self.nodes[1].remote("a", RemoteEvent::State(state));
            }
        }
        self.pump();
    }

    fn check(&self, seed: u64) {
        for channel in CHANNELS {
            let truth: BTreeSet<&str> = self
                .conns
                .values()
                .filter(|c| c.channels.contains(channel))
                .map(|c| c.peer)
                .collect();
            for (name, c) in &self.conns {
                if c.rtc || !c.channels.contains(channel) {
                    continue;
                }
                let view: BTreeSet<&str> = c
                    .views
                    .get(channel)
                    .into_iter()
                    .flatten()
                    .map(String::as_str)
                    .collect();
                let others: BTreeSet<&str> =
                    truth.iter().copied().filter(|p| *p != c.peer).collect();
                assert_eq!(
                    view,
                    others,
                    "seed {seed}: {name} ({}) was told the wrong presence of {channel}; trace:\n{}",
                    c.peer,
                    self.trace.join("\n")
                );
            }
            for (i, node) in self.nodes.iter().enumerate() {
                let seen: BTreeSet<String> = node
                    .hub()
                    .presence("default", channel)
                    .into_iter()
                    .map(|(p, _)| p.as_str().to_owned())
                    .collect();
                let seen: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
                assert_eq!(
                    seen,
                    truth,
                    "seed {seed}: node {} shows the wrong presence of {channel}; trace:\n{}",
                    ["a", "b"][i],
                    self.trace.join("\n")
                );
            }
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn presence_converges_on_both_nodes_after_every_step() {
    let seeds: Vec<u64> = match env_u64("SWITCHYARD_CLUSTER_SEED") {
        Some(seed) => vec![seed],
        None => (0..env_u64("SWITCHYARD_CLUSTER_CASES").unwrap_or(150)).collect(),
    };
    for seed in seeds {
        let mut rng = Rng(seed);
        let mut world = World::new();
        for _ in 0..60 {
            world.step(&mut rng);
            world.check(seed);
        }
    }
}
