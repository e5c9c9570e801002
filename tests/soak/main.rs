//! A seeded soak: several hundred clients on every wire (WebSocket in both dialects,
//! TCP lines, QUIC, and in-process line pipes through the public `FrameRead` /
//! `FrameWrite` transport API) against one real server, driven by random actions:
//! joins, sequence-numbered publishes, graceful leaves, hard kills (a dropped socket, a
//! TCP reset, a QUIC stream reset), half-open clients that stop reading, reconnects and
//! short floods that trip 4011. Afterwards it checks what the protocol promises:
//!
//! - presence in the hub and over REST equals the set of live clients, room by room;
//! - every member that stayed connected throughout saw every departure exactly once
//!   (`/leave`, or a `presence` left) and every arrival once;
//! - such a member got every publisher's messages without loss, duplicate or
//!   reordering (per-publisher sequence numbers), none before the publisher's arrival
//!   nor after its departure, all of them from publishers still connected, and at
//!   least the acknowledged ones from those that left;
//! - once everyone is gone, the hub is empty (connections, rooms, per-IP, per-tenant
//!   and per-peer counts), every gauge is back to zero, no connection task panicked,
//!   and the process has no more file descriptors open than before the run.
//!
//! It prints the seed first and its figures last (clients, actions, closes, RSS).
//! Replay a run with `SWITCHYARD_SOAK_SEED=<seed>`; run longer with
//! `SWITCHYARD_SOAK_SECS=<seconds of chaos>` (default 4) and more clients with
//! `SWITCHYARD_SOAK_CLIENTS` (default 300). See `docs/security.md` ("Testing under
//! load and chaos").
//!
//! The run is one scenario and reads top to bottom in this file (`soak_every_wire_…`),
//! with the model it shares: the plan, what each client records and the commands it
//! takes. The machinery has a file each: `frames` (the server's frames into a
//! record), `client` (connections on each wire and their tasks), `probes` (what
//! is measured of the server, and bounded waits) and `checks` (the promises above).

#[path = "../common/mod.rs"]
mod common;

mod checks;
mod client;
mod frames;
mod plan;
mod probes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard::core::Dialect;
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use switchyard::transports::DriverHandle;
use switchyard::transports::quic::quinn;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use checks::{check_empty, check_presence, check_rooms};
use client::spawn_client;
use plan::Rng;
use probes::{converge, fd_count, get, rss};

const ROOMS: usize = 10;
/// How long one client connection (handshake, welcome) may take on a loaded box.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long the system may take to converge after the chaos stops.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Frames in a flood: far past the burst, so the hub's 4011 must end it.
const FLOOD: usize = 150;
const API_KEY: &str = "ak_soak:soak-secret";

// ---------------------------------------------------------------- the plan and the rng

// ---------------------------------------------------------------- what a client records

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Wire {
    Ws,
    Tcp,
    Quic,
    Pipe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lang {
    Rtc,
    Json,
}

impl Lang {
    fn dialect(self) -> Dialect {
        match self {
            Self::Rtc => Dialect::Signaller,
            Self::Json => Dialect::Json,
        }
    }
}

/// What a peer saw of another, in the order it arrived.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Join(String),
    Leave(String),
    Msg(String, u64),
}

/// One connection's view, shared between its task and the checks.
#[derive(Debug, Default)]
struct Record {
    id: String,
    /// The server confirmed the join (`/roominfo`, or the subscribe's `ack`).
    joined: bool,
    /// Publishes written so far: the next sequence number.
    sent: u64,
    /// Publishes acknowledged (JSON): sequence numbers below this were queued to every
    /// member connected at the time.
    acked: u64,
    events: Vec<Ev>,
    /// The server's close code, when it closed us.
    close: Option<u16>,
    /// The task is over: the server closed the connection, or we ended it.
    ended: bool,
    errors: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Record>>;

fn lock(rec: &Shared) -> std::sync::MutexGuard<'_, Record> {
    rec.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------- clients

/// What the orchestrator tells a client to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Join,
    Publish,
    /// `/leave` or unsubscribe, then a clean close, read to the end.
    Leave,
    /// Drop the connection without a word (FIN, or QUIC's implicit close).
    Drop,
    /// A TCP reset (`SO_LINGER` 0), or a QUIC stream reset.
    Reset,
    /// Stop reading, keep the socket.
    HalfOpen,
    /// Frames far past the rate limit's burst.
    Flood,
}

/// The server and what clients need to reach it.
struct Env {
    running: Running,
    quic_client: quinn::Endpoint,
    certificate: quinn::rustls::pki_types::CertificateDer<'static>,
}

impl Env {
    fn driver(&self) -> &DriverHandle {
        &self.running.driver
    }
}

/// One connection of one client: `round` counts its reconnects.
struct Incarnation {
    slot: usize,
    round: u32,
    wire: Wire,
    lang: Lang,
    room: usize,
    stable: bool,
    rec: Shared,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
    /// What the orchestrator did to end it, if anything.
    fate: Option<Cmd>,
}

impl Incarnation {
    fn id(&self) -> String {
        lock(&self.rec).id.clone()
    }

    fn tell(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
    }

    fn live(&self) -> bool {
        self.fate.is_none() && !lock(&self.rec).ended
    }
}

// ---------------------------------------------------------------- the server

fn settings(dir: &std::path::Path) -> Settings {
    let toml = format!(
        r#"
[listen]
ws = "127.0.0.1:0"
tcp = "127.0.0.1:0"
tcp_dialect = "auto"
quic = "127.0.0.1:0"

[ws]
# A dead WebSocket peer is dropped within 2 s; a live one, however starved, answers.
ping_interval_ms = 300
pong_timeout_ms = 1700
handshake_timeout_ms = 20000

[quic]
dev_cert_file = {cert:?}
idle_timeout_ms = 10000
handshake_timeout_ms = 20000

[driver]
max_connections = 10000

[auth]
anonymous = true
[[auth.keys]]
kid = "k1"
secret = "switchyard-test-secret-0123456789"

[limits]
# Publishers stay far below the rate; a flood passes the burst at once.
message_rate = 50
message_burst = 30
rate_close_after = 10

[[api.keys]]
id = "ak_soak"
secret = "soak-secret"
"#,
        cert = dir.join("soak-dev.pem").display().to_string()
    );
    Settings::from_toml(&toml, std::iter::empty()).expect("soak settings")
}

// ---------------------------------------------------------------- the run

/// The wire, dialect, room and stability of a client slot.
fn profile(rng: &mut Rng, slot: usize) -> (Wire, Lang, usize, bool) {
    let (wire, lang) = match rng.below(20) {
        0..=4 => (Wire::Ws, Lang::Rtc),
        5..=9 => (Wire::Ws, Lang::Json),
        10..=11 => (Wire::Tcp, Lang::Rtc),
        12..=13 => (Wire::Tcp, Lang::Json),
        14..=15 => (Wire::Quic, Lang::Rtc),
        16..=17 => (Wire::Quic, Lang::Json),
        18 => (Wire::Pipe, Lang::Rtc),
        _ => (Wire::Pipe, Lang::Json),
    };
    // A third of the clients stay connected throughout: they are the observers whose
    // view is checked.
    (wire, lang, slot % ROOMS, slot.is_multiple_of(3))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_every_wire_with_random_joins_publishes_kills_floods_and_reconnects() {
    let plan = plan::plan(4.0, 300);
    println!(
        "soak: seed {} ({} clients, {:?} of chaos); replay with SWITCHYARD_SOAK_SEED={}",
        plan.seed, plan.clients, plan.chaos, plan.seed
    );
    let started = Instant::now();
    let mut rng = Rng(plan.seed);
    let dir = std::env::temp_dir().join(format!("switchyard-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let running = server::start(&settings(&dir)).await.expect("server starts");
    let certificate = quinn::rustls::pki_types::CertificateDer::from(
        running.quic_certificate.clone().expect("quic certificate"),
    );
    let quic_client =
        quinn::Endpoint::client("127.0.0.1:0".parse().expect("addr")).expect("quic client");
    let env = Arc::new(Env {
        running,
        quic_client,
        certificate,
    });
    // Warm the REST path once, so its lazily made state is part of the baseline.
    let _ = get(env.running.ws_addr.expect("ws"), "/healthz").await;
    let baseline_fds = fd_count();
    let baseline_rss = rss();

    // Everyone connects (a few dozen handshakes at a time) and joins.
    let gate = Arc::new(Semaphore::new(32));
    let mut profiles = Vec::new();
    let mut connecting = Vec::new();
    for slot in 0..plan.clients {
        let p = profile(&mut rng, slot);
        profiles.push(p);
        let (env, gate) = (Arc::clone(&env), Arc::clone(&gate));
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("gate");
            spawn_client(env, slot, 0, p).await
        }));
    }
    let mut current: Vec<Option<Incarnation>> = Vec::new();
    for c in connecting {
        current.push(Some(c.await.expect("client connects")));
    }
    let mut retired: Vec<Incarnation> = Vec::new();
    converge("every client's join", plan.seed, SETTLE_WAIT, || {
        let pending = current
            .iter()
            .flatten()
            .filter(|i| !lock(&i.rec).joined)
            .count();
        async move {
            if pending == 0 {
                Ok(())
            } else {
                Err(format!("{pending} clients not joined"))
            }
        }
    })
    .await;
    let joined_after = started.elapsed();

    // Chaos: one random action every few milliseconds.
    let mut actions: BTreeMap<Cmd, u64> = BTreeMap::new();
    let mut reconnecting: BTreeMap<usize, JoinHandle<Incarnation>> = BTreeMap::new();
    let mut rounds = vec![0_u32; plan.clients];
    let mut pace = tokio::time::interval(Duration::from_millis(4));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let chaos_end = Instant::now() + plan.chaos;
    while Instant::now() < chaos_end {
        pace.tick().await;
        let slot = rng.below(plan.clients);
        if let Some(task) = reconnecting.remove(&slot) {
            if !task.is_finished() {
                reconnecting.insert(slot, task);
                continue;
            }
            current[slot] = Some(task.await.expect("reconnect"));
        }
        let Some(inc) = current[slot].as_ref() else {
            continue;
        };
        let roll = rng.below(100);
        let cmd = match roll {
            _ if lock(&inc.rec).ended => None, // closed by the server (a flood): reconnect
            0..=69 => Some(Cmd::Publish),
            _ if inc.stable => Some(Cmd::Publish),
            70..=77 => Some(Cmd::Leave),
            78..=83 => Some(Cmd::Drop),
            84..=89 => Some(Cmd::Reset),
            90..=95 => Some(Cmd::HalfOpen),
            _ => Some(Cmd::Flood),
        };
        if let Some(cmd) = cmd {
            inc.tell(cmd);
            *actions.entry(cmd).or_default() += 1;
            if matches!(cmd, Cmd::Publish | Cmd::Flood) {
                continue;
            }
        }
        // This client ends here and comes back as a new connection.
        let mut old = current[slot].take().expect("current");
        old.fate = cmd.or(Some(Cmd::Flood));
        retired.push(old);
        rounds[slot] += 1;
        let (env, p, round) = (Arc::clone(&env), profiles[slot], rounds[slot]);
        reconnecting.insert(
            slot,
            tokio::spawn(async move { spawn_client(env, slot, round, p).await }),
        );
    }
    for (slot, task) in std::mem::take(&mut reconnecting) {
        current[slot] = Some(task.await.expect("reconnect"));
    }
    let chaos_took = started.elapsed() - joined_after;
    let peak_rss = rss();

    // The half-open clients are dropped now; every other departure is under way.
    for inc in retired.iter().filter(|i| i.fate == Some(Cmd::HalfOpen)) {
        inc.tell(Cmd::Drop);
    }
    converge(
        "every reconnected client's join",
        plan.seed,
        SETTLE_WAIT,
        || {
            let pending: Vec<String> = current
                .iter()
                .flatten()
                .filter(|i| i.live() && !lock(&i.rec).joined)
                .map(Incarnation::id)
                .collect();
            async move {
                if pending.is_empty() {
                    Ok(())
                } else {
                    Err(format!("not joined: {pending:?}"))
                }
            }
        },
    )
    .await;
    {
        let all: Vec<&Incarnation> = current.iter().flatten().chain(retired.iter()).collect();
        converge("presence", plan.seed, SETTLE_WAIT, || {
            check_presence(&env, &all)
        })
        .await;
        converge("leaves and deliveries", plan.seed, SETTLE_WAIT, || {
            let verdict = check_rooms(&all);
            async move { verdict }
        })
        .await;
    }

    // The figures, before everyone goes.
    let all: Vec<&Incarnation> = current.iter().flatten().chain(retired.iter()).collect();
    let mut closes: BTreeMap<u16, u64> = BTreeMap::new();
    let mut by_wire: BTreeMap<(Wire, Lang), u64> = BTreeMap::new();
    let (mut published, mut received) = (0, 0);
    for inc in &all {
        let r = lock(&inc.rec);
        if let Some(code) = r.close {
            *closes.entry(code).or_default() += 1;
        }
        *by_wire.entry((inc.wire, inc.lang)).or_default() += 1;
        published += r.sent;
        received += r.events.iter().filter(|e| matches!(e, Ev::Msg(..))).count();
    }
    if actions.get(&Cmd::Flood).copied().unwrap_or(0) > 0 {
        assert!(
            closes.contains_key(&4011),
            "soak (seed {}): floods but no 4011 close: {closes:?}",
            plan.seed
        );
    }
    let live = all.iter().filter(|i| i.live()).count();
    let stable = all.iter().filter(|i| i.stable).count();
    let max_round = all.iter().map(|i| i.round).max().unwrap_or(0);
    let slots_reconnected = all
        .iter()
        .filter(|i| i.round > 0)
        .map(|i| i.slot)
        .collect::<BTreeSet<_>>();

    let incarnations = all.len();
    drop(all);

    // Everyone leaves: nothing may be left behind.
    for inc in current.iter().flatten() {
        inc.tell(Cmd::Leave);
    }
    for inc in current.into_iter().flatten().chain(retired) {
        tokio::time::timeout(SETTLE_WAIT, inc.task)
            .await
            .unwrap_or_else(|_| panic!("soak (seed {}): a client task never ended", plan.seed))
            .expect("client task");
    }
    converge("an empty server", plan.seed, SETTLE_WAIT, || {
        check_empty(&env, baseline_fds)
    })
    .await;
    let end_rss = rss();
    println!(
        "soak: seed {seed}: {clients} clients ({stable} stable observers), {incarnations} \
         connections ({reconnected} clients reconnected, up to {max_round} times), {live} live \
         at the end; by wire and dialect {by_wire:?}",
        seed = plan.seed,
        clients = plan.clients,
        reconnected = slots_reconnected.len(),
    );
    println!(
        "soak: actions {actions:?}; {published} messages published, {received} received; \
         server closes seen by clients {closes:?}"
    );
    println!(
        "soak: joined after {joined_after:?}, chaos {chaos_took:?}, whole run {:?}; \
         file descriptors {baseline_fds} before and after",
        started.elapsed()
    );
    println!(
        "soak: RSS (VmRSS / VmHWM, KiB): before {baseline_rss:?}, after the chaos {peak_rss:?}, \
         at the end {end_rss:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
