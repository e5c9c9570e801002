//! The REST control plane and operations endpoints, served on the WebSocket port (plain
//! HTTP requests there are routed here): publish, mint tokens, list presence,
//! disconnect, usage, `/healthz`, `/metrics` and the OpenAPI description.
//!
//! `/healthz` answers `ok` on one node (the memory engine). With a cluster engine it
//! names it and this node (`ok\nengine: redis connected\nnode: <id>\n`); while the
//! engine is not connected the first line is `degraded` and the engine line says
//! `reconnecting`, still with status 200: the node serves its own clients, and a
//! Redis outage would otherwise take every node out of a load balancer at once.
//!
//! `POST /broadcaster/publish` is The Broadcaster's REST publish: its body
//! (`channel`, `event`, `payload`), its answer (`id`, `createTime`) and its error codes
//! (`InvalidArgument`, `Unauthenticated`, …), through the same `Hub::publish_event`.
//!
//! Every error is `{"code": "...", "message": "..."}` with a matching HTTP status.
//! `/v1/*` routes need an API key: `Authorization: Bearer <id>:<secret>` (Metered
//! style) or `Bearer <secret>` (an opaque key, Broadcaster style). A key may be bound
//! to a tenant, and then acts on that tenant only.
//!
//! Here: the router, API keys and errors that every endpoint shares. The endpoints
//! live by concern in `publish`, `control` (tokens, presence, disconnect, usage),
//! `history` (a page of a channel's kept messages),
//! `stats` (what the dashboard reads) and `metrics`; the browser pages (`/demo`,
//! `/dashboard`) and the security headers every response carries in `pages`; the
//! access-token endpoints are the store's own (`crate::access_store`).

mod control;
mod history;
mod metrics;
mod pages;
mod publish;
mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::json;
use switchyard_core::token::SigningKey;
use switchyard_transports::ws::HttpIo;
use switchyard_transports::{DriverHandle, HttpFallback};

/// One API key for the control plane.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    /// The public id (`Bearer <id>:<secret>`).
    pub id: String,
    /// The secret; `Bearer <secret>` alone is accepted too.
    pub secret: String,
    /// When set, the key acts on this tenant only.
    #[serde(default)]
    pub tenant: Option<String>,
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .field("tenant", &self.tenant)
            .finish()
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) driver: DriverHandle,
    reloadable: Arc<RwLock<Reloadable>>,
    /// REST-issued access tokens (`/v1/access-tokens`).
    pub(crate) access: crate::access_store::Shared,
    /// The cluster engine, for `/healthz` and `/metrics`.
    pub(crate) cluster: Cluster,
}

/// What `/healthz` and `/metrics` show of the cluster engine.
#[derive(Clone, Debug)]
pub struct Cluster {
    /// This node's name.
    pub node: switchyard_core::cluster::NodeId,
    /// The engine's state and counters.
    pub status: Arc<switchyard_cluster::EngineStatus>,
    /// Where channel history lives when the engine keeps it (a cluster).
    pub history: Option<Arc<dyn switchyard_cluster::HistoryStore>>,
}

/// What a config reload replaces.
#[derive(Debug)]
pub struct Reloadable {
    /// API keys for `/v1/*`.
    pub keys: Vec<ApiKey>,
    /// Signs tokens for `POST /v1/tokens` (the first configured signing key).
    pub signing: Option<SigningKey>,
    /// The tenant of requests that name none.
    pub default_tenant: String,
    /// Whether `/metrics` needs an API key.
    pub metrics_need_key: bool,
    /// The access tokens written in the config (the hub holds these plus the
    /// REST-issued ones).
    pub access_tokens: Vec<switchyard_core::access::AccessToken>,
    /// Whether `/demo` is served (`[demo] enabled`).
    pub demo: bool,
    /// Whether `/dashboard` is served (`[dashboard] enabled`).
    pub dashboard: bool,
}

/// The control plane's shared, reloadable settings.
pub type Shared = Arc<RwLock<Reloadable>>;

/// An error response: `{"code","message"}` with a status.
pub(crate) struct ApiError(
    pub(crate) StatusCode,
    pub(crate) &'static str,
    pub(crate) String,
);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"code": self.1, "message": self.2}))).into_response()
    }
}

pub(crate) type ApiResult = Result<Response, ApiError>;

pub(crate) fn unauthorized() -> ApiError {
    ApiError(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "a valid API key is required: Authorization: Bearer <id>:<secret>".into(),
    )
}

pub(crate) fn driver_gone() -> ApiError {
    ApiError(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the server is shutting down".into(),
    )
}

/// Builds the router.
fn router(api: Api) -> Router {
    Router::new()
        .route("/healthz", get(metrics::healthz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/publish", post(publish::publish))
        .route("/broadcaster/publish", post(publish::broadcaster_publish))
        .route("/v1/tokens", post(control::tokens))
        .route("/v1/presence", get(control::presence))
        .route("/v1/history", get(history::history))
        .route("/v1/disconnect", post(control::disconnect))
        .route("/v1/usage", get(control::usage))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/channels", get(stats::channels))
        .route("/v1/peers/{id}", get(stats::peer))
        .route("/demo", get(pages::demo))
        .route("/dashboard", get(pages::dashboard))
        .route("/web/{file}", get(pages::asset))
        .route(
            "/v1/access-tokens",
            post(crate::access_store::create).get(crate::access_store::list),
        )
        .route(
            "/v1/access-tokens/{id}",
            delete(crate::access_store::revoke),
        )
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .layer(axum::middleware::map_response(pages::secure))
        .with_state(api)
}

/// The gRPC listener's unary `Publish` (`POST /v1/publish` with the API key in
/// metadata), answered by the same control plane.
pub fn grpc_publisher(
    driver: DriverHandle,
    reloadable: Shared,
    access: crate::access_store::Shared,
    cluster: Cluster,
) -> Arc<dyn switchyard_transports::grpc::Publisher> {
    Arc::new(publish::GrpcPublisher(Api {
        driver,
        reloadable,
        access,
        cluster,
    }))
}

/// The hook the WebSocket listener calls for plain HTTP connections.
pub fn http_fallback(
    driver: DriverHandle,
    reloadable: Shared,
    access: crate::access_store::Shared,
    cluster: Cluster,
) -> HttpFallback {
    let router = router(Api {
        driver,
        reloadable,
        access,
        cluster,
    });
    HttpFallback(Arc::new(
        move |stream: Box<dyn HttpIo>, remote: SocketAddr| {
            let service = hyper_util::service::TowerToHyperService::new(router.clone());
            Box::pin(async move {
                let io = hyper_util::rt::TokioIo::new(stream);
                let served = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(Duration::from_secs(10))
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(io, service)
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%remote, %error, "http connection ended with an error");
                }
            })
        },
    ))
}

impl Api {
    pub(crate) fn settings(&self) -> std::sync::RwLockReadGuard<'_, Reloadable> {
        self.reloadable
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The tenant the caller may act on: the key's, else the asked one, else the default.
    fn tenant(&self, headers: &HeaderMap, asked: Option<String>) -> Result<String, ApiError> {
        let key = self.key(headers).ok_or_else(unauthorized)?;
        match (&key.tenant, asked) {
            (Some(bound), Some(asked)) if *bound != asked => Err(ApiError(
                StatusCode::FORBIDDEN,
                "tenant_not_allowed",
                "this API key is bound to another tenant".into(),
            )),
            (Some(bound), _) => Ok(bound.clone()),
            (None, asked) => Ok(asked.unwrap_or_else(|| self.settings().default_tenant.clone())),
        }
    }

    /// The API key the request presents, if it is a configured one.
    pub(crate) fn key(&self, headers: &HeaderMap) -> Option<ApiKey> {
        let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        let presented = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))?
            .trim();
        self.settings()
            .keys
            .iter()
            .find(|k| {
                let full = presented.split_once(':').is_some_and(|(id, secret)| {
                    constant_eq(id, &k.id) && constant_eq(secret, &k.secret)
                });
                full || constant_eq(presented, &k.secret)
            })
            .cloned()
    }
}

/// Compares secrets in time independent of where they differ.
fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../../docs/openapi.json"),
    )
        .into_response()
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_message", e.to_string()))
}
