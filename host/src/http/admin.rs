//! The back office: create, read, close, refund, accept.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Admin, AppError, JsonBody, order_json, path_no};
use crate::domain::{Amount, Attach, Description, InvalidField, OutRefundNo, OutTradeNo};
use crate::service::orders::{self, NewOrder};
use crate::service::{AppState, refunds};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOrder {
    openid: String,
    amount: i64,
    description: String,
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    attach: Option<String>,
    #[serde(default)]
    expire_in: Option<i64>,
}

fn invalid(e: InvalidField) -> AppError {
    AppError::bad_request(
        if e.field == "amount" {
            "invalid_amount"
        } else {
            "invalid_field"
        },
        e.to_string(),
    )
}

/// `POST /admin/orders`: creates an order for a user who has logged in.
pub(super) async fn create_order(
    State(s): State<AppState>,
    _admin: Admin,
    JsonBody(body): JsonBody<CreateOrder>,
) -> Result<Response, AppError> {
    let new = NewOrder {
        amount: Amount::parse("amount", body.amount).map_err(invalid)?,
        description: Description::parse(body.description).map_err(invalid)?,
        attach: body
            .attach
            .map(Attach::parse)
            .transpose()
            .map_err(invalid)?,
        out_trade_no: body
            .out_trade_no
            .map(OutTradeNo::parse)
            .transpose()
            .map_err(invalid)?,
        openid: body.openid,
        expire_in: body
            .expire_in
            .unwrap_or_else(|| i64::try_from(s.config.order_expire.as_secs()).unwrap_or(1800)),
    };
    let order = orders::create(&s, new).await?;
    let mut v = order_json(&order);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("openid".into(), json!(order.openid));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// The back office's view: the order with payer, review reason, double payment, history and
/// refunds.
async fn full_order(s: &AppState, no: &str) -> Result<Value, AppError> {
    let order = s.store.order(no).await?.ok_or(AppError::NotFound)?;
    let events = s.store.order_events(no).await?;
    let refunds = s.store.refunds(no).await?;
    let mut v = order_json(&order);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("openid".into(), json!(order.openid));
        obj.insert("paid_amount".into(), json!(order.paid_amount));
        obj.insert("refund_pending".into(), json!(order.refund_pending));
        obj.insert("review_reason".into(), json!(order.review_reason));
        obj.insert("double_payment".into(), json!(order.double_payment));
        obj.insert("events".into(), json!(events));
        obj.insert("refunds".into(), json!(refunds));
    }
    Ok(v)
}

/// `GET /admin/orders/{no}`.
pub(super) async fn order(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    let no = path_no(no)?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

/// `POST /admin/orders/{no}/close`: closes an unpaid order (at WeChat, then here).
pub(super) async fn close(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    let no = path_no(no)?;
    orders::close(&s, no.as_str(), "closed_by_merchant").await?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

/// `POST /admin/orders/{no}/accept`: accepts the payment of an order under review.
pub(super) async fn accept(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    let no = path_no(no)?;
    orders::accept(&s, no.as_str()).await?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundBody {
    amount: i64,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    out_refund_no: Option<String>,
}

/// `POST /admin/orders/{no}/refund`: 202 with the refund (`PENDING` while WeChat's answer is
/// unknown; the reconciler resubmits it).
pub(super) async fn refund(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
    JsonBody(body): JsonBody<RefundBody>,
) -> Result<Response, AppError> {
    let no = path_no(no)?;
    let amount = Amount::parse("amount", body.amount).map_err(invalid)?;
    // WeChat: `reason` at most 80 characters.
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 80) {
        return Err(AppError::bad_request(
            "invalid_field",
            "reason must be at most 80 characters",
        ));
    }
    let out_refund_no = body
        .out_refund_no
        .map(OutRefundNo::parse)
        .transpose()
        .map_err(invalid)?;
    let refund = refunds::request(&s, no.as_str(), out_refund_no, amount, body.reason).await?;
    Ok((StatusCode::ACCEPTED, Json(json!(refund))).into_response())
}
