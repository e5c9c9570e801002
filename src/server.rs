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

impl Running {
    /// Graceful shutdown: stop accepting, tell every peer (`going_away`, then close
    /// 1001), and wait until every connection has flushed and closed, or `deadline`.
    /// Frames the hub queued before this (every acked publish) are written before the
    /// close. Returns how many connections were told.
    pub async fn shutdown(
        &mut self,
        retry_after: std::time::Duration,
        deadline: std::time::Duration,
    ) -> usize {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        let told = self
            .driver
            .call(move |hub, now| hub.shutdown(now, retry_after))
            .await
            .unwrap_or(0);
        let drained = async {
            while self
                .driver
                .metrics()
                .connections_by_wire()
                .iter()
                .any(|(_, n)| *n > 0)
            {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        };
        if tokio::time::timeout(deadline, drained).await.is_err() {
            tracing::warn!("shutdown deadline passed with connections still draining");
        }
        told
    }
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
    let core = settings.core_config()?;
    let signing = core.auth.keys.first().cloned();
    let default_tenant = core.default_tenant.clone();
    let driver = driver::start(core, settings.driver_config())?;
    let mut tasks = Vec::new();
    let ws_addr = match bind(&settings.listen.ws)? {
        Some(listener) => {
            let addr = listener.local_addr()?;
            tracing::info!(%addr, "WebSocket listening (REST and /metrics on the same port)");
            let mut ws_config = settings.ws_config()?;
            ws_config.http = Some(crate::rest::http_fallback(
                driver.clone(),
                settings.api.keys.clone(),
                signing,
                default_tenant,
                settings.api.metrics_require_key,
            ));
            tasks.push(tokio::spawn(ws::serve(listener, driver.clone(), ws_config)));
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
