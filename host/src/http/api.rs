//! The mini-program's API: log in, read an own order, get `wx.requestPayment` parameters.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{Extensions, HeaderMap};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{Value, json};
use wxpay_core::v3;

use super::{AppError, AuthUser, Edge, JsonBody, order_json, path_no, token_hash};
use crate::service::{AppState, orders, users};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginBody {
    code: String,
}

/// A short, non-reversible tag of an openid for logs: enough to correlate lines, not to
/// identify the payer.
pub(crate) fn openid_tag(openid: &str) -> String {
    token_hash(openid)[..12].to_owned()
}

/// `POST /api/login {code}`: exchanges a `wx.login` code for a session token. Throttled per
/// client IP before any upstream call: each call spends the mini-program's `jscode2session`
/// quota.
pub(super) async fn login(
    State(s): State<AppState>,
    Extension(edge): Extension<Arc<Edge>>,
    extensions: Extensions,
    headers: HeaderMap,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<Value>, AppError> {
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
    Ok(Json(json!({
        "token": session.token,
        "openid": session.openid,
        "expires_in": session.expires_in,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct DecryptBody {
    encrypted_data: String,
    iv: String,
}

/// `POST /api/user/decrypt {encryptedData, iv}`: the mini-program's open data (e.g. from
/// `getPhoneNumber`, `wx.getWeRunData`), decrypted with the user's session key and checked to
/// carry this mini-program's `watermark.appid`.
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
pub(super) async fn order(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    let no = path_no(no)?;
    let o = s
        .store
        .order(no.as_str())
        .await?
        .filter(|o| o.openid == user.openid)
        .ok_or(AppError::NotFound)?;
    Ok(Json(order_json(&o)))
}

/// `POST /api/orders/{no}/pay`: the `wx.requestPayment` parameters.
pub(super) async fn pay(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<v3::RequestPayment>, AppError> {
    let no = path_no(no)?;
    Ok(Json(
        orders::pay_params(&s, &user.openid, no.as_str()).await?,
    ))
}
