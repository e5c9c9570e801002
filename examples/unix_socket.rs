//! A complete custom transport: the hub over a Unix socket, one frame per line.
//!
//! Everything a wire needs is here: accept, a [`FrameRead`] and a [`FrameWrite`] for
//! the socket's two halves, and [`DriverHandle::serve`]. Decoding, limits, the
//! slow-consumer close and the synthetic leave come with the driver.
//!
//! ```text
//! cargo run --example unix_socket -- /tmp/switchyard.sock
//! nc -U /tmp/switchyard.sock   # then type: /announce|alice|{"id":"alice","room":"lobby"}
//! ```

use std::io;
use std::path::Path;

use async_trait::async_trait;
use bytes::Bytes;
use switchyard::core::{CloseCode, Config, Dialect, Open};
use switchyard::transports::lines::{close_line, push_line};
use switchyard::transports::{
    DriverConfig, DriverHandle, FrameRead, FrameWrite, ReadError, driver,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// Reads one frame per line, refusing lines over `max` bytes without buffering them.
struct UnixLines {
    read: BufReader<OwnedReadHalf>,
    max: usize,
}

#[async_trait]
impl FrameRead for UnixLines {
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
        loop {
            let mut line = Vec::new();
            let limit = self.max as u64 + 1; // the line, or its newline
            match (&mut self.read)
                .take(limit)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) => return None, // EOF: the client hung up cleanly
                Err(error) => return Some(Err(error.into())),
                Ok(_) if line.last() != Some(&b'\n') && line.len() > self.max => {
                    let (len, max) = (line.len(), self.max);
                    return Some(Err(ReadError::TooLarge { len, max }));
                }
                Ok(_) => {}
            }
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            if !line.is_empty() {
                return Some(Ok(Bytes::from(line)));
            }
        }
    }
}

/// Writes each frame as a line, one flush per batch; a close is a last line.
struct UnixWriter {
    write: OwnedWriteHalf,
    dialect: Dialect,
}

#[async_trait]
impl FrameWrite for UnixWriter {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        let mut buf = Vec::with_capacity(frames.iter().map(|f| f.len() + 1).sum());
        for frame in frames {
            push_line(&mut buf, frame); // a peer's raw `\n` must not split (or forge) lines
        }
        self.write.write_all(&buf).await?;
        self.write.flush().await
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let last = close_line(self.dialect, code, reason) + "\n";
        let _ = self.write.write_all(last.as_bytes()).await;
        let _ = self.write.shutdown().await;
    }
}

/// Accepts on `listener` forever; each connection speaks rtc-signaller.
pub(crate) async fn serve(listener: UnixListener, driver: DriverHandle) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, most likely: do not spin.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let driver = driver.clone();
        tokio::spawn(async move {
            let (read, write) = stream.into_split();
            let dialect = Dialect::Signaller;
            let reader = UnixLines {
                read: BufReader::new(read),
                max: driver.max_frame_bytes(),
            };
            let writer = UnixWriter { write, dialect };
            driver.serve(reader, writer, Open::new(dialect)).await;
        });
    }
}

#[tokio::main]
async fn main() -> io::Result<()> {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/switchyard.sock".into());
    if Path::new(&path).exists() {
        std::fs::remove_file(&path)?; // a stale socket from an earlier run
    }
    let driver =
        driver::start(Config::default(), DriverConfig::default()).map_err(io::Error::other)?;
    let listener = UnixListener::bind(&path)?;
    eprintln!("unix_socket: rtc-signaller lines on {path}");
    serve(listener, driver).await;
    Ok(())
}
