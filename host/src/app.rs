//! The HTTP API: `fn app(state) -> Router` and its handlers.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use rand_core::UnwrapErr;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower_http::trace::TraceLayer;
use wxpay_core::v3::{self, WechatpayHeaders};

use crate::config::Config;
use crate::error::{AppError, NotifyError};
use crate::metrics::Metrics;
use crate::store::{
    NewOrder, NotificationRecord, Order, OrderState, RefundUpdate, Store, Transition,
};
use crate::wechat::{PREPAY_VALIDITY_SECS, RefundRequest, UpstreamError, WechatClient, unix_now};

/// Shared application state. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

/// What [`AppState`] holds.
#[derive(Debug)]
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// Persistent storage.
    pub store: Store,
    /// The WeChat client.
    pub wechat: WechatClient,
    /// Process metrics.
    pub metrics: Metrics,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Why the application could not start.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Storage could not be opened or migrated.
    #[error("WXPAY_DATABASE_URL: {0}")]
    Store(#[from] crate::store::StoreError),
    /// The WeChat client could not be built.
    #[error(transparent)]
    Client(#[from] crate::wechat::ClientInitError),
    /// The platform certificates are unusable for this merchant (e.g. 404 in public-key mode).
    #[error("{0}")]
    Upstream(UpstreamError),
}

impl AppState {
    /// Opens the store (running migrations) and builds the WeChat client. In certificate mode,
    /// downloads the platform certificates once; an unreachable WeChat is only a warning (the
    /// reconciler retries), a configuration mismatch is an error.
    ///
    /// # Errors
    /// [`InitError`] naming the failing setting.
    pub async fn new(config: Config) -> Result<Self, InitError> {
        let metrics = Metrics::default();
        let wechat = WechatClient::new(&config, metrics.clone())?;
        let store = Store::connect(&config.database_url).await?;
        if wechat.certificate_mode() {
            match wechat.refresh_certificates(true).await {
                Ok(n) => tracing::info!(certificates = n, "platform certificates loaded"),
                Err(e @ UpstreamError::Config(_)) => return Err(InitError::Upstream(e)),
                Err(e) => tracing::warn!(error = %e, "cannot download platform certificates yet"),
            }
        }
        Ok(Self(Arc::new(Inner {
            config,
            store,
            wechat,
            metrics,
        })))
    }
}

/// The router with every route, the body size limit and request tracing.
pub fn app(state: AppState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route("/api/login", post(login))
        .route("/api/orders/{out_trade_no}", get(user_order))
        .route("/api/orders/{out_trade_no}/pay", post(pay))
        .route("/admin/orders", post(admin_create_order))
        .route("/admin/orders/{out_trade_no}", get(admin_order))
        .route("/admin/orders/{out_trade_no}/close", post(admin_close))
        .route("/admin/orders/{out_trade_no}/refund", post(admin_refund))
        .route("/notify/pay", post(notify_pay))
        .route("/notify/refund", post(notify_refund))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn_with_state(
            limit,
            refuse_announced_oversize,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Answers 413 for a body whose announced `Content-Length` is over the limit, before reading any
/// of it: otherwise the server reads up to the limit first, and a client can hold a connection
/// by trickling an oversized body. Bodies without a length are still cut off at the limit by
/// `DefaultBodyLimit` while they are read.
async fn refuse_announced_oversize(
    State(limit): State<usize>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX)) {
        return AppError::PayloadTooLarge.into_response();
    }
    next.run(req).await
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// SHA-256 hex of a token: only hashes are stored, so a database leak yields no session.
fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// A mini-program user authenticated by the host's session token.
#[derive(Debug)]
pub struct AuthUser {
    /// The user's openid.
    pub openid: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthorized)?;
        if token.len() > 128 {
            return Err(AppError::Unauthorized);
        }
        let openid = state
            .store
            .session_openid(&token_hash(token), unix_now())
            .await?
            .ok_or(AppError::Unauthorized)?;
        Ok(Self { openid })
    }
}

/// The back office, authenticated by `WXPAY_ADMIN_TOKEN`.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(parts).ok_or(AppError::Unauthorized)?;
        // Compare digests in constant time (also hides the length).
        let want = Sha256::digest(state.config.admin_token.expose().as_bytes());
        let got = Sha256::digest(token.as_bytes());
        if bool::from(want.as_slice().ct_eq(got.as_slice())) {
            Ok(Self)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

/// JSON body extractor whose rejections are [`AppError`]s.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;
    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Self(v))
    }
}

/// Merchant numbers: 6–32 characters of `[0-9A-Za-z_-|*]` (WeChat Pay `out_trade_no`).
fn check_merchant_no(field: &'static str, s: &str) -> Result<(), AppError> {
    let ok = (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(AppError::bad_request(
            "invalid_field",
            format!("{field} must be 6-32 characters of [0-9A-Za-z_-|*]"),
        ))
    }
}

fn path_no(s: &str) -> Result<(), AppError> {
    // A malformed number cannot name an order: 404, like any unknown order.
    check_merchant_no("out_trade_no", s).map_err(|_| AppError::NotFound)
}

fn random_no(prefix: &str) -> String {
    let mut b = [0u8; 12];
    if getrandom::fill(&mut b).is_err() {
        // Fall back to the nonce generator's RNG path; both are the OS RNG.
        return format!("{prefix}{}", &wxpay_core::nonce_str(&mut rng())[..24]);
    }
    format!("{prefix}{}", hex::encode(b))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    code: String,
}

async fn login(
    State(s): State<AppState>,
    JsonBody(body): JsonBody<LoginBody>,
) -> Result<Json<Value>, AppError> {
    let code = body.code.trim();
    if code.is_empty() || code.len() > 128 || !code.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(AppError::bad_request(
            "invalid_code",
            "code must be a wx.login code",
        ));
    }
    let user = s.wechat.jscode2session(code).await?;
    let now = unix_now();
    s.store.upsert_user(&user, now).await?;
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).map_err(|e| AppError::Internal(format!("os rng: {e}")))?;
    let token = hex::encode(raw);
    let ttl = i64::try_from(s.config.session_ttl.as_secs()).unwrap_or(7200);
    s.store
        .create_session(&token_hash(&token), &user.openid, now + ttl, now)
        .await?;
    tracing::info!(openid = %user.openid, "user logged in");
    Ok(Json(
        json!({ "token": token, "openid": user.openid, "expires_in": ttl }),
    ))
}

fn order_json(o: &Order) -> Value {
    json!({
        "out_trade_no": o.out_trade_no,
        "amount": o.amount,
        "description": o.description,
        "attach": o.attach,
        "state": o.state,
        "transaction_id": o.transaction_id,
        "refunded": o.refunded,
        "created_at": o.created_at,
        "expire_at": o.expire_at,
        "updated_at": o.updated_at,
    })
}

async fn owned_order(s: &AppState, user: &AuthUser, no: &str) -> Result<Order, AppError> {
    path_no(no)?;
    s.store
        .order(no)
        .await?
        .filter(|o| o.openid == user.openid)
        .ok_or(AppError::NotFound)
}

async fn user_order(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    let o = owned_order(&s, &user, &no).await?;
    Ok(Json(order_json(&o)))
}

async fn pay(
    State(s): State<AppState>,
    user: AuthUser,
    Path(no): Path<String>,
) -> Result<Json<v3::RequestPayment>, AppError> {
    let order = owned_order(&s, &user, &no).await?;
    let now = unix_now();
    match order.state {
        OrderState::Created if order.expire_at > now => {}
        OrderState::Created => return Err(AppError::Conflict("order has expired".into())),
        OrderState::Paid | OrderState::Refunding | OrderState::Refunded => {
            return Err(AppError::Conflict("order is already paid".into()));
        }
        OrderState::Closed => return Err(AppError::Conflict("order is closed".into())),
        OrderState::Review => return Err(AppError::Conflict("order is under review".into())),
    }
    let prepay_id = match (&order.prepay_id, order.prepay_expires_at) {
        (Some(p), Some(until)) if until > now + 60 => p.clone(),
        _ => {
            let p = match s.wechat.jsapi_order(&order).await {
                Ok(p) => p,
                Err(e) if e.api_code() == Some("ORDERPAID") => {
                    return Err(AppError::Conflict("order is already paid".into()));
                }
                Err(e) if e.api_code() == Some("ORDER_CLOSED") => {
                    return Err(AppError::Conflict("order is closed".into()));
                }
                Err(e) => return Err(e.into()),
            };
            let until = (now + PREPAY_VALIDITY_SECS).min(order.expire_at);
            s.store
                .set_prepay(&order.out_trade_no, &p, until, now)
                .await?;
            p
        }
    };
    let nonce = wxpay_core::nonce_str(&mut rng());
    let params = v3::pay_sign(
        s.wechat.signer(),
        &mut rng(),
        &s.config.appid,
        &now.to_string(),
        &nonce,
        &prepay_id,
    )
    .map_err(|e| AppError::Internal(format!("pay_sign: {e}")))?;
    Ok(Json(params))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateOrder {
    openid: String,
    amount: i64,
    description: String,
    #[serde(default)]
    out_trade_no: Option<String>,
    #[serde(default)]
    attach: Option<String>,
    #[serde(default)]
    expire_in: Option<i64>,
}

async fn admin_create_order(
    State(s): State<AppState>,
    _admin: Admin,
    JsonBody(body): JsonBody<CreateOrder>,
) -> Result<Response, AppError> {
    if body.amount <= 0 || body.amount > 100_000_000_000 {
        return Err(AppError::bad_request(
            "invalid_amount",
            "amount must be a positive integer (fen)",
        ));
    }
    let description = body.description.trim();
    if description.is_empty() || description.chars().count() > 127 {
        return Err(AppError::bad_request(
            "invalid_field",
            "description must be 1-127 characters",
        ));
    }
    if body
        .attach
        .as_ref()
        .is_some_and(|a| a.chars().count() > 128)
    {
        return Err(AppError::bad_request(
            "invalid_field",
            "attach must be at most 128 characters",
        ));
    }
    let expire_in = body
        .expire_in
        .unwrap_or_else(|| i64::try_from(s.config.order_expire.as_secs()).unwrap_or(1800));
    if !(1..=30 * 86_400).contains(&expire_in) {
        return Err(AppError::bad_request(
            "invalid_field",
            "expire_in must be 1..2592000 seconds",
        ));
    }
    let out_trade_no = match body.out_trade_no {
        Some(no) => {
            check_merchant_no("out_trade_no", &no)?;
            no
        }
        None => random_no("WX"),
    };
    if body.openid.is_empty()
        || body.openid.len() > 128
        || !s.store.user_exists(&body.openid).await?
    {
        return Err(AppError::bad_request(
            "unknown_openid",
            "no user with this openid has logged in",
        ));
    }
    let now = unix_now();
    let order = s
        .store
        .insert_order(
            &NewOrder {
                out_trade_no,
                openid: body.openid,
                amount: body.amount,
                description: description.to_owned(),
                attach: body.attach,
                expire_at: now + expire_in,
            },
            now,
        )
        .await?;
    tracing::info!(out_trade_no = %order.out_trade_no, amount = order.amount, "order created");
    let mut v = order_json(&order);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("openid".into(), json!(order.openid));
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn admin_order_json(s: &AppState, no: &str) -> Result<Value, AppError> {
    path_no(no)?;
    let order = s.store.order(no).await?.ok_or(AppError::NotFound)?;
    let events = s.store.order_events(no).await?;
    let refunds = s.store.refunds(no).await?;
    let mut v = order_json(&order);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("openid".into(), json!(order.openid));
        obj.insert("review_reason".into(), json!(order.review_reason));
        obj.insert("events".into(), json!(events));
        obj.insert("refunds".into(), json!(refunds));
    }
    Ok(v)
}

async fn admin_order(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(admin_order_json(&s, &no).await?))
}

async fn admin_close(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
) -> Result<Json<Value>, AppError> {
    path_no(&no)?;
    let order = s.store.order(&no).await?.ok_or(AppError::NotFound)?;
    match order.state {
        OrderState::Created => {}
        OrderState::Closed => return Ok(Json(admin_order_json(&s, &no).await?)),
        other => return Err(AppError::Conflict(format!("order is {other}"))),
    }
    crate::jobs::close_order(&s, &order, "closed_by_merchant", unix_now()).await?;
    let v = admin_order_json(&s, &no).await?;
    if v["state"] != json!("CLOSED") {
        return Err(AppError::Conflict(format!("order is {}", v["state"])));
    }
    Ok(Json(v))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount: i64,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    out_refund_no: Option<String>,
}

async fn admin_refund(
    State(s): State<AppState>,
    _admin: Admin,
    Path(no): Path<String>,
    JsonBody(body): JsonBody<RefundBody>,
) -> Result<Response, AppError> {
    path_no(&no)?;
    if body.amount <= 0 {
        return Err(AppError::bad_request(
            "invalid_amount",
            "amount must be a positive integer (fen)",
        ));
    }
    if body.reason.as_ref().is_some_and(|r| r.chars().count() > 80) {
        return Err(AppError::bad_request(
            "invalid_field",
            "reason must be at most 80 characters",
        ));
    }
    let out_refund_no = match body.out_refund_no {
        Some(n) => {
            check_merchant_no("out_refund_no", &n)?;
            n
        }
        None => random_no("RF"),
    };
    let order = s.store.order(&no).await?.ok_or(AppError::NotFound)?;
    let now = unix_now();
    let refund = s
        .store
        .begin_refund(
            &no,
            &out_refund_no,
            body.amount,
            body.reason.as_deref(),
            now,
        )
        .await?;
    if refund.state == "PROCESSING" {
        let req = RefundRequest {
            out_trade_no: &no,
            out_refund_no: &out_refund_no,
            refund: refund.amount,
            total: order.amount,
            reason: refund.reason.as_deref(),
        };
        match s.wechat.refund(&req).await {
            Ok(answer) => {
                let update = RefundUpdate {
                    out_refund_no: out_refund_no.clone(),
                    refund_id: answer.refund_id,
                    status: answer.status,
                };
                s.store.apply_refund(None, &update, unix_now()).await?;
            }
            // A definite rejection: nothing will happen at WeChat, release the balance.
            Err(
                e @ UpstreamError::Api {
                    status: 400..=499, ..
                },
            ) => {
                let update = RefundUpdate {
                    out_refund_no: out_refund_no.clone(),
                    refund_id: None,
                    status: "FAILED".into(),
                };
                s.store.apply_refund(None, &update, unix_now()).await?;
                return Err(AppError::Conflict(format!(
                    "WeChat refused the refund: {e}"
                )));
            }
            // Unknown outcome: keep PROCESSING; the reconciler queries it.
            Err(e) => return Err(e.into()),
        }
    }
    let refund = s
        .store
        .refund(&out_refund_no)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((StatusCode::ACCEPTED, Json(json!(refund))).into_response())
}

async fn healthz(State(s): State<AppState>) -> Result<Json<Value>, AppError> {
    s.store.ping().await?;
    Ok(Json(json!({ "status": "ok" })))
}

async fn metrics(State(s): State<AppState>) -> Result<Response, AppError> {
    let counts = s.store.order_counts().await?;
    let body = s.metrics.render(&counts);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response())
}

/// Verifies and decrypts a notification; maps failures to WeChat-facing errors.
async fn verified(
    s: &AppState,
    kind: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<v3::Notification, NotifyError> {
    let reject = |outcome: &'static str, status: StatusCode, message: &'static str| {
        s.metrics.notification(kind, outcome);
        tracing::warn!(kind, outcome, "notification rejected");
        NotifyError::new(status, message)
    };
    let wx = WechatpayHeaders::from_pairs(crate::wechat::header_pairs(headers)).map_err(|_| {
        reject(
            "bad_headers",
            StatusCode::BAD_REQUEST,
            "missing or malformed Wechatpay headers",
        )
    })?;
    let keys = s.wechat.api_v3_key();
    let attempt = || {
        let now = u64::try_from(unix_now()).unwrap_or(0);
        s.wechat
            .with_platform_keys(|k| v3::verify_notification(k, keys, &wx, body, now))
    };
    let mut result = attempt();
    if matches!(result, Err(wxpay_core::Error::UnknownSerial)) && s.wechat.certificate_mode() {
        // Possibly a rotated platform certificate: refresh (rate-limited) and try once more.
        if let Err(e) = s.wechat.refresh_certificates(false).await {
            tracing::warn!(error = %e, "certificate refresh after unknown serial failed");
        }
        result = attempt();
    }
    let n = result.map_err(|e| match e {
        wxpay_core::Error::SignTestProbe => reject(
            "probe",
            StatusCode::UNAUTHORIZED,
            "signature verification failed",
        ),
        wxpay_core::Error::TimestampExpired => reject(
            "stale",
            StatusCode::BAD_REQUEST,
            "timestamp outside the allowed window",
        ),
        wxpay_core::Error::UnknownSerial => reject(
            "unknown_serial",
            StatusCode::UNAUTHORIZED,
            "unknown Wechatpay-Serial",
        ),
        // Authentic but undecryptable: most likely a rotated APIv3 key. 5xx so WeChat keeps
        // retrying while the operator fixes WXPAY_API_V3_KEY.
        wxpay_core::Error::DecryptFailed => {
            tracing::error!("notification does not decrypt: check WXPAY_API_V3_KEY");
            reject(
                "undecryptable",
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot decrypt resource",
            )
        }
        // Only reachable after the signature verified.
        wxpay_core::Error::Malformed(_) => reject(
            "malformed",
            StatusCode::BAD_REQUEST,
            "malformed notification",
        ),
        _ => reject(
            "bad_signature",
            StatusCode::UNAUTHORIZED,
            "signature verification failed",
        ),
    })?;
    Ok(n)
}

fn storage_failed(s: &AppState, kind: &'static str, e: &crate::store::StoreError) -> NotifyError {
    s.metrics.notification(kind, "storage_error");
    tracing::error!(error = %e, kind, "notification not applied: storage failure");
    NotifyError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "storage unavailable, retry later",
    )
}

async fn notify_pay(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, NotifyError> {
    let n = verified(&s, "pay", &headers, &body).await?;
    let tx = n.transaction().map_err(|_| {
        s.metrics.notification("pay", "malformed");
        NotifyError::new(StatusCode::BAD_REQUEST, "resource is not a transaction")
    })?;
    if tx.appid != s.config.appid || tx.mchid != s.config.mchid {
        s.metrics.notification("pay", "foreign");
        tracing::error!(appid = %tx.appid, mchid = %tx.mchid, "notification for another appid/mchid");
        return Err(NotifyError::new(
            StatusCode::BAD_REQUEST,
            "appid or mchid mismatch",
        ));
    }
    let order = match s.store.order(&tx.out_trade_no).await {
        Ok(Some(o)) => o,
        Ok(None) => {
            s.metrics.notification("pay", "unknown_order");
            tracing::error!(out_trade_no = %tx.out_trade_no, "notification for an unknown order");
            return Err(NotifyError::new(
                StatusCode::BAD_REQUEST,
                "unknown out_trade_no",
            ));
        }
        Err(e) => return Err(storage_failed(&s, "pay", &e)),
    };
    let change = pay_transition(&order, &tx, "notify");
    let record = NotificationRecord {
        id: n.id.clone(),
        kind: "pay",
        event_type: n.event_type.clone(),
        out_trade_no: order.out_trade_no.clone(),
    };
    let applied = s
        .store
        .apply_notification(&record, change.as_ref(), unix_now())
        .await
        .map_err(|e| storage_failed(&s, "pay", &e))?;
    s.metrics.notification("pay", applied.as_str());
    tracing::info!(
        out_trade_no = %order.out_trade_no,
        notification = %n.id,
        outcome = applied.as_str(),
        "pay notification"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// The transition an authentic `SUCCESS` transaction implies for `order`, if any: `PAID` when
/// amount, payer and currency match, else `REVIEW` with the reason.
#[must_use]
pub fn pay_transition(order: &Order, tx: &v3::Transaction, via: &str) -> Option<Transition> {
    if tx.trade_state != "SUCCESS" {
        return None;
    }
    let mut problems = Vec::new();
    match &tx.amount {
        Some(a) if a.total == order.amount => {}
        Some(a) => problems.push(format!(
            "amount {} != order amount {}",
            a.total, order.amount
        )),
        None => problems.push("no amount".to_owned()),
    }
    if let Some(c) = tx.amount.as_ref().and_then(|a| a.currency.as_deref())
        && c != "CNY"
    {
        problems.push(format!("currency {c}"));
    }
    if let Some(p) = &tx.payer
        && p.openid != order.openid
    {
        problems.push("payer openid differs from the order's".to_owned());
    }
    let from = match order.state {
        OrderState::Created => OrderState::Created,
        // Money taken for an order we closed: a human must refund it.
        OrderState::Closed => {
            problems.push("paid after the order was closed".to_owned());
            OrderState::Closed
        }
        _ => return None,
    };
    let detail = format!(
        "via={via} transaction_id={}",
        tx.transaction_id.as_deref().unwrap_or("-")
    );
    Some(if problems.is_empty() {
        Transition {
            from,
            to: OrderState::Paid,
            kind: if via == "notify" {
                "notify_paid"
            } else {
                "reconciled_paid"
            },
            detail,
            transaction_id: tx.transaction_id.clone(),
            review_reason: None,
        }
    } else {
        let reason = problems.join("; ");
        tracing::error!(out_trade_no = %order.out_trade_no, %reason, "payment flagged for review");
        Transition {
            from,
            to: OrderState::Review,
            kind: "flagged_review",
            detail: format!("{detail} {reason}"),
            transaction_id: tx.transaction_id.clone(),
            review_reason: Some(reason),
        }
    })
}

async fn notify_refund(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, NotifyError> {
    let n = verified(&s, "refund", &headers, &body).await?;
    let r = n.refund().map_err(|_| {
        s.metrics.notification("refund", "malformed");
        NotifyError::new(StatusCode::BAD_REQUEST, "resource is not a refund")
    })?;
    if r.mchid != s.config.mchid {
        s.metrics.notification("refund", "foreign");
        return Err(NotifyError::new(StatusCode::BAD_REQUEST, "mchid mismatch"));
    }
    let known = match s.store.refund(&r.out_refund_no).await {
        Ok(Some(k)) => k,
        Ok(None) => {
            s.metrics.notification("refund", "unknown_refund");
            return Err(NotifyError::new(
                StatusCode::BAD_REQUEST,
                "unknown out_refund_no",
            ));
        }
        Err(e) => return Err(storage_failed(&s, "refund", &e)),
    };
    if known.out_trade_no != r.out_trade_no || known.amount != r.amount.refund {
        s.metrics.notification("refund", "mismatch");
        tracing::error!(out_refund_no = %r.out_refund_no, "refund notification does not match");
        return Err(NotifyError::new(
            StatusCode::BAD_REQUEST,
            "refund does not match",
        ));
    }
    let record = NotificationRecord {
        id: n.id.clone(),
        kind: "refund",
        event_type: n.event_type.clone(),
        out_trade_no: r.out_trade_no.clone(),
    };
    let update = RefundUpdate {
        out_refund_no: r.out_refund_no.clone(),
        refund_id: r.refund_id,
        status: r.refund_status,
    };
    let applied = s
        .store
        .apply_refund(Some(&record), &update, unix_now())
        .await
        .map_err(|e| storage_failed(&s, "refund", &e))?;
    s.metrics.notification("refund", applied.as_str());
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use axum::body::{Body, to_bytes};
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::*;
    use crate::config::{PlatformKeySource, Secret};

    const MERCHANT_KEY: &str = include_str!("../../tests/vectors/keys/merchant_private_key.pem");
    const PLATFORM_PUB: &str = include_str!("../../tests/vectors/keys/platform_public_key.pem");

    async fn state() -> AppState {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).unwrap();
        let dir = std::env::temp_dir().join(format!("wxpay-unit-{}", hex::encode(b)));
        std::fs::create_dir_all(&dir).unwrap();
        let config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: format!("sqlite://{}", dir.join("u.db").display()),
            appid: "wx_unit".into(),
            appsecret: Secret::new("s"),
            mchid: "1900000001".into(),
            merchant_serial: "ABC".into(),
            merchant_key_pem: Secret::new(MERCHANT_KEY),
            api_v3_key: Secret::new("0123456789abcdef0123456789abcdef"),
            platform: PlatformKeySource::PublicKey {
                id: "PUB_KEY_ID_0001".into(),
                pem: PLATFORM_PUB.into(),
            },
            notify_url: "http://127.0.0.1:9".into(),
            admin_token: Secret::new("unit-admin-token-000"),
            // Nothing listens there: no test here may reach WeChat.
            api_base: "http://127.0.0.1:9".into(),
            login_base: "http://127.0.0.1:9".into(),
            order_expire: std::time::Duration::from_secs(60),
            session_ttl: std::time::Duration::from_secs(60),
            reconcile_interval: std::time::Duration::from_secs(60),
            reconcile_after: std::time::Duration::from_secs(60),
            cert_refresh_interval: std::time::Duration::from_secs(60),
            http_timeout: std::time::Duration::from_millis(200),
            upstream_retries: 0,
            body_limit: 1024,
        };
        AppState::new(config).await.unwrap()
    }

    async fn call(s: &AppState, req: Request<Body>) -> (StatusCode, Value) {
        let resp = app(s.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    #[tokio::test]
    async fn routes_answer_clear_errors() {
        let s = state().await;
        let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
        assert_eq!(
            call(&s, get("/healthz")).await,
            (StatusCode::OK, json!({"status":"ok"}))
        );
        let (st, v) = call(&s, get("/api/orders/ORDER00001")).await;
        assert_eq!(st, StatusCode::UNAUTHORIZED);
        assert_eq!(v["error"]["code"], "unauthorized");
        let bad_json = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from("{"))
            .unwrap();
        let (st, v) = call(&s, bad_json).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_json"))
        );
        let huge = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from(vec![b' '; 4096]))
            .unwrap();
        assert_eq!(call(&s, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
        let notify = Request::post("/notify/pay").body(Body::from("{}")).unwrap();
        let (st, v) = call(&s, notify).await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("FAIL"))
        );
        let admin = Request::get("/admin/orders/ORDER00001")
            .header("authorization", "Bearer unit-admin-token-000")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&s, admin).await.0, StatusCode::NOT_FOUND);
        let wrong = Request::get("/admin/orders/ORDER00001")
            .header("authorization", "Bearer unit-admin-token-001")
            .body(Body::empty())
            .unwrap();
        assert_eq!(call(&s, wrong).await.0, StatusCode::UNAUTHORIZED);
        // An unreachable WeChat is a 503 with no detail.
        let login = Request::post("/api/login")
            .header("content-type", "application/json")
            .body(Body::from(r#"{"code":"abc"}"#))
            .unwrap();
        let (st, v) = call(&s, login).await;
        assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
        assert!(!v.to_string().contains("127.0.0.1"), "{v}");
    }

    #[tokio::test]
    async fn internal_detail_is_not_sent() {
        let resp = AppError::Internal("password=hunter2 at db".into()).into_response();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"error":{"code":"internal","message":"internal error"}})
        );
    }

    fn order(state: OrderState) -> Order {
        Order {
            out_trade_no: "ORDER00001".into(),
            openid: "o_1".into(),
            amount: 100,
            description: "d".into(),
            attach: None,
            state,
            prepay_id: None,
            prepay_expires_at: None,
            transaction_id: None,
            refunded: 0,
            review_reason: None,
            created_at: 0,
            expire_at: 0,
            updated_at: 0,
        }
    }

    fn tx(total: i64, openid: &str, trade_state: &str) -> v3::Transaction {
        serde_json::from_value(json!({
            "mchid": "1900000001", "appid": "wx_unit", "out_trade_no": "ORDER00001",
            "transaction_id": "42", "trade_state": trade_state,
            "payer": { "openid": openid }, "amount": { "total": total, "currency": "CNY" },
        }))
        .unwrap()
    }

    #[test]
    fn pay_transition_checks_amount_payer_and_state() {
        let t = pay_transition(
            &order(OrderState::Created),
            &tx(100, "o_1", "SUCCESS"),
            "notify",
        );
        assert_eq!(t.map(|t| t.to), Some(OrderState::Paid));
        let t = pay_transition(
            &order(OrderState::Created),
            &tx(99, "o_1", "SUCCESS"),
            "notify",
        );
        assert_eq!(t.map(|t| t.to), Some(OrderState::Review));
        let t = pay_transition(
            &order(OrderState::Created),
            &tx(100, "o_2", "SUCCESS"),
            "notify",
        );
        assert_eq!(t.map(|t| t.to), Some(OrderState::Review));
        let t = pay_transition(
            &order(OrderState::Closed),
            &tx(100, "o_1", "SUCCESS"),
            "query",
        );
        assert_eq!(
            t.map(|t| (t.from, t.to)),
            Some((OrderState::Closed, OrderState::Review))
        );
        assert!(
            pay_transition(&order(OrderState::Created), &tx(100, "o_1", "NOTPAY"), "q").is_none()
        );
        assert!(
            pay_transition(&order(OrderState::Paid), &tx(100, "o_1", "SUCCESS"), "q").is_none()
        );
    }
}
