//! `GET /v1/history`: a page of a channel's history, for readers that are not
//! subscribers (a backend catching up, a Broadcaster client, which cannot recover
//! on subscribe) and for reloading after `recovered: false`.
//!
//! [`read_history`] is the one place a page is fetched: on one node, from this
//! node's hub. A cluster engine that keeps history elsewhere answers there.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use switchyard_core::{ControlError, HistoryPage};

use super::{Api, ApiError, ApiResult, driver_gone};

/// Messages in a page when the query names no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` a query may ask for.
const MAX_LIMIT: usize = 1000;

/// `GET /v1/history`'s query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HistoryQuery {
    channel: String,
    #[serde(default)]
    tenant: Option<String>,
    /// The last offset the reader has (0: from the oldest kept).
    #[serde(default)]
    since: u64,
    #[serde(default)]
    limit: Option<usize>,
}

pub(super) async fn history(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult {
    // The key first: an unauthenticated caller learns nothing, not even a bad query.
    api.key(&headers).ok_or_else(super::unauthorized)?;
    let Query(q) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad_request(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    let tenant = api.tenant(&headers, q.tenant)?;
    let page = read_history(&api, tenant, q.channel.clone(), q.since, limit).await?;
    let body = render(&q.channel, &page)?;
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Up to `limit` messages of `channel` in `tenant` after offset `since`, with where
/// the stream stands. 404 `no_history` when no `[[history]]` rule names the channel,
/// 400 `invalid_channel` for a pattern or a bad name.
pub(crate) async fn read_history(
    api: &Api,
    tenant: String,
    channel: String,
    since: u64,
    limit: usize,
) -> Result<HistoryPage, ApiError> {
    if let Some(store) = &api.cluster.history {
        // On a cluster node the stream lives with the engine: the hub only knows the
        // channel's rule (and checks the name, as on one node).
        let probe = channel.clone();
        let rule = api
            .driver
            .call(move |hub, now| {
                let shared = hub.history_is_shared();
                (shared, hub.history_ttl(&probe), hub.unix_ms(now))
            })
            .await
            .map_err(|_| driver_gone())?;
        if let (true, ttl, unix_ms) = rule {
            let ttl = ttl.map_err(refused)?;
            let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
            let (epoch, offset, publications) = store
                .page(&tenant, &channel, since, limit, ttl_ms)
                .await
                .map_err(|why| {
                    ApiError(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        format!("the cluster's history store cannot be read: {why}"),
                    )
                })?;
            return Ok(HistoryPage::from_shared(
                epoch,
                offset,
                publications,
                unix_ms,
                ttl,
            ));
        }
    }
    api.driver
        .call(move |hub, now| hub.history(now, &tenant, &channel, since, limit))
        .await
        .map_err(|_| driver_gone())?
        .map_err(refused)
}

/// A refusal of the hub's, as the REST API says it.
fn refused(e: ControlError) -> ApiError {
    match e {
        ControlError::NoHistory => ApiError(
            StatusCode::NOT_FOUND,
            "no_history",
            "this channel keeps no history: no [[history]] rule names it".into(),
        ),
        ControlError::InvalidChannel(why) => {
            ApiError(StatusCode::BAD_REQUEST, "invalid_channel", why)
        }
        other => ApiError(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            other.to_string(),
        ),
    }
}

/// The response body: the page, each message's `data` written as it was published.
fn render(channel: &str, page: &HistoryPage) -> Result<String, ApiError> {
    #[derive(Serialize)]
    struct Body<'a> {
        channel: &'a str,
        epoch: &'a str,
        offset: u64,
        messages: Vec<Stored<'a>>,
        next: Option<u64>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Stored<'a> {
        offset: u64,
        id: String,
        from: &'a str,
        data: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        event: Option<&'a str>,
        timestamp: String,
        unix_ms: u64,
    }
    let messages = page
        .messages
        .iter()
        .map(|m| {
            // Borrowed, so the bytes are written out as they are, never re-encoded.
            let data: &RawValue = serde_json::from_slice(&m.data).map_err(|e| {
                tracing::error!(offset = m.offset, error = %e, "stored data is not JSON");
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "a stored message is unreadable".into(),
                )
            })?;
            Ok(Stored {
                offset: m.offset,
                id: m.stamp.id(),
                from: &m.from,
                data,
                event: m.event.as_deref(),
                timestamp: m.stamp.create_time(),
                unix_ms: m.stamp.unix_ms,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    // More to read when the page stops short of the stream's last offset.
    let next = messages
        .last()
        .map(|m| m.offset)
        .filter(|&last| last < page.offset);
    let body = Body {
        channel,
        epoch: &page.epoch,
        offset: page.offset,
        messages,
        next,
    };
    // Strings, numbers and already-valid JSON: serialising cannot fail.
    Ok(serde_json::to_string(&body).expect("a history page always serialises"))
}

fn bad_request(message: String) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, "invalid_request", message)
}
