//! A hub behind QUIC and WebSockets at once, with a self-signed dev certificate.
//!
//! ```text
//! cargo run --example quic_server                      # QUIC 127.0.0.1:4433, WS 127.0.0.1:8080
//! cargo run --example quic_client -- 127.0.0.1:4433 /tmp/switchyard-dev-cert.pem lobby
//! cargo run --example chat -- ws://127.0.0.1:8080/v1 lobby   # a WebSocket peer, same channel
//! ```
//! QUIC clients pick the dialect by ALPN (`switchyard-json`, `switchyard-rtc-signaller`)
//! and talk newline-delimited frames on one bidirectional stream. Anonymous peers are
//! allowed (the core's default policy), so no token is needed to try it.

use std::path::PathBuf;

use switchyard::core::Config;
use switchyard::transports::quic::{self, TlsIdentity};
use switchyard::transports::{DriverConfig, QuicConfig, WsConfig, driver, ws};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let quic_addr = args.next().unwrap_or_else(|| "127.0.0.1:4433".into());
    let ws_addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let driver = driver::start(Config::default(), DriverConfig::default())?;

    // A fresh certificate each run: write it where the client can read it.
    let identity = TlsIdentity::self_signed(&quic::DEV_NAMES)?;
    let pem_path: PathBuf = std::env::temp_dir().join("switchyard-dev-cert.pem");
    std::fs::write(&pem_path, identity.certificate_pem())?;
    std::fs::write(pem_path.with_extension("der"), identity.certificate())?;

    let endpoint = quic::bind(quic_addr.parse()?, &identity, &QuicConfig::default())?;
    let listener = TcpListener::bind(&ws_addr).await?;
    eprintln!("quic_server: QUIC on {}", endpoint.local_addr()?);
    eprintln!("  certificate {} (and .der)", pem_path.display());
    eprintln!("  SHA-256 {}", identity.fingerprint());
    eprintln!(
        "quic_server: WebSocket on ws://{}/v1",
        listener.local_addr()?
    );
    tokio::spawn(ws::serve(listener, driver.clone(), WsConfig::default()));
    quic::serve(endpoint, driver, QuicConfig::default()).await;
    Ok(())
}
