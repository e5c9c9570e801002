//! One client's connection on each wire (WebSocket, TCP lines, QUIC, an in-process
//! pipe), and the task that reads its frames and carries out the orchestrator's
//! commands.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use switchyard::core::Open;
use switchyard::transports::lines::{LineReader, LineWriter};
use switchyard::transports::quic::{self, quinn};
use switchyard_core::testing::token_with;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::frames::on_frame;
use super::{CONNECT_WAIT, Cmd, Env, FLOOD, Incarnation, Lang, Shared, Wire, lock};

/// The writing half of a line wire, with its way of being reset.
trait LineWrite: AsyncWrite + Unpin + Send {
    fn reset(&mut self) {}
}

impl LineWrite for tokio::net::tcp::OwnedWriteHalf {
    fn reset(&mut self) {
        let _ = self.as_ref().set_zero_linger();
    }
}

impl LineWrite for quinn::SendStream {
    fn reset(&mut self) {
        // The inherent `SendStream::reset`, not this trait method.
        let _ = Self::reset(self, quinn::VarInt::from_u32(0));
    }
}

impl LineWrite for tokio::io::WriteHalf<tokio::io::DuplexStream> {}

type LineRead = tokio::io::Lines<BufReader<Box<dyn AsyncRead + Unpin + Send>>>;

enum Conn {
    Ws(Box<WebSocketStream<TcpStream>>),
    Lines {
        read: LineRead,
        write: Box<dyn LineWrite>,
        /// Keeps a QUIC connection open as long as its streams.
        _connection: Option<quinn::Connection>,
    },
}

impl Conn {
    async fn send(&mut self, text: &str) -> bool {
        match self {
            Self::Ws(ws) => ws.send(Message::text(text)).await.is_ok(),
            Self::Lines { write, .. } => {
                write
                    .write_all(format!("{text}\n").as_bytes())
                    .await
                    .is_ok()
                    && write.flush().await.is_ok()
            }
        }
    }

    /// The next text frame; `None` at the end of the connection. Cancel-safe.
    async fn next(&mut self, rec: &Shared) -> Option<String> {
        match self {
            Self::Ws(ws) => loop {
                match ws.next().await? {
                    Ok(Message::Text(text)) => return Some(text.to_string()),
                    Ok(Message::Close(frame)) => {
                        lock(rec).close = frame.map(|f| u16::from(f.code));
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            },
            Self::Lines { read, .. } => read.next_line().await.ok().flatten(),
        }
    }

    /// A clean close: the close frame or the end of our stream, then everything the
    /// server still sends, to the end (bounded).
    async fn close(mut self, rec: &Shared, lang: Lang) {
        match &mut self {
            Self::Ws(ws) => {
                let _ = ws.send(Message::Close(None)).await;
            }
            Self::Lines { write, .. } => {
                let _ = write.shutdown().await;
            }
        }
        let drain = async {
            while let Some(frame) = self.next(rec).await {
                on_frame(rec, lang, &frame);
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
    }

    fn reset(&mut self) {
        match self {
            Self::Ws(ws) => {
                let _ = ws.get_ref().set_zero_linger();
            }
            Self::Lines { write, .. } => write.reset(),
        }
    }
}

/// A token for a JSON WebSocket client (the others are anonymous, and learn their
/// peer id from the welcome).
fn token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    token_with(json!({
        "sub": sub,
        "channels": ["**"],
        "permissions": ["publish", "subscribe", "presence", "send"],
        "exp": now + 3600,
    }))
}

async fn connect(env: &Env, wire: Wire, lang: Lang, name: &str) -> Conn {
    match wire {
        Wire::Ws => {
            let addr = env.running.ws_addr.expect("ws");
            let url = match lang {
                Lang::Rtc => format!("ws://{addr}/"),
                Lang::Json => format!("ws://{addr}/v1?token={}", token(name)),
            };
            let stream = TcpStream::connect(addr).await.expect("ws connect");
            let (ws, _) = tokio_tungstenite::client_async(url, stream)
                .await
                .expect("websocket upgrade");
            Conn::Ws(Box::new(ws))
        }
        Wire::Tcp => {
            let stream = TcpStream::connect(env.running.tcp_addr.expect("tcp"))
                .await
                .expect("tcp connect");
            stream.set_nodelay(true).expect("nodelay");
            let (read, mut write) = stream.into_split();
            let hello = format!("hello {}\n", lang.dialect().name());
            write.write_all(hello.as_bytes()).await.expect("hello");
            lines(read, write, None)
        }
        Wire::Quic => {
            let roots = [env.certificate.clone()];
            let config = quic::client_config(&roots, lang.dialect()).expect("client config");
            let addr = env.running.quic_addr.expect("quic");
            let connection = env
                .quic_client
                .connect_with(config, addr, "localhost")
                .expect("quic connect")
                .await
                .expect("quic handshake");
            let (mut send, recv) = connection.open_bi().await.expect("quic stream");
            send.write_all(b"\n").await.expect("first line");
            lines(recv, send, Some(connection))
        }
        Wire::Pipe => {
            // `switchyard stdio` with a pipe instead of stdin/stdout: the public
            // custom-transport API, served on its own task.
            let (client, served) = tokio::io::duplex(64 * 1024);
            let (served_read, served_write) = tokio::io::split(served);
            let driver = env.driver().clone();
            let dialect = lang.dialect();
            tokio::spawn(async move {
                let reader = LineReader::new(served_read, driver.max_frame_bytes());
                let writer = LineWriter::new(served_write, dialect);
                let _counted = driver.metrics().track("pipe");
                driver.serve(reader, writer, Open::new(dialect)).await;
            });
            let (read, write) = tokio::io::split(client);
            lines(read, write, None)
        }
    }
}

fn lines(
    read: impl AsyncRead + Unpin + Send + 'static,
    write: impl LineWrite + 'static,
    connection: Option<quinn::Connection>,
) -> Conn {
    let read: Box<dyn AsyncRead + Unpin + Send> = Box::new(read);
    Conn::Lines {
        read: BufReader::new(read).lines(),
        write: Box::new(write),
        _connection: connection,
    }
}

/// Connects, waits for the welcome (JSON), starts the client's task and asks it to
/// join its room.
pub(super) async fn spawn_client(
    env: Arc<Env>,
    slot: usize,
    round: u32,
    (wire, lang, room, stable): (Wire, Lang, usize, bool),
) -> Incarnation {
    let name = format!("c{slot}-{round}");
    let rec: Shared = Arc::default();
    let mut conn = tokio::time::timeout(CONNECT_WAIT, async {
        let mut conn = connect(&env, wire, lang, &name).await;
        match lang {
            Lang::Rtc => lock(&rec).id = name.clone(),
            Lang::Json => {
                let welcome = conn.next(&rec).await.expect("the welcome");
                on_frame(&rec, lang, &welcome);
                assert!(!lock(&rec).id.is_empty(), "{name}: first frame {welcome}");
            }
        }
        conn
    })
    .await
    .unwrap_or_else(|_| panic!("{name} ({wire:?} {lang:?}) could not connect in time"));
    let (cmds, mut inbox) = mpsc::unbounded_channel();
    let task_rec = Arc::clone(&rec);
    let room_name = format!("room-{room}");
    let task = tokio::spawn(async move {
        let rec = task_rec;
        let mut reading = true;
        loop {
            tokio::select! {
                cmd = inbox.recv() => {
                    let Some(cmd) = cmd else { break };
                    if !act(&mut conn, &rec, lang, &room_name, cmd, &mut reading).await {
                        match cmd {
                            Cmd::Leave => conn.close(&rec, lang).await,
                            Cmd::Reset => conn.reset(),
                            _ => {}
                        }
                        break;
                    }
                }
                frame = conn.next(&rec), if reading => match frame {
                    Some(frame) => on_frame(&rec, lang, &frame),
                    None => break,
                },
            }
        }
        lock(&rec).ended = true;
    });
    let incarnation = Incarnation {
        slot,
        round,
        wire,
        lang,
        room,
        stable,
        rec,
        cmds,
        task,
        fate: None,
    };
    incarnation.tell(Cmd::Join);
    incarnation
}

/// Carries out one command; false when the connection is to end now.
async fn act(
    conn: &mut Conn,
    rec: &Shared,
    lang: Lang,
    room: &str,
    cmd: Cmd,
    reading: &mut bool,
) -> bool {
    let id = lock(rec).id.clone();
    let frame = match (cmd, lang) {
        (Cmd::Join, Lang::Rtc) => format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#),
        (Cmd::Join, Lang::Json) => {
            format!(r#"{{"type":"subscribe","channel":"{room}","requestId":"join"}}"#)
        }
        (Cmd::Publish, _) => {
            let mut r = lock(rec);
            if !r.joined || !*reading {
                return true;
            }
            let n = r.sent;
            r.sent += 1;
            match lang {
                Lang::Rtc => format!("/seq|{id}|{n}"),
                Lang::Json => format!(
                    r#"{{"type":"publish","channel":"{room}","data":{{"seq":{n}}},"requestId":"p{n}"}}"#
                ),
            }
        }
        (Cmd::Leave, Lang::Rtc) => format!(r#"/leave|{id}|{{"id":"{id}"}}"#),
        (Cmd::Leave, Lang::Json) => {
            format!(r#"{{"type":"unsubscribe","channel":"{room}","requestId":"leave"}}"#)
        }
        (Cmd::Drop | Cmd::Reset, _) => return false,
        (Cmd::HalfOpen, _) => {
            *reading = false;
            return true;
        }
        (Cmd::Flood, _) => {
            let frame = match lang {
                Lang::Rtc => format!("/to|nobody|/x|{id}|0"),
                Lang::Json => r#"{"type":"send","to":"nobody","data":0}"#.to_owned(),
            };
            for _ in 0..FLOOD {
                if !conn.send(&frame).await {
                    return false;
                }
            }
            return true;
        }
    };
    conn.send(&frame).await && cmd != Cmd::Leave
}
