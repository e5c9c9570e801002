//! The real rtc.io client (`rtc-across-nodes.js`, run by `node`) with one peer on each
//! of two nodes, and one node killed with `kill -9` under it.
//!
//! Its npm packages are those of `tests/clients` (installed by `scripts/test`). Without
//! them the test says so and skips: the cluster binary runs where Node is not set up.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use crate::harness::{Node, Redis};
use crate::nodes;

/// Longest the script may run (it has its own 15 s limit).
const HARD_TIMEOUT: Duration = Duration::from_secs(25);

fn node_modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/node_modules")
}

#[tokio::test]
async fn rtc_io_clients_on_two_nodes_meet_exchange_to_messages_and_see_the_leave_of_a_killed_node()
{
    if !node_modules().join("rtc-signaller/package.json").is_file() {
        eprintln!(
            "SKIPPED: {} is absent: run `scripts/test` (it installs the Node test clients)",
            node_modules().display()
        );
        return;
    }
    let redis = Redis::start("rtc-io");
    let [mut a, b] = <[Node; 2]>::try_from(nodes(&redis, &["ia", "ib"]).await)
        .ok()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cluster/rtc-across-nodes.js");
    let mut child = Command::new("node")
        .arg(&script)
        .arg("--url-a")
        .arg(format!("ws://{}", a.ws))
        .arg("--url-b")
        .arg(format!("ws://{}", b.ws))
        .env("NODE_PATH", node_modules())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("`node` runs (scripts/test installs it)");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = tokio::spawn(async move {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text).await;
        text
    });
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut output = Vec::new();
    let run = async {
        while let Some(line) = lines.next_line().await.expect("read the script's output") {
            if line == "kill-node-a" {
                a.kill9().await;
            }
            output.push(line);
        }
        child.wait().await.expect("wait for node")
    };
    let status = tokio::time::timeout(HARD_TIMEOUT, run).await;
    let stderr = match &status {
        Ok(_) => errors.await.unwrap_or_default(),
        Err(_) => String::new(),
    };
    let shown = format!("--- stdout\n{}\n--- stderr\n{stderr}", output.join("\n"));
    match status {
        Ok(s) if s.success() => eprintln!("{shown}"),
        Ok(s) => panic!("rtc-across-nodes.js failed ({s}):\n{shown}"),
        Err(_) => panic!("rtc-across-nodes.js still running after {HARD_TIMEOUT:?}:\n{shown}"),
    }
    assert!(
        output.iter().any(|l| l == "kill-node-a"),
        "the script never asked for the kill:\n{shown}"
    );
}
