//! An echo route on the production WebSocket stack, for conformance suites (the
//! Autobahn cases: `tests/autobahn.rs`, `docs/conformance.md`). Built only with the
//! `echo` feature (tests and examples); the server's routes never include it.
//!
//! Everything but the hub is the real thing: the acceptor, the upgrade with its origin
//! check, negotiation and deadline ([`super::upgrade`]), tungstenite sized by the same
//! builder ([`super::websocket_config`]), and the same reading half, so a close frame, a
//! protocol violation or an over-long message ends the connection exactly as it ends a
//! hub connection. Only the limit is its own (`max_message_bytes`: the Autobahn
//! cases send messages of up to 16 MiB), and messages go back with their kind (text or
//! binary) instead of to the hub.

use std::net::SocketAddr;

use futures_util::StreamExt;
use switchyard_core::CloseCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::io::{WsReader, WsWriter};
use super::rewind::Rewind;
use super::{WsConfig, upgrade};
use crate::accept::Acceptor;
use crate::conn::{FrameWrite, ReadError};

/// Accepts WebSocket connections on `listener` (any route `config.routes` serves) and
/// echoes every text and binary message back, forever. Plain `ws://` only:
/// `config.tls` and `config.http` are ignored.
pub async fn serve_echo(listener: TcpListener, config: WsConfig, max_message_bytes: usize) {
    let mut acceptor = Acceptor::new(listener);
    loop {
        let (stream, remote) = acceptor.accept().await;
        tokio::spawn(echo(stream, remote, config.clone(), max_message_bytes));
    }
}

async fn echo(stream: TcpStream, remote: SocketAddr, config: WsConfig, max: usize) {
    let _ = stream.set_nodelay(true);
    let deadline = Instant::now() + config.handshake_timeout;
    let stream = Rewind::new(Vec::new(), stream);
    let Some((ws, _)) = upgrade(stream, remote, &config, max, deadline).await else {
        return;
    };
    let (sink, stream) = ws.split();
    let mut writer = WsWriter {
        sink,
        ping_interval: config.ping_interval,
    };
    let mut reader = WsReader {
        stream,
        window: config.ping_interval + config.pong_timeout,
    };
    loop {
        match reader.read_message().await {
            Some(Ok(message)) => {
                if writer.write_message(message).await.is_err() {
                    return;
                }
            }
            // What the hub answers an over-long message with.
            Some(Err(ReadError::TooLarge { .. })) => {
                writer
                    .close(CloseCode::MESSAGE_TOO_BIG, "frame too large")
                    .await;
                return;
            }
            // What the hub orders for a protocol violation.
            Some(Err(ReadError::Violation { code, reason })) => {
                writer.close(code, reason).await;
                return;
            }
            // The peer closed (answered already), failed or went silent: as for a
            // hub connection, the socket is dropped.
            Some(Err(_)) | None => return,
        }
    }
}
