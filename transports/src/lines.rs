//! Newline-delimited frames over any byte stream (TCP, stdio, Unix sockets).
//!
//! One frame per `\n`-terminated line; a trailing `\r` is dropped and empty lines are
//! skipped. A line longer than the hub's `max_frame_bytes` is reported as too large
//! as soon as the limit is passed, without buffering the rest: an endless line never
//! exhausts memory, and the hub closes the connection with 1009.
//!
//! Lines have no close frame, so a close is a last line: `/close|{"code":N,"reason":".."}`
//! for rtc-signaller, `{"type":"close","code":N,"reason":".."}` for JSON dialects.
//!
//! Implementation note: a frame from a peer on another wire (a WebSocket message) may
//! hold raw `\n` or `\r`. Written as is, it would split into several lines on this
//! wire, and a peer could forge whole frames for line clients
//! (`/chat|me|x\n/leave|you|..`). Every outgoing frame therefore has its raw line
//! breaks written as spaces ([`push_line`]): in JSON they can only be whitespace, so
//! JSON frames keep their meaning exactly.

use std::io;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use switchyard_core::{CloseCode, Dialect};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio_util::codec::{Decoder, FramedRead};

use crate::conn::{FrameRead, FrameWrite, ReadError};

/// Reads newline-delimited frames, at most `max_frame_bytes` each.
#[derive(Debug)]
pub struct LineReader<R> {
    lines: FramedRead<R, LineCodec>,
}

impl<R: AsyncRead + Unpin + Send> LineReader<R> {
    /// Frames `read` by lines; a longer line is a [`ReadError::TooLarge`].
    pub fn new(read: R, max_frame_bytes: usize) -> Self {
        let codec = LineCodec {
            max: max_frame_bytes,
            scanned: 0,
        };
        Self {
            lines: FramedRead::with_capacity(read, codec, 4096),
        }
    }
}

#[async_trait]
impl<R: AsyncRead + Unpin + Send> FrameRead for LineReader<R> {
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
        match self.lines.next().await? {
            Ok(line) => Some(Ok(line)),
            Err(LineError::TooLong { len, max }) => Some(Err(ReadError::TooLarge { len, max })),
            Err(LineError::Io(error)) => Some(Err(ReadError::Io(error))),
        }
    }
}

/// Writes frames as lines, one flush per batch, and closes with a last line.
#[derive(Debug)]
pub struct LineWriter<W: AsyncWrite> {
    out: BufWriter<W>,
    style: CloseStyle,
}

impl<W: AsyncWrite + Unpin + Send> LineWriter<W> {
    /// Writes lines to `write`; `dialect` picks the form of the close line.
    pub fn new(write: W, dialect: Dialect) -> Self {
        Self::with_style(write, CloseStyle::of(dialect))
    }

    pub(crate) fn with_style(write: W, style: CloseStyle) -> Self {
        Self {
            out: BufWriter::with_capacity(8 * 1024, write),
            style,
        }
    }

    /// The stream underneath, for wires that must watch it after the close line
    /// (QUIC waits for the peer's acknowledgement).
    pub(crate) fn get_ref(&self) -> &W {
        self.out.get_ref()
    }
}

#[async_trait]
impl<W: AsyncWrite + Unpin + Send> FrameWrite for LineWriter<W> {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        let mut flattened = Vec::new();
        for frame in frames {
            if frame.contains(&b'\n') || frame.contains(&b'\r') {
                flattened.clear();
                push_line(&mut flattened, frame);
                self.out.write_all(&flattened).await?;
            } else {
                self.out.write_all(frame).await?;
                self.out.write_all(b"\n").await?;
            }
        }
        self.out.flush().await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let mut line = self.style.line(code, reason);
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes()).await;
        let _ = self.out.flush().await;
        let _ = self.out.shutdown().await;
    }
}

/// The form of the last line a closed line connection gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CloseStyle {
    /// `/close|{"code":N,"reason":".."}`
    Signaller,
    /// `{"type":"close","code":N,"reason":".."}`
    Json,
}

impl CloseStyle {
    pub(crate) fn of(dialect: Dialect) -> Self {
        if dialect.name() == "rtc-signaller" {
            Self::Signaller
        } else {
            Self::Json
        }
    }

    /// For a client whose dialect is not known yet: answer in the style it wrote.
    pub(crate) fn guess(first: &[u8]) -> Self {
        if first.first() == Some(&b'/') {
            Self::Signaller
        } else {
            Self::Json
        }
    }

    pub(crate) fn line(self, code: CloseCode, reason: &str) -> String {
        let reason = serde_json::Value::from(reason);
        match self {
            Self::Signaller => format!(r#"/close|{{"code":{},"reason":{reason}}}"#, code.0),
            Self::Json => format!(r#"{{"type":"close","code":{},"reason":{reason}}}"#, code.0),
        }
    }
}

/// Appends `frame` to `buf` as one line: raw `\n` and `\r` become spaces (so one frame
/// stays one line whatever a peer on another wire sent), then a `\n`.
pub fn push_line(buf: &mut Vec<u8>, frame: &[u8]) {
    buf.extend(frame.iter().map(|&b| match b {
        b'\n' | b'\r' => b' ',
        b => b,
    }));
    buf.push(b'\n');
}

/// The last line a line connection in `dialect` gets when closed with `code`: for
/// custom line transports that write their own close.
pub fn close_line(dialect: Dialect, code: CloseCode, reason: &str) -> String {
    CloseStyle::of(dialect).line(code, reason)
}

/// Splits bytes into lines of at most `max` bytes, never buffering more than `max + 1`.
#[derive(Debug)]
struct LineCodec {
    max: usize,
    /// Bytes already searched for a newline, so each byte is scanned once.
    scanned: usize,
}

#[derive(Debug, thiserror::Error)]
enum LineError {
    #[error("line of at least {len} bytes exceeds the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Decoder for LineCodec {
    type Item = Bytes;
    type Error = LineError;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineError> {
        loop {
            // A newline at index `max` still ends a line of `max` bytes.
            let window = buf.len().min(self.max + 1);
            let found = buf[self.scanned.min(window)..window]
                .iter()
                .position(|&b| b == b'\n');
            let Some(at) = found else {
                if buf.len() > self.max {
                    return Err(LineError::TooLong {
                        len: buf.len(),
                        max: self.max,
                    });
                }
                self.scanned = buf.len();
                return Ok(None);
            };
            let end = self.scanned + at;
            self.scanned = 0;
            let mut line = buf.split_to(end + 1);
            line.truncate(end);
            if line.last() == Some(&b'\r') {
                line.truncate(end - 1);
            }
            if !line.is_empty() {
                return Ok(Some(line.freeze()));
            }
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, LineError> {
        if let Some(line) = self.decode(buf)? {
            return Ok(Some(line));
        }
        // A last line without its newline (`printf '..' | switchyard stdio`) still counts.
        self.scanned = 0;
        let mut rest = buf.split();
        if rest.last() == Some(&b'\r') {
            rest.truncate(rest.len() - 1);
        }
        Ok((!rest.is_empty()).then(|| rest.freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, input: &[u8]) -> Vec<Result<Bytes, String>> {
        let mut codec = LineCodec { max, scanned: 0 };
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        // Feed one byte at a time: the worst case for the incremental scan.
        for &b in input {
            buf.extend_from_slice(&[b]);
            match codec.decode(&mut buf) {
                Ok(Some(line)) => out.push(Ok(line)),
                Ok(None) => {}
                Err(e) => return [out, vec![Err(e.to_string())]].concat(),
            }
        }
        while let Some(line) = codec.decode_eof(&mut buf).expect("eof") {
            out.push(Ok(line));
        }
        out
    }

    #[test]
    fn lines_split_on_newline_drop_cr_and_skip_empty_ones() {
        assert_eq!(
            lines(10, b"ab\r\n\n\ncd\nlast"),
            vec![Ok("ab".into()), Ok("cd".into()), Ok("last".into())]
        );
    }

    #[test]
    fn a_line_of_exactly_max_bytes_passes_and_one_more_byte_is_too_long() {
        assert_eq!(lines(3, b"abc\n"), vec![Ok("abc".into())]);
        assert_eq!(
            lines(3, b"abcd"),
            vec![Err(
                "line of at least 4 bytes exceeds the 3-byte limit".into()
            )]
        );
    }

    #[test]
    fn a_frame_with_line_breaks_is_written_as_one_line() {
        let mut buf = Vec::new();
        push_line(&mut buf, b"/chat|a|x\r\n/leave|b|{}");
        push_line(&mut buf, b"{\"a\":\n1}");
        assert_eq!(buf, b"/chat|a|x  /leave|b|{}\n{\"a\": 1}\n");
    }

    #[test]
    fn close_lines_follow_the_dialect() {
        let signaller = close_line(Dialect::Signaller, CloseCode(1009), "frame \"too\" large");
        assert_eq!(
            signaller,
            r#"/close|{"code":1009,"reason":"frame \"too\" large"}"#
        );
        assert_eq!(
            CloseStyle::Json.line(CloseCode(1008), "expected hello"),
            r#"{"type":"close","code":1008,"reason":"expected hello"}"#
        );
    }
}
