//! WeChat Pay APIv2 at the simulator: XML in and out, `MD5` and `HMAC-SHA256` signatures with
//! the merchant's APIv2 key, and the v2 notifications.
//!
//! Wire formats (WeChat Pay APIv2, pay.weixin.qq.com/wiki/doc/api/jsapi.php): "统一下单"
//! (`/pay/unifiedorder`), "查询订单" (`/pay/orderquery`), "关闭订单" (`/pay/closeorder`), "申请退款"
//! (`/secapi/pay/refund`), "查询退款" (`/pay/refundquery`), "支付结果通知" and "退款结果通知"
//! (`req_info`: AES-256-ECB, PKCS#7, keyed with the lower-hex MD5 of the APIv2 key, base64).
//!
//! Like WeChat, a request that is not XML or whose `sign` does not verify is answered
//! `return_code=FAIL` with a `return_msg` and no signature; a verified request that cannot be
//! done is answered `return_code=SUCCESS`, `result_code=FAIL` with `err_code` and
//! `err_code_des`, signed. Answers are signed with the request's sign type.
//!
//! v2 orders live in the same [`World`](crate::state::World) as v3 orders (so
//! [`SimulatorHandle::pay`](crate::SimulatorHandle::pay) pays them); `World::v2_orders` marks
//! them, and their payment and refund notifications go out as v2 XML along the same retry
//! schedule as v3 ([`crate::SimulatorOptions::notify_retry_schedule`]: WeChat documents the same
//! 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h for v2 "支付结果通知").

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use aes::Aes256;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cipher::{Array, BlockCipherEncrypt, KeyInit};
use md5::{Digest, Md5};
use wxpay_core::v2::{ApiV2Key, SignType, parse_xml, reply_xml, signed_xml, to_xml};

use super::notify::{DeliveryAttempt, DeliveryKind};
use super::state::{NotifyBehavior, Order, OrderConflict, OrderRequest, Refund, RefundStatus};
use super::state::{Refusal, TradeState};
use super::tls::ClientCert;
use super::wire::{parse_rfc3339, rfc3339_cst};
use super::{Shared, rng};

/// The merchant's APIv2 configuration at the simulated WeChat Pay.
pub(crate) struct V2Config {
    /// The APIv2 key as text (for `/sim/credentials`).
    pub key_text: String,
    pub key: ApiV2Key,
    /// The sign type the merchant uses; a request claiming a weaker one is refused.
    pub sign_type: SignType,
}

impl V2Config {
    /// `key`: the configured key, or `None` for a random 32-character one.
    pub(crate) fn new(key: Option<String>, sign_type: SignType) -> Self {
        let key_text = key.unwrap_or_else(|| wxpay_core::nonce::nonce_str(&mut rng()));
        Self {
            key: ApiV2Key::new(&key_text),
            key_text,
            sign_type,
        }
    }
}

/// The v2 endpoints (merged into the simulator's router); `/secapi/` behind
/// [`require_client_cert`].
pub(crate) fn routes(shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let secapi = Router::new()
        .route("/secapi/pay/refund", post(refund))
        .route_layer(from_fn_with_state(shared.clone(), require_client_cert));
    Router::new()
        .route("/pay/unifiedorder", post(unifiedorder))
        .route("/pay/orderquery", post(orderquery))
        .route("/pay/closeorder", post(closeorder))
        .route("/pay/refundquery", post(refundquery))
        .merge(secapi)
}

type Sim = State<Arc<Shared>>;
type Fields = BTreeMap<String, String>;

/// A verified request: its fields and the sign type it was verified with.
struct Req {
    fields: Fields,
    sign_type: SignType,
}

impl Req {
    /// A non-empty field.
    fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    fn require(&self, name: &str) -> Result<&str, Fields> {
        self.get(name)
            .ok_or_else(|| result_fail("PARAM_ERROR", &format!("缺少参数 {name}")))
    }
}

fn xml(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `return_code=FAIL`: the request was not accepted at all (unsigned, like WeChat).
fn return_fail(msg: &str) -> Response {
    xml(StatusCode::OK, reply_xml(false, msg))
}

/// The business failure fields: `result_code=FAIL`, `err_code`, `err_code_des`.
fn result_fail(err_code: &str, des: &str) -> Fields {
    fields(&[
        ("result_code", "FAIL"),
        ("err_code", err_code),
        ("err_code_des", des),
    ])
}

fn fields(kv: &[(&str, &str)]) -> Fields {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A signed answer: `fields` plus `return_code`, `return_msg`, `appid`, `mch_id`,
/// `nonce_str` and `sign` (with the request's sign type).
fn answer(shared: &Shared, sign_type: SignType, mut f: Fields) -> Response {
    f.insert("return_code".into(), "SUCCESS".into());
    f.insert("return_msg".into(), "OK".into());
    f.insert("appid".into(), shared.creds.appid.clone());
    f.insert("mch_id".into(), shared.creds.mchid.clone());
    f.insert("nonce_str".into(), wxpay_core::nonce::nonce_str(&mut rng()));
    match signed_xml(&f, &shared.v2.key, sign_type) {
        Ok(s) => xml(StatusCode::OK, s.xml),
        Err(e) => {
            tracing::error!(error = %e, "cannot sign a v2 answer");
            xml(
                StatusCode::INTERNAL_SERVER_ERROR,
                reply_xml(false, "系统错误"),
            )
        }
    }
}

/// Why a request was not served.
enum Rejection {
    /// `return_code=FAIL` with this `return_msg`, unsigned.
    Return(&'static str),
    /// A verified request refused with these `result_code=FAIL` fields, signed.
    Result(SignType, Fields),
}

/// Parses and verifies a v2 request: XML, a `sign_type` no weaker than the merchant's (absent
/// means `MD5`), a `sign` that verifies with the APIv2 key, then `appid`, `mch_id` and
/// `nonce_str`.
fn authenticate(shared: &Shared, body: &[u8]) -> Result<Req, Rejection> {
    let text = std::str::from_utf8(body).map_err(|_| Rejection::Return("XML格式错误"))?;
    let fields = parse_xml(text).map_err(|_| Rejection::Return("XML格式错误"))?;
    let sign_type = match fields.get("sign_type").map(String::as_str) {
        None | Some("") => SignType::Md5,
        Some(s) => s.parse().map_err(|_| Rejection::Return("签名类型错误"))?,
    };
    // A request claiming MD5 for a merchant that signs with HMAC-SHA256 is a downgrade: refused
    // whatever its signature.
    if shared.v2.sign_type == SignType::HmacSha256 && sign_type == SignType::Md5 {
        return Err(Rejection::Return("签名错误"));
    }
    if wxpay_core::v2::verify(&fields, &shared.v2.key, sign_type).is_err() {
        return Err(Rejection::Return("签名错误"));
    }
    let req = Req { fields, sign_type };
    let refuse = |code, des| Err(Rejection::Result(sign_type, result_fail(code, des)));
    if req.get("appid") != Some(shared.creds.appid.as_str()) {
        return refuse("APPID_NOT_EXIST", "APPID不存在");
    }
    if req.get("mch_id") != Some(shared.creds.mchid.as_str()) {
        return refuse("MCHID_NOT_EXIST", "MCHID不存在");
    }
    match req.get("nonce_str") {
        Some(n) if n.len() <= 32 => Ok(req),
        _ => refuse("PARAM_ERROR", "nonce_str 必填，不超过32位"),
    }
}

/// Runs `handle` on a verified request, answering its `Err` fields as a signed failure.
fn serve(
    shared: &Shared,
    body: &[u8],
    handle: impl FnOnce(&Req) -> Result<Fields, Fields>,
) -> Response {
    match authenticate(shared, body) {
        Ok(req) => {
            let f = handle(&req).unwrap_or_else(|fail| fail);
            answer(shared, req.sign_type, f)
        }
        Err(Rejection::Return(msg)) => return_fail(msg),
        Err(Rejection::Result(sign_type, f)) => answer(shared, sign_type, f),
    }
}

fn fee(req: &Req, name: &str) -> Result<u64, Fields> {
    let v = req.require(name)?;
    match v.parse::<u64>() {
        Ok(n) if n > 0 && v.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(result_fail(
            "PARAM_ERROR",
            &format!("{name} 必须为正整数（单位分）"),
        )),
    }
}

/// `yyyyMMddHHmmss` (China Standard Time) → unix seconds.
fn parse_compact_cst(s: &str) -> Option<u64> {
    if s.len() != 14 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    parse_rfc3339(&format!(
        "{}-{}-{}T{}:{}:{}+08:00",
        &s[..4],
        &s[4..6],
        &s[6..8],
        &s[8..10],
        &s[10..12],
        &s[12..14]
    ))
}

/// unix seconds → `yyyyMMddHHmmss` (China Standard Time), v2's `time_end`.
fn compact_cst(unix: u64) -> String {
    rfc3339_cst(unix)[..19]
        .chars()
        .filter(char::is_ascii_digit)
        .collect()
}

/// unix seconds → `yyyy-MM-dd HH:mm:ss` (China Standard Time), v2's refund times.
fn spaced_cst(unix: u64) -> String {
    rfc3339_cst(unix)[..19].replace('T', " ")
}

/// "统一下单": `trade_type=JSAPI` only.
async fn unifiedorder(State(shared): Sim, body: Bytes) -> Response {
    serve(&shared, &body, |req| {
        let out_trade_no = req.require("out_trade_no")?;
        let valid_no = out_trade_no.len() <= 32
            && out_trade_no
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
        if !valid_no {
            return Err(result_fail("PARAM_ERROR", "out_trade_no 格式错误"));
        }
        let description = req.require("body")?;
        req.require("spbill_create_ip")?;
        let notify_url = req.require("notify_url")?;
        if !(notify_url.starts_with("http://") || notify_url.starts_with("https://"))
            || notify_url.contains('?')
        {
            return Err(result_fail(
                "PARAM_ERROR",
                "notify_url 必须为外网可访问的url，不能携带参数",
            ));
        }
        if req.require("trade_type")? != "JSAPI" {
            return Err(result_fail(
                "PARAM_ERROR",
                "trade_type: the simulator supports JSAPI only",
            ));
        }
        let openid = req
            .get("openid")
            .ok_or_else(|| result_fail("PARAM_ERROR", "trade_type=JSAPI时，openid为必填参数"))?;
        let total = fee(req, "total_fee")?;
        let currency = req.get("fee_type").unwrap_or("CNY");
        if currency != "CNY" {
            return Err(result_fail("PARAM_ERROR", "fee_type 只支持 CNY"));
        }
        let time_expire = match req.get("time_expire") {
            None => None,
            Some(t) => Some(
                parse_compact_cst(t)
                    .ok_or_else(|| result_fail("PARAM_ERROR", "time_expire 格式错误"))?,
            ),
        };
        let order = OrderRequest {
            appid: shared.creds.appid.clone(),
            mchid: shared.creds.mchid.clone(),
            description: description.to_owned(),
            out_trade_no: out_trade_no.to_owned(),
            notify_url: notify_url.to_owned(),
            total,
            currency: currency.to_owned(),
            openid: openid.to_owned(),
            attach: req.get("attach").map(str::to_owned),
            time_expire,
        };
        let random = wxpay_core::nonce::nonce_str(&mut rng());
        let now = shared.now();
        let mut world = shared.world();
        let prepay_id = world
            .create_order(order, now, &random)
            .map_err(|c| match c {
                OrderConflict::Paid => result_fail("ORDERPAID", "该订单已支付"),
                OrderConflict::Closed => result_fail("ORDERCLOSED", "该订单已关闭"),
                OrderConflict::Mismatch => {
                    result_fail("OUT_TRADE_NO_USED", "同一笔交易不能多次提交")
                }
            })?;
        world
            .v2_orders
            .insert(out_trade_no.to_owned(), req.sign_type);
        Ok(fields(&[
            ("result_code", "SUCCESS"),
            ("trade_type", "JSAPI"),
            ("prepay_id", &prepay_id),
        ]))
    })
}

/// The order a request names by `transaction_id` (preferred) or `out_trade_no`.
fn find_order(shared: &Shared, req: &Req) -> Result<Order, Fields> {
    let world = shared.world();
    let found = match (req.get("transaction_id"), req.get("out_trade_no")) {
        (Some(txid), _) => world
            .orders
            .values()
            .find(|o| o.transaction_id.as_deref() == Some(txid)),
        (None, Some(no)) => world.orders.get(no),
        (None, None) => {
            return Err(result_fail(
                "PARAM_ERROR",
                "transaction_id 和 out_trade_no 至少填一个",
            ));
        }
    };
    found
        .cloned()
        .ok_or_else(|| result_fail("ORDERNOTEXIST", "此交易订单号不存在"))
}

fn trade_state_desc(state: TradeState) -> &'static str {
    match state {
        TradeState::NotPay => "订单未支付",
        TradeState::Success => "支付成功",
        TradeState::Refund => "转入退款",
        TradeState::Closed => "订单已关闭",
        TradeState::Revoked => "已撤销（刷卡支付）",
        TradeState::UserPaying => "用户支付中",
        TradeState::PayError => "支付失败",
    }
}

/// The fields describing a paid order, shared by the order query and the payment notification.
fn paid_fields(order: &Order, f: &mut Fields) {
    let total = order.req.total.to_string();
    f.insert("out_trade_no".into(), order.req.out_trade_no.clone());
    f.insert("total_fee".into(), total.clone());
    if let Some(attach) = &order.req.attach {
        f.insert("attach".into(), attach.clone());
    }
    if let (Some(txid), Some(paid)) = (&order.transaction_id, order.success_time) {
        f.insert("transaction_id".into(), txid.clone());
        f.insert("openid".into(), order.req.openid.clone());
        f.insert("is_subscribe".into(), "N".into());
        f.insert("trade_type".into(), "JSAPI".into());
        f.insert("bank_type".into(), "OTHERS".into());
        f.insert("fee_type".into(), order.req.currency.clone());
        f.insert("cash_fee".into(), total);
        f.insert("time_end".into(), compact_cst(paid));
    }
}

/// "查询订单".
async fn orderquery(State(shared): Sim, body: Bytes) -> Response {
    serve(&shared, &body, |req| {
        let found = find_order(&shared, req);
        if let Some(no) = found
            .as_ref()
            .map(|o| o.req.out_trade_no.as_str())
            .ok()
            .or(req.get("out_trade_no"))
        {
            *shared
                .world()
                .order_queries
                .entry(no.to_owned())
                .or_default() += 1;
        }
        let order = found?;
        let mut f = fields(&[
            ("result_code", "SUCCESS"),
            ("trade_state", order.state.as_str()),
            ("trade_state_desc", trade_state_desc(order.state)),
        ]);
        paid_fields(&order, &mut f);
        Ok(f)
    })
}

/// "关闭订单": `ORDERPAID` once paid, `ORDERCLOSED` when already closed.
async fn closeorder(State(shared): Sim, body: Bytes) -> Response {
    serve(&shared, &body, |req| {
        let no = req.require("out_trade_no")?;
        let mut world = shared.world();
        let state = world
            .orders
            .get(no)
            .map(|o| o.state)
            .ok_or_else(|| result_fail("ORDERNOTEXIST", "此交易订单号不存在"))?;
        match state {
            TradeState::Closed | TradeState::Revoked => {
                Err(result_fail("ORDERCLOSED", "订单已关闭，无法重复关闭"))
            }
            s if s.is_paid() => Err(result_fail("ORDERPAID", "订单已支付，不能发起关单")),
            _ => {
                world
                    .close(no)
                    .map_err(|_| result_fail("SYSTEMERROR", "系统错误"))?;
                Ok(fields(&[("result_code", "SUCCESS")]))
            }
        }
    })
}

/// `/secapi/` (mutual TLS at WeChat Pay): with [`crate::SimulatorOptions::tls`], the request
/// goes through only if its connection presented a client certificate that verified against
/// the simulator CA (rustls checked the chain in the handshake; a certificate of another CA
/// never gets this far) and whose subject CN is the merchant's `mch_id`. Otherwise HTTP 403
/// with a `return_code=FAIL` body, and nothing is created: WeChat refuses such a client in the
/// handshake, which a host sees as a transport error, as it should see the 403. Without TLS
/// there is no certificate to check and every request goes through.
async fn require_client_cert(State(shared): Sim, req: Request, next: Next) -> Response {
    if shared.tls.is_none() {
        return next.run(req).await;
    }
    let cn = req
        .extensions()
        .get::<ClientCert>()
        .and_then(|c| c.0.as_deref());
    let msg = match cn {
        Some(cn) if cn == shared.creds.mchid => return next.run(req).await,
        Some(_) => "证书错误：商户API证书与商户号不符 (client certificate is not the merchant's)",
        None => "证书错误：请求未携带商户API证书 (client certificate required)",
    };
    xml(StatusCode::FORBIDDEN, reply_xml(false, msg))
}

/// "申请退款" (mutual TLS at WeChat; see [`require_client_cert`]).
async fn refund(State(shared): Sim, body: Bytes) -> Response {
    let mut created = None;
    let resp = serve(&shared, &body, |req| {
        let order = find_order(&shared, req)?;
        let out_refund_no = req.require("out_refund_no")?;
        if out_refund_no.len() > 64 {
            return Err(result_fail("PARAM_ERROR", "out_refund_no 格式错误"));
        }
        let total = fee(req, "total_fee")?;
        let refund_fee = fee(req, "refund_fee")?;
        let notify_url = match req.get("notify_url") {
            Some(u) => u.to_owned(),
            None => shared
                .refund_notify_url
                .clone()
                .unwrap_or_else(|| super::refund_url_of(&order.req.notify_url)),
        };
        let (r, is_new) = shared
            .world()
            .refund(
                &order.req.out_trade_no,
                out_refund_no,
                refund_fee,
                total,
                req.get("refund_desc").map(str::to_owned),
                Some(notify_url),
                shared.now(),
            )
            .map_err(|r| match r {
                Refusal::State(_) => result_fail("ERROR", "订单未支付，不能退款"),
                Refusal::TotalMismatch => {
                    result_fail("PARAM_ERROR", "订单金额 total_fee 与原订单不一致")
                }
                Refusal::RefundTooLarge { .. } => result_fail("ERROR", "累计退款金额大于支付金额"),
                Refusal::RefundMismatch => result_fail(
                    "INVALID_REQUEST",
                    "订单金额或退款金额与之前请求不一致，请核实后再试",
                ),
                _ => result_fail("SYSTEMERROR", "系统错误"),
            })?;
        if is_new {
            created = Some(r.out_refund_no.clone());
        }
        let (total, refund_fee) = (r.total.to_string(), r.refund.to_string());
        Ok(fields(&[
            ("result_code", "SUCCESS"),
            ("transaction_id", &r.transaction_id),
            ("out_trade_no", &r.out_trade_no),
            ("out_refund_no", &r.out_refund_no),
            ("refund_id", &r.refund_id),
            ("refund_fee", &refund_fee),
            ("total_fee", &total),
            ("cash_fee", &total),
            ("cash_refund_fee", &refund_fee),
        ]))
    });
    if let Some(no) = created {
        shared.schedule_refund_settlement(&no);
    }
    resp
}

/// v2's refund status: `PROCESSING`, `SUCCESS`, `REFUNDCLOSE`, `CHANGE` (abnormal).
fn refund_status(s: RefundStatus) -> &'static str {
    match s {
        RefundStatus::Processing => "PROCESSING",
        RefundStatus::Success => "SUCCESS",
        RefundStatus::Closed => "REFUNDCLOSE",
        RefundStatus::Abnormal => "CHANGE",
    }
}

/// "查询退款": by `refund_id`, `out_refund_no`, `transaction_id` or `out_trade_no` (WeChat's
/// priority), every refund of the order listed as `…_$n`.
async fn refundquery(State(shared): Sim, body: Bytes) -> Response {
    serve(&shared, &body, |req| {
        let not_exist = || result_fail("REFUNDNOTEXIST", "退款订单查询失败");
        let mut world = shared.world();
        let refunds: Vec<Refund> = if let Some(id) = req.get("refund_id") {
            world
                .refunds
                .values()
                .filter(|r| r.refund_id == id)
                .cloned()
                .collect()
        } else if let Some(no) = req.get("out_refund_no") {
            *world.refund_queries.entry(no.to_owned()).or_default() += 1;
            world.refunds.get(no).cloned().into_iter().collect()
        } else {
            let out_trade_no = match (req.get("transaction_id"), req.get("out_trade_no")) {
                (Some(txid), _) => world
                    .orders
                    .values()
                    .find(|o| o.transaction_id.as_deref() == Some(txid))
                    .map(|o| o.req.out_trade_no.clone()),
                (None, Some(no)) => Some(no.to_owned()),
                (None, None) => {
                    return Err(result_fail(
                        "PARAM_ERROR",
                        "refund_id、out_refund_no、transaction_id、out_trade_no 至少填一个",
                    ));
                }
            };
            let mut rs: Vec<Refund> = world
                .refunds
                .values()
                .filter(|r| Some(&r.out_trade_no) == out_trade_no.as_ref())
                .cloned()
                .collect();
            rs.sort_by(|a, b| (a.created_at, &a.refund_id).cmp(&(b.created_at, &b.refund_id)));
            rs
        };
        let first = refunds.first().ok_or_else(not_exist)?;
        let mut f = fields(&[
            ("result_code", "SUCCESS"),
            ("transaction_id", &first.transaction_id),
            ("out_trade_no", &first.out_trade_no),
            ("total_fee", &first.total.to_string()),
            ("cash_fee", &first.total.to_string()),
            ("refund_count", &refunds.len().to_string()),
        ]);
        let refunded: u64 = refunds.iter().map(|r| r.refund).sum();
        f.insert("refund_fee".into(), refunded.to_string());
        for (n, r) in refunds.iter().enumerate() {
            let put = |f: &mut Fields, k: &str, v: String| {
                f.insert(format!("{k}_{n}"), v);
            };
            put(&mut f, "out_refund_no", r.out_refund_no.clone());
            put(&mut f, "refund_id", r.refund_id.clone());
            put(&mut f, "refund_channel", "ORIGINAL".into());
            put(&mut f, "refund_fee", r.refund.to_string());
            put(&mut f, "refund_status", refund_status(r.status).into());
            put(
                &mut f,
                "refund_account",
                "REFUND_SOURCE_UNSETTLED_FUNDS".into(),
            );
            put(&mut f, "refund_recv_accout", "支付用户的零钱".into());
            if let Some(t) = r.success_time {
                put(&mut f, "refund_success_time", spaced_cst(t));
            }
        }
        Ok(f)
    })
}

/// The sign type a v2 order was placed with, `None` for a v3 order.
pub(crate) fn order_sign_type(shared: &Shared, out_trade_no: &str) -> Option<SignType> {
    shared.world().v2_orders.get(out_trade_no).copied()
}

/// A v2 notification ready to post.
struct Prepared {
    id: String,
    event_type: &'static str,
    url: String,
    body: String,
}

/// Sends the v2 "支付结果通知" of a paid v2 order, signed with the order's sign type
/// (`sign_type` included when it is HMAC-SHA256).
pub(crate) fn send_pay_notification(shared: &Arc<Shared>, order: &Order, sign_type: SignType) {
    let mut f = fields(&[
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("result_code", "SUCCESS"),
        ("appid", &shared.creds.appid),
        ("mch_id", &shared.creds.mchid),
    ]);
    f.insert("nonce_str".into(), wxpay_core::nonce::nonce_str(&mut rng()));
    if sign_type == SignType::HmacSha256 {
        f.insert("sign_type".into(), sign_type.as_str().into());
    }
    paid_fields(order, &mut f);
    f.remove("is_subscribe");
    match signed_xml(&f, &shared.v2.key, sign_type) {
        Ok(s) => dispatch(
            shared,
            Prepared {
                id: f.get("transaction_id").cloned().unwrap_or_default(),
                event_type: "TRANSACTION.SUCCESS",
                url: order.req.notify_url.clone(),
                body: s.xml,
            },
        ),
        Err(e) => tracing::error!(error = %e, "cannot sign a v2 payment notification"),
    }
}

/// Sends the v2 "退款结果通知" of a refund that reached `SUCCESS`, `ABNORMAL` (`CHANGE`) or
/// `CLOSED` (`REFUNDCLOSE`): `return_code`, `appid`, `mch_id`, `nonce_str` and `req_info` (the
/// refund as `<root>` XML, encrypted; the notification itself is not signed).
pub(crate) fn send_refund_notification(shared: &Arc<Shared>, refund: &Refund) {
    let (Some(url), Some((event_type, _))) = (refund.notify_url.clone(), refund.status.event())
    else {
        return;
    };
    let (total, refund_fee) = (refund.total.to_string(), refund.refund.to_string());
    let mut inner = fields(&[
        ("transaction_id", &refund.transaction_id),
        ("out_trade_no", &refund.out_trade_no),
        ("refund_id", &refund.refund_id),
        ("out_refund_no", &refund.out_refund_no),
        ("total_fee", &total),
        ("settlement_total_fee", &total),
        ("refund_fee", &refund_fee),
        ("settlement_refund_fee", &refund_fee),
        ("refund_status", refund_status(refund.status)),
        ("refund_recv_accout", "支付用户的零钱"),
        ("refund_account", "REFUND_SOURCE_UNSETTLED_FUNDS"),
        ("refund_request_source", "API"),
    ]);
    if let Some(t) = refund.success_time {
        inner.insert("success_time".into(), spaced_cst(t));
    }
    let plain = match to_xml(&inner) {
        Ok(x) => format!(
            "<root>{}</root>",
            &x["<xml>".len()..x.len() - "</xml>".len()]
        ),
        Err(e) => {
            tracing::error!(error = %e, "cannot write req_info");
            return;
        }
    };
    let mut outer = fields(&[
        ("return_code", "SUCCESS"),
        ("appid", &shared.creds.appid),
        ("mch_id", &shared.creds.mchid),
        ("req_info", &encrypt_req_info(&plain, &shared.v2.key_text)),
    ]);
    outer.insert("nonce_str".into(), wxpay_core::nonce::nonce_str(&mut rng()));
    match to_xml(&outer) {
        Ok(body) => dispatch(
            shared,
            Prepared {
                id: refund.refund_id.clone(),
                event_type,
                url,
                body,
            },
        ),
        Err(e) => tracing::error!(error = %e, "cannot write a v2 refund notification"),
    }
}

/// `req_info` as WeChat makes it: AES-256-ECB under the lower-hex MD5 of the APIv2 key (the 32
/// hex characters are the 32-byte key), PKCS#7, base64. The core only decrypts `req_info`, so
/// the simulator encrypts it here (RustCrypto `aes`, `md-5`).
pub(crate) fn encrypt_req_info(plaintext: &str, key: &str) -> String {
    let hex_key = hex::encode(Md5::digest(key.as_bytes()));
    // 32 ASCII hex characters: always a valid AES-256 key.
    let Ok(aes) = Aes256::new_from_slice(hex_key.as_bytes()) else {
        unreachable!("a lower-hex MD5 is 32 bytes");
    };
    let mut data = plaintext.as_bytes().to_vec();
    let pad = 16 - data.len() % 16;
    data.extend(std::iter::repeat_n(u8::try_from(pad).unwrap_or(16), pad));
    for chunk in data.chunks_exact_mut(16) {
        let block: &mut Array<u8, _> = chunk.try_into().unwrap_or_else(|_| {
            unreachable!("chunks_exact_mut(16) yields 16-byte blocks");
        });
        aes.encrypt_block(block);
    }
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data)
}

/// Posts a v2 notification along the retry schedule, honouring [`NotifyBehavior`] `Drop`,
/// `Duplicate` and `Tamper` (`ProbeFirst` is a v3 idea: v2 has no probe, the copy goes out
/// normally).
fn dispatch(shared: &Arc<Shared>, p: Prepared) {
    let behavior = shared.world().behavior;
    let copies = match behavior {
        NotifyBehavior::Drop => {
            shared.stats.send_modify(|s| s.dropped += 1);
            tracing::info!(id = %p.id, "v2 notification dropped (behaviour Drop)");
            return;
        }
        NotifyBehavior::Duplicate(n) => n.max(1),
        _ => 1,
    };
    let kind = if behavior == NotifyBehavior::Tamper {
        DeliveryKind::Tampered
    } else {
        DeliveryKind::Notification
    };
    let p = Arc::new(p);
    shared.stats.send_modify(|s| s.in_flight += copies);
    for copy in 0..copies {
        let (shared, p) = (shared.clone(), p.clone());
        shared.runtime.clone().spawn(async move {
            let delivered = deliver(&shared, &p, copy, kind).await;
            shared.stats.send_modify(|s| {
                s.in_flight -= 1;
                if delivered {
                    s.delivered += 1;
                } else {
                    s.gave_up += 1;
                }
            });
        });
    }
}

/// One copy along the retry schedule; `true` once the merchant answered the XML
/// `return_code=SUCCESS` (with HTTP 200). Anything else is retried.
async fn deliver(shared: &Arc<Shared>, p: &Prepared, copy: usize, kind: DeliveryKind) -> bool {
    let mut stop = shared.shutdown.subscribe();
    let body = if kind == DeliveryKind::Tampered {
        tamper(&p.body)
    } else {
        p.body.clone()
    };
    for attempt in 0..=shared.schedule.len() {
        if attempt > 0 {
            tokio::select! {
                () = tokio::time::sleep(shared.schedule[attempt - 1]) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        if *stop.borrow() {
            return false;
        }
        let sent = shared
            .http
            .post(&p.url)
            .header("Content-Type", "text/xml")
            .body(body.clone())
            .send()
            .await;
        let (status, acknowledged) = match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let ok = status == 200
                    && parse_xml(&text)
                        .is_ok_and(|f| f.get("return_code").map(String::as_str) == Some("SUCCESS"));
                (Some(status), ok)
            }
            Err(e) => {
                tracing::debug!(error = %e, url = %p.url, "v2 notification attempt failed");
                (None, false)
            }
        };
        shared.stats.send_modify(|s| s.attempts += 1);
        shared
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(DeliveryAttempt {
                notification_id: p.id.clone(),
                event_type: p.event_type,
                url: p.url.clone(),
                copy,
                attempt,
                kind,
                status,
                acknowledged,
            });
        if acknowledged {
            return true;
        }
    }
    tracing::warn!(id = %p.id, url = %p.url, "v2 notification abandoned after the last retry");
    false
}

/// The body with the `total_fee` (or, for a refund, the first `req_info` character) changed
/// after signing: still well-formed XML, so only the signature (or decryption) can tell.
fn tamper(body: &str) -> String {
    for field in ["<total_fee><![CDATA[", "<req_info><![CDATA["] {
        if let Some(start) = body.find(field).map(|i| i + field.len()) {
            let mut out = body.to_owned();
            let replacement = if body[start..].starts_with('9') {
                "8"
            } else {
                "9"
            };
            out.replace_range(start..=start, replacement);
            return out;
        }
    }
    format!("{body} ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn req_info_round_trips_through_the_core() {
        let key = "192006250b4c09247ec02edce69f6a2d";
        for plain in ["", "<root><a>1</a></root>", &"x".repeat(16), "退款"] {
            let enc = encrypt_req_info(plain, key);
            let dec =
                wxpay_core::v2::decrypt_req_info(&enc, &ApiV2Key::new(key)).expect("decrypts");
            assert_eq!(dec, plain);
        }
    }

    #[test]
    fn cst_formats() {
        // 2026-11-26T19:00:00+08:00
        let t = parse_compact_cst("20261126190000").expect("parses");
        assert_eq!(compact_cst(t), "20261126190000");
        assert_eq!(spaced_cst(t), "2026-11-26 19:00:00");
        assert_eq!(parse_compact_cst("2026112619000"), None);
    }
}
