//! gRPC subscribers beside WebSocket subscribers on one server: what a delivery costs
//! the server on each wire, measured in the same run.
//!
//! N JSON-dialect WebSocket subscribers and N gRPC `Connect` subscribers (one HTTP/2
//! connection each) stay connected the whole run. Each subscribes to its wire's own
//! channel (`wires-ws`, `wires-grpc`) and to a shared one (`wires-all`). One WebSocket
//! publisher then runs three phases per rate: to `wires-ws` (only WebSocket deliveries),
//! to `wires-grpc` (only gRPC deliveries), and to `wires-all` (both at once). Each phase
//! reports the server's CPU time per delivery from `/proc`, as [`crate::fanout`] does,
//! and latency per wire; the idle subscribers of the other wire cost next to nothing.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use switchyard_transports::grpc::pb::switchyard_client::SwitchyardClient;
use switchyard_transports::grpc::pb::{self, client_frame, server_frame};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::client::{self, Conn, Event, Target};
use crate::payload::{self, Clock, Kind, Stamp};
use crate::procfs;
use crate::proto::Proto;
use crate::stats::{Latency, Recorder};

/// What to run.
#[derive(Clone, Debug)]
pub struct WiresOpts {
    /// The WebSocket subscribers' and the publisher's server (JSON dialect, keyed).
    pub target: Target,
    /// The same server's gRPC listener (plaintext).
    pub grpc: SocketAddr,
    /// Subscribers per wire.
    pub subs: usize,
    /// Deliveries per second, one set of phases each.
    pub rates: Vec<u64>,
    /// Payload bytes.
    pub payload: usize,
    /// Publishing time per phase.
    pub duration: Duration,
    /// Time after publishing within which deliveries count.
    pub grace: Duration,
    /// The server's pid, for CPU time.
    pub server_pid: Option<u32>,
}

/// One phase's figures.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct Phase {
    /// `ws`, `grpc` or `mixed`: who was published to.
    pub to: String,
    /// Asked-for deliveries/s.
    pub target_per_s: u64,
    /// Messages published.
    pub published: u64,
    /// WebSocket deliveries by the end of the grace period.
    pub ws_delivered: u64,
    /// gRPC deliveries by the end of the grace period.
    pub grpc_delivered: u64,
    /// All deliveries per second of publishing.
    pub delivered_per_s: f64,
    /// Deliveries missing after the grace period.
    pub backlog: u64,
    /// Publish → receive latency on WebSocket (no samples when not published to).
    pub ws_latency: Latency,
    /// Publish → receive latency on gRPC.
    pub grpc_latency: Latency,
    /// Server CPU seconds over the publishing window.
    pub server_cpu_s: f64,
    /// Server CPU microseconds per delivery over the publishing window.
    pub cpu_us_per_delivery: f64,
}

/// The whole run.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct WiresResult {
    /// Subscribers per wire asked for.
    pub subs: usize,
    /// WebSocket subscribers that joined.
    pub ws_joined: usize,
    /// gRPC subscribers that joined.
    pub grpc_joined: usize,
    /// Three phases per rate.
    pub phases: Vec<Phase>,
    /// gRPC's CPU per delivery over WebSocket's, per rate (from the `grpc` and `ws`
    /// phases).
    pub grpc_over_ws_cpu: Vec<f64>,
}

const SUBSCRIBE_PERMS: &[&str] = &["subscribe"];
const PUBLISH_PERMS: &[&str] = &["publish", "subscribe"];

/// Deliveries counted for the current phase only: stamps below `first_seq` are late
/// arrivals from the one before.
struct Counts {
    first_seq: AtomicU64,
    all: AtomicU64,
}

/// Runs the phases as `opts` says.
pub async fn run(opts: &WiresOpts) -> io::Result<WiresResult> {
    let clock = Clock::start();
    let (ws_rec, grpc_rec) = (Recorder::default(), Recorder::default());
    let counts = Arc::new(Counts {
        first_seq: AtomicU64::new(u64::MAX),
        all: AtomicU64::new(0),
    });
    let mut tasks = JoinSet::new();
    let (mut ws_joined, mut grpc_joined) = (0, 0);
    for i in 0..opts.subs {
        let id = format!("ws{i}");
        match ws_subscriber(&opts.target, i + 1, &id).await {
            Ok(mut conn) => {
                ws_joined += 1;
                let (rec, counts) = (ws_rec.clone(), Arc::clone(&counts));
                tasks.spawn(async move {
                    while let Some(event) = conn.next().await {
                        if let Event::Data(stamp) = event {
                            count(stamp, clock, &rec, &counts);
                        }
                    }
                    rec.error();
                });
            }
            Err(e) => eprintln!("  {id}: {e}"),
        }
        let id = format!("grpc{i}");
        let token = client::token(key(&opts.target)?, &id, SUBSCRIBE_PERMS)?;
        match GrpcSubscriber::join(opts.grpc, &token).await {
            Ok(sub) => {
                grpc_joined += 1;
                let (rec, counts) = (grpc_rec.clone(), Arc::clone(&counts));
                tasks.spawn(sub.receive(clock, rec, counts));
            }
            Err(e) => eprintln!("  {id}: {e}"),
        }
    }
    let publisher = Conn::join(&opts.target, 0, "pub", PUBLISH_PERMS, "wires-pub", false).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut run = Run {
        clock,
        ws_rec,
        grpc_rec,
        counts,
        publisher,
        seq: 0,
    };
    let mut phases = Vec::new();
    let mut grpc_over_ws_cpu = Vec::new();
    for &rate in &opts.rates {
        let ws = run.phase(opts, rate, "ws", ws_joined).await?;
        let grpc = run.phase(opts, rate, "grpc", grpc_joined).await?;
        let mixed = run
            .phase(opts, rate, "mixed", ws_joined + grpc_joined)
            .await?;
        let ratio = if ws.cpu_us_per_delivery > 0.0 {
            grpc.cpu_us_per_delivery / ws.cpu_us_per_delivery
        } else {
            0.0
        };
        eprintln!("  wires @ {rate}/s: gRPC/WebSocket CPU per delivery {ratio:.2}");
        grpc_over_ws_cpu.push(ratio);
        phases.extend([ws, grpc, mixed]);
    }
    tasks.abort_all();
    Ok(WiresResult {
        subs: opts.subs,
        ws_joined,
        grpc_joined,
        phases,
        grpc_over_ws_cpu,
    })
}

/// The publisher and the counters the phases share.
struct Run {
    clock: Clock,
    ws_rec: Recorder,
    grpc_rec: Recorder,
    counts: Arc<Counts>,
    publisher: Conn,
    /// The next stamp's sequence number.
    seq: u64,
}

impl Run {
    /// Publishes to `to`'s channel (`subs` subscribers) at `rate` deliveries/s for the
    /// phase's duration, waits out the grace, and measures.
    async fn phase(
        &mut self,
        opts: &WiresOpts,
        rate: u64,
        to: &str,
        subs: usize,
    ) -> io::Result<Phase> {
        let channel = match to {
            "ws" => "wires-ws",
            "grpc" => "wires-grpc",
            _ => "wires-all",
        };
        let (ws0, grpc0) = (self.ws_rec.hits(), self.grpc_rec.hits());
        self.ws_rec.take();
        self.grpc_rec.take();
        self.counts.first_seq.store(self.seq, Ordering::Relaxed);
        let cpu0 = procfs::cpu_seconds(opts.server_pid);
        let start = Instant::now();
        let per_sec = rate as f64 / subs.max(1) as f64;
        let mut published = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while start.elapsed() < opts.duration {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
            let mut batch = Vec::new();
            while published < due {
                let stamp = Stamp {
                    kind: Kind::Fanout,
                    sent_ns: self.clock.now_ns(),
                    seq: self.seq,
                    from: 0,
                };
                let payload = payload::encode(stamp, opts.payload);
                batch.push(Proto::Json.publish(channel, "pub", &payload));
                self.seq += 1;
                published += 1;
            }
            if !batch.is_empty() {
                self.publisher.send(batch).await?;
            }
        }
        let window_s = start.elapsed().as_secs_f64();
        let cpu1 = procfs::cpu_seconds(opts.server_pid);
        tokio::time::sleep(opts.grace).await;
        let (ws_delivered, grpc_delivered) =
            (self.ws_rec.hits() - ws0, self.grpc_rec.hits() - grpc0);
        let delivered = ws_delivered + grpc_delivered;
        let server_cpu_s = cpu0.zip(cpu1).map_or(0.0, |(a, b)| b - a);
        let phase = Phase {
            to: to.to_owned(),
            target_per_s: rate,
            published,
            ws_delivered,
            grpc_delivered,
            delivered_per_s: delivered as f64 / window_s,
            backlog: (published * subs as u64).saturating_sub(delivered),
            ws_latency: self.ws_rec.take(),
            grpc_latency: self.grpc_rec.take(),
            server_cpu_s,
            cpu_us_per_delivery: if delivered == 0 {
                0.0
            } else {
                1e6 * server_cpu_s / delivered as f64
            },
        };
        drain(&self.counts).await;
        eprintln!(
            "  wires {to} @ {rate}/s: delivered {:.0}/s (ws {ws_delivered}, grpc \
             {grpc_delivered}) backlog {} p99 ws {:.2} ms grpc {:.2} ms, cpu {:.3} us/delivery",
            phase.delivered_per_s,
            phase.backlog,
            phase.ws_latency.p99_ms,
            phase.grpc_latency.p99_ms,
            phase.cpu_us_per_delivery
        );
        Ok(phase)
    }
}

fn key(target: &Target) -> io::Result<&switchyard_core::token::SigningKey> {
    target
        .key
        .as_ref()
        .ok_or_else(|| io::Error::other("the wires scenario needs --key (gRPC tokens)"))
}

/// A WebSocket subscriber in its own wire's channel and the shared one.
async fn ws_subscriber(target: &Target, i: usize, id: &str) -> io::Result<Conn> {
    let mut conn = Conn::join(target, i, id, SUBSCRIBE_PERMS, "wires-ws", false).await?;
    conn.send(Proto::Json.join("wires-all", id, false)).await?;
    loop {
        match conn.next().await {
            Some(Event::Ready) => return Ok(conn),
            Some(Event::Error(e)) => return Err(io::Error::other(e)),
            Some(_) => {}
            None => return Err(io::Error::other("closed before the join completed")),
        }
    }
}

/// Counts one delivery for the current phase.
fn count(stamp: Stamp, clock: Clock, rec: &Recorder, counts: &Counts) {
    counts.all.fetch_add(1, Ordering::Relaxed);
    if stamp.seq >= counts.first_seq.load(Ordering::Relaxed) {
        rec.record_ns(clock.now_ns().saturating_sub(stamp.sent_ns));
        rec.hit();
    }
}

/// A gRPC `Connect` stream subscribed to `wires-grpc` and `wires-all`.
struct GrpcSubscriber {
    /// The request stream; dropping it would end the connection.
    _requests: mpsc::Sender<pb::ClientFrame>,
    frames: tonic::Streaming<pb::ServerFrame>,
}

impl GrpcSubscriber {
    async fn join(addr: SocketAddr, token: &str) -> io::Result<Self> {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(io::Error::other)?
            .tcp_nodelay(true)
            .connect()
            .await
            .map_err(io::Error::other)?;
        let (requests, rx) = mpsc::channel(4);
        for channel in ["wires-grpc", "wires-all"] {
            let subscribe = pb::Subscribe {
                channel: channel.into(),
                request_id: channel.into(),
                ..Default::default()
            };
            let frame = pb::ClientFrame {
                kind: Some(client_frame::Kind::Subscribe(subscribe)),
            };
            requests.send(frame).await.map_err(io::Error::other)?;
        }
        let outbound = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|frame| (frame, rx))
        });
        let mut request = tonic::Request::new(outbound);
        let bearer = format!("Bearer {token}")
            .parse()
            .map_err(io::Error::other)?;
        request.metadata_mut().insert("authorization", bearer);
        let frames = SwitchyardClient::new(channel)
            .connect(request)
            .await
            .map_err(io::Error::other)?
            .into_inner();
        let mut sub = Self {
            _requests: requests,
            frames,
        };
        let mut acks = 0;
        while acks < 2 {
            match sub.frames.message().await.map_err(io::Error::other)? {
                Some(pb::ServerFrame {
                    kind: Some(server_frame::Kind::Ack(_)),
                }) => acks += 1,
                Some(pb::ServerFrame {
                    kind: Some(server_frame::Kind::Error(e)),
                }) => return Err(io::Error::other(e.message)),
                Some(_) => {}
                None => return Err(io::Error::other("closed before the join completed")),
            }
        }
        Ok(sub)
    }

    async fn receive(mut self, clock: Clock, rec: Recorder, counts: Arc<Counts>) {
        while let Ok(Some(frame)) = self.frames.message().await {
            if let Some(server_frame::Kind::Message(m)) = frame.kind {
                let stamp =
                    payload::find(&m.payload).and_then(|at| payload::decode(&m.payload[at..]));
                if let Some(stamp) = stamp {
                    count(stamp, clock, &rec, &counts);
                }
            }
        }
        rec.error();
    }
}

/// Waits until deliveries stop arriving (at most 20 s).
async fn drain(counts: &Counts) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = counts.all.load(Ordering::Relaxed);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = counts.all.load(Ordering::Relaxed);
        if now == last {
            return;
        }
        last = now;
    }
}
