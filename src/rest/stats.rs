//! What the dashboard reads: `GET /v1/stats` (connections by transport and dialect,
//! channels, message and delivery totals, closes by code), and the two queries the
//! core cannot answer yet, `GET /v1/channels` and `GET /v1/peers/{id}` (501 until it can).
//!
//! The totals are counters: the dashboard takes rates from the difference between two
//! polls, so the server keeps no history.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Map, Value, json};
use switchyard_core::{CloseCode, Dialect};

use super::{Api, ApiError, ApiResult, driver_gone, unauthorized};

/// `GET /v1/stats`: the whole server's counts. They cover every tenant, so a key bound
/// to one tenant may not read them.
pub(super) async fn stats(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    server_wide_key(&api, &headers)?;
    let stats = api
        .driver
        .call(|hub, _| hub.stats())
        .await
        .map_err(|_| driver_gone())?;
    let m = api.driver.metrics();
    let by_transport: Map<String, Value> = m
        .connections_by_wire()
        .into_iter()
        .map(|(wire, n)| (wire.to_owned(), json!(n)))
        .collect();
    let by_dialect: Map<String, Value> = stats
        .connections_by_dialect
        .iter()
        .map(|(d, n)| (Dialect::name(*d).to_owned(), json!(n)))
        .collect();
    let closes: Vec<Value> = m
        .closes()
        .into_iter()
        .map(|(code, n)| json!({"code": code, "name": CloseCode(code).name(), "count": n}))
        .collect();
    Ok(Json(json!({
        "connections": stats.connections,
        "unauthenticated": stats.unauthenticated,
        "connectionsByTransport": by_transport,
        "connectionsByDialect": by_dialect,
        "channels": stats.channels,
        "memberships": stats.memberships,
        "patternSubscriptions": stats.pattern_subscriptions,
        "framesIn": m.frames_in.load(Ordering::Relaxed),
        "framesOut": m.frames_out.load(Ordering::Relaxed),
        "messages": m.messages.load(Ordering::Relaxed),
        "deliveries": m.deliveries.load(Ordering::Relaxed),
        "closesByCode": closes,
    }))
    .into_response())
}

/// `GET /v1/channels`: every channel with its member count. The core has no query
/// for it yet (the one it needs: `Hub::channels(&self, tenant: &str) -> Vec<(String,
/// usize)>`, see docs/openapi.json), so this answers 501 after checking the key.
pub(super) async fn channels(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    api.tenant(&headers, None)?;
    Err(not_yet("Hub::channels"))
}

/// `GET /v1/peers/{id}`: a peer's connections and subscriptions; 501 like
/// [`channels`] until the core has `Hub::peer(&self, tenant, peer)`.
pub(super) async fn peer(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(_peer): Path<String>,
) -> ApiResult {
    api.tenant(&headers, None)?;
    Err(not_yet("Hub::peer"))
}

fn not_yet(query: &str) -> ApiError {
    ApiError(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        format!("this server's core cannot answer it yet (it needs {query})"),
    )
}

/// Refuses a missing key (401) and a key bound to a tenant (403).
fn server_wide_key(api: &Api, headers: &HeaderMap) -> Result<(), ApiError> {
    let key = api.key(headers).ok_or_else(unauthorized)?;
    if key.tenant.is_some() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "tenant_not_allowed",
            "these counts cover every tenant: use a key bound to none".into(),
        ));
    }
    Ok(())
}
