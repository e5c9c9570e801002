//! Stdio: one line connection on the process's stdin and stdout, and a client-side
//! bridge from stdin/stdout to a running server's WebSocket.
//!
//! [`serve_stdio`] is the whole of a transport in a few lines; copy it to write your
//! own: a [`FrameRead`], a [`FrameWrite`](crate::FrameWrite), an
//! [`Open`], and [`DriverHandle::serve`].

use std::io;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchyard_core::{Dialect, Open};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{Bytes, Message, Utf8Bytes};

use crate::conn::FrameRead;
use crate::driver::DriverHandle;
use crate::lines::{LineReader, LineWriter, push_line};

/// Serves stdin/stdout as one connection in `dialect` until stdin ends, so a whole
/// hub runs in a pipeline: `printf '/announce|a|{..}\n' | switchyard stdio`.
pub async fn serve_stdio(driver: &DriverHandle, dialect: Dialect) {
    let reader = LineReader::new(tokio::io::stdin(), driver.max_frame_bytes());
    let writer = LineWriter::new(tokio::io::stdout(), dialect);
    let _counted = driver.metrics().track("stdio");
    driver.serve(reader, writer, Open::new(dialect)).await;
}

/// Bridges stdin/stdout to the WebSocket server at `url` (`ws://` only): each stdin
/// line becomes a text message, each message a stdout line. For
/// `switchyard stdio --connect ws://host:port/`.
pub async fn bridge_stdio_to_ws(url: &str) -> io::Result<()> {
    bridge_to_ws(url, tokio::io::stdin(), tokio::io::stdout()).await
}

/// Largest line the bridge forwards; the server applies its own limit.
const BRIDGE_MAX_LINE: usize = 16 * 1024 * 1024;

/// [`bridge_stdio_to_ws`] over any pair of byte streams. Ends when `input` ends (after
/// a normal close) or when the server closes.
pub async fn bridge_to_ws<R, W>(url: &str, input: R, mut output: W) -> io::Result<()>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send,
{
    let request = url.into_client_request().map_err(io::Error::other)?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "only ws:// URLs",
        ));
    }
    let host = uri
        .host()
        .unwrap_or("127.0.0.1")
        .trim_matches(['[', ']'])
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let (ws, _) = tokio_tungstenite::client_async(request, tcp)
        .await
        .map_err(io::Error::other)?;
    let (mut sink, mut stream) = ws.split();

    let mut lines = LineReader::new(input, BRIDGE_MAX_LINE);
    let up = async {
        while let Some(line) = lines.read_frame().await {
            let line = line.map_err(io::Error::other)?;
            let message = match Utf8Bytes::try_from(line.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(line),
            };
            sink.send(message).await.map_err(io::Error::other)?;
        }
        sink.send(Message::Close(None))
            .await
            .map_err(io::Error::other)
    };
    let down = async {
        let mut line = Vec::new();
        while let Some(message) = stream.next().await {
            let frame: Bytes = match message.map_err(io::Error::other)? {
                Message::Text(text) => text.into(),
                Message::Binary(bytes) => bytes,
                Message::Close(frame) => {
                    tracing::info!(?frame, "server closed the connection");
                    break;
                }
                _ => continue,
            };
            line.clear();
            push_line(&mut line, &frame);
            output.write_all(&line).await?;
            output.flush().await?;
        }
        Ok::<(), io::Error>(())
    };
    tokio::pin!(down);
    tokio::select! {
        sent = up => {
            sent?;
            // Input is over: let the server's answers and its close arrive.
            let _ = tokio::time::timeout(Duration::from_secs(2), &mut down).await;
            Ok(())
        }
        received = &mut down => received,
    }
}
