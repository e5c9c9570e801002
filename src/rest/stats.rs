//! What the dashboard reads: `GET /v1/stats` (connections by transport and dialect,
//! channels, message and delivery totals, closes by code), `GET /v1/channels` (each
//! channel's members) and `GET /v1/peers/{id}` (a peer's connections and what each is
//! in).
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

/// `GET /v1/channels`: the tenant's channels and rooms on this node with their
/// member connections.
pub(super) async fn channels(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let tenant = api.tenant(&headers, None)?;
    let channels = api
        .driver
        .call(move |hub, _| hub.channels(&tenant))
        .await
        .map_err(|_| driver_gone())?;
    let channels: Vec<Value> = channels
        .into_iter()
        .map(|(channel, members)| json!({"channel": channel, "members": members}))
        .collect();
    Ok(Json(json!({ "channels": channels })).into_response())
}

/// `GET /v1/peers/{id}`: a peer's connections on this node and what each is in.
pub(super) async fn peer(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(peer): Path<String>,
) -> ApiResult {
    let tenant = api.tenant(&headers, None)?;
    let id = peer.clone();
    let conns = api
        .driver
        .call(move |hub, _| hub.peer(&tenant, &id))
        .await
        .map_err(|_| driver_gone())?;
    if conns.is_empty() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "peer_not_found",
            "no connection of this peer on this node".into(),
        ));
    }
    let connections: Vec<Value> = conns
        .into_iter()
        .map(|c| {
            json!({
                "conn": c.conn.as_u64(),
                "dialect": c.dialect.name(),
                "room": c.room,
                "channels": c.channels,
                "patterns": c.patterns,
            })
        })
        .collect();
    Ok(Json(json!({"peerId": peer, "connections": connections})).into_response())
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
