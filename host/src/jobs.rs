//! Background work: the reconciler.
//!
//! Each pass (every `WXPAY_RECONCILE_INTERVAL_SECS`):
//! 1. unpaid orders older than `WXPAY_RECONCILE_AFTER_SECS` are queried with the order query
//!    API, so a lost notification still ends as `PAID` (step 21 of WeChat's JSAPI flow);
//! 2. expired unpaid orders are closed with the close API (after a last query);
//! 3. refunds still `PROCESSING` are queried;
//! 4. in certificate mode, platform certificates are refreshed when due;
//! 5. expired sessions are purged.
//!
//! [`reconcile_once`] takes `now` so tests can run a pass "in the future".

use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::app::{AppState, pay_transition};
use crate::error::AppError;
use crate::store::{Order, OrderState, RefundUpdate, Transition};
use crate::wechat::{UpstreamError, unix_now};

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Orders queried.
    pub queried: usize,
    /// Orders found paid (or flagged for review) by query.
    pub paid: usize,
    /// Orders closed.
    pub closed: usize,
    /// Refunds finished by query.
    pub refunds: usize,
    /// Errors (logged).
    pub errors: usize,
}

const BATCH: i64 = 200;

/// Runs one reconciliation pass at time `now` (unix seconds).
///
/// # Errors
/// Storage failures listing work; per-order upstream failures are logged and counted instead.
pub async fn reconcile_once(s: &AppState, now: i64) -> Result<ReconcileReport, AppError> {
    let mut report = ReconcileReport::default();
    let after = i64::try_from(s.config.reconcile_after.as_secs()).unwrap_or(60);
    for order in s.store.stale_orders(now - after, BATCH).await? {
        report.queried += 1;
        match sync_from_query(s, &order, now).await {
            Ok(true) => report.paid += 1,
            Ok(false) => {}
            Err(e) => {
                report.errors += 1;
                s.metrics.reconciler("query_error");
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "order query failed");
            }
        }
    }
    for order in s.store.expired_orders(now, BATCH).await? {
        match close_order(s, &order, "expired", now).await {
            Ok(CloseOutcome::Closed) => report.closed += 1,
            Ok(CloseOutcome::Paid) => report.paid += 1,
            Ok(CloseOutcome::Unchanged) => {}
            Err(e) => {
                report.errors += 1;
                s.metrics.reconciler("close_error");
                tracing::warn!(out_trade_no = %order.out_trade_no, error = %e, "closing failed");
            }
        }
    }
    for refund in s.store.pending_refunds(now - after, BATCH).await? {
        match s.wechat.query_refund(&refund.out_refund_no).await {
            Ok(a) if matches!(a.status.as_str(), "SUCCESS" | "CLOSED" | "ABNORMAL") => {
                let u = RefundUpdate {
                    out_refund_no: a.out_refund_no,
                    refund_id: a.refund_id,
                    status: a.status,
                };
                s.store.apply_refund(None, &u, now).await?;
                s.metrics.reconciler("refund_finished");
                report.refunds += 1;
            }
            Ok(_) => {}
            Err(e) => {
                report.errors += 1;
                tracing::warn!(out_refund_no = %refund.out_refund_no, error = %e, "refund query failed");
            }
        }
    }
    let purged = s.store.purge_sessions(now).await?;
    if purged > 0 {
        tracing::debug!(purged, "expired sessions purged");
    }
    Ok(report)
}

/// Queries one order and applies what WeChat says. Returns whether it became paid/review.
async fn sync_from_query(s: &AppState, order: &Order, now: i64) -> Result<bool, UpstreamError> {
    let tx = match s.wechat.query_order(&order.out_trade_no).await {
        Ok(tx) => tx,
        Err(e) if e.api_code() == Some("ORDER_NOT_EXIST") => return Ok(false),
        Err(e) => return Err(e),
    };
    if tx.appid != s.config.appid
        || tx.mchid != s.config.mchid
        || tx.out_trade_no != order.out_trade_no
    {
        return Err(UpstreamError::Decode(
            "query answer is for another order".into(),
        ));
    }
    match tx.trade_state.as_str() {
        "SUCCESS" => {
            let Some(t) = pay_transition(order, &tx, "query") else {
                return Ok(false);
            };
            let changed = s
                .store
                .transition(&order.out_trade_no, &t, now)
                .await
                .map_err(|e| UpstreamError::Decode(format!("storage: {e}")))?;
            if changed {
                s.metrics.reconciler("paid_by_query");
                tracing::info!(out_trade_no = %order.out_trade_no, to = %t.to, "reconciled by query");
            }
            Ok(changed)
        }
        "CLOSED" | "REVOKED" | "PAYERROR" => {
            let t = Transition {
                from: OrderState::Created,
                to: OrderState::Closed,
                kind: "closed_upstream",
                detail: format!("trade_state={}", tx.trade_state),
                transaction_id: None,
                review_reason: None,
            };
            s.store
                .transition(&order.out_trade_no, &t, now)
                .await
                .map_err(|e| UpstreamError::Decode(format!("storage: {e}")))?;
            Ok(false)
        }
        _ => Ok(false),
    }
}

/// What [`close_order`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseOutcome {
    /// The order is now `CLOSED`.
    Closed,
    /// WeChat said it was paid: it is now `PAID` (or `REVIEW`).
    Paid,
    /// Someone else changed it first.
    Unchanged,
}

/// Closes an unpaid order: at WeChat first (when it was ordered there), then locally. An order
/// WeChat reports as paid is marked paid instead.
///
/// # Errors
/// Upstream failures (the order stays `CREATED` and is retried) or storage failures.
pub async fn close_order(
    s: &AppState,
    order: &Order,
    kind: &'static str,
    now: i64,
) -> Result<CloseOutcome, AppError> {
    if order.prepay_id.is_some() {
        // A last query: a payment may have raced the deadline.
        if sync_from_query(s, order, now).await? {
            return Ok(CloseOutcome::Paid);
        }
        match s.wechat.close_order(&order.out_trade_no).await {
            Ok(()) => {}
            // Already closed, or never reached WeChat: nothing left to close there.
            Err(e) if matches!(e.api_code(), Some("ORDER_CLOSED" | "ORDER_NOT_EXIST")) => {}
            Err(e) if e.api_code() == Some("ORDERPAID") => {
                return Ok(if sync_from_query(s, order, now).await? {
                    CloseOutcome::Paid
                } else {
                    CloseOutcome::Unchanged
                });
            }
            Err(e) => return Err(e.into()),
        }
    }
    let t = Transition {
        from: OrderState::Created,
        to: OrderState::Closed,
        kind,
        detail: String::new(),
        transaction_id: None,
        review_reason: None,
    };
    let changed = s.store.transition(&order.out_trade_no, &t, now).await?;
    if changed {
        s.metrics.reconciler("closed");
        tracing::info!(out_trade_no = %order.out_trade_no, kind, "order closed");
        Ok(CloseOutcome::Closed)
    } else {
        Ok(CloseOutcome::Unchanged)
    }
}

/// Spawns the reconciler loop; it stops when `shutdown` turns `true`.
pub fn spawn(s: AppState, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let interval = s.config.reconcile_interval.max(Duration::from_secs(1));
        let mut last_cert_refresh = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait_for(|v| *v) => break,
            }
            match reconcile_once(&s, unix_now()).await {
                Ok(r) if r != ReconcileReport::default() => tracing::info!(?r, "reconciler pass"),
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reconciler pass failed"),
            }
            if s.wechat.certificate_mode()
                && last_cert_refresh.elapsed() >= s.config.cert_refresh_interval
            {
                last_cert_refresh = Instant::now();
                if let Err(e) = s.wechat.refresh_certificates(true).await {
                    // A 404 here is a configuration error: report it loudly, keep serving.
                    tracing::error!(error = %e, "platform certificate refresh failed");
                }
            }
        }
    })
}
