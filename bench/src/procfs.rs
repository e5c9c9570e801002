//! What the kernel says about the server under test: CPU time, resident memory, listen
//! queue overflows and socket counts (Linux `/proc`).

use std::fs;

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// The process's user + system CPU time, in seconds (every thread), or `None` when it
/// cannot be read (no pid given, process gone).
pub fn cpu_seconds(pid: Option<u32>) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the command name, which may hold spaces: state is field 3, utime 14.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SEC)
}

/// The process's resident set, bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// `TcpExt: ListenOverflows` and `ListenDrops` from `/proc/net/netstat` (system-wide).
pub fn listen_overflows() -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let names: Vec<&str> = lines.next()?.split_whitespace().collect();
    let values: Vec<&str> = lines.next()?.split_whitespace().collect();
    let get = |name: &str| -> Option<u64> {
        let i = names.iter().position(|n| *n == name)?;
        values.get(i)?.parse().ok()
    };
    Some((get("ListenOverflows")?, get("ListenDrops")?))
}

/// The `TCP:` line of `/proc/net/sockstat` (`inuse`, `orphan`, `tw`, `alloc`, `mem`).
pub fn sockstat_tcp() -> String {
    fs::read_to_string("/proc/net/sockstat")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("TCP:")).map(str::to_owned))
        .unwrap_or_default()
}

/// The 1-, 5- and 15-minute load averages, as `/proc/loadavg` prints them.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_process_is_readable() {
        let me = Some(std::process::id());
        assert!(cpu_seconds(me).is_some());
        assert!(rss_bytes(me).unwrap_or(0) > 0);
    }
}
