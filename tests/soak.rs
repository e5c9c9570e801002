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

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use switchyard::core::{Dialect, Open};
use switchyard::server::{self, Running};
use switchyard::settings::Settings;
use switchyard::transports::DriverHandle;
use switchyard::transports::lines::{LineReader, LineWriter};
use switchyard::transports::quic::{self, quinn};
use switchyard_core::testing::token_with;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

const ROOMS: usize = 10;
/// How long one client connection (handshake, welcome) may take on a loaded box.
const CONNECT_WAIT: Duration = Duration::from_secs(20);
/// How long the system may take to converge after the chaos stops.
const SETTLE_WAIT: Duration = Duration::from_secs(30);
/// Frames in a flood: far past the burst, so the hub's 4011 must end it.
const FLOOD: usize = 150;
const API_KEY: &str = "ak_soak:soak-secret";

// ---------------------------------------------------------------- the plan and the rng

/// SplitMix64: small, seedable, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Plan {
    seed: u64,
    chaos: Duration,
    clients: usize,
}

fn plan() -> Plan {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let seed = env("SWITCHYARD_SOAK_SEED").map_or_else(
        || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        },
        |s| s.parse().expect("SWITCHYARD_SOAK_SEED is a u64"),
    );
    let secs: f64 = env("SWITCHYARD_SOAK_SECS").map_or(4.0, |s| {
        s.parse().expect("SWITCHYARD_SOAK_SECS is a number")
    });
    let clients = env("SWITCHYARD_SOAK_CLIENTS").map_or(300, |s| {
        s.parse().expect("SWITCHYARD_SOAK_CLIENTS is a count")
    });
    Plan {
        seed,
        chaos: Duration::from_secs_f64(secs),
        clients,
    }
}

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

/// Parses one frame from the server into the record.
fn on_frame(rec: &Shared, lang: Lang, frame: &str) {
    let mut r = lock(rec);
    match lang {
        Lang::Rtc => on_rtc_frame(&mut r, frame),
        Lang::Json => on_json_frame(&mut r, frame),
    }
}

fn on_rtc_frame(r: &mut Record, frame: &str) {
    let parts: Vec<&str> = frame.splitn(3, '|').collect();
    match parts.as_slice() {
        ["/roominfo", ..] => r.joined = true,
        ["/announce", id, _] => r.events.push(Ev::Join((*id).to_owned())),
        ["/leave", id, _] => r.events.push(Ev::Leave((*id).to_owned())),
        ["/seq", id, n] => r
            .events
            .push(Ev::Msg((*id).to_owned(), parse_seq(n, frame))),
        ["/message", id, data] => {
            let data: Value = serde_json::from_str(data).expect("a JSON publish");
            let n = data["seq"]
                .as_u64()
                .unwrap_or_else(|| panic!("seq in {frame}"));
            r.events.push(Ev::Msg((*id).to_owned(), n));
        }
        ["/to", _, wrapped] if wrapped.starts_with("/announce|") => {
            let id = wrapped.split('|').nth(1).expect("introduced id");
            r.events.push(Ev::Join(id.to_owned()));
        }
        ["/error", body, ..] => {
            let v: Value = serde_json::from_str(body).expect("error body");
            *r.errors
                .entry(v["code"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        ["/close", body, ..] => {
            let v: Value = serde_json::from_str(body).expect("close body");
            r.close = v["code"].as_u64().map(|c| c as u16);
        }
        _ => panic!("unexpected rtc-signaller frame: {frame}"),
    }
}

fn on_json_frame(r: &mut Record, frame: &str) {
    let v: Value = serde_json::from_str(frame).unwrap_or_else(|e| panic!("{e}: {frame}"));
    let ids = |key: &str| -> Vec<String> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| p["peerId"].as_str().expect("peerId").to_owned())
            .collect()
    };
    match v["type"].as_str().unwrap_or("?") {
        "welcome" => r.id = v["peerId"].as_str().expect("peerId").to_owned(),
        "ack" => match v["requestId"].as_str().unwrap_or("") {
            "join" => r.joined = true,
            id => {
                if let Some(n) = id.strip_prefix('p').and_then(|n| n.parse::<u64>().ok()) {
                    r.acked = r.acked.max(n + 1);
                }
            }
        },
        "presence" => {
            for id in ids("joined") {
                r.events.push(Ev::Join(id));
            }
            for id in ids("left") {
                r.events.push(Ev::Leave(id));
            }
        }
        "message" => {
            let from = v["from"].as_str().expect("from").to_owned();
            let data = &v["data"];
            let n = data["seq"]
                .as_u64()
                .or_else(|| data["args"][0].as_u64())
                .unwrap_or_else(|| panic!("no sequence number in {frame}"));
            r.events.push(Ev::Msg(from, n));
        }
        "error" => {
            *r.errors
                .entry(v["code"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        "close" => r.close = v["code"].as_u64().map(|c| c as u16),
        _ => panic!("unexpected JSON frame: {frame}"),
    }
}

fn parse_seq(n: &str, frame: &str) -> u64 {
    n.parse().unwrap_or_else(|_| panic!("seq in {frame}"))
}

// ---------------------------------------------------------------- connections

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

/// The writing half of a line wire, with its way of being reset.
trait LineWrite: AsyncWrite + Unpin + Send {
    fn reset(&mut self) {}
}

impl LineWrite for tokio::net::tcp::OwnedWriteHalf {
    fn reset(&mut self) {
        let _ = self.as_ref().set_zero_linger();
    }
}

impl LineWrite for quinn::SendStream {
    fn reset(&mut self) {
        // The inherent `SendStream::reset`, not this trait method.
        let _ = Self::reset(self, quinn::VarInt::from_u32(0));
    }
}

impl LineWrite for tokio::io::WriteHalf<tokio::io::DuplexStream> {}

type LineRead = tokio::io::Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>;

enum Conn {
    Ws(Box<WebSocketStream<TcpStream>>),
    Lines {
        read: LineRead,
        write: Box<dyn LineWrite>,
        /// Keeps a QUIC connection open as long as its streams.
        _connection: Option<quinn::Connection>,
    },
}

impl Conn {
    async fn send(&mut self, text: &str) -> bool {
        match self {
            Self::Ws(ws) => ws.send(Message::text(text)).await.is_ok(),
            Self::Lines { write, .. } => {
                write
                    .write_all(format!("{text}\n").as_bytes())
                    .await
                    .is_ok()
                    && write.flush().await.is_ok()
            }
        }
    }

    /// The next text frame; `None` at the end of the connection. Cancel-safe.
    async fn next(&mut self, rec: &Shared) -> Option<String> {
        match self {
            Self::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(text)) => return Some(text.to_string()),
                    Ok(Message::Close(frame)) => {
                        lock(rec).close = frame.map(|f| u16::from(f.code));
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            },
            Self::Lines { read, .. } => read.next_line().await.ok().flatten(),
        }
    }

    /// A clean close: the close frame or the end of our stream, then everything the
    /// server still sends, to the end (bounded).
    async fn close(mut self, rec: &Shared, lang: Lang) {
        match &mut self {
            Self::Ws(ws) => {
                let _ = ws.send(Message::Close(None)).await;
            }
            Self::Lines { write, .. } => {
                let _ = write.shutdown().await;
            }
        }
        let drain = async {
            while let Some(frame) = self.next(rec).await {
                on_frame(rec, lang, &frame);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    fn reset(&mut self) {
        match self {
            Self::Ws(ws) => {
                let _ = ws.get_ref().set_zero_linger();
            }
            Self::Lines { write, .. } => write.reset(),
        }
    }
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

/// A token for a JSON WebSocket client (the others are anonymous, and learn their
/// peer id from the welcome).
fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    token_with(json!({
        "sub": sub,
        "channels": ["**"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": now + 3600,
    }))
}

async fn connect(env: &Env, wire: Wire, lang: Lang, name: &str) -> Conn {
    match wire {
        Wire::Ws => {
            let addr = env.running.ws_addr.expect("ws");
            let url = match lang {
                Lang::Rtc => format!("ws://{addr}/"),
                Lang::Json => format!("ws://{addr}/v1?token={}", token(name)),
            };
            let stream = TcpStream::connect(addr).await.expect("ws connect");
            let (ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .expect("websocket upgrade");
            Conn::Ws(Box::new(ws))
        }
        Wire::Tcp => {
            let stream = TcpStream::connect(env.running.tcp_addr.expect("tcp"))
                .await
                .expect("tcp connect");
            stream.set_nodelay(true).expect("nodelay");
            let (read, mut write) = stream.into_split();
            let hello = format!("hello {}\n", lang.dialect().name());
            write.write_all(hello.as_bytes()).await.expect("hello");
            lines(read, write, None)
        }
        Wire::Quic => {
            let roots = [env.certificate.clone()];
            let config = quic::client_config(&roots, lang.dialect()).expect("client config");
            let addr = env.running.quic_addr.expect("quic");
            let connection = env
                .quic_client
                .connect_with(config, addr, "localhost")
                .expect("quic connect")
                .await
                .expect("quic handshake");
            let (mut send, recv) = connection.open_bi().await.expect("quic stream");
            send.write_all(b"\n").await.expect("first line");
            lines(recv, send, Some(connection))
        }
        Wire::Pipe => {
            // `switchyard stdio` with a pipe instead of stdin/stdout: the public
            // custom-transport API, served on its own task.
            let (client, served) = tokio::io::duplex(64 * 1024);
            let (served_read, served_write) = tokio::io::split(served);
            let driver = env.driver().clone();
            let dialect = lang.dialect();
            tokio::spawn(async move {
                let reader = LineReader::new(served_read, driver.max_frame_bytes());
                let writer = LineWriter::new(served_write, dialect);
                let _counted = driver.metrics().track("pipe");
                driver.serve(reader, writer, Open::new(dialect)).await;
            });
            let (read, write) = tokio::io::split(client);
            lines(read, write, None)
        }
    }
}

fn lines(
    read: impl AsyncRead + Unpin + Send + 'static,
    write: impl LineWrite + 'static,
    connection: Option<quinn::Connection>,
) -> Conn {
    let read: Box<dyn AsyncRead + Unpin + Send> = Box::new(read);
    Conn::Lines {
        read: BufReader::new(read).lines(),
        write: Box::new(write),
        _connection: connection,
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

/// Connects, waits for the welcome (JSON), starts the client's task and asks it to
/// join its room.
async fn spawn_client(
    env: Arc<Env>,
    slot: usize,
    round: u32,
    (wire, lang, room, stable): (Wire, Lang, usize, bool),
) -> Incarnation {
    let name = format!("c{slot}-{round}");
    let rec: Shared = Arc::default();
    let mut conn = tokio::time::timeout(CONNECT_WAIT, async {
        let mut conn = connect(&env, wire, lang, &name).await;
        match lang {
            Lang::Rtc => lock(&rec).id = name.clone(),
            Lang::Json => {
                let welcome = conn.next(&rec).await.expect("the welcome");
                on_frame(&rec, lang, &welcome);
                assert!(!lock(&rec).id.is_empty(), "{name}: first frame {welcome}");
            }
        }
        conn
    })
    .await
    .unwrap_or_else(|_| panic!("{name} ({wire:?} {lang:?}) could not connect in time"));
    let (cmds, mut inbox) = mpsc::unbounded_channel();
    let task_rec = Arc::clone(&rec);
    let room_name = format!("room-{room}");
    let task = tokio::spawn(async move {
        let rec = task_rec;
        let mut reading = true;
        loop {
            tokio::select! {
                cmd = inbox.recv() => {
                    let Some(cmd) = cmd else { break };
                    if !act(&mut conn, &rec, lang, &room_name, cmd, &mut reading).await {
                        match cmd {
                            Cmd::Leave => conn.close(&rec, lang).await,
                            Cmd::Reset => conn.reset(),
                            _ => {}
                        }
                        break;
                    }
                }
                frame = conn.next(&rec), if reading => match frame {
                    Some(frame) => on_frame(&rec, lang, &frame),
                    None => break,
                },
            }
        }
        lock(&rec).ended = true;
    });
    let incarnation = Incarnation {
        slot,
        round,
        wire,
        lang,
        room,
        stable,
        rec,
        cmds,
        task,
        fate: None,
    };
    incarnation.tell(Cmd::Join);
    incarnation
}

/// Carries out one command; false when the connection is to end now.
async fn act(
    conn: &mut Conn,
    rec: &Shared,
    lang: Lang,
    room: &str,
    cmd: Cmd,
    reading: &mut bool,
) -> bool {
    let id = lock(rec).id.clone();
    let frame = match (cmd, lang) {
        (Cmd::Join, Lang::Rtc) => format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#),
        (Cmd::Join, Lang::Json) => {
            format!(r#"{{"type":"subscribe","channel":"{room}","requestId":"join"}}"#)
        }
        (Cmd::Publish, _) => {
            let mut r = lock(rec);
            if !r.joined || !*reading {
                return true;
            }
            let n = r.sent;
            r.sent += 1;
            match lang {
                Lang::Rtc => format!("/seq|{id}|{n}"),
                Lang::Json => format!(
                    r#"{{"type":"publish","channel":"{room}","data":{{"seq":{n}}},"requestId":"p{n}"}}"#
                ),
            }
        }
        (Cmd::Leave, Lang::Rtc) => format!(r#"/leave|{id}|{{"id":"{id}"}}"#),
        (Cmd::Leave, Lang::Json) => {
            format!(r#"{{"type":"unsubscribe","channel":"{room}","requestId":"leave"}}"#)
        }
        (Cmd::Drop | Cmd::Reset, _) => return false,
        (Cmd::HalfOpen, _) => {
            *reading = false;
            return true;
        }
        (Cmd::Flood, _) => {
            let frame = match lang {
                Lang::Rtc => format!("/to|nobody|/x|{id}|0"),
                Lang::Json => r#"{"type":"send","to":"nobody","data":0}"#.to_owned(),
            };
            for _ in 0..FLOOD {
                if !conn.send(&frame).await {
                    return false;
                }
            }
            return true;
        }
    };
    conn.send(&frame).await && cmd != Cmd::Leave
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

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in KiB.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// One HTTP/1.1 GET on the REST port; the status and the body.
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    common::http_within(CONNECT_WAIT, addr, "GET", path, Some(API_KEY), "").await
}

/// Waits until `check` passes, at most `within`; panics with its last complaint.
async fn converge<F, Fut>(what: &str, seed: u64, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match check().await {
            Ok(()) => return,
            Err(complaint) if Instant::now() >= deadline => panic!(
                "soak (seed {seed}): {what} did not hold within {within:?}:\n{complaint}\n\
                 replay with SWITCHYARD_SOAK_SEED={seed}"
            ),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// ---------------------------------------------------------------- the checks

/// Presence, departures and deliveries, as seen by every member that stayed
/// connected throughout (the stable ones).
fn check_rooms(all: &[&Incarnation]) -> Result<(), String> {
    let mut complaints = Vec::new();
    for stable in all.iter().filter(|i| i.stable) {
        let r = lock(&stable.rec);
        if r.ended {
            complaints.push(format!(
                "stable client {} ({:?} {:?}) was disconnected (close {:?})",
                r.id, stable.wire, stable.lang, r.close
            ));
            continue;
        }
        for other in all.iter().filter(|o| o.room == stable.room) {
            if Arc::ptr_eq(&other.rec, &stable.rec) {
                continue;
            }
            let o = lock(&other.rec);
            if o.id.is_empty() {
                continue;
            }
            let (id, live) = (&o.id, other.fate.is_none() && !o.ended);
            let joins = r.events.iter().filter(|e| **e == Ev::Join(id.clone()));
            let leaves = r.events.iter().filter(|e| **e == Ev::Leave(id.clone()));
            let (joins, leaves) = (joins.count(), leaves.count());
            let seen_by = || format!("{} ({:?} {:?})", r.id, stable.wire, stable.lang);
            let what = || {
                format!(
                    "{id} ({:?} {:?}, fate {:?}, close {:?})",
                    other.wire, other.lang, other.fate, o.close
                )
            };
            if live && o.joined && (joins, leaves) != (1, 0) {
                complaints.push(format!(
                    "{} saw live {} join {joins}x and leave {leaves}x",
                    seen_by(),
                    what()
                ));
            }
            if !live && (joins > 1 || leaves != joins || (o.joined && joins != 1)) {
                complaints.push(format!(
                    "{} saw departed {} (joined: {}) join {joins}x and leave {leaves}x",
                    seen_by(),
                    what(),
                    o.joined
                ));
            }
            // This publisher's messages: 0, 1, 2… with nothing before its arrival
            // or after its departure.
            let mut next = 0;
            let mut present = false;
            for e in &r.events {
                match e {
                    Ev::Join(j) if j == id => present = true,
                    Ev::Leave(l) if l == id => present = false,
                    Ev::Msg(from, n) if from == id => {
                        if *n != next || !present {
                            complaints.push(format!(
                                "{} got message {n} from {} (expected {next}, present: {present})",
                                seen_by(),
                                what()
                            ));
                            break;
                        }
                        next += 1;
                    }
                    _ => {}
                }
            }
            let lost = if live {
                next != o.sent
            } else {
                next < o.acked || next > o.sent
            };
            if lost {
                complaints.push(format!(
                    "{} got {next} messages from {} which sent {} ({} acked)",
                    seen_by(),
                    what(),
                    o.sent,
                    o.acked
                ));
            }
        }
    }
    complaints.truncate(20);
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// The hub's presence and REST's `/v1/presence` against the live, joined clients.
async fn check_presence(env: &Env, all: &[&Incarnation]) -> Result<(), String> {
    let mut complaints = Vec::new();
    for room in 0..ROOMS {
        let live: BTreeSet<String> = all
            .iter()
            .filter(|i| i.room == room && i.live() && lock(&i.rec).joined)
            .map(|i| i.id())
            .collect();
        let channel = format!("room-{room}");
        let c = channel.clone();
        let hub: BTreeSet<String> = env
            .driver()
            .call(move |hub, _| {
                hub.check_invariants();
                hub.presence("default", &c)
                    .into_iter()
                    .map(|(p, _)| p.as_str().to_owned())
                    .collect()
            })
            .await
            .expect("driver alive");
        if hub != live {
            complaints.push(format!(
                "{channel}: hub has {:?} extra and {:?} missing",
                hub.difference(&live).collect::<Vec<_>>(),
                live.difference(&hub).collect::<Vec<_>>()
            ));
            continue;
        }
        let addr = env.running.ws_addr.expect("ws");
        let (status, body) = get(addr, &format!("/v1/presence?channel={channel}")).await;
        let rest: BTreeSet<String> = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["peers"].as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|p| p["peerId"].as_str().map(str::to_owned))
            .collect();
        if status != 200 || rest != live {
            complaints.push(format!(
                "{channel}: REST says {status} {rest:?}, not {live:?}"
            ));
        }
    }
    if complaints.is_empty() {
        Ok(())
    } else {
        Err(complaints.join("\n"))
    }
}

/// The server's own counts, once every client is gone: nothing left anywhere.
async fn check_empty(env: &Env, baseline_fds: usize) -> Result<(), String> {
    let (empty, stats) = env
        .driver()
        .call(|hub, _| {
            hub.check_invariants();
            (hub.is_empty(), hub.stats())
        })
        .await
        .expect("driver alive");
    let wires = env.driver().metrics().connections_by_wire();
    let fds = fd_count();
    if !empty || stats.connections != 0 || wires.iter().any(|(_, n)| *n != 0) {
        return Err(format!("hub empty: {empty}, {stats:?}, wires {wires:?}"));
    }
    if fds > baseline_fds {
        return Err(format!(
            "{fds} file descriptors open, {baseline_fds} before the run"
        ));
    }
    let (status, metrics) = get(env.running.ws_addr.expect("ws"), "/metrics").await;
    let nonzero: Vec<&str> = metrics
        .lines()
        .filter(|l| {
            [
                "switchyard_connections{",
                "switchyard_channels ",
                "switchyard_memberships ",
            ]
            .iter()
            .any(|m| l.starts_with(m))
                || l.starts_with("switchyard_unauthenticated_connections ")
                || l.starts_with("switchyard_connection_panics_total ")
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    if status != 200 || !nonzero.is_empty() {
        return Err(format!("/metrics {status}: {nonzero:?}"));
    }
    Ok(())
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
    let plan = plan();
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
