//! The `switchyard` binary as a user runs it: `serve` from a config file (port 0),
//! peer ids that differ from one start to the next, the CLI helpers, SIGTERM and SIGHUP
//! (a reload of the config file) sent with `kill`, and one channel
//! shared by peers on every transport: a WebSocket JSON peer, an rtc-signaller peer
//! over WebSocket, a TCP-line JSON peer and a stdio peer (a `switchyard stdio
//! --connect` child process).

#[path = "../common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use common::{Line, WAIT, Ws};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const SECRET: &str = "binary-test-secret-0123456789abcdef";

/// A config on loopback port 0 with one key, no anonymous access, short keepalive.
fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("switchyard.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[listen]
ws = "127.0.0.1:0"
tcp = "127.0.0.1:0"
tcp_dialect = "auto"

[ws]
ping_interval_ms = 200
pong_timeout_ms = 300

[[auth.keys]]
kid = "k1"
secret = "{SECRET}"
"#
        ),
    )
    .expect("write config");
    path
}

/// Turns anonymous access on in a config from [`write_config`]: `anonymous = true`
/// in an `[auth]` table of its own line, for tests to flip.
fn allow_anonymous(config: &std::path::Path) {
    let text = std::fs::read_to_string(config)
        .expect("read config")
        .replace("[[auth.keys]]", "[auth]\nanonymous = true\n\n[[auth.keys]]");
    std::fs::write(config, text).expect("write config");
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("switchyard-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// Runs a CLI command to completion, returning (success, stdout, stderr).
async fn run(args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(WAIT, Command::new(BIN).args(args).output())
        .await
        .unwrap_or_else(|_| panic!("switchyard {args:?} did not finish"))
        .expect("run switchyard");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn token(config: &std::path::Path, sub: &str) -> String {
    let (ok, out, err) = run(&[
        "gentoken",
        "-c",
        config.to_str().unwrap(),
        "--sub",
        sub,
        "--channel",
        "lobby",
    ])
    .await;
    assert!(ok, "gentoken failed: {err}");
    out.trim().to_owned()
}

/// A `switchyard serve` child and the addresses it logged.
struct Served {
    child: Child,
    ws: SocketAddr,
    tcp: SocketAddr,
    logs: Lines<BufReader<ChildStderr>>,
}

async fn serve(config: &std::path::Path) -> Served {
    serve_with(&["serve", "-c", config.to_str().unwrap()], &[]).await
}

/// Starts `switchyard <args>` with `env` on top of the test's environment, and waits
/// until it has logged both listeners' addresses.
async fn serve_with(args: &[&str], env: &[(&str, &str)]) -> Served {
    let mut child = Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env("SWITCHYARD_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchyard serve");
    let mut logs = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let (mut ws, mut tcp) = (None, None);
    while ws.is_none() || tcp.is_none() {
        let line = tokio::time::timeout(WAIT, logs.next_line())
            .await
            .expect("server did not log its listeners")
            .expect("read logs")
            .expect("server exited before listening");
        let addr = || {
            line.rsplit("addr=")
                .next()
                .and_then(|a| a.split(' ').next())
                .and_then(|a| a.parse().ok())
        };
        if line.contains("WebSocket listening") {
            ws = addr();
        } else if line.contains("TCP lines listening") {
            tcp = addr();
        }
    }
    Served {
        child,
        ws: ws.unwrap(),
        tcp: tcp.unwrap(),
        logs,
    }
}

/// A stdio peer: `switchyard stdio --connect <url>` as a child process.
struct StdioPeer {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl StdioPeer {
    fn spawn(url: &str) -> Self {
        let mut child = Command::new(BIN)
            .args(["stdio", "--connect", url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn switchyard stdio");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Self {
            child,
            stdin,
            stdout,
        }
    }

    async fn send(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to stdio peer");
    }

    async fn expect(&mut self, what: &str) -> String {
        tokio::time::timeout(WAIT, self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("stdio peer: timed out waiting for {what}"))
            .expect("read stdout")
            .unwrap_or_else(|| panic!("stdio peer ended while waiting for {what}"))
    }
}

/// Reads frames until one equals `want` (frames before it are other traffic this
/// step does not assert on, such as presence deltas), bounded by [`WAIT`] per frame.
async fn ws_until(ws: &mut Ws, want: &str) {
    for _ in 0..20 {
        if ws.expect_text(want).await == want {
            return;
        }
    }
    panic!("never received {want}");
}

async fn line_until(line: &mut Line, want: &str) {
    for _ in 0..20 {
        if line.expect_line(want).await == want {
            return;
        }
    }
    panic!("never received {want}");
}

async fn stdio_until(peer: &mut StdioPeer, want: &str) {
    for _ in 0..20 {
        if peer.expect(want).await == want {
            return;
        }
    }
    panic!("never received {want}");
}

#[tokio::test]
async fn peers_on_every_transport_share_one_channel() {
    let dir = temp_dir("four");
    let config = write_config(&dir);
    let mut server = serve(&config).await;
    let (js_token, sig_token, tcp_token, std_token) = (
        token(&config, "js").await,
        token(&config, "sig").await,
        token(&config, "tcp").await,
        token(&config, "std").await,
    );

    // A JSON peer over WebSocket.
    let mut js = Ws::connect(server.ws, &format!("/v1?token={js_token}")).await;
    assert!(
        js.expect_text("js welcome")
            .await
            .contains(r#""peerId":"js""#)
    );
    js.send(r#"{"type":"subscribe","channel":"lobby","requestId":"s"}"#)
        .await;
    assert_eq!(
        js.expect_text("js ack").await,
        r#"{"type":"ack","requestId":"s"}"#
    );
    ws_until(
        &mut js,
        r#"{"type":"presence","channel":"lobby","joined":[],"left":[],"count":1,"snapshot":true}"#,
    )
    .await;

    // A JSON peer over TCP lines, authenticating in-band.
    let mut tcp = Line::connect(server.tcp).await;
    tcp.send("hello json").await;
    tcp.send(&format!(r#"{{"type":"auth","token":"{tcp_token}"}}"#))
        .await;
    assert!(
        tcp.expect_line("tcp welcome")
            .await
            .contains(r#""peerId":"tcp""#)
    );
    tcp.send(r#"{"type":"subscribe","channel":"lobby","requestId":"s"}"#)
        .await;
    line_until(&mut tcp, r#"{"type":"presence","channel":"lobby","joined":[{"peerId":"js","metadata":{}}],"left":[],"count":2,"snapshot":true}"#).await;
    ws_until(&mut js, r#"{"type":"presence","channel":"lobby","joined":[{"peerId":"tcp","metadata":{}}],"left":[],"count":2}"#).await;

    // An rtc-signaller peer over WebSocket, token in the query as rtc.io appends it.
    let mut sig = Ws::connect(server.ws, &format!("/?token={sig_token}/")).await;
    sig.send(r#"/announce|sig|{"id":"sig","room":"lobby"}"#)
        .await;
    ws_until(&mut sig, r#"/roominfo|{"memberCount":3}"#).await;
    ws_until(&mut js, r#"{"type":"presence","channel":"lobby","joined":[{"peerId":"sig","metadata":{"id":"sig","room":"lobby"}}],"left":[],"count":3}"#).await;

    // A stdio peer: a process bridging its stdin/stdout to the server.
    let mut std_peer = StdioPeer::spawn(&format!("ws://{}/?token={std_token}", server.ws));
    std_peer
        .send(r#"/announce|std|{"id":"std","room":"lobby"}"#)
        .await;
    stdio_until(&mut std_peer, r#"/roominfo|{"memberCount":4}"#).await;
    ws_until(&mut sig, r#"/announce|std|{"id":"std","room":"lobby"}"#).await;
    line_until(&mut tcp, r#"{"type":"presence","channel":"lobby","joined":[{"peerId":"std","metadata":{"id":"std","room":"lobby"}}],"left":[],"count":4}"#).await;

    // JSON publish reaches everyone else, in each one's dialect.
    js.send(r#"{"type":"publish","channel":"lobby","data":{"hi":1}}"#)
        .await;
    line_until(
        &mut tcp,
        r#"{"type":"message","channel":"lobby","from":"js","data":{"hi":1}}"#,
    )
    .await;
    ws_until(&mut sig, r#"/message|js|{"hi":1}"#).await;
    stdio_until(&mut std_peer, r#"/message|js|{"hi":1}"#).await;

    // rtc-signaller /to reaches only its target; a room command reaches all.
    sig.send(r#"/to|std|/hello|sig|{"x":1}"#).await;
    stdio_until(&mut std_peer, r#"/to|std|/hello|sig|{"x":1}"#).await;
    std_peer.send(r#"/chat|std|"yo""#).await;
    ws_until(&mut sig, r#"/chat|std|"yo""#).await;
    ws_until(&mut js, r#"{"type":"message","channel":"lobby","from":"std","data":{"args":["yo"],"command":"chat"}}"#).await;

    // A direct message from the TCP peer to the rtc-signaller peer.
    tcp.send(r#"{"type":"send","to":"sig","data":"psst","requestId":"d"}"#)
        .await;
    ws_until(&mut sig, r#"/to|sig|/message|tcp|"psst""#).await;

    // The stdio process dies: the others get its synthetic leave.
    std_peer.child.kill().await.expect("kill stdio peer");
    ws_until(&mut sig, r#"/leave|std|{"id":"std"}"#).await;
    ws_until(
        &mut js,
        r#"{"type":"presence","channel":"lobby","joined":[],"left":[{"peerId":"std"}],"count":3}"#,
    )
    .await;

    // The TCP peer hangs up.
    drop(tcp);
    ws_until(&mut sig, r#"/leave|tcp|{"id":"tcp"}"#).await;

    // No token ever reached the logs.
    let _ = server.child.start_kill();
    let mut logged = String::new();
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_secs(2), server.logs.next_line()).await
    {
        logged.push_str(&line);
        logged.push('\n');
    }
    for t in [&js_token, &sig_token, &tcp_token, &std_token] {
        let signature = t.rsplit('.').next().unwrap();
        assert!(
            !logged.contains(signature),
            "a token reached the logs:\n{logged}"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// A server-assigned peer id: UUID-shaped, in the version 4 layout.
fn is_server_assigned_id(id: &str) -> bool {
    let groups: Vec<&str> = id.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
        && groups[2].starts_with('4')
        && groups[3].starts_with(['8', '9', 'a', 'b'])
}

/// Starts `switchyard serve`, reads the `peerId` of the `welcome` an anonymous JSON
/// peer gets, and stops the server again (waiting until the process has exited).
async fn anonymous_peer_id_from_a_fresh_server(config: &std::path::Path) -> String {
    let mut server = serve(config).await;
    let mut ws = Ws::connect(server.ws, "/v1").await;
    let text = ws.expect_text("the anonymous peer's welcome").await;
    let welcome: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("welcome is not JSON ({e}): {text}"));
    assert_eq!(welcome["type"], "welcome", "{text}");
    let id = welcome["peerId"]
        .as_str()
        .unwrap_or_else(|| panic!("welcome without a peerId: {text}"))
        .to_owned();
    server.child.start_kill().expect("stop the server");
    tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("the server did not exit when stopped")
        .expect("wait for the server");
    id
}

#[tokio::test]
async fn two_servers_started_one_after_the_other_assign_different_peer_ids() {
    let dir = temp_dir("ids");
    let config = write_config(&dir);
    allow_anonymous(&config);

    let first = anonymous_peer_id_from_a_fresh_server(&config).await;
    let second = anonymous_peer_id_from_a_fresh_server(&config).await;
    for id in [&first, &second] {
        assert!(is_server_assigned_id(id), "not a server-assigned id: {id}");
    }
    assert_ne!(
        first, second,
        "a restarted server handed out its predecessor's peer id: the id seed is not random"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn cli_helpers_validate_configs_and_tokens() {
    let dir = temp_dir("cli");
    let (ok, example, _) = run(&["genconfig"]).await;
    assert!(ok && example.contains("[[auth.keys]]"), "{example}");
    let path = dir.join("generated.toml");
    std::fs::write(&path, &example).unwrap();
    let path = path.to_str().unwrap();
    let (ok, out, err) = run(&["checkconfig", "-c", path]).await;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("ok:"), "{out}");

    let (ok, token, err) = run(&["gentoken", "-c", path, "--sub", "alice", "--ttl", "60"]).await;
    assert!(ok, "{err}");
    let (ok, out, err) = run(&["checktoken", "-c", path, token.trim()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("valid: sub=alice"), "{out}");
    let (ok, _, err) = run(&["checktoken", "-c", path, "not.a.token"]).await;
    assert!(!ok && err.contains("invalid"), "{err}");

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[listen]\nws = \"nowhere\"\n").unwrap();
    let (ok, _, err) = run(&["checkconfig", "-c", bad.to_str().unwrap()]).await;
    assert!(!ok && err.contains("listen address"), "{err}");
    std::fs::write(&bad, "[listen]\nwebsocket = \"127.0.0.1:1\"\n").unwrap();
    let (ok, _, err) = run(&["checkconfig", "-c", bad.to_str().unwrap()]).await;
    assert!(!ok && err.contains("unknown field"), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_whole_hub_runs_in_a_pipeline_over_stdio() {
    let mut child = Command::new(BIN)
        .args(["stdio", "--dialect", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn switchyard stdio");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"{\"type\":\"subscribe\",\"channel\":\"c\",\"requestId\":\"1\"}\n")
        .await
        .unwrap();
    drop(stdin);
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("stdio hub did not end with its input")
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(r#"{"type":"welcome""#), "{text}");
    assert_eq!(lines[1], r#"{"type":"ack","requestId":"1"}"#, "{text}");
    assert!(
        lines[2].starts_with(r#"{"type":"presence","channel":"c""#),
        "{text}"
    );
}

#[tokio::test]
async fn sigterm_says_going_away_closes_1001_and_exits_cleanly() {
    let dir = temp_dir("sigterm");
    let config = write_config(&dir);
    let mut server = serve(&config).await;
    let token = token(&config, "js").await;
    let mut js = Ws::connect(server.ws, &format!("/v1?token={token}")).await;
    assert!(js.expect_text("welcome").await.contains("welcome"));
    let pid = server.child.id().expect("server pid").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("run kill");
    assert!(killed.success());
    assert_eq!(
        js.expect_text("going_away").await,
        r#"{"type":"going_away","retryAfterMs":5000}"#
    );
    assert_eq!(js.expect_close("1001").await.0, 1001);
    let status = tokio::time::timeout(WAIT, server.child.wait())
        .await
        .expect("server did not exit after SIGTERM")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_for_names_the_client() {
    let dir = temp_dir("proxy");
    let config = write_config(&dir);
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[ws]\n", "[ws]\ntrusted_proxies = [\"127.0.0.1/32\"]\n");
    std::fs::write(&config, text).unwrap();
    let mut server = serve(&config).await;
    let token = token(&config, "js").await;
    let connect = |xff: &'static str| {
        let addr = server.ws;
        let token = token.clone();
        async move {
            use tokio_tungstenite::tungstenite::client::IntoClientRequest;
            let mut request = format!("ws://{addr}/v1?token={token}")
                .into_client_request()
                .unwrap();
            request
                .headers_mut()
                .insert("X-Forwarded-For", xff.parse().unwrap());
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            let (inner, _) = tokio_tungstenite::client_async(request, stream)
                .await
                .unwrap();
            let mut ws = Ws { inner };
            assert!(ws.expect_text("welcome").await.contains("welcome"));
            ws
        }
    };
    // The test connects from 127.0.0.1, a trusted proxy: its header names the client.
    let _ws = connect("192.0.2.1, 198.51.100.7").await;
    let mut opened = None;
    for _ in 0..50 {
        let line = tokio::time::timeout(WAIT, server.logs.next_line())
            .await
            .expect("log line")
            .unwrap()
            .unwrap();
        if line.contains("connection opened") {
            opened = Some(line);
            break;
        }
    }
    let opened = opened.expect("a connection-opened log line");
    assert!(opened.contains("198.51.100.7"), "{opened}");
    let _ = std::fs::remove_dir_all(dir);
}

mod keys;
mod logs;
mod reload;
