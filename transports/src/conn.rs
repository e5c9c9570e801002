//! The per-connection pump every wire reuses.
//!
//! A wire implements two small traits, [`FrameRead`] and [`FrameWrite`], for the two
//! halves of its connection, then hands them to [`DriverHandle::serve`]. The pump reads
//! frames, decodes them in the connection's dialect on this task (never on the
//! driver), reports them, writes what the hub sends in batches with one flush each,
//! closes when the hub says so, and reports the end of the connection exactly once.
//!
//! Implementation notes:
//! - Reading and writing run concurrently, so a write stuck on a slow client never
//!   stops the pump from noticing that the client went away, and vice versa.
//! - [`FrameRead::read_frame`] is dropped mid-flight only when the connection is over
//!   (the hub closed it, or a write failed), so an implementation need not be
//!   cancel-safe.
//! - After the hub orders a close, the frames queued before it are written, then the
//!   close, both within [`DriverConfig::close_timeout`](crate::DriverConfig); a client
//!   that never reads is then aborted ([`FrameWrite::abort`]) and dropped.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use switchyard_core::{CloseCode, ConnId, DecodeError, Dialect, Fault, Hangup, Input, Open};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, timeout_at};

use crate::driver::{Admission, CloseOrder, DriverGone, DriverHandle, Link, ToDriver};

/// The reading half of a wire: yields one complete frame at a time.
#[async_trait]
pub trait FrameRead: Send {
    /// The next frame; `None` when the peer ended the connection cleanly (EOF, close
    /// frame). Keepalive and pings are the implementation's business.
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>>;
}

/// The writing half of a wire: writes what the hub sends and closes when told.
#[async_trait]
pub trait FrameWrite: Send {
    /// Writes every frame in order, then flushes once.
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()>;

    /// Tells the peer the connection is over (close frame, last line) and shuts the
    /// wire down. Errors are ignored: the connection is over either way.
    async fn close(&mut self, code: CloseCode, reason: &str);

    /// Ends the connection at once with `code` and `reason`, without writing anything:
    /// called when the hub's close could not be written within
    /// [`DriverConfig::close_timeout`](crate::DriverConfig) (a peer that stopped
    /// reading, say a slow consumer closed with 4013). Wires whose close carries its
    /// code out of band (QUIC's application error code) deliver it here; the default
    /// does nothing, and the wire is simply dropped.
    fn abort(&mut self, code: CloseCode, reason: &str) {
        let _ = (code, reason);
    }

    /// How often [`FrameWrite::keepalive`] must run while nothing else is written;
    /// `None` (the default) for wires without pings.
    fn keepalive_interval(&self) -> Option<Duration> {
        None
    }

    /// Sends a keepalive (a WebSocket ping). Called every
    /// [`FrameWrite::keepalive_interval`].
    async fn keepalive(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The frame is over the limit (the wire may have stopped reading it midway): the
    /// hub closes the connection with 1009.
    #[error("frame of at least {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Bytes seen so far (or the announced length).
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The peer broke the wire's own protocol (a WebSocket framing rule, invalid UTF-8
    /// in a text message): the connection is failed with `code` (1002, 1007), which
    /// the hub orders like any close, so the peer is told why where the wire can say it.
    #[error("protocol violation ({reason})")]
    Violation {
        /// The close code to fail the connection with.
        code: CloseCode,
        /// The close reason.
        reason: &'static str,
    },
    /// Nothing arrived within the keepalive window: the peer is dead.
    #[error("peer silent past the keepalive window")]
    TimedOut,
    /// The wire failed (reset, protocol error).
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// How the connection ended, for the one `Closed` report and the log line.
enum End {
    /// The reader saw the peer go.
    Peer(Hangup),
    /// The hub closed it (we wrote the close).
    Hub(CloseOrder),
    /// Writing failed: the peer is gone.
    WriteFailed,
    /// The driver dropped the link after the reader's report; the queue is written.
    Drained,
}

impl DriverHandle {
    /// Serves one connection until it ends, under [`DriverConfig::max_connections`]:
    /// over the cap it is closed with 4010 without reaching the hub. For transports
    /// that take the slot themselves at accept time, see [`Admission::serve`].
    ///
    /// [`DriverConfig::max_connections`]: crate::DriverConfig::max_connections
    pub async fn serve<R: FrameRead, W: FrameWrite>(&self, reader: R, writer: W, open: Open) {
        match self.admit() {
            Some(admission) => admission.serve(reader, writer, open).await,
            None => reject_over_capacity(writer, self.close_timeout()).await,
        }
    }
}

/// Closes a connection that found no slot under the connection cap.
pub(crate) async fn reject_over_capacity<W: FrameWrite>(mut writer: W, budget: Duration) {
    // Debug, not warn: under a connection flood this line would be the flood.
    tracing::debug!("connection refused: max_connections reached");
    let close = writer.close(CloseCode::OVER_CONCURRENT_LIMIT, "too many connections");
    let _ = tokio::time::timeout(budget, close).await;
}

impl Admission {
    /// Serves one connection until it ends: opens it in the hub, pumps frames both
    /// ways, writes the hub's close, and reports the end exactly once.
    pub async fn serve<R: FrameRead, W: FrameWrite>(self, reader: R, writer: W, open: Open) {
        let handle = self.handle.clone();
        let (dialect, remote) = (open.dialect, open.remote);
        let (frames_tx, frames) = mpsc::channel(handle.outbound_queue());
        let (close_tx, close) = oneshot::channel();
        let (reply, conn) = oneshot::channel();
        let link = Link {
            frames: frames_tx,
            close: close_tx,
        };
        if handle
            .send(ToDriver::Open { open, link, reply })
            .await
            .is_err()
        {
            return;
        }
        let Ok(conn) = conn.await else { return };
        tracing::info!(%conn, dialect = dialect.name(), remote = %Remote(remote), "connection opened");
        // From here on the hub hears of the end even if the wire's code panics or this
        // future is dropped: the guard reports it on drop unless `report` did.
        let mut guard = CloseGuard {
            handle: handle.clone(),
            conn,
            armed: true,
        };

        let reading = read_loop(&handle, conn, dialect, reader);
        let writing = write_loop(writer, frames, close, handle.close_timeout());
        tokio::pin!(reading, writing);
        let end = tokio::select! {
            how = &mut reading => {
                // Report first: the room's synthetic leave must not wait for our writes.
                guard.report(how).await;
                // Dropping the link ends the writer once it wrote what is queued.
                let deadline = Instant::now() + handle.close_timeout();
                if let Ok(End::Hub(order)) = timeout_at(deadline, writing).await {
                    log_closed(conn, dialect, remote, &End::Hub(order));
                    return;
                }
                End::Peer(how)
            }
            end = &mut writing => {
                let how = match end {
                    End::WriteFailed => Hangup::Hard,
                    _ => Hangup::Graceful,
                };
                // A no-op for the hub when it ordered the close; reported all the same.
                guard.report(how).await;
                end
            }
        };
        log_closed(conn, dialect, remote, &end);
        drop(self); // the connection slot is free from here
    }
}

/// Reads and decodes until the peer goes, and returns how it went. After an over-long
/// frame it stops reading and waits for the hub's close to end the connection.
async fn read_loop<R: FrameRead>(
    handle: &DriverHandle,
    conn: ConnId,
    dialect: Dialect,
    mut reader: R,
) -> Hangup {
    let max = handle.max_frame_bytes();
    loop {
        let mut fatal = false;
        let input = match reader.read_frame().await {
            None => return Hangup::Graceful,
            Some(Err(ReadError::TooLarge { len, max })) => Input::Malformed {
                conn,
                error: DecodeError::TooLarge { len, max },
            },
            Some(Err(ReadError::Violation { code, reason })) => {
                tracing::debug!(%conn, code = code.0, reason, "protocol violation");
                fatal = true;
                Input::Failed {
                    conn,
                    fault: Fault::Protocol { code, reason },
                }
            }
            Some(Err(error)) => {
                tracing::debug!(%conn, %error, "read failed");
                return Hangup::Hard;
            }
            Some(Ok(frame)) => match dialect.decode_limited(frame, max) {
                Ok(command) => Input::Command { conn, command },
                Err(error) => Input::Malformed { conn, error },
            },
        };
        let too_large = matches!(
            input,
            Input::Malformed {
                error: DecodeError::TooLarge { .. },
                ..
            }
        );
        if handle.send(ToDriver::Input(input)).await.is_err() {
            return Hangup::Hard;
        }
        if too_large || fatal {
            // The wire is mid-frame (or broken) and the hub is closing us: read no
            // further. The hub's close normally ends the connection long before this
            // sleep does.
            tokio::time::sleep(handle.close_timeout()).await;
            return Hangup::Hard;
        }
    }
}

/// Writes queued frames in batches until the hub closes the connection, the link is
/// dropped (then what was queued is written first), or a write fails.
async fn write_loop<W: FrameWrite>(
    mut writer: W,
    mut frames: mpsc::Receiver<Bytes>,
    mut close: oneshot::Receiver<CloseOrder>,
    close_timeout: Duration,
) -> End {
    let mut batch = Vec::new();
    // False once the link is dropped without an order: only the queue is left to write.
    let mut linked = true;
    let mut keepalive = writer.keepalive_interval().map(|every| {
        let mut tick = tokio::time::interval_at(Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick
    });
    loop {
        tokio::select! {
            biased;
            order = &mut close, if linked => match order {
                Ok(order) => return finish(writer, &mut frames, order, close_timeout).await,
                Err(_) => linked = false,
            },
            frame = frames.recv() => {
                let Some(frame) = frame else { return End::Drained };
                batch.push(frame);
                while let Ok(frame) = frames.try_recv() {
                    batch.push(frame);
                }
                let step = {
                    // async-trait futures are boxed, hence `Unpin`: no pinning needed.
                    let mut write = writer.write_frames(&batch);
                    tokio::select! {
                        written = &mut write => Step::Written(written.is_ok()),
                        order = &mut close, if linked => match order {
                            // Closing while a write is stuck: give it the close budget.
                            Ok(order) => {
                                let written = tokio::time::timeout(close_timeout, &mut write).await;
                                Step::Closing(order, matches!(written, Ok(Ok(()))))
                            }
                            Err(_) => {
                                linked = false;
                                Step::Written(write.await.is_ok())
                            }
                        },
                    }
                };
                match step {
                    Step::Written(true) => batch.clear(),
                    Step::Written(false) => return End::WriteFailed,
                    Step::Closing(order, true) => {
                        return finish(writer, &mut frames, order, close_timeout).await;
                    }
                    Step::Closing(order, false) => {
                        // The write is stuck: the close line can never follow it.
                        writer.abort(order.code, order.reason);
                        return End::Hub(order);
                    }
                }
            }
            _ = tick(keepalive.as_mut()) => {
                if writer.keepalive().await.is_err() {
                    return End::WriteFailed;
                }
            }
        }
    }
}

/// What became of one batch write.
enum Step {
    /// The write finished: true when it succeeded.
    Written(bool),
    /// The hub ordered a close meanwhile: true when the write still got through.
    Closing(CloseOrder, bool),
}

/// Writes what was queued before the close, then the close, within `close_timeout`.
async fn finish<W: FrameWrite>(
    mut writer: W,
    frames: &mut mpsc::Receiver<Bytes>,
    order: CloseOrder,
    close_timeout: Duration,
) -> End {
    let mut rest = Vec::new();
    while let Ok(frame) = frames.try_recv() {
        rest.push(frame);
    }
    let last_words = async {
        if rest.is_empty() || writer.write_frames(&rest).await.is_ok() {
            writer.close(order.code, order.reason).await;
        }
    };
    if tokio::time::timeout(close_timeout, last_words)
        .await
        .is_err()
    {
        writer.abort(order.code, order.reason);
    }
    End::Hub(order)
}

async fn tick(keepalive: Option<&mut tokio::time::Interval>) {
    match keepalive {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Makes sure the hub hears of a connection's end exactly once, however the pump
/// ends: normally through [`CloseGuard::report`], or on drop when the wire's code
/// panicked (counted in [`Metrics::connection_panics`](crate::metrics::Metrics)) or the
/// serving future was dropped. Without it a panicking reader would leave a ghost in
/// every room: present forever, never given its synthetic leave, and counted against
/// every connection cap.
struct CloseGuard {
    handle: DriverHandle,
    conn: ConnId,
    armed: bool,
}

impl CloseGuard {
    async fn report(&mut self, how: Hangup) {
        let input = Input::Closed {
            conn: self.conn,
            how,
        };
        let _: Result<(), DriverGone> = self.handle.send(ToDriver::Input(input)).await;
        // Disarmed only once sent: dropped mid-send, the guard still reports.
        self.armed = false;
    }
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let conn = self.conn;
        if std::thread::panicking() {
            self.handle
                .metrics()
                .connection_panics
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(%conn, "connection task panicked; closing it as a hard close");
        } else {
            tracing::debug!(%conn, "connection dropped mid-flight; closing it as a hard close");
        }
        self.handle.closed_without_waiting(conn);
    }
}

fn log_closed(conn: ConnId, dialect: Dialect, remote: Option<SocketAddr>, end: &End) {
    let remote = Remote(remote);
    let dialect = dialect.name();
    match end {
        End::Hub(order) => tracing::info!(
            %conn, dialect, %remote, code = order.code.0, reason = order.reason,
            "connection closed by the hub"
        ),
        End::Peer(how) => {
            tracing::info!(%conn, dialect, %remote, how = ?how, "connection closed by the peer")
        }
        End::WriteFailed => tracing::info!(%conn, dialect, %remote, "connection lost on write"),
        End::Drained => tracing::info!(%conn, dialect, %remote, "connection ended"),
    }
}

/// Formats an optional remote address for logs.
struct Remote(Option<SocketAddr>);

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("-"),
        }
    }
}
