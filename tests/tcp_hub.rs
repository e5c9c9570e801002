//! The std-only `examples/tcp_hub.rs` over real loopback sockets: two line clients in
//! one room see each other, and killing one sends `/leave` to the other.

use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::time::Duration;

#[allow(dead_code)]
#[path = "../examples/tcp_hub.rs"]
mod tcp_hub;

struct Client {
    writer: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Client {
    fn connect(addr: std::net::SocketAddr) -> Self {
        let writer = TcpStream::connect(addr).expect("connect to tcp_hub");
        writer
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("read timeout");
        let reader = BufReader::new(writer.try_clone().expect("clone"));
        Self { writer, reader }
    }

    fn send(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\n").as_bytes())
            .expect("write line");
    }

    /// The `/roominfo` answering an announce, past the `/to|me|/announce|…`
    /// introductions of the members already there.
    fn expect_roominfo(&mut self, what: &str) -> String {
        loop {
            let line = self.expect_line(what);
            if !(line.starts_with("/to|") && line.contains("|/announce|")) {
                return line;
            }
        }
    }

    /// The next line, or a failure naming what we waited for (bounded by the timeout).
    fn expect_line(&mut self, what: &str) -> String {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 => line.trim_end().to_owned(),
            other => panic!("no line while waiting for {what}: {other:?}"),
        }
    }
}

fn start() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || tcp_hub::serve(listener));
    addr
}

#[test]
fn two_line_clients_see_each_other_and_a_kill_sends_leave() {
    let addr = start();
    let mut alice = Client::connect(addr);
    let mut bob = Client::connect(addr);
    alice.send(r#"/announce|alice|{"id":"alice","room":"lobby"}"#);
    assert_eq!(
        alice.expect_roominfo("alice's roominfo"),
        r#"/roominfo|{"memberCount":1}"#
    );
    bob.send(r#"/announce|bob|{"id":"bob","room":"lobby"}"#);
    assert_eq!(
        bob.expect_roominfo("bob's roominfo"),
        r#"/roominfo|{"memberCount":2}"#
    );
    assert_eq!(
        alice.expect_line("bob's announce"),
        r#"/announce|bob|{"id":"bob","room":"lobby"}"#
    );
    alice.send(r#"/to|bob|/hello|alice|{"n":1}"#);
    assert_eq!(
        bob.expect_line("alice's /to"),
        r#"/to|bob|/hello|alice|{"n":1}"#
    );

    // Kill bob's socket without a /leave.
    bob.writer.shutdown(Shutdown::Both).expect("shutdown");
    drop(bob);
    assert_eq!(
        alice.expect_line("the synthetic leave"),
        r#"/leave|bob|{"id":"bob"}"#
    );
}

#[test]
fn an_endless_line_is_closed_with_1009() {
    let addr = start();
    let mut peer = Client::connect(addr);
    let mut watcher = Client::connect(addr);
    watcher.send(r#"/announce|w|{"id":"w","room":"r"}"#);
    watcher.expect_roominfo("roominfo");
    peer.send(r#"/announce|p|{"id":"p","room":"r"}"#);
    peer.expect_roominfo("roominfo");
    watcher.expect_line("p's announce");
    let junk = vec![b'x'; 70 * 1024];
    // The hub closes while we are still writing: a write error is expected then.
    let _ = peer.writer.write_all(&junk);
    assert_eq!(
        peer.expect_line("the close line"),
        r#"/close|{"code":1009,"reason":"frame too large"}"#
    );
    assert_eq!(watcher.expect_line("p's leave"), r#"/leave|p|{"id":"p"}"#);
}
