//! The browser pages in headless Chromium: the real `switchyard` binary in dev mode
//! (no config, port 0), driven by `tests/clients/browser.js` with playwright-core.
//!
//! - `demo_json_tabs_meet_chat_and_talk_peer_to_peer` and
//!   `demo_rtc_signaller_tabs_meet_chat_and_talk_peer_to_peer`: two `/demo` tabs see
//!   each other in the roster, a chat line goes from one to the other, a WebRTC data
//!   channel opens (signalled through `send` or `/to`) and carries a message that does
//!   not move `switchyard_deliveries_total`, and closing one tab drops it from the
//!   other's roster.
//! - `dashboard_lists_the_peers_and_kicks_one`: `/dashboard` logs in with the dev API
//!   key, lists both peers and the channel, shows a peer's subscriptions, and kicks
//!   one, whose tab shows close 4020.
//! - `demo_json_works_behind_tls_over_wss`: the JSON demo served over https, its
//!   WebSockets on wss:// (a self-signed certificate).
//!
//! Screenshots go to `target/tmp/browser/`; with `BROWSER_SCREENSHOTS=docs/img`
//! they go there instead (the README's pictures). These variables are not named
//! `SWITCHYARD_*`: the server reads those as config overrides. Chromium is `CHROMIUM`,
//! else `/usr/bin/chromium` (Debian's package, which `scripts/test` installs): without
//! one these tests pass with a note saying they were skipped. playwright-core comes
//! from `tests/clients/node_modules` (`scripts/test` runs `npm ci`): without it they
//! fail, saying so.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// How long the server may take to print its banner.
const START: Duration = Duration::from_secs(10);
/// How long one browser scenario may take (its own waits are 10 s each).
const SCENARIO: Duration = Duration::from_secs(60);

/// One Chromium at a time: the tests share a small machine with other builds, and
/// WebRTC timing suffers when several browsers compete.
static ONE_BROWSER: Mutex<()> = Mutex::new(());

#[test]
fn demo_json_tabs_meet_chat_and_talk_peer_to_peer() {
    scenario("json");
}

#[test]
fn demo_rtc_signaller_tabs_meet_chat_and_talk_peer_to_peer() {
    scenario("rtc");
}

#[test]
fn dashboard_lists_the_peers_and_kicks_one() {
    scenario("dashboard");
}

/// The JSON demo with the server behind `[tls]`: the pages are served over https and
/// connect with wss:// (a self-signed certificate, which this Chromium is told to
/// accept).
#[test]
fn demo_json_works_behind_tls_over_wss() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser-tls");
    std::fs::create_dir_all(&dir).expect("create the certificate directory");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("a self-signed certificate");
    let der = certified.cert.der().to_vec();
    std::fs::write(&cert, pem::encode(&pem::Pem::new("CERTIFICATE", der))).expect("write cert");
    let key_der = certified.signing_key.serialize_der();
    std::fs::write(&key, pem::encode(&pem::Pem::new("PRIVATE KEY", key_der))).expect("write key");
    let env = [
        (
            "SWITCHYARD_TLS_CERT_FILE",
            cert.to_string_lossy().into_owned(),
        ),
        (
            "SWITCHYARD_TLS_KEY_FILE",
            key.to_string_lossy().into_owned(),
        ),
    ];
    run_scenario("json", &env, true, |base| {
        assert!(
            base.starts_with("https://"),
            "the banner names {base}, not https"
        );
    });
}

/// Starts a dev server, runs `browser.js <name>` against it, and stops the server.
fn scenario(name: &str) {
    run_scenario(name, &[], false, |_| {});
}

/// [`scenario`] with extra environment for the server, and Chromium accepting a
/// self-signed certificate when `tls`.
fn run_scenario(name: &str, env: &[(&str, String)], tls: bool, check_base: impl Fn(&str)) {
    let Some(chromium) = chromium() else {
        eprintln!(
            "SKIPPED browser test {name}: no Chromium (set CHROMIUM, or install Debian's chromium; scripts/test does)"
        );
        return;
    };
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    assert!(
        clients.join("node_modules/playwright-core").is_dir(),
        "tests/clients/node_modules/playwright-core is missing: run scripts/test (it runs npm ci)"
    );
    let shots = screenshot_dir();
    let _one = ONE_BROWSER
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let server = DevServer::start(env);
    check_base(&server.base);
    let mut node = Command::new("node");
    if tls {
        // Chromium and the script's own fetches of /metrics accept the test's
        // self-signed certificate (loopback only).
        node.env("IGNORE_CERT", "1")
            .env("NODE_TLS_REJECT_UNAUTHORIZED", "0");
    }
    let mut node = node
        .arg(clients.join("browser.js"))
        .args([name, &server.base, &server.api_key])
        .arg(&shots)
        .env("CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .spawn()
        .expect("run node (scripts/test installs it)");
    let status = wait_for(&mut node, SCENARIO)
        .unwrap_or_else(|| panic!("browser scenario {name} took longer than {SCENARIO:?}"));
    assert!(
        status.success(),
        "browser scenario {name} failed (its output above names the step)"
    );
    eprintln!(
        "browser scenario {name} passed in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        shots.display()
    );
}

/// `CHROMIUM`, else Debian's `/usr/bin/chromium`.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.is_file().then_some(path)
}

fn screenshot_dir() -> PathBuf {
    let dir = match std::env::var_os("BROWSER_SCREENSHOTS") {
        Some(dir) => Path::new(env!("CARGO_MANIFEST_DIR")).join(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR")).join("browser"),
    };
    std::fs::create_dir_all(&dir).expect("create the screenshot directory");
    dir
}

/// Waits up to `limit` for `child`, killing it after that.
fn wait_for(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// `switchyard` with no config (the dev server: demo, dashboard and a dev API key),
/// on a free loopback port, killed on drop.
struct DevServer {
    child: Child,
    base: String,
    api_key: String,
}

impl DevServer {
    fn start(env: &[(&str, String)]) -> Self {
        let child = Command::new(BIN)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("SWITCHYARD_LISTEN_WS", "127.0.0.1:0")
            .env("SWITCHYARD_LISTEN_TCP", "")
            .env("SWITCHYARD_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn switchyard");
        // Built first, so that a failed start below still kills the child on drop.
        let mut server = Self {
            child,
            base: String::new(),
            api_key: String::new(),
        };
        let stdout = server.child.stdout.take().expect("stdout");
        let (lines, banner) = mpsc::channel();
        std::thread::spawn(move || {
            // Drains stdout to the end, also after the banner is read: a closed pipe
            // would fail the server's next print.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (mut base, mut api_key) = (None, None);
        let deadline = Instant::now() + START;
        while base.is_none() || api_key.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = banner
                .recv_timeout(left)
                .expect("the dev server printed no demo and dashboard lines in its banner");
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["demo", url, ..] => base = url.strip_suffix("/demo").map(str::to_owned),
                ["dashboard", _, "(API", "key", key] => {
                    api_key = key.strip_suffix(')').map(str::to_owned);
                }
                _ => {}
            }
        }
        server.base = base.expect("a base URL");
        server.api_key = api_key.expect("an API key");
        server
    }
}

impl Drop for DevServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
