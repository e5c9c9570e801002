//! Starting a server from [`Settings`]: one driver, the listeners it asks for.
//! Used by the `switchyard` binary and by the integration tests (which bind port 0).

use std::net::SocketAddr;

use switchyard_transports::{DriverHandle, driver, tcp, ws};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// Listen backlog: the box's `somaxconn`, so a connect storm is not dropped at SYN.
const BACKLOG: u32 = 4096;

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The WebSocket listener's bound address, if any.
    pub ws_addr: Option<SocketAddr>,
    /// The TCP line listener's bound address, if any.
    pub tcp_addr: Option<SocketAddr>,
    /// The driver, for control-plane calls and custom transports.
    pub driver: DriverHandle,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Running {
    /// Stops accepting when the server handle goes away (tests start many).
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Starts the driver and every configured listener. Must run inside a tokio runtime.
pub async fn start(settings: &Settings) -> Result<Running, Box<dyn std::error::Error>> {
    let driver = driver::start(settings.core_config()?, settings.driver_config())?;
    let mut tasks = Vec::new();
    let ws_addr = match bind(&settings.listen.ws)? {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "WebSocket listening");
            tasks.push(tokio::spawn(ws::serve(
                listener,
                driver.clone(),
                settings.ws_config()?,
            )));
            Some(addr)
        }
        None => None,
    };
    let tcp_addr = match bind(&settings.listen.tcp)? {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, dialect = %settings.listen.tcp_dialect, "TCP lines listening");
            tasks.push(tokio::spawn(tcp::serve(
                listener,
                driver.clone(),
                settings.tcp_config()?,
            )));
            Some(addr)
        }
        None => None,
    };
    Ok(Running {
        ws_addr,
        tcp_addr,
        driver,
        tasks,
    })
}

/// Binds `addr` with a deep backlog; `""` means no listener.
fn bind(addr: &str) -> std::io::Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let addr: SocketAddr = addr.parse().map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}"))
    })?;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    Ok(Some(socket.listen(BACKLOG)?))
}
