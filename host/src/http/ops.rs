//! Operations endpoints: liveness and Prometheus metrics.

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

/// `GET /metrics`: Prometheus text.
pub(super) async fn metrics(State(s): State<AppState>) -> Result<Response, AppError> {
    let counts = s.store.order_counts().await?;
    let body = s.metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}
