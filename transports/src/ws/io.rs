//! [`FrameRead`] and [`FrameWrite`] over a tokio-tungstenite WebSocket.

use std::io;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use switchyard_core::CloseCode;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};

use crate::conn::{FrameRead, FrameWrite, ReadError};

/// The reading half: text and binary messages are frames; anything at all arriving
/// (pongs included) proves the peer alive for another keepalive window.
pub(crate) struct WsReader<S> {
    pub(crate) stream: SplitStream<WebSocketStream<S>>,
    /// Ping interval plus pong timeout: silence this long means the peer is dead.
    pub(crate) window: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WsReader<S> {
    /// The next text or binary message, its kind kept; `None` once the peer closed
    /// (its close frame answered). Pings are answered by tungstenite on the next read.
    pub(crate) async fn read_message(&mut self) -> Option<Result<Message, ReadError>> {
        loop {
            let Ok(next) = tokio::time::timeout(self.window, self.stream.next()).await else {
                return Some(Err(ReadError::TimedOut));
            };
            let error = match next? {
                Ok(message @ (Message::Text(_) | Message::Binary(_))) => return Some(Ok(message)),
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                Ok(Message::Close(_)) => {
                    // One more read sends tungstenite's queued close reply.
                    let _ = tokio::time::timeout(Duration::from_secs(1), self.stream.next()).await;
                    return None;
                }
                Err(error) => error,
            };
            return match error {
                WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => {
                    Some(Err(ReadError::TooLarge {
                        len: size,
                        max: max_size,
                    }))
                }
                WsError::ConnectionClosed | WsError::AlreadyClosed => None,
                // The peer vanished: nobody is left to tell.
                WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                    Some(Err(ReadError::Io(io::ErrorKind::ConnectionReset.into())))
                }
                // Fail the connection with the code RFC 6455 asks for (section 7.4.1).
                WsError::Protocol(_) => Some(Err(ReadError::Violation {
                    code: CloseCode::PROTOCOL_ERROR,
                    reason: "protocol error",
                })),
                WsError::Utf8(_) => Some(Err(ReadError::Violation {
                    code: CloseCode::INVALID_PAYLOAD,
                    reason: "text message is not UTF-8",
                })),
                WsError::Io(error) => Some(Err(ReadError::Io(error))),
                other => Some(Err(ReadError::Io(io::Error::other(other)))),
            };
        }
    }
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameRead for WsReader<S> {
    async fn read_frame(&mut self) -> Option<Result<Bytes, ReadError>> {
        match self.read_message().await? {
            Ok(Message::Text(text)) => Some(Ok(Bytes::from(text))),
            // The dialect decides what bytes mean (the core answers non-UTF-8 with
            // `invalid_message`).
            Ok(message) => Some(Ok(message.into_data())),
            Err(error) => Some(Err(error)),
        }
    }
}

/// The writing half: frames go out as text messages (binary if not UTF-8), pings keep
/// the connection alive, and a close is a close frame.
pub(crate) struct WsWriter<S> {
    pub(crate) sink: SplitSink<WebSocketStream<S>, Message>,
    pub(crate) ping_interval: Duration,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> WsWriter<S> {
    /// Writes one message as it is (its kind kept) and flushes.
    #[cfg_attr(not(feature = "echo"), allow(dead_code))]
    pub(crate) async fn write_message(&mut self, message: Message) -> io::Result<()> {
        self.sink.send(message).await.map_err(io::Error::other)
    }
}

#[async_trait]
impl<S: AsyncRead + AsyncWrite + Unpin + Send> FrameWrite for WsWriter<S> {
    async fn write_frames(&mut self, frames: &[Bytes]) -> io::Result<()> {
        for frame in frames {
            let message = match Utf8Bytes::try_from(frame.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(frame.clone()),
            };
            self.sink.feed(message).await.map_err(io::Error::other)?;
        }
        self.sink.flush().await.map_err(io::Error::other)
    }

    async fn close(&mut self, code: CloseCode, reason: &str) {
        let frame = CloseFrame {
            code: code.0.into(),
            reason: reason.into(),
        };
        let _ = self.sink.send(Message::Close(Some(frame))).await;
        let _ = self.sink.close().await;
    }

    fn keepalive_interval(&self) -> Option<Duration> {
        Some(self.ping_interval)
    }

    async fn keepalive(&mut self) -> io::Result<()> {
        self.sink
            .send(Message::Ping(Bytes::new()))
            .await
            .map_err(io::Error::other)
    }
}
