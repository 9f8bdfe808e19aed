//! A local WeChat Pay (APIv3) and WeChat login simulator, for tests and local development.
//!
//! It answers like the real services:
//!
//! | endpoint | real service |
//! | --- | --- |
//! | `GET /sns/jscode2session` | mini-program login (`code2Session`): single-use codes, errcodes 40029, 40163, 45011, -1 |
//! | `POST /v3/pay/transactions/jsapi` | JSAPI/mini-program order: verifies `Authorization` with the merchant public key (else 401 `SIGN_ERROR`), validates the body (400 `PARAM_ERROR`), `{"prepay_id"}` |
//! | `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` | order query (`trade_state`), 404 `ORDER_NOT_EXIST` |
//! | `GET /v3/pay/transactions/id/{transaction_id}?mchid=` | order query by WeChat's id |
//! | `POST /v3/pay/transactions/out-trade-no/{no}/close` | close, 204 |
//! | `POST /v3/refund/domestic/refunds`, `GET …/refunds/{out_refund_no}` | refund, later a `REFUND.SUCCESS` notification |
//! | `GET /v3/certificates` | platform certificates (certificate mode; old and new after [`SimulatorHandle::rotate_platform_certificate`]) or 404 `NOT_FOUND` (public-key mode) |
//!
//! Every `/v3` response, errors included, carries `Wechatpay-Timestamp`, `-Nonce`, `-Signature`,
//! `-Serial` and `-Signature-Type`, signed with the (current) platform key over exactly the body
//! bytes sent.
//! Every `/v3` request must carry a valid merchant `Authorization`.
//!
//! Paying an order (by [`SimulatorHandle::pay`] or `POST /sim/orders/{no}/pay`) delivers a
//! signed, AES-256-GCM-encrypted `TRANSACTION.SUCCESS` notification to the order's `notify_url`,
//! retried along [`SimulatorOptions::notify_retry_schedule`] until the host answers 200 or 204;
//! [`NotifyBehavior`] can drop, duplicate, probe or tamper with it.
//!
//! The control API (no authentication: bind it to loopback only) drives it from curl:
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /sim/credentials` | the test credentials as JSON |
//! | `POST /sim/login/code {"openid"?}` | `{"code","openid"}`: a fresh `wx.login` code |
//! | `POST /sim/login/fail {"errcode","count"?}` | the next `count` (default 1) logins fail with `errcode` |
//! | `POST /sim/v3/fail {"status","code","count"?}` | the next `count` `/v3` calls fail so |
//! | `GET /sim/orders/{no}` | order snapshot |
//! | `POST /sim/orders/{no}/pay` | the payer pays: `SUCCESS` + notification |
//! | `POST /sim/refunds/{no}/complete` | the refund succeeds now + notification |
//! | `POST /sim/notify-behavior {"behavior":"normal"\|"drop"\|"duplicate"\|"probe_first"\|"tamper","count"?}` | [`NotifyBehavior`] |
//! | `GET /sim/stats` | delivered notifications and attempts |
//! | `POST /sim/request-payment/check {appId,timeStamp,nonceStr,package,signType,paySign,openid?}` | checks `wx.requestPayment` parameters like WeChat's client: `{"ok":true}` or 400 `{"ok":false,"errMsg":"requestPayment:fail …"}` |
//!
//! All cryptography (signature verification, signing, AEAD) is `wxpay-core`'s. The keys are the
//! project's published test keys: see [`SimulatorCredentials`].

mod keys;
mod notify;
mod routes;
mod state;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rand_core::UnwrapErr;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxpay_core::keys::{CertificateInfo, MerchantSigner, PublicKey};
use wxpay_core::v3::ApiV3Key;

pub use keys::SimulatorCredentials;
pub use notify::{DeliveryAttempt, DeliveryKind, DeliveryStats};
pub use state::{NotifyBehavior, OrderSnapshot, RefundSnapshot, RefundStatus, TradeState};

use state::{Refusal, World};

/// WeChat Pay's notification retry schedule: the waits before the 2nd, 3rd, … attempt
/// (15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h; WeChat Pay APIv3 "支付成功回调通知":
/// "通知频率为15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h - 总计 24h4m").
#[must_use]
pub fn wechat_retry_schedule() -> Vec<Duration> {
    const M: u64 = 60;
    const H: u64 = 3600;
    [
        15,
        15,
        30,
        3 * M,
        10 * M,
        20 * M,
        30 * M,
        30 * M,
        30 * M,
        60 * M,
        3 * H,
        3 * H,
        3 * H,
        6 * H,
        6 * H,
    ]
    .into_iter()
    .map(Duration::from_secs)
    .collect()
}

/// A source of "now" in unix seconds, so that tests can move time (code and prepay expiry,
/// timestamps in signatures).
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time, unix seconds.
    fn now(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }
}

/// A clock that is the system clock plus an adjustable offset, for tests that need codes or
/// prepay ids to expire without waiting.
///
/// The simulator's clock also stamps its signatures and judges request timestamps (±300 s), so
/// a host on the real clock rejects its responses once the offset exceeds five minutes: move it
/// only for expiry tests.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset: AtomicU64,
}

impl OffsetClock {
    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.offset.fetch_add(by.as_secs(), Ordering::Relaxed);
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> u64 {
        SystemClock.now() + self.offset.load(Ordering::Relaxed)
    }
}

/// How to start a simulator. `Default` is certificate mode on `127.0.0.1:0` with WeChat's real
/// retry schedule.
#[derive(Debug, Clone)]
pub struct SimulatorOptions {
    /// Where to listen; default `127.0.0.1:0` (an ephemeral port, see
    /// [`SimulatorHandle::base_url`]).
    pub listen: SocketAddr,
    /// `true`: "WeChat Pay public key" mode (responses signed under `PUB_KEY_ID_…`,
    /// `/v3/certificates` answers 404). `false` (default): platform certificate mode.
    pub public_key_mode: bool,
    /// Waits between notification attempts; default [`wechat_retry_schedule`]. Tests compress
    /// it (e.g. 15 × 20 ms). An empty schedule means a single attempt.
    pub notify_retry_schedule: Vec<Duration>,
    /// How long one notification attempt may take before it counts as failed (WeChat: 5 s).
    pub notify_timeout: Duration,
    /// After how long an accepted refund succeeds by itself and its `REFUND.SUCCESS`
    /// notification goes out; `None` leaves refunds `PROCESSING` until
    /// [`SimulatorHandle::complete_refund`]. Default 1 s.
    pub refund_delay: Option<Duration>,
    /// The APIv3 key (32 bytes); default `None` draws a random one.
    pub api_v3_key: Option<String>,
    /// The time source; default [`SystemClock`].
    pub clock: Arc<dyn Clock>,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_key_mode: false,
            notify_retry_schedule: wechat_retry_schedule(),
            notify_timeout: Duration::from_secs(5),
            refund_delay: Some(Duration::from_secs(1)),
            api_v3_key: None,
            clock: Arc::new(SystemClock),
        }
    }
}

impl SimulatorOptions {
    /// WeChat's retry schedule divided by `factor` (e.g. 1000: the 24 h schedule in 87 s).
    #[must_use]
    pub fn time_compressed(mut self, factor: u32) -> Self {
        self.notify_retry_schedule = wechat_retry_schedule()
            .into_iter()
            .map(|d| d / factor.max(1))
            .collect();
        self
    }
}

/// What can go wrong starting or driving a simulator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimulatorError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The test keys or the configured APIv3 key could not be loaded.
    #[error("simulator keys: {0}")]
    Keys(#[from] wxpay_core::Error),
    /// The HTTP client for notifications could not be built.
    #[error("notification client: {0}")]
    Client(String),
    /// No order with this `out_trade_no`.
    #[error("no order {0}")]
    OrderNotFound(String),
    /// The order is not in a state that allows this.
    #[error("order {out_trade_no} is {state}")]
    OrderState {
        /// The order.
        out_trade_no: String,
        /// Its state.
        state: TradeState,
    },
    /// The order's `time_expire` has passed.
    #[error("order {0} has expired")]
    OrderExpired(String),
    /// No refund with this `out_refund_no`.
    #[error("no refund {0}")]
    RefundNotFound(String),
    /// A wait did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Platform certificates (and their rotation) do not exist in public-key mode.
    #[error("platform certificates are not used in public-key mode")]
    PublicKeyMode,
}

/// State shared by the routes, the notifier and the handle.
pub(crate) struct Shared {
    pub creds: SimulatorCredentials,
    pub api_v3_key: ApiV3Key,
    /// The current platform signing key and the certificates `/v3/certificates` lists.
    pub platform: RwLock<Platform>,
    pub merchant_public: PublicKey,
    pub clock: Arc<dyn Clock>,
    pub schedule: Vec<Duration>,
    pub refund_delay: Option<Duration>,
    pub http: reqwest::Client,
    pub runtime: tokio::runtime::Handle,
    pub world: Mutex<World>,
    pub deliveries: Mutex<Vec<DeliveryAttempt>>,
    pub stats: watch::Sender<DeliveryStats>,
    pub shutdown: watch::Sender<bool>,
}

/// WeChat Pay's platform key material at one moment: what it signs with and what
/// `/v3/certificates` lists. A rotation replaces the signer and appends a certificate.
pub(crate) struct Platform {
    /// Signs responses and notifications; its "serial" is the `Wechatpay-Serial` sent.
    pub signer: Arc<MerchantSigner>,
    /// The `Wechatpay-Serial` of [`Platform::signer`].
    pub serial: String,
    /// Every certificate listed by `/v3/certificates` (serial, validity) with its PEM, oldest
    /// first.
    pub certificates: Vec<(CertificateInfo, &'static str)>,
}

impl Shared {
    /// The platform key material, even if a panicking thread poisoned the lock.
    pub(crate) fn platform(&self) -> std::sync::RwLockReadGuard<'_, Platform> {
        self.platform.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The world, even if a panicking test thread poisoned the lock (the data stays usable:
    /// every mutation is a single insert or field update).
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Signs `timestamp\nnonce\nbody\n` with the current platform key, as WeChat Pay signs
    /// responses and notifications (WeChat Pay APIv3 "签名验证"); the result carries the serial
    /// it was signed under.
    pub(crate) fn sign(&self, body: &[u8]) -> wxpay_core::Result<Signed> {
        let (signer, serial) = {
            let p = self.platform();
            (p.signer.clone(), p.serial.clone())
        };
        let mut rng = rng();
        let timestamp = wxpay_core::nonce::timestamp(self.now());
        let nonce = wxpay_core::nonce::nonce_str(&mut rng);
        let signature = wxpay_core::v3::sign_response(&signer, &mut rng, &timestamp, &nonce, body)?;
        Ok(Signed {
            timestamp,
            nonce,
            signature,
            serial,
        })
    }

    /// Marks an order paid and sends its notification.
    fn pay(self: &Arc<Self>, out_trade_no: &str) -> Result<OrderSnapshot, SimulatorError> {
        let now = self.now();
        let order = self
            .world()
            .pay(out_trade_no, now)
            .map_err(|r| refusal_error(r, out_trade_no))?;
        notify::send_transaction(self, &order);
        Ok(order.snapshot())
    }

    /// Completes a refund and sends its notification (if it has a notify URL).
    fn complete_refund(
        self: &Arc<Self>,
        out_refund_no: &str,
    ) -> Result<RefundSnapshot, SimulatorError> {
        let now = self.now();
        let mut world = self.world();
        let changed = world
            .complete_refund(out_refund_no, now)
            .map_err(|r| refusal_error(r, out_refund_no))?;
        let snapshot = world
            .refunds
            .get(out_refund_no)
            .map(state::Refund::snapshot)
            .ok_or_else(|| SimulatorError::RefundNotFound(out_refund_no.to_owned()))?;
        drop(world);
        if let Some(refund) = changed {
            notify::send_refund(self, &refund);
        }
        Ok(snapshot)
    }
}

/// A platform signature over one body.
pub(crate) struct Signed {
    pub timestamp: String,
    pub nonce: String,
    pub signature: String,
    /// The `Wechatpay-Serial` of the key that signed.
    pub serial: String,
}

impl Signed {
    /// The five `Wechatpay-*` headers.
    pub(crate) fn headers_with<'a>(
        timestamp: &'a str,
        nonce: &'a str,
        signature: &'a str,
        serial: &'a str,
    ) -> [(&'static str, &'a str); 5] {
        [
            ("Wechatpay-Timestamp", timestamp),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Serial", serial),
            ("Wechatpay-Signature-Type", "WECHATPAY2-SHA256-RSA2048"),
        ]
    }

    /// The five `Wechatpay-*` headers of this signature.
    pub(crate) fn headers(&self) -> [(&'static str, &str); 5] {
        Self::headers_with(&self.timestamp, &self.nonce, &self.signature, &self.serial)
    }
}

fn refusal_error(r: Refusal, id: &str) -> SimulatorError {
    match r {
        Refusal::NotFound => SimulatorError::OrderNotFound(id.to_owned()),
        Refusal::State(state) => SimulatorError::OrderState {
            out_trade_no: id.to_owned(),
            state,
        },
        Refusal::Expired => SimulatorError::OrderExpired(id.to_owned()),
        _ => SimulatorError::RefundNotFound(id.to_owned()),
    }
}

/// A fresh system RNG (`getrandom`), the way the core expects one natively.
pub(crate) fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// Starts a simulator on `opts.listen` and returns once it accepts connections.
///
/// Must be called inside a Tokio runtime; the server and the notification deliveries run on it.
///
/// # Errors
/// [`SimulatorError::Bind`] if the address cannot be bound, [`SimulatorError::Keys`] for an
/// unusable configured APIv3 key, [`SimulatorError::Client`] if the HTTP client cannot be built.
pub async fn spawn(opts: SimulatorOptions) -> Result<SimulatorHandle, SimulatorError> {
    let keys = keys::SimKeys::load(&mut rng(), opts.public_key_mode, opts.api_v3_key.clone())?;
    let api_v3_key = ApiV3Key::new(&keys.credentials.api_v3_key)?;
    let http = reqwest::Client::builder()
        .timeout(opts.notify_timeout)
        .user_agent("Mozilla/4.0 (wxpay-simulator)")
        .build()
        .map_err(|e| SimulatorError::Client(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|source| SimulatorError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|source| SimulatorError::Bind {
            addr: opts.listen,
            source,
        })?;
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let platform = Platform {
        signer: Arc::new(keys.platform_signer),
        serial: keys.credentials.platform_serial().to_owned(),
        certificates: vec![(keys.certificate, keys.credentials.platform_certificate_pem)],
    };
    let shared = Arc::new(Shared {
        creds: keys.credentials,
        api_v3_key,
        platform: RwLock::new(platform),
        merchant_public: keys.merchant_public,
        clock: opts.clock,
        schedule: opts.notify_retry_schedule,
        refund_delay: opts.refund_delay,
        http,
        runtime: tokio::runtime::Handle::current(),
        world: Mutex::new(World::default()),
        deliveries: Mutex::new(Vec::new()),
        stats: watch::Sender::new(DeliveryStats::default()),
        shutdown,
    });
    let app = routes::router(shared.clone());
    let server = tokio::spawn(async move {
        let stop = async move {
            // Either a `true` or the handle going away ends the server.
            let _ = shutdown_rx.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!(error = %e, "simulator server failed");
        }
    });
    let base_url = format!("http://{addr}");
    tracing::info!(%base_url, "WeChat Pay simulator listening");
    Ok(SimulatorHandle {
        shared,
        base_url,
        addr,
        server: Some(server),
    })
}

/// A running simulator. Dropping it stops the server and all pending notification deliveries.
pub struct SimulatorHandle {
    shared: Arc<Shared>,
    base_url: String,
    addr: SocketAddr,
    server: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("base_url", &self.base_url)
            .field("credentials", &self.shared.creds)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// `http://127.0.0.1:PORT`: use it as both `WXPAY_API_BASE` and `WXPAY_LOGIN_BASE`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The bound address.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// All test credentials.
    #[must_use]
    pub fn credentials(&self) -> &SimulatorCredentials {
        &self.shared.creds
    }

    /// Merchant id.
    #[must_use]
    pub fn mchid(&self) -> &str {
        &self.shared.creds.mchid
    }

    /// Mini-program AppID.
    #[must_use]
    pub fn appid(&self) -> &str {
        &self.shared.creds.appid
    }

    /// Mini-program AppSecret (test-only, random per start).
    #[must_use]
    pub fn appsecret(&self) -> &str {
        &self.shared.creds.appsecret
    }

    /// APIv3 key (test-only).
    #[must_use]
    pub fn api_v3_key(&self) -> &str {
        &self.shared.creds.api_v3_key
    }

    /// The merchant API private key PEM (published test key).
    #[must_use]
    pub fn merchant_private_key_pem(&self) -> &'static str {
        self.shared.creds.merchant_private_key_pem
    }

    /// Serial number of the merchant API certificate.
    #[must_use]
    pub fn merchant_serial(&self) -> &str {
        &self.shared.creds.merchant_serial
    }

    /// The platform public key PEM (public-key mode's `pub_key.pem`; the certificate in
    /// certificate mode holds the same key).
    #[must_use]
    pub fn platform_public_key_pem(&self) -> &'static str {
        self.shared.creds.platform_public_key_pem
    }

    /// `Some(PUB_KEY_ID_…)` in public-key mode.
    #[must_use]
    pub fn platform_public_key_id(&self) -> Option<&str> {
        self.shared.creds.platform_public_key_id.as_deref()
    }

    /// `Some(serial)` of the (first) platform certificate in certificate mode.
    #[must_use]
    pub fn platform_certificate_serial(&self) -> Option<&str> {
        self.shared.creds.platform_certificate_serial.as_deref()
    }

    /// The `Wechatpay-Serial` every response and notification carries at start, i.e. before
    /// any [`SimulatorHandle::rotate_platform_certificate`] (the serial of the published test
    /// platform key).
    #[must_use]
    pub fn platform_serial(&self) -> &str {
        self.shared.creds.platform_serial()
    }

    /// The `Wechatpay-Serial` responses and notifications are signed under now: the start
    /// serial, or the rotated certificate's serial after a rotation.
    #[must_use]
    pub fn current_platform_serial(&self) -> String {
        self.shared.platform().serial.clone()
    }

    /// The serials `/v3/certificates` lists now, oldest first.
    #[must_use]
    pub fn platform_certificate_serials(&self) -> Vec<String> {
        self.shared
            .platform()
            .certificates
            .iter()
            .map(|(info, _)| info.serial_no.clone())
            .collect()
    }

    /// Rotates the platform certificate like WeChat Pay does: a second platform key with its own
    /// self-signed certificate (a fixed TEST-ONLY pair, with a different serial) is added to
    /// `/v3/certificates`, which then lists both (each encrypted with the APIv3 key), and every
    /// response and notification signed from now on uses the new key and carries its serial.
    /// Notifications already being delivered are re-signed at each attempt, so their retries
    /// switch too. Rotating again changes nothing (there is one rotated key). Returns the new
    /// serial.
    ///
    /// # Errors
    /// [`SimulatorError::PublicKeyMode`] in public-key mode; [`SimulatorError::Keys`] if the
    /// compiled-in rotated key does not load.
    pub fn rotate_platform_certificate(&self) -> Result<String, SimulatorError> {
        if self.shared.creds.platform_certificate_serial.is_none() {
            return Err(SimulatorError::PublicKeyMode);
        }
        let next = keys::rotated_platform_certificate(&self.shared.creds.mchid)?;
        let mut platform = self
            .shared
            .platform
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let serial = next.info.serial_no.clone();
        if !platform
            .certificates
            .iter()
            .any(|(info, _)| info.serial_no == serial)
        {
            platform.certificates.push((next.info, next.pem));
        }
        platform.signer = Arc::new(next.signer);
        platform.serial.clone_from(&serial);
        tracing::info!(%serial, "simulator rotated its platform certificate");
        Ok(serial)
    }

    /// Issues a single-use `wx.login` code for `openid`, valid for five minutes.
    #[must_use]
    pub fn issue_login_code(&self, openid: &str) -> String {
        let random = wxpay_core::nonce::nonce_str(&mut rng());
        let now = self.shared.now();
        self.shared.world().issue_code(openid, now, &random)
    }

    /// Makes the next `count` `jscode2session` calls fail with `errcode` (45011 rate limit,
    /// -1 busy, 40029 invalid code, …).
    pub fn fail_next_logins(&self, errcode: i64, count: usize) {
        self.shared
            .world()
            .login_failures
            .extend(std::iter::repeat_n(errcode, count));
    }

    /// Makes the next `count` `/v3` calls fail with `status` and `{"code": code}` (e.g. 500
    /// `SYSTEM_ERROR`, 429 `FREQUENCY_LIMITED`), signed like any response.
    pub fn fail_next_v3(&self, status: u16, code: &str, count: usize) {
        self.shared
            .world()
            .v3_failures
            .extend(std::iter::repeat_n((status, code.to_owned()), count));
    }

    /// The payer pays: the order becomes `SUCCESS` and its `TRANSACTION.SUCCESS` notification
    /// is sent (in the background) according to the current [`NotifyBehavior`].
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`], [`SimulatorError::OrderState`] unless `NOTPAY`,
    /// [`SimulatorError::OrderExpired`] after its `time_expire`.
    pub fn pay(&self, out_trade_no: &str) -> Result<OrderSnapshot, SimulatorError> {
        self.shared.pay(out_trade_no)
    }

    /// Completes a `PROCESSING` refund now and sends its `REFUND.SUCCESS` notification (to the
    /// refund's `notify_url`); a completed refund is returned unchanged.
    ///
    /// # Errors
    /// [`SimulatorError::RefundNotFound`].
    pub fn complete_refund(&self, out_refund_no: &str) -> Result<RefundSnapshot, SimulatorError> {
        self.shared.complete_refund(out_refund_no)
    }

    /// Sets what happens to notifications sent from now on (until changed again).
    pub fn set_notify_behavior(&self, behavior: NotifyBehavior) {
        self.shared.world().behavior = behavior;
    }

    /// A snapshot of an order.
    #[must_use]
    pub fn order(&self, out_trade_no: &str) -> Option<OrderSnapshot> {
        self.shared
            .world()
            .orders
            .get(out_trade_no)
            .map(state::Order::snapshot)
    }

    /// A snapshot of a refund.
    #[must_use]
    pub fn refund(&self, out_refund_no: &str) -> Option<RefundSnapshot> {
        self.shared
            .world()
            .refunds
            .get(out_refund_no)
            .map(state::Refund::snapshot)
    }

    /// Notifications the host acknowledged (200/204), counting each duplicate copy.
    #[must_use]
    pub fn notifications_delivered(&self) -> usize {
        self.shared.stats.borrow().delivered
    }

    /// Delivery counters.
    #[must_use]
    pub fn delivery_stats(&self) -> DeliveryStats {
        *self.shared.stats.borrow()
    }

    /// Every delivery attempt so far, in order.
    #[must_use]
    pub fn delivery_attempts(&self) -> Vec<DeliveryAttempt> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until at least `count` notifications were acknowledged.
    ///
    /// # Errors
    /// [`SimulatorError::Timeout`] after `timeout`.
    pub async fn wait_for_deliveries(
        &self,
        count: usize,
        timeout: Duration,
    ) -> Result<(), SimulatorError> {
        self.wait(timeout, "notification deliveries", |s| s.delivered >= count)
            .await
    }

    /// Waits until no notification is in flight (delivered, given up or dropped) and no
    /// accepted refund is waiting to complete.
    ///
    /// # Errors
    /// [`SimulatorError::Timeout`] after `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) -> Result<(), SimulatorError> {
        self.wait(timeout, "idle notifier", |s| s.in_flight == 0)
            .await
    }

    async fn wait(
        &self,
        timeout: Duration,
        what: &'static str,
        done: impl FnMut(&DeliveryStats) -> bool,
    ) -> Result<(), SimulatorError> {
        let mut rx = self.shared.stats.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(done))
            .await
            .map_err(|_| SimulatorError::Timeout(what))?
            .map(|_| ())
            .map_err(|_| SimulatorError::Timeout(what))
    }

    /// Stops the server (gracefully) and all pending deliveries.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.send_replace(true);
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
    }
}

impl Drop for SimulatorHandle {
    fn drop(&mut self) {
        self.shared.shutdown.send_replace(true);
    }
}
