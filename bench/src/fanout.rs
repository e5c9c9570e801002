//! Fan-out: one publisher, N subscribers in one channel. Fixed loads (deliveries per
//! second) report latency, the server's CPU time per delivery and the backlog after a
//! grace period; a sweep steps the rate up until p99 passes a threshold (the knee).
//!
//! The publisher may sit on another server than the subscribers (`publish_target`): a
//! cluster's cross-node fan-out, measured the same way, with the CPU time of every
//! process involved ([`Watched`]) and the Redis `PUBLISH` count per step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Conn, Event, Target};
use crate::payload::{self, Clock, Kind, Stamp};
use crate::stats::{Latency, Recorder};
use crate::{procfs, redis_info};

/// What to run.
#[derive(Clone, Debug)]
pub struct FanoutOpts {
    /// The subscribers' server.
    pub target: Target,
    /// The publisher's server, when not `target` (another node of a cluster).
    pub publish_target: Option<Target>,
    /// Subscribers.
    pub subs: usize,
    /// Payload bytes.
    pub payload: usize,
    /// Publishing time per step.
    pub duration: Duration,
    /// Time after publishing within which deliveries count.
    pub grace: Duration,
    /// Fixed loads, deliveries per second.
    pub rates: Vec<u64>,
    /// The knee sweep, if any.
    pub knee: Option<KneeOpts>,
    /// The server's pid, for CPU time.
    pub server_pid: Option<u32>,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// More processes whose CPU time each step reports (cluster nodes, Redis).
    pub watched: Vec<Watched>,
    /// A Redis whose `PUBLISH` count each step reports.
    pub redis: Option<SocketAddr>,
}

/// A process whose CPU time a step reports under a name of its own.
#[derive(Clone, Debug)]
pub struct Watched {
    /// The name in the results (`node-a`, `redis`).
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

/// One watched process's CPU time over a step.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct ProcCpu {
    /// As in [`Watched::name`].
    pub name: String,
    /// CPU seconds (user + system) over the publishing window.
    pub cpu_s: f64,
    /// CPU microseconds per delivery over the publishing window.
    pub cpu_us_per_delivery: f64,
    /// CPU seconds from the start of publishing to the end of the grace period.
    pub cpu_with_grace_s: f64,
}

/// The knee sweep: from `start` deliveries/s, times `factor` per step, until p99 passes
/// `p99_ms` (or deliveries fall behind) or `max` is passed.
#[derive(Clone, Copy, Debug)]
pub struct KneeOpts {
    /// First step, deliveries/s.
    pub start: u64,
    /// Growth per step.
    pub factor: f64,
    /// Last step at most, deliveries/s.
    pub max: u64,
    /// The p99 that ends the sweep, ms.
    pub p99_ms: f64,
}

/// One step's figures.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Step {
    /// `fixed` or `sweep`.
    pub mode: String,
    /// Subscribers connected.
    pub subs: usize,
    /// Asked-for deliveries/s.
    pub target_per_s: u64,
    /// Messages published.
    pub published: u64,
    /// `published` × subscribers.
    pub expected: u64,
    /// Deliveries seen by the end of the grace period.
    pub delivered: u64,
    /// `delivered` per second of publishing.
    pub delivered_per_s: f64,
    /// Deliveries missing after the grace period.
    pub backlog: u64,
    /// `backlog` as a percentage of `expected`.
    pub backlog_pct: f64,
    /// Publish → receive latency.
    pub latency: Latency,
    /// Server CPU seconds (user + system) over the publishing window.
    pub server_cpu_s: f64,
    /// Server CPU microseconds per delivery over the publishing window.
    pub cpu_us_per_delivery: f64,
    /// Server CPU seconds from the start of publishing to the end of the grace period.
    pub server_cpu_with_grace_s: f64,
    /// Errors (refusals, lost subscribers) during the step.
    pub errors: u64,
    /// Whether the server caught up within the drain limit after the step.
    pub drained: bool,
    /// The watched processes' CPU time (empty when none were named).
    #[serde(default)]
    pub procs: Vec<ProcCpu>,
    /// Redis `PUBLISH` commands from the start of publishing to the end of the grace
    /// period (heartbeats included), when a Redis was named.
    #[serde(default)]
    pub redis_publishes: Option<u64>,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct FanoutResult {
    /// Subscribers asked for.
    pub subs: usize,
    /// Subscribers that joined.
    pub joined: usize,
    /// Seconds to connect and join everyone.
    pub setup_s: f64,
    /// Fixed-load rows, then sweep steps.
    pub steps: Vec<Step>,
    /// Highest sweep step whose p99 stayed under the threshold: deliveries/s.
    pub knee_per_s: Option<f64>,
}

/// Shared between the subscribers and the step loop.
struct Window {
    /// Only deliveries with at least this sequence number count for the step.
    first_seq: AtomicU64,
    /// Every delivery ever (to see when the server has drained).
    all: AtomicU64,
}

const PUBLISH_PERMS: &[&str] = &["publish", "subscribe"];
/// Subscribers get no `presence`: a thousand joins would otherwise cost a million
/// presence frames before the first message.
const SUBSCRIBE_PERMS: &[&str] = &["subscribe"];
const CHANNEL: &str = "fanout";

/// Runs fan-out as `opts` says.
pub async fn run(opts: &FanoutOpts) -> std::io::Result<FanoutResult> {
    let clock = Clock::start();
    let rec = Recorder::default();
    let window = Arc::new(Window {
        first_seq: AtomicU64::new(u64::MAX),
        all: AtomicU64::new(0),
    });
    let setup = Instant::now();
    let mut subscribers = JoinSet::new();
    let ready = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    for i in 0..opts.subs {
        let (target, rec, window, ready, gate) = (
            opts.target.clone(),
            rec.clone(),
            Arc::clone(&window),
            Arc::clone(&ready),
            Arc::clone(&gate),
        );
        subscribers.spawn(async move {
            let joined = {
                let _permit = gate.acquire().await;
                let id = format!("s{i}");
                Conn::join(&target, i + 1, &id, SUBSCRIBE_PERMS, CHANNEL, false).await
            };
            let Ok(mut conn) = joined else {
                rec.error();
                ready.fetch_add(1 << 32, Ordering::Relaxed);
                return;
            };
            ready.fetch_add(1, Ordering::Relaxed);
            subscribe(&mut conn, clock, &rec, &window).await;
        });
    }
    let joined = wait_joined(&ready, opts.subs).await;
    let publish_target = opts.publish_target.as_ref().unwrap_or(&opts.target);
    let mut publisher = Conn::join(publish_target, 0, "pub", PUBLISH_PERMS, CHANNEL, false).await?;
    let setup_s = setup.elapsed().as_secs_f64();
    // Let the joins' side traffic (announces, presence) settle before measuring.
    tokio::time::sleep(Duration::from_millis(opts.subs.min(300) as u64)).await;

    let mut steps = Vec::new();
    let mut seq = 0u64;
    for &rate in &opts.rates {
        let step = step(
            opts,
            "fixed",
            rate,
            joined,
            &mut publisher,
            &mut seq,
            clock,
            &rec,
            &window,
        )
        .await?;
        steps.push(step);
    }
    let mut knee_per_s = None;
    if let Some(k) = opts.knee {
        let mut rate = k.start;
        while rate <= k.max {
            let passes = |s: &Step| {
                s.latency.p99_ms <= k.p99_ms
                    && s.backlog_pct <= 1.0
                    && s.delivered_per_s >= 0.9 * rate as f64
                    && s.drained
            };
            let mut s = step(
                opts,
                "sweep",
                rate,
                joined,
                &mut publisher,
                &mut seq,
                clock,
                &rec,
                &window,
            )
            .await?;
            if !passes(&s) {
                // One retry: on a shared machine a single scheduling hiccup can put one
                // step's p99 over the line; the knee is where the rate itself does.
                steps.push(s);
                s = step(
                    opts,
                    "sweep",
                    rate,
                    joined,
                    &mut publisher,
                    &mut seq,
                    clock,
                    &rec,
                    &window,
                )
                .await?;
            }
            let ok = passes(&s);
            let delivered = s.delivered_per_s;
            steps.push(s);
            if !ok {
                break;
            }
            knee_per_s = Some(delivered);
            rate = ((rate as f64) * k.factor) as u64;
        }
    }
    subscribers.abort_all();
    Ok(FanoutResult {
        subs: opts.subs,
        joined,
        setup_s,
        steps,
        knee_per_s,
    })
}

/// Waits until every subscriber joined or failed (failures count in the high half).
async fn wait_joined(ready: &AtomicU64, subs: usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let r = ready.load(Ordering::Relaxed);
        let (ok, failed) = ((r & 0xffff_ffff) as usize, (r >> 32) as usize);
        if ok + failed >= subs || Instant::now() > deadline {
            return ok;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscriber's life after its join: count and time what arrives.
async fn subscribe(conn: &mut Conn, clock: Clock, rec: &Recorder, window: &Window) {
    while let Some(event) = conn.next().await {
        match event {
            Event::Data(stamp) => {
                window.all.fetch_add(1, Ordering::Relaxed);
                if stamp.seq >= window.first_seq.load(Ordering::Relaxed) {
                    rec.record_ns(clock.now_ns().saturating_sub(stamp.sent_ns));
                    rec.hit();
                }
            }
            Event::Error(_) => rec.error(),
            Event::Ready | Event::Left(_) => {}
        }
    }
    // The server ended the connection (the run aborts tasks instead of returning).
    rec.error();
}

/// Publishes at `rate` deliveries/s for the step's duration, waits out the grace, and
/// measures.
#[allow(clippy::too_many_arguments)]
async fn step(
    opts: &FanoutOpts,
    mode: &str,
    rate: u64,
    subs: usize,
    publisher: &mut Conn,
    seq: &mut u64,
    clock: Clock,
    rec: &Recorder,
    window: &Window,
) -> std::io::Result<Step> {
    let per_sec = rate as f64 / subs.max(1) as f64;
    window.first_seq.store(*seq, Ordering::Relaxed);
    rec.take();
    let (hits0, errors0) = (rec.hits(), rec.errors());
    let proto = opts.target.proto;
    let cpu0 = procfs::cpu_seconds(opts.server_pid);
    let watched0 = watched_cpu(&opts.watched);
    let publishes0 = opts.redis.and_then(redis_info::publish_calls);
    let start = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = start.elapsed();
        if elapsed >= opts.duration {
            break;
        }
        let due = (elapsed.as_secs_f64() * per_sec) as u64;
        let mut batch = Vec::new();
        while published < due {
            let stamp = Stamp {
                kind: Kind::Fanout,
                sent_ns: clock.now_ns(),
                seq: *seq,
                from: 0,
            };
            batch.push(proto.publish(CHANNEL, "pub", &payload::encode(stamp, opts.payload)));
            *seq += 1;
            published += 1;
        }
        if !batch.is_empty() {
            publisher.send(batch).await?;
        }
    }
    let window_s = start.elapsed().as_secs_f64();
    let cpu1 = procfs::cpu_seconds(opts.server_pid);
    let watched1 = watched_cpu(&opts.watched);
    tokio::time::sleep(opts.grace).await;
    let cpu2 = procfs::cpu_seconds(opts.server_pid);
    let watched2 = watched_cpu(&opts.watched);
    let publishes1 = opts.redis.and_then(redis_info::publish_calls);
    let delivered = rec.hits() - hits0;
    let latency = rec.take();
    let drained = drain(window).await;
    let expected = published * subs as u64;
    let backlog = expected.saturating_sub(delivered);
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let per_delivery = |cpu_s: f64| {
        if delivered == 0 {
            0.0
        } else {
            1e6 * cpu_s / delivered as f64
        }
    };
    let procs = opts
        .watched
        .iter()
        .zip(watched0.iter().zip(watched1.iter().zip(&watched2)))
        .map(|(w, (a, (b, c)))| {
            let cpu_s = b.zip(*a).map_or(0.0, |(b, a)| b - a);
            ProcCpu {
                name: w.name.clone(),
                cpu_s,
                cpu_us_per_delivery: per_delivery(cpu_s),
                cpu_with_grace_s: c.zip(*a).map_or(0.0, |(c, a)| c - a),
            }
        })
        .collect::<Vec<_>>();
    let step = Step {
        mode: mode.to_owned(),
        subs,
        target_per_s: rate,
        published,
        expected,
        delivered,
        delivered_per_s: delivered as f64 / window_s,
        backlog,
        backlog_pct: if expected == 0 {
            0.0
        } else {
            100.0 * backlog as f64 / expected as f64
        },
        latency,
        server_cpu_s,
        cpu_us_per_delivery: per_delivery(server_cpu_s),
        server_cpu_with_grace_s: match (cpu0, cpu2) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        },
        errors: rec.errors() - errors0,
        drained,
        procs,
        redis_publishes: publishes0.zip(publishes1).map(|(a, b)| b.saturating_sub(a)),
    };
    eprintln!(
        "  fanout {mode} {subs} subs @ {rate}/s: delivered {:.0}/s p50 {:.2} ms p99 {:.2} ms backlog {:.3}% cpu {:.3} us/delivery{}",
        step.delivered_per_s,
        step.latency.p50_ms,
        step.latency.p99_ms,
        step.backlog_pct,
        step.cpu_us_per_delivery,
        if drained { "" } else { " (not drained)" }
    );
    for p in &step.procs {
        eprintln!(
            "    {}: cpu {:.3} s, {:.3} us/delivery",
            p.name, p.cpu_s, p.cpu_us_per_delivery
        );
    }
    if let Some(n) = step.redis_publishes {
        eprintln!("    redis: {n} PUBLISH for {} messages", step.published);
    }
    Ok(step)
}

/// Every watched process's CPU seconds now, in `watched`'s order.
fn watched_cpu(watched: &[Watched]) -> Vec<Option<f64>> {
    watched
        .iter()
        .map(|w| procfs::cpu_seconds(Some(w.pid)))
        .collect()
}

/// Waits until deliveries stop arriving (at most 20 s); false if they never did.
async fn drain(window: &Window) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = window.all.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = window.all.load(Ordering::Relaxed);
        if now == last {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        last = now;
    }
}
