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
}

impl TradeState {
    /// The wire value (`NOTPAY`, `SUCCESS`, `REFUND`, `CLOSED`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotPay => "NOTPAY",
            Self::Success => "SUCCESS",
            Self::Refund => "REFUND",
            Self::Closed => "CLOSED",
        }
    }

    /// WeChat's `trade_state_desc` for the state.
    fn desc(self) -> &'static str {
        match self {
            Self::NotPay => "订单未支付",
            Self::Success => "支付成功",
            Self::Refund => "转入退款",
            Self::Closed => "订单已关闭",
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
}

impl RefundStatus {
    /// The wire value (`PROCESSING`, `SUCCESS`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Processing => "PROCESSING",
            Self::Success => "SUCCESS",
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
    pub refunded: u64,
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
    /// Sum of all refunds requested so far, in fen.
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
    /// `PROCESSING` or `SUCCESS`.
    pub status: RefundStatus,
    /// Where the `REFUND.SUCCESS` notification goes, if the merchant gave a URL.
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

    /// The resource plaintext of a `REFUND.SUCCESS` notification (WeChat Pay APIv3
    /// "退款结果通知").
    pub(crate) fn notification_json(&self, mchid: &str) -> Value {
        json!({
            "mchid": mchid,
            "out_trade_no": self.out_trade_no,
            "transaction_id": self.transaction_id,
            "out_refund_no": self.out_refund_no,
            "refund_id": self.refund_id,
            "refund_status": self.status.as_str(),
            "success_time": self.success_time.map(rfc3339_cst),
            "user_received_account": "支付用户零钱",
            "amount": {
                "total": self.total,
                "refund": self.refund,
                "payer_total": self.total,
                "payer_refund": self.refund,
            },
        })
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
    /// errcodes the next `jscode2session` calls answer with, in order.
    pub login_failures: VecDeque<i64>,
    /// `(status, code)` the next `/v3` calls answer with, in order.
    pub v3_failures: VecDeque<(u16, String)>,
    pub behavior: NotifyBehavior,
    seq: u64,
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
    RefundTooLarge { refundable: u64 },
    TotalMismatch,
    RefundMismatch,
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
                TradeState::Closed => return Err(OrderConflict::Closed),
                TradeState::NotPay => {}
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
            },
        );
        Ok(prepay_id)
    }

    /// Marks an unpaid order paid (what the payer's confirmation does).
    pub(crate) fn pay(&mut self, out_trade_no: &str, now: u64) -> Result<Order, Refusal> {
        let seq = self.next_seq();
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        if order.state != TradeState::NotPay {
            return Err(Refusal::State(order.state));
        }
        if order.expired(now) {
            return Err(Refusal::Expired);
        }
        order.state = TradeState::Success;
        order.transaction_id = Some(format!("42000029{}{seq:012}", ymd_cst(now)));
        order.success_time = Some(now);
        Ok(order.clone())
    }

    /// Closes an order; closing a closed order again is fine, a paid one is refused.
    pub(crate) fn close(&mut self, out_trade_no: &str) -> Result<(), Refusal> {
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        match order.state {
            TradeState::NotPay | TradeState::Closed => {
                order.state = TradeState::Closed;
                Ok(())
            }
            s => Err(Refusal::State(s)),
        }
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
        let seq = self.next_seq();
        let order = self.orders.get_mut(out_trade_no).ok_or(Refusal::NotFound)?;
        if !matches!(order.state, TradeState::Success | TradeState::Refund) {
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
            refund_id: format!("50300{}{seq:016}", ymd_cst(now)),
            out_refund_no: out_refund_no.to_owned(),
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
        self.refunds.insert(out_refund_no.to_owned(), r.clone());
        Ok((r, true))
    }

    /// Completes a processing refund; returns it if this call changed it.
    pub(crate) fn complete_refund(
        &mut self,
        out_refund_no: &str,
        now: u64,
    ) -> Result<Option<Refund>, Refusal> {
        let r = self
            .refunds
            .get_mut(out_refund_no)
            .ok_or(Refusal::RefundNotFound)?;
        if r.status == RefundStatus::Success {
            return Ok(None);
        }
        r.status = RefundStatus::Success;
        r.success_time = Some(now);
        Ok(Some(r.clone()))
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
        assert!(w.complete_refund("R1", 1007).expect("complete").is_some());
        assert!(w.complete_refund("R1", 1008).expect("complete").is_none());
        assert_eq!(w.orders["A1"].state, TradeState::Refund);
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
