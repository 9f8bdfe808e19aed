//! Applying a verified transaction (from a notification or an order query) to its order.

use std::collections::{HashSet, VecDeque};
use std::sync::{Mutex, PoisonError};

use wxpay_core::v3::Transaction;

use super::{AppState, Outcome, ServiceError, change_order};
use crate::domain::{Order, OrderEvent, OrderState, Payment, Via, decide};
use crate::store::NotificationRecord;

/// Payments this process has seen committed, as (`out_trade_no`, `transaction_id`), so that a
/// repeat of one — WeChat's redeliveries, which are most notifications under load — is answered
/// without a database round trip.
///
/// Why this is safe: an entry is added only from an order row that was committed (written by a
/// committed transaction, or read from the database) and that records the payment
/// ([`Order::records_payment`]). The order's payment is recorded for good, and a repeat of a
/// recorded payment decides `Keep duplicate` in every state (both checked by the domain's
/// property test), so the database would have changed nothing either: acknowledging the repeat
/// acknowledges what is recorded. The one difference: such a repeat does not add its own row to
/// the notifications table. Only notifications are answered from here, never order queries; a
/// different `transaction_id` (a double payment) or another order always reaches the database.
/// Bounded: the oldest entries are forgotten first; a miss only means one more round trip.
#[derive(Debug)]
pub struct RecordedPayments {
    capacity: usize,
    recent: Mutex<Recent>,
}

#[derive(Debug, Default)]
struct Recent {
    keys: HashSet<Box<str>>,
    order: VecDeque<Box<str>>,
}

impl RecordedPayments {
    /// Remembers up to `capacity` payments (0: remembers none).
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            recent: Mutex::new(Recent::default()),
        }
    }

    // Order numbers are validated ids (no NUL), so the first NUL separates the two parts.
    fn key(out_trade_no: &str, transaction_id: &str) -> String {
        format!("{out_trade_no}\0{transaction_id}")
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `order` is known to record the payment `transaction_id`.
    #[must_use]
    pub fn contains(&self, out_trade_no: &str, transaction_id: &str) -> bool {
        self.capacity > 0
            && self
                .recent()
                .keys
                .contains(Self::key(out_trade_no, transaction_id).as_str())
    }

    /// Remembers that the committed `order` records `transaction_id`; ignored if it does not.
    pub fn remember(&self, order: &Order, transaction_id: &str) {
        if self.capacity == 0 || !order.records_payment(transaction_id) {
            return;
        }
        let key: Box<str> = Self::key(&order.out_trade_no, transaction_id).into();
        let mut recent = self.recent();
        if recent.keys.insert(key.clone()) {
            recent.order.push_back(key);
            while recent.order.len() > self.capacity {
                if let Some(old) = recent.order.pop_front() {
                    recent.keys.remove(&old);
                }
            }
        }
    }
}

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
    if let (Some(p), Source::Notification { .. }) = (&payment, source)
        && s.recorded_payments
            .contains(&tx.out_trade_no, &p.transaction_id)
    {
        s.metrics.payment_known_in_memory();
        return Ok(Ok(Outcome::Duplicate));
    }
    let transaction_id = payment.as_ref().map(|p| p.transaction_id.clone());
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
    if let (
        Some(id),
        Outcome::Changed { order, .. }
        | Outcome::Kept { order, .. }
        | Outcome::Refused { order, .. },
    ) = (&transaction_id, &outcome)
    {
        // Committed: change_order answers only after the commit.
        s.recorded_payments.remember(order, id);
    }
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

#[cfg(test)]
mod tests {
    use super::RecordedPayments;
    use crate::domain::{Order, OrderState};

    fn paid(no: &str, transaction_id: &str) -> Order {
        Order {
            out_trade_no: no.into(),
            openid: "o_1".into(),
            amount: 100,
            description: "d".into(),
            attach: None,
            state: OrderState::Paid,
            prepay_id: None,
            prepay_expires_at: None,
            transaction_id: Some(transaction_id.into()),
            paid_amount: Some(100),
            refunded: 0,
            refund_pending: 0,
            review_reason: None,
            double_payment: None,
            created_at: 0,
            expire_at: 0,
            updated_at: 0,
            next_check_at: None,
            checks: 0,
        }
    }

    #[test]
    fn remembers_only_recorded_payments_and_forgets_the_oldest() {
        let r = RecordedPayments::new(2);
        r.remember(&paid("A", "T1"), "T2");
        assert!(!r.contains("A", "T2"), "the row does not record T2");
        r.remember(&paid("A", "T1"), "T1");
        r.remember(&paid("B", "T1"), "T1");
        assert!(r.contains("A", "T1") && r.contains("B", "T1"));
        assert!(!r.contains("A", "T3") && !r.contains("C", "T1"));
        // No ambiguity between the two parts.
        assert!(!r.contains("A\0T", "1"));
        r.remember(&paid("C", "T1"), "T1");
        assert!(!r.contains("A", "T1") && r.contains("B", "T1") && r.contains("C", "T1"));
        let off = RecordedPayments::new(0);
        off.remember(&paid("A", "T1"), "T1");
        assert!(!off.contains("A", "T1"));
    }
}
