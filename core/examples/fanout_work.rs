//! A fixed fan-out workload for counting instructions, which unlike wall-clock time
//! does not move with the machine's load:
//!
//! ```sh
//! cargo build --release -p switchyard-core --features testing --example fanout_work
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*publish_all*' \
//!     target/release/examples/fanout_work json 10000 20
//! ```
//!
//! Builds a channel of `receivers` members (`signaller`, `json`, `mixed` or
//! `broadcaster`), then has member 0 publish `messages` times; callgrind counts only
//! the publishing (`publish_all`), so instructions / (messages × receivers) is the
//! hub's cost per delivery. The same file builds against older versions of the core
//! (it uses only the driver API), for before/after comparisons.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::Bytes;
use switchyard_core::testing::{TEST_UNIX, test_key, token_with};
use switchyard_core::{Config, ConnId, Dialect, Hub, Input, Open, Output};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mix, receivers, messages) = match &args[1..] {
        [mix, receivers, messages] => (
            mix.clone(),
            receivers.parse().expect("receivers"),
            messages.parse().expect("messages"),
        ),
        _ => panic!("usage: fanout_work <signaller|json|mixed|broadcaster> <receivers> <messages>"),
    };
    let (mut hub, conns, now) = room(&mix, receivers);
    let sender = conns[0];
    let dialect = if mix == "signaller" || mix == "mixed-signal" {
        Dialect::Signaller
    } else if mix == "broadcaster" {
        Dialect::Broadcaster
    } else {
        Dialect::Json
    };
    let text = "x".repeat(80);
    let frame = match dialect {
        Dialect::Signaller => format!(r#"/chat|p0|{{"text":"{text}"}}"#),
        Dialect::Broadcaster => format!(
            r#"{{"id":1,"method":"publish","params":{{"channel":"bench","event":"chat","payload":{{"text":"{text}"}}}}}}"#
        ),
        _ => format!(r#"{{"type":"publish","channel":"bench","data":{{"text":"{text}"}}}}"#),
    };
    let command = dialect.decode(Bytes::from(frame)).expect("a valid frame");
    let sent = publish_all(&mut hub, now, sender, &command, messages);
    println!("{sent} frames for {messages} messages to {receivers} receivers");
}

/// The measured part: `messages` publishes, every output drained.
#[inline(never)]
fn publish_all(
    hub: &mut Hub,
    mut now: Instant,
    sender: ConnId,
    command: &switchyard_core::Command,
    messages: usize,
) -> usize {
    let mut sent = 0;
    for _ in 0..messages {
        now += Duration::from_millis(1);
        hub.handle(
            now,
            Input::Command {
                conn: sender,
                command: command.clone(),
            },
        );
        while let Some(out) = hub.poll_output() {
            if let Output::Send { frame, .. } = out {
                black_box(frame);
                sent += 1;
            }
        }
    }
    sent
}

/// A hub with a sender (index 0) and `receivers` others in channel `bench`.
fn room(mix: &str, receivers: usize) -> (Hub, Vec<ConnId>, Instant) {
    #[allow(clippy::disallowed_methods)]
    let now = Instant::now();
    let mut config = Config::default();
    config.limits.message_rate = 1_000_000;
    config.limits.message_burst = 1_000_000;
    config.limits.max_frame_bytes = 1 << 20;
    config.auth.keys = vec![test_key()];
    let mut hub = Hub::new(config, now, 0).expect("valid config");
    let mut conns = Vec::with_capacity(receivers + 1);
    for i in 0..=receivers {
        let dialect = match mix {
            "signaller" => Dialect::Signaller,
            "broadcaster" => Dialect::Broadcaster,
            "mixed" | "mixed-signal" if i % 2 == 1 => Dialect::Signaller,
            "mixed-signal" if i == 0 => Dialect::Signaller,
            _ => Dialect::Json,
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
