//! `wxpay-simulator`: a local WeChat Pay (APIv3) and WeChat login simulator, for tests, the
//! host's sandbox and demos. It is its own crate so that a production build of `wxpay-host`
//! (`--no-default-features`) contains neither the simulator nor any private key.
//!
//! It answers like the real services:
//!
//! | endpoint | real service |
//! | --- | --- |
//! | `GET /sns/jscode2session` | mini-program login (`code2Session`): single-use codes, errcodes 40029, 40163, 45011, -1 |
//! | `POST /v3/pay/transactions/jsapi` | JSAPI/mini-program order: verifies `Authorization` with the merchant public key (else 401 `SIGN_ERROR`), validates the body (400 `PARAM_ERROR`), `{"prepay_id"}` |
//! | `GET /v3/pay/transactions/out-trade-no/{no}?mchid=` | order query (`trade_state`: `NOTPAY`, `SUCCESS`, `REFUND` once refunded, `CLOSED`, `REVOKED`, `USERPAYING`, `PAYERROR`), 404 `ORDER_NOT_EXIST`; counted per order |
//! | `GET /v3/pay/transactions/id/{transaction_id}?mchid=` | order query by WeChat's id (counted for its order) |
//! | `POST /v3/pay/transactions/out-trade-no/{no}/close` | close, 204 |
//! | `POST /v3/refund/domestic/refunds` | refund: `PROCESSING`; the same `out_refund_no` again is the same refund; later a `REFUND.SUCCESS` notification |
//! | `GET /v3/refund/domestic/refunds/{out_refund_no}` | refund query (`PROCESSING`, `SUCCESS`, `CLOSED`, `ABNORMAL`), 404 `RESOURCE_NOT_EXISTS` for a refund never received; counted per refund |
//! | `GET /v3/certificates` | platform certificates (certificate mode; old and new after [`SimulatorHandle::rotate_platform_certificate`]) or 404 `NOT_FOUND` (public-key mode) |
//!
//! | `POST /pay/unifiedorder`, `/pay/orderquery`, `/pay/closeorder`, `/pay/refundquery`, `/secapi/pay/refund` | APIv2, XML in and out, `MD5` or `HMAC-SHA256` with the APIv2 key ([`SimulatorOptions::api_v2_key`], [`SimulatorOptions::v2_sign_type`]); v2 orders share the world with v3 orders and are notified as v2 XML (refunds with an encrypted `req_info`); with [`SimulatorOptions::tls`], `/secapi/` requires the merchant API client certificate in the TLS handshake (mutual TLS), else HTTP 403 |
//!
//! Every `/v3` response, errors included, carries `Wechatpay-Timestamp`, `-Nonce`, `-Signature`,
//! `-Serial` and `-Signature-Type`, signed with the (current) platform key over exactly the body
//! bytes sent — except, like WeChat Pay, the 401 `SIGN_ERROR` answer to a request whose
//! `Authorization` does not verify: that one is unsigned and its `detail.sign_information`
//! holds the `truncated_sign_message` the simulator reconstructed.
//! Every `/v3` request must carry a valid merchant `Authorization`.
//!
//! Paying an order (by [`SimulatorHandle::pay`] or `POST /sim/orders/{no}/pay`) delivers a
//! signed, AES-256-GCM-encrypted `TRANSACTION.SUCCESS` notification to the order's `notify_url`,
//! retried along [`SimulatorOptions::notify_retry_schedule`] until the host answers 200 or 204;
//! [`NotifyBehavior`] can drop, duplicate, probe or tamper with it.
//!
//! The control API, from Rust ([`SimulatorHandle`]) or curl (no authentication: bind it to
//! loopback only):
//!
//! | request | [`SimulatorHandle`] | effect |
//! | --- | --- | --- |
//! | `GET /sim/credentials` | [`credentials`](SimulatorHandle::credentials) | the test credentials as JSON |
//! | `POST /sim/login/code {"openid"?}` | [`issue_login_code`](SimulatorHandle::issue_login_code) | `{"code","openid"}`: a fresh `wx.login` code |
//! | `POST /sim/login/fail {"errcode","count"?}` | [`fail_next_logins`](SimulatorHandle::fail_next_logins) | the next `count` (default 1) logins fail with `errcode` |
//! | `POST /sim/v3/fail {"status","code","count"?,"signing"?}` | [`fail_next_v3`](SimulatorHandle::fail_next_v3), [`fail_next_v3_signed`](SimulatorHandle::fail_next_v3_signed), [`reject_next_signatures`](SimulatorHandle::reject_next_signatures) | the next `count` `/v3` calls fail so (nothing is created); `signing`: `signed` (default), `unsigned`, `bad_signature` ([`AnswerSigning`]) |
//! | `GET /sim/orders/{no}` | [`order`](SimulatorHandle::order) | order snapshot |
//! | `POST /sim/orders/{no}/pay` | [`pay`](SimulatorHandle::pay) | the payer pays: `SUCCESS` + `TRANSACTION.SUCCESS` notification |
//! | `POST /sim/orders/{no}/pay-even-if-closed` | [`pay_even_if_closed`](SimulatorHandle::pay_even_if_closed) | the payer pays an order the merchant has already closed (the payment crossed the close): `SUCCESS` + notification |
//! | `POST /sim/orders/{no}/pay-again` | [`pay_again`](SimulatorHandle::pay_again) | a second payment of a paid order under a new `transaction_id` (double payment): `SUCCESS` notification with the new id, `{"transaction_id"}` |
//! | `POST /sim/orders/{no}/trade-state {"trade_state"}` | [`set_trade_state`](SimulatorHandle::set_trade_state) | an unpaid order's `trade_state` for queries: `NOTPAY`, `USERPAYING`, `PAYERROR`, `REVOKED`, `CLOSED` |
//! | `GET /sim/orders/{no}/query-count` | [`query_count`](SimulatorHandle::query_count) | `{"count"}`: order queries received for it |
//! | `POST /sim/orders/{no}/console-refund {"amount"}` | [`console_refund`](SimulatorHandle::console_refund) | a refund made in the merchant console: `{"out_refund_no"}`; its notifications go to [`SimulatorOptions::refund_notify_url`] or the order's notify URL with the path `/notify/refund` |
//! | `GET /sim/refunds/{no}` | [`refund`](SimulatorHandle::refund) | refund snapshot |
//! | `POST /sim/refunds/{no}/complete` | [`complete_refund`](SimulatorHandle::complete_refund) | the refund succeeds now + `REFUND.SUCCESS` |
//! | `POST /sim/refunds/{no}/status {"status"}` | [`set_refund_status`](SimulatorHandle::set_refund_status) | `ABNORMAL` (+ `REFUND.ABNORMAL`), then `SUCCESS` or `CLOSED` (+ `REFUND.SUCCESS` / `REFUND.CLOSED`) |
//! | `GET /sim/refunds/{no}/query-count` | [`refund_query_count`](SimulatorHandle::refund_query_count) | `{"count"}`: refund queries received for it |
//! | `POST /sim/refunds/fail {"mode":"error"\|"delay"\|"reject","status"?,"code"?,"delay_ms"?,"count"?}` | [`fail_next_refunds`](SimulatorHandle::fail_next_refunds) | [`RefundFault`]: the next refund submissions are created but answered 5xx (`error`) or late (`delay`), or refused before creating (`reject`) |
//! | `POST /sim/notify-behavior {"behavior":"normal"\|"drop"\|"duplicate"\|"probe_first"\|"tamper","count"?}` | [`set_notify_behavior`](SimulatorHandle::set_notify_behavior) | [`NotifyBehavior`] |
//! | `GET /sim/stats` | [`delivery_stats`](SimulatorHandle::delivery_stats) | delivered notifications and attempts |
//! | `POST /sim/request-payment/check {appId,timeStamp,nonceStr,package,signType,paySign,openid?}` | | checks `wx.requestPayment` parameters like WeChat's client: `{"ok":true}` or 400 `{"ok":false,"errMsg":"requestPayment:fail …"}` |
//! | | [`rotate_platform_certificate`](SimulatorHandle::rotate_platform_certificate) | a new platform key and certificate, listed next to the old one |
//! | | [`signed_notification`](SimulatorHandle::signed_notification) | `(headers, body)` of a v3 notification for any resource JSON and event type, encrypted and signed with the current platform key, for a test to post itself |
//!
//! With [`SimulatorOptions::tls`] the simulator serves HTTPS (`https://127.0.0.1:PORT`) with
//! certificates it generates at start, and checks the merchant API client certificate on
//! `/secapi/` the way WeChat Pay does: in the TLS handshake. WeChat Pay's APIv2 refund
//! (`/secapi/pay/refund`) is mutual TLS with the merchant's `apiclient_cert.pem` /
//! `apiclient_key.pem`, and a host that forgets its certificate never gets an answer; a plain
//! HTTP simulator cannot show that. The simulator's CA
//! ([`SimulatorHandle::tls_root_ca_pem`]) issues the server certificate (`127.0.0.1`,
//! `localhost`) and the merchant client certificate
//! ([`SimulatorHandle::merchant_client_cert_pem`], subject CN = the `mch_id`, serial = the
//! merchant serial, over the merchant API key [`SimulatorHandle::merchant_client_key_pem`]).
//! A client certificate is requested but optional in the handshake, so every other route works
//! without one; one that does not chain to the simulator CA fails the handshake, and `/secapi/`
//! answers HTTP 403 (`return_code=FAIL`, nothing created) to a connection without a certificate
//! or with one for another CN. These certificates are made fresh at every start and are for
//! tests only: trust the simulator CA in test clients only, never in a system trust store.
//!
//! All cryptography (signature verification, signing, AEAD) is `wxpay-core`'s. No private key
//! is compiled in: the keys are generated at every start, or read from
//! [`SimulatorOptions::keys_dir`] (see [`SimulatorCredentials`]).

mod keys;
mod notify;
mod routes;
mod state;
mod tls;
mod v2;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod v2_tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use rand_core::UnwrapErr;
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wxpay_core::keys::{CertificateInfo, MerchantSigner, PublicKey};
use wxpay_core::v3::ApiV3Key;

pub use keys::SimulatorCredentials;
pub use notify::{DeliveryAttempt, DeliveryKind, DeliveryStats};
pub use state::{
    AnswerSigning, NotifyBehavior, OrderSnapshot, RefundFault, RefundSnapshot, RefundStatus,
    TradeState,
};
pub use wxpay_core::v2::SignType as V2SignType;

use state::{Refusal, V3Fault, World};

/// A notification ready to post, as [`SimulatorHandle::signed_notification`] makes it:
/// `(headers, body)`, the headers being the five `Wechatpay-*` pairs.
pub type SignedNotification = (Vec<(String, String)>, Vec<u8>);

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
    /// `true`: a merchant switching from the platform certificate to the WeChat Pay public key
    /// (WeChat Pay "如何从平台证书切换成微信支付公钥"); overrides `public_key_mode`. Both keys
    /// exist, each its own key pair: `/v3/certificates` lists the certificate, and
    /// [`SimulatorCredentials`] carry the public key and its id. Like WeChat during the gray
    /// switch, an answer is signed with the key the request's `Wechatpay-Serial` names (the
    /// public key for its id, the certificate for a certificate serial); notifications, and
    /// answers to requests naming no key, are signed with the certificate until
    /// [`SimulatorHandle::switch_to_public_key`], with the public key after. Default `false`.
    pub public_key_migration: bool,
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
    /// `None` (default): generate fresh key pairs at start. `Some(dir)`: read them from PEM
    /// files in `dir` at start (layout in [`SimulatorCredentials`]'s module documentation:
    /// `merchant_private_key.pem`, `platform_private_key.pem`, optionally the public keys and
    /// `platform_cert.pem`), e.g. the published test keys in `tests/vectors/keys`.
    pub keys_dir: Option<PathBuf>,
    /// Where the notifications of refunds made in the merchant console
    /// ([`SimulatorHandle::console_refund`]) go; `None` (default): the order's `notify_url`
    /// with its path replaced by `/notify/refund`.
    pub refund_notify_url: Option<String>,
    /// The merchant's APIv2 key (32 characters); default `None` draws a random one.
    pub api_v2_key: Option<String>,
    /// The APIv2 sign type the merchant uses: `MD5` (default) or `HMAC-SHA256`. A v2 request
    /// claiming a weaker type than this is refused ("签名错误").
    pub v2_sign_type: V2SignType,
    /// `true`: serve HTTPS with mutual TLS on `/secapi/`, like WeChat Pay. Default `false`
    /// (plain HTTP, and `/secapi/` checks no certificate).
    ///
    /// WeChat Pay checks the merchant API certificate (`apiclient_cert.pem`, subject CN = the
    /// `mch_id`) in the TLS handshake of `/secapi/` (the APIv2 refund), so only a TLS listener
    /// can show whether a host really presents it. At start the simulator generates, with
    /// `rcgen`, a CA ("wxpay simulator CA"), a server certificate it issues for `127.0.0.1` and
    /// `localhost`, and the merchant client certificate (CN = the `mch_id`, serial = the
    /// merchant serial, over the merchant API private key); see
    /// [`SimulatorHandle::tls_root_ca_pem`], [`SimulatorHandle::merchant_client_cert_pem`] and
    /// [`SimulatorHandle::merchant_client_key_pem`]. [`SimulatorHandle::base_url`] is then
    /// `https://127.0.0.1:PORT`.
    ///
    /// Client certificates are requested but optional in the handshake: every route but
    /// `/secapi/` works without one. A presented certificate must chain to the simulator CA
    /// (else the handshake fails); `/secapi/` answers HTTP 403 with a `return_code=FAIL` body,
    /// creating nothing, unless the connection presented one whose subject CN is the `mch_id`.
    ///
    /// The certificates are fresh at every start and for tests only.
    pub tls: bool,
}

impl Default for SimulatorOptions {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_key_mode: false,
            public_key_migration: false,
            notify_retry_schedule: wechat_retry_schedule(),
            notify_timeout: Duration::from_secs(5),
            refund_delay: Some(Duration::from_secs(1)),
            api_v3_key: None,
            clock: Arc::new(SystemClock),
            keys_dir: None,
            refund_notify_url: None,
            api_v2_key: None,
            v2_sign_type: V2SignType::Md5,
            tls: false,
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

    /// Reads the keys from PEM files in `dir` at start instead of generating them (see
    /// [`SimulatorOptions::keys_dir`]).
    #[must_use]
    pub fn keys_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.keys_dir = Some(dir.into());
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
    /// A key (generated, read or configured, the APIv3 key included) was refused by the core.
    #[error("simulator keys: {0}")]
    Keys(#[from] wxpay_core::Error),
    /// A key file in [`SimulatorOptions::keys_dir`] could not be read.
    #[error("cannot read {path}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Generating a key pair or a certificate failed, or a key file could not be parsed for
    /// deriving its public key or certificate.
    #[error("simulator key generation: {0}")]
    KeyGeneration(String),
    /// Key files that do not belong together (a public key or certificate of another key).
    #[error("simulator keys do not match: {0}")]
    KeyMismatch(&'static str),
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
    /// The refund's status does not allow this (it is already `SUCCESS` or `CLOSED`).
    #[error("refund {out_refund_no} is {status}")]
    RefundState {
        /// The refund.
        out_refund_no: String,
        /// Its status.
        status: RefundStatus,
    },
    /// A refund WeChat would refuse (more than the refundable amount, zero).
    #[error("refund refused: {0}")]
    RefundRefused(String),
    /// A request the simulator does not support (e.g. setting `trade_state` `SUCCESS`
    /// directly).
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A wait did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// Platform certificates (and their rotation) do not exist in public-key mode.
    #[error("platform certificates are not used in public-key mode")]
    PublicKeyMode,
    /// A switch to the public key needs [`SimulatorOptions::public_key_migration`].
    #[error("the simulator was not started with public_key_migration")]
    NotMigrating,
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
    pub refund_notify_url: Option<String>,
    /// The merchant's APIv2 key and sign type.
    pub v2: v2::V2Config,
    /// [`SimulatorOptions::tls`]: the generated CA, client certificate and key.
    pub tls: Option<tls::TlsPems>,
    pub http: reqwest::Client,
    pub runtime: tokio::runtime::Handle,
    pub world: Mutex<World>,
    pub deliveries: Mutex<Vec<DeliveryAttempt>>,
    /// The last [`ANSWER_LOG_LEN`] APIv3 answers' serials, oldest first.
    pub answers: Mutex<std::collections::VecDeque<AnswerSerial>>,
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
    pub certificates: Vec<(CertificateInfo, String)>,
    /// Migration mode: the WeChat Pay public key's signer and its id (`PUB_KEY_ID_…`).
    pub public_key: Option<(Arc<MerchantSigner>, String)>,
    /// Migration mode: the merchant applied the switch, so notifications (and answers to
    /// requests naming no key) are signed with [`Platform::public_key`].
    pub switched: bool,
    /// Migration mode: answers are signed with the key the request names (default); `false`
    /// signs them all with the default signer, as WeChat's gray switch may still do.
    pub answers_follow_request: bool,
}

/// How many answers [`SimulatorHandle::answer_serials`] remembers.
const ANSWER_LOG_LEN: usize = 1024;

/// One APIv3 answer as signed: the `Wechatpay-Serial` its request named and the one it was
/// signed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AnswerSerial {
    /// The request's path and query.
    pub path: String,
    /// The request's `Wechatpay-Serial` header, if any.
    pub requested: Option<String>,
    /// The `Wechatpay-Serial` of the answer.
    pub signed: String,
}

impl Platform {
    /// The signer of notifications and of answers to requests that name no key.
    fn default_signer(&self) -> (&Arc<MerchantSigner>, &str) {
        match &self.public_key {
            Some((signer, id)) if self.switched => (signer, id),
            _ => (&self.signer, &self.serial),
        }
    }

    /// The signer of an answer to a request whose `Wechatpay-Serial` is `requested`: in
    /// migration mode the public key when the request names it, the certificate when it names
    /// a certificate serial; otherwise the default signer.
    fn answer_signer(&self, requested: Option<&str>) -> (&Arc<MerchantSigner>, &str) {
        if !self.answers_follow_request {
            return self.default_signer();
        }
        match (&self.public_key, requested) {
            (Some((signer, id)), Some(r)) if r.trim().eq_ignore_ascii_case(id) => (signer, id),
            (Some(_), Some(r))
                if self
                    .certificates
                    .iter()
                    .any(|(c, _)| c.serial_no.eq_ignore_ascii_case(r.trim())) =>
            {
                (&self.signer, &self.serial)
            }
            _ => self.default_signer(),
        }
    }
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
        self.sign_answer(body, None)
    }

    /// Records which serial an answer to `path` was signed under.
    pub(crate) fn log_answer(&self, path: String, requested: Option<String>, signed: &str) {
        let mut answers = self.answers.lock().unwrap_or_else(PoisonError::into_inner);
        if answers.len() >= ANSWER_LOG_LEN {
            answers.pop_front();
        }
        answers.push_back(AnswerSerial {
            path,
            requested,
            signed: signed.to_owned(),
        });
    }

    /// Like [`Shared::sign`], for the answer to a request whose `Wechatpay-Serial` header is
    /// `requested` ([`Platform::answer_signer`]).
    pub(crate) fn sign_answer(
        &self,
        body: &[u8],
        requested: Option<&str>,
    ) -> wxpay_core::Result<Signed> {
        let (signer, serial) = {
            let p = self.platform();
            let (signer, serial) = p.answer_signer(requested);
            (signer.clone(), serial.to_owned())
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

    /// Marks an order paid (`force`: even if closed or expired) and sends its notification.
    fn pay(
        self: &Arc<Self>,
        out_trade_no: &str,
        force: bool,
    ) -> Result<OrderSnapshot, SimulatorError> {
        let now = self.now();
        let order = {
            let mut world = self.world();
            if force {
                world.force_pay(out_trade_no, now)
            } else {
                world.pay(out_trade_no, now)
            }
        }
        .map_err(|r| refusal_error(r, out_trade_no))?;
        self.send_transaction(&order);
        Ok(order.snapshot())
    }

    /// A second payment of a paid order, notified; returns its transaction id.
    fn pay_again(self: &Arc<Self>, out_trade_no: &str) -> Result<String, SimulatorError> {
        let now = self.now();
        let second = self
            .world()
            .pay_again(out_trade_no, now)
            .map_err(|r| refusal_error(r, out_trade_no))?;
        self.send_transaction(&second);
        Ok(second.transaction_id.unwrap_or_default())
    }

    /// The payment notification of `order`: v2 XML for an order placed through APIv2, else
    /// `TRANSACTION.SUCCESS`.
    fn send_transaction(self: &Arc<Self>, order: &state::Order) {
        match v2::order_sign_type(self, &order.req.out_trade_no) {
            Some(sign_type) => v2::send_pay_notification(self, order, sign_type),
            None => notify::send_transaction(self, order),
        }
    }

    /// Moves a refund to `status` and sends its notification if that changed it (and it has
    /// a notify URL).
    fn set_refund_status(
        self: &Arc<Self>,
        out_refund_no: &str,
        status: RefundStatus,
    ) -> Result<RefundSnapshot, SimulatorError> {
        self.change_refund(out_refund_no, |world, now| {
            world.set_refund_status(out_refund_no, status, now)
        })
    }

    /// What the refund delay does: a still `PROCESSING` refund succeeds, notified.
    fn settle_refund(
        self: &Arc<Self>,
        out_refund_no: &str,
    ) -> Result<RefundSnapshot, SimulatorError> {
        self.change_refund(out_refund_no, |world, now| {
            world.settle_refund(out_refund_no, now)
        })
    }

    fn change_refund(
        self: &Arc<Self>,
        out_refund_no: &str,
        change: impl FnOnce(&mut World, u64) -> Result<Option<state::Refund>, Refusal>,
    ) -> Result<RefundSnapshot, SimulatorError> {
        let now = self.now();
        let mut world = self.world();
        let changed = change(&mut world, now).map_err(|r| refusal_error(r, out_refund_no))?;
        let snapshot = world
            .refunds
            .get(out_refund_no)
            .map(state::Refund::snapshot)
            .ok_or_else(|| SimulatorError::RefundNotFound(out_refund_no.to_owned()))?;
        drop(world);
        if let Some(refund) = changed {
            if v2::order_sign_type(self, &refund.out_trade_no).is_some() {
                v2::send_refund_notification(self, &refund);
            } else {
                notify::send_refund(self, &refund);
            }
        }
        Ok(snapshot)
    }

    /// After [`SimulatorOptions::refund_delay`], a still `PROCESSING` refund succeeds by
    /// itself (in the background).
    pub(crate) fn schedule_refund_settlement(self: &Arc<Self>, out_refund_no: &str) {
        let Some(delay) = self.refund_delay else {
            return;
        };
        let (shared, no) = (self.clone(), out_refund_no.to_owned());
        // Counted as in flight until the refund notification is dispatched (which counts
        // itself), so that `wait_idle` also waits for pending refunds.
        shared.stats.send_modify(|s| s.in_flight += 1);
        self.runtime.spawn(async move {
            let mut stop = shared.shutdown.subscribe();
            tokio::select! {
                () = tokio::time::sleep(delay) => {
                    if let Err(e) = shared.settle_refund(&no) {
                        tracing::warn!(error = %e, "automatic refund completion failed");
                    }
                }
                _ = stop.wait_for(|s| *s) => {}
            }
            shared.stats.send_modify(|s| s.in_flight -= 1);
        });
    }

    /// A refund made in the merchant console, notified like any refund.
    fn console_refund(
        self: &Arc<Self>,
        out_trade_no: &str,
        amount: u64,
    ) -> Result<String, SimulatorError> {
        if amount == 0 {
            return Err(SimulatorError::RefundRefused(
                "the amount must be positive".into(),
            ));
        }
        let now = self.now();
        let refund = {
            let mut world = self.world();
            let url = match &self.refund_notify_url {
                Some(url) => url.clone(),
                None => {
                    let order = world
                        .orders
                        .get(out_trade_no)
                        .ok_or_else(|| SimulatorError::OrderNotFound(out_trade_no.to_owned()))?;
                    refund_url_of(&order.req.notify_url)
                }
            };
            world
                .console_refund(out_trade_no, amount, Some(url), now)
                .map_err(|r| refusal_error(r, out_trade_no))?
        };
        self.schedule_refund_settlement(&refund.out_refund_no);
        Ok(refund.out_refund_no)
    }

    /// A v3 notification of `resource` (encrypted) as `(headers, body)`, signed now with the
    /// current platform key.
    fn signed_notification(
        &self,
        id: &str,
        event_type: &str,
        original_type: &str,
        resource: &Value,
    ) -> Result<SignedNotification, SimulatorError> {
        let summary = notify::summary_of(event_type);
        let body = notify::envelope(self, id, event_type, summary, original_type, resource)?;
        let signed = self.sign(body.as_bytes())?;
        let headers = signed
            .headers()
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Ok((headers, body.into_bytes()))
    }
}

/// `scheme://authority/notify/refund` of a notify URL (`http://127.0.0.1:8080/notify/pay` →
/// `http://127.0.0.1:8080/notify/refund`).
pub(crate) fn refund_url_of(notify_url: &str) -> String {
    let authority_end = notify_url
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| notify_url[start..].find('/').map(|j| start + j))
        .unwrap_or(notify_url.len());
    format!("{}/notify/refund", &notify_url[..authority_end])
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
        Refusal::RefundNotFound => SimulatorError::RefundNotFound(id.to_owned()),
        Refusal::RefundState(status) => SimulatorError::RefundState {
            out_refund_no: id.to_owned(),
            status,
        },
        Refusal::RefundTooLarge { refundable } => SimulatorError::RefundRefused(format!(
            "more than the refundable amount of {id} ({refundable} fen)"
        )),
        Refusal::TotalMismatch => {
            SimulatorError::RefundRefused("amount.total does not match the order".into())
        }
        Refusal::RefundMismatch => {
            SimulatorError::RefundRefused("out_refund_no was used with different parameters".into())
        }
        Refusal::Target(what) => SimulatorError::Unsupported(what),
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
/// Generating the two RSA-2048 key pairs takes tens of milliseconds (AWS-LC); it runs on a
/// blocking thread, as does generating the TLS certificates with [`SimulatorOptions::tls`]
/// (two P-256 keys; the client certificate is over the merchant key).
///
/// # Errors
/// [`SimulatorError::Bind`] if the address cannot be bound; [`SimulatorError::Keys`] for an
/// unusable configured APIv3 key; [`SimulatorError::KeyFile`], [`SimulatorError::KeyMismatch`]
/// or [`SimulatorError::KeyGeneration`] for unusable files in [`SimulatorOptions::keys_dir`]
/// (or a failed generation, TLS certificates included); [`SimulatorError::Client`] if the HTTP
/// client cannot be built.
pub async fn spawn(opts: SimulatorOptions) -> Result<SimulatorHandle, SimulatorError> {
    let started = std::time::Instant::now();
    let mode = if opts.public_key_migration {
        keys::PlatformMode::Migration
    } else if opts.public_key_mode {
        keys::PlatformMode::PublicKey
    } else {
        keys::PlatformMode::Certificate
    };
    let (api_v3_key, keys_dir, now) = (
        opts.api_v3_key.clone(),
        opts.keys_dir.clone(),
        opts.clock.now(),
    );
    let keys = tokio::task::spawn_blocking(move || {
        keys::SimKeys::load(&mut rng(), mode, api_v3_key, keys_dir.as_deref(), now)
    })
    .await
    .map_err(|e| SimulatorError::KeyGeneration(format!("key task: {e}")))??;
    tracing::debug!(
        elapsed_ms = started.elapsed().as_millis(),
        generated = opts.keys_dir.is_none(),
        "simulator keys ready"
    );
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
    let tls = if opts.tls {
        let (mchid, serial, key) = (
            keys.credentials.mchid.clone(),
            keys.credentials.merchant_serial.clone(),
            keys.credentials.merchant_private_key_pem.clone(),
        );
        // The real clock: TLS peers check validity against it, not the simulator's clock.
        let now = SystemClock.now();
        let setup = tokio::task::spawn_blocking(move || tls::generate(&mchid, &serial, &key, now))
            .await
            .map_err(|e| SimulatorError::KeyGeneration(format!("TLS task: {e}")))??;
        Some(setup)
    } else {
        None
    };
    let (shutdown, mut shutdown_rx) = watch::channel(false);
    let platform = Platform {
        signer: Arc::new(keys.platform_signer),
        serial: keys.credentials.platform_serial().to_owned(),
        certificates: vec![(
            keys.certificate,
            keys.credentials.platform_certificate_pem.clone(),
        )],
        public_key: keys.public_key_signer.map(|s| {
            let id = s.serial_no().to_owned();
            (Arc::new(s), id)
        }),
        switched: false,
        answers_follow_request: true,
    };
    let shared = Arc::new(Shared {
        creds: keys.credentials,
        api_v3_key,
        platform: RwLock::new(platform),
        merchant_public: keys.merchant_public,
        clock: opts.clock,
        schedule: opts.notify_retry_schedule,
        refund_delay: opts.refund_delay,
        refund_notify_url: opts.refund_notify_url,
        v2: v2::V2Config::new(opts.api_v2_key, opts.v2_sign_type),
        tls: tls.as_ref().map(|t| t.pems.clone()),
        http,
        runtime: tokio::runtime::Handle::current(),
        world: Mutex::new(World::default()),
        deliveries: Mutex::new(Vec::new()),
        answers: Mutex::new(std::collections::VecDeque::new()),
        stats: watch::Sender::new(DeliveryStats::default()),
        shutdown,
    });
    let app = routes::router(shared.clone());
    let (server, scheme) = match tls {
        // Either a `true` or the handle going away ends the server.
        Some(setup) => (
            tokio::spawn(tls::serve(listener, setup.acceptor, app, shutdown_rx)),
            "https",
        ),
        None => (
            tokio::spawn(async move {
                let stop = async move {
                    let _ = shutdown_rx.wait_for(|s| *s).await;
                };
                if let Err(e) = axum::serve(listener, app)
                    .with_graceful_shutdown(stop)
                    .await
                {
                    tracing::error!(error = %e, "simulator server failed");
                }
            }),
            "http",
        ),
    };
    let base_url = format!("{scheme}://{addr}");
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
            .field("tls", &self.shared.tls.is_some())
            .field("credentials", &self.shared.creds)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// `http://127.0.0.1:PORT` (`https://…` with [`SimulatorOptions::tls`]): use it as both
    /// `WXPAY_API_BASE` and `WXPAY_LOGIN_BASE`.
    #[must_use]
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// With [`SimulatorOptions::tls`]: the simulator CA's certificate PEM, the one root a client
    /// must trust to reach [`SimulatorHandle::base_url`] (test-only, fresh per start). `None`
    /// without TLS.
    #[must_use]
    pub fn tls_root_ca_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    /// With [`SimulatorOptions::tls`]: the merchant API client certificate PEM
    /// (`apiclient_cert.pem`), issued by the simulator CA, subject CN = the `mch_id`, serial =
    /// [`SimulatorHandle::merchant_serial`], over the merchant API key. A client presents it
    /// with [`SimulatorHandle::merchant_client_key_pem`] for `/secapi/`. `None` without TLS.
    #[must_use]
    pub fn merchant_client_cert_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|t| t.client_cert_pem.as_str())
    }

    /// With [`SimulatorOptions::tls`]: the private key of
    /// [`SimulatorHandle::merchant_client_cert_pem`] (`apiclient_key.pem`), a PKCS#8 PEM. It is
    /// the merchant API private key ([`SimulatorHandle::merchant_private_key_pem`], converted to
    /// PKCS#8 if that was PKCS#1), as at WeChat Pay. `None` without TLS.
    #[must_use]
    pub fn merchant_client_key_pem(&self) -> Option<&str> {
        self.shared.tls.as_ref().map(|t| t.client_key_pem.as_str())
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

    /// The merchant's APIv2 key (test-only; random per start unless
    /// [`SimulatorOptions::api_v2_key`] is set).
    #[must_use]
    pub fn api_v2_key(&self) -> &str {
        &self.shared.v2.key_text
    }

    /// The APIv2 sign type the merchant uses ([`SimulatorOptions::v2_sign_type`]).
    #[must_use]
    pub fn v2_sign_type(&self) -> V2SignType {
        self.shared.v2.sign_type
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

    /// The merchant API private key PEM (generated at start, or read from the keys directory).
    #[must_use]
    pub fn merchant_private_key_pem(&self) -> &str {
        &self.shared.creds.merchant_private_key_pem
    }

    /// Serial number of the merchant API certificate.
    #[must_use]
    pub fn merchant_serial(&self) -> &str {
        &self.shared.creds.merchant_serial
    }

    /// The platform public key PEM (public-key mode's `pub_key.pem`; the certificate in
    /// certificate mode holds the same key).
    #[must_use]
    pub fn platform_public_key_pem(&self) -> &str {
        &self.shared.creds.platform_public_key_pem
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
    /// any [`SimulatorHandle::rotate_platform_certificate`].
    #[must_use]
    pub fn platform_serial(&self) -> &str {
        self.shared.creds.platform_serial()
    }

    /// The `Wechatpay-Serial` notifications (and answers to requests naming no key) are signed
    /// under now: the start serial, the rotated certificate's serial after a rotation, the
    /// public key id after [`SimulatorHandle::switch_to_public_key`].
    #[must_use]
    pub fn current_platform_serial(&self) -> String {
        self.shared.platform().default_signer().1.to_owned()
    }

    /// Migration mode ([`SimulatorOptions::public_key_migration`]): the merchant applies the
    /// switch to the WeChat Pay public key in the merchant platform. From now on notifications
    /// — retries of those being delivered included — and answers to requests naming no key in
    /// `Wechatpay-Serial` are signed with the public key, under its id; a request naming a
    /// certificate serial still gets a certificate-signed answer. Returns the public key id.
    ///
    /// # Errors
    /// [`SimulatorError::NotMigrating`] unless started in migration mode.
    pub fn switch_to_public_key(&self) -> Result<String, SimulatorError> {
        self.migration(|p| p.switched = true)
    }

    /// Migration mode: `false` signs every answer with the default key (the certificate before
    /// [`SimulatorHandle::switch_to_public_key`], the public key after) whatever the request's
    /// `Wechatpay-Serial` names, as WeChat's gray switch may while its "应答使用公钥比例" is
    /// 0 % or 100 %; `true` (the start) signs with the key the request names. Returns the
    /// public key id.
    ///
    /// # Errors
    /// [`SimulatorError::NotMigrating`] unless started in migration mode.
    pub fn answers_follow_request(&self, follow: bool) -> Result<String, SimulatorError> {
        self.migration(|p| p.answers_follow_request = follow)
    }

    /// Every APIv3 answer signed lately (at most the last 1024), oldest first: which
    /// `Wechatpay-Serial` the request named and which one signed the answer.
    #[must_use]
    pub fn answer_serials(&self) -> Vec<AnswerSerial> {
        self.shared
            .answers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn migration(&self, change: impl FnOnce(&mut Platform)) -> Result<String, SimulatorError> {
        let mut platform = self
            .shared
            .platform
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let id = match &platform.public_key {
            Some((_, id)) => id.clone(),
            None => return Err(SimulatorError::NotMigrating),
        };
        change(&mut platform);
        tracing::info!(%id, switched = platform.switched,
            answers_follow_request = platform.answers_follow_request, "simulated key migration");
        Ok(id)
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
    /// self-signed certificate (generated now, with a different serial) is added to
    /// `/v3/certificates`, which then lists both (each encrypted with the APIv3 key), and every
    /// response and notification signed from now on uses the new key and carries its serial.
    /// Notifications already being delivered are re-signed at each attempt, so their retries
    /// switch too. Rotating again changes nothing (there is one rotation). Returns the new
    /// serial. Generating the key blocks the calling thread for some tens of milliseconds.
    ///
    /// # Errors
    /// [`SimulatorError::PublicKeyMode`] in public-key mode; [`SimulatorError::KeyGeneration`]
    /// or [`SimulatorError::Keys`] if the new key or certificate cannot be made.
    pub fn rotate_platform_certificate(&self) -> Result<String, SimulatorError> {
        if self.shared.creds.platform_certificate_serial.is_none() {
            return Err(SimulatorError::PublicKeyMode);
        }
        if self.shared.platform().certificates.len() > 1 {
            return Ok(self.current_platform_serial());
        }
        let next = keys::rotated_platform_certificate(&self.shared.creds.mchid, self.shared.now())?;
        let mut platform = self
            .shared
            .platform
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if platform.certificates.len() > 1 {
            // A concurrent rotation won.
            return Ok(platform.serial.clone());
        }
        let serial = next.info.serial_no.clone();
        platform.certificates.push((next.info, next.pem));
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
        self.fail_next_v3_signed(status, code, count, AnswerSigning::Signed);
    }

    /// Like [`SimulatorHandle::fail_next_v3`], signed as `signing` says: e.g. an unsigned 429
    /// `FREQUENCY_LIMITED`, or an unsigned or badly signed 404 `ORDER_NOT_EXIST` that a
    /// merchant must not believe. A forced `SIGN_ERROR` carries WeChat's `detail` with the
    /// `truncated_sign_message` of the request it answers.
    pub fn fail_next_v3_signed(
        &self,
        status: u16,
        code: &str,
        count: usize,
        signing: AnswerSigning,
    ) {
        let fault = V3Fault {
            status,
            code: code.to_owned(),
            signing,
        };
        self.shared
            .world()
            .v3_failures
            .extend(std::iter::repeat_n(fault, count));
    }

    /// Rejects the next `count` `/v3` requests as if their signature did not verify: 401
    /// `SIGN_ERROR`, unsigned, with `detail.sign_information` — exactly what WeChat Pay answers
    /// a merchant whose key or serial is wrong.
    pub fn reject_next_signatures(&self, count: usize) {
        self.fail_next_v3_signed(401, "SIGN_ERROR", count, AnswerSigning::Unsigned);
    }

    /// The payer pays: the order becomes `SUCCESS` and its `TRANSACTION.SUCCESS` notification
    /// is sent (in the background) according to the current [`NotifyBehavior`].
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`], [`SimulatorError::OrderState`] unless `NOTPAY`,
    /// `USERPAYING` or `PAYERROR`, [`SimulatorError::OrderExpired`] after its `time_expire`.
    pub fn pay(&self, out_trade_no: &str) -> Result<OrderSnapshot, SimulatorError> {
        self.shared.pay(out_trade_no, false)
    }

    /// The payer pays an order that the merchant has already closed at WeChat (or that
    /// expired): WeChat's real race, where the payment is confirmed while the close is in
    /// flight. The order becomes `SUCCESS` with a transaction id and a normal
    /// `TRANSACTION.SUCCESS` notification is sent, as with [`SimulatorHandle::pay`].
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`]; [`SimulatorError::OrderState`] if already paid.
    pub fn pay_even_if_closed(&self, out_trade_no: &str) -> Result<OrderSnapshot, SimulatorError> {
        self.shared.pay(out_trade_no, true)
    }

    /// A second payment of an already paid order under a *different* `transaction_id` (a
    /// double payment): a `TRANSACTION.SUCCESS` notification with the new id is sent; order
    /// queries keep answering the first payment, and the snapshot lists the new id in
    /// [`OrderSnapshot::double_payments`]. Returns the new transaction id.
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`]; [`SimulatorError::OrderState`] unless the order is
    /// `SUCCESS` or `REFUND`.
    pub fn pay_again(&self, out_trade_no: &str) -> Result<String, SimulatorError> {
        self.shared.pay_again(out_trade_no)
    }

    /// Sets the `trade_state` that queries answer for an unpaid order: `NOTPAY`, `USERPAYING`,
    /// `PAYERROR`, `REVOKED` or `CLOSED` (no notification: WeChat sends none for these).
    /// `REFUND` comes by itself once an order has a refund.
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`]; [`SimulatorError::OrderState`] if the order is paid;
    /// [`SimulatorError::Unsupported`] for `SUCCESS` or `REFUND` (use [`SimulatorHandle::pay`],
    /// a refund).
    pub fn set_trade_state(
        &self,
        out_trade_no: &str,
        trade_state: TradeState,
    ) -> Result<OrderSnapshot, SimulatorError> {
        self.shared
            .world()
            .set_trade_state(out_trade_no, trade_state)
            .map(|o| o.snapshot())
            .map_err(|r| refusal_error(r, out_trade_no))
    }

    /// Completes a `PROCESSING` or `ABNORMAL` refund now and sends its `REFUND.SUCCESS`
    /// notification (to the refund's `notify_url`); a completed refund is returned unchanged.
    ///
    /// # Errors
    /// [`SimulatorError::RefundNotFound`]; [`SimulatorError::RefundState`] for a `CLOSED`
    /// refund.
    pub fn complete_refund(&self, out_refund_no: &str) -> Result<RefundSnapshot, SimulatorError> {
        self.shared
            .set_refund_status(out_refund_no, RefundStatus::Success)
    }

    /// Moves a refund to `ABNORMAL` (sending `REFUND.ABNORMAL`; the amount stays reserved),
    /// or a `PROCESSING` or `ABNORMAL` refund to `SUCCESS` or `CLOSED` (sending
    /// `REFUND.SUCCESS` / `REFUND.CLOSED`; a closed refund's amount is refundable again).
    /// Setting the status a refund already has changes nothing and sends nothing. An
    /// `ABNORMAL` refund does not succeed by itself after [`SimulatorOptions::refund_delay`].
    ///
    /// # Errors
    /// [`SimulatorError::RefundNotFound`]; [`SimulatorError::RefundState`] for a refund that is
    /// already `SUCCESS` or `CLOSED`; [`SimulatorError::Unsupported`] for `PROCESSING`.
    pub fn set_refund_status(
        &self,
        out_refund_no: &str,
        status: RefundStatus,
    ) -> Result<RefundSnapshot, SimulatorError> {
        self.shared.set_refund_status(out_refund_no, status)
    }

    /// Makes the next `count` refund submissions (`POST /v3/refund/domestic/refunds`) behave
    /// as `fault` says: created but answered with a 5xx, created but answered late, or refused
    /// before anything is created.
    pub fn fail_next_refunds(&self, fault: RefundFault, count: usize) {
        self.shared
            .world()
            .refund_faults
            .extend(std::iter::repeat_n(fault, count));
    }

    /// A refund of `amount` fen made in the merchant console (not through the API): WeChat
    /// numbers it (its `out_refund_no` is its `refund_id`, returned), it is `PROCESSING`, and
    /// it succeeds after [`SimulatorOptions::refund_delay`] like any refund. Its notifications
    /// go to [`SimulatorOptions::refund_notify_url`], or to the order's notify URL with the
    /// path `/notify/refund`.
    ///
    /// # Errors
    /// [`SimulatorError::OrderNotFound`]; [`SimulatorError::OrderState`] unless paid;
    /// [`SimulatorError::RefundRefused`] for zero or more than the refundable amount.
    pub fn console_refund(
        &self,
        out_trade_no: &str,
        amount: u64,
    ) -> Result<String, SimulatorError> {
        self.shared.console_refund(out_trade_no, amount)
    }

    /// Encrypts `data` as mini-program open data for `openid` the way WeChat does
    /// (AES-128-CBC under the session key last issued to that user, with a
    /// `watermark {appid, timestamp}` added): returns `(encryptedData, iv)`.
    ///
    /// # Errors
    /// [`SimulatorError::Unsupported`] when the user never logged in.
    pub fn open_data(
        &self,
        openid: &str,
        mut data: serde_json::Value,
    ) -> Result<(String, String), SimulatorError> {
        let key = self
            .shared
            .world()
            .session_keys
            .get(openid)
            .cloned()
            .ok_or(SimulatorError::Unsupported(
                "open data for a user who never logged in",
            ))?;
        data["watermark"] =
            serde_json::json!({ "appid": self.appid(), "timestamp": self.shared.now() });
        let mut iv = [0u8; 16];
        rand_core::Rng::fill_bytes(&mut rng(), &mut iv);
        let iv = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, iv);
        let ct = wxpay_core::open_data::encrypt_open_data(&key, data.to_string().as_bytes(), &iv)
            .map_err(|_| SimulatorError::Unsupported("open data encryption"))?;
        Ok((ct, iv))
    }

    /// How many order queries (by `out_trade_no`, or by the order's `transaction_id`) the
    /// simulator has answered for this order, 404s included; forced `/v3` failures are not
    /// counted.
    #[must_use]
    pub fn query_count(&self, out_trade_no: &str) -> usize {
        self.shared
            .world()
            .order_queries
            .get(out_trade_no)
            .copied()
            .unwrap_or(0)
    }

    /// How many refund queries the simulator has answered for this `out_refund_no`, 404s
    /// included.
    #[must_use]
    pub fn refund_query_count(&self, out_refund_no: &str) -> usize {
        self.shared
            .world()
            .refund_queries
            .get(out_refund_no)
            .copied()
            .unwrap_or(0)
    }

    /// A WeChat Pay v3 notification for any `resource` JSON, as WeChat would post it: the
    /// envelope (`id`, `create_time`, `resource_type` `encrypt-resource`, `event_type`, the
    /// resource encrypted with AEAD_AES_256_GCM under the APIv3 key with `original_type` as
    /// associated data) and the five `Wechatpay-*` headers, signed now with the current
    /// platform key. Returns `(headers, body)`; the test posts it itself. (WeChat Pay APIv3
    /// "支付成功回调通知" / "退款结果通知".)
    ///
    /// # Errors
    /// [`SimulatorError::Keys`] if encryption or signing fails.
    pub fn signed_notification(
        &self,
        id: &str,
        event_type: &str,
        original_type: &str,
        resource: &Value,
    ) -> Result<SignedNotification, SimulatorError> {
        self.shared
            .signed_notification(id, event_type, original_type, resource)
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
