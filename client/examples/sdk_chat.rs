//! A terminal chat client on the SDK: the root `examples/chat.rs` again, without any
//! wire handling, and with reconnects, re-subscribes and typed events for free.
//!
//! ```text
//! cargo run                                    # a dev server; prints a token for alice
//! cargo run -p switchyard-client --example sdk_chat -- <token or pk_ key> [room] [url]
//! ```
//! Type a line to say it; `/who` lists who is here; `/msg <peer> <text>` sends a
//! direct message; `/quit` leaves. Run two (tokens for different `sub`s:
//! `cargo run -- gentoken --sub bob …`) to talk. Kill and restart the server to watch
//! it reconnect and re-join the room.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use switchyard_client::{
    Connected, Direct, Disconnected, Message, Presence, SignallingClient, SignallingClientOptions,
    SubscribeOptions,
};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let credential = args
        .next()
        .ok_or("usage: sdk_chat <token or pk_ key> [room] [url]")?;
    let room = format!("chat/{}", args.next().unwrap_or_else(|| "lobby".into()));
    let url = args.next().unwrap_or_else(|| "ws://127.0.0.1:8080".into());

    let options = SignallingClientOptions::new().url(url);
    let options = if credential.starts_with("pk_") {
        options.api_key(credential)
    } else {
        // A real application would fetch a fresh token from its backend here: the
        // provider is called again on every reconnect.
        options.token_provider(move || {
            let token = credential.clone();
            async move { Ok::<_, std::io::Error>(token) }
        })
    };
    let client = SignallingClient::new(options)?;

    // Handlers: short, synchronous, on the client's task.
    let roster: Arc<Mutex<BTreeMap<String, Value>>> = Arc::default();
    client.on(|c: &Connected| {
        let again = if c.is_reconnect { " again" } else { "" };
        println!("* connected{again} as {}", c.peer_id);
    });
    client.on(|d: &Disconnected| {
        let next = if d.will_reconnect {
            "reconnecting…"
        } else {
            "closed"
        };
        println!("* disconnected ({} {}), {next}", d.code, d.reason);
    });
    let people = Arc::clone(&roster);
    client.on(move |p: &Presence| {
        let mut roster = people.lock().expect("roster lock");
        if p.snapshot {
            roster.clear();
        }
        for peer in &p.joined {
            if !p.snapshot {
                println!("* {} joined", peer.peer_id);
            }
            roster.insert(
                peer.peer_id.clone(),
                peer.metadata.clone().unwrap_or_default(),
            );
        }
        for peer in &p.left {
            println!("* {} left", peer.peer_id);
            roster.remove(&peer.peer_id);
        }
    });
    client.on(|m: &Message| println!("<{}> {}", m.sender_peer_id, show(&m.data)));
    client.on(|d: &Direct| println!("[{} to you] {}", d.sender_peer_id, show(&d.data)));

    client.connect().await?;
    client.subscribe(&room, SubscribeOptions::default()).await?;
    println!("* in {room}; /who, /msg <peer> <text>, /quit");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        let result = match line.split_once(' ') {
            _ if line == "/quit" => break,
            _ if line == "/who" => {
                let roster = roster.lock().expect("roster lock");
                println!("* here: {:?}", roster.keys().collect::<Vec<_>>());
                Ok(())
            }
            Some(("/msg", rest)) => match rest.split_once(' ') {
                Some((peer, text)) => client.send(peer, &json!({ "text": text })).await,
                None => {
                    println!("* /msg <peer> <text>");
                    Ok(())
                }
            },
            _ if line.is_empty() => Ok(()),
            _ => client.publish(&room, &json!({ "text": line })).await,
        };
        // Refusals (peer_not_found, over_message_rate…) and drops are reported, not fatal.
        if let Err(e) = result {
            println!("* {e}");
        }
    }
    client.close(1000, "bye").await;
    Ok(())
}

fn show(data: &Value) -> String {
    data.get("text")
        .and_then(Value::as_str)
        .map_or_else(|| data.to_string(), str::to_owned)
}
