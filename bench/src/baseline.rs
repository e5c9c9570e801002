//! The baseline: the least a WebSocket broadcast server can do on Switchyard's stack.
//! Whatever a client sends goes to every other client connected on the same path. No
//! auth, no routing, no parsing: the message is built once and its bytes shared by every
//! recipient. It uses the same tokio-tungstenite buffer sizes as Switchyard's listener
//! (2 KiB read, 4 KiB write), the same bounded per-connection queue (1,024 frames; a full
//! one drops the client, like Switchyard's slow-consumer close) and the same batched
//! writes with one flush, so the gap between the two is the cost of Switchyard's routing.
//!
//! [`Stack::TokioWebsockets`] serves the same logic (greeting, path groups, queue, batched
//! writes) on tokio-websockets instead, to tell the cost of the WebSocket stack apart from
//! the cost of the task model (one reader and one writer task per connection, on both).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The frame a connection gets once it is registered (the load tool's "ready").
pub const GREETING: &str = "ready";

/// Frames queued per connection before it is dropped as a slow consumer.
const QUEUE: usize = 1024;

/// The WebSocket implementation the baseline serves with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stack {
    /// tokio-tungstenite, Switchyard's own stack.
    #[default]
    Tungstenite,
    /// tokio-websockets (server side, SHA-1 from sha1_smol).
    TokioWebsockets,
}

impl std::str::FromStr for Stack {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "tungstenite" => Ok(Self::Tungstenite),
            "tokio-websockets" => Ok(Self::TokioWebsockets),
            other => Err(format!(
                "unknown stack {other:?} (tungstenite or tokio-websockets)"
            )),
        }
    }
}

type Group<M> = Vec<(u64, mpsc::Sender<M>)>;

struct Groups<M> {
    by_path: Mutex<HashMap<String, Group<M>>>,
    next_id: AtomicU64,
}

impl<M> Default for Groups<M> {
    fn default() -> Self {
        Self {
            by_path: Mutex::default(),
            next_id: AtomicU64::default(),
        }
    }
}

/// Serves `listener` forever on tokio-tungstenite.
pub async fn serve(listener: TcpListener) {
    serve_on(listener, Stack::Tungstenite).await;
}

/// Serves `listener` forever on `stack`.
pub async fn serve_on(listener: TcpListener, stack: Stack) {
    match stack {
        Stack::Tungstenite => {
            let groups = Arc::new(Groups::default());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(tungstenite_connection(stream, Arc::clone(&groups)));
            }
        }
        Stack::TokioWebsockets => {
            let groups = Arc::new(Groups::default());
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(tokio_websockets_connection(stream, Arc::clone(&groups)));
            }
        }
    }
}

async fn tungstenite_connection(stream: TcpStream, groups: Arc<Groups<tungstenite::Message>>) {
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(2 * 1024)
        .write_buffer_size(4 * 1024);
    let mut path = String::new();
    #[allow(
        clippy::result_large_err,
        reason = "the upgrade callback's signature is tungstenite's"
    )]
    let callback = |request: &Request, response: Response| {
        path = request.uri().path().to_owned();
        Ok(response)
    };
    let Ok(ws) =
        tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await
    else {
        return;
    };
    let (sink, source) = ws.split();
    relay(
        sink,
        source,
        path,
        &groups,
        tungstenite::Message::text(GREETING),
        |m| m.is_text() || m.is_binary(),
    )
    .await;
}

async fn tokio_websockets_connection(
    stream: TcpStream,
    groups: Arc<Groups<tokio_websockets::Message>>,
) {
    let _ = stream.set_nodelay(true);
    // The write side flushes past 4 KiB like tungstenite's write buffer above; the read
    // buffer is tokio-util's (not configurable).
    let config = tokio_websockets::Config::default().flush_threshold(4 * 1024);
    let Ok((request, ws)) = tokio_websockets::ServerBuilder::new()
        .config(config)
        .accept(stream)
        .await
    else {
        return;
    };
    let path = request.uri().path().to_owned();
    let (sink, source) = ws.split();
    relay(
        sink,
        source,
        path,
        &groups,
        tokio_websockets::Message::text(GREETING),
        |m| m.is_text() || m.is_binary(),
    )
    .await;
}

/// The broadcast logic, the same on every stack: register on `path`, greet, then one
/// writer task drains the bounded queue in batches (feed each frame, flush once) while
/// this task hands every data message to the rest of the group. Messages are cheap
/// clones on both stacks: the payload bytes are shared until each writer encodes them.
async fn relay<M, Si, St, E>(
    mut sink: Si,
    mut source: St,
    path: String,
    groups: &Groups<M>,
    greeting: M,
    is_data: fn(&M) -> bool,
) where
    M: Clone + Send + 'static,
    Si: Sink<M> + Unpin + Send + 'static,
    St: Stream<Item = Result<M, E>> + Unpin,
{
    let (tx, mut rx) = mpsc::channel::<M>(QUEUE);
    let id = groups.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = tx.try_send(greeting);
    groups
        .by_path
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(path.clone())
        .or_default()
        .push((id, tx));
    let writer = tokio::spawn(async move {
        let mut batch = Vec::new();
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while let Ok(more) = rx.try_recv() {
                batch.push(more);
            }
            for m in batch.drain(..) {
                if sink.feed(m).await.is_err() {
                    return;
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    while let Some(Ok(message)) = source.next().await {
        if !is_data(&message) {
            continue;
        }
        let mut by_path = groups
            .by_path
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(group) = by_path.get_mut(&path) {
            // Full or gone: the member is dropped (its writer ends with its queue).
            group.retain(|(other, tx)| *other == id || tx.try_send(message.clone()).is_ok());
        }
    }
    if let Some(group) = groups
        .by_path
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&path)
    {
        group.retain(|(other, _)| *other != id);
    }
    writer.abort();
}
