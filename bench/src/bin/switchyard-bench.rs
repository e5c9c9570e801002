//! `switchyard-bench`: the load tool's command line. Each scenario prints progress to
//! stderr, a JSON summary line to stdout, and appends the same line to `--out`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Parser, Subcommand};
use switchyard_bench::client::{Target, parse_key};
use switchyard_bench::fanout::{FanoutOpts, KneeOpts, Watched};
use switchyard_bench::idle::IdleOpts;
use switchyard_bench::proto::Proto;
use switchyard_bench::rooms::RoomsOpts;
use switchyard_bench::storm::StormOpts;
use switchyard_bench::wires::WiresOpts;
use switchyard_bench::{Record, cluster, procfs, report};

#[derive(Parser)]
#[command(
    name = "switchyard-bench",
    about = "Load generator for Switchyard, rtc-switchboard, nats-server and the baseline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct Common {
    /// The server's WebSocket URL (`ws://127.0.0.1:8080/v1`).
    #[arg(long)]
    url: String,
    /// The wire: json | signaller | nats | raw.
    #[arg(long, default_value = "json")]
    proto: String,
    /// Mint a JWT per connection with this HS256 key (`kid:secret`); none: no token.
    #[arg(long)]
    key: Option<String>,
    /// The server's pid, for CPU time and RSS from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Name of the server in the results (default: the wire's name).
    #[arg(long)]
    label: Option<String>,
    /// Append the JSON result line to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The tool's runtime threads (1: a current-thread runtime, for `taskset -c 1`).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Subcommand)]
enum Command {
    /// 1 publisher → N subscribers: fixed loads and a knee sweep.
    Fanout {
        #[command(flatten)]
        common: Common,
        /// Subscriber counts, one run each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "100")]
        subs: Vec<usize>,
        /// Fixed loads, deliveries per second (comma-separated; empty for none).
        #[arg(long, value_delimiter = ',')]
        rates: Vec<u64>,
        /// Sweep the rate up until p99 passes --knee-p99-ms.
        #[arg(long)]
        knee: bool,
        /// First sweep step, deliveries/s.
        #[arg(long, default_value_t = 25_000)]
        knee_start: u64,
        /// Growth per sweep step.
        #[arg(long, default_value_t = 1.5)]
        knee_factor: f64,
        /// Highest sweep step, deliveries/s.
        #[arg(long, default_value_t = 3_000_000)]
        knee_max: u64,
        /// The p99 that ends the sweep, ms.
        #[arg(long, default_value_t = 50.0)]
        knee_p99_ms: f64,
        /// Publishing time per step, ms.
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
        /// Grace after publishing, ms.
        #[arg(long, default_value_t = 1000)]
        grace_ms: u64,
        /// Payload bytes.
        #[arg(long, default_value_t = 100)]
        payload: usize,
        /// Connections set up at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// The publisher's URL, when not --url (another node of a cluster).
        #[arg(long)]
        publish_url: Option<String>,
        /// Also report this process's CPU per step: `name=pid` (repeatable).
        #[arg(long = "watch", value_parser = parse_watched)]
        watch: Vec<Watched>,
        /// Report the `PUBLISH` count of the Redis at this `ip:port` per step.
        #[arg(long)]
        redis: Option<std::net::SocketAddr>,
    },
    /// R rooms × 2..P peers: offer/answer/ICE bursts, hard closes and re-joins.
    Rooms {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 100)]
        rooms: usize,
        /// Largest room (sizes cycle from 2).
        #[arg(long, default_value_t = 10)]
        peers: usize,
        #[arg(long, default_value_t = 10)]
        rounds: usize,
        /// Minimum time between round starts, ms (the fixed load).
        #[arg(long, default_value_t = 200)]
        interval_ms: u64,
        /// ICE candidates per side.
        #[arg(long, default_value_t = 4)]
        candidates: usize,
        #[arg(long, default_value_t = 1500)]
        sdp_bytes: usize,
        #[arg(long, default_value_t = 150)]
        candidate_bytes: usize,
        /// Do not wait for departure notices (the server sends none).
        #[arg(long)]
        no_leaves: bool,
    },
    /// Connections + auth + subscribe per second.
    Storm {
        #[command(flatten)]
        common: Common,
        #[arg(long, default_value_t = 2000)]
        conns: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Server RSS per idle, subscribed connection.
    Idle {
        #[command(flatten)]
        common: Common,
        /// Connection counts (comma-separated, ascending).
        #[arg(long, value_delimiter = ',', default_value = "1000,5000,10000")]
        steps: Vec<usize>,
        #[arg(long, default_value_t = 128)]
        concurrency: usize,
        /// Wait before reading RSS at each step, ms.
        #[arg(long, default_value_t = 2000)]
        settle_ms: u64,
    },
    /// gRPC subscribers beside WebSocket subscribers on one server: CPU per delivery on
    /// each wire in the same run (`--url` is the JSON WebSocket path, `--key` needed).
    Wires {
        #[command(flatten)]
        common: Common,
        /// The same server's gRPC listener, `ip:port` (plaintext).
        #[arg(long)]
        grpc: std::net::SocketAddr,
        /// Subscribers per wire.
        #[arg(long, default_value_t = 100)]
        subs: usize,
        /// Deliveries per second, three phases each (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "100000")]
        rates: Vec<u64>,
        /// Publishing time per phase, ms.
        #[arg(long, default_value_t = 3000)]
        duration_ms: u64,
        /// Grace after publishing, ms.
        #[arg(long, default_value_t = 1000)]
        grace_ms: u64,
        /// Payload bytes.
        #[arg(long, default_value_t = 100)]
        payload: usize,
    },
    /// Combine result lines: a ratio table on stdout, one JSON document, an SVG plot.
    Report {
        /// Result files (JSON lines).
        inputs: Vec<PathBuf>,
        /// Write the combined JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the p99-against-load plot here.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Extra `key=value` facts for the JSON's `machine` object.
        #[arg(long = "meta")]
        meta: Vec<String>,
    },
    /// Combine `bench/cluster.sh`'s result lines: cross-node against single-node.
    ClusterReport {
        /// Result files (JSON lines).
        inputs: Vec<PathBuf>,
        /// Write the combined JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Extra `key=value` facts for the JSON's `machine` object.
        #[arg(long = "meta")]
        meta: Vec<String>,
    },
}

/// Parses `--watch name=pid`.
fn parse_watched(s: &str) -> std::result::Result<Watched, String> {
    let (name, pid) = s.split_once('=').ok_or("--watch wants name=pid")?;
    let pid = pid.parse().map_err(|e| format!("--watch {s}: {e}"))?;
    Ok(Watched {
        name: name.to_owned(),
        pid,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Report {
            inputs,
            json,
            svg,
            meta,
        } => report::run(&inputs, json.as_deref(), svg.as_deref(), &meta),
        Command::ClusterReport { inputs, json, meta } => {
            cluster::report(&inputs, json.as_deref(), &meta)
        }
        other => scenario(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn scenario(command: Command) -> Result<()> {
    let common = match &command {
        Command::Fanout { common, .. }
        | Command::Rooms { common, .. }
        | Command::Storm { common, .. }
        | Command::Idle { common, .. }
        | Command::Wires { common, .. } => common.clone(),
        Command::Report { .. } | Command::ClusterReport { .. } => {
            unreachable!("handled by main")
        }
    };
    let proto = Proto::from_name(&common.proto)
        .ok_or_else(|| format!("unknown --proto {}", common.proto))?;
    let key = common.key.as_deref().map(parse_key).transpose()?;
    let target = Target::parse(&common.url, proto, key)?;
    let label = common
        .label
        .clone()
        .unwrap_or_else(|| proto.name().to_owned());
    let pid = common.server_pid;
    let runtime = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()?
    };
    let results: Vec<(String, serde_json::Value)> = runtime.block_on(async {
        let mut out = Vec::new();
        match command {
            Command::Fanout {
                subs,
                rates,
                knee,
                knee_start,
                knee_factor,
                knee_max,
                knee_p99_ms,
                duration_ms,
                grace_ms,
                payload,
                concurrency,
                publish_url,
                watch,
                redis,
                ..
            } => {
                let publish_target = publish_url
                    .as_deref()
                    .map(|url| Target::parse(url, proto, target.key.clone()))
                    .transpose()?;
                for n in subs {
                    eprintln!("{label}: fanout to {n} subscribers");
                    let opts = FanoutOpts {
                        target: target.clone(),
                        subs: n,
                        payload,
                        duration: Duration::from_millis(duration_ms),
                        grace: Duration::from_millis(grace_ms),
                        rates: rates.clone(),
                        knee: knee.then_some(KneeOpts {
                            start: knee_start,
                            factor: knee_factor,
                            max: knee_max,
                            p99_ms: knee_p99_ms,
                        }),
                        server_pid: pid,
                        concurrency,
                        publish_target: publish_target.clone(),
                        watched: watch.clone(),
                        redis,
                    };
                    let r = switchyard_bench::fanout::run(&opts).await?;
                    out.push(("fanout".to_owned(), serde_json::to_value(r)?));
                }
            }
            Command::Rooms {
                rooms,
                peers,
                rounds,
                interval_ms,
                candidates,
                sdp_bytes,
                candidate_bytes,
                no_leaves,
                ..
            } => {
                eprintln!("{label}: rooms");
                let opts = RoomsOpts {
                    target: target.clone(),
                    rooms,
                    peers: peers.clamp(2, 10),
                    rounds,
                    interval: Duration::from_millis(interval_ms),
                    candidates,
                    sdp_bytes,
                    candidate_bytes,
                    server_pid: pid,
                    expect_leaves: !no_leaves,
                };
                let r = switchyard_bench::rooms::run(&opts).await?;
                out.push(("rooms".to_owned(), serde_json::to_value(r)?));
            }
            Command::Storm {
                conns, concurrency, ..
            } => {
                eprintln!("{label}: connect storm");
                let opts = StormOpts {
                    target: target.clone(),
                    conns,
                    concurrency,
                    server_pid: pid,
                };
                let r = switchyard_bench::storm::run(&opts).await?;
                let name = if r.auth { "storm" } else { "storm-noauth" };
                out.push((name.to_owned(), serde_json::to_value(r)?));
            }
            Command::Idle {
                steps,
                concurrency,
                settle_ms,
                ..
            } => {
                eprintln!("{label}: idle memory");
                let opts = IdleOpts {
                    target: target.clone(),
                    steps,
                    concurrency,
                    settle: Duration::from_millis(settle_ms),
                    server_pid: pid,
                };
                let r = switchyard_bench::idle::run(&opts).await?;
                out.push(("idle".to_owned(), serde_json::to_value(r)?));
            }
            Command::Wires {
                grpc,
                subs,
                rates,
                duration_ms,
                grace_ms,
                payload,
                ..
            } => {
                eprintln!("{label}: {subs} gRPC and {subs} WebSocket subscribers");
                let opts = WiresOpts {
                    target: target.clone(),
                    grpc,
                    subs,
                    rates,
                    payload,
                    duration: Duration::from_millis(duration_ms),
                    grace: Duration::from_millis(grace_ms),
                    server_pid: pid,
                };
                let r = switchyard_bench::wires::run(&opts).await?;
                out.push(("wires".to_owned(), serde_json::to_value(r)?));
            }
            Command::Report { .. } | Command::ClusterReport { .. } => {}
        }
        Ok::<_, Box<dyn std::error::Error>>(out)
    })?;
    for (scenario, result) in results {
        let record = Record {
            label: label.clone(),
            proto: proto.name().to_owned(),
            scenario,
            loadavg: procfs::loadavg(),
            unix_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            result,
        };
        let line = serde_json::to_string(&record)?;
        println!("{line}");
        if let Some(path) = &common.out {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{line}")?;
        }
    }
    // Connection tasks still winding down are not waited for.
    runtime.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
