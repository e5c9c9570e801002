//! A terminal chat client on the JSON wire, written from `docs/protocol.md` alone:
//! welcome, subscribe with presence, publish, and a roster kept from presence frames.
//!
//! ```text
//! cargo run                                              # a dev server, prints a token
//! cargo run --example chat -- 'ws://127.0.0.1:8080/v1?token=<token>' lobby
//! ```
//! Type a line to say it; `/who` lists who is here. Run two of them (tokens for
//! different `sub`s: `cargo run -- gentoken --sub bob …`, or none on an anonymous dev
//! server) to talk.

use std::collections::BTreeMap;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/v1".into());
    let channel = format!("chat/{}", args.next().unwrap_or_else(|| "lobby".into()));
    let request = url.as_str().into_client_request()?;
    let (host, port) = (
        request.uri().host().unwrap_or("127.0.0.1").to_owned(),
        request.uri().port_u16().unwrap_or(80),
    );
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (ws, _) = tokio_tungstenite::client_async(request, stream).await?;
    let (mut tx, mut rx) = ws.split();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut roster: BTreeMap<String, Value> = BTreeMap::new();
    let mut me = String::new();
    let mut sent = 0u64;
    loop {
        tokio::select! {
            frame = rx.next() => {
                let text = match frame {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Close(close))) => {
                        println!("* closed: {close:?}");
                        return Ok(());
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Ok(()),
                };
                let f: Value = serde_json::from_str(&text)?;
                match f["type"].as_str() {
                    Some("welcome") => {
                        me = f["peerId"].as_str().unwrap_or_default().to_owned();
                        println!("* you are {me}; joining {channel}");
                        let sub = json!({"type": "subscribe", "channel": channel, "requestId": "join"});
                        tx.send(Message::text(sub.to_string())).await?;
                    }
                    Some("message") => println!("<{}> {}", f["from"].as_str().unwrap_or("?"), show(&f["data"])),
                    Some("direct") => println!("[{} whispers] {}", f["from"].as_str().unwrap_or("?"), show(&f["data"])),
                    Some("presence") => {
                        if f["snapshot"] == true {
                            roster.clear();
                        }
                        for p in f["joined"].as_array().into_iter().flatten() {
                            let id = p["peerId"].as_str().unwrap_or_default().to_owned();
                            if roster.insert(id.clone(), p["metadata"].clone()).is_none() && f["snapshot"] != true {
                                println!("* {id} joined");
                            }
                        }
                        for p in f["left"].as_array().into_iter().flatten() {
                            let id = p["peerId"].as_str().unwrap_or_default();
                            if roster.remove(id).is_some() {
                                println!("* {id} left");
                            }
                        }
                        if f["snapshot"] == true {
                            println!("* here: {}", names(&roster, &me));
                        }
                    }
                    Some("error") => println!("! {}: {}", f["code"], f["message"]),
                    Some("going_away") => println!("* server restarting (retry in {} ms)", f["retryAfterMs"]),
                    _ => {}
                }
            }
            line = stdin.next_line() => {
                let Some(line) = line? else { return Ok(()) };
                if line.trim() == "/who" {
                    println!("* here: {}", names(&roster, &me));
                    continue;
                }
                sent += 1;
                let publish = json!({"type": "publish", "channel": channel, "data": {"text": line}, "requestId": sent.to_string()});
                tx.send(Message::text(publish.to_string())).await?;
            }
        }
    }
}

/// A message's text, or its JSON when it is not a chat line.
fn show(data: &Value) -> String {
    data["text"]
        .as_str()
        .map_or_else(|| data.to_string(), str::to_owned)
}

fn names(roster: &BTreeMap<String, Value>, me: &str) -> String {
    let mut all: Vec<&str> = roster.keys().map(String::as_str).collect();
    all.push(me);
    all.join(", ")
}
