//! Publishing on the server's behalf: `POST /v1/publish` and The Broadcaster's
//! `POST /broadcaster/publish`, one path into `Hub::publish_event` with each API's
//! own body, answer and error codes.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use switchyard_core::{ControlError, Published};
use switchyard_transports::grpc::pb::{PublishReply, PublishRequest};

use super::{Api, ApiError, ApiResult, driver_gone, parse, unauthorized};

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

pub(super) async fn publish(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> ApiResult {
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
pub(super) async fn broadcaster_publish(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
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

/// Unary gRPC `Publish`: `POST /v1/publish`'s rules with the API key in metadata. A
/// refusal's status message starts with the REST error code (`unauthenticated: …`),
/// which the trailer `switchyard-error-code` carries alone.
pub(super) struct GrpcPublisher(pub(super) Api);

#[async_trait::async_trait]
impl switchyard_transports::grpc::Publisher for GrpcPublisher {
    async fn publish(
        &self,
        metadata: &tonic::metadata::MetadataMap,
        request: PublishRequest,
    ) -> Result<PublishReply, tonic::Status> {
        let headers = metadata.clone().into_headers();
        let published = async {
            let asked = (!request.tenant.is_empty()).then_some(request.tenant);
            let tenant = self.0.tenant(&headers, asked)?;
            let data = if request.payload.is_empty() {
                None
            } else {
                let text = std::str::from_utf8(&request.payload).ok();
                let raw = text.and_then(|t| serde_json::from_str(t).ok());
                Some(raw.ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "malformed",
                        "payload is not UTF-8 JSON text".into(),
                    )
                })?)
            };
            publish_event(&self.0, tenant, request.channel, None, data).await
        }
        .await
        .map_err(grpc_status)?;
        Ok(PublishReply {
            deliveries: published.deliveries as u64,
            id: published.stamp.id(),
        })
    }
}

/// A REST refusal as a gRPC status.
fn grpc_status(ApiError(status, code, message): ApiError) -> tonic::Status {
    let grpc = match status {
        StatusCode::UNAUTHORIZED => tonic::Code::Unauthenticated,
        StatusCode::FORBIDDEN => tonic::Code::PermissionDenied,
        StatusCode::TOO_MANY_REQUESTS => tonic::Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => tonic::Code::Unavailable,
        _ => tonic::Code::InvalidArgument,
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert(
        "switchyard-error-code",
        tonic::metadata::MetadataValue::from_static(code),
    );
    tonic::Status::with_metadata(grpc, format!("{code}: {message}"), metadata)
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
