//! Accepting TCP connections without spinning when the process runs out of sockets.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// How long to pause accepting after a resource error (EMFILE, ENFILE, ENOBUFS…).
const BACKOFF: Duration = Duration::from_millis(100);

/// A listener whose `accept` never fails and never busy-loops.
#[derive(Debug)]
pub(crate) struct Acceptor {
    listener: TcpListener,
    /// True while a streak of resource errors is on: it is logged once per streak.
    starved: bool,
}

impl Acceptor {
    pub(crate) fn new(listener: TcpListener) -> Self {
        Self {
            listener,
            starved: false,
        }
    }

    /// The next connection. Errors that concern one connection (reset before accept)
    /// are skipped; any other error (out of file descriptors, most likely) pauses
    /// accepting for a moment, so the loop does not spin while nothing can be accepted.
    pub(crate) async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(accepted) => {
                    if self.starved {
                        tracing::info!("accepting connections again");
                        self.starved = false;
                    }
                    return accepted;
                }
                Err(error) if per_connection(&error) => {}
                Err(error) => {
                    if !self.starved {
                        tracing::warn!(%error, "accept failed; pausing accepts");
                        self.starved = true;
                    }
                    tokio::time::sleep(BACKOFF).await;
                }
            }
        }
    }
}

fn per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
