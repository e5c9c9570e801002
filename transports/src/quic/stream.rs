//! The two halves of a QUIC connection's one bidirectional stream: lines both ways
//! ([`crate::lines`]), and a close that ends the whole connection with the hub's code.

use std::io;

use async_trait::async_trait;
use bytes::Bytes;
use quinn::{Connection, ConnectionError, RecvStream, SendStream, VarInt};
use switchyard_core::{CloseCode, Dialect};

use crate::conn::{FrameRead, FrameWrite, ReadError};
use crate::lines::{LineReader, LineWriter};

/// Reads lines from the client's stream.
///
/// The end of the stream (FIN) and a connection the client closed itself are
/// graceful ends; a reset stream, the idle timeout and every other loss are hard ones.
pub(super) struct QuicReader {
    pub(super) lines: LineReader<RecvStream>,
}

#[async_trait]
impl FrameRead for QuicReader {
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
        match self.lines.read_frame().await? {
            Err(ReadError::Io(error)) if closed_by_client(&error) => None,
            other => Some(other),
        }
    }
}

/// True when the read failed because the client closed the connection on purpose.
fn closed_by_client(error: &io::Error) -> bool {
    let cause = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<quinn::ReadError>());
    matches!(
        cause,
        Some(quinn::ReadError::ConnectionLost(
            ConnectionError::ApplicationClosed(_)
        ))
    )
}

/// Writes lines to the stream; closes with a last line, then a QUIC application close
/// carrying the same code and reason. When the stream is stuck (a peer that does not
/// read), [`FrameWrite::abort`] sends the application close alone, at once.
pub(super) struct QuicWriter {
    lines: LineWriter<SendStream>,
    connection: Connection,
    /// Set while a close is under way, so that [`Drop`] still closes the connection
    /// with the hub's code when the pump gives up waiting on a peer that does not read.
    closing: Option<(CloseCode, String)>,
}

impl QuicWriter {
    pub(super) fn new(send: SendStream, connection: Connection, dialect: Dialect) -> Self {
        Self {
            lines: LineWriter::new(send, dialect),
            connection,
            closing: None,
        }
    }
}

#[async_trait]
impl FrameWrite for QuicWriter {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        self.lines.write_frames(frames).await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        self.closing = Some((code, reason.to_owned()));
        // The last line, then FIN.
        self.lines.close(code, reason).await;
        // A connection close discards stream data the peer has not acknowledged: wait
        // for the acknowledgement (or the peer stopping the stream) first.
        let _ = self.lines.get_ref().stopped().await;
        close_connection(&self.connection, code, reason);
        self.closing = None;
    }

    /// The close line cannot get past a stuck stream, but the application error code
    /// can: close the connection with it now, discarding what the peer has not read.
    fn abort(&mut self, code: CloseCode, reason: &str) {
        self.closing = None;
        close_connection(&self.connection, code, reason);
    }
}

impl Drop for QuicWriter {
    fn drop(&mut self) {
        if let Some((code, reason)) = self.closing.take() {
            close_connection(&self.connection, code, &reason);
        }
    }
}

/// Closes the connection with the hub's close code as the QUIC application error code.
pub(super) fn close_connection(connection: &Connection, code: CloseCode, reason: &str) {
    connection.close(VarInt::from(code.0), reason.as_bytes());
}
