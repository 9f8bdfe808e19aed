//! The simulator's in-memory world: login codes, orders, prepay ids and refunds, with the state
//! rules of the real services. Everything here is plain data and takes `now` (unix seconds) as
//! a parameter; the routes and the notifier hold it behind a mutex.

use std::collections::{HashMap, VecDeque};
use std::fmt;

use serde_json::{Value, json};

use super::wire::{rfc3339_cst, ymd_cst};

/// How long a `wx.login` code is valid (WeChat: five minutes).
pub(crate) const LOGIN_CODE_TTL: u64 = 5 * 60;
/// How long a `prepay_id` is valid (WeChat Pay: two hours).
pub(crate) const PREPAY_TTL: u64 = 2 * 3600;

/// `trade_state` of a simulated order (WeChat Pay APIv3 "查询订单", field `trade_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TradeState {
    /// `NOTPAY`: ordered, not paid.
    NotPay,
    /// `SUCCESS`: paid.
    Success,
    /// `REFUND`: paid, then (partly) refunded.
    Refund,
    /// `CLOSED`: closed by the merchant before payment.
    Closed,
    /// `REVOKED`: revoked (payment-code payments; a query may still answer it).
    Revoked,
    /// `USERPAYING`: the payer is paying (entering a password).
    UserPaying,
    /// `PAYERROR`: the payment failed (e.g. the bank refused it).
    PayError,
}

impl TradeState {
    /// The wire value (`NOTPAY`, `SUCCESS`, `REFUND`, `CLOSED`, `REVOKED`, `USERPAYING`,
    /// `PAYERROR`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPay => "NOTPAY",
            Self::Success => "SUCCESS",
            Self::Refund => "REFUND",
            Self::Closed => "CLOSED",
            Self::Revoked => "REVOKED",
            Self::UserPaying => "USERPAYING",
            Self::PayError => "PAYERROR",
        }
    }

    /// Parses a wire value.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        [
            Self::NotPay,
            Self::Success,
            Self::Refund,
            Self::Closed,
            Self::Revoked,
            Self::UserPaying,
            Self::PayError,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Whether the order has been paid (`SUCCESS` or `REFUND`).
    #[must_use]
    pub fn is_paid(self) -> bool {
        matches!(self, Self::Success | Self::Refund)
    }

    /// WeChat's `trade_state_desc` for the state.
    fn desc(self) -> &'static str {
        match self {
            Self::NotPay => "订单未支付",
            Self::Success => "支付成功",
            Self::Refund => "转入退款",
            Self::Closed => "订单已关闭",
            Self::Revoked => "已撤销",
            Self::UserPaying => "用户支付中",
            Self::PayError => "支付失败",
        }
    }
}

impl fmt::Display for TradeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `status` of a simulated refund (WeChat Pay APIv3 "申请退款", field `status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefundStatus {
    /// `PROCESSING`: accepted, money not yet back.
    Processing,
    /// `SUCCESS`: the money is back with the payer.
    Success,
    /// `CLOSED`: the refund was closed without paying out; its amount is refundable again.
    Closed,
    /// `ABNORMAL`: the refund is stuck (e.g. the payer's card was cancelled); it may still
    /// become `SUCCESS` or `CLOSED` later, and its amount stays reserved meanwhile.
    Abnormal,
}

impl RefundStatus {
    /// The wire value (`PROCESSING`, `SUCCESS`, `CLOSED`, `ABNORMAL`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Success => "SUCCESS",
            Self::Closed => "CLOSED",
            Self::Abnormal => "ABNORMAL",
        }
    }

    /// Parses a wire value.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        [
            Self::Processing,
            Self::Success,
            Self::Closed,
            Self::Abnormal,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Whether the refund can no longer change (`SUCCESS` or `CLOSED`).
    #[must_use]
    pub fn is_final(self) -> bool {
        matches!(self, Self::Success | Self::Closed)
    }

    /// The notification event of a refund that reached this status (`REFUND.SUCCESS`,
    /// `REFUND.ABNORMAL`, `REFUND.CLOSED`; WeChat Pay APIv3 "退款结果通知"), and its summary.
    pub(crate) fn event(self) -> Option<(&'static str, &'static str)> {
        match self {
            Self::Processing => None,
            Self::Success => Some(("REFUND.SUCCESS", "退款成功")),
            Self::Closed => Some(("REFUND.CLOSED", "退款关闭")),
            Self::Abnormal => Some(("REFUND.ABNORMAL", "退款异常")),
        }
    }
}

impl fmt::Display for RefundStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The merchant-supplied part of a JSAPI order, as validated from the request body. Two orders
/// with the same `out_trade_no` are "the same order" when these are equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OrderRequest {
    pub appid: String,
    pub mchid: String,
    pub description: String,
    pub out_trade_no: String,
    pub notify_url: String,
    pub total: u64,
    pub currency: String,
    pub openid: String,
    pub attach: Option<String>,
    pub time_expire: Option<u64>,
}

/// A simulated order.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub req: OrderRequest,
    pub prepay_id: String,
    pub prepay_expires_at: u64,
    pub state: TradeState,
    pub created_at: u64,
    pub transaction_id: Option<String>,
    pub success_time: Option<u64>,
    /// Reserved by refunds that are not `CLOSED`, in fen.
    pub refunded: u64,
    /// Transaction ids of later payments of the already paid order (double payments).
    pub double_payments: Vec<String>,
}

/// A snapshot of a simulated order, for tests and the control API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct OrderSnapshot {
    /// The merchant's order number.
    pub out_trade_no: String,
    /// `trade_state`.
    pub trade_state: TradeState,
    /// Order amount in fen.
    pub total: u64,
    /// Sum of all refunds requested so far that are not `CLOSED`, in fen.
    pub refunded: u64,
    /// The payer's openid from the order.
    pub openid: String,
    /// The notify URL the payment notification goes to.
    pub notify_url: String,
    /// The current prepay id.
    pub prepay_id: String,
    /// WeChat's transaction id, once paid.
    pub transaction_id: Option<String>,
    /// When it was paid (unix seconds).
    pub success_time: Option<u64>,
    /// The `attach` the merchant sent, if any.
    pub attach: Option<String>,
    /// The `description` the merchant sent.
    pub description: String,
    /// Transaction ids of later payments of the already paid order
    /// ([`crate::SimulatorHandle::pay_again`]); queries keep answering the first one.
    pub double_payments: Vec<String>,
}

impl serde::Serialize for TradeState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl serde::Serialize for RefundStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Order {
    pub(crate) fn snapshot(&self) -> OrderSnapshot {
        OrderSnapshot {
            out_trade_no: self.req.out_trade_no.clone(),
            trade_state: self.state,
            total: self.req.total,
            refunded: self.refunded,
            openid: self.req.openid.clone(),
            notify_url: self.req.notify_url.clone(),
            prepay_id: self.prepay_id.clone(),
            transaction_id: self.transaction_id.clone(),
            success_time: self.success_time,
            attach: self.req.attach.clone(),
            description: self.req.description.clone(),
            double_payments: self.double_payments.clone(),
        }
    }

    /// Whether the order can no longer be paid because its `time_expire` has passed.
    pub(crate) fn expired(&self, now: u64) -> bool {
        self.req.time_expire.is_some_and(|t| now > t)
    }

    /// The transaction object of the order query and of the payment notification (WeChat Pay
    /// APIv3 "查询订单" response / "支付成功回调通知" resource).
    pub(crate) fn transaction_json(&self) -> Value {
        let mut v = json!({
            "appid": self.req.appid,
            "mchid": self.req.mchid,
            "out_trade_no": self.req.out_trade_no,
            "trade_state": self.state.as_str(),
            "trade_state_desc": self.state.desc(),
            "amount": { "total": self.req.total, "currency": self.req.currency },
            "payer": {},
        });
        if let Some(attach) = &self.req.attach {
            v["attach"] = json!(attach);
        }
        if let (Some(txid), Some(paid)) = (&self.transaction_id, self.success_time) {
            v["transaction_id"] = json!(txid);
            v["trade_type"] = json!("JSAPI");
            v["bank_type"] = json!("OTHERS");
            v["success_time"] = json!(rfc3339_cst(paid));
            v["payer"] = json!({ "openid": self.req.openid });
            v["amount"] = json!({
                "total": self.req.total,
                "payer_total": self.req.total,
                "currency": self.req.currency,
                "payer_currency": self.req.currency,
            });
            v["promotion_detail"] = json!([]);
        }
        v
    }
}

/// A simulated refund.
#[derive(Debug, Clone)]
pub(crate) struct Refund {
    pub refund_id: String,
    pub out_refund_no: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub refund: u64,
    pub total: u64,
    pub currency: String,
    pub reason: Option<String>,
    pub notify_url: Option<String>,
    pub status: RefundStatus,
    pub created_at: u64,
    pub success_time: Option<u64>,
}

/// A snapshot of a simulated refund, for tests and the control API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct RefundSnapshot {
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// WeChat's refund id.
    pub refund_id: String,
    /// The order refunded.
    pub out_trade_no: String,
    /// Refund amount in fen.
    pub refund: u64,
    /// `PROCESSING`, `SUCCESS`, `CLOSED` or `ABNORMAL`.
    pub status: RefundStatus,
    /// Where the refund notifications go, if the merchant gave a URL.
    pub notify_url: Option<String>,
    /// The `reason` the merchant sent.
    pub reason: Option<String>,
}

impl Refund {
    pub(crate) fn snapshot(&self) -> RefundSnapshot {
        RefundSnapshot {
            out_refund_no: self.out_refund_no.clone(),
            refund_id: self.refund_id.clone(),
            out_trade_no: self.out_trade_no.clone(),
            refund: self.refund,
            status: self.status,
            notify_url: self.notify_url.clone(),
            reason: self.reason.clone(),
        }
    }

    /// The refund object of "申请退款" / "查询单笔退款" (WeChat Pay APIv3).
    pub(crate) fn refund_json(&self) -> Value {
        let mut v = json!({
            "refund_id": self.refund_id,
            "out_refund_no": self.out_refund_no,
            "transaction_id": self.transaction_id,
            "out_trade_no": self.out_trade_no,
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
            "create_time": rfc3339_cst(self.created_at),
            "status": self.status.as_str(),
            "funds_account": "AVAILABLE",
            "amount": self.amount_json(),
            "promotion_detail": [],
        });
        if let Some(t) = self.success_time {
            v["success_time"] = json!(rfc3339_cst(t));
        }
        v
    }

    fn amount_json(&self) -> Value {
        json!({
            "total": self.total,
            "refund": self.refund,
            "from": [],
            "payer_total": self.total,
            "payer_refund": self.refund,
            "settlement_refund": self.refund,
            "settlement_total": self.total,
            "discount_refund": 0,
            "currency": self.currency,
            "refund_fee": 0,
        })
    }

    /// The resource plaintext of a `REFUND.SUCCESS`, `REFUND.ABNORMAL` or `REFUND.CLOSED`
    /// notification (WeChat Pay APIv3 "退款结果通知"; `success_time` only on success).
    pub(crate) fn notification_json(&self, mchid: &str) -> Value {
        let mut v = json!({
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status.as_str(),
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": self.total,
                "refund": self.refund,
                "payer_total": self.total,
                "payer_refund": self.refund,
            },
        });
        if let Some(t) = self.success_time {
            v["success_time"] = json!(rfc3339_cst(t));
        }
        v
    }
}

/// A `wx.login` code waiting to be exchanged.
#[derive(Debug, Clone)]
pub(crate) struct LoginCode {
    pub openid: String,
    pub expires_at: u64,
    pub used: bool,
}

/// What happens to the notifications the simulator sends from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NotifyBehavior {
    /// Deliver once, retrying on failure along the retry schedule.
    #[default]
    Normal,
    /// Never deliver (a lost notification: the host must find the payment by querying).
    Drop,
    /// Deliver `n` copies concurrently, each with its own retries.
    Duplicate(usize),
    /// First send one `WECHATPAY/SIGNTEST/` probe (whose answer is ignored), then deliver
    /// normally.
    ProbeFirst,
    /// Deliver with the body altered after signing (every attempt), as an attacker would.
    Tamper,
}

/// The whole mutable world.
#[derive(Debug, Default)]
pub(crate) struct World {
    pub orders: HashMap<String, Order>,
    /// prepay_id → out_trade_no.
    pub prepays: HashMap<String, String>,
    pub refunds: HashMap<String, Refund>,
    pub codes: HashMap<String, LoginCode>,
    /// openid → unionid.
    pub unionids: HashMap<String, String>,
    /// The session key last issued to each openid by `jscode2session`.
    pub session_keys: HashMap<String, String>,
    /// errcodes the next `jscode2session` calls answer with, in order.
    pub login_failures: VecDeque<i64>,
    /// What the next `/v3` calls answer with, in order.
    pub v3_failures: VecDeque<V3Fault>,
    /// What happens to the next refund submissions, in order.
    pub refund_faults: VecDeque<RefundFault>,
    pub behavior: NotifyBehavior,
    /// Order queries received, by `out_trade_no` (queries by `transaction_id` count for their
    /// order).
    pub order_queries: HashMap<String, usize>,
    /// Refund queries received, by `out_refund_no`.
    pub refund_queries: HashMap<String, usize>,
    /// Orders placed through APIv2 (`/pay/unifiedorder`), by `out_trade_no`, with the sign type
    /// they were placed with: their notifications go out as v2 XML.
    pub v2_orders: HashMap<String, wxpay_core::v2::SignType>,
    seq: u64,
}

/// How the simulator signs a forced `/v3` failure
/// ([`SimulatorHandle::fail_next_v3_signed`](crate::SimulatorHandle::fail_next_v3_signed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AnswerSigning {
    /// Signed with the platform key like any answer (the default).
    #[default]
    Signed,
    /// No `Wechatpay-*` headers at all: how WeChat Pay answers a request whose own signature it
    /// rejected (401 `SIGN_ERROR`), and what a forged answer may look like.
    Unsigned,
    /// `Wechatpay-*` headers whose signature does not verify (over other bytes): an altered or
    /// forged answer.
    BadSignature,
}

impl AnswerSigning {
    /// `signed`, `unsigned` or `bad_signature` (the control API's names).
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "signed" => Some(Self::Signed),
            "unsigned" => Some(Self::Unsigned),
            "bad_signature" => Some(Self::BadSignature),
            _ => None,
        }
    }
}

/// A forced `/v3` failure: nothing is done, the answer is `status` with `{"code": code}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V3Fault {
    pub status: u16,
    pub code: String,
    pub signing: AnswerSigning,
}

/// What happens to a refund submission (`POST /v3/refund/domestic/refunds`) at the simulated
/// WeChat Pay, for tests of a host whose refund outcome is unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefundFault {
    /// The refund is created (or found, for a repeated `out_refund_no`), but the answer is this
    /// status with code `SYSTEM_ERROR`, signed like any answer: the merchant cannot tell
    /// whether the refund exists.
    CreatedButError(u16),
    /// The refund is created, and the answer is held back this long: a merchant whose timeout
    /// is shorter sees a timeout.
    CreatedButDelayed(std::time::Duration),
    /// Nothing is created; the answer is `status` with `{"code": code}`.
    Rejected {
        /// HTTP status (400–599).
        status: u16,
        /// WeChat's error code, e.g. `SYSTEM_ERROR`, `FREQUENCY_LIMITED`.
        code: String,
    },
}

/// Why an order could not be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OrderConflict {
    /// Same `out_trade_no`, different parameters.
    Mismatch,
    /// Already paid.
    Paid,
    /// Closed.
    Closed,
}

/// Why a state change was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    State(TradeState),
    Expired,
    RefundNotFound,
    RefundState(RefundStatus),
    RefundTooLarge {
        refundable: u64,
    },
    TotalMismatch,
    RefundMismatch,
    /// The requested target state cannot be set this way.
    Target(&'static str),
}

impl World {
    /// A process-unique sequence number for identifiers.
    pub(crate) fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Creates (or re-confirms) an order; returns the prepay id.
    ///
    /// Re-ordering an unpaid order with identical parameters returns its prepay id while that is
    /// valid and a fresh one after it expired, like WeChat Pay; anything else with the same
    /// `out_trade_no` is refused.
    pub(crate) fn create_order(
        &mut self,
        req: OrderRequest,
        now: u64,
        random: &str,
    ) -> Result<String, OrderConflict> {
        if let Some(existing) = self.orders.get(&req.out_trade_no) {
            match existing.state {
                TradeState::Success | TradeState::Refund => return Err(OrderConflict::Paid),
                TradeState::Closed | TradeState::Revoked => return Err(OrderConflict::Closed),
                TradeState::NotPay | TradeState::UserPaying | TradeState::PayError => {}
            }
            if existing.req != req {
                return Err(OrderConflict::Mismatch);
            }
            if existing.prepay_expires_at > now {
                return Ok(existing.prepay_id.clone());
            }
        }
        let seq = self.next_seq();
        let prepay_id =
            format!("wx{}{seq:06}{}", &rfc3339_cst(now)[8..10], &random[..20]).to_ascii_lowercase();
        let created_at = self
            .orders
            .get(&req.out_trade_no)
            .map_or(now, |o| o.created_at);
        self.prepays
            .insert(prepay_id.clone(), req.out_trade_no.clone());
        self.orders.insert(
            req.out_trade_no.clone(),
            Order {
                req,
                prepay_id: prepay_id.clone(),
                prepay_expires_at: now + PREPAY_TTL,
                state: TradeState::NotPay,
                created_at,
                transaction_id: None,
                success_time: None,
                refunded: 0,
                double_payments: Vec::new(),
            },
        );
        Ok(prepay_id)
    }

    /// A new WeChat transaction id (28 digits).
    fn transaction_id(&mut self, now: u64) -> String {
        let seq = self.next_seq();
        format!("42000029{}{seq:012}", ymd_cst(now))
    }

    /// Marks an unpaid, open order paid (what the payer's confirmation does): `NOTPAY`,
    /// `USERPAYING` and `PAYERROR` (a retry after a failed attempt) can be paid until
    /// `time_expire`.
    pub(crate) fn pay(&mut self, out_trade_no: &str, now: u64) -> Result<Order, Refusal> {
        let order = self.orders.get(out_trade_no).ok_or(Refusal::NotFound)?;
        if !matches!(
            order.state,
            TradeState::NotPay | TradeState::UserPaying | TradeState::PayError
        ) {
            return Err(Refusal::State(order.state));
        }
        if order.expired(now) {
            return Err(Refusal::Expired);
        }
        self.force_pay(out_trade_no, now)
    }

    /// Marks any unpaid order paid, closed and expired ones included: the payer's payment that
    /// crossed the merchant's close (WeChat's real race).
    pub(crate) fn force_pay(&mut self, out_trade_no: &str, now: u64) -> Result<Order, Refusal> {
        let state = self
            .orders
            .get(out_trade_no)
            .ok_or(Refusal::NotFound)?
            .state;
        if state.is_paid() {
            return Err(Refusal::State(state));
        }
        let transaction_id = self.transaction_id(now);
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        order.state = TradeState::Success;
        order.transaction_id = Some(transaction_id);
        order.success_time = Some(now);
        Ok(order.clone())
    }

    /// A second payment of a paid order under a new transaction id (a double payment).
    /// Returns the order as the second payment's notification describes it (`SUCCESS`, the new
    /// id and time); the stored order keeps its first payment.
    pub(crate) fn pay_again(&mut self, out_trade_no: &str, now: u64) -> Result<Order, Refusal> {
        let state = self
            .orders
            .get(out_trade_no)
            .ok_or(Refusal::NotFound)?
            .state;
        if !state.is_paid() {
            return Err(Refusal::State(state));
        }
        let transaction_id = self.transaction_id(now);
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        order.double_payments.push(transaction_id.clone());
        let mut second = order.clone();
        second.state = TradeState::Success;
        second.transaction_id = Some(transaction_id);
        second.success_time = Some(now);
        Ok(second)
    }

    /// Sets the `trade_state` of an unpaid order, for queries: `NOTPAY`, `USERPAYING`,
    /// `PAYERROR`, `REVOKED` or `CLOSED`. Paid states come from paying and refunding only.
    pub(crate) fn set_trade_state(
        &mut self,
        out_trade_no: &str,
        state: TradeState,
    ) -> Result<Order, Refusal> {
        if state.is_paid() {
            return Err(Refusal::Target(
                "SUCCESS and REFUND come from paying and refunding, not from set_trade_state",
            ));
        }
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        if order.state.is_paid() {
            return Err(Refusal::State(order.state));
        }
        order.state = state;
        Ok(order.clone())
    }

    /// Closes an order; closing a closed order again is fine, a paid one is refused.
    pub(crate) fn close(&mut self, out_trade_no: &str) -> Result<(), Refusal> {
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        if order.state.is_paid() {
            return Err(Refusal::State(order.state));
        }
        order.state = TradeState::Closed;
        Ok(())
    }

    /// Accepts a refund request (status `PROCESSING`); a repeated `out_refund_no` with the same
    /// amount returns the existing refund.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn refund(
        &mut self,
        out_trade_no: &str,
        out_refund_no: &str,
        refund: u64,
        total: u64,
        reason: Option<String>,
        notify_url: Option<String>,
        now: u64,
    ) -> Result<(Refund, bool), Refusal> {
        if let Some(existing) = self.refunds.get(out_refund_no) {
            return if existing.out_trade_no == out_trade_no && existing.refund == refund {
                Ok((existing.clone(), false))
            } else {
                Err(Refusal::RefundMismatch)
            };
        }
        self.new_refund(
            out_trade_no,
            Some(out_refund_no),
            refund,
            total,
            reason,
            notify_url,
            now,
        )
        .map(|r| (r, true))
    }

    /// A refund made in the merchant console (not through the API) of `refund` fen: WeChat
    /// numbers it itself (its `out_refund_no` is its `refund_id`).
    pub(crate) fn console_refund(
        &mut self,
        out_trade_no: &str,
        refund: u64,
        notify_url: Option<String>,
        now: u64,
    ) -> Result<Refund, Refusal> {
        let total = self
            .orders
            .get(out_trade_no)
            .ok_or(Refusal::NotFound)?
            .req
            .total;
        self.new_refund(
            out_trade_no,
            None,
            refund,
            total,
            Some("商户平台退款".to_owned()),
            notify_url,
            now,
        )
    }

    /// A new WeChat refund id (29 digits).
    fn refund_id(&mut self, now: u64) -> String {
        let seq = self.next_seq();
        format!("50300{}{seq:016}", ymd_cst(now))
    }

    #[allow(clippy::too_many_arguments)]
    fn new_refund(
        &mut self,
        out_trade_no: &str,
        out_refund_no: Option<&str>,
        refund: u64,
        total: u64,
        reason: Option<String>,
        notify_url: Option<String>,
        now: u64,
    ) -> Result<Refund, Refusal> {
        let refund_id = self.refund_id(now);
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        if !order.state.is_paid() {
            return Err(Refusal::State(order.state));
        }
        if total != order.req.total {
            return Err(Refusal::TotalMismatch);
        }
        let refundable = order.req.total - order.refunded;
        if refund > refundable {
            return Err(Refusal::RefundTooLarge { refundable });
        }
        order.refunded += refund;
        order.state = TradeState::Refund;
        let r = Refund {
            out_refund_no: out_refund_no.unwrap_or(&refund_id).to_owned(),
            refund_id,
            out_trade_no: out_trade_no.to_owned(),
            transaction_id: order.transaction_id.clone().unwrap_or_default(),
            refund,
            total,
            currency: order.req.currency.clone(),
            reason,
            notify_url,
            status: RefundStatus::Processing,
            created_at: now,
            success_time: None,
        };
        self.refunds.insert(r.out_refund_no.clone(), r.clone());
        Ok(r)
    }

    /// Moves a refund to `SUCCESS`, `CLOSED` or `ABNORMAL`; returns it if this call changed
    /// it. `PROCESSING` and `ABNORMAL` refunds can move; setting the status a refund already
    /// has changes nothing; a final (`SUCCESS`, `CLOSED`) refund cannot move. A `CLOSED` refund
    /// releases its amount (refundable again).
    pub(crate) fn set_refund_status(
        &mut self,
        out_refund_no: &str,
        status: RefundStatus,
        now: u64,
    ) -> Result<Option<Refund>, Refusal> {
        if status == RefundStatus::Processing {
            return Err(Refusal::Target("a refund cannot go back to PROCESSING"));
        }
        let r = self
            .refunds
            .get_mut(out_refund_no)
            .ok_or(Refusal::RefundNotFound)?;
        if r.status == status {
            return Ok(None);
        }
        if r.status.is_final() {
            return Err(Refusal::RefundState(r.status));
        }
        r.status = status;
        match status {
            RefundStatus::Success => r.success_time = Some(now),
            RefundStatus::Closed => {
                if let Some(order) = self.orders.get_mut(&r.out_trade_no) {
                    order.refunded = order.refunded.saturating_sub(r.refund);
                }
            }
            RefundStatus::Abnormal | RefundStatus::Processing => {}
        }
        Ok(Some(r.clone()))
    }

    /// What WeChat does by itself after the refund delay: a refund still `PROCESSING`
    /// succeeds; one moved meanwhile (`ABNORMAL`, `CLOSED`, `SUCCESS`) is left alone.
    pub(crate) fn settle_refund(
        &mut self,
        out_refund_no: &str,
        now: u64,
    ) -> Result<Option<Refund>, Refusal> {
        let r = self
            .refunds
            .get(out_refund_no)
            .ok_or(Refusal::RefundNotFound)?;
        if r.status != RefundStatus::Processing {
            return Ok(None);
        }
        self.set_refund_status(out_refund_no, RefundStatus::Success, now)
    }

    /// Issues a single-use login code for `openid`.
    pub(crate) fn issue_code(&mut self, openid: &str, now: u64, random: &str) -> String {
        let code = format!("0{}", &random[..31]);
        self.codes.insert(
            code.clone(),
            LoginCode {
                openid: openid.to_owned(),
                expires_at: now + LOGIN_CODE_TTL,
                used: false,
            },
        );
        code
    }

    /// Redeems a login code: the openid, or the WeChat errcode (40029 invalid or expired, 40163
    /// already used).
    pub(crate) fn redeem_code(&mut self, code: &str, now: u64) -> Result<String, i64> {
        let entry = self.codes.get_mut(code).ok_or(40029_i64)?;
        if entry.used {
            return Err(40163);
        }
        if now > entry.expires_at {
            return Err(40029);
        }
        entry.used = true;
        Ok(entry.openid.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";

    fn req(no: &str, total: u64) -> OrderRequest {
        OrderRequest {
            appid: "wx1".into(),
            mchid: "19".into(),
            description: "d".into(),
            out_trade_no: no.into(),
            notify_url: "http://127.0.0.1/notify".into(),
            total,
            currency: "CNY".into(),
            openid: "o1".into(),
            attach: None,
            time_expire: None,
        }
    }

    #[test]
    fn same_order_is_idempotent_different_is_refused() {
        let mut w = World::default();
        let p = w.create_order(req("A1", 100), 1000, R).expect("first");
        assert_eq!(w.create_order(req("A1", 100), 1001, R), Ok(p.clone()));
        assert_eq!(
            w.create_order(req("A1", 101), 1002, R),
            Err(OrderConflict::Mismatch)
        );
        let p2 = w
            .create_order(req("A1", 100), 1000 + PREPAY_TTL + 1, R)
            .expect("after expiry");
        assert_ne!(p, p2);
        assert_eq!(w.prepays.get(&p2).map(String::as_str), Some("A1"));
    }

    #[test]
    fn pay_close_refund_rules() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        w.create_order(req("A2", 100), 1000, R).expect("order");
        w.close("A2").expect("close");
        w.close("A2").expect("close twice");
        assert_eq!(
            w.pay("A2", 1001).err(),
            Some(Refusal::State(TradeState::Closed))
        );
        let paid = w.pay("A1", 1001).expect("pay");
        assert_eq!(paid.transaction_id.as_deref().map(str::len), Some(28));
        assert_eq!(
            w.pay("A1", 1002).err(),
            Some(Refusal::State(TradeState::Success))
        );
        assert_eq!(w.close("A1"), Err(Refusal::State(TradeState::Success)));
        assert_eq!(
            w.create_order(req("A1", 100), 1003, R),
            Err(OrderConflict::Paid)
        );
        let (r, new) = w
            .refund("A1", "R1", 60, 100, None, None, 1004)
            .expect("refund");
        assert!(new && r.status == RefundStatus::Processing);
        let (_, new) = w
            .refund("A1", "R1", 60, 100, None, None, 1005)
            .expect("again");
        assert!(!new);
        assert_eq!(
            w.refund("A1", "R2", 41, 100, None, None, 1006).err(),
            Some(Refusal::RefundTooLarge { refundable: 40 })
        );
        assert!(
            w.set_refund_status("R1", RefundStatus::Success, 1007)
                .expect("complete")
                .is_some()
        );
        assert!(w.settle_refund("R1", 1008).expect("complete").is_none());
        assert_eq!(w.orders["A1"].state, TradeState::Refund);
    }

    #[test]
    fn a_closed_order_can_still_be_paid_by_force() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        w.close("A1").expect("close");
        let paid = w
            .force_pay("A1", 1001)
            .expect("the payment crossed the close");
        assert_eq!(paid.state, TradeState::Success);
        assert!(paid.transaction_id.is_some());
        assert_eq!(
            w.force_pay("A1", 1002).err(),
            Some(Refusal::State(TradeState::Success))
        );
        assert_eq!(w.force_pay("NOPE", 1002).err(), Some(Refusal::NotFound));
    }

    #[test]
    fn a_second_payment_has_its_own_transaction_id() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        assert_eq!(
            w.pay_again("A1", 1001).err(),
            Some(Refusal::State(TradeState::NotPay))
        );
        let first = w.pay("A1", 1001).expect("pay").transaction_id;
        let second = w.pay_again("A1", 1002).expect("pay again");
        assert_ne!(second.transaction_id, first);
        assert_eq!(second.state, TradeState::Success);
        let stored = &w.orders["A1"];
        assert_eq!(
            stored.transaction_id, first,
            "queries keep the first payment"
        );
        assert_eq!(
            stored.double_payments,
            vec![second.transaction_id.clone().expect("id")]
        );
    }

    #[test]
    fn trade_state_can_be_set_on_unpaid_orders_only() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        for state in [
            TradeState::UserPaying,
            TradeState::PayError,
            TradeState::Revoked,
            TradeState::Closed,
            TradeState::NotPay,
        ] {
            assert_eq!(w.set_trade_state("A1", state).expect("set").state, state);
            assert_eq!(TradeState::from_wire(state.as_str()), Some(state));
        }
        assert!(matches!(
            w.set_trade_state("A1", TradeState::Success),
            Err(Refusal::Target(_))
        ));
        w.set_trade_state("A1", TradeState::UserPaying)
            .expect("set");
        w.pay("A1", 1001).expect("a paying payer can finish");
        assert_eq!(
            w.set_trade_state("A1", TradeState::Closed).err(),
            Some(Refusal::State(TradeState::Success))
        );
    }

    #[test]
    fn refund_statuses_abnormal_then_final() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        w.pay("A1", 1001).expect("pay");
        w.refund("A1", "R1", 60, 100, None, None, 1002)
            .expect("refund");
        let r = w
            .set_refund_status("R1", RefundStatus::Abnormal, 1003)
            .expect("abnormal")
            .expect("changed");
        assert_eq!(r.status, RefundStatus::Abnormal);
        assert!(
            w.settle_refund("R1", 1004).expect("settle").is_none(),
            "left alone"
        );
        assert_eq!(
            w.orders["A1"].refunded, 60,
            "an abnormal refund keeps its amount"
        );
        w.set_refund_status("R1", RefundStatus::Closed, 1005)
            .expect("closed")
            .expect("changed");
        assert_eq!(w.orders["A1"].refunded, 0, "a closed refund releases it");
        assert_eq!(
            w.set_refund_status("R1", RefundStatus::Success, 1006).err(),
            Some(Refusal::RefundState(RefundStatus::Closed))
        );
        assert!(matches!(
            w.set_refund_status("R1", RefundStatus::Processing, 1006),
            Err(Refusal::Target(_))
        ));
        assert_eq!(
            w.set_refund_status("R9", RefundStatus::Success, 1006).err(),
            Some(Refusal::RefundNotFound)
        );
        // The released amount can be refunded again, under a new number.
        w.refund("A1", "R2", 100, 100, None, None, 1007)
            .expect("refund again");
        assert_eq!(w.orders["A1"].state, TradeState::Refund);
    }

    #[test]
    fn console_refunds_are_numbered_by_wechat() {
        let mut w = World::default();
        w.create_order(req("A1", 100), 1000, R).expect("order");
        assert_eq!(
            w.console_refund("A1", 10, None, 1001).err(),
            Some(Refusal::State(TradeState::NotPay))
        );
        w.pay("A1", 1001).expect("pay");
        let r = w.console_refund("A1", 30, None, 1002).expect("refund");
        assert_eq!(r.out_refund_no, r.refund_id);
        assert_eq!(r.refund_id.len(), 29);
        assert_eq!(w.orders["A1"].state, TradeState::Refund);
        assert_eq!(
            w.console_refund("A1", 71, None, 1003).err(),
            Some(Refusal::RefundTooLarge { refundable: 70 })
        );
    }

    #[test]
    fn expired_orders_cannot_be_paid() {
        let mut w = World::default();
        let mut r = req("A1", 100);
        r.time_expire = Some(1500);
        w.create_order(r, 1000, R).expect("order");
        assert_eq!(w.pay("A1", 1501).err(), Some(Refusal::Expired));
    }

    #[test]
    fn login_codes_are_single_use_and_expire() {
        let mut w = World::default();
        let c = w.issue_code("o1", 1000, R);
        assert_eq!(w.redeem_code(&c, 1001), Ok("o1".to_owned()));
        assert_eq!(w.redeem_code(&c, 1002), Err(40163));
        assert_eq!(w.redeem_code("nope", 1002), Err(40029));
        let c = w.issue_code("o1", 1000, &R[1..]);
        assert_eq!(w.redeem_code(&c, 1000 + LOGIN_CODE_TTL + 1), Err(40029));
    }
}
