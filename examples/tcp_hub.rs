//! The hub over TCP lines with nothing but `std::net` and threads: no async runtime.
//!
//! It shows that the core needs no runtime and how to link it into a transport of your
//! own: accept, decode each line on the connection's thread, feed the hub from one
//! thread, write what it emits through bounded per-connection writers.
//!
//! ```text
//! cargo run --example tcp_hub -- 127.0.0.1:7000
//! nc 127.0.0.1 7000   # then type: /announce|alice|{"id":"alice","room":"lobby"}
//! ```
//! Every line is one rtc-signaller frame. Kill one `nc` and the others get `/leave`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use switchyard::core::{
    Config, ConnId, DecodeError, Dialect, Fault, Hangup, Hub, Input, Open, Output,
};

/// What connection threads tell the hub thread.
enum ToHub {
    Opened(TcpStream, mpsc::Sender<ConnId>),
    Line(ConnId, Result<Bytes, DecodeError>),
    Gone(ConnId),
}

/// Frames a slow reader may have queued before it is closed as a slow consumer.
const WRITE_QUEUE: usize = 256;

fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:7000".into());
    let listener = TcpListener::bind(&addr)?;
    eprintln!("tcp_hub: rtc-signaller lines on {}", listener.local_addr()?);
    serve(listener);
    Ok(())
}

/// Accepts on `listener` forever and runs the hub on the calling thread.
pub(crate) fn serve(listener: TcpListener) {
    let (tx, rx) = mpsc::channel();
    let max = Config::default().limits.max_frame_bytes;
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            thread::spawn(move || read_connection(stream, tx, max));
        }
    });
    run_hub(rx);
}

/// One thread owns the hub by value; everything else talks to it through `rx`.
fn run_hub(rx: Receiver<ToHub>) {
    let start = Instant::now();
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut hub = Hub::new(Config::default(), start, unix_ms).expect("default config is valid");
    let mut writers: BTreeMap<ConnId, (SyncSender<Bytes>, TcpStream)> = BTreeMap::new();
    for msg in rx {
        let now = Instant::now();
        match msg {
            ToHub::Opened(stream, reply) => {
                let conn = hub.open(now, Open::new(Dialect::Signaller));
                let (wtx, wrx) = mpsc::sync_channel(WRITE_QUEUE);
                let socket = stream.try_clone().expect("clone socket");
                thread::spawn(move || write_connection(socket, wrx));
                writers.insert(conn, (wtx, stream));
                let _ = reply.send(conn);
            }
            ToHub::Line(conn, Ok(frame)) => hub.handle_frame(now, conn, frame),
            ToHub::Line(conn, Err(error)) => hub.handle(now, Input::Malformed { conn, error }),
            ToHub::Gone(conn) => {
                writers.remove(&conn); // dropping the sender ends the writer thread
                hub.handle(
                    now,
                    Input::Closed {
                        conn,
                        how: Hangup::Hard,
                    },
                );
            }
        }
        // Drain everything before the next input; a full writer becomes an input too.
        while let Some(out) = hub.poll_output() {
            match out {
                Output::Send { conn, frame } => {
                    let full = writers.get(&conn).is_some_and(|(w, _)| {
                        matches!(w.try_send(frame), Err(TrySendError::Full(_)))
                    });
                    if full {
                        hub.handle(
                            now,
                            Input::Failed {
                                conn,
                                fault: Fault::SlowConsumer,
                            },
                        );
                    }
                }
                Output::Close { conn, code, reason } => {
                    if let Some((w, stream)) = writers.remove(&conn) {
                        let last = format!(r#"/close|{{"code":{},"reason":"{reason}"}}"#, code.0);
                        let _ = w.try_send(Bytes::from(last));
                        drop(w); // the writer flushes what it has, then exits
                        let _ = stream.shutdown(std::net::Shutdown::Read);
                    }
                }
                Output::Event(event) => eprintln!("tcp_hub: {event:?}"),
                // One node: the hub's `cluster` setting is off, so nothing comes here.
                Output::Cluster(_) => {}
            }
        }
    }
}

/// Reads lines, decoding nothing: the hub thread decodes with the connection's dialect.
/// A line over `max` bytes is reported as too large without being buffered further.
fn read_connection(stream: TcpStream, tx: mpsc::Sender<ToHub>, max: usize) {
    let (reply_tx, reply_rx) = mpsc::channel();
    let Ok(clone) = stream.try_clone() else {
        return;
    };
    if tx.send(ToHub::Opened(clone, reply_tx)).is_err() {
        return;
    }
    let Ok(conn) = reply_rx.recv() else { return };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = std::io::Read::take(&mut reader, max as u64 + 1).read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) if line.last() != Some(&b'\n') && line.len() > max => {
                let len = line.len();
                let _ = tx.send(ToHub::Line(conn, Err(DecodeError::TooLarge { len, max })));
                break;
            }
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                if !text.is_empty() {
                    let _ = tx.send(ToHub::Line(conn, Ok(Bytes::copy_from_slice(text))));
                }
            }
        }
    }
    let _ = tx.send(ToHub::Gone(conn));
}

/// Writes queued frames, one line each, flushing once per burst.
fn write_connection(mut socket: TcpStream, rx: Receiver<Bytes>) {
    while let Ok(frame) = rx.recv() {
        let mut batch = vec![frame];
        batch.extend(rx.try_iter());
        let mut buf = Vec::new();
        for f in batch {
            buf.extend_from_slice(&f);
            buf.push(b'\n');
        }
        if socket
            .write_all(&buf)
            .and_then(|()| socket.flush())
            .is_err()
        {
            break;
        }
    }
    let _ = socket.shutdown(std::net::Shutdown::Both);
}
