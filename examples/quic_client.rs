//! A QUIC client on the JSON dialect: joins a channel, prints what arrives, publishes
//! what you type.
//!
//! ```text
//! cargo run --example quic_server
//! cargo run --example quic_client -- 127.0.0.1:4433 /tmp/switchyard-dev-cert.pem lobby [token]
//! ```
//! Type a line to publish it to the channel; `/to <peerId> <text>` sends a direct.
//! Peers on any other wire (a WebSocket `chat` example on `/v1`) see the same channel.
//!
//! The wire, from `docs/protocol.md`: ALPN `switchyard-json`, one bidirectional stream
//! opened by the client, one JSON frame per line. The client writes first: its `auth`
//! frame, or an empty line when it has no token. When the server closes, a last line
//! `{"type":"close",..}` arrives, then the QUIC close with the same code.

use std::net::SocketAddr;

use serde_json::{Value, json};
use switchyard::core::Dialect;
use switchyard::transports::quic;
use switchyard::transports::quic::quinn::rustls::pki_types::CertificateDer;
use switchyard::transports::quic::quinn::rustls::pki_types::pem::PemObject;
use switchyard::transports::quic::quinn::{ConnectionError, Endpoint};
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let server: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:4433").parse()?;
    let cert = args.next().unwrap_or_else(|| {
        let path = std::env::temp_dir().join("switchyard-dev-cert.pem");
        path.display().to_string()
    });
    let channel = args.next().unwrap_or_else(|| "lobby".into());
    let token = args.next();

    // Trust exactly the server's (dev) certificate; offer the JSON dialect.
    let roots = [CertificateDer::from_pem_file(&cert)?];
    let mut endpoint = Endpoint::client("0.0.0.0:0".parse()?)?;
    endpoint.set_default_client_config(quic::client_config(&roots, Dialect::Json)?);
    let connection = endpoint.connect(server, "localhost")?.await?;
    let (mut send, recv) = connection.open_bi().await?;

    let mut out = Vec::new();
    match &token {
        Some(token) => push(&mut out, &json!({"type": "auth", "token": token})),
        None => out.push(b'\n'), // opens the stream; empty lines are ignored
    }
    push(
        &mut out,
        &json!({"type": "subscribe", "channel": channel, "requestId": "join"}),
    );
    send.write_all(&out).await?;

    let mut lines = BufReader::new(recv).lines();
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => show(&line),
                Ok(None) | Err(_) => break,
            },
            typed = stdin.next_line() => {
                let Ok(Some(typed)) = typed else { break };
                let frame = match typed.strip_prefix("/to ").and_then(|r| r.split_once(' ')) {
                    Some((to, text)) => json!({"type": "send", "to": to, "data": text}),
                    None => json!({"type": "publish", "channel": channel, "data": typed}),
                };
                let mut out = Vec::new();
                push(&mut out, &frame);
                send.write_all(&out).await?;
            }
        }
    }
    connection.close(0u32.into(), b"bye");
    if let Some(ConnectionError::ApplicationClosed(close)) = connection.close_reason() {
        eprintln!(
            "closed by the server: QUIC application code {}",
            close.error_code
        );
    }
    endpoint.wait_idle().await;
    Ok(())
}

/// Appends `frame` as one line.
fn push(out: &mut Vec<u8>, frame: &Value) {
    out.extend_from_slice(frame.to_string().as_bytes());
    out.push(b'\n');
}

/// Prints one frame from the server for a person.
fn show(line: &str) {
    let Ok(frame) = serde_json::from_str::<Value>(line) else {
        return println!("? {line}");
    };
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    match frame["type"].as_str() {
        Some("welcome") => println!("* you are {}", text(&frame["peerId"])),
        Some("message") => println!("{}: {}", text(&frame["from"]), text(&frame["data"])),
        Some("direct") => println!(
            "(direct) {}: {}",
            text(&frame["from"]),
            text(&frame["data"])
        ),
        Some("presence") => {
            let ids = |key: &str| -> Vec<String> {
                let list = frame[key].as_array().cloned().unwrap_or_default();
                list.iter().map(|p| text(&p["peerId"])).collect()
            };
            let (joined, left) = (ids("joined"), ids("left"));
            if !joined.is_empty() {
                println!("* here: {}", joined.join(", "));
            }
            if !left.is_empty() {
                println!("* left: {}", left.join(", "));
            }
        }
        Some("close") => println!("* closed {} {}", frame["code"], text(&frame["reason"])),
        Some("ack") => {}
        _ => println!("{line}"),
    }
}
