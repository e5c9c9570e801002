//! From the file's view to the core's and the listeners' configs, with the checks
//! parsing cannot make.

use std::net::SocketAddr;
use std::time::Duration;

use switchyard_core::access::AccessToken;
use switchyard_core::config::{Grant, PublishableKey, Quota};
use switchyard_core::token::{Algorithm, Jwks, Permissions, PublicKey, SigningKey};
use switchyard_core::{Config, Dialect};
use switchyard_transports::ws::Routes;
use switchyard_transports::{DriverConfig, LineDialect, QuicConfig, TcpConfig, WsConfig};

use super::{AccessTokenSettings, Auth, PublicKeySettings, Settings, SettingsError};

impl Settings {
    /// Checks what parsing cannot: addresses, dialect names, and the core's own checks.
    pub fn validate(&self) -> Result<(), SettingsError> {
        for addr in [
            &self.listen.ws,
            &self.listen.tcp,
            &self.listen.quic,
            &self.listen.grpc,
        ] {
            if !addr.is_empty() {
                addr.parse::<SocketAddr>()
                    .map_err(|e| SettingsError::Invalid(format!("listen address {addr:?}: {e}")))?;
            }
        }
        self.tcp_config()?;
        self.ws_config()?;
        self.validate_engine()?;
        self.validate_history()?;
        if self.quic.cert_file.is_empty() != self.quic.key_file.is_empty() {
            return Err(SettingsError::Invalid(
                "quic: cert_file and key_file go together".into(),
            ));
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            return Err(SettingsError::Invalid(
                "tls: cert_file and key_file go together".into(),
            ));
        }
        if self.quic.idle_timeout_ms == 0 {
            return Err(SettingsError::Invalid(
                "quic: idle_timeout_ms must be above 0".into(),
            ));
        }
        let core = self.core_config()?;
        #[allow(clippy::disallowed_methods)]
        switchyard_core::Hub::new(core, std::time::Instant::now(), 0)
            .map_err(|e| SettingsError::Invalid(e.to_string()))?;
        Ok(())
    }

    /// The core's configuration.
    pub fn core_config(&self) -> Result<Config, SettingsError> {
        let mut c = Config::default();
        c.cluster = self.engine.clustered();
        let l = &self.limits;
        c.limits.max_frame_bytes = l.max_frame_bytes;
        c.limits.max_channels_per_conn = l.max_channels_per_conn;
        c.limits.message_rate = l.message_rate;
        c.limits.message_burst = l.message_burst;
        c.limits.rate_close_after = l.rate_close_after;
        c.limits.presence_cap = l.presence_cap;
        c.limits.max_conns_per_ip = l.max_conns_per_ip;
        c.limits.max_conns_per_tenant = l.max_conns_per_tenant;
        c.limits.max_conns_per_peer = l.max_conns_per_peer;
        c.limits.quota = (l.quota_messages > 0).then(|| Quota {
            messages: l.quota_messages,
            period: Duration::from_secs(l.quota_period_secs.max(1)),
        });
        c.reserved_prefixes = l.reserved_prefixes.clone();
        c.default_tenant = l.default_tenant.clone();
        c.history = self.history_rules();
        let a = &self.auth;
        c.auth.leeway_secs = a.leeway_secs;
        c.auth.require_exp = a.require_exp;
        c.auth.auth_timeout = Duration::from_millis(a.auth_timeout_ms);
        c.auth.refresh_warning = Duration::from_secs(a.refresh_warning_secs);
        c.auth.refresh_warning_all = a.refresh_warning_all;
        c.auth.anonymous = a.anonymous.then(Grant::everything);
        c.auth.broadcaster_audience =
            (!a.broadcaster_audience.is_empty()).then(|| a.broadcaster_audience.clone());
        c.auth.keys = a
            .keys
            .iter()
            .map(|k| {
                Ok(SigningKey {
                    kid: k.kid.clone(),
                    secret: k.secret.as_bytes().to_vec(),
                    algorithm: k.algorithm.parse::<Algorithm>().map_err(|_| {
                        SettingsError::Invalid(format!(
                            "key {}: unknown algorithm {}",
                            k.kid, k.algorithm
                        ))
                    })?,
                    public_key: None,
                    audience: k.audience.clone(),
                    tenant: k.tenant.clone(),
                })
            })
            .collect::<Result<_, SettingsError>>()?;
        for k in &a.public_keys {
            c.auth.keys.push(k.to_core()?);
        }
        c.auth.keys.extend(a.jwks_keys()?);
        c.auth.publishable_keys = a
            .publishable_keys
            .iter()
            .map(|k| {
                Ok(PublishableKey {
                    key: k.key.clone(),
                    grant: Grant {
                        channels: k.channels.clone(),
                        permissions: parse_permissions(&k.permissions)?,
                        tenant: k.tenant.clone(),
                    },
                })
            })
            .collect::<Result<_, SettingsError>>()?;
        c.auth.access_tokens = a
            .access_tokens
            .iter()
            .map(AccessTokenSettings::to_core)
            .collect::<Result<_, _>>()?;
        Ok(c)
    }

    /// The driver's configuration.
    pub fn driver_config(&self) -> DriverConfig {
        let mut d = DriverConfig::default();
        d.max_connections = self.driver.max_connections;
        d.outbound_queue = self.driver.outbound_queue;
        d
    }

    /// The WebSocket listener's configuration.
    pub fn ws_config(&self) -> Result<WsConfig, SettingsError> {
        for (path, dialect) in &self.ws.paths {
            if Dialect::from_name(dialect).is_none() {
                return Err(SettingsError::Invalid(format!(
                    "ws path {path}: unknown dialect {dialect}"
                )));
            }
        }
        let mut ws = WsConfig::default();
        ws.routes = Routes::new(self.ws.paths.clone());
        ws.ping_interval = Duration::from_millis(self.ws.ping_interval_ms);
        ws.pong_timeout = Duration::from_millis(self.ws.pong_timeout_ms);
        ws.handshake_timeout = Duration::from_millis(self.ws.handshake_timeout_ms);
        ws.allowed_origins = self.ws.allowed_origins.clone();
        ws.trusted_proxies = self
            .ws
            .trusted_proxies
            .iter()
            .map(|net| {
                net.parse()
                    .map_err(|e| SettingsError::Invalid(format!("ws.trusted_proxies {net:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(ws)
    }

    /// The QUIC listener's configuration (its TLS identity is the server's business).
    pub fn quic_config(&self) -> QuicConfig {
        let mut q = QuicConfig::default();
        q.idle_timeout = Duration::from_millis(self.quic.idle_timeout_ms);
        q.handshake_timeout = Duration::from_millis(self.quic.handshake_timeout_ms);
        q
    }

    /// The TCP listener's configuration.
    pub fn tcp_config(&self) -> Result<TcpConfig, SettingsError> {
        let dialect = LineDialect::from_name(&self.listen.tcp_dialect).ok_or_else(|| {
            SettingsError::Invalid(format!("unknown tcp_dialect {}", self.listen.tcp_dialect))
        })?;
        Ok(TcpConfig::new(dialect))
    }
}

impl PublicKeySettings {
    /// The core's key: the PEM file read and checked against the algorithm.
    pub fn to_core(&self) -> Result<SigningKey, SettingsError> {
        let invalid = |why: String| SettingsError::Invalid(format!("key {}: {why}", self.kid));
        let algorithm = self.algorithm.parse::<Algorithm>().map_err(invalid)?;
        let path = &self.public_key_file;
        let pem = std::fs::read(path)
            .map_err(|e| invalid(format!("cannot read public_key_file {path:?}: {e}")))?;
        let public_key = PublicKey::from_pem(algorithm, &pem)
            .map_err(|e| invalid(format!("public_key_file {path:?} is {e}")))?;
        Ok(SigningKey {
            audience: self.audience.clone(),
            tenant: self.tenant.clone(),
            ..SigningKey::public(&self.kid, public_key)
        })
    }
}

impl Auth {
    /// The signature keys of `jwks_file` (none when it is empty), each with
    /// `jwks_audience` and `jwks_tenant`; the keys the file's rules skip are logged.
    pub fn jwks_keys(&self) -> Result<Vec<SigningKey>, SettingsError> {
        let path = &self.jwks_file;
        if path.is_empty() {
            return Ok(Vec::new());
        }
        let invalid = |why: String| SettingsError::Invalid(format!("jwks_file {path:?}: {why}"));
        let json = std::fs::read(path).map_err(|e| invalid(format!("cannot read it: {e}")))?;
        let jwks = Jwks::parse(&json).map_err(|e| invalid(e.to_string()))?;
        for skipped in &jwks.skipped {
            tracing::debug!(kid = ?skipped.kid, why = %skipped.why, "jwks_file {path}: key skipped");
        }
        Ok(jwks
            .keys
            .into_iter()
            .map(|k| SigningKey {
                audience: self.jwks_audience.clone(),
                tenant: self.jwks_tenant.clone(),
                ..k
            })
            .collect())
    }
}

impl AccessTokenSettings {
    /// The core's view of this token.
    pub fn to_core(&self) -> Result<AccessToken, SettingsError> {
        crate::access_store::Spec {
            id: &self.id,
            secret_sha256: &self.secret_sha256,
            tenants: &self.tenants,
            publish: &self.publish,
            subscribe: &self.subscribe,
            permissions: self.permissions.as_deref(),
            allowed_ips: &self.allowed_ips,
            allowed_origins: &self.allowed_origins,
            expires_at: self.expires_at,
        }
        .to_core()
        .map_err(|e| SettingsError::Invalid(format!("access token {}: {e}", self.id)))
    }
}

fn parse_permissions(names: &[String]) -> Result<Permissions, SettingsError> {
    names.iter().try_fold(Permissions::NONE, |acc, n| {
        Permissions::from_name(n)
            .map(|p| acc | p)
            .ok_or_else(|| SettingsError::Invalid(format!("unknown permission {n}")))
    })
}
