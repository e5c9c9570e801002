//! TCP line listener: one frame per line (see [`crate::lines`]).
//!
//! The dialect is fixed by the listener ([`LineDialect::Fixed`]), or, with
//! [`LineDialect::Auto`], named by the client's first line: `hello <dialect-name>`
//! (`hello rtc-signaller`, `hello json`, `hello broadcaster`). Anything else, or silence for
//! [`TcpConfig::hello_timeout`], gets a close line with 1008.
//!
//! TCP carries no credentials at connect time: clients authenticate in band with the
//! dialect's own auth frame, which the hub decodes and checks like any other command.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::{CloseCode, Dialect, Open};
use tokio::net::{TcpListener, TcpStream};

use crate::accept::Acceptor;
use crate::conn::{FrameRead, FrameWrite, reject_over_capacity};
use crate::driver::DriverHandle;
use crate::lines::{CloseStyle, LineReader, LineWriter};

/// How a line listener picks the dialect of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LineDialect {
    /// Every connection speaks this dialect.
    Fixed(Dialect),
    /// Each client names its dialect in a first line, `hello <dialect-name>`.
    Auto,
}

impl LineDialect {
    /// Parses a config value: `auto` or a dialect name (`rtc-signaller`, `json`, …).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(Self::Auto),
            name => Dialect::from_name(name).map(Self::Fixed),
        }
    }
}

/// A TCP line listener's settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TcpConfig {
    /// The dialect of its connections.
    pub dialect: LineDialect,
    /// How long an [`LineDialect::Auto`] client has to send its `hello` line.
    pub hello_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            dialect: LineDialect::Fixed(Dialect::Signaller),
            hello_timeout: Duration::from_secs(10),
        }
    }
}

impl TcpConfig {
    /// A listener whose connections speak `dialect`.
    pub fn new(dialect: LineDialect) -> Self {
        Self {
            dialect,
            ..Self::default()
        }
    }
}

/// Accepts line connections on `listener` and serves each on its own task, forever.
pub async fn serve(listener: TcpListener, driver: DriverHandle, config: TcpConfig) {
    let mut acceptor = Acceptor::new(listener);
    loop {
        let (stream, remote) = acceptor.accept().await;
        tokio::spawn(connection(stream, remote, driver.clone(), config.clone()));
    }
}

async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    driver: DriverHandle,
    config: TcpConfig,
) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let Some(admission) = driver.admit() else {
        let style = match config.dialect {
            LineDialect::Fixed(dialect) => CloseStyle::of(dialect),
            LineDialect::Auto => CloseStyle::Json,
        };
        tracing::debug!(%remote, "tcp connection over the cap");
        return reject_over_capacity(LineWriter::with_style(write, style), driver.close_timeout())
            .await;
    };
    let mut reader = LineReader::new(read, driver.max_frame_bytes());
    let dialect = match config.dialect {
        LineDialect::Fixed(dialect) => dialect,
        LineDialect::Auto => {
            let first = tokio::time::timeout(config.hello_timeout, reader.read_frame()).await;
            let first = match first {
                Ok(Some(Ok(line))) => line,
                Ok(None | Some(Err(_))) => return,
                Err(_) => bytes::Bytes::new(),
            };
            match parse_hello(&first) {
                Some(dialect) => dialect,
                None => {
                    tracing::debug!(%remote, "tcp connection without a valid hello line");
                    let mut writer = LineWriter::with_style(write, CloseStyle::guess(&first));
                    let close = writer.close(CloseCode::POLICY, "expected: hello <dialect-name>");
                    let _ = tokio::time::timeout(driver.close_timeout(), close).await;
                    return;
                }
            }
        }
    };
    let writer = LineWriter::new(write, dialect);
    let mut open = Open::new(dialect);
    open.remote = Some(remote);
    let _counted = driver.metrics().track("tcp");
    admission.serve(reader, writer, open).await;
}

/// `hello <dialect-name>` → the dialect.
fn parse_hello(line: &[u8]) -> Option<Dialect> {
    let line = std::str::from_utf8(line).ok()?;
    let name = line.strip_prefix("hello ")?.trim();
    Dialect::from_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_names_a_known_dialect() {
        assert_eq!(
            parse_hello(b"hello rtc-signaller"),
            Some(Dialect::Signaller)
        );
        assert_eq!(
            parse_hello(b"hello  rtc-signaller "),
            Some(Dialect::Signaller)
        );
        assert_eq!(
            parse_hello(b"hello broadcaster"),
            Some(Dialect::Broadcaster)
        );
        assert_eq!(parse_hello(b"hello klingon"), None);
        assert_eq!(parse_hello(b"/announce|a|{}"), None);
        assert_eq!(LineDialect::from_name("auto"), Some(LineDialect::Auto));
        assert_eq!(
            LineDialect::from_name("rtc-signaller"),
            Some(LineDialect::Fixed(Dialect::Signaller))
        );
    }
}
