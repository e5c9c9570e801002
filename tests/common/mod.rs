//! Helpers for the transport tests: a server on loopback port 0 and real clients whose
//! every wait is bounded, failing with what was awaited.

#![allow(dead_code, unreachable_pub)] // each test binary uses a different subset

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use switchyard::core::Config;
use switchyard::transports::{DriverConfig, DriverHandle, TcpConfig, WsConfig, driver, tcp, ws};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Response;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// How long any single expectation may take.
pub const WAIT: Duration = Duration::from_secs(5);

/// One HTTP/1.1 request to the REST port (`Connection: close`), with `Authorization:
/// Bearer <auth>` when given and `body` as JSON: the status (0 when unreadable) and the
/// body text. Waits at most `wait` for the whole answer.
pub async fn http_within(
    wait: Duration,
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(addr)
        .await
        .expect("connect to the REST port");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = auth {
        request.push_str(&format!("Authorization: Bearer {auth}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(wait, stream.read_to_end(&mut response))
        .await
        .unwrap_or_else(|_| panic!("no response to {method} {path} within {wait:?}"))
        .expect("read response");
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// [`http_within`] the usual [`WAIT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &str,
) -> (u16, String) {
    http_within(WAIT, addr, method, path, auth, body).await
}

/// A driver with a WebSocket and a TCP-line listener on loopback.
pub struct Server {
    pub driver: DriverHandle,
    pub ws: SocketAddr,
    pub tcp: SocketAddr,
}

/// Everything a test may want to change.
#[derive(Default)]
pub struct Setup {
    pub hub: Config,
    pub driver: DriverConfig,
    pub ws: WsConfig,
    pub tcp: TcpConfig,
}

impl Setup {
    pub async fn start(self) -> Server {
        let driver = driver::start(self.hub, self.driver).expect("hub config");
        let ws_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind ws");
        let tcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind tcp");
        let server = Server {
            driver: driver.clone(),
            ws: ws_listener.local_addr().expect("ws addr"),
            tcp: tcp_listener.local_addr().expect("tcp addr"),
        };
        tokio::spawn(ws::serve(ws_listener, driver.clone(), self.ws));
        tokio::spawn(tcp::serve(tcp_listener, driver, self.tcp));
        server
    }
}

pub fn announce(id: &str, room: &str) -> String {
    format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#)
}

pub fn leave(id: &str) -> String {
    format!(r#"/leave|{id}|{{"id":"{id}"}}"#)
}

/// A WebSocket client.
pub struct Ws {
    pub inner: WebSocketStream<TcpStream>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::handshake(addr, path, None)
            .await
            .unwrap_or_else(|e| panic!("websocket connect to {path}: {e}"))
            .0
    }

    /// Connects, offering `protocols` in `Sec-WebSocket-Protocol`.
    pub async fn handshake(
        addr: SocketAddr,
        path: &str,
        protocols: Option<&str>,
    ) -> Result<(Self, Response), WsError> {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        Self::handshake_on(stream, addr, path, protocols).await
    }

    pub async fn handshake_on(
        stream: TcpStream,
        addr: SocketAddr,
        path: &str,
        protocols: Option<&str>,
    ) -> Result<(Self, Response), WsError> {
        let mut request = format!("ws://{addr}{path}").into_client_request()?;
        if let Some(p) = protocols {
            request.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_str(p).expect("header value"),
            );
        }
        let upgrade = tokio_tungstenite::client_async(request, stream);
        let (inner, response) = tokio::time::timeout(WAIT, upgrade)
            .await
            .expect("websocket handshake timed out")?;
        Ok((Self { inner }, response))
    }

    pub async fn send(&mut self, text: &str) {
        self.inner
            .send(Message::text(text))
            .await
            .expect("websocket send");
    }

    /// The next message that is not a ping or pong.
    pub async fn next(&mut self, what: &str) -> Message {
        loop {
            let next = tokio::time::timeout(WAIT, self.inner.next())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
            match next {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(message)) => return message,
                other => panic!("connection ended while waiting for {what}: {other:?}"),
            }
        }
    }

    pub async fn expect_text(&mut self, what: &str) -> String {
        match self.next(what).await {
            Message::Text(text) => text.to_string(),
            other => panic!("expected text for {what}, got {other:?}"),
        }
    }

    /// Reads until the close frame (skipping text), returning its code and reason.
    pub async fn expect_close(&mut self, what: &str) -> (u16, String) {
        loop {
            match self.next(what).await {
                Message::Close(Some(frame)) => {
                    return (frame.code.into(), frame.reason.to_string());
                }
                Message::Text(_) => continue,
                other => panic!("expected a close for {what}, got {other:?}"),
            }
        }
    }
}

/// True for the `/to|<me>|/announce|…` frames that introduce a room's members to a
/// newcomer (they come before its `/roominfo`).
pub fn is_introduction(frame: &str) -> bool {
    frame.starts_with("/to|") && frame.contains("|/announce|")
}

impl Ws {
    /// The `/roominfo` answering an announce, past the introductions before it.
    pub async fn expect_roominfo(&mut self, what: &str) -> String {
        loop {
            let text = self.expect_text(what).await;
            if !is_introduction(&text) {
                return text;
            }
        }
    }
}

/// A TCP line client.
pub struct Line {
    pub read: BufReader<OwnedReadHalf>,
    pub write: OwnedWriteHalf,
}

impl Line {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("tcp connect");
        let (read, write) = stream.into_split();
        Self {
            read: BufReader::new(read),
            write,
        }
    }

    pub async fn send(&mut self, line: &str) {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write line");
    }

    /// The next line, without its newline. Panics on EOF or after [`WAIT`].
    pub async fn expect_line(&mut self, what: &str) -> String {
        self.try_line(what)
            .await
            .unwrap_or_else(|| panic!("connection ended while waiting for {what}"))
    }

    /// The `/roominfo` answering an announce, past the introductions before it.
    pub async fn expect_roominfo(&mut self, what: &str) -> String {
        loop {
            let line = self.expect_line(what).await;
            if !is_introduction(&line) {
                return line;
            }
        }
    }

    /// The next line, or `None` at EOF.
    pub async fn try_line(&mut self, what: &str) -> Option<String> {
        let mut line = String::new();
        let read = tokio::time::timeout(WAIT, self.read.read_line(&mut line))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
        match read {
            Ok(0) | Err(_) => None,
            Ok(_) => Some(line.trim_end().to_owned()),
        }
    }
}
