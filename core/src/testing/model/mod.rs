//! A reference model of the hub and a checker that runs beside it.
//!
//! [`Run`] drives a real [`Hub`] with [`Op`]s under a virtual clock and keeps its own,
//! much simpler account of the world: who is connected, authenticated as whom, in
//! which room, subscribed to what, and what every JSON presence subscriber believes
//! the roster is (rebuilt from the presence frames it received). After every step it
//! parses every frame the hub emitted and checks it against that account:
//!
//! - the hub's own `check_invariants()` holds, and `poll_timeout()` is exactly the
//!   model's earliest auth deadline, token warning or expiry, or history aging
//!   (closes fire on time, never early);
//! - every frame a connection receives was expected, and every expected frame came:
//!   a message or pass-through only reaches connections subscribed to its channel
//!   (exactly or by a pattern) or in its room, whose grants allow that channel, and
//!   never the connection that sent it; `/to` and `send` reach exactly their targets;
//! - every departure of a peer (its last connection in a room or channel gone without
//!   `/leave`) gives each remaining rtc-signaller member exactly one server-made
//!   `/leave`; a graceful `/leave` is forwarded once and nothing follows it;
//! - every JSON presence subscriber's roster (its snapshot plus the deltas it applied)
//!   equals the channel's real membership minus itself while the channel is within the
//!   presence cap, each join or leave is announced once, `count` is right, and above
//!   the cap it was told `truncated` and then nothing until the resync snapshot;
//! - a command the hub accepts is one the model allows (authenticated, permission,
//!   grant, channel limit), and the codes of refusals are consistent with the model;
//! - tokens are accepted exactly when the model says they are valid, and refused with
//!   4002 exactly when expired;
//! - once every connection is closed, `hub.is_empty()`, and once the history has
//!   aged out too, no timer is left.
//!
//! # History
//!
//! With [`HISTORY_BIT`] in the variant, `c/a` keeps 2 messages for 5 s and the rest
//! of `c/**` 3 for 10 s (one node). The model keeps each (tenant, channel) stream:
//! its epoch, learned from the first ack that names it (the hex is the hub's
//! choice), then held fixed while the stream lives and required to be new after it
//! was forgotten; its top offset; the kept messages with their times; its last use.
//! It checks the `offset` of every JSON `message` on such a channel (none on room
//! traffic or channels without a rule), the `offset`/`epoch` of each subscribe's
//! ack, and for a subscribe with `recover` (its position drawn from what the
//! connection last saw, the stream's top or start, a future offset, another epoch)
//! exactly the replayed messages, in order, before the ack, and `recovered`: true
//! only for the live epoch, an offset not past the top and nothing missing after
//! it; `recovered:false` alone on a pattern or a channel without a rule. Entries
//! beyond the size are trimmed on publish, and entries and idle streams age out on
//! the hub's timeouts, which the run makes at every deadline the hub reports.
//!
//! Where an outcome depends on policy the model does not replay (the rate limiter,
//! the quota, name validation), the model reads the outcome from the reply the hub
//! gave the sender (an error frame or a close) and checks everything that follows.
//!
//! # Layout
//!
//! One `Run`, its `impl` split by concern:
//!
//! - this file: the entry points ([`run_ops`], [`Run`], [`run_config`], [`Coverage`],
//!   [`GOLDEN`]), the driver loop (`step`, `finish`) and the failure trace;
//! - `state`: the model's account of connections, grants, rooms and subscriptions,
//!   and the channel membership derived from it;
//! - `tokens`: minting the run's tokens and the verdict each must get;
//! - `steps`: one operation (open, frame, close, clock) applied to hub and model;
//! - `commands`: whether a refusal or an acceptance fits the model, and what an
//!   accepted command changes;
//! - `routing`: who an announce, a channel message, `/to` or `send` reaches;
//! - `expect`: the frames a step must produce, the hub's outputs read back, and the
//!   comparison of the two (departures, events, timers);
//! - `history`: the channels' streams, offsets, positions and recoveries;
//! - `presence`: the presence rules: snapshots, deltas, the cap and the resync;
//! - `render`: turning a frame spec into bytes in a connection's dialect.

mod commands;
mod expect;
mod history;
mod presence;
mod render;
mod routing;
mod state;
mod steps;
mod tokens;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use self::history::Streams;
use self::state::Conn;
use self::tokens::TokenInfo;
use super::ops::{Op, decode_ops};
use super::{TEST_UNIX_MS, keyed_config};
use crate::config::{Grant, HistoryRule, PublishableKey, Quota};
use crate::token::Permissions;
use crate::{Config, ConnId, Dialect, Hub, Input};

/// Runs the operations `data` decodes to against a hub and the model, checking after
/// every step. Panics on the first divergence, with a trace of the run.
pub fn run_ops(data: &[u8]) -> Coverage {
    let (variant, ops) = decode_ops(data);
    let mut run = Run::new(variant);
    for op in &ops {
        run.step(op);
    }
    run.finish();
    run.coverage
}

/// How often a run reached the states worth reaching (accepted commands by kind,
/// deliveries, presence frames, the presence cap, take-overs, timer closes…), so a
/// property test can tell a generator that explores from one that only bounces
/// off the first refusal.
#[derive(Clone, Debug, Default)]
pub struct Coverage(pub BTreeMap<&'static str, u64>);

impl Coverage {
    fn add(&mut self, what: &'static str) {
        *self.0.entry(what).or_default() += 1;
    }

    /// Adds another run's counts to these.
    pub fn merge(&mut self, other: &Self) {
        for (k, v) in &other.0 {
            *self.0.entry(k).or_default() += v;
        }
    }

    /// How often `what` happened.
    pub fn count(&self, what: &str) -> u64 {
        self.0.get(what).copied().unwrap_or(0)
    }
}

/// The publishable key configured in every run.
const PUBLISHABLE_KEY: &str = "pk_live";

/// The hub's configuration for a run. Limits are small so that every limit path is
/// reached in a few operations; bits of `variant` switch anonymous access, a quota,
/// a tiny frame limit, a generous rate, warning every token before expiry and
/// channel history ([`HISTORY_BIT`]).
pub fn run_config(variant: u8) -> Config {
    let mut config = keyed_config();
    let l = &mut config.limits;
    l.max_frame_bytes = if variant & 0x34 == 0x34 { 300 } else { 2048 };
    l.max_channels_per_conn = 3;
    l.presence_cap = 2;
    (l.message_rate, l.message_burst) = if variant & 8 == 0 {
        (5, 8)
    } else {
        (1000, 1000)
    };
    l.rate_close_after = 3;
    if variant & 2 != 0 {
        l.quota = Some(Quota {
            messages: 10,
            period: Duration::from_secs(10),
        });
    }
    if variant & 1 != 0 {
        config.auth.anonymous = Some(Grant {
            channels: vec!["r1".into(), "r2".into(), "c/**".into()],
            permissions: Permissions::ALL,
            tenant: None,
        });
    }
    config.auth.publishable_keys = vec![PublishableKey {
        key: PUBLISHABLE_KEY.into(),
        grant: Grant {
            channels: vec!["c/**".into()],
            permissions: Permissions::PUBLISH | Permissions::SUBSCRIBE | Permissions::PRESENCE,
            tenant: Some("t2".into()),
        },
    }];
    config.auth.auth_timeout = Duration::from_secs(3);
    // Shorter than a short-lived token's 20 s, so a refreshed one is warned on time.
    config.auth.refresh_warning = Duration::from_secs(10);
    config.auth.refresh_warning_all = variant & 0x40 != 0;
    if variant & HISTORY_BIT != 0 {
        // `c/a` keeps less than the rest of `c/**` (the first rule wins); both are
        // short enough that messages are trimmed, age out and streams are forgotten
        // within a run's few seconds of virtual time.
        config.history = vec![
            HistoryRule {
                channels: "c/a".into(),
                size: 2,
                ttl: Duration::from_secs(5),
            },
            HistoryRule {
                channels: "c/**".into(),
                size: 3,
                ttl: Duration::from_secs(10),
            },
        ];
    }
    config
}

/// The bit of a run's variant that turns channel history on (see [`run_config`]).
pub const HISTORY_BIT: u8 = 0x80;

/// The hub, the model and the virtual clock of one run.
pub struct Run {
    hub: Hub,
    config: Config,
    start: Instant,
    now: Instant,
    conns: Vec<Conn>,
    by_id: BTreeMap<ConnId, usize>,
    tokens: BTreeMap<String, TokenInfo>,
    streams: Streams,
    trace: Vec<String>,
    coverage: Coverage,
}

const GARBAGE_TOKEN: &str = "not-a-jwt";

impl Run {
    /// A run with the configuration `variant` selects (see [`run_config`]).
    pub fn new(variant: u8) -> Self {
        // The run is the driver, so it owns the clock; only offsets from `start` matter.
        #[allow(clippy::disallowed_methods)]
        let start = Instant::now();
        let config = run_config(variant);
        Self {
            hub: Hub::new(config.clone(), start, TEST_UNIX_MS).expect("valid run config"),
            config,
            start,
            now: start,
            conns: Vec::new(),
            by_id: BTreeMap::new(),
            tokens: BTreeMap::new(),
            streams: Streams::default(),
            trace: vec![format!("variant {variant}")],
            coverage: Coverage::default(),
        }
    }

    /// Applies one operation to the hub and the model, and checks the outcome.
    pub fn step(&mut self, op: &Op) {
        self.trace.push(format!("op {op:?}"));
        match op {
            Op::Open {
                json,
                broadcaster,
                creds,
            } => {
                let dialect = match (broadcaster, json) {
                    (true, _) => Dialect::Broadcaster,
                    (false, true) => Dialect::Json,
                    (false, false) => Dialect::Signaller,
                };
                self.open(dialect, creds);
            }
            Op::Frame { conn, frame } => {
                if let Some(idx) = self.pick(*conn) {
                    let bytes = self.render(idx, frame);
                    self.frame(idx, bytes);
                }
            }
            Op::Close { conn, graceful } => {
                if let Some(idx) = self.pick(*conn) {
                    let how = if *graceful {
                        crate::Hangup::Graceful
                    } else {
                        crate::Hangup::Hard
                    };
                    self.input(
                        idx,
                        Input::Closed {
                            conn: self.conns[idx].id,
                            how,
                        },
                    );
                }
            }
            Op::Blocked { conn } => {
                if let Some(idx) = self.pick(*conn) {
                    self.input(
                        idx,
                        Input::Failed {
                            conn: self.conns[idx].id,
                            fault: crate::Fault::SlowConsumer,
                        },
                    );
                }
            }
            Op::Advance(step) => self.advance(*step),
        }
    }

    /// Closes every connection still open and checks that the hub is empty.
    pub fn finish(&mut self) {
        for idx in 0..self.conns.len() {
            if self.conns[idx].alive {
                self.trace.push(format!("finish: close #{idx}"));
                self.input(
                    idx,
                    Input::Closed {
                        conn: self.conns[idx].id,
                        how: crate::Hangup::Hard,
                    },
                );
            }
        }
        self.check(
            self.hub.is_empty(),
            "hub not empty after every connection closed",
        );
        // Channel history outlives connections, and ages out on its own clock.
        if self.history_held() {
            self.advance(crate::testing::ops::Step::Hour);
            self.check(!self.history_held(), "history kept for an hour");
        }
        self.check(
            self.hub.poll_timeout().is_none(),
            "a timer outlived every connection",
        );
    }

    /// The connection an operation's index byte names: one of the open ones, or
    /// for one value in eight, any connection ever opened (closed ones included).
    fn pick(&self, conn: u8) -> Option<usize> {
        let alive: Vec<usize> = (0..self.conns.len())
            .filter(|&i| self.conns[i].alive)
            .collect();
        let n = usize::from(conn & 0x7f);
        if conn % 8 == 7 || alive.is_empty() {
            (!self.conns.is_empty()).then(|| n % self.conns.len())
        } else {
            Some(alive[n % alive.len()])
        }
    }

    /// Panics with the trace when `ok` is false.
    #[track_caller]
    fn check(&self, ok: bool, what: impl std::fmt::Display) {
        if !ok {
            self.fail(what);
        }
    }

    #[track_caller]
    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let mut msg = String::new();
        let from = self.trace.len().saturating_sub(60);
        for line in &self.trace[from..] {
            let _ = writeln!(msg, "  {line}");
        }
        panic!("model violation: {what}\n--- last steps ---\n{msg}");
    }

    fn unix_secs(&self) -> u64 {
        let ms = u64::try_from((self.now - self.start).as_millis()).expect("short runs");
        (TEST_UNIX_MS + ms) / 1000
    }

    fn leeway(&self) -> u64 {
        self.config.auth.leeway_secs
    }
}

/// The golden frames the rtc-signaller 6.3 client sends (`core/tests/fixtures`).
pub const GOLDEN: &str = include_str!("../../../tests/fixtures/rtc-signaller-6.3.frames");
