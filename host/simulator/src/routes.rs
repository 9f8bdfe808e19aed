//! The simulator's HTTP surface: the real services' endpoints plus the `/sim` control API.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde_json::{Value, json};
use wxpay_core::v3::{MAX_CLOCK_SKEW, pay_sign_message};

use super::state::{
    NotifyBehavior, OrderConflict, OrderRequest, RefundFault, RefundStatus, Refusal, TradeState,
};
use super::wire::{
    AuthorizationHeader, V3Error, digits_only, parse_rfc3339, rfc3339_cst, sign_error_detail,
};
use super::{AnswerSigning, Shared, SimulatorError, rng};

/// Largest request body the simulated APIs accept.
const MAX_BODY: usize = 1 << 20;

type Sim = State<Arc<Shared>>;

/// The whole simulator app.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let v3 = Router::new()
        .route("/pay/transactions/jsapi", post(jsapi))
        .route("/pay/transactions/out-trade-no/{no}", get(query_order))
        .route("/pay/transactions/id/{id}", get(query_order_by_id))
        .route(
            "/pay/transactions/out-trade-no/{no}/close",
            post(close_order),
        )
        .route("/refund/domestic/refunds", post(create_refund))
        .route("/refund/domestic/refunds/{no}", get(query_refund))
        .route("/certificates", get(certificates))
        .fallback(|| async {
            V3Error::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "no such API in the simulator",
            )
        })
        .layer(from_fn_with_state(shared.clone(), authenticate))
        .layer(from_fn_with_state(shared.clone(), sign_responses));
    Router::new()
        .route("/sns/jscode2session", get(jscode2session))
        .route("/sim/credentials", get(sim_credentials))
        .route("/sim/login/code", post(sim_login_code))
        .route("/sim/login/fail", post(sim_login_fail))
        .route("/sim/v3/fail", post(sim_v3_fail))
        .route("/sim/orders/{no}", get(sim_order))
        .route("/sim/orders/{no}/pay", post(sim_pay))
        .route(
            "/sim/orders/{no}/pay-even-if-closed",
            post(sim_pay_even_if_closed),
        )
        .route("/sim/orders/{no}/pay-again", post(sim_pay_again))
        .route("/sim/orders/{no}/trade-state", post(sim_trade_state))
        .route("/sim/orders/{no}/query-count", get(sim_query_count))
        .route("/sim/orders/{no}/console-refund", post(sim_console_refund))
        .route("/sim/refunds/fail", post(sim_refunds_fail))
        .route("/sim/refunds/{no}", get(sim_refund))
        .route("/sim/refunds/{no}/complete", post(sim_complete_refund))
        .route("/sim/refunds/{no}/status", post(sim_refund_status))
        .route("/sim/refunds/{no}/query-count", get(sim_refund_query_count))
        .route("/sim/notify-behavior", post(sim_notify_behavior))
        .route("/sim/stats", get(sim_stats))
        .route("/sim/request-payment/check", post(check_request_payment))
        .nest("/v3", v3)
        .merge(super::v2::routes(&shared))
        .with_state(shared)
}

impl IntoResponse for V3Error {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        // Read by `sign_responses`, the layer that signs (or does not sign) every answer.
        r.extensions_mut().insert(self.signing);
        r
    }
}

fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// APIv3 middleware

/// Outermost `/v3` layer: applies forced failures, then signs whatever the response is over its
/// exact body bytes (WeChat Pay APIv3 "签名验证": every response is signed, errors included) —
/// unless the answer says otherwise ([`AnswerSigning`]): WeChat leaves the 401 `SIGN_ERROR`
/// to a request whose signature it rejected unsigned. The request's `Wechatpay-Serial` picks
/// the key in migration mode (WeChat Pay "如何从平台证书切换成微信支付公钥": the answer is signed
/// with the key the request names).
async fn sign_responses(State(shared): Sim, req: Request, next: Next) -> Response {
    let requested = req
        .headers()
        .get("Wechatpay-Serial")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or(req.uri(), |o| &o.0)
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned();
    let forced = shared.world().v3_failures.pop_front();
    let response = match forced {
        Some(fault) => {
            let mut e = V3Error::new(
                StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                fault.code,
                "simulated failure",
            )
            .signed_as(fault.signing);
            if e.code == "SIGN_ERROR" {
                e = e.with_detail(forced_sign_error_detail(req).await);
            }
            e.into_response()
        }
        None => next.run(req).await,
    };
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let signing = parts
        .extensions
        .get::<AnswerSigning>()
        .copied()
        .unwrap_or_default();
    if signing == AnswerSigning::Unsigned {
        return Response::from_parts(parts, Body::from(bytes));
    }
    let signed = if signing == AnswerSigning::BadSignature {
        // A signature over other bytes: well-formed, from the right key, and wrong.
        let mut other = bytes.to_vec();
        other.extend_from_slice(b" ");
        shared.sign_answer(&other, requested.as_deref())
    } else {
        shared.sign_answer(&bytes, requested.as_deref())
    };
    let signed = match signed {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "simulator cannot sign a response");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    shared.log_answer(path, requested, &signed.serial);
    for (name, value) in signed.headers() {
        if let Ok(v) = HeaderValue::from_str(value) {
            parts.headers.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&signed.nonce[..16]) {
        parts.headers.insert("Request-ID", v);
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// The `detail` of a forced `SIGN_ERROR`: the message the request's `Authorization` claims to
/// sign, rebuilt from the request as WeChat would.
async fn forced_sign_error_detail(req: Request) -> Value {
    let (parts, body) = req.into_parts();
    let url = request_url(&parts);
    let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
    let auth = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<AuthorizationHeader>().ok());
    let message = auth.map_or_else(Vec::new, |a| a.message(parts.method.as_str(), &url, &bytes));
    sign_error_detail(parts.method.as_str(), &url, &message)
}

/// The request's path and query as sent (what the `Authorization` signs).
fn request_url(parts: &axum::http::request::Parts) -> String {
    parts
        .extensions
        .get::<OriginalUri>()
        .map_or(&parts.uri, |o| &o.0)
        .path_and_query()
        .map_or("/", |pq| pq.as_str())
        .to_owned()
}

/// Verifies the merchant's `Authorization` over the raw request: `METHOD\nURL\ntimestamp\n
/// nonce\nbody\n` with URL the path and query as sent (WeChat Pay APIv3 "签名生成").
async fn authenticate(State(shared): Sim, req: Request, next: Next) -> Result<Response, V3Error> {
    let (parts, body) = req.into_parts();
    let url = request_url(&parts);
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| {
        V3Error::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PARAM_ERROR",
            "request body too large",
        )
    })?;
    let auth: AuthorizationHeader = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| V3Error::sign("Authorization header is missing"))?
        .to_str()
        .map_err(|_| V3Error::sign("Authorization header is not ASCII"))?
        .parse()
        .map_err(|e| V3Error::sign(format!("Http头Authorization值格式错误: {e}")))?;
    let creds = &shared.creds;
    if auth.mchid != creds.mchid {
        return Err(V3Error::sign(
            "mchid in Authorization is not a merchant of this simulator",
        ));
    }
    if !auth.serial_no.eq_ignore_ascii_case(&creds.merchant_serial) {
        return Err(V3Error::sign(
            "serial_no is not the merchant's API certificate serial",
        ));
    }
    let ts = auth
        .timestamp_secs()
        .ok_or_else(|| V3Error::sign("timestamp must be decimal seconds"))?;
    if ts.abs_diff(shared.now()) > MAX_CLOCK_SKEW {
        return Err(V3Error::sign("timestamp is more than 5 minutes from now"));
    }
    let message = auth.message(parts.method.as_str(), &url, &bytes);
    if shared
        .merchant_public
        .verify(&message, &auth.signature)
        .is_err()
    {
        return Err(
            V3Error::sign("错误的签名，验签失败").with_detail(sign_error_detail(
                parts.method.as_str(),
                &url,
                &message,
            )),
        );
    }
    Ok(next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await)
}

// ---------------------------------------------------------------------------------------------
// APIv3 handlers

fn parse_json(body: &[u8]) -> Result<Value, V3Error> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| V3Error::param(format!("request body is not valid JSON: {e}")))?;
    if v.is_object() {
        Ok(v)
    } else {
        Err(V3Error::param("request body must be a JSON object"))
    }
}

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |v, k| v.get(k))
}

fn req_str<'a>(v: &'a Value, path: &str, max_bytes: usize) -> Result<&'a str, V3Error> {
    opt_str(v, path, max_bytes)?
        .ok_or_else(|| V3Error::param(format!("missing required field {path}")))
}

fn opt_str<'a>(v: &'a Value, path: &str, max_bytes: usize) -> Result<Option<&'a str>, V3Error> {
    match field(v, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => {
            Err(V3Error::param(format!("{path} must not be empty")))
        }
        Some(Value::String(s)) if s.len() > max_bytes => Err(V3Error::param(format!(
            "{path} is longer than {max_bytes} bytes"
        ))),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(V3Error::param(format!("{path} must be a string"))),
    }
}

fn req_amount(v: &Value, path: &str) -> Result<u64, V3Error> {
    match field(v, path) {
        None | Some(Value::Null) => Err(V3Error::param(format!("missing required field {path}"))),
        Some(n) => n
            .as_u64()
            .filter(|&n| n > 0)
            .ok_or_else(|| V3Error::param(format!("{path} must be a positive integer (fen)"))),
    }
}

fn currency(v: &Value, path: &str, required: bool) -> Result<String, V3Error> {
    match opt_str(v, path, 16)? {
        None if required => Err(V3Error::param(format!("missing required field {path}"))),
        None | Some("CNY") => Ok("CNY".to_owned()),
        Some(_) => Err(V3Error::param(format!("{path} must be CNY"))),
    }
}

fn valid_out_no(s: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*@".contains(&b))
}

fn valid_notify_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && !s.contains('?') && s.len() <= 255
}

/// `POST /v3/pay/transactions/jsapi` (WeChat Pay APIv3 "JSAPI/小程序下单").
async fn jsapi(State(shared): Sim, body: Bytes) -> Result<Response, V3Error> {
    let v = parse_json(&body)?;
    let creds = &shared.creds;
    let appid = req_str(&v, "appid", 32)?;
    let mchid = req_str(&v, "mchid", 32)?;
    if appid != creds.appid || mchid != creds.mchid {
        return Err(V3Error::new(
            StatusCode::BAD_REQUEST,
            "APPID_MCHID_NOT_MATCH",
            "appid和mch_id不匹配",
        ));
    }
    let out_trade_no = req_str(&v, "out_trade_no", 32)?;
    if !valid_out_no(out_trade_no, 6, 32) {
        return Err(V3Error::param(
            "out_trade_no must be 6-32 characters of [0-9A-Za-z_-|*]",
        ));
    }
    let notify_url = req_str(&v, "notify_url", 255)?;
    if !valid_notify_url(notify_url) {
        return Err(V3Error::param(
            "notify_url must be an http(s) URL without query parameters",
        ));
    }
    let time_expire = opt_str(&v, "time_expire", 64)?
        .map(|t| {
            parse_rfc3339(t).ok_or_else(|| {
                V3Error::param("time_expire must be RFC 3339, e.g. 2026-11-26T20:00:00+08:00")
            })
        })
        .transpose()?;
    let req = OrderRequest {
        appid: appid.to_owned(),
        mchid: mchid.to_owned(),
        description: req_str(&v, "description", 127)?.to_owned(),
        out_trade_no: out_trade_no.to_owned(),
        notify_url: notify_url.to_owned(),
        total: req_amount(&v, "amount.total")?,
        currency: currency(&v, "amount.currency", false)?,
        openid: req_str(&v, "payer.openid", 128)?.to_owned(),
        attach: opt_str(&v, "attach", 128)?.map(str::to_owned),
        time_expire,
    };
    let now = shared.now();
    if req.time_expire.is_some_and(|t| t <= now) {
        return Err(V3Error::param("time_expire is in the past"));
    }
    let random = wxpay_core::nonce::nonce_str(&mut rng());
    let prepay_id = shared
        .world()
        .create_order(req, now, &random)
        .map_err(|c| match c {
            OrderConflict::Mismatch => V3Error::invalid(
                "201 商户订单号重复 (OUT_TRADE_NO_USED: same out_trade_no, different parameters)",
            ),
            OrderConflict::Paid => {
                V3Error::new(StatusCode::BAD_REQUEST, "ORDERPAID", "该订单已支付")
            }
            OrderConflict::Closed => {
                V3Error::new(StatusCode::BAD_REQUEST, "ORDER_CLOSED", "订单已关闭")
            }
        })?;
    Ok(json_response(
        StatusCode::OK,
        &json!({ "prepay_id": prepay_id }),
    ))
}

fn check_mchid_query(shared: &Shared, q: &HashMap<String, String>) -> Result<(), V3Error> {
    match q.get("mchid") {
        None => Err(V3Error::param("missing required query parameter mchid")),
        Some(m) if *m != shared.creds.mchid => {
            Err(V3Error::param("mchid is not a merchant of this simulator"))
        }
        Some(_) => Ok(()),
    }
}

/// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` (WeChat Pay APIv3 "商户订单号查询订单").
async fn query_order(
    State(shared): Sim,
    Path(no): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    check_mchid_query(&shared, &q)?;
    let tx = {
        let mut world = shared.world();
        *world.order_queries.entry(no.clone()).or_default() += 1;
        world
            .orders
            .get(&no)
            .map(super::state::Order::transaction_json)
    }
    .ok_or_else(V3Error::order_not_exist)?;
    Ok(json_response(StatusCode::OK, &tx))
}

/// `GET /v3/pay/transactions/id/{transaction_id}?mchid=` (WeChat Pay APIv3 "微信支付订单号查询订单").
async fn query_order_by_id(
    State(shared): Sim,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, V3Error> {
    check_mchid_query(&shared, &q)?;
    let tx = {
        let mut world = shared.world();
        let found = world
            .orders
            .values()
            .find(|o| o.transaction_id.as_deref() == Some(id.as_str()))
            .map(|o| (o.req.out_trade_no.clone(), o.transaction_json()));
        found.map(|(no, tx)| {
            *world.order_queries.entry(no).or_default() += 1;
            tx
        })
    }
    .ok_or_else(V3Error::order_not_exist)?;
    Ok(json_response(StatusCode::OK, &tx))
}

/// `POST /v3/pay/transactions/out-trade-no/{no}/close` (WeChat Pay APIv3 "关闭订单"): 204.
async fn close_order(
    State(shared): Sim,
    Path(no): Path<String>,
    body: Bytes,
) -> Result<Response, V3Error> {
    let v = parse_json(&body)?;
    if req_str(&v, "mchid", 32)? != shared.creds.mchid {
        return Err(V3Error::param("mchid is not a merchant of this simulator"));
    }
    shared.world().close(&no).map_err(|r| match r {
        Refusal::NotFound => V3Error::order_not_exist(),
        _ => V3Error::new(StatusCode::BAD_REQUEST, "ORDERPAID", "订单已支付，不能关闭"),
    })?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /v3/refund/domestic/refunds` (WeChat Pay APIv3 "退款申请").
async fn create_refund(State(shared): Sim, body: Bytes) -> Result<Response, V3Error> {
    let v = parse_json(&body)?;
    let out_refund_no = req_str(&v, "out_refund_no", 64)?;
    if !valid_out_no(out_refund_no, 1, 64) {
        return Err(V3Error::param(
            "out_refund_no must be 1-64 characters of [0-9A-Za-z_-|*@]",
        ));
    }
    let notify_url = opt_str(&v, "notify_url", 256)?;
    if notify_url.is_some_and(|u| !valid_notify_url(u)) {
        return Err(V3Error::param(
            "notify_url must be an http(s) URL without query parameters",
        ));
    }
    let refund = req_amount(&v, "amount.refund")?;
    let total = req_amount(&v, "amount.total")?;
    currency(&v, "amount.currency", true)?;
    let reason = opt_str(&v, "reason", 80)?.map(str::to_owned);
    let refund = RefundRequest {
        out_refund_no,
        notify_url,
        refund,
        total,
        reason,
    };
    // The world's lock is held only inside this synchronous call, never across an await.
    let (r, created, fault) = submit_refund(&shared, &v, refund)?;
    if created {
        shared.schedule_refund_settlement(&r.out_refund_no);
    }
    match fault {
        Some(RefundFault::CreatedButError(status)) => {
            return Err(V3Error::new(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "SYSTEM_ERROR",
                "系统超时 (simulated: the refund was created)",
            ));
        }
        Some(RefundFault::CreatedButDelayed(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    Ok(json_response(StatusCode::OK, &r.refund_json()))
}

/// The validated fields of a refund submission.
struct RefundRequest<'a> {
    out_refund_no: &'a str,
    notify_url: Option<&'a str>,
    refund: u64,
    total: u64,
    reason: Option<String>,
}

/// Applies the next [`RefundFault`] and creates (or finds) the refund: `(refund, created,
/// fault to apply to the answer)`.
fn submit_refund(
    shared: &Shared,
    v: &Value,
    req: RefundRequest<'_>,
) -> Result<(super::state::Refund, bool, Option<RefundFault>), V3Error> {
    let RefundRequest {
        out_refund_no,
        notify_url,
        refund,
        total,
        reason,
    } = req;
    let now = shared.now();
    let mut world = shared.world();
    let fault = world.refund_faults.pop_front();
    if let Some(RefundFault::Rejected { status, code }) = fault {
        return Err(V3Error::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            "simulated refund failure (nothing was created)",
        ));
    }
    let out_trade_no = match (
        opt_str(v, "out_trade_no", 32)?,
        opt_str(v, "transaction_id", 32)?,
    ) {
        (Some(no), _) => no.to_owned(),
        (None, Some(id)) => world
            .orders
            .values()
            .find(|o| o.transaction_id.as_deref() == Some(id))
            .map(|o| o.req.out_trade_no.clone())
            .ok_or_else(|| {
                V3Error::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在")
            })?,
        (None, None) => {
            return Err(V3Error::param(
                "one of out_trade_no and transaction_id is required",
            ));
        }
    };
    let (r, created) = world
        .refund(
            &out_trade_no,
            out_refund_no,
            refund,
            total,
            reason,
            notify_url.map(str::to_owned),
            now,
        )
        .map_err(|e| match e {
            Refusal::NotFound => {
                V3Error::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "订单不存在")
            }
            Refusal::State(s) => V3Error::invalid(format!("订单状态为{s}，不能退款")),
            Refusal::TotalMismatch => V3Error::param("amount.total does not match the order"),
            Refusal::RefundTooLarge { refundable } => V3Error::new(
                StatusCode::FORBIDDEN,
                "NOT_ENOUGH",
                format!("申请退款金额超过订单可退金额 (refundable {refundable})"),
            ),
            _ => V3Error::invalid("out_refund_no was used with different parameters"),
        })?;
    Ok((r, created, fault))
}

/// `GET /v3/refund/domestic/refunds/{out_refund_no}` (WeChat Pay APIv3 "查询单笔退款"): 404
/// `RESOURCE_NOT_EXISTS` for a refund WeChat never received.
async fn query_refund(State(shared): Sim, Path(no): Path<String>) -> Result<Response, V3Error> {
    let r = {
        let mut world = shared.world();
        *world.refund_queries.entry(no.clone()).or_default() += 1;
        world
            .refunds
            .get(&no)
            .map(super::state::Refund::refund_json)
    }
    .ok_or_else(|| V3Error::new(StatusCode::NOT_FOUND, "RESOURCE_NOT_EXISTS", "退款单不存在"))?;
    Ok(json_response(StatusCode::OK, &r))
}

/// `GET /v3/certificates` (WeChat Pay APIv3 "下载平台证书"): every platform certificate (two
/// after a rotation), each encrypted with the APIv3 key under its own nonce; merchants on
/// WeChat Pay public keys get 404.
async fn certificates(State(shared): Sim) -> Result<Response, V3Error> {
    if shared.creds.platform_certificate_serial.is_none() {
        return Err(V3Error::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "无可用的平台证书，请在商户平台-API安全申请使用微信支付公钥",
        ));
    }
    let certificates = shared.platform().certificates.clone();
    let time = |t: i64| rfc3339_cst(u64::try_from(t).unwrap_or_default());
    let mut data = Vec::with_capacity(certificates.len());
    for (cert, pem) in &certificates {
        let nonce = wxpay_core::nonce::nonce_str(&mut rng())[..12].to_owned();
        let ciphertext =
            wxpay_core::aead::encrypt(&shared.api_v3_key, &nonce, "certificate", pem.as_bytes())
                .map_err(|_| {
                    V3Error::new(StatusCode::INTERNAL_SERVER_ERROR, "SYSTEM_ERROR", "encrypt")
                })?;
        data.push(json!({
            "serial_no": cert.serial_no,
            "effective_time": time(cert.not_before),
            "expire_time": time(cert.not_after),
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": nonce,
                "associated_data": "certificate",
                "ciphertext": ciphertext,
            },
        }));
    }
    Ok(json_response(StatusCode::OK, &json!({ "data": data })))
}

// ---------------------------------------------------------------------------------------------
// Mini-program login

fn login_error(errcode: i64) -> Value {
    let msg = match errcode {
        40029 => "invalid code",
        40163 => "code been used",
        45011 => "api minute-quota reach limit  mustslower  retry next minute",
        -1 => "system error",
        40013 => "invalid appid",
        40125 => "invalid appsecret",
        40002 => "invalid grant_type",
        41008 => "missing code",
        _ => "simulated error",
    };
    let rid = &wxpay_core::nonce::nonce_str(&mut rng())[..24];
    json!({ "errcode": errcode, "errmsg": format!("{msg}, rid: {rid}") })
}

/// `GET /sns/jscode2session?appid&secret&js_code&grant_type=authorization_code`
/// (mini-program "code2Session"). Errors are HTTP 200 with `errcode`, as WeChat answers.
async fn jscode2session(State(shared): Sim, Query(q): Query<HashMap<String, String>>) -> Response {
    let reply = |v: Value| json_response(StatusCode::OK, &v);
    let mut world = shared.world();
    if let Some(errcode) = world.login_failures.pop_front() {
        return reply(login_error(errcode));
    }
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    if get("appid") != shared.creds.appid {
        return reply(login_error(40013));
    }
    if get("secret") != shared.creds.appsecret {
        return reply(login_error(40125));
    }
    if get("grant_type") != "authorization_code" {
        return reply(login_error(40002));
    }
    if get("js_code").is_empty() {
        return reply(login_error(41008));
    }
    let openid = match world.redeem_code(get("js_code"), shared.now()) {
        Ok(openid) => openid,
        Err(errcode) => return reply(login_error(errcode)),
    };
    let mut rng = rng();
    let unionid = world
        .unionids
        .entry(openid.clone())
        .or_insert_with(|| format!("oU{}", &wxpay_core::nonce::nonce_str(&mut rng)[..26]))
        .clone();
    let mut key = [0u8; 16];
    rand_core::Rng::fill_bytes(&mut rng, &mut key);
    let session_key = base64::engine::general_purpose::STANDARD.encode(key);
    world
        .session_keys
        .insert(openid.clone(), session_key.clone());
    drop(world);
    reply(json!({ "openid": openid, "session_key": session_key, "unionid": unionid }))
}

// ---------------------------------------------------------------------------------------------
// Control API

fn control_error(e: &SimulatorError) -> Response {
    let (status, code) = match e {
        SimulatorError::OrderNotFound(_) | SimulatorError::RefundNotFound(_) => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        SimulatorError::OrderState { .. }
        | SimulatorError::OrderExpired(_)
        | SimulatorError::RefundState { .. }
        | SimulatorError::RefundRefused(_) => (StatusCode::CONFLICT, "invalid_state"),
        SimulatorError::Unsupported(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    json_response(
        status,
        &json!({ "error": { "code": code, "message": e.to_string() } }),
    )
}

fn bad_request(message: &str) -> Response {
    json_response(
        StatusCode::BAD_REQUEST,
        &json!({ "error": { "code": "bad_request", "message": message } }),
    )
}

/// Lenient JSON for the control API: an empty body is `{}`.
fn control_json(body: &[u8]) -> Option<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(json!({}));
    }
    serde_json::from_slice(body).ok()
}

async fn sim_credentials(State(shared): Sim) -> Response {
    let c = &shared.creds;
    json_response(
        StatusCode::OK,
        &json!({
            "warning": "TEST-ONLY credentials of a local WeChat Pay simulator",
            "mchid": c.mchid,
            "appid": c.appid,
            "appsecret": c.appsecret,
            "api_v3_key": c.api_v3_key,
            "merchant_serial": c.merchant_serial,
            "merchant_private_key_pem": c.merchant_private_key_pem,
            "platform_public_key_pem": c.platform_public_key_pem,
            "platform_public_key_id": c.platform_public_key_id,
            "platform_certificate_serial": c.platform_certificate_serial,
            "platform_serial": c.platform_serial(),
            "api_v2_key": shared.v2.key_text,
            "v2_sign_type": shared.v2.sign_type.as_str(),
            "tls": shared.tls.is_some(),
            "tls_root_ca_pem": shared.tls.as_ref().map(|t| &t.ca_pem),
            "merchant_client_cert_pem": shared.tls.as_ref().map(|t| &t.client_cert_pem),
        }),
    )
}

async fn sim_login_code(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let mut rng = rng();
    let openid = v["openid"].as_str().map_or_else(
        || format!("o{}", &wxpay_core::nonce::nonce_str(&mut rng)[..27]),
        str::to_owned,
    );
    let random = wxpay_core::nonce::nonce_str(&mut rng);
    let now = shared.now();
    let code = shared.world().issue_code(&openid, now, &random);
    json_response(StatusCode::OK, &json!({ "code": code, "openid": openid }))
}

fn count(v: &Value) -> usize {
    v["count"]
        .as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(1)
}

async fn sim_login_fail(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let Some(errcode) = v["errcode"].as_i64() else {
        return bad_request("errcode (integer) is required");
    };
    shared
        .world()
        .login_failures
        .extend(std::iter::repeat_n(errcode, count(&v)));
    StatusCode::NO_CONTENT.into_response()
}

async fn sim_v3_fail(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..600).contains(s));
    let (Some(status), Some(code)) = (status, v["code"].as_str()) else {
        return bad_request("status (400-599) and code are required");
    };
    let signing = match v["signing"].as_str() {
        None => AnswerSigning::Signed,
        Some(s) => match AnswerSigning::parse(s) {
            Some(s) => s,
            None => return bad_request("signing must be signed, unsigned or bad_signature"),
        },
    };
    let fault = super::V3Fault {
        status,
        code: code.to_owned(),
        signing,
    };
    shared
        .world()
        .v3_failures
        .extend(std::iter::repeat_n(fault, count(&v)));
    StatusCode::NO_CONTENT.into_response()
}

async fn sim_order(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.world().orders.get(&no) {
        Some(o) => json_response(StatusCode::OK, &json!(o.snapshot())),
        None => control_error(&SimulatorError::OrderNotFound(no)),
    }
}

async fn sim_pay(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.pay(&no, false) {
        Ok(o) => json_response(StatusCode::OK, &json!(o)),
        Err(e) => control_error(&e),
    }
}

async fn sim_pay_even_if_closed(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.pay(&no, true) {
        Ok(o) => json_response(StatusCode::OK, &json!(o)),
        Err(e) => control_error(&e),
    }
}

async fn sim_pay_again(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.pay_again(&no) {
        Ok(id) => json_response(StatusCode::OK, &json!({ "transaction_id": id })),
        Err(e) => control_error(&e),
    }
}

async fn sim_trade_state(State(shared): Sim, Path(no): Path<String>, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let Some(state) = v["trade_state"].as_str().and_then(TradeState::from_wire) else {
        return bad_request("trade_state must be NOTPAY, USERPAYING, PAYERROR, REVOKED or CLOSED");
    };
    let changed = shared.world().set_trade_state(&no, state);
    match changed {
        Ok(o) => json_response(StatusCode::OK, &json!(o.snapshot())),
        Err(r) => control_error(&super::refusal_error(r, &no)),
    }
}

async fn sim_query_count(State(shared): Sim, Path(no): Path<String>) -> Response {
    let count = shared.world().order_queries.get(&no).copied().unwrap_or(0);
    json_response(
        StatusCode::OK,
        &json!({ "out_trade_no": no, "count": count }),
    )
}

async fn sim_refund_query_count(State(shared): Sim, Path(no): Path<String>) -> Response {
    let count = shared.world().refund_queries.get(&no).copied().unwrap_or(0);
    json_response(
        StatusCode::OK,
        &json!({ "out_refund_no": no, "count": count }),
    )
}

async fn sim_console_refund(State(shared): Sim, Path(no): Path<String>, body: Bytes) -> Response {
    let Some(amount) = control_json(&body).and_then(|v| v["amount"].as_u64()) else {
        return bad_request("amount (fen, a positive integer) is required");
    };
    match shared.console_refund(&no, amount) {
        Ok(out_refund_no) => {
            json_response(StatusCode::OK, &json!({ "out_refund_no": out_refund_no }))
        }
        Err(e) => control_error(&e),
    }
}

async fn sim_refund_status(State(shared): Sim, Path(no): Path<String>, body: Bytes) -> Response {
    let Some(status) =
        control_json(&body).and_then(|v| v["status"].as_str().and_then(RefundStatus::from_wire))
    else {
        return bad_request("status must be ABNORMAL, SUCCESS or CLOSED");
    };
    match shared.set_refund_status(&no, status) {
        Ok(r) => json_response(StatusCode::OK, &json!(r)),
        Err(e) => control_error(&e),
    }
}

async fn sim_refunds_fail(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let status = v["status"]
        .as_u64()
        .and_then(|s| u16::try_from(s).ok())
        .filter(|s| (400..600).contains(s));
    let fault = match v["mode"].as_str() {
        Some("error") => RefundFault::CreatedButError(status.unwrap_or(500)),
        Some("delay") => match v["delay_ms"].as_u64() {
            Some(ms) => RefundFault::CreatedButDelayed(std::time::Duration::from_millis(ms)),
            None => return bad_request("delay needs delay_ms"),
        },
        Some("reject") => RefundFault::Rejected {
            status: status.unwrap_or(500),
            code: v["code"].as_str().unwrap_or("SYSTEM_ERROR").to_owned(),
        },
        _ => return bad_request("mode must be error, delay or reject"),
    };
    shared
        .world()
        .refund_faults
        .extend(std::iter::repeat_n(fault, count(&v)));
    StatusCode::NO_CONTENT.into_response()
}

async fn sim_refund(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.world().refunds.get(&no) {
        Some(r) => json_response(StatusCode::OK, &json!(r.snapshot())),
        None => control_error(&SimulatorError::RefundNotFound(no)),
    }
}

async fn sim_complete_refund(State(shared): Sim, Path(no): Path<String>) -> Response {
    match shared.set_refund_status(&no, RefundStatus::Success) {
        Ok(r) => json_response(StatusCode::OK, &json!(r)),
        Err(e) => control_error(&e),
    }
}

async fn sim_notify_behavior(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    let behavior = match v["behavior"].as_str() {
        Some("normal") => NotifyBehavior::Normal,
        Some("drop") => NotifyBehavior::Drop,
        Some("duplicate") => NotifyBehavior::Duplicate(count(&v).max(2)),
        Some("probe_first") => NotifyBehavior::ProbeFirst,
        Some("tamper") => NotifyBehavior::Tamper,
        _ => {
            return bad_request(
                "behavior must be normal, drop, duplicate (with count), probe_first or tamper",
            );
        }
    };
    shared.world().behavior = behavior;
    StatusCode::NO_CONTENT.into_response()
}

async fn sim_stats(State(shared): Sim) -> Response {
    let stats = *shared.stats.borrow();
    let attempts = shared
        .deliveries
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    json_response(
        StatusCode::OK,
        &json!({ "stats": stats, "attempts": attempts }),
    )
}

/// `wx.requestPayment` as WeChat's client checks it (APIv3 mini-program payment, "小程序调起支付
/// API"): string types, `timeStamp` digits, `nonceStr` ≤ 32, `package` `prepay_id=` of a live
/// prepay, `signType` `RSA`, `paySign` over `appId\ntimeStamp\nnonceStr\npackage\n` with the
/// merchant key. With `"pay": true` a passing check also pays the order.
async fn check_request_payment(State(shared): Sim, body: Bytes) -> Response {
    let Some(v) = control_json(&body) else {
        return bad_request("body must be JSON");
    };
    match check_payment_params(&shared, &v) {
        Ok(out_trade_no) => {
            let mut reply = json!({
                "ok": true,
                "errMsg": "requestPayment:ok",
                "out_trade_no": out_trade_no,
            });
            if v["pay"].as_bool() == Some(true) {
                match shared.pay(&out_trade_no, false) {
                    Ok(o) => reply["order"] = json!(o),
                    Err(e) => return control_error(&e),
                }
            }
            json_response(StatusCode::OK, &reply)
        }
        Err(msg) => json_response(
            StatusCode::BAD_REQUEST,
            &json!({ "ok": false, "errMsg": format!("requestPayment:fail {msg}") }),
        ),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "Null",
        Value::Bool(_) => "Boolean",
        Value::Number(_) => "Number",
        Value::String(_) => "String",
        Value::Array(_) => "Array",
        Value::Object(_) => "Object",
    }
}

fn check_payment_params(shared: &Shared, v: &Value) -> Result<String, String> {
    let mut fields = HashMap::new();
    for name in ["timeStamp", "nonceStr", "package", "signType", "paySign"] {
        match &v[name] {
            Value::String(s) => {
                fields.insert(name, s.as_str());
            }
            Value::Null => {
                return Err(format!(
                    "parameter error: parameter.{name} should be String"
                ));
            }
            other => {
                return Err(format!(
                    "parameter error: parameter.{name} should be String instead of {};",
                    type_name(other)
                ));
            }
        }
    }
    let app_id = match &v["appId"] {
        Value::Null => shared.creds.appid.as_str(),
        Value::String(s) => s.as_str(),
        other => {
            return Err(format!(
                "parameter error: parameter.appId should be String instead of {};",
                type_name(other)
            ));
        }
    };
    let (ts, nonce, package) = (fields["timeStamp"], fields["nonceStr"], fields["package"]);
    if app_id != shared.creds.appid {
        return Err("appId does not match the mini-program".to_owned());
    }
    if !digits_only(ts) || ts.len() > 10 {
        return Err("invalid timeStamp: decimal seconds as a String".to_owned());
    }
    if nonce.is_empty() || nonce.len() > 32 {
        return Err("invalid nonceStr: 1-32 characters".to_owned());
    }
    // APIv3 orders are paid with `RSA`; APIv2 orders with the sign type they were placed with.
    let v2_sign_type = match fields["signType"] {
        "RSA" => None,
        "MD5" | "HMAC-SHA256" => Some(
            fields["signType"]
                .parse::<wxpay_core::v2::SignType>()
                .map_err(|e| format!("invalid signType: {e}"))?,
        ),
        _ => return Err("invalid signType: RSA, MD5 or HMAC-SHA256".to_owned()),
    };
    let prepay_id = package
        .strip_prefix("prepay_id=")
        .ok_or("invalid package: must be prepay_id=…")?;
    let now = shared.now();
    let out_trade_no = {
        let world = shared.world();
        let order = world
            .prepays
            .get(prepay_id)
            .and_then(|no| world.orders.get(no))
            .ok_or("prepay_id is unknown")?;
        if order.prepay_id != prepay_id || order.prepay_expires_at <= now {
            return Err("prepay_id has expired".to_owned());
        }
        match order.state {
            TradeState::NotPay | TradeState::UserPaying | TradeState::PayError
                if order.expired(now) =>
            {
                return Err("订单已过期".to_owned());
            }
            TradeState::NotPay | TradeState::UserPaying | TradeState::PayError => {}
            TradeState::Closed | TradeState::Revoked => return Err("订单已关闭".to_owned()),
            TradeState::Success | TradeState::Refund => return Err("该订单已支付".to_owned()),
        }
        if let Some(openid) = v["openid"].as_str()
            && openid != order.req.openid
        {
            return Err("the current user is not the order's payer".to_owned());
        }
        order.req.out_trade_no.clone()
    };
    let placed_with = super::v2::order_sign_type(shared, &out_trade_no);
    if let Some(sign_type) = v2_sign_type {
        if placed_with != Some(sign_type) {
            return Err(format!(
                "invalid signType: this order takes {}",
                placed_with.map_or("RSA", wxpay_core::v2::SignType::as_str)
            ));
        }
        let expected = wxpay_core::v2::request_payment(
            &shared.v2.key,
            sign_type,
            app_id,
            ts,
            nonce,
            prepay_id,
        );
        let given = fields["paySign"].to_ascii_uppercase();
        return if expected.pay_sign == given {
            Ok(out_trade_no)
        } else {
            Err("支付验证签名失败".to_owned())
        };
    }
    if placed_with.is_some() {
        return Err("invalid signType: this APIv2 order takes MD5 or HMAC-SHA256".to_owned());
    }
    let message = pay_sign_message(app_id, ts, nonce, package);
    shared
        .merchant_public
        .verify(message.as_bytes(), fields["paySign"])
        .map_err(|_| "支付验证签名失败".to_owned())?;
    Ok(out_trade_no)
}
