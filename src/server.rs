//! Starting a server from [`Settings`]: one driver, the listeners it asks for.
//! Used by the `switchyard` binary and by the integration tests (which bind port 0).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use switchyard_cluster::{CancellationToken, EngineContext, EngineState, EngineStatus, Tables};
use switchyard_core::cluster::NodeId;
use switchyard_transports::tls::{self, CertResolver, TlsIdentity};
use switchyard_transports::{DriverHandle, driver, grpc, quic, tcp, ws};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::settings::Settings;

/// Listen backlog: the box's `somaxconn`, so a connect storm is not dropped at SYN.
const BACKLOG: u32 = 4096;

/// Cluster items the driver may queue for the engine before it drops them (counted):
/// room for a burst while one pipeline is on its way to Redis.
const CLUSTER_QUEUE: usize = 65_536;

/// Shared-table writes (token changes) the REST handlers may queue for the engine
/// before they wait for it.
const TABLE_QUEUE: usize = 256;

/// How long the engine may take to say goodbye after the hub's shutdown.
const ENGINE_STOP_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3);

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The WebSocket listener's bound address, if any.
    pub ws_addr: Option<SocketAddr>,
    /// Whether that listener speaks TLS (`wss://`, `https://`).
    pub ws_tls: bool,
    /// The TCP line listener's bound address, if any.
    pub tcp_addr: Option<SocketAddr>,
    /// The QUIC listener's bound address, if any.
    pub quic_addr: Option<SocketAddr>,
    /// The gRPC listener's bound address, if any (TLS with `[tls]`'s certificate when
    /// it is set).
    pub grpc_addr: Option<SocketAddr>,
    /// The certificate the QUIC listener presents (DER): a dev certificate is new at
    /// every start, and clients must trust this one.
    pub quic_certificate: Option<Vec<u8>>,
    /// The driver, for control-plane calls and custom transports.
    pub driver: DriverHandle,
    /// This node's name in the cluster (random per start unless `[engine] node_id`).
    pub node: NodeId,
    /// The cluster engine's state and counters.
    pub engine: Arc<EngineStatus>,
    engine_stop: CancellationToken,
    engine_task: Option<JoinHandle<()>>,
    control: crate::rest::Shared,
    access: crate::access_store::Shared,
    /// The certificates read from files, which a reload reads again; `None` for
    /// plain listeners and for the QUIC dev certificate.
    ws_certificate: Option<Arc<CertResolver>>,
    quic_certificate_files: Option<Arc<CertResolver>>,
    /// The hub's [`id_seed`](switchyard_core::Config::id_seed), drawn at start.
    id_seed: u64,
    /// The config the listeners and the driver were built from, which a reload
    /// compares with to name what only a restart applies.
    started: Settings,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Applies a new config without a restart: signing keys, publishable keys,
    /// anonymous access, limits, API keys, and the TLS certificates read from files
    /// (`[tls]` and `[quic]` `cert_file`/`key_file`, read again, so a renewed
    /// certificate reaches new connections; established ones keep theirs).
    /// Connections whose credentials are gone are closed with 4001; the rest keep
    /// going. What [`Settings::restart_only_changes`] names (listeners, `[ws]`, most of
    /// `[quic]`, turning TLS on or off, driver sizes, the token file, a larger
    /// `max_frame_bytes`) needs a restart: a reload logs a warning naming it and
    /// applies the rest. The id streams carry on: a reload never seeds them again, so
    /// a peer id handed out before it is not handed out again after it. Returns how
    /// many connections were closed; on an invalid config or an unusable certificate
    /// nothing changes.
    pub async fn reload(&self, settings: &Settings) -> Result<usize, Box<dyn std::error::Error>> {
        settings.validate()?;
        let ws_identity = match &self.ws_certificate {
            Some(_) if settings.tls.enabled() => Some(TlsIdentity::from_pem_files(
                settings.tls.cert_file.as_ref(),
                settings.tls.key_file.as_ref(),
            )?),
            _ => None,
        };
        let quic_identity = match &self.quic_certificate_files {
            Some(_) if !settings.quic.cert_file.is_empty() => Some(TlsIdentity::from_pem_files(
                settings.quic.cert_file.as_ref(),
                settings.quic.key_file.as_ref(),
            )?),
            _ => None,
        };
        // Check that each key fits its certificate before anything changes.
        for identity in ws_identity.iter().chain(&quic_identity) {
            CertResolver::new(identity)?;
        }
        let mut core = settings.core_config()?;
        // The hub seeded its id streams once, at start, and a reconfiguration never
        // seeds them again; carrying the seed keeps `Hub::config` telling the truth.
        core.id_seed = self.id_seed;
        // `[engine]` is read at start only: the hub stays the cluster node it began as.
        core.cluster = self.started.engine.clustered();
        // The listeners size their frame reads at start: a larger limit would only be
        // advertised (`welcome`'s maxMessageSize), never accepted.
        core.limits.max_frame_bytes = core
            .limits
            .max_frame_bytes
            .min(self.started.limits.max_frame_bytes);
        let next = reloadable(settings, &core);
        // Held until the hub has the table, so that a concurrent REST change cannot
        // be overwritten by an older one.
        let store = self.access.lock().await;
        core.auth.access_tokens.extend(store.tokens());
        let closed = self
            .driver
            .call(move |hub, now| hub.reconfigure(now, core))
            .await
            .map_err(|e| e.to_string())??;
        drop(store);
        *self
            .control
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = next;
        for (resolver, identity, listener) in [
            (&self.ws_certificate, ws_identity, "WebSocket/HTTP"),
            (&self.quic_certificate_files, quic_identity, "QUIC"),
        ] {
            if let (Some(resolver), Some(identity)) = (resolver, identity) {
                resolver.replace(&identity)?;
                tracing::info!(sha256 = %identity.fingerprint(), "{listener} TLS certificate reloaded");
            }
        }
        let needs_restart = self.started.restart_only_changes(settings);
        if !needs_restart.is_empty() {
            tracing::warn!(
                "config changes that need a restart, kept as started: {}",
                needs_restart.join("; ")
            );
        }
        Ok(closed)
    }

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
        // After the hub's own shutdown: the last leaves are queued, then the engine
        // flushes them and tells the other nodes this one is gone.
        self.engine_stop.cancel();
        if let Some(task) = self.engine_task.take()
            && tokio::time::timeout(ENGINE_STOP_DEADLINE, task)
                .await
                .is_err()
        {
            tracing::warn!("the cluster engine did not stop in time");
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
        // The engine says goodbye on its own task while the runtime lasts.
        self.engine_stop.cancel();
    }
}

/// Starts the driver and every configured listener. Must run inside a tokio runtime.
/// The hub's ids are seeded from the system CSPRNG ([`random_id_seed`]), so no two
/// starts hand out the same peer ids.
pub async fn start(settings: &Settings) -> Result<Running, Box<dyn std::error::Error>> {
    let mut core = settings.core_config()?;
    let id_seed = random_id_seed();
    core.id_seed = id_seed;
    let control = Arc::new(RwLock::new(reloadable(settings, &core)));
    let mut store = crate::access_store::AccessStore::open(&settings.auth.access_token_file)?;
    if settings.auth.access_token_file.is_empty() {
        tracing::debug!(
            "no [auth] access_token_file: REST-issued access tokens last until restart"
        );
    }
    core.auth.access_tokens.extend(store.tokens());
    let engine = settings.engine.engine()?;
    let clustered = settings.engine.clustered();
    // In a cluster the REST-issued access tokens are one table for every node.
    let (tables, table_news) = if clustered {
        let (writes_to_engine, writes) = mpsc::channel(TABLE_QUEUE);
        let (news, table_news) = mpsc::unbounded_channel();
        store.share(writes_to_engine);
        let names = vec![crate::access_store::TABLE.to_owned()];
        (
            Tables {
                names,
                writes,
                news,
            },
            Some(table_news),
        )
    } else {
        (Tables::none(), None)
    };
    let access = Arc::new(tokio::sync::Mutex::new(store));
    let (to_engine, outbound) = mpsc::channel(if clustered { CLUSTER_QUEUE } else { 1 });
    let mut driver_config = settings.driver_config();
    if clustered {
        driver_config.cluster = Some(to_engine);
    }
    let driver = driver::start(core, driver_config)?;
    let node = if settings.engine.node_id.is_empty() {
        NodeId::new(&random_node_id())
    } else {
        NodeId::new(&settings.engine.node_id)
    };
    let initial = if clustered {
        EngineState::Reconnecting
    } else {
        EngineState::Memory
    };
    let engine_status = Arc::new(EngineStatus::new(engine.kind(), initial));
    let engine_stop = CancellationToken::new();
    let shared_history = engine.history();
    tracing::info!(%node, engine = %settings.engine.describe(), "cluster engine starting");
    let engine_task = tokio::spawn(engine.run(EngineContext {
        node: node.clone(),
        outbound,
        driver: driver.clone(),
        status: Arc::clone(&engine_status),
        tables,
        shutdown: engine_stop.clone(),
    }));
    let mut tasks = Vec::new();
    if let Some(mut news) = table_news {
        let (access, control, driver) = (Arc::clone(&access), Arc::clone(&control), driver.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(news) = news.recv().await {
                crate::access_store::on_news(news, &access, &control, &driver).await;
            }
        }));
    }
    let mut quic_certificate_files = None;
    // `[tls]`'s certificate: one resolver for the WebSocket/HTTP and gRPC listeners,
    // so a reload renews both.
    let ws_certificate = ws_tls(settings)?;
    let ws_addr = match bind(&settings.listen.ws)? {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let mut ws_config = settings.ws_config()?;
            if let Some(resolver) = &ws_certificate {
                ws_config.tls = Some(resolver.rustls_server_config(&ws::ALPN)?);
            }
            let scheme = if ws_config.tls.is_some() { "wss" } else { "ws" };
            tracing::info!(%addr, "WebSocket listening on {scheme}://{addr} (REST and /metrics on the same port)");
            ws_config.http = Some(crate::rest::http_fallback(
                driver.clone(),
                Arc::clone(&control),
                Arc::clone(&access),
                crate::rest::Cluster {
                    node: node.clone(),
                    status: Arc::clone(&engine_status),
                    history: shared_history.clone(),
                },
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
    let grpc_addr = match bind(&settings.listen.grpc)? {
        Some(listener) => {
            let addr = listener.local_addr()?;
            let mut config = grpc::GrpcConfig::default();
            if let Some(resolver) = &ws_certificate {
                config.tls = Some(resolver.rustls_server_config(&grpc::ALPN)?);
            }
            config.publisher = Some(crate::rest::grpc_publisher(
                driver.clone(),
                Arc::clone(&control),
                Arc::clone(&access),
                crate::rest::Cluster {
                    node: node.clone(),
                    status: Arc::clone(&engine_status),
                    history: shared_history.clone(),
                },
            ));
            let scheme = if config.tls.is_some() {
                "TLS"
            } else {
                "plaintext"
            };
            tracing::info!(%addr, "gRPC listening ({scheme} HTTP/2)");
            tasks.push(tokio::spawn(grpc::serve(listener, driver.clone(), config)));
            Some(addr)
        }
        None => None,
    };
    let (quic_addr, quic_certificate) = match parse_addr(&settings.listen.quic)? {
        Some(addr) => {
            let identity = quic_identity(settings)?;
            let resolver = CertResolver::new(&identity)?;
            if !settings.quic.cert_file.is_empty() {
                quic_certificate_files = Some(Arc::clone(&resolver));
            }
            let config = settings.quic_config();
            let endpoint = quic::bind_with(addr, &resolver, &config)?;
            let addr = endpoint.local_addr()?;
            let alpn = switchyard_core::Dialect::ALL
                .map(|d| String::from_utf8_lossy(&quic::alpn(d)).into_owned())
                .join(" | ");
            tracing::info!(%addr, "QUIC listening (ALPN {alpn})");
            tasks.push(tokio::spawn(quic::serve(endpoint, driver.clone(), config)));
            (Some(addr), Some(identity.certificate().to_vec()))
        }
        None => (None, None),
    };
    Ok(Running {
        ws_addr,
        ws_tls: ws_addr.is_some() && settings.tls.enabled(),
        tcp_addr,
        quic_addr,
        grpc_addr,
        quic_certificate,
        driver,
        node,
        engine: engine_status,
        engine_stop,
        engine_task: Some(engine_task),
        control,
        access,
        ws_certificate,
        quic_certificate_files,
        id_seed,
        started: settings.clone(),
        tasks,
    })
}

/// A fresh [`id_seed`](switchyard_core::Config::id_seed) from the system CSPRNG
/// (aws-lc-rs, as for dev keys and access tokens). The core's default seed is a
/// constant, for reproducible tests; a server that kept it would hand out the same
/// peer ids (`welcome`'s `peerId`) and message ids after every restart and on every
/// instance.
pub fn random_id_seed() -> u64 {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    u64::from_le_bytes(bytes)
}

/// A node id for a start without `[engine] node_id`: 8 random bytes as 16 hex digits.
pub fn random_node_id() -> String {
    let mut bytes = [0u8; 8];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The control plane's reloadable part of `settings`.
fn reloadable(settings: &Settings, core: &switchyard_core::Config) -> crate::rest::Reloadable {
    crate::rest::Reloadable {
        keys: settings.api.keys.clone(),
        // Public keys only verify: the mint endpoint signs with the first secret.
        signing: core
            .auth
            .keys
            .iter()
            .find(|k| k.algorithm.is_hmac())
            .cloned(),
        default_tenant: core.default_tenant.clone(),
        metrics_need_key: settings.api.metrics_require_key,
        access_tokens: core.auth.access_tokens.clone(),
        demo: settings.demo.enabled,
        dashboard: settings.dashboard.enabled,
    }
}

/// The WebSocket/HTTP and gRPC listeners' certificate from `[tls] cert_file`/`key_file`
/// (the resolver a reload replaces it in); `None`: plain.
fn ws_tls(settings: &Settings) -> Result<Option<Arc<CertResolver>>, Box<dyn std::error::Error>> {
    let t = &settings.tls;
    if !t.enabled() {
        return Ok(None);
    }
    let identity = TlsIdentity::from_pem_files(t.cert_file.as_ref(), t.key_file.as_ref())?;
    tracing::info!(sha256 = %identity.fingerprint(), "WebSocket/HTTP TLS certificate loaded");
    Ok(Some(CertResolver::new(&identity)?))
}

/// The QUIC certificate from `[quic] cert_file`/`key_file`, or a fresh self-signed one
/// written where clients can pick it up, with its fingerprint in the log.
fn quic_identity(settings: &Settings) -> Result<TlsIdentity, Box<dyn std::error::Error>> {
    let q = &settings.quic;
    if !q.cert_file.is_empty() {
        return Ok(TlsIdentity::from_pem_files(
            q.cert_file.as_ref(),
            q.key_file.as_ref(),
        )?);
    }
    let identity = TlsIdentity::self_signed(&tls::DEV_NAMES)?;
    let pem_path = if q.dev_cert_file.is_empty() {
        std::env::temp_dir().join("switchyard-dev-cert.pem")
    } else {
        PathBuf::from(&q.dev_cert_file)
    };
    let der_path = pem_path.with_extension("der");
    std::fs::write(&pem_path, identity.certificate_pem())?;
    std::fs::write(&der_path, identity.certificate())?;
    tracing::warn!(
        pem = %pem_path.display(),
        der = %der_path.display(),
        sha256 = %identity.fingerprint(),
        "QUIC uses a self-signed dev certificate: set [quic] cert_file and key_file in production"
    );
    Ok(identity)
}

/// Parses a UDP listen address; `""` means no listener.
fn parse_addr(addr: &str) -> std::io::Result<Option<SocketAddr>> {
    if addr.is_empty() {
        return Ok(None);
    }
    addr.parse()
        .map(Some)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{addr}: {e}")))
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
