//! The mini-program's API: log in, read an own order, get `wx.requestPayment` parameters, sync
//! an order with WeChat after paying.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap};
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{AppError, AuthUser, Edge, JsonBody, OrderView, path_no, token_hash};
use crate::domain::OrderState;
use crate::service::orders::PayRequest;
use crate::service::{AppState, orders, payments, users};

/// `POST /api/login`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    /// The code from `wx.login()` (single use, 5 minutes).
    #[schema(pattern = "^[!-~]{1,128}$")]
    code: String,
}

/// A session.
#[derive(Serialize, ToSchema)]
pub(super) struct LoginAnswer {
    /// Bearer token for `/api/*`.
    token: String,
    /// The user's openid for this mini-program.
    openid: String,
    /// Seconds until the token expires.
    expires_in: i64,
}

/// The `wx.requestPayment` parameters, to pass as they are.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct PayParams {
    /// The mini-program's appid (signed; `wx.requestPayment` itself does not take it).
    app_id: String,
    /// Seconds since the epoch, as a string.
    time_stamp: String,
    /// Random string.
    nonce_str: String,
    /// `prepay_id=…`.
    package: String,
    /// `RSA` (APIv3), `MD5` or `HMAC-SHA256` (APIv2, `WXPAY_V2_SIGN_TYPE`).
    sign_type: String,
    /// The signature of the four values above.
    pay_sign: String,
}

impl From<PayRequest> for PayParams {
    fn from(p: PayRequest) -> Self {
        match p {
            PayRequest::V3(p) => Self {
                app_id: p.app_id,
                time_stamp: p.time_stamp,
                nonce_str: p.nonce_str,
                package: p.package,
                sign_type: p.sign_type.to_owned(),
                pay_sign: p.pay_sign,
            },
            PayRequest::V2(p) => Self {
                app_id: p.app_id,
                time_stamp: p.time_stamp,
                nonce_str: p.nonce_str,
                package: p.package,
                sign_type: p.sign_type.as_str().to_owned(),
                pay_sign: p.pay_sign,
            },
        }
    }
}

/// A short, non-reversible tag of an openid for logs: enough to correlate lines, not to
/// identify the payer.
pub(crate) fn openid_tag(openid: &str) -> String {
    token_hash(openid)[..12].to_owned()
}

/// `POST /api/login {code}`: exchanges a `wx.login` code for a session token. Throttled per
/// client IP before any upstream call: each call spends the mini-program's `jscode2session`
/// quota.
#[utoipa::path(post, path = "/api/login", tag = "api", request_body = LoginBody,
    responses(
        (status = 200, description = "Logged in", body = LoginAnswer),
        (status = 400, description = "Malformed body or invalid/used code", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many logins from this client, or WeChat's quota", body = ErrorBody,
            headers(("Retry-After" = Option<u64>, description = "Seconds to wait (client throttle)"))),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
pub(super) async fn login(
    State(s): State<AppState>,
    Extension(edge): Extension<Arc<Edge>>,
    extensions: Extensions,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<LoginAnswer>, AppError> {
    if let Some(ip) = edge.client_ip(&extensions, &headers)
        && let Err(wait) = edge.login.take(ip)
    {
        tracing::warn!(client = %ip, "login throttled");
        return Err(AppError::Throttled {
            retry_after_secs: wait.as_secs() + 1,
        });
    }
    let code = body.code.trim();
    if code.is_empty() || code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::bad_request(
            "invalid_code",
            "code must be a wx.login code",
        ));
    }
    let session = users::login(&s, code).await?;
    tracing::info!(openid = %openid_tag(&session.openid), "user logged in");
    Ok(Json(LoginAnswer {
        token: session.token,
        openid: session.openid,
        expires_in: session.expires_in,
    }))
}

/// `POST /api/user/decrypt`: what the mini-program's API handed over.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DecryptBody {
    /// Base64 ciphertext (`encryptedData`), at most 16 KiB.
    encrypted_data: String,
    /// Base64 IV.
    iv: String,
}

/// `POST /api/user/decrypt {encryptedData, iv}`: the mini-program's open data (e.g. from
/// `getPhoneNumber`, `wx.getWeRunData`), decrypted with the user's session key and checked to
/// carry this mini-program's `watermark.appid`.
#[utoipa::path(post, path = "/api/user/decrypt", tag = "api", security(("user" = [])),
    request_body = DecryptBody,
    responses(
        (status = 200, description = "The decrypted open data (JSON object)", body = Object),
        (status = 400, description = "Malformed, undecryptable or not for this mini-program", body = ErrorBody),
        (status = 401, description = "Missing or unknown session token", body = ErrorBody),
        (status = 409, description = "No session key held for this user (log in again)", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
    ))]
pub(super) async fn decrypt(
    State(s): State<AppState>,
    user: AuthUser,
    JsonBody(body): JsonBody<DecryptBody>,
) -> Result<Json<Value>, AppError> {
    if body.encrypted_data.len() > 16_384 || body.iv.len() > 64 {
        return Err(AppError::bad_request(
            "invalid_field",
            "encryptedData or iv too long",
        ));
    }
    match users::decrypt_open_data(&s, &user.openid, &body.encrypted_data, &body.iv).await? {
        Ok(v) => Ok(Json(v)),
        Err(e @ users::OpenDataError::NoSessionKey) => Err(AppError::Conflict(e.to_string())),
        Err(e) => Err(AppError::bad_request("undecryptable", e.to_string())),
    }
}

/// `GET /api/orders/{no}`: the user's own order.
#[utoipa::path(get, path = "/api/orders/{out_trade_no}", tag = "api", security(("user" = [])),
    params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 401, description = "Missing or unknown session token", body = ErrorBody),
        (status = 404, description = "No such order of this user", body = ErrorBody),
    ))]
pub(super) async fn order(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, AppError> {
    let no = path_no(no)?;
    let o = s
        .store
        .order(no.as_str())
        .await?
        .filter(|o| o.openid == user.openid)
        .ok_or(AppError::NotFound)?;
    Ok(Json(OrderView::from(&o)))
}

/// `POST /api/orders/{no}/sync`: after `wx.requestPayment` returns, asks WeChat for the order
/// now (instead of waiting for the notification or the reconciler), applies the verified answer
/// through the state machine and returns the order. Only an order still awaiting payment is
/// queried, at most once per order every [`super::SYNC_WINDOW`]; otherwise the stored order is
/// returned as is.
#[utoipa::path(post, path = "/api/orders/{out_trade_no}/sync", tag = "api", security(("user" = [])),
    params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "The order, after WeChat's answer was applied", body = OrderView),
        (status = 401, description = "Missing or unknown session token", body = ErrorBody),
        (status = 404, description = "No such order of this user", body = ErrorBody),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
pub(super) async fn sync(
    State(s): State<AppState>,
    Extension(edge): Extension<Arc<Edge>>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<OrderView>, AppError> {
    let no = path_no(no)?;
    let own = |o: Option<crate::domain::Order>| {
        o.filter(|o| o.openid == user.openid)
            .ok_or(AppError::NotFound)
    };
    let order = own(s.store.order(no.as_str()).await?)?;
    if order.state != OrderState::Created || !edge.sync.admit(no.as_str()) {
        return Ok(Json(OrderView::from(&order)));
    }
    payments::sync(&s, &order).await?;
    let order = own(s.store.order(no.as_str()).await?)?;
    Ok(Json(OrderView::from(&order)))
}

/// `POST /api/orders/{no}/pay`: the `wx.requestPayment` parameters.
#[utoipa::path(post, path = "/api/orders/{out_trade_no}/pay", tag = "api", security(("user" = [])),
    params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "Pass these to `wx.requestPayment`", body = PayParams),
        (status = 401, description = "Missing or unknown session token", body = ErrorBody),
        (status = 404, description = "No such order of this user", body = ErrorBody),
        (status = 409, description = "Not payable (paid, closed or expired)", body = ErrorBody),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
pub(super) async fn pay(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<PayParams>, AppError> {
    let no = path_no(no)?;
    Ok(Json(
        orders::pay_params(&s, &user.openid, no.as_str())
            .await?
            .into(),
    ))
}
