//! The operator's endpoints: mint a token (`POST /v1/tokens`), list a channel's
//! presence, disconnect a peer and read a tenant's usage.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use switchyard_core::CloseCode;
use switchyard_core::token::mint;

use super::{Api, ApiError, ApiResult, driver_gone, parse, unauthorized};

#[derive(Deserialize)]
struct TokenBody {
    sub: String,
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(flatten)]
    claims: serde_json::Map<String, Value>,
}

pub(super) async fn tokens(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
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

/// `GET /v1/presence`'s query: the channel, and the tenant if the key may choose.
#[derive(Deserialize)]
pub(super) struct PresenceQuery {
    channel: String,
    #[serde(default)]
    tenant: Option<String>,
}

pub(super) async fn presence(
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

pub(super) async fn disconnect(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let body: DisconnectBody = parse(&body)?;
    let tenant = api.tenant(&headers, body.tenant)?;
    let peer = body.peer_id;
    let (closed, elsewhere) = api
        .driver
        .call(move |hub, now| {
            let elsewhere = hub.peer_on_other_nodes(&tenant, &peer);
            let closed = hub.disconnect(
                now,
                &tenant,
                &peer,
                CloseCode::ADMIN_DISCONNECT,
                "disconnected by an operator",
            );
            (closed, elsewhere)
        })
        .await
        .map_err(|_| driver_gone())?;
    // A cluster node also tells every other node (the core's `Outbound::Disconnect`).
    // When only other nodes hold the peer, their closes are not counted here: 202,
    // forwarded.
    if closed == 0 && elsewhere {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"disconnected": 0, "forwarded": true})),
        )
            .into_response());
    }
    if closed == 0 {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            "peer_not_found",
            "no such peer is connected".into(),
        ));
    }
    Ok(Json(json!({"disconnected": closed})).into_response())
}

pub(super) async fn usage(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
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
