//! Refunds: request (reserve, record, submit), apply WeChat's statuses from answers, queries and
//! notifications (including refunds made in the merchant console), and resubmit refunds whose
//! submission outcome is unknown, always with the same `out_refund_no`.

use wxpay_core::v3::RefundNotice;

use super::{AppState, ServiceError, random_no};
use crate::domain::{
    Amount, Decision, Order, OrderEvent, OutRefundNo, Refund, RefundDecision, RefundEvent,
    RefundState, decide, decide_refund,
};
use crate::store::{BoxFuture, NotificationRecord, OwnedNotification, StoreError, Tx};
use crate::wechat::{RefundRequest, UpstreamError};

/// What applying a refund event did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// The refund (and its order) changed; `kind` is the recorded event.
    Changed {
        /// The refund as written.
        refund: Refund,
        /// The event kind.
        kind: &'static str,
    },
    /// Nothing changed.
    Kept {
        /// The refund as read.
        refund: Refund,
        /// Why.
        outcome: &'static str,
    },
    /// This notification id was already recorded.
    Duplicate,
    /// No such refund or order.
    Missing,
}

/// Requests a refund of `amount` from order `no`: reserves the amount and records the refund
/// as `PENDING` (one transaction, decided on the locked order), then submits it. A repeated
/// request with the same `out_refund_no` (also concurrently) returns the same refund and makes
/// no second one; while it is still `PENDING` it is submitted again, which WeChat treats as the
/// same refund. When WeChat's answer is unknown (timeout, 5xx, unverifiable) the refund stays
/// `PENDING` and the reconciler resubmits it.
///
/// # Errors
/// [`ServiceError::NotFound`]; [`ServiceError::Conflict`] when the order is not refundable,
/// the amount exceeds the balance, the number is used by another refund, or WeChat refused
/// the refund (then nothing is reserved); storage.
pub async fn request(
    s: &AppState,
    no: &str,
    out_refund_no: Option<OutRefundNo>,
    amount: Amount,
    reason: Option<String>,
) -> Result<Refund, ServiceError> {
    let out_refund_no = match out_refund_no {
        Some(n) => n.into_inner(),
        None => random_no("RF")?,
    };
    let now = s.now();
    let mut tx = s.store.begin().await?;
    let order = tx
        .order_for_update(no)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let refund = match tx.refund_for_update(&out_refund_no).await? {
        Some(existing) => {
            drop(tx);
            if existing.out_trade_no != no || existing.amount != amount.fen() {
                return Err(ServiceError::Conflict(
                    "out_refund_no is already used by another refund".into(),
                ));
            }
            existing
        }
        None => {
            let event = OrderEvent::ReserveRefund {
                amount: amount.fen(),
            };
            let (next, kind, detail) = match decide(&order, &event, now) {
                Decision::Change {
                    order,
                    kind,
                    detail,
                } => (order, kind, detail),
                Decision::Refuse { reason } => return Err(ServiceError::Conflict(reason)),
                Decision::Keep { outcome } => return Err(ServiceError::Conflict(outcome.into())),
            };
            let refund = Refund {
                out_refund_no: out_refund_no.clone(),
                out_trade_no: no.to_owned(),
                amount: amount.fen(),
                reason,
                state: RefundState::Pending,
                refund_id: None,
                source: "api".into(),
                created_at: now,
                updated_at: now,
                // If the submission's outcome stays unknown, the reconciler resubmits then.
                next_check_at: Some(Refund::next_check_after(0, now)),
                attempts: 0,
            };
            tx.write_order(&next).await?;
            tx.insert_refund(&refund).await?;
            let detail = format!("{detail} out_refund_no={out_refund_no}");
            tx.event(
                no,
                kind,
                Some(order.state.as_str()),
                Some(next.state.as_str()),
                &detail,
                now,
            )
            .await?;
            tx.commit().await?;
            refund
        }
    };
    if refund.state == RefundState::Pending {
        submit(s, &refund).await?;
    }
    s.store
        .refund(&out_refund_no)
        .await?
        .ok_or(ServiceError::NotFound)
}

/// Submits (or resubmits) a `PENDING` refund and applies the verified answer. An unknown
/// outcome leaves it `PENDING` for the reconciler.
///
/// # Errors
/// [`ServiceError::Conflict`] when WeChat refused it (it is then `FAILED` and its amount
/// released); storage.
pub async fn submit(s: &AppState, refund: &Refund) -> Result<(), ServiceError> {
    let order = s
        .store
        .order(&refund.out_trade_no)
        .await?
        .ok_or(ServiceError::NotFound)?;
    let req = RefundRequest {
        out_trade_no: &refund.out_trade_no,
        out_refund_no: &refund.out_refund_no,
        refund: refund.amount,
        total: order.paid_amount.unwrap_or(order.amount),
        reason: refund.reason.as_deref(),
    };
    match s.wechat.refund(&req).await {
        Ok(answer) => {
            let ev = RefundEvent::Status {
                status: &answer.status,
                refund_id: answer.refund_id.as_deref(),
            };
            apply(s, &refund.out_refund_no, &ev, None).await?;
            Ok(())
        }
        // A verified, definite refusal: nothing will happen at WeChat. Only `Api` is verified;
        // an unsigned or badly signed 4xx (`Unverified`) falls through to "outcome unknown",
        // as do a rejected request signature (401: our configuration, not the refund) and a
        // rate limit.
        Err(UpstreamError::Api {
            status: status @ 400..=499,
            code,
            message,
        }) if status != 401 && code != "FREQUENCY_LIMITED" => {
            apply(
                s,
                &refund.out_refund_no,
                &RefundEvent::Rejected { code: &code },
                None,
            )
            .await?;
            Err(ServiceError::Conflict(format!(
                "WeChat refused the refund: {code}: {message}"
            )))
        }
        Err(e) => {
            tracing::warn!(out_refund_no = %refund.out_refund_no, error = %e,
                "refund submission outcome unknown: it will be resubmitted");
            s.metrics.reconciler("refund_outcome_unknown");
            Ok(())
        }
    }
}

/// Applies a refund event to a known refund and its order, in one transaction on the locked
/// rows (order first, then refund: the same lock order everywhere), recording notification
/// `note` once when given.
///
/// # Errors
/// Storage failure: nothing is committed.
pub async fn apply(
    s: &AppState,
    out_refund_no: &str,
    event: &RefundEvent<'_>,
    note: Option<&NotificationRecord<'_>>,
) -> Result<RefundOutcome, StoreError> {
    let Some(known) = s.store.refund(out_refund_no).await? else {
        return Ok(RefundOutcome::Missing);
    };
    let now = s.now();
    let mut tx = s.store.begin().await?;
    let Some(order) = tx.order_for_update(&known.out_trade_no).await? else {
        return Ok(RefundOutcome::Missing);
    };
    let Some(refund) = tx.refund_for_update(out_refund_no).await? else {
        return Ok(RefundOutcome::Missing);
    };
    let out = decide_and_write(first_check(s), &mut tx, &order, &refund, event, note, now).await?;
    if out != RefundOutcome::Duplicate {
        tx.commit().await?;
    }
    Ok(out)
}

async fn decide_and_write(
    first_check: i64,
    tx: &mut Tx,
    order: &Order,
    refund: &Refund,
    event: &RefundEvent<'_>,
    note: Option<&NotificationRecord<'_>>,
    now: i64,
) -> Result<RefundOutcome, StoreError> {
    let decision = decide_refund(refund, order, event, now, first_check);
    let label = match &decision {
        RefundDecision::Change { kind, .. } => *kind,
        RefundDecision::Keep { outcome } => outcome,
    };
    if let Some(n) = note
        && !tx.record_notification(n, label, now).await?
    {
        return Ok(RefundOutcome::Duplicate);
    }
    Ok(match decision {
        RefundDecision::Change {
            refund: r,
            order: o,
            kind,
            detail,
        } => {
            tx.write_refund(&r).await?;
            tx.write_order(&o).await?;
            tx.event(
                &o.out_trade_no,
                kind,
                Some(order.state.as_str()),
                Some(o.state.as_str()),
                &detail,
                now,
            )
            .await?;
            RefundOutcome::Changed { refund: r, kind }
        }
        RefundDecision::Keep { outcome } => RefundOutcome::Kept {
            refund: refund.clone(),
            outcome,
        },
    })
}

/// Why a verified refund notification was not applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoticeRefused {
    /// For another merchant.
    #[error("mchid mismatch")]
    Foreign,
    /// No such order here.
    #[error("unknown out_trade_no")]
    UnknownOrder,
    /// The refund number is known for another order or amount.
    #[error("refund does not match the recorded one")]
    Mismatch,
    /// The order has no payment recorded yet (its payment notification is late): not
    /// acknowledged, so WeChat redelivers; the order is queried now.
    #[error("order has no recorded payment yet")]
    NotPaidYet,
}

/// Applies a verified refund notification, once per notification id. A refund the host did
/// not start (merchant console) is recorded as a new refund (`source = console`) with its
/// amount and status.
///
/// # Errors
/// Storage failure: nothing is committed.
pub async fn apply_notice(
    s: &AppState,
    notice: &RefundNotice,
    note: &NotificationRecord<'_>,
) -> Result<Result<RefundOutcome, NoticeRefused>, StoreError> {
    if notice.mchid != s.config.mchid {
        return Ok(Err(NoticeRefused::Foreign));
    }
    if s.store.notification_seen(note.id).await? {
        return Ok(Ok(RefundOutcome::Duplicate));
    }
    let now = s.now();
    let first_check = first_check(s);
    let (owned, owned_note) = (notice.clone(), OwnedNotification::from(note));
    let out = s
        .store
        .write(
            move |tx: &mut Tx| -> BoxFuture<'_, Result<Noticed, StoreError>> {
                Box::pin(async move {
                    notice_locked(tx, &owned, &owned_note.record(), now, first_check).await
                })
            },
        )
        .await?;
    if out == Err(NoticeRefused::NotPaidYet) {
        check_order_now(s, &notice.out_trade_no, now).await?;
    }
    Ok(out)
}

/// What [`notice_locked`] decided.
type Noticed = Result<RefundOutcome, NoticeRefused>;

/// [`apply_notice`]'s transaction: on the locked order (then refund), a known refund moves by
/// the event; an unknown one (merchant console) is created first. Nothing is written for a
/// notification already recorded, so a duplicate never follows writes.
async fn notice_locked(
    tx: &mut Tx,
    notice: &RefundNotice,
    note: &NotificationRecord<'_>,
    now: i64,
    first_check: i64,
) -> Result<Noticed, StoreError> {
    let event = RefundEvent::Status {
        status: &notice.refund_status,
        refund_id: notice.refund_id.as_deref(),
    };
    let Some(order) = tx.order_for_update(&notice.out_trade_no).await? else {
        return Ok(Err(NoticeRefused::UnknownOrder));
    };
    if tx.notification_recorded(note.id).await? {
        return Ok(Ok(RefundOutcome::Duplicate));
    }
    let out = match tx.refund_for_update(&notice.out_refund_no).await? {
        Some(refund) => {
            if refund.out_trade_no != notice.out_trade_no || refund.amount != notice.amount.refund {
                tracing::error!(out_refund_no = %notice.out_refund_no,
                    "refund notification does not match the recorded refund");
                return Ok(Err(NoticeRefused::Mismatch));
            }
            decide_and_write(first_check, tx, &order, &refund, &event, Some(note), now).await?
        }
        None => {
            let ext = OrderEvent::ExternalRefund {
                amount: notice.amount.refund,
            };
            let (reserved, kind, detail) = match decide(&order, &ext, now) {
                Decision::Change {
                    order,
                    kind,
                    detail,
                } => (order, kind, detail),
                _ => return Ok(Err(NoticeRefused::NotPaidYet)),
            };
            let refund = Refund {
                out_refund_no: notice.out_refund_no.clone(),
                out_trade_no: notice.out_trade_no.clone(),
                amount: notice.amount.refund,
                reason: None,
                state: RefundState::Pending,
                refund_id: notice.refund_id.clone(),
                source: "console".into(),
                created_at: now,
                updated_at: now,
                next_check_at: None,
                attempts: 0,
            };
            tx.write_order(&reserved).await?;
            tx.insert_refund(&refund).await?;
            let detail = format!("{detail} out_refund_no={}", refund.out_refund_no);
            tx.event(
                &order.out_trade_no,
                kind,
                Some(order.state.as_str()),
                Some(reserved.state.as_str()),
                &detail,
                now,
            )
            .await?;
            tracing::warn!(out_refund_no = %refund.out_refund_no,
                "refund made outside the host (merchant console) recorded");
            decide_and_write(first_check, tx, &reserved, &refund, &event, Some(note), now).await?
        }
    };
    Ok(Ok(out))
}

/// The first query of an accepted refund, this long after it (`WXPAY_RECONCILE_AFTER_SECS`).
fn first_check(s: &AppState) -> i64 {
    i64::try_from(s.config.reconcile_after.as_secs()).unwrap_or(60)
}

/// Makes the reconciler look at an order now (e.g. a refund arrived for an order whose
/// payment is not recorded yet).
async fn check_order_now(s: &AppState, no: &str, now: i64) -> Result<(), StoreError> {
    let mut tx = s.store.begin().await?;
    if let Some(o) = tx.order_for_update(no).await? {
        tx.reschedule_order(no, o.state.as_str(), Some(now), o.checks)
            .await?;
    }
    tx.commit().await
}

/// Moves a refund's next resubmission/query after one more fruitless try.
///
/// # Errors
/// Storage failure.
pub async fn reschedule(s: &AppState, refund: &Refund) -> Result<(), StoreError> {
    let attempts = refund.attempts + 1;
    let next = Refund::next_check_after(attempts, s.now());
    let mut tx = s.store.begin().await?;
    tx.reschedule_refund(
        &refund.out_refund_no,
        refund.state.as_str(),
        Some(next),
        attempts,
    )
    .await?;
    tx.commit().await
}
