//! One reconciler pass: whatever is due, oldest-due first, a few WeChat calls in flight.
//!
//! Every unpaid order placed at WeChat has a `next_check_at`: first `WXPAY_RECONCILE_AFTER_SECS`
//! after it was placed, then with backoff (1, 2, 5, 10, 30 minutes, then hourly) until its
//! deadline, when it is closed (after a last query). An order closed with a prepay id is
//! queried once more a few minutes later (a payment can complete while the close is in
//! flight). Refunds whose submission outcome is unknown are resubmitted with the same
//! `out_refund_no`; accepted ones (`PROCESSING`, `ABNORMAL`) are queried until final; a query
//! answering `RESOURCE_NOT_EXISTS` means "submit again".
//!
//! Work is claimed with short leases ([`crate::store::Store::claim_due_orders`]); on PostgreSQL
//! `FOR UPDATE SKIP LOCKED` lets replicas split it instead of repeating each other's calls. One
//! item's failure is counted and logged; the pass goes on.

use std::collections::HashSet;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::payments::{self, Synced};
use super::refunds::{self, RefundOutcome};
use super::{AppState, Outcome, ServiceError, orders};
use crate::domain::{Order, OrderState, Refund, RefundEvent, RefundState};

/// How long a claimed item is reserved for the instance that claimed it (seconds); longer than
/// any one item's upstream calls with their retries.
pub const LEASE_SECS: i64 = 120;
/// Items claimed per round trip.
const BATCH: i64 = 100;
/// At most this many items per pass (the rest wait for the next pass).
const MAX_PER_PASS: usize = 2_000;
/// WeChat calls in flight at once.
const IN_FLIGHT: usize = 4;

/// What one pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Orders queried.
    pub queried: usize,
    /// Orders found paid (or flagged for review) by query.
    pub paid: usize,
    /// Orders closed.
    pub closed: usize,
    /// Refunds that changed state.
    pub refunds: usize,
    /// Refunds resubmitted.
    pub resubmitted: usize,
    /// Errors (logged; those items are retried when their lease runs out).
    pub errors: usize,
}

#[derive(Debug)]
enum Done {
    Queried { paid: bool },
    Closed,
    Refund { changed: bool, resubmitted: bool },
    Nothing,
}

/// Runs one pass at time `now` (unix seconds).
///
/// # Errors
/// Storage failures while claiming work; per-item failures are counted instead.
pub async fn run_once(s: &AppState, now: i64) -> Result<ReconcileReport, ServiceError> {
    let mut report = ReconcileReport::default();
    let gate = Arc::new(Semaphore::new(IN_FLIGHT));
    // An item handled in this pass and due again at once (e.g. a refund WeChat does not know,
    // to be resubmitted) waits for the next pass: its lease keeps it for a while.
    let mut seen: HashSet<String> = HashSet::new();
    while seen.len() < MAX_PER_PASS {
        let mut orders = s
            .store
            .claim_due_orders(now, now + LEASE_SECS, BATCH)
            .await?;
        let mut refunds = s
            .store
            .claim_due_refunds(now, now + LEASE_SECS, BATCH)
            .await?;
        orders.retain(|o| seen.insert(format!("o:{}", o.out_trade_no)));
        refunds.retain(|r| seen.insert(format!("r:{}", r.out_refund_no)));
        if orders.is_empty() && refunds.is_empty() {
            break;
        }
        let mut tasks = JoinSet::new();
        for order in orders {
            let (s, gate) = (s.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let no = order.out_trade_no.clone();
                (no, check_order(&s, order, now).await)
            });
        }
        for refund in refunds {
            let (s, gate) = (s.clone(), gate.clone());
            tasks.spawn(async move {
                let _permit = gate.acquire_owned().await;
                let no = refund.out_refund_no.clone();
                (no, check_refund(&s, refund).await)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(done))) => match done {
                    Done::Queried { paid } => {
                        report.queried += 1;
                        report.paid += usize::from(paid);
                    }
                    Done::Closed => report.closed += 1,
                    Done::Refund {
                        changed,
                        resubmitted,
                    } => {
                        report.refunds += usize::from(changed);
                        report.resubmitted += usize::from(resubmitted);
                    }
                    Done::Nothing => {}
                },
                Ok((no, Err(e))) => {
                    report.errors += 1;
                    s.metrics.reconciler("error");
                    tracing::warn!(item = %no, error = %e, "reconciler item failed; retried later");
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::error!(error = %e, "reconciler task failed");
                }
            }
        }
    }
    let purged = s.store.purge_sessions(now).await?;
    if purged > 0 {
        tracing::debug!(purged, "expired sessions purged");
    }
    Ok(report)
}

async fn reschedule_order(
    s: &AppState,
    o: &Order,
    next: Option<i64>,
    checks: i64,
) -> Result<(), ServiceError> {
    let mut tx = s.store.begin().await?;
    tx.reschedule_order(&o.out_trade_no, o.state.as_str(), next, checks)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn check_order(s: &AppState, order: Order, now: i64) -> Result<Done, ServiceError> {
    match order.state {
        OrderState::Created if order.expire_at <= now => {
            match orders::close(s, &order.out_trade_no, "expired").await {
                Ok(o) if o.state == OrderState::Closed => Ok(Done::Closed),
                Ok(_) => Ok(Done::Nothing),
                // Paid meanwhile (the last query or a notification won): nothing to close.
                Err(ServiceError::Conflict(_)) => Ok(Done::Queried { paid: true }),
                Err(e) => Err(e),
            }
        }
        OrderState::Created | OrderState::Closed => {
            let synced = payments::sync(s, &order).await?;
            s.metrics.reconciler("queried");
            let paid = matches!(&synced, Synced::Applied(Outcome::Changed { order, .. })
                if order.state.is_paid());
            if paid {
                s.metrics.reconciler("paid_by_query");
                return Ok(Done::Queried { paid: true });
            }
            if let Synced::Applied(Outcome::Changed { .. }) = synced {
                return Ok(Done::Queried { paid: false });
            }
            // Not final at WeChat: query again later (a closed order only once).
            if order.state == OrderState::Closed {
                reschedule_order(s, &order, None, order.checks).await?;
            } else {
                let checks = order.checks + 1;
                let next = order.next_check_after(checks, now);
                reschedule_order(s, &order, Some(next), checks).await?;
            }
            Ok(Done::Queried { paid: false })
        }
        // Settled since it was scheduled: nothing to look at.
        _ => {
            reschedule_order(s, &order, None, order.checks).await?;
            Ok(Done::Nothing)
        }
    }
}

async fn check_refund(s: &AppState, refund: Refund) -> Result<Done, ServiceError> {
    match refund.state {
        RefundState::Pending => {
            s.metrics.reconciler("refund_resubmitted");
            match refunds::submit(s, &refund).await {
                Ok(()) | Err(ServiceError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            // Still PENDING (outcome unknown again): try later with backoff.
            refunds::reschedule(s, &refund).await?;
            Ok(Done::Refund {
                changed: false,
                resubmitted: true,
            })
        }
        RefundState::Processing | RefundState::Abnormal => {
            let out = match s.wechat.query_refund(&refund.out_refund_no).await {
                Ok(a) => {
                    let ev = RefundEvent::Status {
                        status: &a.status,
                        refund_id: a.refund_id.as_deref(),
                    };
                    refunds::apply(s, &refund.out_refund_no, &ev, None).await?
                }
                Err(e) if e.api_code() == Some("RESOURCE_NOT_EXISTS") => {
                    refunds::apply(s, &refund.out_refund_no, &RefundEvent::NotFound, None).await?
                }
                Err(e) => {
                    refunds::reschedule(s, &refund).await?;
                    return Err(e.into());
                }
            };
            let changed = matches!(out, RefundOutcome::Changed { .. });
            if !changed {
                refunds::reschedule(s, &refund).await?;
            }
            Ok(Done::Refund {
                changed,
                resubmitted: false,
            })
        }
        RefundState::Success | RefundState::Closed | RefundState::Failed => {
            let mut tx = s.store.begin().await?;
            tx.reschedule_refund(
                &refund.out_refund_no,
                refund.state.as_str(),
                None,
                refund.attempts,
            )
            .await?;
            tx.commit().await?;
            Ok(Done::Nothing)
        }
    }
}
