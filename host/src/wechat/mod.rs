//! The client for WeChat's login API and the WeChat Pay APIv3.
//!
//! Every APIv3 request carries a `WECHATPAY2-SHA256-RSA2048` `Authorization` header computed by
//! `wxpay-core` over exactly the body bytes sent; every response (errors included) is verified
//! with the platform keys before it is believed. A non-2xx answer is read as WeChat's error
//! `{code, message, detail}` whether or not it verifies — WeChat does not sign the answer to a
//! request whose signature it rejected — and comes back as [`UpstreamError::Api`] (verified:
//! services may act on its code) or [`UpstreamError::Unverified`] (reported, never acted on).
//! A `SIGN_ERROR` is logged with what was signed ([`answer::log_sign_error`]). Transport
//! errors, 5xx and 429 / `FREQUENCY_LIMITED` are retried a
//! bounded number of times with exponential backoff (all the calls made here are idempotent at
//! WeChat: they are keyed by `out_trade_no` / `out_refund_no`), by one retry loop
//! (`WechatClient::retrying`) for both APIs. An unknown `Wechatpay-Serial`, in a response or a
//! notification, triggers one rate-limited certificate refresh (certificate and combined mode)
//! and one more verification, in one place ([`WechatClient::verify_with_refresh`]).
//!
//! Every APIv3 request names in `Wechatpay-Serial` the platform key the host wants its answer
//! signed with ([`WechatClient::request_serial`]): the WeChat Pay public key id when one is
//! configured, else the newest platform certificate. During the switch from certificates to the
//! public key WeChat signs an answer with the key the request names (its "应答使用公钥比例"),
//! and notifications under either key; combined mode holds both, so both verify.

pub mod answer;
pub mod v2;

use std::future::Future;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rand_core::UnwrapErr;
use reqwest::Method;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, USER_AGENT};
use serde::Deserialize;
use serde_json::json;
use wxpay_core::provider::default_provider;
use wxpay_core::v3::{self, ApiV3Key, Transaction, WechatpayHeaders};
use wxpay_core::{MerchantSigner, PlatformKeys};

use crate::clock::Clock;
use crate::config::{Config, PayApi, Secret};
use crate::domain::Order;
use crate::metrics::Metrics;
use crate::store::User;

/// The request header naming the platform key the answer should be signed with.
const WECHATPAY_SERIAL: &str = "Wechatpay-Serial";
/// Minimum time between two certificate downloads triggered by unknown serials.
const REFRESH_MIN_INTERVAL: Duration = Duration::from_secs(30);
/// First retry delay; doubled on each retry, with jitter, up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest wait between two tries.
const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// A prepay id is valid for two hours at WeChat; we stop reusing it a little earlier.
pub const PREPAY_VALIDITY_SECS: i64 = 7200 - 300;

/// A failed upstream call.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection failure or timeout, after retries.
    #[error("transport: {0}")]
    Transport(String),
    /// WeChat answered "busy" (errcode -1, 5xx), after retries.
    #[error("busy: {0}")]
    Busy(String),
    /// Rate limited (errcode 45011, 429 `FREQUENCY_LIMITED`).
    #[error("rate limited")]
    RateLimited,
    /// The login code is invalid or already used (errcode 40029 / 40163).
    #[error("{0}")]
    InvalidCode(String),
    /// The login API answered another errcode.
    #[error("login errcode {errcode}: {errmsg}")]
    Login {
        /// WeChat errcode.
        errcode: i64,
        /// WeChat errmsg.
        errmsg: String,
    },
    /// An APIv3 error answer whose signature verified: WeChat said this, so a service may act
    /// on its code.
    #[error("HTTP {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// WeChat error code, e.g. `ORDER_NOT_EXIST`, `ORDERPAID`, `SIGN_ERROR`.
        code: String,
        /// WeChat message.
        message: String,
    },
    /// An APIv3 error answer that is unsigned or does not verify (WeChat does not sign the
    /// answer to a request whose signature it rejected, e.g. 401 `SIGN_ERROR`). Its code is
    /// kept for the report, but anyone could have sent it: it never changes state, and counts
    /// as an unknown outcome.
    #[error("HTTP {status} {code} (unverified answer: {why}): {message}")]
    Unverified {
        /// HTTP status.
        status: u16,
        /// The code in the body, e.g. `SIGN_ERROR`; empty if there was none.
        code: String,
        /// The message in the body.
        message: String,
        /// Why the answer is not believed (missing headers, signature mismatch…).
        why: wxpay_core::Error,
    },
    /// The response signature did not verify (or its headers were missing).
    #[error("response verification failed: {0}")]
    Verify(wxpay_core::Error),
    /// A 2xx body was not what the API documents.
    #[error("unexpected response: {0}")]
    Decode(String),
    /// The configuration does not match the merchant account (e.g. public-key mode merchant
    /// configured for certificate mode).
    #[error("configuration error: {0}")]
    Config(String),
    /// Signing the request failed (bad merchant key).
    #[error("signing failed: {0}")]
    Sign(wxpay_core::Error),
}

impl UpstreamError {
    /// The WeChat error code of a *verified* API error answer: the only code a decision may
    /// rest on (an unverified answer's code is [`UpstreamError::wechat_code`]'s, for reports).
    #[must_use]
    pub fn api_code(&self) -> Option<&str> {
        match self {
            // APIv2 spells some codes differently (`ORDERNOTEXIST`): read under the APIv3
            // name, so that one decision serves both APIs.
            Self::Api { code, .. } => Some(v2::v3_code(code)),
            _ => None,
        }
    }

    /// WeChat's error code and message for reports, verified or not: `(code, message,
    /// verified)`.
    #[must_use]
    pub fn wechat_code(&self) -> Option<(&str, &str, bool)> {
        match self {
            Self::Api { code, message, .. } => Some((code, message, true)),
            Self::Unverified { code, message, .. } if !code.is_empty() => {
                Some((code, message, false))
            }
            _ => None,
        }
    }
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientInitError {
    /// The merchant private key did not load.
    #[error("WXPAY_MERCHANT_KEY_FILE: {0}")]
    MerchantKey(wxpay_core::Error),
    /// The APIv3 key is unusable.
    #[error("WXPAY_API_V3_KEY: {0}")]
    ApiV3Key(wxpay_core::Error),
    /// The platform public key did not load.
    #[error("WXPAY_PLATFORM_PUBLIC_KEY_FILE: {0}")]
    PlatformKey(wxpay_core::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
    /// `WXPAY_API_CA_FILE` holds no usable certificate.
    #[error("WXPAY_API_CA_FILE: {0}")]
    ApiCa(String),
    /// The APIv2 client certificate or key (`WXPAY_V2_CLIENT_CERT_FILE`,
    /// `WXPAY_V2_CLIENT_KEY_FILE`) is unusable.
    #[error("WXPAY_V2_CLIENT_CERT_FILE / WXPAY_V2_CLIENT_KEY_FILE: {0}")]
    ClientCert(String),
}

/// A verified APIv3 answer.
#[derive(Debug)]
pub struct V3Response {
    /// HTTP status.
    pub status: u16,
    /// Body bytes (verified).
    pub body: Bytes,
}

/// The result of `POST /v3/refund/domestic/refunds`.
#[derive(Clone, Debug, Deserialize)]
pub struct RefundAnswer {
    /// WeChat refund id.
    #[serde(default)]
    pub refund_id: Option<String>,
    /// Merchant refund number.
    pub out_refund_no: String,
    /// `SUCCESS`, `CLOSED`, `PROCESSING` or `ABNORMAL`.
    pub status: String,
}

/// An order query answer. Unlike a notification, an unpaid order's answer may carry an empty
/// `payer` and no `amount.payer_total`, so this is parsed leniently.
#[derive(Deserialize)]
struct QueriedOrder {
    mchid: String,
    appid: String,
    out_trade_no: String,
    trade_state: String,
    #[serde(default)]
    transaction_id: Option<String>,
    #[serde(default)]
    trade_state_desc: Option<String>,
    #[serde(default)]
    success_time: Option<String>,
    #[serde(default)]
    attach: Option<String>,
    #[serde(default)]
    payer: Option<LenientPayer>,
    #[serde(default)]
    amount: Option<LenientAmount>,
}

#[derive(Deserialize)]
struct LenientPayer {
    #[serde(default)]
    openid: Option<String>,
}

#[derive(Deserialize)]
struct LenientAmount {
    #[serde(default)]
    total: Option<i64>,
    #[serde(default)]
    currency: Option<String>,
}

impl QueriedOrder {
    fn into_transaction(self) -> Transaction {
        Transaction {
            mchid: self.mchid,
            appid: self.appid,
            out_trade_no: self.out_trade_no,
            transaction_id: self.transaction_id.filter(|t| !t.is_empty()),
            trade_type: None,
            trade_state: self.trade_state,
            trade_state_desc: self.trade_state_desc,
            bank_type: None,
            attach: self.attach,
            success_time: self.success_time,
            payer: self
                .payer
                .and_then(|p| p.openid)
                .filter(|o| !o.is_empty())
                .map(|openid| wxpay_core::v3::Payer { openid }),
            amount: self.amount.and_then(|a| {
                a.total.map(|total| wxpay_core::v3::Amount {
                    total,
                    payer_total: None,
                    currency: a.currency,
                    payer_currency: None,
                })
            }),
        }
    }
}

/// A refund to request.
#[derive(Clone, Debug)]
pub struct RefundRequest<'a> {
    /// The order.
    pub out_trade_no: &'a str,
    /// Merchant refund number.
    pub out_refund_no: &'a str,
    /// Refund amount (fen).
    pub refund: i64,
    /// Order total (fen).
    pub total: i64,
    /// Reason shown to the payer.
    pub reason: Option<&'a str>,
}

/// The keys of the API the host speaks.
enum PayKeys {
    /// APIv3: the merchant's RSA key and the APIv3 key.
    V3 {
        signer: MerchantSigner,
        api_v3_key: ApiV3Key,
    },
    /// APIv2: the APIv2 key, its sign type and the mutual-TLS client.
    V2(v2::V2Api),
}

/// The WeChat client. Shared by all requests (`Arc` it).
pub struct WechatClient {
    http: reqwest::Client,
    api_base: String,
    login_base: String,
    appid: String,
    mchid: String,
    appsecret: Secret,
    notify_url: String,
    pay: PayKeys,
    /// Platform certificates are downloaded (certificate and combined mode).
    certificate_mode: bool,
    /// The configured WeChat Pay public key id (public-key and combined mode).
    public_key_id: Option<String>,
    platform: RwLock<PlatformKeys>,
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    retries: u32,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for WechatClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WechatClient")
            .field("api_base", &self.api_base)
            .field("login_base", &self.login_base)
            .field("mchid", &self.mchid)
            .field("api", &if self.v2().is_some() { "v2" } else { "v3" })
            .field("certificate_mode", &self.certificate_mode)
            .field("public_key_id", &self.public_key_id)
            .finish_non_exhaustive()
    }
}

fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// What one try of an upstream call gave: a value, or an error worth retrying (or not).
enum Try<T> {
    Done(Result<T, UpstreamError>),
    Retry(UpstreamError),
}

/// The wait before retry number `attempt` (0-based): exponential from [`BACKOFF_BASE`], capped
/// at [`BACKOFF_CAP`], with up to 50 % random jitter so that replicas do not retry in step.
fn backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let base = exp.min(BACKOFF_CAP);
    let mut b = [0u8; 2];
    let jitter = if getrandom::fill(&mut b).is_ok() {
        u32::from(u16::from_le_bytes(b)) % 500
    } else {
        0
    };
    base + base * jitter / 1000
}

impl WechatClient {
    /// Builds the client from the configuration: loads the merchant key, the APIv3 key and, in
    /// public-key and combined mode, the platform public key. Certificate mode starts with no
    /// platform key: call [`WechatClient::refresh_certificates`] before the first verification
    /// (combined mode too, for the certificates).
    ///
    /// # Errors
    /// [`ClientInitError`] naming the unusable setting.
    pub fn new(
        config: &Config,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ClientInitError> {
        let provider = default_provider();
        let pay = match &config.pay_api {
            PayApi::V3 => PayKeys::V3 {
                signer: MerchantSigner::from_pem(
                    provider,
                    config.merchant_key_pem.expose(),
                    &config.mchid,
                    &config.merchant_serial,
                )
                .map_err(ClientInitError::MerchantKey)?,
                api_v3_key: ApiV3Key::new(config.api_v3_key.expose())
                    .map_err(ClientInitError::ApiV3Key)?
                    .with_provider(provider),
            },
            PayApi::V2(settings) => PayKeys::V2(v2::V2Api::new(config, settings)?),
        };
        let v3 = matches!(pay, PayKeys::V3 { .. });
        let mut platform = PlatformKeys::new();
        let public_key_id = match config.platform.public_key().filter(|_| v3) {
            Some((id, pem)) => {
                platform
                    .insert_public_key_pem(provider, id, pem)
                    .map_err(ClientInitError::PlatformKey)?;
                Some(id.trim().to_ascii_uppercase())
            }
            None => None,
        };
        // APIv2 answers and notifications are signed with the APIv2 key: no platform keys.
        let certificate_mode = v3 && config.platform.downloads_certificates();
        let http = http_client(config)?
            .build()
            .map_err(|e| ClientInitError::Http(e.to_string()))?;
        Ok(Self {
            http,
            api_base: config.api_base.clone(),
            login_base: config.login_base.clone(),
            appid: config.appid.clone(),
            mchid: config.mchid.clone(),
            appsecret: config.appsecret.clone(),
            notify_url: config.notify_url.clone(),
            pay,
            certificate_mode,
            public_key_id,
            platform: RwLock::new(platform),
            last_refresh: tokio::sync::Mutex::new(None),
            retries: config.upstream_retries,
            metrics,
            clock,
        })
    }

    /// The merchant signer (for the APIv3 `paySign`); `None` in v2 mode.
    #[must_use]
    pub fn signer(&self) -> Option<&MerchantSigner> {
        match &self.pay {
            PayKeys::V3 { signer, .. } => Some(signer),
            PayKeys::V2(_) => None,
        }
    }

    /// The APIv3 key (for notifications); `None` in v2 mode.
    #[must_use]
    pub fn api_v3_key(&self) -> Option<&ApiV3Key> {
        match &self.pay {
            PayKeys::V3 { api_v3_key, .. } => Some(api_v3_key),
            PayKeys::V2(_) => None,
        }
    }

    /// The APIv2 side (key, sign type, notifications), in v2 mode.
    #[must_use]
    pub fn v2(&self) -> Option<&v2::V2Api> {
        match &self.pay {
            PayKeys::V2(v2) => Some(v2),
            PayKeys::V3 { .. } => None,
        }
    }

    /// The APIv3 keys, or the error an APIv3 call made in v2 mode gets.
    fn v3_keys(&self) -> Result<(&MerchantSigner, &ApiV3Key), UpstreamError> {
        match &self.pay {
            PayKeys::V3 { signer, api_v3_key } => Ok((signer, api_v3_key)),
            PayKeys::V2(_) => Err(UpstreamError::Config(
                "an APIv3 call in APIv2 mode (WXPAY_PAY_API=v2)".into(),
            )),
        }
    }

    /// Whether platform certificates are downloaded (certificate and combined mode).
    #[must_use]
    pub fn certificate_mode(&self) -> bool {
        self.certificate_mode
    }

    /// The configured WeChat Pay public key id (public-key and combined mode).
    #[must_use]
    pub fn public_key_id(&self) -> Option<&str> {
        self.public_key_id.as_deref()
    }

    /// The `Wechatpay-Serial` a request carries: the key the host wants WeChat to sign the
    /// answer with — the public key id when one is configured, else the newest valid platform
    /// certificate's serial; `None` while no key is known (the first certificate download).
    /// WeChat Pay documents the header for requests with encrypted fields; during the switch
    /// to the public key it also decides which key signs the answer.
    #[must_use]
    pub fn request_serial(&self) -> Option<String> {
        self.public_key_id.clone().or_else(|| {
            let now = self.now_u64();
            self.with_platform_keys(|k| k.preferred_serial(now).map(str::to_owned))
        })
    }

    /// How many platform keys are held.
    #[must_use]
    pub fn platform_key_count(&self) -> usize {
        self.with_platform_keys(PlatformKeys::len)
    }

    /// Runs `f` with the platform keys held now.
    pub fn with_platform_keys<T>(&self, f: impl FnOnce(&PlatformKeys) -> T) -> T {
        f(&self.platform.read().unwrap_or_else(PoisonError::into_inner))
    }

    fn now_u64(&self) -> u64 {
        u64::try_from(self.clock.now()).unwrap_or(0)
    }

    /// Runs `f` (one verification with the platform keys held and the current time); on an
    /// unknown serial in certificate or combined mode, refreshes the certificates (rate-limited)
    /// and runs it once more. The one refresh path for responses and notifications alike: in
    /// combined mode the public key and the certificates are one set of keys by serial, so a
    /// message signed under either verifies.
    ///
    /// # Errors
    /// Whatever `f` returns last.
    pub async fn verify_with_refresh<T>(
        &self,
        f: impl Fn(&PlatformKeys, u64) -> Result<T, wxpay_core::Error>,
    ) -> Result<T, wxpay_core::Error> {
        let first = self.with_platform_keys(|k| f(k, self.now_u64()));
        match first {
            Err(wxpay_core::Error::UnknownSerial) if self.certificate_mode => {
                if let Err(e) = self.refresh_certificates(false).await {
                    tracing::warn!(error = %e, "certificate refresh after unknown serial failed");
                }
                self.with_platform_keys(|k| f(k, self.now_u64()))
            }
            other => other,
        }
    }

    /// Verifies and decrypts a v3 notification (`headers` + exact `body`).
    ///
    /// # Errors
    /// The `wxpay_core` error: bad headers, unknown serial, stale timestamp, signature, probe,
    /// decryption.
    pub async fn verify_notification(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<v3::Notification, wxpay_core::Error> {
        let wx = WechatpayHeaders::from_pairs(header_pairs(headers))?;
        let Some(key) = self.api_v3_key() else {
            return Err(wxpay_core::Error::Malformed(
                "an APIv3 notification in APIv2 mode",
            ));
        };
        self.verify_with_refresh(|k, now| v3::verify_notification(k, key, &wx, body, now))
            .await
    }

    /// Retries `one` (a single try) after transport errors, 5xx and rate limits, at most
    /// `WXPAY_UPSTREAM_RETRIES` times with capped, jittered exponential backoff. The one retry
    /// loop of the client.
    async fn retrying<T, F, Fut>(
        &self,
        endpoint: &'static str,
        mut one: F,
    ) -> Result<T, UpstreamError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Try<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let started = Instant::now();
            let outcome = one().await;
            let ok = matches!(outcome, Try::Done(Ok(_)));
            self.metrics
                .observe_upstream(endpoint, started.elapsed(), ok);
            match outcome {
                Try::Done(r) => return r,
                Try::Retry(e) if attempt >= self.retries => return Err(e),
                Try::Retry(e) => {
                    tracing::debug!(endpoint, attempt, error = %e, "retrying upstream call");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// `GET /sns/jscode2session`: exchanges a `wx.login` code for the user's identity.
    ///
    /// # Errors
    /// [`UpstreamError::InvalidCode`] (40029, 40163), [`UpstreamError::RateLimited`] (45011),
    /// [`UpstreamError::Busy`] (-1 or 5xx, after retries), other errcodes as
    /// [`UpstreamError::Login`], transport failures.
    pub async fn jscode2session(&self, code: &str) -> Result<User, UpstreamError> {
        #[derive(Deserialize)]
        struct Answer {
            #[serde(default)]
            openid: Option<String>,
            #[serde(default)]
            unionid: Option<String>,
            #[serde(default)]
            session_key: Option<String>,
            #[serde(default)]
            errcode: Option<i64>,
            #[serde(default)]
            errmsg: Option<String>,
        }
        let url = format!("{}/sns/jscode2session", self.login_base);
        let answer: Answer = self
            .retrying("jscode2session", || async {
                let res = self
                    .http
                    .get(&url)
                    .query(&[
                        ("appid", self.appid.as_str()),
                        ("secret", self.appsecret.expose()),
                        ("js_code", code),
                        ("grant_type", "authorization_code"),
                    ])
                    .send()
                    .await;
                // `without_url`: the query holds the AppSecret.
                let resp = match res {
                    Ok(r) => r,
                    Err(e) => {
                        return Try::Retry(UpstreamError::Transport(e.without_url().to_string()));
                    }
                };
                let status = resp.status().as_u16();
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        return Try::Retry(UpstreamError::Transport(e.without_url().to_string()));
                    }
                };
                if status >= 500 {
                    return Try::Retry(UpstreamError::Busy(format!(
                        "jscode2session: HTTP {status}"
                    )));
                }
                match serde_json::from_slice::<Answer>(&body) {
                    // errcode -1: "system busy, retry".
                    Ok(a) if a.errcode == Some(-1) => {
                        Try::Retry(UpstreamError::Busy("WeChat login is busy".into()))
                    }
                    Ok(a) => Try::Done(Ok(a)),
                    Err(_) => Try::Done(Err(UpstreamError::Decode(
                        "jscode2session: not JSON".into(),
                    ))),
                }
            })
            .await?;
        let errmsg = answer.errmsg.unwrap_or_default();
        match answer.errcode.unwrap_or(0) {
            0 => {}
            40029 => return Err(UpstreamError::InvalidCode("invalid login code".into())),
            40163 => return Err(UpstreamError::InvalidCode("login code already used".into())),
            45011 => return Err(UpstreamError::RateLimited),
            errcode => return Err(UpstreamError::Login { errcode, errmsg }),
        }
        match (answer.openid, answer.session_key) {
            (Some(openid), Some(session_key)) if !openid.is_empty() => Ok(User {
                openid,
                unionid: answer.unionid.filter(|u| !u.is_empty()),
                session_key: Secret::new(session_key),
            }),
            _ => Err(UpstreamError::Decode(
                "jscode2session: no openid/session_key".into(),
            )),
        }
    }

    /// `POST /v3/pay/transactions/jsapi`: places the order and returns its `prepay_id`.
    ///
    /// # Errors
    /// [`UpstreamError`] for any failed or unverifiable answer.
    pub async fn jsapi_order(&self, order: &Order) -> Result<String, UpstreamError> {
        if let Some(v2) = self.v2() {
            return self.v2_unifiedorder(v2, order).await;
        }
        #[derive(Deserialize)]
        struct Answer {
            prepay_id: String,
        }
        let mut body = json!({
            "appid": self.appid,
            "mchid": self.mchid,
            "description": order.description,
            "out_trade_no": order.out_trade_no,
            "time_expire": rfc3339_cst(order.expire_at),
            "notify_url": format!("{}/notify/pay", self.notify_url),
            "amount": { "total": order.amount, "currency": "CNY" },
            "payer": { "openid": order.openid },
        });
        if let (Some(attach), Some(obj)) = (&order.attach, body.as_object_mut()) {
            obj.insert("attach".into(), json!(attach));
        }
        let resp = self
            .call(
                "jsapi",
                Method::POST,
                "/v3/pay/transactions/jsapi",
                Some(&body),
            )
            .await?;
        let a: Answer = parse_ok(&resp)?;
        Ok(a.prepay_id)
    }

    /// `GET /v3/pay/transactions/out-trade-no/{no}?mchid=`: the order as WeChat sees it.
    ///
    /// # Errors
    /// [`UpstreamError::Api`] with code `ORDER_NOT_EXIST` when WeChat has no such order; others.
    pub async fn query_order(&self, out_trade_no: &str) -> Result<Transaction, UpstreamError> {
        if let Some(v2) = self.v2() {
            return self.v2_orderquery(v2, out_trade_no).await;
        }
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}?mchid={}",
            path_segment(out_trade_no)?,
            self.mchid
        );
        let resp = self.call("query", Method::GET, &path, None).await?;
        let q: QueriedOrder = parse_ok(&resp)?;
        Ok(q.into_transaction())
    }

    /// `POST /v3/pay/transactions/out-trade-no/{no}/close`.
    ///
    /// # Errors
    /// [`UpstreamError::Api`] (e.g. `ORDERPAID`), others.
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), UpstreamError> {
        if let Some(v2) = self.v2() {
            return self.v2_closeorder(v2, out_trade_no).await;
        }
        let path = format!(
            "/v3/pay/transactions/out-trade-no/{}/close",
            path_segment(out_trade_no)?
        );
        let body = json!({ "mchid": self.mchid });
        // A verified 2xx (204) is the only success; errors come back from `call`.
        self.call("close", Method::POST, &path, Some(&body)).await?;
        Ok(())
    }

    /// `POST /v3/refund/domestic/refunds`. Submitting the same `out_refund_no` again is how an
    /// unknown outcome is retried: WeChat treats it as the same refund.
    ///
    /// # Errors
    /// [`UpstreamError`] for any failed or unverifiable answer.
    pub async fn refund(&self, r: &RefundRequest<'_>) -> Result<RefundAnswer, UpstreamError> {
        if let Some(v2) = self.v2() {
            return self.v2_refund(v2, r).await;
        }
        let mut body = json!({
            "out_trade_no": r.out_trade_no,
            "out_refund_no": r.out_refund_no,
            "notify_url": format!("{}/notify/refund", self.notify_url),
            "amount": { "refund": r.refund, "total": r.total, "currency": "CNY" },
        });
        if let (Some(reason), Some(obj)) = (r.reason, body.as_object_mut()) {
            obj.insert("reason".into(), json!(reason));
        }
        let resp = self
            .call(
                "refund",
                Method::POST,
                "/v3/refund/domestic/refunds",
                Some(&body),
            )
            .await?;
        parse_ok(&resp)
    }

    /// `GET /v3/refund/domestic/refunds/{out_refund_no}`.
    ///
    /// # Errors
    /// [`UpstreamError::Api`] with code `RESOURCE_NOT_EXISTS` when WeChat has no such refund;
    /// any other failed or unverifiable answer.
    pub async fn query_refund(&self, out_refund_no: &str) -> Result<RefundAnswer, UpstreamError> {
        if let Some(v2) = self.v2() {
            return self.v2_refundquery(v2, out_refund_no).await;
        }
        let path = format!(
            "/v3/refund/domestic/refunds/{}",
            path_segment(out_refund_no)?
        );
        let resp = self.call("refund_query", Method::GET, &path, None).await?;
        parse_ok(&resp)
    }

    /// Downloads `/v3/certificates` and installs them once the core's
    /// [`v3::verify_certificates_response`] accepts the answer (signed under a key already held,
    /// or — first download — under one of the certificates it carries, which only decrypt with
    /// our APIv3 key). New certificates are added to the held ones, so answers signed under the
    /// old key keep verifying during a rotation. With `force == false` (an unknown serial) this
    /// is rate-limited to one download per 30 s; forced downloads (start-up, schedule) neither
    /// wait for nor count towards that limit.
    ///
    /// Returns the number of platform keys now held (the public key included, in combined
    /// mode).
    ///
    /// # Errors
    /// [`UpstreamError::Config`] for a 404 in certificate mode (the merchant is in public-key
    /// mode; in combined mode a 404 only means WeChat has no certificate left for this merchant,
    /// logged: the public key still verifies) or when called in public-key mode; transport,
    /// verification and decryption failures.
    pub async fn refresh_certificates(&self, force: bool) -> Result<usize, UpstreamError> {
        if !self.certificate_mode {
            return Err(UpstreamError::Config(
                "platform certificates are not used in public-key mode".into(),
            ));
        }
        // Held for the whole download, so that concurrent callers (e.g. several notifications
        // under one new serial) wait for it and then find the certificate installed.
        let mut last = self.last_refresh.lock().await;
        if !force {
            if last.is_some_and(|t| t.elapsed() < REFRESH_MIN_INTERVAL) {
                return Ok(self.platform_key_count());
            }
            *last = Some(Instant::now());
        }
        let raw = self
            .send("certificates", Method::GET, "/v3/certificates", None)
            .await?;
        if raw.status == 404 && self.public_key_id.is_some() {
            tracing::warn!(
                "GET /v3/certificates answered 404: no platform certificate for this merchant; \
                 the public key alone verifies (set WXPAY_PLATFORM_MODE=public_key)"
            );
            return Ok(self.platform_key_count());
        }
        if raw.status == 404 {
            return Err(UpstreamError::Config(
                "GET /v3/certificates answered 404: this merchant uses WeChat Pay public-key mode; \
                 set WXPAY_PLATFORM_PUBLIC_KEY_FILE and WXPAY_PLATFORM_PUBLIC_KEY_ID"
                    .into(),
            ));
        }
        let now = self.now_u64();
        let wx = WechatpayHeaders::from_pairs(header_pairs(&raw.headers));
        if !(200..300).contains(&raw.status) {
            // An error answer: verified with what we hold (no refresh: we are the refresh).
            let verified = wx.and_then(|wx| {
                self.with_platform_keys(|k| v3::verify_response(k, &wx, &raw.body, now))
            });
            return Err(error_answer("certificates", &raw, verified));
        }
        let wx = wx.map_err(UpstreamError::Verify)?;
        let provider = default_provider();
        let (_, api_v3_key) = self.v3_keys()?;
        let certs = self
            .with_platform_keys(|k| {
                v3::verify_certificates_response(provider, k, api_v3_key, &wx, &raw.body, now)
            })
            .map_err(UpstreamError::Verify)?;
        let mut keys = self
            .platform
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let held_before = keys.len();
        for c in &certs {
            keys.insert_certificate_pem(provider, &c.pem)
                .map_err(UpstreamError::Verify)?;
        }
        keys.remove_expired(now);
        tracing::info!(
            downloaded = certs.len(),
            held_before,
            held = keys.len(),
            "platform certificates refreshed"
        );
        Ok(keys.len())
    }

    /// Signs and sends one APIv3 call with retries, then verifies the answer: an unverified
    /// 2xx answer is never believed; a non-2xx answer is WeChat's error, verified or marked
    /// unverified ([`WechatClient::error_answer`]).
    async fn call(
        &self,
        endpoint: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<V3Response, UpstreamError> {
        let raw = self.send(endpoint, method, path_and_query, body).await?;
        let verified = match WechatpayHeaders::from_pairs(header_pairs(&raw.headers)) {
            Ok(wx) => {
                self.verify_with_refresh(|k, now| v3::verify_response(k, &wx, &raw.body, now))
                    .await
            }
            Err(e) => Err(e),
        };
        if !(200..300).contains(&raw.status) {
            return Err(error_answer(endpoint, &raw, verified));
        }
        verified.map_err(UpstreamError::Verify)?;
        Ok(V3Response {
            status: raw.status,
            body: raw.body,
        })
    }

    /// Signs and sends with retries on transport errors, 5xx and rate limits; no verification.
    async fn send(
        &self,
        endpoint: &'static str,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<RawAnswer, UpstreamError> {
        let body_text = match body {
            Some(v) => {
                serde_json::to_string(v).map_err(|e| UpstreamError::Decode(e.to_string()))?
            }
            None => String::new(),
        };
        let url = format!("{}{path_and_query}", self.api_base);
        let (signer, _) = self.v3_keys()?;
        self.retrying(endpoint, || async {
            let timestamp = wxpay_core::timestamp(self.now_u64());
            let nonce = wxpay_core::nonce_str(&mut rng());
            let auth = match v3::authorization(
                signer,
                &mut rng(),
                method.as_str(),
                path_and_query,
                &timestamp,
                &nonce,
                &body_text,
            ) {
                Ok(a) => a,
                Err(e) => return Try::Done(Err(UpstreamError::Sign(e))),
            };
            let mut req = self
                .http
                .request(method.clone(), &url)
                .header(AUTHORIZATION, auth.header)
                .header(ACCEPT, "application/json")
                .header(
                    USER_AGENT,
                    concat!("wxpay-host/", env!("CARGO_PKG_VERSION")),
                );
            if let Some(serial) = self.request_serial() {
                req = req.header(WECHATPAY_SERIAL, serial);
            }
            if body.is_some() {
                req = req
                    .header(CONTENT_TYPE, "application/json")
                    .body(body_text.clone());
            }
            let sent =
                answer::SignedRequest::new(method.as_str(), &url, &timestamp, &nonce, auth.message);
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => return Try::Retry(UpstreamError::Transport(e.to_string())),
            };
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            match resp.bytes().await {
                Ok(b) if status >= 500 => Try::Retry(UpstreamError::Busy(format!(
                    "{endpoint}: HTTP {status} {}",
                    String::from_utf8_lossy(&b)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))),
                // Rate limited (429, `FREQUENCY_LIMITED` whatever the status): back off and
                // retry; in the end `RateLimited` (429 to our client), a state of WeChat's
                // and no decision about any order, so it needs no verification.
                Ok(b) if status == 429 || rate_limited(&b) => {
                    Try::Retry(UpstreamError::RateLimited)
                }
                Ok(b) => Try::Done(Ok(RawAnswer {
                    status,
                    headers,
                    body: b,
                    sent,
                })),
                Err(e) => Try::Retry(UpstreamError::Transport(e.to_string())),
            }
        })
        .await
    }
}

/// One answer as received, not yet verified, with what was signed to get it.
struct RawAnswer {
    status: u16,
    headers: HeaderMap,
    body: Bytes,
    sent: answer::SignedRequest,
}

/// Whether a 4xx body says `FREQUENCY_LIMITED` (WeChat documents it with 429, but the code is
/// what counts).
fn rate_limited(body: &[u8]) -> bool {
    body.len() < 4096 && answer::ErrorBody::parse(body).code == "FREQUENCY_LIMITED"
}

/// Reads a non-2xx answer as WeChat's error: [`UpstreamError::Api`] if its signature verified
/// (`verified`), else [`UpstreamError::Unverified`] with the code kept for the report. A
/// `SIGN_ERROR` (which WeChat does not sign) is logged with what we signed.
fn error_answer(
    endpoint: &'static str,
    raw: &RawAnswer,
    verified: Result<(), wxpay_core::Error>,
) -> UpstreamError {
    let err = answer::ErrorBody::parse(&raw.body);
    if err.code == "SIGN_ERROR" {
        answer::log_sign_error(endpoint, raw.status, &err, &raw.sent);
    }
    if let Some(detail) = &err.detail {
        // WeChat's `detail` (field, location, issue) is how a PARAM_ERROR explains itself.
        tracing::debug!(endpoint, status = raw.status, code = %err.code, %detail,
            "WeChat Pay error detail");
    }
    match verified {
        Ok(()) => UpstreamError::Api {
            status: raw.status,
            code: err.code,
            message: err.message,
        },
        Err(why) => {
            tracing::warn!(endpoint, status = raw.status, wechat_code = %err.code, error = %why,
                "WeChat Pay error answer does not verify: reported, not acted on");
            UpstreamError::Unverified {
                status: raw.status,
                code: err.code,
                message: err.message,
                why,
            }
        }
    }
}

/// The HTTP client settings shared by the API client and the APIv2 mutual-TLS client:
/// timeouts, pooling, and the extra root of `WXPAY_API_CA_FILE`.
fn http_client(config: &Config) -> Result<reqwest::ClientBuilder, ClientInitError> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.http_timeout)
        .connect_timeout(config.http_timeout.min(Duration::from_secs(5)))
        .pool_idle_timeout(Duration::from_secs(60));
    if let Some(pem) = &config.api_ca_pem {
        let roots = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|e| ClientInitError::ApiCa(e.to_string()))?;
        if roots.is_empty() {
            return Err(ClientInitError::ApiCa("no certificate in the file".into()));
        }
        builder = builder.tls_certs_merge(roots);
    }
    Ok(builder)
}

/// Header pairs whose values are valid strings (others cannot be Wechatpay headers).
pub fn header_pairs(headers: &HeaderMap) -> impl Iterator<Item = (&str, &str)> {
    headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
}

/// Decodes a verified 2xx answer.
fn parse_ok<T: serde::de::DeserializeOwned>(resp: &V3Response) -> Result<T, UpstreamError> {
    serde_json::from_slice(&resp.body).map_err(|e| UpstreamError::Decode(e.to_string()))
}

/// Only a valid merchant number may reach a URL path: the domain's own validator (refund
/// numbers' alphabet includes that of order numbers).
fn path_segment(s: &str) -> Result<&str, UpstreamError> {
    crate::domain::OutRefundNo::parse(s.to_owned())
        .map(|_| s)
        .map_err(|_| UpstreamError::Decode("invalid merchant number".into()))
}

/// Formats unix seconds as RFC 3339 in China Standard Time (`2018-06-08T10:34:56+08:00`), the
/// format of `time_expire` (WeChat Pay APIv3 JSAPI order, "time_expire").
#[must_use]
pub fn rfc3339_cst(unix: i64) -> String {
    let t = unix + 8 * 3600;
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
        secs / 3600,
        (secs % 3600) / 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_expire_format() {
        assert_eq!(rfc3339_cst(0), "1970-01-01T08:00:00+08:00");
        assert_eq!(rfc3339_cst(1_528_425_296), "2018-06-08T10:34:56+08:00");
    }

    #[test]
    fn path_segments_are_restricted() {
        assert!(path_segment("ORDER_123-x").is_ok());
        assert!(path_segment("../x").is_err());
        assert!(path_segment("a/b").is_err());
        assert!(path_segment("").is_err());
    }
}
