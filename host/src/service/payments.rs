//! Applying a verified transaction (from a notification or an order query) to its order.

use wxpay_core::v3::Transaction;

use super::{AppState, Outcome, ServiceError, change_order};
use crate::domain::{Order, OrderEvent, OrderState, Payment, Via, decide};
use crate::store::NotificationRecord;

/// Where a transaction report came from.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// A verified notification, recorded once by its id.
    Notification {
        /// WeChat's notification id.
        id: &'a str,
        /// WeChat's event type, e.g. `TRANSACTION.SUCCESS`.
        event_type: &'a str,
    },
    /// A verified order query answer.
    Query,
}

/// Why a verified transaction was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unusable {
    /// For another mini-program or merchant.
    #[error("appid or mchid mismatch")]
    Foreign,
    /// A `SUCCESS`/`REFUND` without a transaction id or amount.
    #[error("paid transaction without transaction_id or amount")]
    Incomplete,
}

/// Applies a verified transaction to its order through the state machine, once per
/// notification id.
///
/// `SUCCESS` and `REFUND` (paid, then refunded) are payments; `CLOSED`, `REVOKED` and
/// `PAYERROR` close an unpaid order; anything else (`NOTPAY`, `USERPAYING`) changes nothing.
///
/// # Errors
/// [`ServiceError::Storage`]: nothing was recorded, the caller must answer 5xx.
pub async fn apply(
    s: &AppState,
    tx: &Transaction,
    source: Source<'_>,
) -> Result<Result<Outcome, Unusable>, ServiceError> {
    if tx.appid != s.config.appid || tx.mchid != s.config.mchid {
        tracing::error!(appid = %tx.appid, mchid = %tx.mchid, "transaction for another appid/mchid");
        return Ok(Err(Unusable::Foreign));
    }
    let payment = match tx.trade_state.as_str() {
        "SUCCESS" | "REFUND" => {
            let (Some(id), Some(amount)) = (tx.transaction_id.as_ref(), tx.amount.as_ref()) else {
                return Ok(Err(Unusable::Incomplete));
            };
            Some(Payment {
                transaction_id: id.clone(),
                total: amount.total,
                currency: amount.currency.clone(),
                payer_openid: tx.payer.as_ref().map(|p| p.openid.clone()),
            })
        }
        _ => None,
    };
    let (via, note) = match source {
        Source::Notification { id, event_type } => (
            Via::Notify,
            Some(NotificationRecord {
                id,
                kind: "pay",
                event_type,
                out_trade_no: &tx.out_trade_no,
            }),
        ),
        Source::Query => (Via::Query, None),
    };
    let trade_state = tx.trade_state.clone();
    let outcome = change_order(
        s,
        &tx.out_trade_no,
        note.as_ref(),
        move |order, now| match &payment {
            Some(payment) => decide(order, &OrderEvent::Pay { payment, via }, now),
            None if matches!(trade_state.as_str(), "CLOSED" | "REVOKED" | "PAYERROR") => {
                let trade_state = trade_state.as_str();
                decide(order, &OrderEvent::ClosedUpstream { trade_state }, now)
            }
            None => crate::domain::Decision::Keep {
                outcome: "not_final",
            },
        },
    )
    .await?;
    if let Outcome::Changed { order, kind } = &outcome {
        if order.state == OrderState::Review || *kind == "double_payment" {
            tracing::error!(
                out_trade_no = %order.out_trade_no,
                kind,
                reason = order.review_reason.as_deref().unwrap_or(""),
                "payment needs a person: see the back office"
            );
        } else {
            tracing::info!(out_trade_no = %order.out_trade_no, kind, "payment recorded");
        }
    }
    Ok(Ok(outcome))
}

/// What [`sync`] found.
// Short-lived, one per decision: boxing the row would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Synced {
    /// WeChat has no such order (never placed, or not yet visible).
    NotAtWechat,
    /// The query was applied.
    Applied(Outcome),
}

/// Queries one order at WeChat and applies the verified answer.
///
/// # Errors
/// [`ServiceError::Upstream`] (nothing changed), [`ServiceError::Storage`].
pub async fn sync(s: &AppState, order: &Order) -> Result<Synced, ServiceError> {
    let tx = match s.wechat.query_order(&order.out_trade_no).await {
        Ok(tx) => tx,
        // `api_code` is `Some` only for a verified answer: an unsigned ORDER_NOT_EXIST is an
        // unknown outcome (an error), never "not at WeChat".
        Err(e) if e.api_code() == Some("ORDER_NOT_EXIST") => return Ok(Synced::NotAtWechat),
        Err(e) => return Err(e.into()),
    };
    if tx.out_trade_no != order.out_trade_no {
        return Err(crate::wechat::UpstreamError::Decode(
            "query answer is for another order".into(),
        )
        .into());
    }
    match apply(s, &tx, Source::Query).await? {
        Ok(outcome) => Ok(Synced::Applied(outcome)),
        Err(e) => Err(crate::wechat::UpstreamError::Decode(e.to_string()).into()),
    }
}
