//! The smallest embedding: a hub behind WebSockets.
//!
//! ```text
//! cargo run --example ws_server -- 127.0.0.1:8080
//! ```
//! Paths pick the dialect: `ws://127.0.0.1:8080/` speaks rtc-signaller (point an
//! rtc.io client at it), `/v1` the JSON dialect. Anonymous peers are allowed (the
//! core's default policy), so no token is needed to try it.

use switchyard::core::Config;
use switchyard::transports::{DriverConfig, WsConfig, driver, ws};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8080".into());

    // Hub policy (limits, tenants) is the core's; sizing (queues, caps) the driver's.
    let mut hub = Config::default();
    hub.limits.max_frame_bytes = 64 * 1024;
    let driver = driver::start(hub, DriverConfig::default()).map_err(std::io::Error::other)?;

    let listener = TcpListener::bind(&addr).await?;
    eprintln!("ws_server: listening on ws://{}/", listener.local_addr()?);
    ws::serve(listener, driver, WsConfig::default()).await;
    Ok(())
}
