//! A `redis-server` of the test's own and `switchyard serve` nodes around it: both
//! killed on drop (also when a test fails), every wait bounded.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{WAIT, http};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
/// The cluster's presence TTL: a silent node is gone after this.
pub(crate) const TTL: Duration = Duration::from_millis(600);
/// The REST API key of every node.
pub(crate) const API_KEY: &str = "ak_test:cluster-test-secret";

/// Polls `check` every 20 ms until it gives a value, for at most `wait`; panics
/// naming `what`.
pub(crate) async fn until<T, F, Fut>(wait: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + wait;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {wait:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A private `redis-server` on a free loopback port, without persistence.
pub(crate) struct Redis {
    child: Option<std::process::Child>,
    pub(crate) port: u16,
    dir: PathBuf,
}

impl Redis {
    /// Starts one on a free port (retrying when another process takes it first).
    pub(crate) fn start(name: &str) -> Self {
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            if let Some(redis) = Self::start_on(name, port) {
                return redis;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts one on `port`; `None` when it exits (the port was taken).
    pub(crate) fn start_on(name: &str, port: u16) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-cluster-{name}-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "no", "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test installs it)");
        let mut redis = Self {
            child: Some(child),
            port,
            dir,
        };
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            let exited = redis
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some();
            if exited {
                redis.child = None;
                return None;
            }
            if redis.ping() {
                return Some(redis);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("redis-server on port {port} did not answer PING within {WAIT:?}");
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut answer = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok()
            && s.read_exact(&mut answer).is_ok()
            && &answer == b"+PONG\r\n"
    }

    /// SIGKILL, and reaped.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What a node serves beyond its WebSocket port (anonymous peers, no token file).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// A TCP line listener (`tcp_dialect = "auto"`: a `hello <dialect>` line first).
    pub(crate) tcp: bool,
    /// A QUIC listener with a dev certificate in the node's directory.
    pub(crate) quic: bool,
    /// Whether peers may connect without credentials.
    pub(crate) anonymous: bool,
    /// An `[auth] access_token_file` in the node's directory.
    pub(crate) token_file: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            tcp: false,
            quic: false,
            anonymous: true,
            token_file: false,
        }
    }
}

/// A `switchyard serve` process, one node of the cluster.
pub(crate) struct Node {
    child: Child,
    pub(crate) id: String,
    pub(crate) ws: SocketAddr,
    /// The TCP line listener, with [`Options::tcp`].
    pub(crate) tcp: Option<SocketAddr>,
    /// The QUIC listener and the DER certificate it presents, with [`Options::quic`].
    pub(crate) quic: Option<(SocketAddr, Vec<u8>)>,
    logs: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

/// The address a listener's log line names (`… addr=127.0.0.1:1234 …`), if `line`
/// says `what`.
fn listening(line: &str, what: &str) -> Option<SocketAddr> {
    line.contains(what)
        .then(|| line.rsplit("addr=").next())
        .flatten()
        .and_then(|a| a.split(' ').next())
        .and_then(|a| a.parse().ok())
}

impl Node {
    /// Starts node `id` against `redis` and waits until its engine is connected.
    pub(crate) async fn start(redis: &Redis, id: &str) -> Self {
        Self::start_with(redis, id, Options::default()).await
    }

    /// [`Node::start`] with more listeners or other auth.
    pub(crate) async fn start_with(redis: &Redis, id: &str, options: Options) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-cluster-node-{id}-{}-{}",
            std::process::id(),
            redis.port
        ));
        std::fs::create_dir_all(&dir).expect("node dir");
        let config = dir.join("switchyard.toml");
        let (key_id, key_secret) = API_KEY.split_once(':').expect("id:secret");
        let tcp = if options.tcp { "127.0.0.1:0" } else { "" };
        let quic = if options.quic { "127.0.0.1:0" } else { "" };
        let cert = dir.join("quic-dev-cert.pem");
        let token_file = if options.token_file {
            dir.join("access-tokens.json").display().to_string()
        } else {
            String::new()
        };
        std::fs::write(
            &config,
            format!(
                r#"
[listen]
ws = "127.0.0.1:0"
tcp = "{tcp}"
quic = "{quic}"

[quic]
dev_cert_file = {cert:?}

[auth]
anonymous = {anonymous}
access_token_file = {token_file:?}

[limits]
message_rate = 100000
message_burst = 100000

[[api.keys]]
id = "{key_id}"
secret = "{key_secret}"

[engine]
kind = "redis"
node_id = "{id}"
presence_ttl_ms = {ttl}

[[history]]
channels = "kept/**"
size = 1000
ttl_ms = 60000
"#,
                ttl = TTL.as_millis(),
                anonymous = options.anonymous,
            ),
        )
        .expect("write config");
        let mut command = Command::new(BIN);
        // A node reads every `SWITCHYARD_*` variable as a setting and refuses an
        // unknown one: a test's own (`SWITCHYARD_SOAK_SEED`) must not reach it.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("SWITCHYARD_")) {
            command.env_remove(name);
        }
        let mut child = command
            .args(["serve", "-c"])
            .arg(&config)
            // Through the environment, as an operator keeps a password out of the file.
            .env("SWITCHYARD_ENGINE_URL", redis.url())
            .env("SWITCHYARD_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchyard serve");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (mut ws, mut tcp, mut quic) = (None, None, None);
        // The server logs its listeners in this order: WebSocket, TCP, QUIC.
        while ws.is_none() || (options.tcp && tcp.is_none()) || (options.quic && quic.is_none()) {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("node {id} did not log its listeners"))
                .expect("read logs")
                .unwrap_or_else(|| panic!("node {id} exited before listening"));
            ws = ws.or_else(|| listening(&line, "WebSocket listening"));
            tcp = tcp.or_else(|| listening(&line, "TCP lines listening"));
            quic = quic.or_else(|| listening(&line, "QUIC listening"));
            logs.lock().unwrap().push(line);
        }
        let quic = quic.map(|addr| {
            let der = std::fs::read(cert.with_extension("der"))
                .unwrap_or_else(|e| panic!("node {id}'s QUIC dev certificate: {e}"));
            (addr, der)
        });
        // Keep reading: a full pipe would stall the node's logging.
        let sink = Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let node = Self {
            child,
            id: id.to_owned(),
            ws: ws.expect("the loop ends with a WebSocket address"),
            tcp,
            quic,
            logs,
            dir,
        };
        node.wait_health("engine: redis connected").await;
        node
    }

    /// Waits until `/healthz` contains `line`.
    pub(crate) async fn wait_health(&self, line: &str) {
        let what = format!("node {}'s /healthz to say {line:?}", self.id);
        until(WAIT, &what, || async {
            let (status, body) = http(self.ws, "GET", "/healthz", None, "").await;
            (status == 200 && body.contains(line)).then_some(())
        })
        .await;
    }

    /// One sample of `/metrics` (`name` with its labels, as printed).
    pub(crate) async fn metric(&self, sample: &str) -> Option<u64> {
        let (_, body) = http(self.ws, "GET", "/metrics", None, "").await;
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
    }

    /// Waits until this node has heard from `n` other nodes.
    pub(crate) async fn wait_live_nodes(&self, n: u64) {
        let what = format!("node {} to hear from {n} other nodes", self.id);
        until(WAIT, &what, || async {
            (self
                .metric("switchyard_engine_live_nodes{engine=\"redis\"}")
                .await
                == Some(n))
            .then_some(())
        })
        .await;
    }

    /// The peers `GET /v1/presence` lists in `channel`, sorted.
    pub(crate) async fn presence(&self, channel: &str) -> Vec<String> {
        let path = format!("/v1/presence?channel={channel}");
        let (status, body) = http(self.ws, "GET", &path, Some(API_KEY), "").await;
        assert_eq!(status, 200, "presence on node {}: {body}", self.id);
        let v: serde_json::Value = serde_json::from_str(&body).expect("presence JSON");
        let mut peers: Vec<String> = v["peers"]
            .as_array()
            .expect("peers")
            .iter()
            .map(|p| p["peerId"].as_str().expect("peerId").to_owned())
            .collect();
        peers.sort();
        peers
    }

    /// Waits until `GET /v1/presence` on this node lists exactly `peers`.
    pub(crate) async fn wait_presence(&self, channel: &str, peers: &[&str]) {
        let mut want: Vec<String> = peers.iter().map(|p| (*p).to_owned()).collect();
        want.sort();
        let what = format!("presence of {channel} on node {} to be {want:?}", self.id);
        until(WAIT, &what, || async {
            (self.presence(channel).await == want).then_some(())
        })
        .await;
    }

    /// `kill -9`: no goodbye, the others must notice the silence.
    pub(crate) async fn kill9(&mut self) {
        self.child.start_kill().expect("kill -9 the node");
        let _ = tokio::time::timeout(WAIT, self.child.wait()).await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if std::thread::panicking() {
            let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
            let tail = &logs[logs.len().saturating_sub(40)..];
            eprintln!("--- node {} logs (last {}) ---", self.id, tail.len());
            for line in tail {
                eprintln!("{line}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
