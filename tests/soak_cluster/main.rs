//! The seeded soak on a cluster: three `switchyard serve` processes over a private
//! `redis-server` (`[engine] kind = "redis"`, `presence_ttl_ms` 600), with clients of
//! both dialects on WebSocket spread over the nodes, driven by random joins,
//! sequence-numbered publishes, graceful leaves, dropped sockets and TCP resets. In the
//! middle of the run one node is killed with `kill -9`, and later Redis itself is killed
//! and started again on the same port. Afterwards it checks what `docs/cluster-redis.md`
//! promises:
//!
//! - every member that stayed connected throughout, on a node that survived, saw every
//!   other member of its room arrive once and leave once; the killed node's members
//!   left exactly once, within `presence_ttl` + [`KILL_MARGIN`] of the kill;
//! - REST `/v1/presence` on the survivors no longer lists the killed node's peers once
//!   that time has passed, and neither do the presence snapshots (or rtc-signaller
//!   introductions) of members joining after it;
//! - per (publisher, subscriber): no duplicate and no reordering, ever; no loss between
//!   members of one node, ever; across nodes no loss outside the window the docs allow:
//!   from the Redis kill ([`WINDOW_SLACK`] earlier, for messages already queued) until
//!   every surviving node's `/healthz` says `engine: redis connected` again (plus
//!   [`WINDOW_SLACK`], one heartbeat for presence to resynchronise), and, for
//!   publishers on the killed node, from [`WINDOW_SLACK`] before the kill;
//! - once the chaos stops, presence on every surviving node equals the live, joined
//!   clients of the whole cluster, room by room;
//! - no survivor declares a living node gone (its log's "silent for presence_ttl")
//!   outside the Redis outage and one `presence_ttl` after it.
//!
//! One engine behaviour is tolerated, counted and printed as a WARNING rather than
//! failed: a message that reaches another node after its publisher's leave although it
//! was sent before it. A heartbeat's state is taken from the hub when it fires and can
//! be published ahead of changes still in the engine's queue.
//!
//! It prints the seed first and its figures last. Replay a run with
//! `SWITCHYARD_SOAK_SEED=<seed>`; run longer with `SWITCHYARD_SOAK_SECS=<seconds of
//! chaos>` (default 5; at least 4, for the kill and the outage to fit) and with more
//! clients with `SWITCHYARD_SOAK_CLIENTS` (default 120).
//!
//! Redis comes from the cluster tests' `harness`, the frame parser from the
//! single-node soak's `frames`; `node` is a `switchyard serve` process, `client` a
//! WebSocket client of either dialect, and `checks` holds the promises above.
//!
//! (Over 600 lines on purpose: one scenario that reads top to bottom, setup, chaos
//! with its node kill and Redis restart, then the checks; its machinery is beside it.)

#[path = "../common/mod.rs"]
mod common;
#[path = "../soak/frames.rs"]
mod frames;
#[allow(dead_code)] // the cluster tests use more of it than this soak does
#[path = "../cluster/harness.rs"]
mod harness;
#[path = "../soak/plan.rs"]
mod plan;

mod checks;
mod client;
mod node;

use plan::Rng;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use checks::{Windows, check_absent, check_presence, check_rooms};
use client::spawn_client;
use common::http;
use harness::{Redis, TTL};
use node::Node;

const NODES: usize = 3;
const ROOMS: usize = 8;
/// How long one client connection (handshake, welcome) may take on a loaded box.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long the cluster may take to converge after the chaos stops.
const SETTLE_WAIT: Duration = Duration::from_secs(15);
/// Past `presence_ttl`, how long survivors may take to see a killed node's peers leave.
const KILL_MARGIN: Duration = Duration::from_millis(1000);
/// How long Redis stays down once every node has noticed.
const OUTAGE: Duration = Duration::from_millis(300);
/// Before a disruption: how long a message may sit in a node's engine queue (so a
/// publish sent this much earlier may still be lost). After the reconnect: one
/// heartbeat (`presence_ttl / 3`) and some, for presence to resynchronise.
const WINDOW_SLACK: Duration = Duration::from_millis(300);
/// How long the chaos goes on once every node is connected to Redis again.
const AFTER_OUTAGE: Duration = Duration::from_millis(1000);

// ---------------------------------------------------------------- the plan and the rng

// ---------------------------------------------------------------- what a client records

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Lang {
    Rtc,
    Json,
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
    /// The node confirmed the join (`/roominfo`, or the subscribe's `ack`).
    joined: bool,
    joined_at: Option<Instant>,
    /// Publishes written so far: the next sequence number.
    sent: u64,
    /// When each publish was written, by sequence number.
    sent_at: Vec<Instant>,
    /// Publishes acknowledged (JSON): sequence numbers below this were queued to every
    /// member connected at the time.
    acked: u64,
    events: Vec<Ev>,
    /// When each event arrived.
    at: Vec<Instant>,
    /// The node's close code, when it closed us.
    close: Option<u16>,
    /// The task is over: the connection ended.
    ended: bool,
    errors: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Record>>;

fn lock(rec: &Shared) -> std::sync::MutexGuard<'_, Record> {
    rec.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

// ---------------------------------------------------------------- clients

/// What the orchestrator tells a client to do, or (`Killed`) what befell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Cmd {
    Join,
    Publish,
    /// `/leave` or unsubscribe, then a clean close, read to the end.
    Leave,
    /// Drop the connection without a word.
    Drop,
    /// A TCP reset (`SO_LINGER` 0).
    Reset,
    /// Its node was killed.
    Killed,
}

/// A client slot's dialect, room, and whether it is an observer that stays throughout.
#[derive(Clone, Copy, Debug)]
struct Profile {
    lang: Lang,
    room: usize,
    stable: bool,
}

/// One connection of one client: `round` counts its reconnects.
struct Incarnation {
    round: u32,
    node: usize,
    lang: Lang,
    room: usize,
    stable: bool,
    rec: Shared,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: JoinHandle<()>,
    /// What ended it, if anything, and when.
    fate: Option<Cmd>,
    fate_at: Option<Instant>,
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

/// Waits until every address's `/healthz` contains `line`.
async fn wait_health(addrs: &[SocketAddr], line: &str, seed: u64) {
    for addr in addrs {
        let what = format!("/healthz of {addr} to say {line:?} (seed {seed})");
        harness::until(SETTLE_WAIT, &what, || async {
            let (status, body) = http(*addr, "GET", "/healthz", None, "").await;
            (status == 200 && body.contains(line)).then_some(())
        })
        .await;
    }
}

/// The Redis outage, on its own task while the chaos goes on: kill, wait until every
/// surviving node noticed, start Redis again on its port, wait until every one is
/// connected again.
struct Outage {
    down_at: Instant,
    noticed_at: Instant,
    up_at: Instant,
    connected_at: Instant,
    redis: Redis,
}

async fn outage(mut redis: Redis, survivors: Vec<SocketAddr>, seed: u64) -> Outage {
    let port = redis.port;
    redis.kill();
    let down_at = Instant::now();
    drop(redis);
    wait_health(&survivors, "engine: redis reconnecting", seed).await;
    let noticed_at = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let redis = harness::until(SETTLE_WAIT, "redis to start again on its port", || async {
        tokio::task::spawn_blocking(move || Redis::start_on("soak", port))
            .await
            .expect("redis start task")
    })
    .await;
    let up_at = Instant::now();
    wait_health(&survivors, "engine: redis connected", seed).await;
    Outage {
        down_at,
        noticed_at,
        up_at,
        connected_at: Instant::now(),
        redis,
    }
}

// ---------------------------------------------------------------- the run

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_three_nodes_through_a_node_kill_and_a_redis_restart() {
    let mut plan = plan::plan(5.0, 120);
    // The node kill and the Redis restart need at least 4 s of chaos around them.
    plan.chaos = plan.chaos.max(Duration::from_secs(4));
    let seed = plan.seed;
    println!(
        "soak_cluster: seed {seed} ({} clients on {NODES} nodes, {:?} of chaos); replay with \
         SWITCHYARD_SOAK_SEED={seed}",
        plan.clients, plan.chaos
    );
    let started = Instant::now();
    let mut rng = Rng(seed);
    let redis = Redis::start("soak");
    let mut nodes = Vec::new();
    for n in 0..NODES {
        nodes.push(Node::start(&redis, &format!("soak{n}")).await);
    }
    for node in &nodes {
        node.wait_live_nodes(NODES as u64 - 1).await;
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.ws).collect();
    let mut alive = [true; NODES];

    // Everyone connects (a few dozen handshakes at a time) to a random node and joins.
    let gate = Arc::new(Semaphore::new(16));
    let mut profiles = Vec::new();
    let mut connecting = Vec::new();
    for slot in 0..plan.clients {
        let p = Profile {
            lang: if rng.below(2) == 0 {
                Lang::Rtc
            } else {
                Lang::Json
            },
            room: rng.below(ROOMS),
            // A third of the clients stay connected throughout: the observers.
            stable: rng.below(3) == 0,
        };
        profiles.push(p);
        let node = rng.below(NODES);
        let (addr, gate) = (addrs[node], Arc::clone(&gate));
        connecting.push(tokio::spawn(async move {
            let _permit = gate.acquire().await.expect("gate");
            spawn_client(addr, node, slot, 0, p).await
        }));
    }
    let mut current: Vec<Option<Incarnation>> = Vec::new();
    for c in connecting {
        current.push(Some(c.await.expect("client connects")));
    }
    let mut retired: Vec<Incarnation> = Vec::new();
    checks::converge("every client's join", seed, SETTLE_WAIT, || {
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

    // Chaos: one random action every few milliseconds; a node killed a quarter of the
    // way in; Redis killed once the survivors have had time to see the node's peers go.
    let chaos_start = Instant::now();
    let kill_due = chaos_start + plan.chaos / 4;
    let redis_due = (chaos_start + plan.chaos * 3 / 5).max(kill_due + TTL + KILL_MARGIN * 2);
    let mut killed: Option<(usize, Instant)> = None;
    let mut absent_probe: Option<JoinHandle<Result<(), String>>> = None;
    let mut redis = Some(redis);
    let mut restarting: Option<JoinHandle<Outage>> = None;
    let mut actions: BTreeMap<Cmd, u64> = BTreeMap::new();
    let mut reconnecting: BTreeMap<usize, JoinHandle<Incarnation>> = BTreeMap::new();
    let mut rounds = vec![0_u32; plan.clients];
    let mut pace = tokio::time::interval(Duration::from_millis(2));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut chaos_end = chaos_start + plan.chaos;
    let mut extended = false;
    while Instant::now() < chaos_end {
        pace.tick().await;
        // Traffic goes on for a while after the reconnect: delivery must resume.
        if !extended && let Some(r) = restarting.as_ref() {
            chaos_end = chaos_end.max(Instant::now() + AFTER_OUTAGE);
            extended = r.is_finished();
        }
        if killed.is_none() && Instant::now() >= kill_due {
            // No connection may be on its way to the node being killed.
            for (slot, task) in std::mem::take(&mut reconnecting) {
                current[slot] = Some(task.await.expect("reconnect"));
            }
            let victim = rng.below(NODES);
            nodes[victim].kill9().await;
            let at = Instant::now();
            alive[victim] = false;
            killed = Some((victim, at));
            let dead_ids: Vec<String> = current
                .iter()
                .flatten()
                .chain(retired.iter())
                .filter(|i| i.node == victim)
                .map(Incarnation::id)
                .collect();
            for slot in 0..plan.clients {
                if current[slot].as_ref().is_some_and(|i| i.node == victim) {
                    let mut old = current[slot].take().expect("current");
                    old.fate = Some(Cmd::Killed);
                    old.fate_at = Some(at);
                    retired.push(old);
                    rounds[slot] += 1;
                    let node = survivor(&mut rng, &alive);
                    let (addr, p, round) = (addrs[node], profiles[slot], rounds[slot]);
                    reconnecting.insert(
                        slot,
                        tokio::spawn(async move { spawn_client(addr, node, slot, round, p).await }),
                    );
                }
            }
            let survivors = living(&addrs, &alive);
            absent_probe = Some(tokio::spawn(async move {
                tokio::time::sleep_until((at + TTL + KILL_MARGIN).into()).await;
                check_absent(&survivors, &dead_ids).await
            }));
        }
        if restarting.is_none() && Instant::now() >= redis_due {
            let survivors = living(&addrs, &alive);
            let redis = redis.take().expect("redis");
            restarting = Some(tokio::spawn(outage(redis, survivors, seed)));
        }
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
        let cmd = match rng.below(100) {
            _ if lock(&inc.rec).ended => None, // the connection ended under it: reconnect
            0..=79 => Some(Cmd::Publish),
            _ if inc.stable => Some(Cmd::Publish),
            80..=87 => Some(Cmd::Leave),
            88..=94 => Some(Cmd::Drop),
            _ => Some(Cmd::Reset),
        };
        if let Some(cmd) = cmd {
            inc.tell(cmd);
            *actions.entry(cmd).or_default() += 1;
            if cmd == Cmd::Publish {
                continue;
            }
        }
        // This client ends here and comes back as a new connection, on a living node.
        let mut old = current[slot].take().expect("current");
        old.fate = cmd.or(Some(Cmd::Drop));
        old.fate_at = Some(Instant::now());
        retired.push(old);
        rounds[slot] += 1;
        let node = survivor(&mut rng, &alive);
        let (addr, p, round) = (addrs[node], profiles[slot], rounds[slot]);
        reconnecting.insert(
            slot,
            tokio::spawn(async move { spawn_client(addr, node, slot, round, p).await }),
        );
    }
    for (slot, task) in std::mem::take(&mut reconnecting) {
        current[slot] = Some(task.await.expect("reconnect"));
    }
    let chaos_took = chaos_start.elapsed();
    let (victim, killed_at) = killed.expect("the chaos killed a node");
    let outage = restarting
        .expect("the chaos restarted redis")
        .await
        .expect("the outage task");
    let absent = absent_probe
        .expect("probe")
        .await
        .expect("the absence probe");
    if let Err(e) = absent {
        panic!(
            "soak_cluster (seed {seed}): {:?} after node {victim}'s kill, REST presence on the \
             survivors still lists its peers:\n{e}\nreplay with SWITCHYARD_SOAK_SEED={seed}",
            TTL + KILL_MARGIN
        );
    }
    let windows = Windows {
        killed: victim,
        killed_at,
        outage: (
            outage.down_at - WINDOW_SLACK,
            outage.connected_at + WINDOW_SLACK,
        ),
        redis_killed_at: outage.down_at,
    };

    // Which nodes each survivor declared gone, and when (wall clock, as in the logs):
    // the killed one once, and no living one outside the outage.
    println!(
        "soak_cluster: node {victim} killed at {:.3} (seconds of the UTC day), redis killed at \
         {:.3}, every node connected at {:.3}",
        day_seconds(killed_at),
        day_seconds(outage.down_at),
        day_seconds(outage.connected_at)
    );
    let excused = (
        day_seconds(outage.down_at),
        day_seconds(outage.connected_at + TTL + WINDOW_SLACK),
    );
    let mut spurious = Vec::new();
    for (n, node) in nodes.iter().enumerate().filter(|(n, _)| alive[*n]) {
        for line in node.log_lines("silent for presence_ttl") {
            println!("soak_cluster: node {n} logged: {line}");
            let gone_is_alive =
                (0..NODES).any(|m| alive[m] && line.ends_with(&format!("node=soak{m}")));
            let at = log_seconds(&line);
            if gone_is_alive && !(excused.0..=excused.1).contains(&at) {
                spurious.push(format!("node {n}: {line}"));
            }
        }
    }
    assert!(
        spurious.is_empty(),
        "soak_cluster (seed {seed}): a survivor declared a living node gone outside the Redis \
         outage (+ presence_ttl):\n{}\nreplay with SWITCHYARD_SOAK_SEED={seed}",
        spurious.join("\n")
    );

    // Settle: every client joined, presence converged on every survivor, every
    // observer's view complete.
    let survivors = living(&addrs, &alive);
    checks::converge("every reconnected client's join", seed, SETTLE_WAIT, || {
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
    })
    .await;
    let all: Vec<&Incarnation> = current.iter().flatten().chain(retired.iter()).collect();
    checks::converge("presence on every survivor", seed, SETTLE_WAIT, || {
        check_presence(&survivors, &all)
    })
    .await;
    let mut figures = checks::Figures::default();
    checks::converge("leaves and deliveries", seed, SETTLE_WAIT, || {
        let verdict = check_rooms(&all, &windows, &mut figures);
        async move { verdict }
    })
    .await;

    // The figures.
    let mut published = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for inc in &all {
        let r = lock(&inc.rec);
        published += r.sent;
        for (code, n) in &r.errors {
            *errors.entry(code.clone()).or_default() += n;
        }
    }
    let stable = all.iter().filter(|i| i.stable && i.round == 0).count();
    let max_round = all.iter().map(|i| i.round).max().unwrap_or(0);
    let by_node = all.iter().fold([0; NODES], |mut n, i| {
        n[i.node] += 1;
        n
    });
    let incarnations = all.len();
    drop(all);
    println!(
        "soak_cluster: seed {seed}: {} clients ({stable} observers), {incarnations} connections \
         (by node {by_node:?}, up to {max_round} per client); actions {actions:?}; errors \
         {errors:?}",
        plan.clients
    );
    println!(
        "soak_cluster: {published} messages published, {} deliveries checked for order; {} \
         (publisher, observer) pairs checked for loss, {} messages lost inside the windows; {} \
         leaves of node {victim}'s peers checked, the last {:?} after the kill (presence_ttl \
         {TTL:?})",
        figures.deliveries,
        figures.pairs,
        figures.lost_in_window,
        figures.kill_leaves,
        figures.slowest_kill_leave
    );
    println!(
        "soak_cluster: redis outage, from its kill: every node noticed after {:?}, redis \
         restarted after {:?}, every node connected after {:?}; loss window with slack {:?}",
        outage.noticed_at - outage.down_at,
        outage.up_at - outage.down_at,
        outage.connected_at - outage.down_at,
        windows.outage.1 - windows.outage.0
    );
    if let Some(example) = &figures.after_leave_example {
        println!(
            "soak_cluster: WARNING (seed {seed}): {} cross-node message(s) arrived after their \
             publisher's leave although sent before it (a heartbeat's state overtook the \
             engine's queue); first: {example}",
            figures.after_leave
        );
    }
    println!(
        "soak_cluster: joined after {joined_after:?}, chaos {chaos_took:?}, whole run {:?}",
        started.elapsed()
    );

    // Everyone leaves; the processes go with `nodes` and `outage.redis`.
    for inc in current.iter().flatten() {
        inc.tell(Cmd::Leave);
    }
    for inc in current.into_iter().flatten().chain(retired) {
        tokio::time::timeout(SETTLE_WAIT, inc.task)
            .await
            .unwrap_or_else(|_| panic!("soak_cluster (seed {seed}): a client task never ended"))
            .expect("client task");
    }
    drop(nodes);
    drop(outage.redis);
}

/// `t` as seconds of the UTC day, as the nodes' logs print it.
fn day_seconds(t: Instant) -> f64 {
    let ago = Instant::now().saturating_duration_since(t);
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
        - ago.as_secs_f64();
    unix % 86_400.0
}

/// The seconds of the UTC day of a log line (`2026-12-03T07:14:44.171585Z …`).
fn log_seconds(line: &str) -> f64 {
    let time = line
        .split_once('T')
        .and_then(|(_, rest)| rest.split_once('Z'))
        .map_or("", |(time, _)| time);
    time.split(':')
        .map(|part| part.parse::<f64>().unwrap_or(0.0))
        .fold(0.0, |acc, part| acc * 60.0 + part)
}

/// A random living node.
fn survivor(rng: &mut Rng, alive: &[bool; NODES]) -> usize {
    let living: Vec<usize> = (0..NODES).filter(|n| alive[*n]).collect();
    living[rng.below(living.len())]
}

fn living(addrs: &[SocketAddr], alive: &[bool; NODES]) -> Vec<SocketAddr> {
    (0..NODES).filter(|n| alive[*n]).map(|n| addrs[n]).collect()
}
