//! The `/v1/access-tokens` routes: issue (the token shown once), list (never a
//! secret or a hash), revoke (closing the token's connections, on every node).

use super::*;

/// `POST /v1/access-tokens`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateBody {
    #[serde(default)]
    tenants: Vec<String>,
    /// Fills both lists, like a JWT's `channels`.
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    publish_channels: Vec<String>,
    #[serde(default)]
    subscribe_channels: Vec<String>,
    #[serde(default)]
    permissions: Option<Vec<String>>,
    #[serde(default)]
    allowed_ips: Vec<String>,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    expires_at: Option<u64>,
    #[serde(default)]
    ttl: Option<u64>,
    #[serde(default)]
    description: Option<String>,
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "invalid_message", message)
}

/// The table the hub should hold: the config's tokens, then the store's.
fn table(api: &Api, store: &AccessStore) -> Vec<AccessToken> {
    let mut tokens = api.settings().access_tokens.clone();
    tokens.extend(store.tokens());
    tokens
}

/// Hands `tokens` to the hub; `Ok(closed connections)` or the hub's refusal.
async fn apply(api: &Api, tokens: Vec<AccessToken>) -> Result<Result<usize, String>, ApiError> {
    api.driver
        .call(move |hub, now| {
            hub.set_access_tokens(now, tokens)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|_| driver_gone())
}

fn store_failed(e: &StoreError) -> ApiError {
    tracing::error!(error = %e, "could not persist access tokens");
    ApiError(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the access token file could not be written".into(),
    )
}

pub(crate) async fn create(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let key = api.key(&headers).ok_or_else(unauthorized)?;
    let body: CreateBody = parse(&body)?;
    let mut tenants = body.tenants;
    if let Some(bound) = &key.tenant {
        if tenants.iter().any(|t| t != bound) {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                "tenant_not_allowed",
                "this API key is bound to another tenant".into(),
            ));
        }
        if tenants.is_empty() {
            tenants.push(bound.clone());
        }
    }
    let now = unix_now();
    let expires_at = match (body.expires_at, body.ttl) {
        (Some(_), Some(_)) => return Err(bad_request("give expiresAt or ttl, not both".into())),
        (at, ttl) => at.or(ttl.map(|t| now.saturating_add(t))),
    };
    let mut publish = body.channels.clone();
    publish.extend(body.publish_channels);
    let mut subscribe = body.channels;
    subscribe.extend(body.subscribe_channels);
    let (id, token) = mint();
    let record = Record {
        secret_sha256: access::to_hex(&access::hash_secret(
            access::parse(&token).expect("minted tokens parse").1,
        )),
        id,
        tenants,
        publish_channels: publish,
        subscribe_channels: subscribe,
        permissions: body
            .permissions
            .unwrap_or_else(|| vec!["publish".into(), "subscribe".into(), "presence".into()]),
        allowed_ips: body.allowed_ips,
        allowed_origins: body.allowed_origins,
        expires_at,
        created_at: now,
        revoked_at: None,
        description: body.description,
    };
    record.to_core().map_err(bad_request)?;
    let mut store = api.access.lock().await;
    let mut tokens = table(&api, &store);
    tokens.push(record.to_core().map_err(bad_request)?);
    apply(&api, tokens).await?.map_err(bad_request)?;
    store.records.push(record.clone());
    if let Err(e) = store.save() {
        store.records.pop();
        let tokens = table(&api, &store);
        let _ = apply(&api, tokens).await;
        return Err(store_failed(&e));
    }
    store.tell_cluster(&record, WriteMode::Insert).await;
    tracing::info!(id = %record.id, tenants = ?record.tenants, "access token issued");
    let mut shown = record.public();
    shown["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(shown)).into_response())
}

/// Whether a key bound to `bound` (or to no tenant) may see and revoke `record`.
fn visible(bound: Option<&String>, record: &Record) -> bool {
    bound.is_none_or(|b| !record.tenants.is_empty() && record.tenants.iter().all(|t| t == b))
}

pub(crate) async fn list(State(api): State<Api>, headers: HeaderMap) -> ApiResult {
    let key = api.key(&headers).ok_or_else(unauthorized)?;
    let bound = key.tenant.as_ref();
    let store = api.access.lock().await;
    let mut tokens: Vec<Value> = store
        .records
        .iter()
        .filter(|r| visible(bound, r))
        .map(Record::public)
        .collect();
    tokens.extend(
        api.settings()
            .access_tokens
            .iter()
            .filter(|t| {
                bound.is_none_or(|b| !t.tenants.is_empty() && t.tenants.iter().all(|x| x == b))
            })
            .map(configured),
    );
    Ok(Json(json!({"tokens": tokens})).into_response())
}

pub(crate) async fn revoke(
    State(api): State<Api>,
    headers: HeaderMap,
    UrlPath(id): UrlPath<String>,
) -> ApiResult {
    let key = api.key(&headers).ok_or_else(unauthorized)?;
    let mut store = api.access.lock().await;
    let Some(i) = store
        .records
        .iter()
        .position(|r| r.id == id && visible(key.tenant.as_ref(), r))
    else {
        let configured = api.settings().access_tokens.iter().any(|t| t.id == id);
        return Err(if configured && key.tenant.is_none() {
            ApiError(
                StatusCode::CONFLICT,
                "configured_token",
                "this token is in the config file: remove it there and reload".into(),
            )
        } else {
            ApiError(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such access token".into(),
            )
        });
    };
    if store.records[i].revoked_at.is_none() {
        store.records[i].revoked_at = Some(unix_now());
        if let Err(e) = store.save() {
            store.records[i].revoked_at = None;
            return Err(store_failed(&e));
        }
    }
    // Shared even when already revoked here: a node that missed it catches up.
    store
        .tell_cluster(&store.records[i], WriteMode::Replace)
        .await;
    let tokens = table(&api, &store);
    let closed = apply(&api, tokens)
        .await?
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, "internal", e))?;
    tracing::info!(%id, closed, "access token revoked");
    Ok(Json(json!({"id": id, "revoked": true, "disconnected": closed})).into_response())
}
