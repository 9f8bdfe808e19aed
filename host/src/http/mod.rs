//! The HTTP layer: handlers parse, authorize, call one service and render. No handler decides
//! a state change.
//!
//! - [`api`]: the mini-program's API (`/api/*`, user session tokens).
//! - [`admin`]: the back office (`/admin/*`, `WXPAY_ADMIN_TOKEN`).
//! - [`notify`]: WeChat Pay's notifications (`/notify/*`).
//! - [`ops`]: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers' own attributes.
//! - [`error`]: [`AppError`] (API) and [`NotifyError`] (answers to WeChat).
//! - [`throttle`]: per-IP token buckets and the client IP behind trusted proxies.
//!
//! Two routers: [`public_app`] (what WeChat and the mini-program reach: `/api/*`, `/notify/*`,
//! `/healthz`, `/readyz`) and [`admin_app`] (the money-moving back office and `/metrics`, served
//! on the private `WXPAY_ADMIN_LISTEN` only). Both carry the body limit, a request timeout, a
//! cap on requests in flight and request tracing.

pub mod admin;
pub mod api;
pub mod error;
pub mod notify;
pub mod openapi;
pub mod ops;
pub mod throttle;

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::trace::TraceLayer;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::{AppError, NotifyError};

use crate::domain::{Order, OrderState, OutTradeNo};
use crate::service::AppState;

/// Per-process throttles shared by the two routers.
#[derive(Debug)]
pub struct Edge {
    /// `/api/login` per client IP.
    pub login: throttle::Throttle,
    /// Failed back-office authentications per client IP (10 a minute).
    pub admin_failures: throttle::Throttle,
    /// Reverse proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpAddr>,
    /// `/api/orders/{no}/sync`: one WeChat query per order every [`SYNC_WINDOW`].
    pub sync: throttle::OncePer,
}

/// How often `/api/orders/{no}/sync` may query WeChat for one order; asked more often, it answers
/// the stored order.
pub const SYNC_WINDOW: std::time::Duration = std::time::Duration::from_secs(3);

impl Edge {
    /// The throttles configured in `state`.
    #[must_use]
    pub fn new(state: &AppState) -> Arc<Self> {
        Arc::new(Self {
            login: throttle::Throttle::new(state.config.edge.login_rate_per_min),
            admin_failures: throttle::Throttle::new(10),
            trusted_proxies: state.config.edge.trusted_proxies.clone(),
            sync: throttle::OncePer::new(SYNC_WINDOW),
        })
    }

    /// The client's IP for a request (see [`throttle::client_ip`]).
    #[must_use]
    pub fn client_ip(
        &self,
        parts_ext: &axum::http::Extensions,
        headers: &axum::http::HeaderMap,
    ) -> Option<IpAddr> {
        throttle::client_ip(
            crate::server::peer_of(parts_ext),
            headers,
            &self.trusted_proxies,
        )
    }
}

/// The internet-facing routes: `/api/*`, `/notify/*`, `/healthz`, `/readyz`.
fn public_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::login))
        .routes(routes!(api::order))
        .routes(routes!(api::pay))
        .routes(routes!(api::sync))
        .routes(routes!(api::decrypt))
        .routes(routes!(notify::pay))
        .routes(routes!(notify::refund))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
}

/// The back-office routes: `/admin/*`, `/metrics`, `/openapi.json`, `/healthz`, `/readyz`.
fn admin_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(admin::create_order))
        .routes(routes!(admin::order))
        .routes(routes!(admin::close))
        .routes(routes!(admin::refund))
        .routes(routes!(admin::accept))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi_json))
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
}

/// The OpenAPI document of both listeners, as generated from the routes they serve.
#[must_use]
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, public) = public_routes().split_for_parts();
    let (_, admin) = admin_routes().split_for_parts();
    openapi::document(public, admin)
}

/// The internet-facing router: `/api/*`, `/notify/*`, `/healthz`, `/readyz`; everything else,
/// `/admin/*` included, is 404.
pub fn public_app(state: AppState, edge: Arc<Edge>) -> Router {
    let (router, _) = public_routes().split_for_parts();
    finish(router, state, edge)
}

/// The private back-office router: `/admin/*`, `/metrics`, `/openapi.json`, `/healthz`,
/// `/readyz`.
pub fn admin_app(state: AppState, edge: Arc<Edge>) -> Router {
    let (router, _) = admin_routes().split_for_parts();
    let doc = ops::OpenApiJson(Arc::new(
        openapi_document()
            .to_pretty_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
    ));
    finish(router.layer(axum::Extension(doc)), state, edge)
}

fn finish(router: Router<AppState>, state: AppState, edge: Arc<Edge>) -> Router {
    let limit = state.config.body_limit;
    let timeout = state.config.edge.request_timeout;
    let in_flight = state.config.edge.max_in_flight;
    router
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            (limit, state.wechat.v2().is_some()),
            refuse_announced_oversize,
        ))
        .layer(axum::Extension(edge))
        .layer(tower::limit::ConcurrencyLimitLayer::new(in_flight))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Answers 413 for a body whose announced `Content-Length` is over the limit, before reading any
/// of it: otherwise the server reads up to the limit first, and a client can hold a connection
/// by trickling an oversized body. Bodies without a length are still cut off at the limit by
/// `DefaultBodyLimit` while they are read.
async fn refuse_announced_oversize(
    State((limit, v2)): State<(usize, bool)>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        // WeChat is answered in its own shape, API clients in theirs.
        if req.uri().path().starts_with("/notify/") {
            let e = NotifyError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large");
            return if v2 {
                notify::v2_reply(Err(e))
            } else {
                e.into_response()
            };
        }
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
        let edge = parts.extensions.get::<Arc<Edge>>().cloned();
        let ip = edge
            .as_ref()
            .and_then(|e| e.client_ip(&parts.extensions, &parts.headers));
        if let (Some(edge), Some(ip)) = (&edge, ip)
            && edge.admin_failures.exhausted(ip)
        {
            return Err(AppError::Throttled {
                retry_after_secs: 60,
            });
        }
        // Compare digests in constant time (also hides the length).
        let want = Sha256::digest(state.config.admin_token.expose().as_bytes());
        let got = Sha256::digest(bearer(parts).unwrap_or("").as_bytes());
        if bool::from(want.as_slice().ct_eq(got.as_slice())) {
            return Ok(Self);
        }
        // The token itself is never logged.
        tracing::warn!(
            client = %ip.map_or_else(|| "-".to_owned(), |ip| ip.to_string()),
            path = %parts.uri.path(),
            "back-office authentication failed"
        );
        if let (Some(edge), Some(ip)) = (&edge, ip) {
            let _ = edge.admin_failures.take(ip);
        }
        Err(AppError::Unauthorized)
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

/// An order as the mini-program sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderView {
    /// Merchant order number.
    pub out_trade_no: String,
    /// Amount to pay, in fen.
    pub amount: i64,
    /// Goods description.
    pub description: String,
    /// Merchant data returned in the notification.
    pub attach: Option<String>,
    /// Current state.
    pub state: OrderState,
    /// WeChat transaction id, once paid.
    pub transaction_id: Option<String>,
    /// Amount refunded so far (fen).
    pub refunded: i64,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Payment deadline (unix seconds).
    pub expire_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
}

impl From<&Order> for OrderView {
    fn from(o: &Order) -> Self {
        Self {
            out_trade_no: o.out_trade_no.clone(),
            amount: o.amount,
            description: o.description.clone(),
            attach: o.attach.clone(),
            state: o.state,
            transaction_id: o.transaction_id.clone(),
            refunded: o.refunded,
            created_at: o.created_at,
            expire_at: o.expire_at,
            updated_at: o.updated_at,
        }
    }
}

#[cfg(test)]
mod tests;
