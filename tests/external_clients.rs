//! Clients written by others, against the real server over loopback: the rtc.io
//! client (`rtc-signaller` 6.3.0 with `rtc-switchboard-messenger` 2.0.4) and two JSON
//! clients written from the Metered quickstart (Node `ws` + `jsonwebtoken`, Python
//! `websockets` + `PyJWT`). Each test starts a server with `switchyard::server::start`,
//! runs one script from `tests/clients/` with a hard timeout and wants exit status 0;
//! the script's own output says which check failed.
//!
//! The scripts' dependencies are installed by `scripts/test` (npm into
//! `tests/clients/node_modules`, a venv at `target/pyclients`). Without them these
//! tests fail, saying so: they never pass by skipping.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use switchyard::server::{self, Running};
use switchyard::settings::Settings;

/// Signing key shared by the server and the scripts (a test-only secret).
const KID: &str = "sk_id_external_clients";
const SECRET: &str = "switchyard-external-clients-secret-0123456789";

/// Longest a script may run; each script also has its own 15 s limit.
const HARD_TIMEOUT: Duration = Duration::from_secs(45);

const INSTALL_HINT: &str = "the external test clients are not installed: run `scripts/test` \
     (it installs them, then runs the whole test suite), or run it once and use `cargo test` after";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

fn venv_python() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyclients/bin/python")
}

/// A server on a free loopback port with one signing key and a keepalive short enough
/// that a dead peer's leave would come within a second even without a FIN.
async fn start_server(anonymous: bool) -> Running {
    let config = format!(
        r#"
[listen]
ws = "127.0.0.1:0"
tcp = ""

[ws]
ping_interval_ms = 200
pong_timeout_ms = 300

[auth]
anonymous = {anonymous}

[[auth.keys]]
kid = "{KID}"
secret = "{SECRET}"
"#
    );
    let settings = Settings::from_toml(&config, std::iter::empty()).expect("test settings");
    server::start(&settings).await.expect("server starts")
}

fn ws_url(server: &Running) -> String {
    format!("ws://{}", server.ws_addr.expect("a WebSocket listener"))
}

/// Node with the npm packages `scripts/test` installs, or a failure that says what to do.
fn node_ready() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` does not run ({node:?}): {INSTALL_HINT}"
    );
    for package in [
        "rtc-signaller",
        "rtc-switchboard-messenger",
        "ws",
        "jsonwebtoken",
    ] {
        let manifest = clients_dir()
            .join("node_modules")
            .join(package)
            .join("package.json");
        assert!(
            manifest.is_file(),
            "{} is missing: {INSTALL_HINT}",
            manifest.display()
        );
    }
}

/// The venv's Python with `websockets` and `PyJWT`, or a failure that says what to do.
fn python_ready() -> PathBuf {
    let python = venv_python();
    let probe = Command::new(&python)
        .args(["-c", "import websockets, jwt"])
        .output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import websockets and jwt ({probe:?}): {INSTALL_HINT}",
        python.display()
    );
    python
}

/// Runs `program args…` in `tests/clients/` on a blocking thread (the server keeps
/// running on the runtime), kills it after [`HARD_TIMEOUT`], and fails with its output
/// unless it exits 0.
async fn run_client(what: &str, program: PathBuf, args: Vec<String>) {
    let what = what.to_owned();
    let shown = format!("{} {}", program.display(), args.join(" "));
    let (status, output, elapsed) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let mut child = Command::new(&program)
            .args(&args)
            .current_dir(clients_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{what}: cannot start {}: {e}", program.display()));
        let out = drain(child.stdout.take().expect("piped stdout"));
        let err = drain(child.stderr.take().expect("piped stderr"));
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the client") {
                break Some(status);
            }
            if started.elapsed() > HARD_TIMEOUT {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let output = format!(
            "--- stdout\n{}--- stderr\n{}",
            out.join().expect("stdout reader"),
            err.join().expect("stderr reader")
        );
        (status, output, started.elapsed())
    })
    .await
    .expect("client runner");
    match status {
        Some(s) if s.success() => println!("{shown}\n{output}(took {elapsed:.1?})"),
        Some(s) => panic!("client script failed ({s}) after {elapsed:.1?}: {shown}\n{output}"),
        None => panic!("client script killed after {HARD_TIMEOUT:?}: {shown}\n{output}"),
    }
}

/// Reads a pipe to its end on its own thread (a full pipe would stall the child).
fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn script_args(script: &str, url: &str, extra: &[&str]) -> Vec<String> {
    let mut args = vec![
        script.to_owned(),
        "--url".into(),
        url.to_owned(),
        "--kid".into(),
        KID.into(),
        "--secret".into(),
        SECRET.into(),
    ];
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

async fn rtc_signaller(anonymous: bool, auth: &str) {
    node_ready();
    let server = start_server(anonymous).await;
    let args = script_args("rtc-signaller.js", &ws_url(&server), &["--auth", auth]);
    run_client(&format!("rtc-signaller ({auth})"), "node".into(), args).await;
}

/// Anonymous peers with the client's own ids: announce, `/to`, broadcast, `/error`,
/// a SIGKILLed peer's synthetic leave, the client's reconnect after a server close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtc_io_client_signals_through_the_server_anonymously() {
    rtc_signaller(true, "none").await;
}

/// The same, each peer authenticating in-band with a `token` in its announce data,
/// which the client repeats in every announce and autoreply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtc_io_client_authenticates_with_a_token_in_its_announce() {
    rtc_signaller(false, "announce").await;
}

/// The same, each peer connecting to `<url>/?token=JWT` (the messenger appends `/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtc_io_client_authenticates_with_a_token_in_the_url() {
    rtc_signaller(false, "query").await;
}

/// The rtc.io client and a JSON peer in one room: the frames the server writes for
/// JSON peers (`/announce`, `/message`, `/to|…|/message`) as the v6 client parses them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtc_io_client_and_a_json_peer_share_a_room() {
    node_ready();
    let server = start_server(false).await;
    let args = script_args(
        "rtc-signaller.js",
        &ws_url(&server),
        &["--auth", "announce", "--scenario", "mixed"],
    );
    run_client("rtc-signaller (mixed)", "node".into(), args).await;
}

/// A page reload that keeps its peer id (`opts.id = sub`, as token-bound peers must):
/// the reloaded client never learns who is in the room, because the members already
/// there see its announce as an update and the v6 client only autoreplies to peers it
/// has never seen (it keeps peers after their `/leave`). rtc-switchboard behaves the
/// same; the fix would be server-made announces of the members for a connection's
/// first announce, as Switchyard already sends for JSON members.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rtc_io_client_reloaded_with_the_same_id_learns_who_is_in_the_room() {
    node_ready();
    let server = start_server(false).await;
    let args = script_args(
        "rtc-signaller.js",
        &ws_url(&server),
        &["--auth", "announce", "--scenario", "reload"],
    );
    run_client("rtc-signaller (reload)", "node".into(), args).await;
}

/// An expired token in the announce closes the connection (4002), and the v6 client
/// reconnects 50 ms after any close that follows `connected`, re-announcing the same
/// token: about six connections a second, forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_announce_token_does_not_make_the_rtc_io_client_reconnect_in_a_loop() {
    node_ready();
    let server = start_server(false).await;
    let args = script_args(
        "rtc-signaller.js",
        &ws_url(&server),
        &["--scenario", "expired-announce-token"],
    );
    run_client(
        "rtc-signaller (expired announce token)",
        "node".into(),
        args,
    )
    .await;
}

/// Where anonymous peers are allowed, an announce token is not checked at all: an
/// expired one is stripped and the peer joins as anonymous (every grant, the default
/// tenant), where a JSON `auth` would get `already_authenticated`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_announce_token_is_refused_where_anonymous_peers_are_allowed() {
    node_ready();
    let server = start_server(true).await;
    let args = script_args(
        "rtc-signaller.js",
        &ws_url(&server),
        &["--scenario", "expired-announce-token"],
    );
    run_client(
        "rtc-signaller (expired announce token, anonymous)",
        "node".into(),
        args,
    )
    .await;
}

/// The Metered quickstart's Node client: welcome, subscribe/ack, presence, publish,
/// send, bad and expired tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_json_client_in_node() {
    node_ready();
    let server = start_server(false).await;
    let args = script_args("metered-quickstart.js", &ws_url(&server), &[]);
    run_client("metered-quickstart.js", "node".into(), args).await;
}

/// An independent JSON client in Python: the same flow, briefly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quickstart_json_client_in_python() {
    let python = python_ready();
    let server = start_server(false).await;
    let args = script_args("metered_quickstart.py", &ws_url(&server), &[]);
    run_client("metered_quickstart.py", python, args).await;
}
