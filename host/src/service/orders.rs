//! Orders: create, place at WeChat (prepay) and hand out `wx.requestPayment` parameters, close,
//! accept a payment under review.

use rand_core::UnwrapErr;
use wxpay_core::v3;

use super::payments::{self, Synced};
use super::{AppState, Outcome, ServiceError, change_order, random_no};
use crate::domain::{
    Amount, Attach, Description, Order, OrderEvent, OrderState, OutTradeNo, decide,
};
use crate::wechat::PREPAY_VALIDITY_SECS;

/// A new order, validated.
#[derive(Clone, Debug)]
pub struct NewOrder {
    /// Merchant order number; generated when `None`.
    pub out_trade_no: Option<OutTradeNo>,
    /// Payer's openid (must have logged in).
    pub openid: String,
    /// Amount.
    pub amount: Amount,
    /// Goods description.
    pub description: Description,
    /// Merchant data.
    pub attach: Option<Attach>,
    /// Seconds until the payment deadline (1 ..= 30 days).
    pub expire_in: i64,
}

/// Creates an order in `CREATED`, with a `created` event. Its first reconciler check is its
/// deadline (nothing to ask WeChat before it is placed there).
///
/// # Errors
/// [`ServiceError::UnknownUser`], [`ServiceError::Conflict`] for a taken number,
/// [`ServiceError::Invalid`] for `expire_in`, storage.
pub async fn create(s: &AppState, new: NewOrder) -> Result<Order, ServiceError> {
    if !(1..=30 * 86_400).contains(&new.expire_in) {
        return Err(crate::domain::InvalidField {
            field: "expire_in",
            rule: "must be 1..2592000 seconds",
        }
        .into());
    }
    if new.openid.is_empty() || new.openid.len() > 128 || !s.store.user_exists(&new.openid).await? {
        return Err(ServiceError::UnknownUser);
    }
    let out_trade_no = match new.out_trade_no {
        Some(no) => no.into_inner(),
        None => random_no("WX")?,
    };
    let now = s.now();
    let order = Order {
        out_trade_no,
        openid: new.openid,
        amount: new.amount.fen(),
        description: new.description.into_inner(),
        attach: new.attach.map(Attach::into_inner),
        state: OrderState::Created,
        prepay_id: None,
        prepay_expires_at: None,
        transaction_id: None,
        paid_amount: None,
        refunded: 0,
        refund_pending: 0,
        review_reason: None,
        double_payment: None,
        created_at: now,
        expire_at: now + new.expire_in,
        updated_at: now,
        next_check_at: Some(now + new.expire_in),
        checks: 0,
    };
    let mut tx = s.store.begin().await?;
    if !tx.insert_order(&order).await? {
        return Err(ServiceError::Conflict(format!(
            "order {} already exists",
            order.out_trade_no
        )));
    }
    let detail = format!("amount={} openid={}", order.amount, order.openid);
    tx.event(
        &order.out_trade_no,
        "created",
        None,
        Some(OrderState::Created.as_str()),
        &detail,
        now,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(out_trade_no = %order.out_trade_no, amount = order.amount, "order created");
    Ok(order)
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

fn not_payable(state: OrderState) -> ServiceError {
    ServiceError::Conflict(match state {
        OrderState::Paid | OrderState::Refunding | OrderState::Refunded => {
            "order is already paid".into()
        }
        OrderState::Closed => "order is closed".into(),
        OrderState::Review => "order is under review".into(),
        OrderState::Created => "order has expired".into(),
    })
}

/// The `wx.requestPayment` parameters for the user's own unpaid order, placing it at WeChat
/// (JSAPI) first when it has no usable prepay id.
///
/// # Errors
/// [`ServiceError::NotFound`] (unknown or someone else's), [`ServiceError::Conflict`] (not
/// payable), upstream and storage failures.
pub async fn pay_params(s: &AppState, openid: &str, no: &str) -> Result<PayRequest, ServiceError> {
    let order = s
        .store
        .order(no)
        .await?
        .filter(|o| o.openid == openid)
        .ok_or(ServiceError::NotFound)?;
    let now = s.now();
    if order.state != OrderState::Created || order.expire_at <= now {
        return Err(not_payable(order.state));
    }
    let prepay_id = match (&order.prepay_id, order.prepay_expires_at) {
        (Some(p), Some(until)) if until > now + 60 => p.clone(),
        _ => {
            let p = match s.wechat.jsapi_order(&order).await {
                Ok(p) => p,
                Err(e) if e.api_code() == Some("ORDERPAID") => {
                    return Err(not_payable(OrderState::Paid));
                }
                Err(e) if e.api_code() == Some("ORDER_CLOSED") => {
                    return Err(not_payable(OrderState::Closed));
                }
                Err(e) => return Err(e.into()),
            };
            let until = (now + PREPAY_VALIDITY_SECS).min(order.expire_at);
            let first_check_at =
                now + i64::try_from(s.config.reconcile_after.as_secs()).unwrap_or(60);
            let prepay_id = p.clone();
            let prepay = move |o: &Order, now| {
                let event = OrderEvent::Prepay {
                    prepay_id: &prepay_id,
                    until,
                    first_check_at,
                };
                decide(o, &event, now)
            };
            match change_order(s, no, None, prepay).await? {
                Outcome::Changed { .. } => p,
                Outcome::Refused { order, .. } | Outcome::Kept { order, .. } => {
                    return Err(not_payable(order.state));
                }
                Outcome::Duplicate | Outcome::Missing => return Err(ServiceError::NotFound),
            }
        }
    };
    let nonce = wxpay_core::nonce_str(&mut rng());
    let time_stamp = now.to_string();
    if let Some(v2) = s.wechat.v2() {
        return Ok(PayRequest::V2(v2.request_payment(
            &s.config.appid,
            &time_stamp,
            &nonce,
            &prepay_id,
        )));
    }
    let signer = s
        .wechat
        .signer()
        .ok_or_else(|| ServiceError::Internal("no APIv3 merchant key".into()))?;
    v3::pay_sign(
        signer,
        &mut rng(),
        &s.config.appid,
        &time_stamp,
        &nonce,
        &prepay_id,
    )
    .map(PayRequest::V3)
    .map_err(|e| ServiceError::Internal(format!("pay_sign: {e}")))
}

/// The `wx.requestPayment` parameters of either API (`signType` `RSA`, or `MD5` /
/// `HMAC-SHA256`).
// Short-lived, one per request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum PayRequest {
    /// APIv3 (`RSA`).
    V3(v3::RequestPayment),
    /// APIv2 (`MD5` or `HMAC-SHA256`).
    V2(wxpay_core::v2::RequestPaymentV2),
}

/// Closes an unpaid order: a last query first (a payment may have raced the deadline), then at
/// WeChat (when it was placed there), then locally — decided on the locked row, so a payment
/// that committed in between wins and the close is refused. Closing a closed order returns it.
/// An order that had a prepay id is checked once more a few minutes after closing.
///
/// # Errors
/// [`ServiceError::Conflict`] when the order is (or just became) paid or under review;
/// [`ServiceError::NotFound`]; upstream failures (the order stays `CREATED`); storage.
pub async fn close(s: &AppState, no: &str, kind: &'static str) -> Result<Order, ServiceError> {
    let order = s.store.order(no).await?.ok_or(ServiceError::NotFound)?;
    match order.state {
        OrderState::Created => {}
        OrderState::Closed => return Ok(order),
        other => return Err(ServiceError::Conflict(format!("order is {other}"))),
    }
    if order.prepay_id.is_some() {
        if let Synced::Applied(Outcome::Changed { order, .. }) = payments::sync(s, &order).await? {
            // Closed at WeChat already (CLOSED/REVOKED/PAYERROR), or paid meanwhile.
            if order.state == OrderState::Closed {
                return Ok(order);
            }
            return Err(ServiceError::Conflict(format!("order is {}", order.state)));
        }
        match s.wechat.close_order(no).await {
            Ok(()) => {}
            // Already closed, or never reached WeChat: nothing left to close there.
            Err(e) if matches!(e.api_code(), Some("ORDER_CLOSED" | "ORDER_NOT_EXIST")) => {}
            Err(e) if e.api_code() == Some("ORDERPAID") => {
                let state = match payments::sync(s, &order).await? {
                    Synced::Applied(Outcome::Changed { order, .. }) => order.state,
                    _ => OrderState::Paid,
                };
                return Err(ServiceError::Conflict(format!("order is {state}")));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match change_order(s, no, None, move |o, now| {
        decide(o, &OrderEvent::Close { kind }, now)
    })
    .await?
    {
        Outcome::Changed { order, .. } => {
            s.metrics.reconciler("closed");
            tracing::info!(out_trade_no = %order.out_trade_no, kind, "order closed");
            Ok(order)
        }
        Outcome::Kept { order, .. } => Ok(order),
        Outcome::Refused { reason, .. } => Err(ServiceError::Conflict(reason)),
        Outcome::Duplicate | Outcome::Missing => Err(ServiceError::NotFound),
    }
}

/// Accepts the payment of an order under review: `REVIEW` → `PAID` (or `REFUNDING`/`REFUNDED`
/// when refunds are under way or done).
///
/// # Errors
/// [`ServiceError::Conflict`] when it is not under review; [`ServiceError::NotFound`]; storage.
pub async fn accept(s: &AppState, no: &str) -> Result<Order, ServiceError> {
    match change_order(s, no, None, |o, now| decide(o, &OrderEvent::Accept, now)).await? {
        Outcome::Changed { order, .. } => Ok(order),
        Outcome::Kept { order, .. } => {
            Err(ServiceError::Conflict(format!("order is {}", order.state)))
        }
        Outcome::Refused { reason, .. } => Err(ServiceError::Conflict(reason)),
        Outcome::Duplicate | Outcome::Missing => Err(ServiceError::NotFound),
    }
}
