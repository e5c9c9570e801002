//! `switchyard`: the server binary. It wires configuration to transports; no routing
//! rule lives here.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use serde_json::json;
use switchyard::settings::{self, Settings};
use switchyard_core::Dialect;
use switchyard_core::token::{SigningKey, Verifier, mint};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Real-time signalling and pub/sub server"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server. Without --config: loopback only, a fresh dev key, anonymous peers
    /// allowed, and a ready token printed.
    Serve {
        /// Path to switchyard.toml.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Mint a token with a configured key.
    Gentoken {
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Peer id (`sub`).
        #[arg(long)]
        sub: String,
        /// Granted channel pattern (repeatable).
        #[arg(long = "channel", default_value = "**")]
        channels: Vec<String>,
        /// Comma-separated permissions.
        #[arg(long, default_value = "publish,subscribe,presence,send")]
        permissions: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Tenant claim.
        #[arg(long)]
        tenant: Option<String>,
        /// Audience claim (`broadcaster` for The Broadcaster's clients).
        #[arg(long)]
        aud: Option<String>,
        /// Key id to sign with (default: the first key).
        #[arg(long)]
        kid: Option<String>,
    },
    /// Verify a token against the configured keys and print its claims.
    Checktoken {
        #[arg(long, short)]
        config: Option<PathBuf>,
        token: String,
    },
    /// Access tokens (fastpubsub's AT_<id>_<secret>) for the config file.
    #[command(name = "access-token", subcommand)]
    AccessToken(AccessTokenCommand),
    /// Print an example config with a fresh signing key.
    Genconfig,
    /// Validate a config file.
    Checkconfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Be one peer over stdin/stdout: of a running server (--connect ws://…), or of an
    /// in-process hub (a whole hub in a pipeline).
    Stdio {
        /// A WebSocket URL to bridge to (`ws://127.0.0.1:8080/v1?token=…`).
        #[arg(long)]
        connect: Option<String>,
        /// The in-process hub's dialect for this peer.
        #[arg(long, default_value = "rtc-signaller")]
        dialect: String,
    },
}

#[derive(Subcommand)]
enum AccessTokenCommand {
    /// Mint a token: prints it once, then the [[auth.access_tokens]] block to paste into
    /// the config (it holds the secret's SHA-256 only); `kill -HUP` the server to load
    /// it. On a running server, `POST /v1/access-tokens` does both at once.
    New {
        /// Allowed tenant (repeatable); the first is the connection's own.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Pattern it may publish to (repeatable).
        #[arg(long = "publish")]
        publish: Vec<String>,
        /// Pattern it may subscribe to (repeatable).
        #[arg(long = "subscribe")]
        subscribe: Vec<String>,
        /// Client network allowed, e.g. 10.0.0.0/8 (repeatable).
        #[arg(long = "ip")]
        ips: Vec<String>,
        /// Browser origin allowed, e.g. https://app.example.com (repeatable).
        #[arg(long = "origin")]
        origins: Vec<String>,
        /// Lifetime in seconds (default: no expiry).
        #[arg(long)]
        ttl: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command.unwrap_or(Command::Serve { config: None }) {
        Command::Serve { config } => serve(config),
        Command::Gentoken {
            config,
            sub,
            channels,
            permissions,
            ttl,
            tenant,
            aud,
            kid,
        } => gentoken(
            config,
            &sub,
            &channels,
            &permissions,
            ttl,
            (tenant, aud),
            kid,
        ),
        Command::Checktoken { config, token } => checktoken(config, &token),
        Command::AccessToken(AccessTokenCommand::New {
            tenants,
            publish,
            subscribe,
            ips,
            origins,
            ttl,
        }) => access_token_new(&tenants, &publish, &subscribe, &ips, &origins, ttl),
        Command::Genconfig => {
            print!("{}", settings::example("k1", &random_secret()));
            Ok(())
        }
        Command::Checkconfig { config } => load(Some(config)).map(|s| {
            println!(
                "ok: ws {} tcp {} keys {} anonymous {} engine {}",
                or_off(&s.listen.ws),
                or_off(&s.listen.tcp),
                s.auth.keys.len(),
                s.auth.anonymous,
                s.engine.describe()
            );
        }),
        Command::Stdio { connect, dialect } => stdio(connect, &dialect),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn or_off(addr: &str) -> &str {
    if addr.is_empty() { "off" } else { addr }
}

/// Loads the config file (or an empty one) with environment overrides.
fn load(path: Option<PathBuf>) -> Result<Settings> {
    let text = match &path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
        None => String::new(),
    };
    Ok(Settings::from_toml(&text, std::env::vars())?)
}

/// Embedded defaults: loopback WebSocket and TCP, a fresh dev key, anonymous allowed.
fn dev_settings() -> Result<Settings> {
    let mut s = Settings::from_toml(
        r#"
        [listen]
        ws = "127.0.0.1:8080"
        tcp = "127.0.0.1:7000"
        [auth]
        anonymous = true
        [demo]
        enabled = true
        [dashboard]
        enabled = true
        "#,
        std::env::vars(),
    )?;
    if s.auth.keys.is_empty() {
        s.auth.keys.push(settings::KeySettings {
            kid: "dev".into(),
            secret: random_secret(),
            algorithm: "HS256".into(),
            audience: None,
            tenant: None,
        });
    }
    // The dashboard's data needs an API key: a fresh one, printed in the banner.
    if s.api.keys.is_empty() {
        s.api.keys.push(switchyard::rest::ApiKey {
            id: "dev".into(),
            secret: random_secret(),
            tenant: None,
        });
    }
    Ok(s)
}

fn serve(config: Option<PathBuf>) -> Result<()> {
    init_logs();
    let dev = config.is_none();
    let mut settings = match &config {
        Some(path) => load(Some(path.clone()))?,
        None => dev_settings()?,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if settings.driver.worker_threads > 0 {
        builder.worker_threads(settings.driver.worker_threads);
    }
    let runtime = builder.enable_all().build()?;
    runtime.block_on(async move {
        use tokio::signal::unix::{SignalKind, signal};
        // Installed before any listener is up: from the first connection on, a SIGHUP
        // reloads instead of killing the process (its default action).
        let mut interrupt = signal(SignalKind::interrupt())?;
        let mut terminate = signal(SignalKind::terminate())?;
        let mut hangup = signal(SignalKind::hangup())?;
        let mut server = switchyard::server::start(&settings).await?;
        if dev {
            print_dev_banner(&settings, &server)?;
        }
        loop {
            tokio::select! {
                _ = interrupt.recv() => {
                    tracing::info!("SIGINT: shutting down");
                    break;
                }
                _ = terminate.recv() => {
                    tracing::info!("SIGTERM: shutting down");
                    break;
                }
                _ = hangup.recv() => {
                    if let Some(next) = reload(config.as_deref(), &server).await {
                        settings = next;
                    }
                }
            }
        }
        // `[shutdown]` as last loaded: a reload changes it too.
        let s = &settings.shutdown;
        let told = server
            .shutdown(
                Duration::from_millis(s.retry_after_ms),
                Duration::from_millis(s.drain_deadline_ms),
            )
            .await;
        tracing::info!(connections = told, "shut down");
        Ok(())
    })
}

/// SIGHUP: reads the config file the server was started with again (environment
/// overrides included, as at start) and applies what a reload can (see
/// `Running::reload`). Returns the settings it applied, or `None` when nothing
/// changed: dev mode has no file, and an unreadable or invalid file (or a certificate
/// that does not fit its key) is refused whole, so the server carries on with its old
/// config.
async fn reload(config: Option<&Path>, server: &switchyard::server::Running) -> Option<Settings> {
    let Some(path) = config else {
        tracing::warn!(
            "SIGHUP: no config file to read again (dev mode, started without --config); nothing changes"
        );
        return None;
    };
    let file = path.display();
    let applied = match load(Some(path.to_owned())) {
        Ok(next) => server.reload(&next).await.map(|closed| (next, closed)),
        Err(e) => Err(e),
    };
    match applied {
        Ok((next, closed)) => {
            // `closed`: connections whose credentials the new config no longer
            // accepts, closed with 4001.
            tracing::info!(closed, "SIGHUP: config reloaded from {file}");
            Some(next)
        }
        Err(e) => {
            tracing::error!("SIGHUP: config refused ({file}), nothing changes: {e}");
            None
        }
    }
}

fn print_dev_banner(settings: &Settings, server: &switchyard::server::Running) -> Result<()> {
    let key = signing_key(settings, None)?;
    let mut alice = claims(
        "alice",
        &["**".into()],
        "publish,subscribe,presence,send",
        3600,
        None,
    );
    // The same token serves Broadcaster clients, whose tokens must name this audience.
    if let Some(aud) = settings.core_config()?.auth.broadcaster_audience {
        alice["aud"] = json!(aud);
    }
    let token = mint(&key, &alice)?;
    let ws = server.ws_addr.map(|a| a.to_string()).unwrap_or_default();
    println!(
        "switchyard dev server (loopback only, anonymous peers allowed, dev key \"{}\")",
        key.kid
    );
    let scheme = if server.ws_tls { "wss" } else { "ws" };
    println!(
        "  WebSocket  {scheme}://{ws}/  (rtc-signaller)   {scheme}://{ws}/v1  (JSON)   {scheme}://{ws}/broadcaster  (The Broadcaster)"
    );
    if let Some(tcp) = server.tcp_addr {
        println!(
            "  TCP lines  {tcp}  (first line: hello json | hello rtc-signaller | hello broadcaster)"
        );
    }
    println!("  token for alice (1 h): {token}");
    let http = if server.ws_tls { "https" } else { "http" };
    if settings.demo.enabled {
        println!(
            "  demo       {http}://{ws}/demo  (open it in two tabs; rtc-signaller: {http}://{ws}/demo?dialect=rtc)"
        );
    }
    if let (true, Some(key)) = (settings.dashboard.enabled, settings.api.keys.first()) {
        println!(
            "  dashboard  {http}://{ws}/dashboard  (API key {}:{})",
            key.id, key.secret
        );
    }
    if !server.ws_tls {
        // The stdio bridge speaks ws:// only.
        println!("try it:");
        println!("  cargo run -- stdio --connect 'ws://{ws}/v1?token={token}'");
        println!(r#"  then type: {{"type":"subscribe","channel":"lobby","requestId":"1"}}"#);
    }
    Ok(())
}

fn init_logs() {
    let level = std::env::var("SWITCHYARD_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
}

fn claims(
    sub: &str,
    channels: &[String],
    permissions: &str,
    ttl: u64,
    tenant: Option<String>,
) -> serde_json::Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let permissions: Vec<&str> = permissions
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    let mut c = json!({
        "sub": sub,
        "channels": channels,
        "permissions": permissions,
        "iat": now,
        "exp": now + ttl,
    });
    if let Some(t) = tenant {
        c["tenant"] = json!(t);
    }
    c
}

fn signing_key(settings: &Settings, kid: Option<&str>) -> Result<SigningKey> {
    let config = settings.core_config()?;
    let key = match kid {
        Some(kid) => config.auth.keys.into_iter().find(|k| k.kid == kid),
        // Only a shared secret signs: the first one, past any public keys.
        None => config.auth.keys.into_iter().find(|k| k.algorithm.is_hmac()),
    };
    Ok(key.ok_or("no signing key: pass --config with [[auth.keys]], or set SWITCHYARD_KEY_ID and SWITCHYARD_KEY_SECRET")?)
}

fn gentoken(
    config: Option<PathBuf>,
    sub: &str,
    channels: &[String],
    permissions: &str,
    ttl: u64,
    (tenant, aud): (Option<String>, Option<String>),
    kid: Option<String>,
) -> Result<()> {
    let settings = load(config)?;
    let key = signing_key(&settings, kid.as_deref())?;
    let mut claims = claims(sub, channels, permissions, ttl, tenant);
    if let Some(aud) = aud {
        claims["aud"] = json!(aud);
    }
    println!("{}", mint(&key, &claims)?);
    Ok(())
}

fn checktoken(config: Option<PathBuf>, token: &str) -> Result<()> {
    let settings = load(config)?;
    let keys = settings.core_config()?.auth.keys;
    if keys.is_empty() {
        return Err("no signing keys configured".into());
    }
    let verifier = Verifier::new(switchyard_core::token::KeySet::new(keys)?)
        .with_leeway_secs(settings.auth.leeway_secs)
        .with_require_exp(settings.auth.require_exp);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    match verifier.verify(token, now) {
        Ok(c) => {
            println!("valid: sub={} tenant={:?} kid={:?}", c.sub, c.tenant, c.kid);
            println!(
                "  channels: {}",
                c.channels
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            println!("  permissions: {:?}", c.permissions);
            println!(
                "  exp: {:?} (in {}s)",
                c.exp,
                c.exp.map_or(0, |e| e.saturating_sub(now))
            );
            Ok(())
        }
        Err(e) => Err(format!("invalid: {e} ({})", e.reason()).into()),
    }
}

fn access_token_new(
    tenants: &[String],
    publish: &[String],
    subscribe: &[String],
    ips: &[String],
    origins: &[String],
    ttl: Option<u64>,
) -> Result<()> {
    let (id, token) = switchyard::access_store::mint();
    let secret = switchyard_core::access::parse(&token)
        .expect("minted tokens parse")
        .1;
    let expires_at = ttl.map(|t| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs()
            + t
    });
    let block = settings::AccessTokenSettings {
        id,
        secret_sha256: switchyard_core::access::to_hex(&switchyard_core::access::hash_secret(
            secret,
        )),
        tenants: tenants.to_vec(),
        publish: publish.to_vec(),
        subscribe: subscribe.to_vec(),
        permissions: None,
        allowed_ips: ips.to_vec(),
        allowed_origins: origins.to_vec(),
        expires_at,
    };
    block.to_core()?;
    let list = |v: &[String]| serde_json::to_string(v).expect("strings serialise");
    println!("# the token (shown once; give it to the client): {token}");
    println!("[[auth.access_tokens]]");
    println!("id = {:?}", block.id);
    println!("secret_sha256 = {:?}", block.secret_sha256);
    println!("tenants = {}", list(&block.tenants));
    println!("publish = {}", list(&block.publish));
    println!("subscribe = {}", list(&block.subscribe));
    println!("allowed_ips = {}", list(&block.allowed_ips));
    println!("allowed_origins = {}", list(&block.allowed_origins));
    if let Some(at) = block.expires_at {
        println!("expires_at = {at}");
    }
    Ok(())
}

fn stdio(connect: Option<String>, dialect: &str) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match connect {
            Some(url) => Ok(switchyard_transports::stdio::bridge_stdio_to_ws(&url).await?),
            None => {
                let dialect = Dialect::from_name(dialect)
                    .ok_or_else(|| format!("unknown dialect {dialect}"))?;
                let settings = dev_settings()?;
                let mut core = settings.core_config()?;
                core.id_seed = switchyard::server::random_id_seed();
                let driver = switchyard_transports::driver::start(core, settings.driver_config())?;
                switchyard_transports::stdio::serve_stdio(&driver, dialect).await;
                Ok(())
            }
        }
    })
}

/// 32 random bytes as hex, from the same crypto library that verifies tokens.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
