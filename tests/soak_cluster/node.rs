//! A `switchyard serve` process, one node of the cluster: the cluster tests' harness
//! `Node`, trimmed to what the soak uses, and started without the test's own
//! environment: a node takes every `SWITCHYARD_*` variable for a setting and refuses to
//! start on an unknown one, so `SWITCHYARD_SOAK_SEED` (for a replay) would stop it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::common::{WAIT, http};
use super::harness::{API_KEY, Redis, TTL, until};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// A `switchyard serve` process, one node of the cluster.
pub(super) struct Node {
    child: Child,
    pub(super) id: String,
    pub(super) ws: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
    dir: PathBuf,
}

impl Node {
    /// Starts node `id` against `redis` and waits until its engine is connected.
    pub(super) async fn start(redis: &Redis, id: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "switchyard-cluster-node-{id}-{}-{}",
            std::process::id(),
            redis.port
        ));
        std::fs::create_dir_all(&dir).expect("node dir");
        let config = dir.join("switchyard.toml");
        let (key_id, key_secret) = API_KEY.split_once(':').expect("id:secret");
        std::fs::write(
            &config,
            format!(
                r#"
[listen]
ws = "127.0.0.1:0"
tcp = ""

[auth]
anonymous = true

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
"#,
                ttl = TTL.as_millis()
            ),
        )
        .expect("write config");
        let mut command = Command::new(BIN);
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
        let ws = loop {
            let line = tokio::time::timeout(WAIT, lines.next_line())
                .await
                .unwrap_or_else(|_| panic!("node {id} did not log its listener"))
                .expect("read logs")
                .unwrap_or_else(|| panic!("node {id} exited before listening"));
            let addr = line
                .contains("WebSocket listening")
                .then(|| line.rsplit("addr=").next())
                .flatten()
                .and_then(|a| a.split(' ').next())
                .and_then(|a| a.parse().ok());
            logs.lock().unwrap().push(line);
            if let Some(addr) = addr {
                break addr;
            }
        };
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
            ws,
            logs,
            dir,
        };
        node.wait_health("engine: redis connected").await;
        node
    }

    /// Waits until `/healthz` contains `line`.
    pub(super) async fn wait_health(&self, line: &str) {
        let what = format!("node {}'s /healthz to say {line:?}", self.id);
        until(WAIT, &what, || async {
            let (status, body) = http(self.ws, "GET", "/healthz", None, "").await;
            (status == 200 && body.contains(line)).then_some(())
        })
        .await;
    }

    /// One sample of `/metrics` (`name` with its labels, as printed).
    pub(super) async fn metric(&self, sample: &str) -> Option<u64> {
        let (_, body) = http(self.ws, "GET", "/metrics", None, "").await;
        body.lines()
            .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
    }

    /// Waits until this node has heard from `n` other nodes.
    pub(super) async fn wait_live_nodes(&self, n: u64) {
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

    /// The lines of its log so far that contain `pattern`.
    pub(super) fn log_lines(&self, pattern: &str) -> Vec<String> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.iter()
            .filter(|l| l.contains(pattern))
            .cloned()
            .collect()
    }

    /// `kill -9`: no goodbye, the others must notice the silence.
    pub(super) async fn kill9(&mut self) {
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
