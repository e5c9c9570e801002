//! Access tokens issued over REST (fastpubsub's admin-issued `AT_<id>_<secret>`): minting
//! with the system CSPRNG, a JSON file holding each secret's SHA-256 (never the
//! secret), replaced atomically on every change, and the `/v1/access-tokens` routes.
//!
//! The hub only ever sees the table (`Hub::set_access_tokens`); revoking a token there
//! closes its live connections with 4001.
//!
//! The file is written to a fresh temporary file in the same directory, fsynced,
//! renamed over the old one and the directory fsynced: a crash leaves the old file or
//! the new one, never half of either.
//!
//! In a cluster the records are also one table for every node (the engine's shared
//! table [`TABLE`], `docs/cluster-redis.md`): each node keeps its own copy (and file),
//! writes every new record and every revocation to the shared table, and merges what
//! the others wrote ([`on_news`]): an id it does not know is added, and a revocation
//! always wins, so the copies converge whatever the order.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use switchyard_cluster::{TableNews, TableWrite, WriteMode};
use switchyard_core::access::{self, AccessToken, Cidr};
use switchyard_core::token::Permissions;
use switchyard_transports::DriverHandle;
use tokio::sync::mpsc;

use crate::rest::{Api, ApiError, ApiResult, driver_gone, parse, unauthorized};

mod routes;
pub(crate) use routes::{create, list, revoke};

/// The store, shared by the REST handlers and reloads; the lock is held across the
/// hub call so that the hub always ends up with the latest table.
pub type Shared = Arc<tokio::sync::Mutex<AccessStore>>;

/// The file's format version.
const VERSION: u32 = 1;

/// The name of the cluster's shared table of REST-issued tokens (`P:access-tokens`
/// with Redis): id → the [`Record`] as JSON, as the file holds it.
pub const TABLE: &str = "access-tokens";

/// One issued token as the file keeps it: everything but the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Record {
    /// The public id.
    pub id: String,
    /// SHA-256 of the secret, hex.
    pub secret_sha256: String,
    /// Allowed tenants; the first is the connection's own.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Patterns it may publish to.
    #[serde(default)]
    pub publish_channels: Vec<String>,
    /// Patterns it may subscribe to.
    #[serde(default)]
    pub subscribe_channels: Vec<String>,
    /// Permission names.
    pub permissions: Vec<String>,
    /// Client networks allowed; empty: any.
    #[serde(default)]
    pub allowed_ips: Vec<String>,
    /// Browser origins allowed; empty: any.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Expiry, unix seconds.
    #[serde(default)]
    pub expires_at: Option<u64>,
    /// When it was issued, unix seconds.
    pub created_at: u64,
    /// When it was revoked, unix seconds (revoked tokens stay listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// A note for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The fields an access token is written with, wherever it is written (the token file,
/// `[[auth.access_tokens]]` in the config): one conversion to the core's view.
pub(crate) struct Spec<'a> {
    pub(crate) id: &'a str,
    pub(crate) secret_sha256: &'a str,
    pub(crate) tenants: &'a [String],
    pub(crate) publish: &'a [String],
    pub(crate) subscribe: &'a [String],
    /// `None`: the core's default (publish, subscribe, presence).
    pub(crate) permissions: Option<&'a [String]>,
    pub(crate) allowed_ips: &'a [String],
    pub(crate) allowed_origins: &'a [String],
    pub(crate) expires_at: Option<u64>,
}

impl Spec<'_> {
    /// The core's view of the token; the error names what is wrong, not the token.
    pub(crate) fn to_core(&self) -> Result<AccessToken, String> {
        let hash = access::from_hex(self.secret_sha256)
            .ok_or("the secret's SHA-256 must be 64 hex digits")?;
        let mut t = AccessToken::new(self.id, hash);
        t.tenants = self.tenants.to_vec();
        t.publish = self.publish.to_vec();
        t.subscribe = self.subscribe.to_vec();
        if let Some(names) = self.permissions {
            t.permissions = names.iter().try_fold(Permissions::NONE, |acc, n| {
                Permissions::from_name(n)
                    .map(|p| acc | p)
                    .ok_or_else(|| format!("unknown permission {n:?}"))
            })?;
        }
        t.allowed_ips = self
            .allowed_ips
            .iter()
            .map(|n| n.parse::<Cidr>())
            .collect::<Result<_, _>>()?;
        t.allowed_origins = self.allowed_origins.to_vec();
        t.expires_at = self.expires_at;
        Ok(t)
    }
}

impl Record {
    /// The core's view of the token.
    pub fn to_core(&self) -> Result<AccessToken, String> {
        let spec = Spec {
            id: &self.id,
            secret_sha256: &self.secret_sha256,
            tenants: &self.tenants,
            publish: &self.publish_channels,
            subscribe: &self.subscribe_channels,
            permissions: Some(&self.permissions),
            allowed_ips: &self.allowed_ips,
            allowed_origins: &self.allowed_origins,
            expires_at: self.expires_at,
        };
        let mut t = spec
            .to_core()
            .map_err(|e| format!("token {}: {e}", self.id))?;
        t.revoked = self.revoked_at.is_some();
        Ok(t)
    }

    /// What the API shows: no secret, no hash.
    pub fn public(&self) -> Value {
        json!({
            "id": self.id,
            "tenants": self.tenants,
            "publishChannels": self.publish_channels,
            "subscribeChannels": self.subscribe_channels,
            "permissions": self.permissions,
            "allowedIps": self.allowed_ips,
            "allowedOrigins": self.allowed_origins,
            "expiresAt": self.expires_at,
            "createdAt": self.created_at,
            "revoked": self.revoked_at.is_some(),
            "revokedAt": self.revoked_at,
            "description": self.description,
            "source": "rest",
        })
    }
}

/// What the API shows of a token from the config file (`source: "config"`).
fn configured(t: &AccessToken) -> Value {
    json!({
        "id": t.id,
        "tenants": t.tenants,
        "publishChannels": t.publish,
        "subscribeChannels": t.subscribe,
        "permissions": t.permissions.names().collect::<Vec<_>>(),
        "allowedIps": t.allowed_ips.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "allowedOrigins": t.allowed_origins,
        "expiresAt": t.expires_at,
        "revoked": t.revoked,
        "source": "config",
    })
}

#[derive(Serialize, Deserialize)]
struct FileBody {
    version: u32,
    tokens: Vec<Record>,
}

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file cannot be read or written.
    #[error("access token file {path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The file is not ours, or holds an invalid token.
    #[error("access token file {path}: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// REST-issued access tokens, and where they are kept.
#[derive(Debug, Default)]
pub struct AccessStore {
    path: Option<PathBuf>,
    records: Vec<Record>,
    /// Where new records and revocations go for the other nodes (a cluster only).
    shared: Option<mpsc::Sender<TableWrite>>,
}

impl AccessStore {
    /// Opens the store at `path` (empty: memory only). A missing file is an empty
    /// store; an unreadable or invalid one is an error (the server refuses to start
    /// rather than forget tokens).
    pub fn open(path: &str) -> Result<Self, StoreError> {
        if path.is_empty() {
            return Ok(Self::default());
        }
        let path = PathBuf::from(path);
        let shown = path.display().to_string();
        let records = match fs::read(&path) {
            Ok(bytes) => {
                let body: FileBody =
                    serde_json::from_slice(&bytes).map_err(|e| StoreError::Invalid {
                        path: shown.clone(),
                        reason: e.to_string(),
                    })?;
                if body.version != VERSION {
                    return Err(StoreError::Invalid {
                        path: shown,
                        reason: format!("unknown version {}", body.version),
                    });
                }
                for r in &body.tokens {
                    r.to_core().map_err(|reason| StoreError::Invalid {
                        path: shown.clone(),
                        reason,
                    })?;
                }
                body.tokens
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(error) => return Err(StoreError::Io { path: shown, error }),
        };
        Ok(Self {
            path: Some(path),
            records,
            shared: None,
        })
    }

    /// Shares the records with the other nodes of a cluster through `writes` (the
    /// engine's [`Tables::writes`](switchyard_cluster::Tables::writes)).
    pub fn share(&mut self, writes: mpsc::Sender<TableWrite>) {
        self.shared = Some(writes);
    }

    /// Writes `record` to the shared table, when there is one. `Insert` for a new
    /// record, `Replace` for a revocation (which must win over an older copy).
    async fn tell_cluster(&self, record: &Record, mode: WriteMode) {
        let Some(writes) = &self.shared else {
            return;
        };
        let write = TableWrite {
            table: TABLE.into(),
            key: record.id.clone(),
            value: serde_json::to_string(record).expect("records serialise"),
            mode,
        };
        if writes.send(write).await.is_err() {
            tracing::debug!(id = %record.id, "the cluster engine has stopped: token change not shared");
        }
    }

    /// Takes another node's copy of a record: an unknown id is added (if it reads as
    /// a token), a revocation wins over an unrevoked copy. Whether anything changed.
    fn merge(&mut self, theirs: Record) -> bool {
        if let Err(reason) = theirs.to_core() {
            tracing::warn!(%reason, "cluster: unusable access token from another node, skipped");
            return false;
        }
        match self.records.iter_mut().find(|r| r.id == theirs.id) {
            None => {
                self.records.push(theirs);
                true
            }
            Some(mine) if mine.revoked_at.is_none() && theirs.revoked_at.is_some() => {
                mine.revoked_at = theirs.revoked_at;
                true
            }
            Some(_) => false,
        }
    }

    /// Every stored token, revoked ones included, as the core takes them.
    pub fn tokens(&self) -> Vec<AccessToken> {
        self.records
            .iter()
            .filter_map(|r| r.to_core().ok())
            .collect()
    }

    /// The stored records.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// Writes the records: temp file in the same directory, fsync, rename, fsync the
    /// directory. Memory-only stores write nothing.
    fn save(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let io = |error| StoreError::Io {
            path: path.display().to_string(),
            error,
        };
        let body = serde_json::to_vec_pretty(&FileBody {
            version: VERSION,
            tokens: self.records.clone(),
        })
        .expect("records serialise");
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or_else(|| "access-tokens".into(), |n| n.to_string_lossy());
        let tmp = dir.join(format!(".{name}.{}.tmp", random_hex(8)));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&body)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            File::open(dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(io)
    }
}

/// `n` random bytes as lowercase hex, from the system CSPRNG (aws-lc-rs).
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh token: its id, and the full `AT_<id>_<secret>` shown once.
pub fn mint() -> (String, String) {
    let id = random_hex(8);
    let token = format!("{}{id}_{}", access::PREFIX, random_hex(32));
    (id, token)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// Takes the cluster engine's news of the shared table into this node's store: merges
/// it, saves the file, and hands the hub the new table (closing, with 4001, the
/// connections of a token another node revoked). After a snapshot (every engine
/// (re)connect) it writes back what the shared table lacks or holds unrevoked.
pub async fn on_news(
    news: TableNews,
    store: &Shared,
    control: &crate::rest::Shared,
    driver: &DriverHandle,
) {
    let read = |key: &str, value: &str| match serde_json::from_str::<Record>(value) {
        Ok(record) if record.id == key => Some(record),
        Ok(_) => {
            tracing::warn!(%key, "cluster: an access token filed under another id, skipped");
            None
        }
        Err(error) => {
            tracing::warn!(%key, %error, "cluster: unreadable access token record, skipped");
            None
        }
    };
    let mut store = store.lock().await;
    let changed = match news {
        TableNews::Snapshot { table, entries } if table == TABLE => {
            let theirs: Vec<Record> = entries.iter().filter_map(|(k, v)| read(k, v)).collect();
            let mut changed = false;
            for record in theirs.iter().cloned() {
                changed |= store.merge(record);
            }
            let behind: Vec<(Record, WriteMode)> = store
                .records
                .iter()
                .filter_map(|mine| match theirs.iter().find(|t| t.id == mine.id) {
                    None => Some((mine.clone(), WriteMode::Insert)),
                    Some(t) if t.revoked_at.is_none() && mine.revoked_at.is_some() => {
                        Some((mine.clone(), WriteMode::Replace))
                    }
                    Some(_) => None,
                })
                .collect();
            for (record, mode) in &behind {
                store.tell_cluster(record, *mode).await;
            }
            changed
        }
        TableNews::Written { table, key, value } if table == TABLE => {
            read(&key, &value).is_some_and(|record| store.merge(record))
        }
        _ => false,
    };
    if !changed {
        return;
    }
    if let Err(e) = store.save() {
        tracing::error!(error = %e, "could not persist access tokens heard from the cluster");
    }
    let mut tokens = control
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .access_tokens
        .clone();
    tokens.extend(store.tokens());
    match driver
        .call(move |hub, now| hub.set_access_tokens(now, tokens))
        .await
    {
        Ok(Ok(closed)) => tracing::info!(closed, "access tokens updated from the cluster"),
        Ok(Err(error)) => tracing::error!(%error, "the hub refused the cluster's access tokens"),
        Err(_) => {} // the server is stopping
    }
}
