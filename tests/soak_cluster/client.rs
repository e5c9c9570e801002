//! One client's WebSocket connection to one node, in either dialect, and the task
//! that reads its frames (stamping each event with when it arrived) and carries out the
//! orchestrator's commands.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use super::frames::on_frame;
use super::{CONNECT_WAIT, Cmd, Incarnation, Lang, Profile, Shared, lock};

type Ws = WebSocketStream<TcpStream>;

/// Parses one frame into the record (through the single-node soak's parser), then
/// stamps the events it added and the moment the join was confirmed.
fn on_frame_at(rec: &Shared, lang: Lang, frame: &str) {
    on_frame(rec, lang, frame);
    let now = Instant::now();
    let mut r = lock(rec);
    let n = r.events.len();
    r.at.resize(n, now);
    if r.joined && r.joined_at.is_none() {
        r.joined_at = Some(now);
    }
}

/// The next text frame; `None` at the end of the connection. Cancel-safe.
async fn next(ws: &mut Ws, rec: &Shared) -> Option<String> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(text)) => return Some(text.to_string()),
            Ok(Message::Close(frame)) => lock(rec).close = frame.map(|f| u16::from(f.code)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// A clean close, then everything the node still sends, to the end (bounded).
async fn close(mut ws: Ws, rec: &Shared, lang: Lang) {
    let _ = ws.send(Message::Close(None)).await;
    let drain = async {
        while let Some(frame) = next(&mut ws, rec).await {
            on_frame_at(rec, lang, &frame);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

/// Connects to the node at `addr`, waits for the welcome (JSON), starts the client's
/// task and asks it to join its room.
pub(super) async fn spawn_client(
    addr: SocketAddr,
    node: usize,
    slot: usize,
    round: u32,
    profile: Profile,
) -> Incarnation {
    let Profile { lang, room, stable } = profile;
    let name = format!("c{slot}-{round}");
    let rec: Shared = Arc::default();
    let mut ws = tokio::time::timeout(CONNECT_WAIT, async {
        let url = match lang {
            Lang::Rtc => format!("ws://{addr}/"),
            Lang::Json => format!("ws://{addr}/v1"),
        };
        let stream = TcpStream::connect(addr).await.expect("ws connect");
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("websocket upgrade");
        match lang {
            Lang::Rtc => lock(&rec).id = name.clone(),
            Lang::Json => {
                let welcome = next(&mut ws, &rec).await.expect("the welcome");
                on_frame_at(&rec, lang, &welcome);
                assert!(!lock(&rec).id.is_empty(), "{name}: first frame {welcome}");
            }
        }
        ws
    })
    .await
    .unwrap_or_else(|_| panic!("{name} ({lang:?} on node {node}) could not connect in time"));
    let (cmds, mut inbox) = mpsc::unbounded_channel();
    let task_rec = Arc::clone(&rec);
    let room_name = format!("room-{room}");
    let task = tokio::spawn(async move {
        let rec = task_rec;
        loop {
            tokio::select! {
                cmd = inbox.recv() => {
                    let Some(cmd) = cmd else { break };
                    if !act(&mut ws, &rec, lang, &room_name, cmd).await {
                        match cmd {
                            Cmd::Leave => close(ws, &rec, lang).await,
                            Cmd::Reset => {
                                let _ = ws.get_ref().set_zero_linger();
                            }
                            _ => {}
                        }
                        break;
                    }
                }
                frame = next(&mut ws, &rec) => match frame {
                    Some(frame) => on_frame_at(&rec, lang, &frame),
                    None => break,
                },
            }
        }
        lock(&rec).ended = true;
    });
    let incarnation = Incarnation {
        round,
        node,
        lang,
        room,
        stable,
        rec,
        cmds,
        task,
        fate: None,
        fate_at: None,
    };
    incarnation.tell(Cmd::Join);
    incarnation
}

/// Carries out one command; false when the connection is to end now.
async fn act(ws: &mut Ws, rec: &Shared, lang: Lang, room: &str, cmd: Cmd) -> bool {
    let id = lock(rec).id.clone();
    let frame = match (cmd, lang) {
        (Cmd::Join, Lang::Rtc) => format!(r#"/announce|{id}|{{"id":"{id}","room":"{room}"}}"#),
        (Cmd::Join, Lang::Json) => {
            format!(r#"{{"type":"subscribe","channel":"{room}","requestId":"join"}}"#)
        }
        (Cmd::Publish, _) => {
            let mut r = lock(rec);
            if !r.joined {
                return true;
            }
            let n = r.sent;
            r.sent += 1;
            r.sent_at.push(Instant::now());
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
        (Cmd::Drop | Cmd::Reset | Cmd::Killed, _) => return false,
    };
    ws.send(Message::text(frame)).await.is_ok() && cmd != Cmd::Leave
}
