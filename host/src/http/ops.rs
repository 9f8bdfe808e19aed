//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppError;
use crate::service::AppState;

/// `GET /healthz`: 200 while the database answers.
pub(super) async fn healthz(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    s.store.ping().await?;
    Ok(Json(json!({ "status": "ok" })))
}

/// `GET /readyz`: 200 once the database answers and (APIv3) at least one platform key is held
/// — without one every notification would be refused; 503 with the reasons otherwise.
pub(super) async fn readyz(State(s): State<AppState>) -> Response {
    let mut reasons = Vec::new();
    if let Err(e) = s.store.ping().await {
        tracing::warn!(error = %e, "not ready: database");
        reasons.push("database unreachable");
    }
    if s.wechat.platform_key_count() == 0 {
        reasons.push("no WeChat Pay platform key held yet");
    }
    if reasons.is_empty() {
        Json(json!({ "status": "ready" })).into_response()
    } else {
        (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "not_ready", "reasons": reasons })),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(s): State<AppState>) -> Result<Response, AppError> {
    let counts = s.store.order_counts().await?;
    let body = s.metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
