//! Operations endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use super::AppError;
use super::openapi::{ErrorBody, Status};
use crate::service::AppState;

/// `GET /healthz`: 200 while the database answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses(
        (status = 200, description = "Alive", body = Status),
        (status = 500, description = "The database does not answer", body = ErrorBody),
    ))]
pub(super) async fn healthz(State(s): State<AppState>) -> Result<Json<Status>, AppError> {
    s.store.ping().await?;
    Ok(Json(Status {
        status: "ok".into(),
        reasons: None,
    }))
}

/// `GET /readyz`: 200 once the database answers and (APIv3) at least one platform key is held
/// — without one every notification would be refused; 503 with the reasons otherwise.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "Ready", body = Status),
        (status = 503, description = "Not ready, with the reasons", body = Status),
    ))]
pub(super) async fn readyz(State(s): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    if let Err(e) = s.store.ping().await {
        tracing::warn!(error = %e, "not ready: database");
        reasons.push("database unreachable".to_owned());
    }
    // APIv2 answers are signed with the APIv2 key: no platform key to wait for.
    if s.wechat.v2().is_none() && s.wechat.platform_key_count() == 0 {
        reasons.push("no WeChat Pay platform key held yet".to_owned());
    }
    if reasons.is_empty() {
        Json(Status {
            status: "ready".into(),
            reasons: None,
        })
        .into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(Status {
                status: "not_ready".into(),
                reasons: Some(reasons),
            }),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text.
#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses(
        (status = 200, description = "Prometheus text format 0.0.4", body = String, content_type = "text/plain"),
        (status = 500, description = "The database does not answer", body = ErrorBody),
    ))]
pub(super) async fn metrics(State(s): State<AppState>) -> Result<Response, AppError> {
    let counts = s.store.order_counts().await?;
    let body = s.metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// The rendered OpenAPI document (rendered once, when the router is built).
#[derive(Clone, Debug)]
pub(super) struct OpenApiJson(pub(super) Arc<String>);

/// `GET /openapi.json`: this API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "admin",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub(super) async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.0.as_str().to_owned(),
    )
        .into_response()
}
