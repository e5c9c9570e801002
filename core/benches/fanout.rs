//! Fan-out cost in the core alone: room broadcast to 1, 100 and 10,000 members, and
//! `/to` routing, reported per delivered message (criterion's elements/s throughput;
//! ns per delivery is its inverse).
//!
//! `cargo bench -p switchyard-core --bench fanout`

use std::hint::black_box;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchyard_core::{Command, Config, ConnId, Dialect, Hub, Input, Open, Output};

/// A hub with `members` rtc-signaller peers announced into one room.
fn room(members: usize) -> (Hub, Vec<ConnId>, Instant) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut hub = Hub::new(Config::default(), now, 0).expect("default config");
    let mut conns = Vec::with_capacity(members);
    for i in 0..members {
        let conn = hub.open(now, Open::new(Dialect::Signaller));
        let frame = format!(r#"/announce|p{i}|{{"id":"p{i}","room":"bench"}}"#);
        hub.handle_frame(now, conn, Bytes::from(frame));
        while hub.poll_output().is_some() {}
        conns.push(conn);
    }
    (hub, conns, now)
}

fn decode(frame: &str) -> Command {
    Dialect::Signaller
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

fn broadcast(c: &mut Criterion) {
    let mut group = c.benchmark_group("signaller_room_broadcast");
    let payload = format!(r#"/chat|p0|{{"text":"{}"}}"#, "x".repeat(80));
    for members in [2usize, 101, 10_001] {
        let (mut hub, conns, now) = room(members);
        let command = decode(&payload);
        let receivers = members - 1;
        group.throughput(Throughput::Elements(receivers as u64));
        group.bench_with_input(
            BenchmarkId::from_parameter(receivers),
            &receivers,
            |b, &n| {
                b.iter(|| {
                    let sent = deliver(&mut hub, now, conns[0], command.clone());
                    assert_eq!(sent, n);
                });
            },
        );
    }
    group.finish();
}

fn direct(c: &mut Criterion) {
    let mut group = c.benchmark_group("signaller_to");
    let (mut hub, conns, now) = room(1_000);
    let command = decode(
        r#"/to|p999|/candidate|p0|{"candidate":"candidate:1 1 udp 1 192.0.2.1 5000 typ host"}"#,
    );
    group.throughput(Throughput::Elements(1));
    group.bench_function("room_of_1000", |b| {
        b.iter(|| assert_eq!(deliver(&mut hub, now, conns[0], command.clone()), 1));
    });
    group.finish();
}

criterion_group!(benches, broadcast, direct);
criterion_main!(benches);
