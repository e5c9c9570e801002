//! What the run measures of the server and how it waits: the process's file
//! descriptors and memory, a REST GET, and waiting (bounded) for a check to hold.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{API_KEY, CONNECT_WAIT, common};

pub(super) fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// `VmRSS` and `VmHWM` from `/proc/self/status`, in KiB.
pub(super) fn rss() -> (u64, u64) {
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
pub(super) async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    common::http_within(CONNECT_WAIT, addr, "GET", path, Some(API_KEY), "").await
}

/// Waits until `check` passes, at most `within`; panics with its last complaint.
pub(super) async fn converge<F, Fut>(what: &str, seed: u64, within: Duration, mut check: F)
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
