//! Signalling rooms: R rooms of 2 to P peers. Each round every pair in a room does a
//! WebRTC-style exchange (offer + ICE candidates one way, answer + candidates back,
//! all as direct messages), then one peer per room vanishes with a TCP reset and joins
//! again under a new id. Reports messages/s, latency, the server's CPU per delivery,
//! and whether every departure was announced to the rest of its room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;

use crate::client::{Conn, Event, Target};
use crate::payload::{self, Clock, Kind, Stamp};
use crate::procfs;
use crate::proto::Proto;
use crate::stats::{Latency, Recorder};

/// What to run.
#[derive(Clone, Debug)]
pub struct RoomsOpts {
    /// The server.
    pub target: Target,
    /// Rooms.
    pub rooms: usize,
    /// Largest room; sizes run 2, 3, … up to this, then again.
    pub peers: usize,
    /// Rounds of exchange and churn.
    pub rounds: usize,
    /// Time from one round's start to the next at least (the fixed load).
    pub interval: Duration,
    /// ICE candidates per side of each exchange.
    pub candidates: usize,
    /// Offer and answer size, bytes.
    pub sdp_bytes: usize,
    /// Candidate size, bytes.
    pub candidate_bytes: usize,
    /// The server's pid, for CPU time.
    pub server_pid: Option<u32>,
    /// Wait for every departure to be announced before the peer re-joins (servers that
    /// announce none, like rtc-switchboard, would only make the run wait).
    pub expect_leaves: bool,
}

/// The run's figures.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct RoomsResult {
    /// Rooms.
    pub rooms: usize,
    /// Peers over all rooms.
    pub peers: usize,
    /// Rounds run.
    pub rounds: usize,
    /// Signalling messages expected (offers, answers, candidates).
    pub expected: u64,
    /// Signalling messages delivered.
    pub delivered: u64,
    /// Delivered per second of the whole run (the offered load, paced by the interval).
    pub delivered_per_s: f64,
    /// Delivered per second of exchange (from each round's first offer to its last
    /// delivery): what the server sustains in a burst.
    pub burst_per_s: f64,
    /// Delivery latency.
    pub latency: Latency,
    /// Departures the rest of the room should have been told of.
    pub leaves_expected: u64,
    /// Departure notices (synthetic `/leave`, presence `left`) received.
    pub leaves_received: u64,
    /// Joins (re-joins after a hard close included).
    pub joins: u64,
    /// Server CPU seconds over the run.
    pub server_cpu_s: f64,
    /// Server CPU microseconds per delivered message.
    pub cpu_us_per_delivery: f64,
    /// Errors.
    pub errors: u64,
    /// Seconds.
    pub elapsed_s: f64,
}

/// What the run asks of a peer.
enum Cmd {
    /// Offer (and candidates) to each of these peers.
    Offer(Vec<u32>),
    /// Vanish: a TCP reset, no `/leave`.
    HardClose,
}

/// A peer's code: its index in the run × 1000 + its incarnation.
fn peer_id(code: u32) -> String {
    format!("p{}-{}", code / 1000, code % 1000)
}

struct Peer {
    code: u32,
    room: usize,
    tx: mpsc::UnboundedSender<Cmd>,
}

#[derive(Clone)]
struct Shared {
    opts: Arc<RoomsOpts>,
    clock: Clock,
    rec: Recorder,
    leaves: Arc<AtomicU64>,
    ready: Arc<AtomicU64>,
}

/// Runs the rooms scenario.
pub async fn run(opts: &RoomsOpts) -> std::io::Result<RoomsResult> {
    if opts.target.proto == Proto::Raw {
        return Err(std::io::Error::other(
            "rooms needs direct messages; the baseline has none",
        ));
    }
    let shared = Shared {
        opts: Arc::new(opts.clone()),
        clock: Clock::start(),
        rec: Recorder::default(),
        leaves: Arc::default(),
        ready: Arc::default(),
    };
    let sizes: Vec<usize> = (0..opts.rooms)
        .map(|r| 2 + r % opts.peers.saturating_sub(1).max(1))
        .collect();
    let mut peers = Vec::new();
    let mut joins = 0u64;
    for (room, &size) in sizes.iter().enumerate() {
        for _ in 0..size {
            let index = u32::try_from(peers.len()).unwrap_or(u32::MAX);
            peers.push(spawn(&shared, index * 1000, room));
            joins += 1;
        }
    }
    wait_ready(&shared.ready, joins).await;
    let pairs: u64 = sizes.iter().map(|&k| (k * (k - 1) / 2) as u64).sum();
    let per_round = pairs * 2 * (1 + opts.candidates as u64);
    let cpu0 = procfs::cpu_seconds(opts.server_pid);
    let start = Instant::now();
    let mut expected = 0;
    let mut leaves_expected = 0;
    let mut exchange = Duration::ZERO;
    for round in 0..opts.rounds {
        let round_start = Instant::now();
        // Exchange: the lower-indexed peer of each pair offers.
        for (room, _) in sizes.iter().enumerate() {
            let members: Vec<&Peer> = peers.iter().filter(|p| p.room == room).collect();
            for (i, p) in members.iter().enumerate() {
                let targets = members[i + 1..].iter().map(|q| q.code).collect();
                let _ = p.tx.send(Cmd::Offer(targets));
            }
        }
        expected += per_round;
        wait_count(&shared.rec.count, expected, Duration::from_secs(10)).await;
        exchange += round_start.elapsed();
        // Churn: one peer per room vanishes and comes back under a new id.
        let leaves_before = shared.leaves.load(Ordering::Relaxed);
        let ready_before = shared.ready.load(Ordering::Relaxed);
        for (room, &size) in sizes.iter().enumerate() {
            let members: Vec<usize> = (0..peers.len())
                .filter(|&i| peers[i].room == room)
                .collect();
            let victim = members[round % members.len()];
            let _ = peers[victim].tx.send(Cmd::HardClose);
            leaves_expected += (size - 1) as u64;
        }
        if opts.expect_leaves && opts.target.proto.has_leaves() {
            let want = leaves_before + sizes.iter().map(|&k| (k - 1) as u64).sum::<u64>();
            wait_count(&shared.leaves, want, Duration::from_secs(5)).await;
        }
        for (room, _) in sizes.iter().enumerate() {
            let members: Vec<usize> = (0..peers.len())
                .filter(|&i| peers[i].room == room)
                .collect();
            let victim = members[round % members.len()];
            let code = peers[victim].code + 1;
            peers[victim] = spawn(&shared, code, room);
            joins += 1;
        }
        wait_ready(&shared.ready, ready_before + sizes.len() as u64).await;
        let spent = round_start.elapsed();
        if spent < opts.interval {
            tokio::time::sleep(opts.interval - spent).await;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu1 = procfs::cpu_seconds(opts.server_pid);
    let delivered = shared.rec.hits();
    // Read before the peers go: their own departures below would be counted as
    // more leaves by the peers still connected.
    let leaves_received = shared.leaves.load(Ordering::Relaxed);
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    drop(peers); // the peers' command channels close and their tasks end
    let result = RoomsResult {
        rooms: opts.rooms,
        peers: sizes.iter().sum(),
        rounds: opts.rounds,
        expected,
        delivered,
        delivered_per_s: delivered as f64 / elapsed,
        burst_per_s: delivered as f64 / exchange.as_secs_f64().max(1e-9),
        latency: shared.rec.take(),
        leaves_expected,
        leaves_received,
        joins,
        server_cpu_s,
        cpu_us_per_delivery: if delivered == 0 {
            0.0
        } else {
            1e6 * server_cpu_s / delivered as f64
        },
        errors: shared.rec.errors(),
        elapsed_s: elapsed,
    };
    eprintln!(
        "  rooms {} rooms / {} peers x {} rounds: {:.0} msg/s ({:.0}/s in bursts) p50 {:.2} ms p99 {:.2} ms leaves {}/{} cpu {:.2} us/msg errors {}",
        result.rooms,
        result.peers,
        result.rounds,
        result.delivered_per_s,
        result.burst_per_s,
        result.latency.p50_ms,
        result.latency.p99_ms,
        result.leaves_received,
        result.leaves_expected,
        result.cpu_us_per_delivery,
        result.errors
    );
    Ok(result)
}

/// Starts a peer's task: join `room`, then serve commands and answer offers.
fn spawn(shared: &Shared, code: u32, room: usize) -> Peer {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(peer(shared.clone(), code, room, rx));
    Peer { code, room, tx }
}

async fn peer(s: Shared, code: u32, room: usize, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let o = &s.opts;
    let proto = o.target.proto;
    let channel = format!("room{room}");
    let id = peer_id(code);
    let perms = ["publish", "subscribe", "presence", "send"];
    let index = (code / 1000) as usize;
    let Ok(mut conn) = Conn::join(&o.target, index, &id, &perms, &channel, true).await else {
        s.rec.error();
        s.ready.fetch_add(1, Ordering::Relaxed);
        return;
    };
    s.ready.fetch_add(1, Ordering::Relaxed);
    let mut seq = 0u64;
    let frames = |to: u32, first: Kind, seq: &mut u64| {
        let mut out = Vec::with_capacity(1 + o.candidates);
        for n in 0..=o.candidates {
            let (kind, size) = if n == 0 {
                (first, o.sdp_bytes)
            } else {
                (Kind::Candidate, o.candidate_bytes)
            };
            let stamp = Stamp {
                kind,
                sent_ns: s.clock.now_ns(),
                seq: *seq,
                from: code,
            };
            *seq += 1;
            let body = payload::encode(stamp, size);
            out.push(proto.direct(&channel, &id, &peer_id(to), kind.command(), &body));
        }
        out
    };
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(Cmd::Offer(targets)) => {
                    let mut out = Vec::new();
                    for to in targets {
                        out.extend(frames(to, Kind::Offer, &mut seq));
                    }
                    if conn.send(out).await.is_err() {
                        s.rec.error();
                        return;
                    }
                }
                Some(Cmd::HardClose) => return conn.hard_close(),
                None => return,
            },
            event = conn.next() => match event {
                Some(Event::Data(stamp)) => {
                    s.rec.record_ns(s.clock.now_ns().saturating_sub(stamp.sent_ns));
                    s.rec.hit();
                    if stamp.kind == Kind::Offer {
                        let out = frames(stamp.from, Kind::Answer, &mut seq);
                        if conn.send(out).await.is_err() {
                            s.rec.error();
                            return;
                        }
                    }
                }
                Some(Event::Left(_)) => {
                    s.leaves.fetch_add(1, Ordering::Relaxed);
                }
                Some(Event::Error(_)) => s.rec.error(),
                Some(Event::Ready) => {}
                None => {
                    s.rec.error();
                    return;
                }
            },
        }
    }
}

async fn wait_ready(ready: &AtomicU64, want: u64) {
    wait_count(ready, want, Duration::from_secs(60)).await;
}

/// Waits until `counter` reaches `want`, or `limit` passes.
async fn wait_count(counter: &AtomicU64, want: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while counter.load(Ordering::Relaxed) < want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
