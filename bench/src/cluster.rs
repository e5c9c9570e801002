//! `bench/cluster.sh`'s report: fan-out through a Redis cluster against the same load
//! on one node. The steps of one case at one load (repeats, from several rounds) pool
//! into a row: each process's CPU per delivery (its CPU seconds summed over the steps,
//! over their deliveries summed), the median p50 and p99, Redis `PUBLISH`es per message
//! and deliveries per core-second; cross-node rows carry their ratio to the single-node
//! row of the same load.
//!
//! The cases are told apart by their labels: `single` (publisher and subscribers on
//! node A), `cross` (publisher on A, subscribers on B) and, when run, `standalone` (one
//! node without an engine: what a cluster costs a node whose peers are all local).
//! The watched processes are named `node-a`, `node-b` and `redis`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};

use crate::Record;
use crate::fanout::{FanoutResult, Step};

/// Centrifugo's published figure through Redis: deliveries per core-second.
pub const CENTRIFUGO_PER_CORE_S: f64 = 12_500.0;
/// The goal: cross-node CPU per delivery at most this times single-node's.
pub const GOAL_RATIO: f64 = 1.3;

/// One case at one load.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// `single`, `cross` or `standalone`.
    pub case: String,
    /// Subscribers.
    pub subs: usize,
    /// Asked-for deliveries/s.
    pub target_per_s: u64,
    /// Steps pooled into this row.
    pub steps: usize,
    /// Deliveries/s seen (mean over the steps).
    pub delivered_per_s: f64,
    /// Deliveries missing after the grace period, %.
    pub backlog_pct: f64,
    /// Node A's CPU µs per delivery (the publisher's node; the only node in `single`).
    pub node_a_us: f64,
    /// Node B's CPU µs per delivery (the subscribers' node in `cross`; idle otherwise).
    pub node_b_us: f64,
    /// The nodes' CPU µs per delivery: A + B for `cross`, A alone otherwise.
    pub nodes_us: f64,
    /// Redis's CPU µs per delivery.
    pub redis_us: f64,
    /// Latency p50, ms (median over the steps).
    pub p50_ms: f64,
    /// Latency p99, ms (median over the steps).
    pub p99_ms: f64,
    /// The steps' highest p99, ms.
    pub p99_max_ms: f64,
    /// Messages published.
    pub published: u64,
    /// Redis `PUBLISH` commands over the step (with heartbeats).
    pub redis_publishes: Option<u64>,
    /// `redis_publishes` / `published`.
    pub publishes_per_message: Option<f64>,
    /// Deliveries per core-second of the nodes (1e6 / `nodes_us`).
    pub per_core_s: f64,
    /// Deliveries per core-second of the nodes and Redis together.
    pub per_core_s_with_redis: f64,
    /// `nodes_us` / the single-node row's `nodes_us` at the same load.
    pub ratio_to_single: Option<f64>,
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// Reads `inputs`, prints the table, writes `json` when asked.
pub fn report(inputs: &[PathBuf], json: Option<&Path>, meta: &[String]) -> Res {
    let mut records = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            records.push(serde_json::from_str::<Record>(line)?);
        }
    }
    let mut cases: BTreeMap<(String, usize, u64), Vec<Step>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.scenario == "fanout") {
        let result: FanoutResult = serde_json::from_value(r.result.clone())?;
        for s in result.steps {
            let key = (r.label.clone(), s.subs, s.target_per_s);
            cases.entry(key).or_default().push(s);
        }
    }
    let mut rows: Vec<Row> = cases
        .iter()
        .map(|((case, _, _), steps)| row(case, steps))
        .collect();
    ratios(&mut rows);
    print!("{}", table(&rows));
    if let Some(path) = json {
        let machine: serde_json::Map<String, Value> = meta
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        let doc = json!({
            "machine": machine,
            "anchor": { "centrifugo_per_core_s": CENTRIFUGO_PER_CORE_S, "goal_ratio": GOAL_RATIO },
            "rows": rows,
            "records": records,
        });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    Ok(())
}

/// Pools one case's steps at one load (at least one).
fn row(case: &str, steps: &[Step]) -> Row {
    let delivered: u64 = steps.iter().map(|s| s.delivered).sum();
    let us = |name: &str| {
        let cpu_s: f64 = steps
            .iter()
            .flat_map(|s| s.procs.iter().filter(|p| p.name == name))
            .map(|p| p.cpu_s)
            // Not `sum()`: an empty sum of floats is -0.0, which prints as "-0.000".
            .fold(0.0, |a, b| a + b);
        if delivered == 0 {
            0.0
        } else {
            1e6 * cpu_s / delivered as f64
        }
    };
    let (node_a_us, node_b_us, redis_us) = (us("node-a"), us("node-b"), us("redis"));
    let nodes_us = if case == "cross" {
        node_a_us + node_b_us
    } else {
        node_a_us
    };
    let per_core = |us: f64| if us > 0.0 { 1e6 / us } else { 0.0 };
    let n = steps.len() as f64;
    let published: u64 = steps.iter().map(|s| s.published).sum();
    let redis_publishes = steps.iter().map(|s| s.redis_publishes).sum::<Option<u64>>();
    let expected: u64 = steps.iter().map(|s| s.expected).sum();
    let median = |f: fn(&Step) -> f64| {
        let mut v: Vec<f64> = steps.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        if v.len() % 2 == 1 {
            v[mid]
        } else {
            f64::midpoint(v[mid - 1], v[mid])
        }
    };
    Row {
        case: case.to_owned(),
        subs: steps[0].subs,
        target_per_s: steps[0].target_per_s,
        steps: steps.len(),
        delivered_per_s: steps.iter().map(|s| s.delivered_per_s).sum::<f64>() / n,
        backlog_pct: if expected == 0 {
            0.0
        } else {
            100.0 * expected.saturating_sub(delivered) as f64 / expected as f64
        },
        node_a_us,
        node_b_us,
        nodes_us,
        redis_us,
        p50_ms: median(|s| s.latency.p50_ms),
        p99_ms: median(|s| s.latency.p99_ms),
        p99_max_ms: steps.iter().map(|s| s.latency.p99_ms).fold(0.0, f64::max),
        published,
        redis_publishes,
        publishes_per_message: redis_publishes
            .filter(|_| published > 0)
            .map(|n| n as f64 / published as f64),
        per_core_s: per_core(nodes_us),
        per_core_s_with_redis: per_core(nodes_us + redis_us),
        ratio_to_single: None,
    }
}

/// Fills `ratio_to_single` from the `single` row of the same subscribers and rate.
fn ratios(rows: &mut [Row]) {
    let single: BTreeMap<(usize, u64), f64> = rows
        .iter()
        .filter(|r| r.case == "single" && r.nodes_us > 0.0)
        .map(|r| ((r.subs, r.target_per_s), r.nodes_us))
        .collect();
    for r in rows.iter_mut() {
        r.ratio_to_single = single
            .get(&(r.subs, r.target_per_s))
            .map(|base| r.nodes_us / base);
    }
}

/// A Markdown table, ordered by subscribers, rate, then case.
fn table(rows: &[Row]) -> String {
    let mut sorted: Vec<&Row> = rows.iter().collect();
    let order = |case: &str| match case {
        "standalone" => 0,
        "single" => 1,
        "cross" => 2,
        _ => 3,
    };
    sorted.sort_by(|a, b| {
        (a.subs, a.target_per_s, order(&a.case)).cmp(&(b.subs, b.target_per_s, order(&b.case)))
    });
    let mut out = String::new();
    out.push_str(
        "| subs | target/s | case | steps | delivered/s | A µs/del | B µs/del | nodes µs/del | Redis µs/del \
         | p50 ms | p99 ms | PUBLISH/msg | del/core-s | ×single | ×12.5k |\n",
    );
    out.push_str("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in sorted {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "–".to_owned(), |v| format!("{v:.digits$}"))
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {:.3} | {:.3} | {:.3} | {:.3} | {:.2} | {:.2} | {} | {:.0} | {} | {:.1} |",
            r.subs,
            r.target_per_s,
            r.case,
            r.steps,
            r.delivered_per_s,
            r.node_a_us,
            r.node_b_us,
            r.nodes_us,
            r.redis_us,
            r.p50_ms,
            r.p99_ms,
            opt(r.publishes_per_message, 2),
            r.per_core_s,
            opt(r.ratio_to_single, 2),
            r.per_core_s / CENTRIFUGO_PER_CORE_S,
        );
    }
    out
}
