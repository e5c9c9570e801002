//! What a Redis server says about itself: how many `PUBLISH` commands it has run
//! (`INFO commandstats`), to check that a cluster publishes once per message and not
//! once per recipient.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// `cmdstat_publish`'s `calls` at `addr`: every `PUBLISH` since Redis started (or its
/// last `CONFIG RESETSTAT`). `None` when Redis cannot be asked.
pub fn publish_calls(addr: SocketAddr) -> Option<u64> {
    let info = info(addr, "commandstats").ok()?;
    // No line at all: Redis has not run a PUBLISH yet.
    Some(command_calls(&info, "publish").unwrap_or(0))
}

/// The `calls=` figure of `cmdstat_<command>` in an `INFO commandstats` reply.
fn command_calls(info: &str, command: &str) -> Option<u64> {
    let prefix = format!("cmdstat_{command}:");
    let line = info.lines().find_map(|l| l.strip_prefix(prefix.as_str()))?;
    let calls = line.split(',').find_map(|f| f.strip_prefix("calls="))?;
    calls.trim().parse().ok()
}

/// One `INFO <section>` over a fresh connection (RESP2 bulk string reply).
fn info(addr: SocketAddr, section: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    stream.write_all(format!("INFO {section}\r\n").as_bytes())?;
    let mut reader = BufReader::new(stream);
    let mut header = String::new();
    reader.read_line(&mut header)?;
    let len: usize = header
        .strip_prefix('$')
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected INFO reply {header:?}")))?;
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    String::from_utf8(body).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_calls_are_read_from_commandstats() {
        let info = "# Commandstats\r\n\
            cmdstat_set:calls=4,usec=20,usec_per_call=5.00\r\n\
            cmdstat_publish:calls=1234,usec=5000,usec_per_call=4.05,rejected_calls=0\r\n";
        assert_eq!(command_calls(info, "publish"), Some(1234));
        assert_eq!(command_calls(info, "set"), Some(4));
        assert_eq!(command_calls(info, "get"), None);
    }
}
