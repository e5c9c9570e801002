//! A harness for driving the hub in tests, benches and fuzz targets: named fake
//! connections, a virtual clock and a transcript of everything the hub emitted.
//!
//! ```
//! use switchyard_core::testing::TestHub;
//! use switchyard_core::Dialect;
//!
//! let mut t = TestHub::new();
//! t.connect("alice", Dialect::Signaller);
//! t.connect("bob", Dialect::Signaller);
//! t.send("alice", r#"/announce|alice|{"id":"alice","room":"r"}"#);
//! t.send("bob", r#"/announce|bob|{"id":"bob","room":"r"}"#);
//! t.hard_close("alice");
//! assert_eq!(t.take("bob"), [
//!     r#"/to|bob|/announce|alice|{"id":"alice","room":"r"}"#,
//!     r#"/roominfo|{"memberCount":2}"#,
//!     r#"/leave|alice|{"id":"alice"}"#,
//! ]);
//! ```
//!
//! Beside the harness: [`ops`] decodes structured operation sequences from bytes,
//! [`model`] runs them against the hub and a reference model, checking after every
//! step (a folder, one file per concern: the model's state, tokens, the operations,
//! commands, routing, expectations, presence and frame rendering; see its docs), and
//! [`targets`] holds the fuzz target bodies that `fuzz/` and the corpus replay test
//! share (see `docs/fuzzing.md`). `frames` (private) parses what the hub sent for
//! the model.

mod frames;
pub mod keys;
pub mod model;
pub mod ops;
pub mod targets;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::token::{Algorithm, SigningKey, mint};
use crate::{Config, ConnId, Credentials, Dialect, Event, Hangup, Hub, Input, Open, Output};

/// A hub with named connections, a virtual clock and recorded outputs. It checks the
/// hub's invariants after every step.
pub struct TestHub {
    /// The hub under test.
    pub hub: Hub,
    /// The virtual clock's current time.
    pub now: Instant,
    start: Instant,
    names: BTreeMap<String, ConnId>,
    by_conn: BTreeMap<ConnId, String>,
    inbox: BTreeMap<String, Vec<String>>,
    transcript: Vec<String>,
    events: Vec<Event>,
    cluster: Vec<crate::cluster::Outbound>,
}

/// Unix milliseconds the test hub's wall clock starts at (2023-11-14T22:13:20Z).
pub const TEST_UNIX_MS: u64 = 1_700_000_000_000;

/// Unix seconds at the test hub's start.
pub const TEST_UNIX: u64 = TEST_UNIX_MS / 1000;

/// The signing key of [`keyed_config`].
pub fn test_key() -> SigningKey {
    SigningKey {
        kid: "k1".into(),
        secret: b"switchyard-test-secret-0123456789".to_vec(),
        algorithm: Algorithm::HS256,
        public_key: None,
        audience: None,
        tenant: None,
    }
}

/// A config that requires credentials: one HS256 key (`k1`), no anonymous access.
pub fn keyed_config() -> Config {
    let mut config = Config::default();
    config.auth.keys = vec![test_key()];
    config.auth.anonymous = None;
    config
}

/// A token signed with [`test_key`] for `sub`, on `channels`, with every permission,
/// expiring an hour after the test clock starts.
pub fn token_for(sub: &str, channels: &[&str]) -> String {
    token_with(serde_json::json!({
        "sub": sub,
        "channels": channels,
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": TEST_UNIX + 3600,
    }))
}

/// A token signed with [`test_key`] carrying exactly `claims`.
pub fn token_with(claims: serde_json::Value) -> String {
    mint(&test_key(), &claims).expect("test key signs")
}

impl Default for TestHub {
    fn default() -> Self {
        Self::new()
    }
}

impl TestHub {
    /// A hub with the default config.
    pub fn new() -> Self {
        Self::with_config(Config::default())
    }

    /// A hub with `config`.
    pub fn with_config(config: Config) -> Self {
        // The harness is the driver: it owns the clock. Only offsets from `start` matter.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        Self {
            hub: Hub::new(config, start, TEST_UNIX_MS).expect("valid test config"),
            now: start,
            start,
            names: BTreeMap::new(),
            by_conn: BTreeMap::new(),
            inbox: BTreeMap::new(),
            transcript: Vec::new(),
            events: Vec::new(),
            cluster: Vec::new(),
        }
    }

    /// Opens a connection called `name`.
    pub fn connect(&mut self, name: &str, dialect: Dialect) -> ConnId {
        self.connect_with(name, Open::new(dialect))
    }

    /// Opens a connection called `name` with explicit open parameters.
    pub fn connect_with(&mut self, name: &str, open: Open) -> ConnId {
        let conn = self.hub.open(self.now, open);
        self.names.insert(name.to_owned(), conn);
        self.by_conn.insert(conn, name.to_owned());
        self.drain();
        conn
    }

    /// Opens a connection called `name` that offers `token` at connect.
    pub fn connect_token(&mut self, name: &str, dialect: Dialect, token: &str) -> ConnId {
        self.connect_with(
            name,
            Open {
                dialect,
                credentials: Credentials::Token(token.to_owned()),
                remote: None,
                origin: None,
            },
        )
    }

    /// The connection called `name`.
    pub fn conn(&self, name: &str) -> ConnId {
        *self
            .names
            .get(name)
            .unwrap_or_else(|| panic!("no connection named {name}"))
    }

    /// Sends `frame` from `name`, decoded as the transport would.
    pub fn send(&mut self, name: &str, frame: &str) {
        self.send_bytes(name, Bytes::copy_from_slice(frame.as_bytes()));
    }

    /// Sends raw bytes from `name`.
    pub fn send_bytes(&mut self, name: &str, frame: Bytes) {
        let conn = self.conn(name);
        self.hub.handle_frame(self.now, conn, frame);
        self.drain();
    }

    /// Feeds any input.
    pub fn input(&mut self, input: Input) {
        self.hub.handle(self.now, input);
        self.drain();
    }

    /// Collects what a direct call on [`TestHub::hub`] (a control-plane method)
    /// queued, as an input would.
    pub fn collect_outputs(&mut self) {
        self.drain();
    }

    /// The transport saw the connection vanish (reset, timeout).
    pub fn hard_close(&mut self, name: &str) {
        let conn = self.conn(name);
        self.input(Input::Closed {
            conn,
            how: Hangup::Hard,
        });
    }

    /// The client closed cleanly (close frame, EOF).
    pub fn graceful_close(&mut self, name: &str) {
        let conn = self.conn(name);
        self.input(Input::Closed {
            conn,
            how: Hangup::Graceful,
        });
    }

    /// Moves the clock forward by `by`, firing every timer that falls due on the way.
    pub fn advance(&mut self, by: Duration) {
        let until = self.now + by;
        while let Some(at) = self.hub.poll_timeout() {
            if at > until {
                break;
            }
            self.now = self.now.max(at);
            self.hub.handle_timeout(self.now);
            self.drain();
            let next = self.hub.poll_timeout();
            assert!(
                next.is_none_or(|n| n > self.now),
                "poll_timeout did not move past handle_timeout's now"
            );
        }
        self.now = until;
        self.hub.handle_timeout(self.now);
        self.drain();
    }

    /// Virtual time since the harness started.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Frames `name` received since the last call, oldest first.
    pub fn take(&mut self, name: &str) -> Vec<String> {
        self.inbox.remove(name).unwrap_or_default()
    }

    /// Everything emitted since the last call, as `name <- frame` and
    /// `name closed <code> <reason>` lines, in output order.
    pub fn transcript(&mut self) -> Vec<String> {
        self.inbox.clear();
        std::mem::take(&mut self.transcript)
    }

    /// The hub, for control-plane calls and queries.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The hub, for control-plane calls; call [`TestHub::collect_outputs`] after.
    pub fn hub_mut(&mut self) -> &mut Hub {
        &mut self.hub
    }

    /// The harness's virtual clock.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Events emitted since the last call.
    pub fn events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// What the hub told the other nodes since the last call (with
    /// [`Config::cluster`] on).
    pub fn cluster_outputs(&mut self) -> Vec<crate::cluster::Outbound> {
        std::mem::take(&mut self.cluster)
    }

    /// Feeds another node's news, then drains.
    pub fn remote(&mut self, node: &str, event: crate::cluster::RemoteEvent) {
        let input = Input::Remote(Box::new(crate::cluster::Remote {
            node: crate::cluster::NodeId::new(node),
            event,
        }));
        self.hub.handle(self.now, input);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(out) = self.hub.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let name = self.name_of(conn);
                    let text = String::from_utf8_lossy(&frame).into_owned();
                    self.transcript.push(format!("{name} <- {text}"));
                    self.inbox.entry(name).or_default().push(text);
                }
                Output::Close { conn, code, reason } => {
                    let name = self.name_of(conn);
                    self.transcript
                        .push(format!("{name} closed {} {reason}", code.0));
                }
                Output::Event(e) => self.events.push(e),
                Output::Cluster(c) => self.cluster.push(*c),
            }
        }
        self.hub.check_invariants();
    }

    fn name_of(&self, conn: ConnId) -> String {
        self.by_conn
            .get(&conn)
            .cloned()
            .unwrap_or_else(|| conn.to_string())
    }
}
