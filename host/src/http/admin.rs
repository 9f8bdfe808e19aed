//! The back office: create, read, close, refund, accept.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::openapi::ErrorBody;
use super::{Admin, AppError, JsonBody, OrderView, path_no};
use crate::domain::{Amount, Attach, Description, InvalidField, OutRefundNo, OutTradeNo, Refund};
use crate::service::orders::{self, NewOrder};
use crate::service::{AppState, refunds};
use crate::store::OrderEventRow;

/// `POST /admin/orders`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateOrder {
    /// The payer: an openid that has logged in through `/api/login`.
    openid: String,
    /// Amount in fen, 1..=10^10.
    #[schema(minimum = 1, maximum = 10_000_000_000_i64)]
    amount: i64,
    /// Goods description, 1–127 bytes of UTF-8.
    #[schema(min_length = 1, max_length = 127)]
    description: String,
    /// Merchant order number, 6–32 of `[0-9A-Za-z_-|*]`; generated when absent.
    #[schema(pattern = r"^[0-9A-Za-z_\-|*]{6,32}$")]
    #[serde(default)]
    out_trade_no: Option<String>,
    /// Merchant data returned in notifications, 1–128 bytes.
    #[schema(min_length = 1, max_length = 128)]
    #[serde(default)]
    attach: Option<String>,
    /// Seconds until the order expires, at most 30 days (default `WXPAY_ORDER_EXPIRE_SECS`).
    #[schema(minimum = 1, maximum = 2_592_000)]
    #[serde(default)]
    expire_in: Option<i64>,
}

/// The back office's view of an order: the mini-program's view plus payer, payment, review
/// reason, double payment, history and refunds.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminOrderView {
    #[serde(flatten)]
    order: OrderView,
    /// The payer's openid.
    openid: String,
    /// Amount actually paid (fen), once paid.
    paid_amount: Option<i64>,
    /// Amount reserved by refunds that are not final (fen).
    refund_pending: i64,
    /// Why the order is (or was) under review.
    review_reason: Option<String>,
    /// A second transaction id WeChat reported paid for this order, to be refunded by a person.
    double_payment: Option<String>,
    /// History, oldest first.
    events: Vec<OrderEventRow>,
    /// Refunds, oldest first.
    refunds: Vec<Refund>,
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
#[utoipa::path(post, path = "/admin/orders", tag = "admin", security(("admin" = [])),
    request_body = CreateOrder,
    responses(
        (status = 201, description = "Created", body = AdminOrderView),
        (status = 400, description = "Invalid field or unknown openid", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 409, description = "The order number is taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
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
    let view = full_order(&s, &order.out_trade_no).await?;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn full_order(s: &AppState, no: &str) -> Result<AdminOrderView, AppError> {
    let (order, events, refunds) = s
        .store
        .order_snapshot(no)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(AdminOrderView {
        order: OrderView::from(&order),
        openid: order.openid,
        paid_amount: order.paid_amount,
        refund_pending: order.refund_pending,
        review_reason: order.review_reason,
        double_payment: order.double_payment,
        events,
        refunds,
    })
}

/// `GET /admin/orders/{no}`.
#[utoipa::path(get, path = "/admin/orders/{out_trade_no}", tag = "admin",
    security(("admin" = [])), params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "The order", body = AdminOrderView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    ))]
pub(super) async fn order(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<AdminOrderView>, AppError> {
    let no = path_no(no)?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

/// `POST /admin/orders/{no}/close`: closes an unpaid order (at WeChat, then here).
#[utoipa::path(post, path = "/admin/orders/{out_trade_no}/close", tag = "admin",
    security(("admin" = [])), params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "The order, closed (or paid, if it was paid meanwhile)", body = AdminOrderView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not closable in its state", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
pub(super) async fn close(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<AdminOrderView>, AppError> {
    let no = path_no(no)?;
    orders::close(&s, no.as_str(), "closed_by_merchant").await?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

/// `POST /admin/orders/{no}/accept`: accepts the payment of an order under review.
#[utoipa::path(post, path = "/admin/orders/{out_trade_no}/accept", tag = "admin",
    security(("admin" = [])), params(("out_trade_no" = String, Path, description = "Order number")),
    responses(
        (status = 200, description = "The order, paid", body = AdminOrderView),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not under review", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
    ))]
pub(super) async fn accept(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<AdminOrderView>, AppError> {
    let no = path_no(no)?;
    orders::accept(&s, no.as_str()).await?;
    Ok(Json(full_order(&s, no.as_str()).await?))
}

/// `POST /admin/orders/{no}/refund`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RefundBody {
    /// Amount in fen, at most what is still refundable.
    #[schema(minimum = 1, maximum = 10_000_000_000_i64)]
    amount: i64,
    /// Reason shown to the payer, at most 80 characters.
    #[schema(max_length = 80)]
    #[serde(default)]
    reason: Option<String>,
    /// Merchant refund number, 1–64 of `[0-9A-Za-z_-|*@]`; generated when absent. Asking again
    /// with the same number answers the same refund.
    #[schema(pattern = r"^[0-9A-Za-z_\-|*@]{1,64}$")]
    #[serde(default)]
    out_refund_no: Option<String>,
}

/// `POST /admin/orders/{no}/refund`: 202 with the refund (`PENDING` while WeChat's answer is
/// unknown; the reconciler resubmits it).
#[utoipa::path(post, path = "/admin/orders/{out_trade_no}/refund", tag = "admin",
    security(("admin" = [])), params(("out_trade_no" = String, Path, description = "Order number")),
    request_body = RefundBody,
    responses(
        (status = 202, description = "The refund", body = Refund),
        (status = 400, description = "Invalid field", body = ErrorBody),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody),
        (status = 404, description = "No such order", body = ErrorBody),
        (status = 409, description = "Not refundable (state or amount), or WeChat refused it", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 429, description = "Too many failed authentications", body = ErrorBody),
        (status = 502, description = "WeChat answered an error", body = ErrorBody),
        (status = 503, description = "WeChat unreachable", body = ErrorBody),
    ))]
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
    Ok((StatusCode::ACCEPTED, Json(refund)).into_response())
}
