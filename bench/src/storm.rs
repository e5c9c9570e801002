//! Connect storm: many clients connect, authenticate (a JWT in the URL, when the
//! target has a key) and subscribe, a bounded number at a time. Reports connections per
//! second, the connect-to-subscribed time, the server's CPU per connection, and the
//! kernel's listen-queue overflows over the storm.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Conn, Target};
use crate::procfs;
use crate::proto::Proto;
use crate::stats::{Latency, Recorder};

/// What to run.
#[derive(Clone, Debug)]
pub struct StormOpts {
    /// The server.
    pub target: Target,
    /// Connections in all.
    pub conns: usize,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// The server's pid, for CPU time.
    pub server_pid: Option<u32>,
}

/// The storm's figures.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct StormResult {
    /// Whether connections carried a JWT.
    pub auth: bool,
    /// Connections tried.
    pub conns: usize,
    /// Connections that got subscribed.
    pub ok: u64,
    /// Connections that failed.
    pub failed: u64,
    /// Seconds from the first connect to the last subscription.
    pub elapsed_s: f64,
    /// Subscribed connections per second.
    pub per_s: f64,
    /// TCP connect → subscription confirmed.
    pub connect: Latency,
    /// Server CPU seconds over the storm.
    pub server_cpu_s: f64,
    /// Server CPU microseconds per connection.
    pub cpu_us_per_conn: f64,
    /// `TcpExt: ListenOverflows` before and after (system-wide).
    pub listen_overflows: (u64, u64),
    /// `TcpExt: ListenDrops` before and after (system-wide).
    pub listen_drops: (u64, u64),
}

/// Runs the storm; every connection stays open until the end, then all close.
pub async fn run(opts: &StormOpts) -> std::io::Result<StormResult> {
    let rec = Recorder::default();
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (over0, drops0) = procfs::listen_overflows().unwrap_or_default();
    let cpu0 = procfs::cpu_seconds(opts.server_pid);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..opts.conns {
        let (target, rec, gate) = (opts.target.clone(), rec.clone(), Arc::clone(&gate));
        tasks.spawn(async move {
            let _permit = gate.acquire().await;
            let id = format!("c{i}");
            let channel = channel_for(target.proto, i);
            let t0 = Instant::now();
            let joined = tokio::time::timeout(
                Duration::from_secs(30),
                Conn::join(&target, i, &id, &["subscribe"], &channel, false),
            )
            .await;
            match joined {
                Ok(Ok(conn)) => {
                    rec.record_ns(u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX));
                    rec.hit();
                    Some(conn)
                }
                _ => {
                    rec.error();
                    None
                }
            }
        });
    }
    let mut open = Vec::with_capacity(opts.conns);
    while let Some(done) = tasks.join_next().await {
        if let Ok(Some(conn)) = done {
            open.push(conn);
        }
    }
    let elapsed_s = start.elapsed().as_secs_f64();
    let cpu1 = procfs::cpu_seconds(opts.server_pid);
    let (over1, drops1) = procfs::listen_overflows().unwrap_or_default();
    drop(open);
    let ok = rec.hits();
    let server_cpu_s = match (cpu0, cpu1) {
        (Some(a), Some(b)) => b - a,
        _ => 0.0,
    };
    let result = StormResult {
        auth: opts.target.key.is_some(),
        conns: opts.conns,
        ok,
        failed: rec.errors(),
        elapsed_s,
        per_s: ok as f64 / elapsed_s,
        connect: rec.take(),
        server_cpu_s,
        cpu_us_per_conn: if ok == 0 {
            0.0
        } else {
            1e6 * server_cpu_s / ok as f64
        },
        listen_overflows: (over0, over1),
        listen_drops: (drops0, drops1),
    };
    eprintln!(
        "  storm {} conns (auth {}): {:.0} conn/s p50 {:.2} ms p99 {:.2} ms cpu {:.0} us/conn failed {} ListenOverflows +{}",
        result.conns,
        result.auth,
        result.per_s,
        result.connect.p50_ms,
        result.connect.p99_ms,
        result.cpu_us_per_conn,
        result.failed,
        over1.saturating_sub(over0)
    );
    // Let the server finish the closes before whatever runs next.
    tokio::time::sleep(Duration::from_micros(opts.conns as u64 * 250).min(Duration::from_secs(1)))
        .await;
    Ok(result)
}

/// Each connection its own channel (no presence or announce traffic between them); for
/// rtc-signaller a room of ten, as rooms are what it has.
pub(crate) fn channel_for(proto: Proto, i: usize) -> String {
    match proto {
        Proto::Signaller => format!("room{}", i / 10),
        _ => format!("ch{i}"),
    }
}
