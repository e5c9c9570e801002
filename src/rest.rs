//! The REST control plane and operations endpoints, served on the WebSocket port (plain
//! HTTP requests there are routed here): publish, mint tokens, list presence,
//! disconnect, usage, `/healthz`, `/metrics` and the OpenAPI description.
//!
//! `POST /broadcaster/publish` is The Broadcaster's REST publish: its body
//! (`channel`, `event`, `payload`), its answer (`id`, `createTime`) and its error codes
//! (`InvalidArgument`, `Unauthenticated`, …), through the same `Hub::publish_event`.
//!
//! Every error is `{"code": "...", "message": "..."}` with a matching HTTP status.
//! `/v1/*` routes need an API key: `Authorization: Bearer <id>:<secret>` (Metered
//! style) or `Bearer <secret>` (an opaque key, Broadcaster style). A key may be bound
//! to a tenant, and then acts on that tenant only.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::token::{SigningKey, mint};
use switchyard_core::{CloseCode, ControlError, Dialect, Published};
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
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(openapi))
        .route("/v1/publish", post(publish))
        .route("/broadcaster/publish", post(broadcaster_publish))
        .route("/v1/tokens", post(tokens))
        .route("/v1/presence", get(presence))
        .route("/v1/disconnect", post(disconnect))
        .route("/v1/usage", get(usage))
        .route(
            "/v1/access-tokens",
            post(crate::access_store::create).get(crate::access_store::list),
        )
        .route(
            "/v1/access-tokens/{id}",
            delete(crate::access_store::revoke),
        )
        .fallback(|| async { ApiError(StatusCode::NOT_FOUND, "not_found", "no such route".into()) })
        .with_state(api)
}

/// The hook the WebSocket listener calls for plain HTTP connections.
pub fn http_fallback(
    driver: DriverHandle,
    reloadable: Shared,
    access: crate::access_store::Shared,
) -> HttpFallback {
    let router = router(Api {
        driver,
        reloadable,
        access,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    channel: String,
    #[serde(default)]
    data: Option<Box<serde_json::value::RawValue>>,
    /// A Broadcaster event name (JSON subscribers see it as `event`).
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    tenant: Option<String>,
}

async fn publish(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body: PublishBody = parse(&body)?;
    let tenant = api.tenant(&headers, body.tenant)?;
    let published = publish_event(&api, tenant, body.channel, body.event, body.data).await?;
    Ok(Json(json!({"deliveries": published.deliveries})).into_response())
}

/// The Broadcaster's REST publish body.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BroadcasterPublishBody {
    channel: String,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    payload: Option<Box<serde_json::value::RawValue>>,
    #[serde(default)]
    tenant: Option<String>,
}

/// `POST /broadcaster/publish`: answers `{"id","createTime"}`, and errors with The
/// Broadcaster's codes.
async fn broadcaster_publish(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let published = async {
        api.key(&headers).ok_or_else(unauthorized)?;
        let body: BroadcasterPublishBody = parse(&body)?;
        let tenant = api.tenant(&headers, body.tenant)?;
        publish_event(&api, tenant, body.channel, body.event, body.payload).await
    }
    .await
    .map_err(|ApiError(status, code, message)| {
        let code = match code {
            "unauthenticated" => "Unauthenticated",
            "tenant_not_allowed" => "PermissionDenied",
            "over_message_quota" => "FailedPrecondition",
            "unavailable" => "Internal",
            _ => "InvalidArgument",
        };
        ApiError(status, code, message)
    })?;
    Ok(Json(json!({
        "id": published.stamp.id(),
        "createTime": published.stamp.create_time(),
    }))
    .into_response())
}

/// Publishes on behalf of the server (`from: "_server"`), for both REST bodies.
async fn publish_event(
    api: &Api,
    tenant: String,
    channel: String,
    event: Option<String>,
    data: Option<Box<serde_json::value::RawValue>>,
) -> Result<Published, ApiError> {
    let data = data.map_or_else(
        || Bytes::from_static(b"null"),
        |d| Bytes::copy_from_slice(d.get().as_bytes()),
    );
    let result = api
        .driver
        .call(move |hub, now| hub.publish_event(now, &tenant, &channel, event.as_deref(), data))
        .await
        .map_err(|_| driver_gone())?;
    match result {
        Ok(published) => Ok(published),
        Err(ControlError::OverQuota) => Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "over_message_quota",
            "message quota for this period is used up".into(),
        )),
        Err(e) => Err(ApiError(
            StatusCode::BAD_REQUEST,
            code_of(&e),
            e.to_string(),
        )),
    }
}

fn code_of(e: &ControlError) -> &'static str {
    switchyard_core::ErrorCode::from(e.clone()).as_str()
}

#[derive(Deserialize)]
struct TokenBody {
    sub: String,
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(flatten)]
    claims: serde_json::Map<String, Value>,
}

async fn tokens(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let key = api.key(&headers).ok_or_else(unauthorized)?;
    let body: TokenBody = parse(&body)?;
    let signing = api.settings().signing.clone().ok_or_else(|| {
        ApiError(
            StatusCode::CONFLICT,
            "no_signing_key",
            "no signing key is configured".into(),
        )
    })?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let mut claims = body.claims;
    claims.insert("sub".into(), json!(body.sub));
    claims.entry("iat").or_insert(json!(now));
    if !claims.contains_key("exp") {
        claims.insert("exp".into(), json!(now + body.ttl.unwrap_or(3600)));
    }
    if let Some(bound) = &key.tenant {
        match claims.get("tenant").and_then(Value::as_str) {
            Some(t) if t != bound => {
                return Err(ApiError(
                    StatusCode::FORBIDDEN,
                    "tenant_not_allowed",
                    "this API key is bound to another tenant".into(),
                ));
            }
            _ => {
                claims.insert("tenant".into(), json!(bound));
            }
        }
    }
    let exp = claims.get("exp").cloned().unwrap_or(Value::Null);
    let token = mint(&signing, &Value::Object(claims))
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_message", e.to_string()))?;
    Ok(Json(json!({"token": token, "expiresAt": exp, "kid": signing.kid})).into_response())
}

#[derive(Deserialize)]
struct PresenceQuery {
    channel: String,
    #[serde(default)]
    tenant: Option<String>,
}

async fn presence(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<PresenceQuery>,
) -> ApiResult {
    let tenant = api.tenant(&headers, q.tenant)?;
    let channel = q.channel.clone();
    let peers = api
        .driver
        .call(move |hub, _| hub.presence(&tenant, &channel))
        .await
        .map_err(|_| driver_gone())?;
    let peers: Vec<Value> = peers
        .into_iter()
        .map(|(peer, meta)| json!({"peerId": peer.as_str(), "metadata": *meta}))
        .collect();
    Ok(Json(json!({"channel": q.channel, "peers": peers})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct DisconnectBody {
    peer_id: String,
    #[serde(default)]
    tenant: Option<String>,
}

async fn disconnect(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let body: DisconnectBody = parse(&body)?;
    let tenant = api.tenant(&headers, body.tenant)?;
    let peer = body.peer_id;
    let closed = api
        .driver
        .call(move |hub, now| {
            hub.disconnect(
                now,
                &tenant,
                &peer,
                CloseCode::ADMIN_DISCONNECT,
                "disconnected by an operator",
            )
        })
        .await
        .map_err(|_| driver_gone())?;
    if closed == 0 {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "peer_not_found",
            "no such peer is connected".into(),
        ));
    }
    Ok(Json(json!({"disconnected": closed})).into_response())
}

async fn usage(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let tenant = api.tenant(&headers, None)?;
    let t = tenant.clone();
    let (stats, quota) = api
        .driver
        .call(move |hub, _| (hub.stats(), hub.quota_usage(&t)))
        .await
        .map_err(|_| driver_gone())?;
    let m = api.driver.metrics();
    Ok(Json(json!({
        "tenant": tenant,
        "connections": stats.connections,
        "channels": stats.channels,
        "messages": m.messages.load(std::sync::atomic::Ordering::Relaxed),
        "deliveries": m.deliveries.load(std::sync::atomic::Ordering::Relaxed),
        "quota": quota.map(|(used, limit)| json!({"used": used, "limit": limit})),
    }))
    .into_response())
}

async fn metrics(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let need_key = api.settings().metrics_need_key;
    if need_key && api.key(&headers).is_none() {
        return Err(unauthorized());
    }
    let stats = api
        .driver
        .call(|hub, _| hub.stats())
        .await
        .map_err(|_| driver_gone())?;
    let m = api.driver.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    let mut out = String::new();
    let mut family = |name: &str, kind: &str, help: &str, samples: Vec<(String, String)>| {
        let _ = writeln!(out, "# HELP switchyard_{name} {help}");
        let _ = writeln!(out, "# TYPE switchyard_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "switchyard_{name}{labels} {value}");
        }
    };
    let one = |v: u64| vec![(String::new(), v.to_string())];
    family(
        "connections",
        "gauge",
        "Live connections by transport.",
        m.connections_by_wire()
            .into_iter()
            .map(|(w, n)| (format!("{{transport=\"{w}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "connections_by_dialect",
        "gauge",
        "Live connections by dialect.",
        stats
            .connections_by_dialect
            .iter()
            .map(|(d, n)| {
                (
                    format!("{{dialect=\"{}\"}}", Dialect::name(*d)),
                    n.to_string(),
                )
            })
            .collect(),
    );
    let scalars: [(&str, &str, &str, u64); 11] = [
        (
            "unauthenticated_connections",
            "gauge",
            "Connections waiting to authenticate.",
            stats.unauthenticated as u64,
        ),
        (
            "channels",
            "gauge",
            "Non-empty channels and rooms.",
            stats.channels as u64,
        ),
        (
            "memberships",
            "gauge",
            "Channel memberships (subscriptions and room members).",
            stats.memberships as u64,
        ),
        (
            "pattern_subscriptions",
            "gauge",
            "Wildcard subscriptions.",
            stats.pattern_subscriptions as u64,
        ),
        (
            "frames_in_total",
            "counter",
            "Frames received from connections.",
            load(&m.frames_in),
        ),
        (
            "frames_out_total",
            "counter",
            "Frames queued to connections.",
            load(&m.frames_out),
        ),
        (
            "messages_total",
            "counter",
            "Messages routed (publish, room broadcast, direct).",
            load(&m.messages),
        ),
        (
            "deliveries_total",
            "counter",
            "Fan-out deliveries of routed messages.",
            load(&m.deliveries),
        ),
        (
            "connections_opened_total",
            "counter",
            "Connections opened.",
            load(&m.opened),
        ),
        (
            "dropped_frames_total",
            "counter",
            "Frames for connections already gone.",
            load(&m.dropped_for_closed),
        ),
        (
            "connection_panics_total",
            "counter",
            "Connection tasks that panicked (each still closed in the hub).",
            load(&m.connection_panics),
        ),
    ];
    for (name, kind, help, value) in scalars {
        family(name, kind, help, one(value));
    }
    let closes = m.closes();
    let slow = closes
        .iter()
        .find(|(c, _)| *c == CloseCode::SLOW_CONSUMER.0)
        .map_or(0, |(_, n)| *n);
    family(
        "slow_consumer_closes_total",
        "counter",
        "Connections closed as slow consumers (4013).",
        one(slow),
    );
    family(
        "server_closes_total",
        "counter",
        "Connections the server closed, by close code.",
        closes
            .into_iter()
            .map(|(c, n)| (format!("{{code=\"{c}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "errors_total",
        "counter",
        "Refused frames, by error code.",
        m.refusals()
            .into_iter()
            .map(|(c, n)| (format!("{{code=\"{c}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "auth_failures_total",
        "counter",
        "Refused credentials, by reason.",
        m.auth_failures()
            .into_iter()
            .map(|(r, n)| (format!("{{reason=\"{r}\"}}"), n.to_string()))
            .collect(),
    );
    family(
        "inbox_depth",
        "gauge",
        "Messages waiting for the driver.",
        one(api.driver.inbox_depth() as u64),
    );
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("../docs/openapi.json"),
    )
        .into_response()
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, "invalid_message", e.to_string()))
}
