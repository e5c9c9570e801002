//! Turns a run's result lines into what people read: a table of each figure per server
//! with Switchyard's ratio to every peer, one JSON document, and an SVG plot of fan-out
//! p99 latency against delivered load.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::Record;

/// One figure of one server.
struct Figure {
    row: String,
    metric: &'static str,
    label: String,
    value: f64,
    /// Whether smaller is better (CPU, latency, memory) or larger (rates).
    lower_is_better: bool,
}

type Res = Result<(), Box<dyn std::error::Error>>;

/// Reads `inputs`, prints the table, writes `json` and `svg` when asked.
pub fn run(inputs: &[PathBuf], json: Option<&Path>, svg: Option<&Path>, meta: &[String]) -> Res {
    let mut records = Vec::new();
    for path in inputs {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            records.push(serde_json::from_str::<Record>(line)?);
        }
    }
    let figures = figures(&records);
    let (table, ratios) = table(&figures);
    print!("{table}");
    if let Some(path) = json {
        let machine: serde_json::Map<String, Value> = meta
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), Value::String(v.to_owned())))
            .collect();
        let doc = json!({ "machine": machine, "ratios": ratios, "records": records });
        std::fs::write(path, serde_json::to_string_pretty(&doc)?)?;
    }
    if let Some(path) = svg {
        std::fs::write(path, plot(&records))?;
    }
    Ok(())
}

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    let mut v = v;
    for p in path {
        v = v.get(p)?;
    }
    v.as_f64()
}

fn figures(records: &[Record]) -> Vec<Figure> {
    let mut out = Vec::new();
    let mut push = |row: String, metric, label: &str, value: Option<f64>, lower| {
        if let Some(value) = value {
            out.push(Figure {
                row,
                metric,
                label: label.to_owned(),
                value,
                lower_is_better: lower,
            });
        }
    };
    for r in records {
        let v = &r.result;
        let l = r.label.as_str();
        match r.scenario.as_str() {
            "fanout" => {
                let subs = num(v, &["subs"]).unwrap_or(0.0);
                for s in v["steps"].as_array().into_iter().flatten() {
                    if s["mode"] != "fixed" {
                        continue;
                    }
                    let rate = num(s, &["target_per_s"]).unwrap_or(0.0);
                    let row = format!("fanout 1→{subs} @ {}k/s", rate / 1000.0);
                    push(
                        row.clone(),
                        "cpu µs/delivery",
                        l,
                        num(s, &["cpu_us_per_delivery"]),
                        true,
                    );
                    push(
                        row.clone(),
                        "p99 ms",
                        l,
                        num(s, &["latency", "p99_ms"]),
                        true,
                    );
                    push(
                        row.clone(),
                        "delivered/s",
                        l,
                        num(s, &["delivered_per_s"]),
                        false,
                    );
                    push(
                        row,
                        "undelivered % after 1 s",
                        l,
                        num(s, &["backlog_pct"]),
                        true,
                    );
                }
                push(
                    format!("fanout 1→{subs} knee (p99 ≤ 50 ms)"),
                    "delivered/s",
                    l,
                    num(v, &["knee_per_s"]),
                    false,
                );
            }
            "rooms" => {
                let row = format!("rooms {}×2..10 peers", num(v, &["rooms"]).unwrap_or(0.0));
                push(
                    row.clone(),
                    "msgs/s",
                    l,
                    num(v, &["delivered_per_s"]),
                    false,
                );
                push(
                    row.clone(),
                    "p99 ms",
                    l,
                    num(v, &["latency", "p99_ms"]),
                    true,
                );
                push(
                    row.clone(),
                    "cpu µs/msg",
                    l,
                    num(v, &["cpu_us_per_delivery"]),
                    true,
                );
                let leaves = num(v, &["leaves_received"]).unwrap_or(0.0);
                let want = num(v, &["leaves_expected"]).unwrap_or(0.0);
                push(
                    row,
                    "leaves received %",
                    l,
                    Some(if want > 0.0 {
                        100.0 * leaves / want
                    } else {
                        0.0
                    }),
                    false,
                );
            }
            "storm" | "storm-noauth" => {
                let row = format!(
                    "{} ({} conns)",
                    r.scenario,
                    num(v, &["conns"]).unwrap_or(0.0)
                );
                push(row.clone(), "conn/s", l, num(v, &["per_s"]), false);
                push(
                    row.clone(),
                    "p99 ms",
                    l,
                    num(v, &["connect", "p99_ms"]),
                    true,
                );
                push(
                    row.clone(),
                    "cpu µs/conn",
                    l,
                    num(v, &["cpu_us_per_conn"]),
                    true,
                );
                let over = v["listen_overflows"]
                    .as_array()
                    .and_then(|a| Some(a.get(1)?.as_f64()? - a.first()?.as_f64()?));
                push(row, "ListenOverflows", l, over, true);
            }
            "idle" => {
                let max = v["points"]
                    .as_array()
                    .and_then(|p| p.last())
                    .and_then(|p| num(p, &["conns"]))
                    .unwrap_or(0.0);
                push(
                    format!("idle (to {max} conns)"),
                    "KiB/conn",
                    l,
                    num(v, &["bytes_per_conn"]).map(|b| b / 1024.0),
                    true,
                );
            }
            _ => {}
        }
    }
    out
}

fn table(figures: &[Figure]) -> (String, Vec<Value>) {
    let mut rows: BTreeMap<(String, &str), Vec<&Figure>> = BTreeMap::new();
    for f in figures {
        rows.entry((f.row.clone(), f.metric)).or_default().push(f);
    }
    let mut s = String::new();
    let mut ratios = Vec::new();
    let _ = writeln!(
        s,
        "{:<34} {:<24} values, then Switchyard ÷ peer",
        "scenario", "figure"
    );
    for ((row, metric), fs) in &rows {
        let values: Vec<String> = fs
            .iter()
            .map(|f| format!("{}={}", f.label, short(f.value)))
            .collect();
        let mut rs = Vec::new();
        for sy in fs.iter().filter(|f| f.label.starts_with("switchyard")) {
            for peer in fs.iter().filter(|f| !f.label.starts_with("switchyard")) {
                if peer.value == 0.0 {
                    continue;
                }
                let ratio = sy.value / peer.value;
                rs.push(format!("{}/{}={:.2}", sy.label, peer.label, ratio));
                ratios.push(json!({
                    "row": row, "figure": metric, "switchyard": sy.label, "peer": peer.label,
                    "ratio": ratio, "lower_is_better": sy.lower_is_better,
                }));
            }
        }
        let _ = writeln!(s, "{row:<34} {metric:<24} {}", values.join("  "));
        if !rs.is_empty() {
            let _ = writeln!(s, "{:<34} {:<24} {}", "", "", rs.join("  "));
        }
    }
    (s, ratios)
}

fn short(v: f64) -> String {
    if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// p99 latency (log) against delivered messages/s (log), one line per server and
/// subscriber count.
fn plot(records: &[Record]) -> String {
    let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    for r in records.iter().filter(|r| r.scenario == "fanout") {
        let subs = num(&r.result, &["subs"]).unwrap_or(0.0);
        let points = series.entry(format!("{} 1→{subs}", r.label)).or_default();
        for s in r.result["steps"].as_array().into_iter().flatten() {
            if let (Some(x), Some(y)) =
                (num(s, &["delivered_per_s"]), num(s, &["latency", "p99_ms"]))
                && x > 0.0
                && y > 0.0
            {
                points.push((x, y));
            }
        }
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let all: Vec<(f64, f64)> = series.values().flatten().copied().collect();
    let (w, h, left, right, top, bottom) = (900.0, 560.0, 80.0, 260.0, 30.0, 60.0);
    let lx = |v: f64| v.max(1.0).log10();
    let (x0, x1) = bounds(all.iter().map(|p| lx(p.0)));
    let (y0, y1) = bounds(all.iter().map(|p| lx(p.1 * 1000.0) - 3.0));
    let px = |x: f64| left + (lx(x) - x0) / (x1 - x0) * (w - left - right);
    let py = |y: f64| h - bottom - ((lx(y * 1000.0) - 3.0) - y0) / (y1 - y0) * (h - top - bottom);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{left}" y="18" font-size="14">Fan-out: p99 publish→receive latency against delivered messages/s (log–log)</text>"#
    );
    // Decade grid lines.
    for d in (x0.floor() as i32)..=(x1.ceil() as i32) {
        let x = 10f64.powi(d);
        if lx(x) < x0 || lx(x) > x1 {
            continue;
        }
        let gx = px(x);
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{top}" x2="{gx:.1}" y2="{}" stroke="#ddd"/><text x="{gx:.1}" y="{}" text-anchor="middle">{}</text>"##,
            h - bottom,
            h - bottom + 16.0,
            if x >= 1000.0 {
                format!("{}k", x / 1000.0)
            } else {
                short(x)
            }
        );
    }
    for d in (y0.floor() as i32)..=(y1.ceil() as i32) {
        let y = 10f64.powi(d);
        if lx(y * 1000.0) - 3.0 < y0 || lx(y * 1000.0) - 3.0 > y1 {
            continue;
        }
        let gy = py(y);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{gy:.1}" x2="{}" y2="{gy:.1}" stroke="#ddd"/><text x="{}" y="{:.1}" text-anchor="end">{} ms</text>"##,
            w - right,
            left - 6.0,
            gy + 4.0,
            short(y)
        );
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">delivered messages/s</text>"#,
        left + (w - left - right) / 2.0,
        h - 20.0
    );
    // One colour per server, one dash pattern per subscriber count.
    let servers: Vec<&str> = {
        let mut v: Vec<&str> = series.keys().filter_map(|k| k.split(' ').next()).collect();
        v.dedup();
        v
    };
    const COLOURS: [&str; 8] = [
        "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
    ];
    for (i, (name, points)) in series.iter().enumerate() {
        let server = name.split(' ').next().unwrap_or("");
        let at = servers.iter().position(|s| *s == server).unwrap_or(0);
        let colour = COLOURS[at % COLOURS.len()];
        let dash = if name.ends_with("→100") {
            ""
        } else if name.ends_with("→1000") {
            r#" stroke-dasharray="8 4""#
        } else {
            r#" stroke-dasharray="2 3""#
        };
        let path: Vec<String> = points
            .iter()
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        for &(x, y) in points {
            let _ = writeln!(
                s,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{colour}"/>"#,
                px(x),
                py(y)
            );
        }
        let ly = top + 20.0 + 18.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="3"{dash}/><text x="{}" y="{}">{name}</text>"#,
            w - right + 10.0,
            w - right + 30.0,
            w - right + 36.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The span of `values` padded a little, never empty.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0.0, 1.0);
    }
    if hi - lo < 0.5 {
        return (lo - 0.25, hi + 0.25);
    }
    (lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
}
