//! WebSocket conformance: the Autobahn TestSuite cases, run by kosoku (the Autobahn
//! case files on a Rust runner, installed in `target/pyclients` by `scripts/test`),
//! against the echo route of the production WebSocket stack (`ws::echo`: the same
//! acceptor, upgrade, tungstenite config builder and reading half as the hub's routes).
//!
//! Cases 1–7 (framing, pings, reserved bits and opcodes, fragmentation, UTF-8, close)
//! and 10 (auto-fragmentation) run here; 9 (performance, up to 16 MiB messages) and
//! 12/13 (permessage-deflate, which Switchyard does not negotiate) do not:
//! `docs/conformance.md` says how to run them. Every case must be graded OK,
//! NON-STRICT or INFORMATIONAL, as Autobahn grades a passing implementation.
//!
//! `SWITCHYARD_AUTOBAHN_CASES` (comma-separated ids or globs) and
//! `SWITCHYARD_AUTOBAHN_REPORT` (a directory for the HTML report) change the run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use switchyard::transports::WsConfig;
use switchyard::transports::ws::echo::serve_echo;

const CASES: &str = "1.*,2.*,3.*,4.*,5.*,6.*,7.*,10.*";
/// The echo route's own message limit: enough for every case, 9.x included.
const ECHO_MAX: usize = 16 * 1024 * 1024;
/// A bound on the whole run (it takes seconds; a hang must not hold CI).
const HARD_TIMEOUT: Duration = Duration::from_secs(240);

const INSTALL_HINT: &str = "kosoku is not installed in target/pyclients: run `scripts/test` \
     (it installs tests/clients/requirements.txt), or run it once and use `cargo test` after";

fn kosoku_python() -> PathBuf {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyclients/bin/python");
    let probe = Command::new(&python).args(["-c", "import kosoku"]).output();
    assert!(
        probe.as_ref().is_ok_and(|o| o.status.success()),
        "{} cannot import kosoku ({probe:?}): {INSTALL_HINT}",
        python.display()
    );
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_websocket_stack_passes_the_autobahn_cases_1_to_7_and_10() {
    let python = kosoku_python();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(serve_echo(listener, WsConfig::default(), ECHO_MAX));

    let cases = std::env::var("SWITCHYARD_AUTOBAHN_CASES").unwrap_or_else(|_| CASES.into());
    let report = std::env::var("SWITCHYARD_AUTOBAHN_REPORT").unwrap_or_default();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/autobahn.py");
    // kosoku itself has been seen to die by SIGABRT, printing nothing, on a loaded
    // box (once in a CI run; the same build then passed three times). A runner that
    // crashes has graded nothing, so it is run again, at most three times in all;
    // a run that finishes is graded below whatever it says.
    let mut attempt = 0;
    let output = loop {
        attempt += 1;
        let mut command = tokio::process::Command::new(&python);
        command
            .arg(&script)
            .arg(format!("ws://{addr}/"))
            .arg(&cases)
            .arg("")
            .arg(&report)
            .kill_on_drop(true);
        let output = tokio::time::timeout(HARD_TIMEOUT, command.output())
            .await
            .expect("the Autobahn run did not finish in time")
            .expect("run kosoku");
        let crashed = std::os::unix::process::ExitStatusExt::signal(&output.status).is_some();
        if crashed && attempt < 3 {
            println!("kosoku crashed ({}), running it again", output.status);
            continue;
        }
        break output;
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "kosoku failed ({}, attempt {attempt}):\n{stderr}",
        output.status
    );

    let mut verdicts: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut run = 0;
    for line in stdout.lines() {
        let case: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("kosoku line ({e}): {line}"));
        run += 1;
        let behavior = case["behavior"].as_str().unwrap_or("?").to_owned();
        let close = case["behaviorClose"].as_str().unwrap_or("?").to_owned();
        *verdicts.entry(behavior.clone()).or_default() += 1;
        if behavior != "OK" || close != "OK" {
            println!(
                "case {} {behavior}/{close}: {} / {}",
                case["case"], case["result"], case["resultClose"]
            );
        }
        let passing = |v: &str| matches!(v, "OK" | "NON-STRICT" | "INFORMATIONAL");
        if !passing(&behavior) || !passing(&close) {
            failures.push(format!(
                "{} {behavior}/{close}: {} / {} (remote close code {})",
                case["case"], case["result"], case["resultClose"], case["remoteCloseCode"]
            ));
        }
    }
    println!("Autobahn cases run: {run}; verdicts: {verdicts:?}");
    assert!(run > 0, "kosoku ran no case:\n{stdout}\n{stderr}");
    assert!(
        failures.is_empty(),
        "{} of {run} Autobahn cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
