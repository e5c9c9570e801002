//! The JSON dialect and the pub/sub model: auth, subscriptions, presence, limits.
//! Names follow `docs/protocol.md`.
//!
//! One test binary (`cargo test --test json`), a module per topic; the helpers below
//! are shared by all four.

mod auth;
mod history;
mod limits;
mod presence;
mod pubsub;
mod refresh;

use switchyard_core::Dialect;
use switchyard_core::testing::{TEST_UNIX, TestHub, keyed_config, token_for};

const WELCOME_TAIL: &str = r#""maxMessageSize":65536,"iceServers":null,"limits":{"maxChannels":100,"messageRate":50,"messageBurst":100}}"#;

fn welcome(peer: &str) -> String {
    format!(
        r#"{{"type":"welcome","peerId":"{peer}","serverTime":{TEST_UNIX},"expiresAt":{},{WELCOME_TAIL}"#,
        TEST_UNIX + 3600
    )
}

/// A keyed hub with JSON peers connected with tokens for `room-1` and `rooms/**`.
fn hub_with(names: &[&str]) -> TestHub {
    let mut t = TestHub::with_config(keyed_config());
    for n in names {
        t.connect_token(n, Dialect::Json, &token_for(n, &["room-1", "rooms/**"]));
    }
    t.transcript();
    t
}

fn subscribe(t: &mut TestHub, name: &str, channel: &str) {
    t.send(
        name,
        &format!(r#"{{"type":"subscribe","channel":"{channel}","requestId":"s-{channel}"}}"#),
    );
}
