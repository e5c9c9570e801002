//! What channel history costs in memory, per stored message:
//!
//! ```sh
//! cargo run --release -p switchyard-core --example history_memory -- 10000 100
//! ```
//!
//! Publishes `messages` messages whose `data` is `data_bytes` long into one channel,
//! twice: once with a history rule that keeps them all, once without (the baseline).
//! Each run counts the heap bytes still allocated after the publishes (requested
//! sizes, through a counting allocator: no allocator rounding, no page noise), so
//! the difference over `messages` is what one kept message holds. It does so for the
//! two ways a message comes in: a JSON peer's `publish` frame, and the control
//! plane's `Hub::publish_event` (REST, gRPC).
//!
//! The figure includes each message's slot in the channel's ring buffer, whose
//! capacity is a power of two: between two powers of two the empty slots make the
//! figure per message larger (`messages` of 2^k − 2 fills the ring exactly, with the
//! first message).

// The counting allocator below is the one piece of unsafe code: `GlobalAlloc` is an
// unsafe trait. It only forwards to the system allocator and adds up sizes. The
// library itself forbids unsafe code; this measuring tool is not part of it.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard_core::{Config, Dialect, HistoryRule, Hub, Open};

/// The system allocator, counting the bytes currently allocated.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the contract;
// the counter is only arithmetic on the layouts the caller passes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc`, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `realloc`, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[derive(Clone, Copy, Debug)]
enum Source {
    /// A JSON peer's `publish` frame.
    Peer,
    /// `Hub::publish_event`, as REST and gRPC publish.
    ControlPlane,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (messages, data_bytes): (usize, usize) = match &args[1..] {
        [m, d] => (m.parse().expect("messages"), d.parse().expect("data_bytes")),
        [] => (10_000, 100),
        _ => panic!("usage: history_memory [<messages> <data_bytes>]"),
    };
    assert!(data_bytes >= 9, "data is {{\"t\":\"…\"}}: at least 9 bytes");
    println!("{messages} messages, data {data_bytes} bytes each");
    for source in [Source::Peer, Source::ControlPlane] {
        let without = retained(source, false, messages, data_bytes);
        let with = retained(source, true, messages, data_bytes);
        let per = (with as f64 - without as f64) / messages as f64;
        println!(
            "{source:?}: {per:.1} bytes per stored message ({:.1} above the data); \
             retained {with} B with history, {without} B without",
            per - data_bytes as f64,
        );
    }
}

/// Heap bytes still allocated after `messages` publishes into channel `bench/x`,
/// beyond what the hub held before them.
fn retained(source: Source, history: bool, messages: usize, data_bytes: usize) -> usize {
    #[allow(clippy::disallowed_methods)]
    let mut now = Instant::now();
    let mut config = Config::default();
    config.limits.message_rate = u32::MAX;
    config.limits.message_burst = u32::MAX;
    if history {
        config.history = vec![HistoryRule {
            channels: "bench/**".into(),
            // The first message too: every one is kept.
            size: messages + 1,
            ttl: Duration::from_secs(3600),
        }];
    }
    let mut hub = Hub::new(config, now, 0).expect("valid config");
    let peer = hub.open(now, Open::new(Dialect::Json));
    drain(&mut hub);
    // One message first, so that the channel's own state (its stream, its name) is
    // in the baseline and not spread over the messages.
    publish(&mut hub, now, source, peer, data_bytes);
    let before = LIVE.load(Ordering::Relaxed);
    for _ in 0..messages {
        now += Duration::from_micros(10);
        publish(&mut hub, now, source, peer, data_bytes);
    }
    let after = LIVE.load(Ordering::Relaxed);
    let held = hub.stats().history_messages;
    let expected = if history { messages + 1 } else { 0 };
    assert_eq!(held, expected, "{source:?}: every message kept (or none)");
    after.saturating_sub(before)
}

fn publish(
    hub: &mut Hub,
    now: Instant,
    source: Source,
    peer: switchyard_core::ConnId,
    data_bytes: usize,
) {
    // `{"t":"…"}`: eight bytes of JSON around the text. A fresh allocation per
    // message, as a connection's read would be.
    let data = format!(r#"{{"t":"{}"}}"#, "x".repeat(data_bytes - 8));
    match source {
        Source::Peer => {
            let frame = format!(r#"{{"type":"publish","channel":"bench/x","data":{data}}}"#);
            hub.handle_frame(now, peer, exact(frame));
        }
        Source::ControlPlane => {
            hub.publish_event(now, "default", "bench/x", None, exact(data))
                .expect("a control-plane publish");
        }
    }
    drain(hub);
}

/// `text` in an allocation of exactly its length: `format!` leaves spare capacity,
/// which `Bytes` would keep and this would count as the hub's.
fn exact(text: String) -> Bytes {
    Bytes::from(text.into_bytes().into_boxed_slice())
}

fn drain(hub: &mut Hub) {
    while hub.poll_output().is_some() {}
}
