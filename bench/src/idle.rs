//! Idle memory: open authenticated, subscribed connections in steps (1k, 5k, 10k…),
//! let the server settle, and read its resident set. The slope of RSS against
//! connections is the cost of one idle connection.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Conn, Target};
use crate::procfs;
use crate::proto::Proto;

/// What to run.
#[derive(Clone, Debug)]
pub struct IdleOpts {
    /// The server.
    pub target: Target,
    /// Connection counts to measure at, ascending.
    pub steps: Vec<usize>,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// Wait before reading RSS at each step.
    pub settle: Duration,
    /// The server's pid (required for RSS).
    pub server_pid: Option<u32>,
}

/// One measurement.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct IdlePoint {
    /// Connections open.
    pub conns: usize,
    /// Server resident set, bytes.
    pub rss_bytes: u64,
    /// `/proc/net/sockstat`'s TCP line.
    pub sockstat: String,
}

/// The run's figures.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct IdleResult {
    /// Before any connection, then one point per step.
    pub points: Vec<IdlePoint>,
    /// Least-squares slope of RSS over connections (the step points), bytes.
    pub bytes_per_conn: f64,
    /// Connections that failed to join.
    pub failed: u64,
}

/// Runs the steps; every connection stays open (answering keepalives) to the end.
pub async fn run(opts: &IdleOpts) -> std::io::Result<IdleResult> {
    let mut points = vec![point(0, opts.server_pid)];
    let mut held = JoinSet::new();
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut opened = 0;
    let mut failed = 0;
    for &step in &opts.steps {
        for i in opened..step {
            let (target, gate, ready_tx) =
                (opts.target.clone(), Arc::clone(&gate), ready_tx.clone());
            held.spawn(async move {
                let joined = {
                    let _permit = gate.acquire().await;
                    let channel = channel_for(target.proto, i);
                    Conn::join(
                        &target,
                        i,
                        &format!("i{i}"),
                        &["subscribe"],
                        &channel,
                        false,
                    )
                    .await
                };
                let _ = ready_tx.send(joined.is_ok());
                if let Ok(mut conn) = joined {
                    // Reading answers the server's pings (and NATS PINGs).
                    while conn.next().await.is_some() {}
                }
            });
        }
        for _ in opened..step {
            if !ready_rx.recv().await.unwrap_or(false) {
                failed += 1;
            }
        }
        opened = step;
        tokio::time::sleep(opts.settle).await;
        let p = point(step, opts.server_pid);
        eprintln!(
            "  idle {step} conns: server RSS {:.1} MiB ({failed} failed) {}",
            p.rss_bytes as f64 / 1048576.0,
            p.sockstat
        );
        points.push(p);
    }
    held.abort_all();
    let bytes_per_conn = slope(&points[1..]);
    eprintln!(
        "  idle: {:.0} bytes per connection ({:.2} KiB)",
        bytes_per_conn,
        bytes_per_conn / 1024.0
    );
    // Give the server a moment to close them before whatever runs next.
    let most = opts.steps.last().copied().unwrap_or(0) as u64;
    tokio::time::sleep(Duration::from_micros(most * 100).min(Duration::from_secs(1))).await;
    Ok(IdleResult {
        points,
        bytes_per_conn,
        failed,
    })
}

fn point(conns: usize, pid: Option<u32>) -> IdlePoint {
    IdlePoint {
        conns,
        rss_bytes: procfs::rss_bytes(pid).unwrap_or(0),
        sockstat: procfs::sockstat_tcp(),
    }
}

/// Idle connections share one channel (a subscriber list entry each); rtc-signaller
/// peers sit in rooms of ten.
fn channel_for(proto: Proto, i: usize) -> String {
    match proto {
        Proto::Signaller => format!("idle{}", i / 10),
        _ => "idle".to_owned(),
    }
}

/// Least-squares slope of RSS over connection count.
fn slope(points: &[IdlePoint]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return points
            .first()
            .map_or(0.0, |p| p.rss_bytes as f64 / p.conns.max(1) as f64);
    }
    let mx = points.iter().map(|p| p.conns as f64).sum::<f64>() / n;
    let my = points.iter().map(|p| p.rss_bytes as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        let dx = p.conns as f64 - mx;
        num += dx * (p.rss_bytes as f64 - my);
        den += dx * dx;
    }
    if den == 0.0 { 0.0 } else { num / den }
}
