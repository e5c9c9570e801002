//! One client connection of any wire: connect (from a spread of loopback source
//! addresses), send frames in one flush, and read [`Event`]s.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchyard_core::token::{Algorithm, SigningKey, mint};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::payload::{self, Stamp};
use crate::proto::{Incoming, NatsEvent, NatsParser, Proto};

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    /// The server's address.
    pub addr: SocketAddr,
    /// The WebSocket path (`/v1`, `/`).
    pub path: String,
    /// The wire.
    pub proto: Proto,
    /// Mint a token per connection with this key (`?token=`); `None`: no credentials.
    pub key: Option<SigningKey>,
}

impl Target {
    /// Parses `ws://host:port/path`.
    pub fn parse(url: &str, proto: Proto, key: Option<SigningKey>) -> Result<Self, String> {
        let rest = url
            .strip_prefix("ws://")
            .ok_or_else(|| format!("{url}: only ws:// URLs"))?;
        let (host, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = host
            .parse()
            .map_err(|e| format!("{url}: {e} (use an IP:port)"))?;
        Ok(Self {
            addr,
            path: path.to_owned(),
            proto,
            key,
        })
    }

    /// The request URI for peer `id` with permissions `perms` (a token when keyed).
    fn uri(&self, id: &str, perms: &[&str]) -> io::Result<String> {
        let mut uri = format!("ws://{}{}", self.addr, self.path);
        if let Some(key) = &self.key {
            let token = token(key, id, perms)?;
            uri.push_str(if uri.contains('?') {
                "&token="
            } else {
                "?token="
            });
            uri.push_str(&token);
        }
        Ok(uri)
    }
}

/// Parses `kid:secret` into an HS256 key.
pub fn parse_key(s: &str) -> Result<SigningKey, String> {
    let (kid, secret) = s.split_once(':').ok_or("--key wants kid:secret")?;
    Ok(SigningKey {
        kid: kid.to_owned(),
        secret: secret.as_bytes().to_vec(),
        algorithm: Algorithm::HS256,
        public_key: None,
        audience: None,
        tenant: None,
    })
}

/// A one-hour token for `sub` on every channel with `perms`.
pub fn token(key: &SigningKey, sub: &str, perms: &[&str]) -> io::Result<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let claims = json!({
        "sub": sub, "channels": ["**"], "permissions": perms, "iat": now, "exp": now + 3600,
    });
    mint(key, &claims).map_err(io::Error::other)
}

/// Something a scenario cares about.
#[derive(Debug)]
pub enum Event {
    /// The join completed.
    Ready,
    /// One of our payloads.
    Data(Stamp),
    /// A peer left.
    Left(String),
    /// The server refused something.
    Error(String),
}

/// A connected client.
pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    proto: Proto,
    nats: NatsParser,
    events: VecDeque<Event>,
}

/// The loopback source address for the `i`-th connection: spreading connections over
/// 127.0.0.1–127.0.0.250 gives each its own ~28k ephemeral ports, enough for any run.
fn source(target: &Target, i: usize) -> Option<SocketAddr> {
    match target.addr.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            let last = u8::try_from(1 + i % 250).unwrap_or(1);
            Some(SocketAddr::new(Ipv4Addr::new(127, 0, 0, last).into(), 0))
        }
        _ => None,
    }
}

impl Conn {
    /// Connects as peer `id` (the `i`-th connection of the run) with `perms`.
    pub async fn connect(target: &Target, i: usize, id: &str, perms: &[&str]) -> io::Result<Self> {
        let uri = target.uri(id, perms)?;
        let socket = if target.addr.is_ipv4() {
            TcpSocket::new_v4()?
        } else {
            TcpSocket::new_v6()?
        };
        if let Some(src) = source(target, i) {
            socket.bind(src)?;
        }
        let stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default()
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024);
        let (ws, _) = tokio_tungstenite::client_async_with_config(uri, stream, Some(config))
            .await
            .map_err(io::Error::other)?;
        Ok(Self {
            ws,
            proto: target.proto,
            nats: NatsParser::default(),
            events: VecDeque::new(),
        })
    }

    /// Connects, joins `channel` and waits until the join is confirmed.
    pub async fn join(
        target: &Target,
        i: usize,
        id: &str,
        perms: &[&str],
        channel: &str,
        inbox: bool,
    ) -> io::Result<Self> {
        let mut conn = Self::connect(target, i, id, perms).await?;
        conn.send(target.proto.join(channel, id, inbox)).await?;
        loop {
            match conn.next().await {
                Some(Event::Ready) => return Ok(conn),
                Some(Event::Error(e)) => return Err(io::Error::other(e)),
                Some(_) => {}
                None => return Err(io::Error::other("closed before the join completed")),
            }
        }
    }

    /// Sends `messages` with one flush.
    pub async fn send(&mut self, messages: Vec<Message>) -> io::Result<()> {
        for m in messages {
            self.ws.feed(m).await.map_err(io::Error::other)?;
        }
        self.ws.flush().await.map_err(io::Error::other)
    }

    /// The next event; `None` once the connection is over.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Some(event);
            }
            let Ok(message) = self.ws.next().await? else {
                return None;
            };
            let bytes = match message {
                Message::Text(t) => bytes::Bytes::from(t),
                Message::Binary(b) => b,
                Message::Close(_) => return None,
                _ => continue,
            };
            self.absorb(&bytes).await;
        }
    }

    async fn absorb(&mut self, frame: &[u8]) {
        if self.proto == Proto::Nats {
            let mut ping = false;
            let events = &mut self.events;
            self.nats.feed(frame, |e| match e {
                NatsEvent::Msg(m) => {
                    if let Some(s) = payload::find(&m).and_then(|at| payload::decode(&m[at..])) {
                        events.push_back(Event::Data(s));
                    }
                }
                NatsEvent::Pong => events.push_back(Event::Ready),
                NatsEvent::Ping => ping = true,
                NatsEvent::Err(e) => events.push_back(Event::Error(e)),
            });
            if ping {
                let pong = Message::Binary(bytes::Bytes::from_static(b"PONG\r\n"));
                let _ = self.ws.send(pong).await;
            }
            return;
        }
        match crate::proto::classify(self.proto, frame) {
            Incoming::Ready => self.events.push_back(Event::Ready),
            Incoming::Data(p) => {
                if let Some(s) = payload::decode(p) {
                    self.events.push_back(Event::Data(s));
                }
            }
            Incoming::Left(id) => self.events.push_back(Event::Left(id.to_owned())),
            Incoming::Error(e) => self.events.push_back(Event::Error(e.to_owned())),
            Incoming::Other => {}
        }
    }

    /// Ends the connection like a crashed client: no close frame, no `/leave`, a TCP
    /// reset.
    pub fn hard_close(self) {
        let _ = self.ws.get_ref().set_zero_linger();
        drop(self);
    }
}
