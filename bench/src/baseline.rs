//! The baseline: the least a WebSocket broadcast server can do on Switchyard's stack.
//! Whatever a client sends goes to every other client connected on the same path. No
//! auth, no routing, no parsing: the message is built once and its bytes shared by every
//! recipient. It uses the same tokio-tungstenite buffer sizes as Switchyard's listener
//! (2 KiB read, 4 KiB write), the same bounded per-connection queue (1,024 frames; a full
//! one drops the client, like Switchyard's slow-consumer close) and the same batched
//! writes with one flush, so the gap between the two is the cost of Switchyard's routing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The frame a connection gets once it is registered (the load tool's "ready").
pub const GREETING: &str = "ready";

/// Frames queued per connection before it is dropped as a slow consumer.
const QUEUE: usize = 1024;

type Group = Vec<(u64, mpsc::Sender<Message>)>;

#[derive(Default)]
struct Groups {
    by_path: Mutex<HashMap<String, Group>>,
    next_id: AtomicU64,
}

/// Serves `listener` forever.
pub async fn serve(listener: TcpListener) {
    let groups = Arc::new(Groups::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(connection(stream, Arc::clone(&groups)));
    }
}

async fn connection(stream: TcpStream, groups: Arc<Groups>) {
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
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    let id = groups.next_id.fetch_add(1, Ordering::Relaxed);
    let _ = tx.try_send(Message::text(GREETING));
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
        if !(message.is_text() || message.is_binary()) {
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
