//! Fan-out cost in the core alone, per delivered message: rtc-signaller rooms, JSON
//! channels, Broadcaster channels (a per-subscription `seq` spliced into each frame)
//! and mixed rooms of 1, 100 and 10,000 receivers, a JSON channel that keeps a
//! history (each publish also stored), and `/to` routing.
//! Criterion reports elements/s (one element = one delivery; ns per delivery is its
//! inverse). Allocations per delivery are printed once per case from a counting
//! allocator.
//!
//! `cargo bench -p switchyard-core --bench fanout`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_core::testing::{TEST_UNIX, test_key, token_with};
use switchyard_core::{Command, Config, ConnId, Dialect, Hub, Input, Open, Output};

/// Counts allocations so the bench can report them per delivery.
struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Who is in the room besides the sender.
#[derive(Clone, Copy)]
enum Mix {
    Signaller,
    Json,
    /// Alternating rtc-signaller and JSON receivers.
    Mixed,
    /// Broadcaster receivers, authenticated in band.
    Broadcaster,
    /// JSON receivers of a channel that keeps a history (100 messages, 60 s): every
    /// publish is also stored and carries its offset.
    JsonHistory,
}

/// A hub with a sender (index 0) and `receivers` others in channel `bench`.
fn room(sender: Dialect, receivers: usize, mix: Mix) -> (Hub, Vec<ConnId>, Instant) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut config = Config::default();
    config.limits.message_rate = 1_000_000;
    config.limits.message_burst = 1_000_000;
    config.limits.max_frame_bytes = 1 << 20;
    // Broadcaster peers need a token; the others stay anonymous.
    config.auth.keys = vec![test_key()];
    if matches!(mix, Mix::JsonHistory) {
        config.history = vec![switchyard_core::HistoryRule {
            channels: "bench".into(),
            size: 100,
            ttl: Duration::from_secs(60),
        }];
    }
    let mut hub = Hub::new(config, now, 0).expect("valid config");
    let mut conns = Vec::with_capacity(receivers + 1);
    for i in 0..=receivers {
        let dialect = match (i, mix) {
            (0, _) => sender,
            (_, Mix::Signaller) => Dialect::Signaller,
            (_, Mix::Json | Mix::JsonHistory) => Dialect::Json,
            (i, Mix::Mixed) if i % 2 == 0 => Dialect::Json,
            (_, Mix::Mixed) => Dialect::Signaller,
            (_, Mix::Broadcaster) => Dialect::Broadcaster,
        };
        let conn = hub.open(now, Open::new(dialect));
        let frames = match dialect {
            Dialect::Signaller => {
                vec![format!(r#"/announce|p{i}|{{"id":"p{i}","room":"bench"}}"#)]
            }
            Dialect::Broadcaster => {
                let token = token_with(serde_json::json!({
                    "sub": format!("p{i}"), "aud": "broadcaster",
                    "authorizedChannels": ["bench"], "scope": ["subscribe", "publish"],
                    "exp": TEST_UNIX,
                }));
                vec![
                    format!(r#"{{"id":1,"method":"auth","params":{{"token":"{token}"}}}}"#),
                    r#"{"id":2,"method":"subscribe","params":{"channel":"bench"}}"#.to_owned(),
                ]
            }
            _ => vec![r#"{"type":"subscribe","channel":"bench"}"#.to_owned()],
        };
        for frame in frames {
            hub.handle_frame(now, conn, Bytes::from(frame));
        }
        while hub.poll_output().is_some() {}
        conns.push(conn);
    }
    (hub, conns, now)
}

fn decode(dialect: Dialect, frame: &str) -> Command {
    dialect
        .decode(Bytes::copy_from_slice(frame.as_bytes()))
        .expect("valid frame")
}

/// Feeds one command and drains, returning the number of frames to send.
fn deliver(hub: &mut Hub, now: Instant, conn: ConnId, command: Command) -> usize {
    hub.handle(now, Input::Command { conn, command });
    let mut sent = 0;
    while let Some(out) = hub.poll_output() {
        if let Output::Send { frame, .. } = out {
            black_box(frame);
            sent += 1;
        }
    }
    sent
}

fn bench_case(c: &mut Criterion, group: &str, sender: Dialect, frame: &str, mix: Mix) {
    let mut g = c.benchmark_group(group);
    for receivers in [1usize, 100, 10_000] {
        let (mut hub, conns, now) = room(sender, receivers, mix);
        let command = decode(sender, frame);
        // A Broadcaster request always has an id, so its publisher gets an answer too.
        let answer = usize::from(sender == Dialect::Broadcaster);
        // Allocations per delivery inside the hub, measured once outside criterion's
        // loop (the command is cloned before counting starts).
        let input = command.clone();
        let before = ALLOCS.load(Ordering::Relaxed);
        let sent = deliver(&mut hub, now, conns[0], input);
        let allocs = ALLOCS.load(Ordering::Relaxed) - before;
        let per_delivery = allocs as f64 / sent.max(1) as f64;
        println!(
            "{group}/{receivers}: {allocs} allocations for {sent} deliveries ({per_delivery:.3} per delivery)"
        );
        g.throughput(Throughput::Elements(receivers as u64));
        let mut now = now;
        g.bench_with_input(
            BenchmarkId::from_parameter(receivers),
            &receivers,
            |b, &n| {
                b.iter(|| {
                    // Time moves on so the sender's rate bucket refills.
                    now += Duration::from_millis(1);
                    assert_eq!(
                        deliver(&mut hub, now, conns[0], command.clone()),
                        n + answer
                    );
                });
            },
        );
    }
    g.finish();
}

/// The floor every fan-out pays: queueing N sends of one shared frame and draining
/// them, with no routing at all. Hub figures are reported as ratios to this.
fn baseline(c: &mut Criterion) {
    let mut g = c.benchmark_group("baseline_queue_sends");
    let frame = Bytes::from(vec![b'x'; 100]);
    for receivers in [1usize, 100, 10_000] {
        let conns: Vec<ConnId> = {
            let (_, conns, _) = room(Dialect::Signaller, receivers, Mix::Signaller);
            conns
        };
        let mut queue = std::collections::VecDeque::with_capacity(receivers);
        g.throughput(Throughput::Elements(receivers as u64));
        g.bench_with_input(
            BenchmarkId::from_parameter(receivers),
            &receivers,
            |b, &n| {
                b.iter(|| {
                    for &conn in &conns[1..] {
                        queue.push_back(Output::Send {
                            conn,
                            frame: frame.clone(),
                        });
                    }
                    let mut sent = 0;
                    while let Some(out) = queue.pop_front() {
                        black_box(out);
                        sent += 1;
                    }
                    assert_eq!(sent, n);
                });
            },
        );
    }
    g.finish();
}

fn broadcast(c: &mut Criterion) {
    let text = "x".repeat(80);
    let signal = format!(r#"/chat|p0|{{"text":"{text}"}}"#);
    let publish = format!(r#"{{"type":"publish","channel":"bench","data":{{"text":"{text}"}}}}"#);
    bench_case(
        c,
        "signaller_room_broadcast",
        Dialect::Signaller,
        &signal,
        Mix::Signaller,
    );
    bench_case(
        c,
        "json_channel_publish",
        Dialect::Json,
        &publish,
        Mix::Json,
    );
    bench_case(
        c,
        "json_channel_publish_with_history",
        Dialect::Json,
        &publish,
        Mix::JsonHistory,
    );
    bench_case(c, "mixed_room_publish", Dialect::Json, &publish, Mix::Mixed);
    let bc_publish = format!(
        r#"{{"id":1,"method":"publish","params":{{"channel":"bench","event":"chat","payload":{{"text":"{text}"}}}}}}"#
    );
    bench_case(
        c,
        "broadcaster_channel_publish",
        Dialect::Broadcaster,
        &bc_publish,
        Mix::Broadcaster,
    );
    bench_case(
        c,
        "mixed_room_signal",
        Dialect::Signaller,
        &signal,
        Mix::Mixed,
    );
}

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("signaller_to");
    let (mut hub, conns, now) = room(Dialect::Signaller, 999, Mix::Signaller);
    let command = decode(
        Dialect::Signaller,
        r#"/to|p999|/candidate|p0|{"candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ host"}"#,
    );
    group.throughput(Throughput::Elements(1));
    let mut now = now;
    group.bench_function("room_of_1000", |b| {
        b.iter(|| {
            now += Duration::from_millis(1);
            assert_eq!(deliver(&mut hub, now, conns[0], command.clone()), 1);
        });
    });
    group.finish();
}

criterion_group!(benches, baseline, broadcast, direct);
criterion_main!(benches);
