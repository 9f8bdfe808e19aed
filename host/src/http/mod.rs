//! The HTTP layer: handlers parse, authorize, call one service and render. No handler decides
//! a state change.
//!
//! - [`api`]: the mini-program's API (`/api/*`, user session tokens).
//! - [`admin`]: the back office (`/admin/*`, `WXPAY_ADMIN_TOKEN`).
//! - [`notify`]: WeChat Pay's notifications (`/notify/*`).
//! - [`ops`]: `/healthz`, `/metrics`.
//! - [`error`]: [`AppError`] (API) and [`NotifyError`] (answers to WeChat).

pub mod admin;
pub mod api;
pub mod error;
pub mod notify;
pub mod ops;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::trace::TraceLayer;

pub use error::{AppError, NotifyError};

use crate::domain::{Order, OutTradeNo};
use crate::service::AppState;

/// The router with every route, the body size limit and request tracing.
pub fn app(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/api/login", post(api::login))
        .route("/api/orders/{out_trade_no}", get(api::order))
        .route("/api/orders/{out_trade_no}/pay", post(api::pay))
        .route("/admin/orders", post(admin::create_order))
        .route("/admin/orders/{out_trade_no}", get(admin::order))
        .route("/admin/orders/{out_trade_no}/close", post(admin::close))
        .route("/admin/orders/{out_trade_no}/refund", post(admin::refund))
        .route("/admin/orders/{out_trade_no}/accept", post(admin::accept))
        .route("/notify/pay", post(notify::pay))
        .route("/notify/refund", post(notify::refund))
        .route("/healthz", get(ops::healthz))
        .route("/metrics", get(ops::metrics))
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_announced_oversize,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Answers 413 for a body whose announced `Content-Length` is over the limit, before reading any
/// of it: otherwise the server reads up to the limit first, and a client can hold a connection
/// by trickling an oversized body. Bodies without a length are still cut off at the limit by
/// `DefaultBodyLimit` while they are read.
async fn refuse_announced_oversize(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return AppError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

/// SHA-256 hex of a token: only hashes are stored, so a database leak yields no session.
pub(crate) fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A mini-program user authenticated by the host's session token.
#[derive(Debug)]
pub struct AuthUser {
    /// The user's openid.
    pub openid: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthorized)?;
        if token.len() > 128 {
            return Err(AppError::Unauthorized);
        }
        let openid = state
            .store
            .session_openid(&token_hash(token), state.now())
            .await?
            .ok_or(AppError::Unauthorized)?;
        Ok(Self { openid })
    }
}

/// The back office, authenticated by `WXPAY_ADMIN_TOKEN`.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthorized)?;
        // Compare digests in constant time (also hides the length).
        let want = Sha256::digest(state.config.admin_token.expose().as_bytes());
        let got = Sha256::digest(token.as_bytes());
        if bool::from(want.as_slice().ct_eq(got.as_slice())) {
            Ok(Self)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

/// JSON body extractor whose rejections are [`AppError`]s.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// An order number from the path: a malformed one cannot name an order, so it is a 404 like
/// any unknown order.
fn path_no(s: String) -> Result<OutTradeNo, AppError> {
    OutTradeNo::parse(s).map_err(|_| AppError::NotFound)
}

/// The order as the mini-program sees it.
fn order_json(o: &Order) -> Value {
    json!({
        "out_trade_no": o.out_trade_no,
        "amount": o.amount,
        "description": o.description,
        "attach": o.attach,
        "state": o.state,
        "transaction_id": o.transaction_id,
        "refunded": o.refunded,
        "created_at": o.created_at,
        "expire_at": o.expire_at,
        "updated_at": o.updated_at,
    })
}

#[cfg(test)]
mod tests;
