//! The order and refund state machines.
//!
//! ```text
//!            pay (matches)                  reserve refund             refund settled
//!   CREATED ───────────────▶ PAID ─────────────────────────▶ REFUNDING ───────────────▶ PAID | REFUNDED
//!      │  pay (mismatch)      ▲  ▲ accept                      ▲
//!      ├──────────────▶ REVIEW ┘  └───────── REVIEW ───────────┘ reserve refund
//!      │ close / closed upstream       ▲
//!      └──────────────▶ CLOSED ────────┘ pay (a payment that raced the close)
//! ```
//!
//! Refunds: `PENDING` (recorded, WeChat's answer not yet known) → `PROCESSING` → `SUCCESS` |
//! `CLOSED` | `ABNORMAL`; `ABNORMAL` keeps its amount reserved and still accepts a later
//! `SUCCESS` or `CLOSED`; a definite refusal of the submission is `FAILED` and releases it.
//!
//! [`decide`] and [`decide_refund`] are pure: the service layer calls them with the rows it
//! read inside its write transaction and writes exactly what they return. No state is a dead
//! end: `REVIEW` can be accepted or refunded, `CLOSED` accepts a late payment (as `REVIEW`),
//! `PENDING` refunds are resubmitted, `ABNORMAL` ones are queried until final.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// After closing an order that had a prepay id, check it once more this much later (seconds):
/// a payment can complete at WeChat while the close is in flight.
pub const RECHECK_AFTER_CLOSE_SECS: i64 = 300;

/// Waits between successive queries of an unpaid order (seconds): 1, 2, 5, 10, 30 minutes, then
/// hourly until it expires.
pub const CHECK_BACKOFF_SECS: [i64; 6] = [60, 120, 300, 600, 1800, 3600];

/// A stored value this version does not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct UnknownValue {
    what: &'static str,
    value: String,
}

macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stored and serialized name.
            #[must_use]
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;
            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(UnknownValue { what: $what, value: s.to_owned() }),
                }
            }
        }
    };
}

named_enum!(
    /// Life-cycle state of an order.
    OrderState, "order state" {
        /// Created, awaiting payment.
        Created = "CREATED",
        /// Paid: a verified notification or order query reported the payment, and it matched.
        Paid = "PAID",
        /// Closed unpaid (expired, closed by the merchant, or closed at WeChat).
        Closed = "CLOSED",
        /// At least one refund is not final yet; its amount is reserved.
        Refunding = "REFUNDING",
        /// Everything paid has been refunded.
        Refunded = "REFUNDED",
        /// An authentic payment that does not match the order (amount, payer, currency) or that
        /// arrived after the order was closed: a person accepts or refunds it.
        Review = "REVIEW",
    }
);

named_enum!(
    /// State of a refund.
    RefundState, "refund state" {
        /// Recorded; whether WeChat accepted the submission is not known yet (it is resubmitted
        /// with the same `out_refund_no`, which WeChat treats as the same refund).
        Pending = "PENDING",
        /// WeChat accepted it and is processing it.
        Processing = "PROCESSING",
        /// Refunded to the payer.
        Success = "SUCCESS",
        /// Closed by WeChat: nothing refunded.
        Closed = "CLOSED",
        /// WeChat could not credit the payer (e.g. closed account); the amount stays reserved
        /// until a final `SUCCESS` or `CLOSED` (for example after a retry in the merchant
        /// platform).
        Abnormal = "ABNORMAL",
        /// WeChat refused the submission (a verified 4xx answer): nothing refunded.
        Failed = "FAILED",
    }
);

impl OrderState {
    /// Whether a payment has been recorded in this state (so a transaction id is held).
    #[must_use]
    pub const fn is_paid(self) -> bool {
        matches!(
            self,
            Self::Paid | Self::Refunding | Self::Refunded | Self::Review
        )
    }
}

impl RefundState {
    /// Whether nothing can change it any more.
    #[must_use]
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Closed | Self::Failed)
    }
}

/// An order row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Order {
    /// Merchant order number.
    pub out_trade_no: String,
    /// Payer's openid (per mini-program).
    pub openid: String,
    /// Amount to pay, in fen.
    pub amount: i64,
    /// Goods description.
    pub description: String,
    /// Merchant data returned in the notification.
    pub attach: Option<String>,
    /// Current state.
    pub state: OrderState,
    /// Prepay id of the JSAPI order, once ordered.
    #[serde(skip)]
    pub prepay_id: Option<String>,
    /// When the prepay id stops being reused (unix seconds).
    #[serde(skip)]
    pub prepay_expires_at: Option<i64>,
    /// WeChat transaction id of the recorded payment.
    pub transaction_id: Option<String>,
    /// Amount actually paid (fen), from the payment; may differ from `amount` under review.
    pub paid_amount: Option<i64>,
    /// Amount refunded so far (fen).
    pub refunded: i64,
    /// Amount reserved by refunds that are not final (fen).
    pub refund_pending: i64,
    /// Why the order is (or was) under review.
    pub review_reason: Option<String>,
    /// Another transaction id WeChat reported as paid for this order: a double payment that a
    /// person must refund.
    pub double_payment: Option<String>,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Payment deadline (unix seconds).
    pub expire_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
    /// When the reconciler should look at it next (unix seconds), if ever.
    #[serde(skip)]
    pub next_check_at: Option<i64>,
    /// How many times it was queried without a final answer (drives the backoff).
    #[serde(skip)]
    pub checks: i64,
}

impl Order {
    /// Whether this order has recorded the payment `transaction_id` (as its payment or as a
    /// double payment). Once true it stays true in every later state, and every later report of
    /// that payment decides [`Decision::Keep`] `duplicate`: the property test
    /// `random_event_sequences_keep_the_invariants` checks both, and the service's in-memory
    /// [`crate::service::payments::RecordedPayments`] relies on them.
    #[must_use]
    pub fn records_payment(&self, transaction_id: &str) -> bool {
        self.transaction_id.as_deref() == Some(transaction_id)
            || self.double_payment.as_deref() == Some(transaction_id)
    }

    /// What can still be refunded (fen).
    #[must_use]
    pub fn refundable(&self) -> i64 {
        self.paid_amount.unwrap_or(self.amount) - self.refunded - self.refund_pending
    }

    /// The next query time after `checks` fruitless queries at `now`, never after expiry.
    #[must_use]
    pub fn next_check_after(&self, checks: i64, now: i64) -> i64 {
        let i = usize::try_from(checks).unwrap_or(usize::MAX);
        let wait = CHECK_BACKOFF_SECS[i.min(CHECK_BACKOFF_SECS.len() - 1)];
        if self.expire_at > now {
            (now + wait).min(self.expire_at)
        } else {
            now + wait
        }
    }

    /// The state once refunds are settled: reserved amounts keep it `REFUNDING`.
    fn settled(mut self) -> Self {
        self.state = if self.refund_pending > 0 {
            OrderState::Refunding
        } else if self.refunded >= self.paid_amount.unwrap_or(self.amount) {
            OrderState::Refunded
        } else {
            OrderState::Paid
        };
        self
    }
}

/// A refund row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Refund {
    /// Merchant refund number.
    pub out_refund_no: String,
    /// The refunded order.
    pub out_trade_no: String,
    /// Amount in fen.
    pub amount: i64,
    /// Reason shown to the payer.
    pub reason: Option<String>,
    /// Current state.
    pub state: RefundState,
    /// WeChat refund id, once known.
    pub refund_id: Option<String>,
    /// `api` (requested through the host) or `console` (made elsewhere, learnt from WeChat).
    pub source: String,
    /// Creation time (unix seconds).
    pub created_at: i64,
    /// Last change (unix seconds).
    pub updated_at: i64,
    /// When the reconciler should resubmit or query it next (unix seconds).
    #[serde(skip)]
    pub next_check_at: Option<i64>,
    /// How many times it was resubmitted or queried without a final answer.
    #[serde(skip)]
    pub attempts: i64,
}

impl Refund {
    /// The next resubmission/query time after `attempts` tries at `now`.
    #[must_use]
    pub fn next_check_after(attempts: i64, now: i64) -> i64 {
        let i = usize::try_from(attempts).unwrap_or(usize::MAX);
        now + CHECK_BACKOFF_SECS[i.min(CHECK_BACKOFF_SECS.len() - 1)]
    }
}

/// Where a payment report came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// A verified notification.
    Notify,
    /// A verified order query answer.
    Query,
}

/// A verified report that WeChat took the payer's money for this order (`trade_state` `SUCCESS`,
/// or `REFUND`: paid, then refunded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    /// WeChat transaction id.
    pub transaction_id: String,
    /// Amount paid (fen).
    pub total: i64,
    /// Currency, when reported.
    pub currency: Option<String>,
    /// Payer's openid, when reported.
    pub payer_openid: Option<String>,
}

/// Something that happened to an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderEvent<'a> {
    /// A verified payment report.
    Pay {
        /// The payment.
        payment: &'a Payment,
        /// Its source.
        via: Via,
    },
    /// WeChat accepted the JSAPI order: record its prepay id (until the given time).
    Prepay {
        /// The prepay id.
        prepay_id: &'a str,
        /// Until when it is reused (unix seconds).
        until: i64,
        /// When to query it first if no notification arrives (unix seconds).
        first_check_at: i64,
    },
    /// Close the order (after WeChat closed it, or it never reached WeChat).
    Close {
        /// Event kind, e.g. `closed_by_merchant` or `expired`.
        kind: &'static str,
    },
    /// An order query reported `CLOSED`, `REVOKED` or `PAYERROR`.
    ClosedUpstream {
        /// The reported `trade_state`.
        trade_state: &'a str,
    },
    /// A person accepts the payment of an order under review.
    Accept,
    /// Reserve `amount` for a refund requested through the host.
    ReserveRefund {
        /// Amount (fen).
        amount: i64,
    },
    /// A refund made outside the host (merchant console) became known: reserve its amount
    /// whatever the recorded balance says, since WeChat has already accepted it.
    ExternalRefund {
        /// Amount (fen).
        amount: i64,
    },
}

/// What to do about an [`OrderEvent`].
// Short-lived, one per decision: boxing the row would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Write `order` and record an event.
    Change {
        /// The row to write.
        order: Order,
        /// Event kind (also the notification's recorded outcome).
        kind: &'static str,
        /// Event detail.
        detail: String,
    },
    /// Nothing to write; `outcome` says why (e.g. `duplicate`).
    Keep {
        /// Recorded outcome.
        outcome: &'static str,
    },
    /// Not allowed in this state; `reason` is safe to show.
    Refuse {
        /// Why.
        reason: String,
    },
}

impl Decision {
    /// The state after the decision (the current one unless it changes).
    #[must_use]
    pub fn state_after(&self, current: OrderState) -> OrderState {
        match self {
            Self::Change { order, .. } => order.state,
            _ => current,
        }
    }
}

fn refuse(reason: impl Into<String>) -> Decision {
    Decision::Refuse {
        reason: reason.into(),
    }
}

/// Decides what `event` does to `order` at time `now`. Pure: the caller writes the result in
/// the transaction in which it read `order`.
#[must_use]
pub fn decide(order: &Order, event: &OrderEvent<'_>, now: i64) -> Decision {
    use OrderState as S;
    let mut next = order.clone();
    next.updated_at = now;
    match *event {
        OrderEvent::Pay { payment, via } => decide_pay(order, next, payment, via),
        OrderEvent::Prepay {
            prepay_id,
            until,
            first_check_at,
        } => match order.state {
            S::Created => {
                next.prepay_id = Some(prepay_id.to_owned());
                next.prepay_expires_at = Some(until);
                next.checks = 0;
                next.next_check_at = Some(first_check_at.min(order.expire_at.max(now)));
                Decision::Change {
                    order: next,
                    kind: "prepay",
                    detail: "JSAPI order placed".into(),
                }
            }
            other => refuse(format!("order is {other}")),
        },
        OrderEvent::Close { kind } => match order.state {
            S::Created => {
                next.state = S::Closed;
                next.checks = 0;
                next.next_check_at = order
                    .prepay_id
                    .is_some()
                    .then_some(now + RECHECK_AFTER_CLOSE_SECS);
                Decision::Change {
                    order: next,
                    kind,
                    detail: String::new(),
                }
            }
            S::Closed => Decision::Keep {
                outcome: "already_closed",
            },
            other => refuse(format!("order is {other}")),
        },
        OrderEvent::ClosedUpstream { trade_state } => match order.state {
            S::Created => {
                next.state = S::Closed;
                next.next_check_at = None;
                Decision::Change {
                    order: next,
                    kind: "closed_upstream",
                    detail: format!("trade_state={trade_state}"),
                }
            }
            _ => Decision::Keep {
                outcome: "not_open",
            },
        },
        OrderEvent::Accept => match order.state {
            S::Review => {
                let reason = order.review_reason.clone().unwrap_or_default();
                Decision::Change {
                    order: next.settled(),
                    kind: "review_accepted",
                    detail: reason,
                }
            }
            other => refuse(format!("order is {other}, not REVIEW")),
        },
        OrderEvent::ReserveRefund { amount } => match order.state {
            S::Paid | S::Refunding | S::Review => {
                if amount <= 0 || amount > order.refundable() {
                    return refuse(format!(
                        "amount exceeds the refundable balance ({} fen)",
                        order.refundable().max(0)
                    ));
                }
                next.refund_pending += amount;
                next.state = S::Refunding;
                Decision::Change {
                    order: next,
                    kind: "refund_requested",
                    detail: format!("amount={amount}"),
                }
            }
            S::Refunded => refuse("order is fully refunded"),
            other => refuse(format!("order is {other}, not paid")),
        },
        OrderEvent::ExternalRefund { amount } => {
            if !order.state.is_paid() {
                return refuse(format!("order is {}, no payment recorded", order.state));
            }
            let over = amount > order.refundable();
            next.refund_pending += amount;
            next.state = S::Refunding;
            Decision::Change {
                order: next,
                kind: "external_refund",
                detail: if over {
                    format!("amount={amount} exceeds the recorded refundable balance")
                } else {
                    format!("amount={amount}")
                },
            }
        }
    }
}

fn decide_pay(order: &Order, mut next: Order, p: &Payment, via: Via) -> Decision {
    use OrderState as S;
    let detail = format!(
        "via={} transaction_id={}",
        match via {
            Via::Notify => "notify",
            Via::Query => "query",
        },
        p.transaction_id
    );
    match order.state {
        S::Created | S::Closed => {
            let mut problems = Vec::new();
            if order.state == S::Closed {
                problems.push("paid after the order was closed".to_owned());
            }
            if p.total != order.amount {
                problems.push(format!(
                    "amount {} != order amount {}",
                    p.total, order.amount
                ));
            }
            if let Some(c) = p.currency.as_deref().filter(|c| *c != "CNY") {
                problems.push(format!("currency {c}"));
            }
            if p.payer_openid.as_deref().is_some_and(|o| o != order.openid) {
                problems.push("payer openid differs from the order's".to_owned());
            }
            next.transaction_id = Some(p.transaction_id.clone());
            next.paid_amount = Some(p.total);
            next.next_check_at = None;
            if problems.is_empty() {
                next.state = S::Paid;
                Decision::Change {
                    order: next,
                    kind: match via {
                        Via::Notify => "notify_paid",
                        Via::Query => "reconciled_paid",
                    },
                    detail,
                }
            } else {
                let reason = problems.join("; ");
                next.state = S::Review;
                next.review_reason = Some(reason.clone());
                Decision::Change {
                    order: next,
                    kind: "flagged_review",
                    detail: format!("{detail} {reason}"),
                }
            }
        }
        S::Paid | S::Refunding | S::Refunded | S::Review => {
            if order.records_payment(&p.transaction_id) {
                Decision::Keep {
                    outcome: "duplicate",
                }
            } else {
                // Money taken twice for one order: never dropped, shown to the back office.
                next.double_payment = Some(p.transaction_id.clone());
                Decision::Change {
                    order: next,
                    kind: "double_payment",
                    detail,
                }
            }
        }
    }
}

/// Something that happened to a refund.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundEvent<'a> {
    /// WeChat reported this status (answer to the submission, query, or notification):
    /// `SUCCESS`, `CLOSED`, `PROCESSING` or `ABNORMAL`.
    Status {
        /// WeChat's `status` / `refund_status`.
        status: &'a str,
        /// WeChat refund id, when given.
        refund_id: Option<&'a str>,
    },
    /// WeChat refused the submission with a verified 4xx answer: nothing was refunded.
    Rejected {
        /// WeChat's error code.
        code: &'a str,
    },
    /// A query answered that WeChat has no such refund: it must be submitted again.
    NotFound,
}

/// What to do about a [`RefundEvent`].
// Short-lived, one per decision: boxing the row would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundDecision {
    /// Write both rows and record an order event.
    Change {
        /// The refund row to write.
        refund: Refund,
        /// The order row to write.
        order: Order,
        /// Event kind.
        kind: &'static str,
        /// Event detail.
        detail: String,
    },
    /// Nothing to write.
    Keep {
        /// Recorded outcome, e.g. `duplicate`.
        outcome: &'static str,
    },
}

/// Decides what `event` does to `refund` (of `order`) at `now`. Pure, like [`decide`]. A refund
/// left open (`PROCESSING`, `ABNORMAL`) is queried `first_check_secs` later.
#[must_use]
pub fn decide_refund(
    refund: &Refund,
    order: &Order,
    event: &RefundEvent<'_>,
    now: i64,
    first_check_secs: i64,
) -> RefundDecision {
    use RefundState as R;
    let keep = |outcome| RefundDecision::Keep { outcome };
    let (to, refund_id) = match *event {
        RefundEvent::Status { status, refund_id } => {
            let to = match status {
                "SUCCESS" => R::Success,
                "CLOSED" => R::Closed,
                "ABNORMAL" => R::Abnormal,
                "PROCESSING" => R::Processing,
                _ => return keep("unknown_status"),
            };
            (to, refund_id)
        }
        RefundEvent::Rejected { .. } => (R::Failed, None),
        RefundEvent::NotFound => (R::Pending, None),
    };
    let from = refund.state;
    let allowed = match (from, to) {
        (a, b) if a == b => return keep("duplicate"),
        // Reality wins: an authentic SUCCESS after a refusal still moved money.
        (R::Pending | R::Processing | R::Abnormal | R::Failed, R::Success) => true,
        (R::Pending | R::Processing | R::Abnormal, R::Closed) => true,
        (R::Pending | R::Processing, R::Abnormal) => true,
        (R::Pending, R::Processing | R::Failed) => true,
        (R::Processing, R::Pending) => true,
        _ => false,
    };
    if !allowed {
        return keep(if from.is_final() {
            "already_final"
        } else {
            "ignored"
        });
    }
    let mut r = refund.clone();
    r.state = to;
    r.updated_at = now;
    if let Some(id) = refund_id {
        r.refund_id = Some(id.to_owned());
    }
    let reserved = !matches!(from, R::Failed | R::Success | R::Closed);
    let mut o = order.clone();
    o.updated_at = now;
    match to {
        R::Success | R::Closed | R::Failed => {
            if reserved {
                o.refund_pending -= refund.amount;
            }
            if to == R::Success {
                o.refunded += refund.amount;
            }
            o = o.settled();
            r.next_check_at = None;
        }
        R::Abnormal | R::Processing | R::Pending => {
            r.attempts = 0;
            r.next_check_at = Some(if to == R::Pending {
                now
            } else {
                now + first_check_secs
            });
        }
    }
    let detail = match *event {
        RefundEvent::Rejected { code } => {
            format!("out_refund_no={} rejected: {code}", refund.out_refund_no)
        }
        _ => format!("out_refund_no={} {from} -> {to}", refund.out_refund_no),
    };
    RefundDecision::Change {
        refund: r,
        order: o,
        kind: match to {
            R::Success => "refund_succeeded",
            R::Closed => "refund_closed",
            R::Abnormal => "refund_abnormal",
            R::Failed => "refund_failed",
            R::Processing => "refund_accepted",
            R::Pending => "refund_resubmit",
        },
        detail,
    }
}

#[cfg(test)]
mod tests;
