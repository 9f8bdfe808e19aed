//! `wxpay-host doctor` and `wxpay-host verify-notification`: check a configuration before going
//! live, and explain why a captured notification was (or would be) refused.
//!
//! Both return a [`Report`] — one [`Check`] per line, each with its fix — that `main` prints;
//! tests read the checks. All cryptography is `wxpay-core`'s, through the same
//! [`WechatClient`] and platform key loading as `serve`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::Connection;
use sqlx::migrate::{Migrate, Migrator};
use wxpay_core::provider::default_provider;
use wxpay_core::v3::{self, ApiV3Key, MAX_CLOCK_SKEW, WechatpayHeaders};
use wxpay_core::{MerchantSigner, PlatformKeys};

use crate::clock::{Clock, SystemClock};
use crate::config::{ApiV2Settings, Config, ConfigError, DoctorConfig, PlatformKeySource};
use crate::metrics::Metrics;
use crate::wechat::v2::V2Api;
use crate::wechat::{ClientInitError, UpstreamError, WechatClient};

/// The migrations this binary knows (the same directories `Store::connect` runs).
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long the database check may take (an unreachable PostgreSQL must not hang the doctor).
const DB_TIMEOUT: Duration = Duration::from_secs(10);

/// Names of the doctor's checks (stable: tests and scripts look for them).
pub mod names {
    /// The configuration loads.
    pub const CONFIG: &str = "configuration";
    /// The merchant private key parses.
    pub const MERCHANT_KEY: &str = "merchant key";
    /// The merchant certificate (`WXPAY_MERCHANT_CERT_FILE`) matches the key and serial.
    pub const MERCHANT_CERT: &str = "merchant certificate";
    /// The APIv3 key is 32 bytes.
    pub const API_V3_KEY: &str = "APIv3 key";
    /// APIv2 mode: the APIv2 key is 32 bytes (and which sign type is used).
    pub const API_V2_KEY: &str = "APIv2 key";
    /// APIv2 mode: the merchant API client certificate for `/secapi/` (refunds) loads.
    pub const CLIENT_CERT: &str = "client certificate";
    /// Platform certificates download and verify, or the public key id is well formed.
    pub const PLATFORM_KEYS: &str = "platform keys";
    /// A signed request is accepted by WeChat (no `SIGN_ERROR`).
    pub const SIGNED_REQUEST: &str = "signed request";
    /// WeChat's answer verifies with the platform keys.
    pub const ANSWER_SIGNATURE: &str = "answer signature";
    /// `WXPAY_NOTIFY_URL` is `https://` with a public host name.
    pub const NOTIFY_URL: &str = "notify URL";
    /// The database connects and its migrations are those of this binary.
    pub const DATABASE: &str = "database";
    /// The notification's `Wechatpay-*` headers parse.
    pub const HEADERS: &str = "headers";
    /// `|now − Wechatpay-Timestamp| ≤ 300 s`.
    pub const TIMESTAMP: &str = "timestamp window";
    /// `Wechatpay-Serial` names a platform key the host holds.
    pub const SERIAL: &str = "serial known";
    /// The signature verifies over the exact body.
    pub const SIGNATURE: &str = "signature";
    /// The resource decrypts with the APIv3 key.
    pub const DECRYPTION: &str = "decryption";
}

/// The result of one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// ✓
    Pass,
    /// ✗
    Fail,
    /// Not checked, because an earlier check failed (that one already fails the report).
    Skipped,
}

/// One line of a report.
#[derive(Clone, Debug)]
pub struct Check {
    /// What was checked (one of [`names`]).
    pub name: &'static str,
    /// The outcome.
    pub status: Status,
    /// What was found.
    pub detail: String,
    /// How to fix it (failed checks).
    pub fix: Option<String>,
}

/// A list of checks; it passes when none failed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The checks in the order they ran.
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether every check that ran passed (and at least one ran).
    #[must_use]
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.status != Status::Fail)
    }

    /// The check called `name`, if it ran.
    #[must_use]
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// A report of one failed check: the configuration did not load.
    #[must_use]
    pub fn config_error(e: &ConfigError) -> Self {
        let mut r = Self::default();
        r.fail(
            names::CONFIG,
            e.to_string(),
            "set the variable it names (see the README's configuration table)",
        );
        r
    }

    fn pass(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Status::Pass, detail.into(), None);
    }

    fn fail(&mut self, name: &'static str, detail: impl Into<String>, fix: impl Into<String>) {
        self.push(name, Status::Fail, detail.into(), Some(fix.into()));
    }

    fn skip(&mut self, name: &'static str, detail: impl Into<String>) {
        self.push(name, Status::Skipped, detail.into(), None);
    }

    fn push(&mut self, name: &'static str, status: Status, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            name,
            status,
            detail,
            fix,
        });
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            let mark = match c.status {
                Status::Pass => "✓",
                Status::Fail => "✗",
                Status::Skipped => "·",
            };
            writeln!(f, "{mark} {}: {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "    fix: {fix}")?;
            }
        }
        let failed = self
            .checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .count();
        if failed == 0 {
            write!(f, "all {} checks passed", self.checks.len())
        } else {
            write!(f, "{failed} of {} checks failed", self.checks.len())
        }
    }
}

/// Runs every check of `wxpay-host doctor` against `config` (APIv3; WeChat is reached at
/// `WXPAY_API_BASE`, and nothing is written anywhere: a query of an order that does not exist
/// is the only request, and the database is only read).
pub async fn run(config: &Config, extra: &DoctorConfig) -> Report {
    let mut r = Report::default();
    if let Some(v2) = config.api_v2() {
        run_v2(&mut r, config, v2).await;
        return r;
    }
    let signer = merchant_key(&mut r, config);
    if let Some(signer) = &signer
        && let Some(cert) = &extra.merchant_cert_pem
    {
        merchant_certificate(&mut r, config, signer, cert);
    }
    api_v3_key(&mut r, config);
    let client = match WechatClient::new(config, Metrics::default(), Arc::new(SystemClock)) {
        Ok(c) => Some(c),
        Err(ClientInitError::PlatformKey(e)) => {
            r.fail(
                names::PLATFORM_KEYS,
                format!("WXPAY_PLATFORM_PUBLIC_KEY_FILE does not load: {e}"),
                "use the WeChat Pay public key (pub_key.pem) downloaded from the merchant \
                 platform (API安全 → 微信支付公钥)",
            );
            None
        }
        Err(e) => {
            // The merchant key or APIv3 key line above already says why.
            tracing::debug!(error = %e, "doctor: no client");
            None
        }
    };
    match &client {
        Some(client) => {
            let keys_ok = platform_keys(&mut r, config, client).await;
            signed_request(&mut r, client, keys_ok).await;
        }
        None => {
            if r.check(names::PLATFORM_KEYS).is_none() {
                r.skip(
                    names::PLATFORM_KEYS,
                    "not checked: needs a usable merchant key",
                );
            }
            r.skip(
                names::SIGNED_REQUEST,
                "not checked: needs a usable merchant key",
            );
            r.skip(
                names::ANSWER_SIGNATURE,
                "not checked: needs a usable merchant key",
            );
        }
    }
    notify_url(&mut r, &config.notify_url);
    database(&mut r, config.database_url.as_str()).await;
    r
}

/// The checks of APIv2 mode: the APIv2 key, the client certificate, a signed query
/// (`ORDERNOTEXIST` proves WeChat accepted the signature, and the answer verifies with the
/// same key), the notify URL and the database. The RSA merchant key, the APIv3 key and the
/// platform keys are not used by APIv2.
async fn run_v2(r: &mut Report, config: &Config, v2: &ApiV2Settings) {
    const V2: &str = "not used in APIv2 mode (WXPAY_PAY_API=v2)";
    r.skip(names::MERCHANT_KEY, V2);
    r.skip(names::API_V3_KEY, V2);
    let len = v2.key.expose().len();
    if len == 32 {
        r.pass(
            names::API_V2_KEY,
            format!(
                "WXPAY_API_V2_KEY is 32 bytes; requests are signed and answers verified with {}",
                v2.sign_type
            ),
        );
    } else {
        r.fail(
            names::API_V2_KEY,
            format!("WXPAY_API_V2_KEY is {len} bytes, not 32"),
            "copy the APIv2 key (32 characters) set in the merchant platform (API安全 → API密钥)",
        );
    }
    let client = match WechatClient::new(config, Metrics::default(), Arc::new(SystemClock)) {
        Ok(c) => Some(c),
        Err(e) => {
            r.fail(
                names::CLIENT_CERT,
                e.to_string(),
                "WXPAY_V2_CLIENT_CERT_FILE / WXPAY_V2_CLIENT_KEY_FILE must be the merchant API \
                 certificate apiclient_cert.pem and its key apiclient_key.pem (PEM)",
            );
            None
        }
    };
    r.skip(
        names::PLATFORM_KEYS,
        "APIv2 answers and notifications are signed with the APIv2 key",
    );
    match &client {
        Some(client) => {
            if client.v2().is_some_and(V2Api::has_client_certificate) {
                r.pass(
                    names::CLIENT_CERT,
                    "the merchant API certificate loads; it is presented on /secapi/ (refunds)",
                );
            } else {
                r.fail(
                    names::CLIENT_CERT,
                    "not configured: refunds (/secapi/pay/refund, mutual TLS) will fail",
                    "set WXPAY_V2_CLIENT_CERT_FILE and WXPAY_V2_CLIENT_KEY_FILE to \
                     apiclient_cert.pem and apiclient_key.pem from the merchant platform",
                );
            }
            signed_request(r, client, true).await;
        }
        None => {
            r.skip(names::SIGNED_REQUEST, "not checked: no client");
            r.skip(names::ANSWER_SIGNATURE, "not checked: no client");
        }
    }
    notify_url(r, &config.notify_url);
    database(r, config.database_url.as_str()).await;
}

fn merchant_key(r: &mut Report, config: &Config) -> Option<MerchantSigner> {
    match MerchantSigner::from_pem(
        default_provider(),
        config.merchant_key_pem.expose(),
        &config.mchid,
        &config.merchant_serial,
    ) {
        Ok(s) => {
            r.pass(
                names::MERCHANT_KEY,
                format!(
                    "WXPAY_MERCHANT_KEY_FILE parses (merchant {}, serial {})",
                    config.mchid, config.merchant_serial
                ),
            );
            Some(s)
        }
        Err(e) => {
            r.fail(
                names::MERCHANT_KEY,
                format!("WXPAY_MERCHANT_KEY_FILE does not load: {e}"),
                "use apiclient_key.pem from the merchant API certificate (an RSA private key, \
                 PKCS#8 \"BEGIN PRIVATE KEY\" or PKCS#1 \"BEGIN RSA PRIVATE KEY\")",
            );
            None
        }
    }
}

/// The certificate's serial is `WXPAY_MERCHANT_SERIAL`, and its public key verifies a
/// signature made with the merchant key (both through the core: no crypto here).
fn merchant_certificate(r: &mut Report, config: &Config, signer: &MerchantSigner, pem: &str) {
    let provider = default_provider();
    let mut holder = PlatformKeys::new();
    let serial = match holder.insert_certificate_pem(provider, pem) {
        Ok(s) => s,
        Err(e) => {
            r.fail(
                names::MERCHANT_CERT,
                format!("WXPAY_MERCHANT_CERT_FILE does not load: {e}"),
                "use apiclient_cert.pem (an X.509 certificate PEM) from the merchant platform",
            );
            return;
        }
    };
    if !serial.eq_ignore_ascii_case(&config.merchant_serial) {
        r.fail(
            names::MERCHANT_CERT,
            format!(
                "the certificate's serial is {serial}, WXPAY_MERCHANT_SERIAL is {}",
                config.merchant_serial
            ),
            format!("set WXPAY_MERCHANT_SERIAL={serial} (or use the certificate of that serial)"),
        );
        return;
    }
    let probe = b"wxpay-host doctor: merchant key and certificate match";
    let matches = signer
        .sign(&mut rand_core::UnwrapErr(getrandom::SysRng), probe)
        .and_then(|sig| holder.verify(&serial, probe, &sig));
    match matches {
        Ok(()) => r.pass(
            names::MERCHANT_CERT,
            format!("serial {serial} matches WXPAY_MERCHANT_SERIAL and the merchant key"),
        ),
        Err(_) => r.fail(
            names::MERCHANT_CERT,
            format!("certificate {serial} is not the certificate of WXPAY_MERCHANT_KEY_FILE"),
            "use the apiclient_key.pem and apiclient_cert.pem issued together",
        ),
    }
}

fn api_v3_key(r: &mut Report, config: &Config) {
    let key = config.api_v3_key.expose();
    match ApiV3Key::new(key) {
        Ok(_) => r.pass(names::API_V3_KEY, "WXPAY_API_V3_KEY is 32 bytes"),
        Err(e) => r.fail(
            names::API_V3_KEY,
            format!("WXPAY_API_V3_KEY is {} bytes: {e}", key.len()),
            "copy the APIv3 key (32 characters) set in the merchant platform (API安全 → APIv3密钥)",
        ),
    }
}

/// Certificate mode: the certificates download and verify. Public-key mode: the id is
/// `PUB_KEY_ID_` + digits (the key itself loaded with the client). Combined mode: both.
/// Returns whether answers can be verified.
async fn platform_keys(r: &mut Report, config: &Config, client: &WechatClient) -> bool {
    if let Some((id, _)) = config.platform.public_key() {
        let digits = id.strip_prefix("PUB_KEY_ID_").unwrap_or("");
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            r.fail(
                names::PLATFORM_KEYS,
                format!("WXPAY_PLATFORM_PUBLIC_KEY_ID is {id:?}, not PUB_KEY_ID_ + digits"),
                "copy the public key id shown next to the WeChat Pay public key in the \
                 merchant platform (e.g. PUB_KEY_ID_0114232134912410000000000000)",
            );
            return false;
        }
    }
    match &config.platform {
        PlatformKeySource::PublicKey { id, .. } => {
            r.pass(
                names::PLATFORM_KEYS,
                format!("public-key mode: {id} and its key load"),
            );
            true
        }
        PlatformKeySource::Certificates => match client.refresh_certificates(true).await {
            Ok(n) if n > 0 => {
                let serials = client.with_platform_keys(PlatformKeys::serials).join(", ");
                r.pass(
                    names::PLATFORM_KEYS,
                    format!("certificate mode: {n} platform certificate(s) downloaded and verified ({serials})"),
                );
                true
            }
            Ok(_) => {
                r.fail(
                    names::PLATFORM_KEYS,
                    "certificate mode: /v3/certificates listed no valid certificate",
                    "the merchant may have moved to the WeChat Pay public key: set \
                     WXPAY_PLATFORM_PUBLIC_KEY_FILE and WXPAY_PLATFORM_PUBLIC_KEY_ID",
                );
                false
            }
            Err(e) => {
                r.fail(
                    names::PLATFORM_KEYS,
                    format!("certificate download failed: {e}"),
                    download_fix(&e),
                );
                false
            }
        },
        PlatformKeySource::Combined { id, .. } => match client.refresh_certificates(true).await {
            Ok(_) => {
                let certificates: Vec<String> = client
                    .with_platform_keys(PlatformKeys::serials)
                    .into_iter()
                    .filter(|s| Some(s.as_str()) != client.public_key_id())
                    .collect();
                let detail = if certificates.is_empty() {
                    "WeChat lists no platform certificate any more: once the switch is \
                     complete, set WXPAY_PLATFORM_MODE=public_key"
                        .to_owned()
                } else {
                    format!(
                        "{} platform certificate(s) downloaded and verified ({})",
                        certificates.len(),
                        certificates.join(", ")
                    )
                };
                r.pass(
                    names::PLATFORM_KEYS,
                    format!("combined mode: {id} and its key load; {detail}"),
                );
                true
            }
            Err(e) => {
                r.fail(
                    names::PLATFORM_KEYS,
                    format!("combined mode: certificate download failed: {e}"),
                    download_fix(&e),
                );
                false
            }
        },
    }
}

/// The fix for a failed certificate download.
fn download_fix(e: &UpstreamError) -> &'static str {
    match e {
        UpstreamError::Config(_) => {
            "set WXPAY_PLATFORM_PUBLIC_KEY_FILE and WXPAY_PLATFORM_PUBLIC_KEY_ID \
             (public-key mode)"
        }
        UpstreamError::Verify(wxpay_core::Error::DecryptFailed) => {
            "WXPAY_API_V3_KEY is not the APIv3 key of this merchant: the \
             certificates do not decrypt"
        }
        e if e.wechat_code().is_some_and(|(c, ..)| c == "SIGN_ERROR") => {
            "WeChat refused our request signature: fix the merchant key (see \
             \"signed request\")"
        }
        UpstreamError::Transport(_) | UpstreamError::Busy(_) => {
            "check that WXPAY_API_BASE is reachable from this machine"
        }
        _ => "see the detail",
    }
}

/// Queries an order that does not exist: WeChat answers `ORDER_NOT_EXIST` once it has
/// accepted our signature (and signs that answer), `SIGN_ERROR` otherwise.
async fn signed_request(r: &mut Report, client: &WechatClient, keys_ok: bool) {
    let mut b = [0u8; 12];
    if getrandom::fill(&mut b).is_err() {
        r.fail(
            names::SIGNED_REQUEST,
            "the OS random generator failed",
            "check the system",
        );
        return;
    }
    let no = format!("DOCTOR{}", hex::encode(b));
    let answer_fix = if keys_ok {
        "the answer was not signed by a platform key we hold: check WXPAY_API_BASE points at \
         WeChat Pay (https://api.mch.weixin.qq.com) and the platform keys above"
    } else {
        "fix \"platform keys\" above"
    };
    let verified_with = if client.v2().is_some() {
        "the answer verified with the APIv2 key"
    } else {
        "the answer verified with the platform keys"
    };
    match client.query_order(&no).await {
        Err(e @ UpstreamError::Api { .. }) if e.api_code() == Some("ORDER_NOT_EXIST") => {
            let code = e.wechat_code().map_or("", |(c, ..)| c);
            r.pass(
                names::SIGNED_REQUEST,
                format!("WeChat accepted the signature (query of {no}: {code})"),
            );
            r.pass(names::ANSWER_SIGNATURE, verified_with);
        }
        Err(UpstreamError::Unverified { code, why, .. }) if code == "ORDER_NOT_EXIST" => {
            r.pass(
                names::SIGNED_REQUEST,
                format!("WeChat accepted the signature (query of {no}: ORDER_NOT_EXIST)"),
            );
            r.fail(
                names::ANSWER_SIGNATURE,
                format!("the answer does not verify: {why}"),
                answer_fix,
            );
        }
        Ok(_) => {
            r.pass(
                names::SIGNED_REQUEST,
                format!("WeChat accepted the signature (query of {no})"),
            );
            r.pass(names::ANSWER_SIGNATURE, verified_with);
        }
        Err(UpstreamError::Verify(why)) => {
            // WeChat accepted the request and answered; the answer is what fails.
            r.pass(
                names::SIGNED_REQUEST,
                format!("WeChat answered the query of {no}"),
            );
            r.fail(
                names::ANSWER_SIGNATURE,
                format!("the answer does not verify: {why}"),
                if client.v2().is_some() {
                    "the answer was not signed with WXPAY_API_V2_KEY: check WXPAY_API_BASE points \
                     at WeChat Pay (https://api.mch.weixin.qq.com)"
                } else {
                    answer_fix
                },
            );
        }
        Err(e) => {
            let sign_error = e.wechat_code().is_some_and(|(c, ..)| c == "SIGN_ERROR");
            let v2_sign_error = client.v2().is_some()
                && e.wechat_code().is_some_and(|(_, m, _)| m.contains("签名"));
            let fix = if v2_sign_error {
                "WXPAY_API_V2_KEY must be the APIv2 key set in the merchant platform (API安全 → \
                 API密钥), and WXPAY_V2_SIGN_TYPE the type the merchant uses; the error logged \
                 above shows the SHA-256 of the string that was signed"
            } else if sign_error {
                "WXPAY_MERCHANT_KEY_FILE must be the apiclient_key.pem of the certificate whose \
                 serial is WXPAY_MERCHANT_SERIAL, issued to WXPAY_MCHID, and the clock must be \
                 right; the warning logged above shows the SHA-256 of what was signed and \
                 WeChat's truncated_sign_message"
            } else {
                match &e {
                    UpstreamError::Transport(_) | UpstreamError::Busy(_) => {
                        "check that WXPAY_API_BASE is reachable from this machine"
                    }
                    UpstreamError::RateLimited => "WeChat rate-limited the query: retry later",
                    _ => "see WeChat's code and message",
                }
            };
            r.fail(names::SIGNED_REQUEST, format!("query of {no}: {e}"), fix);
            r.skip(names::ANSWER_SIGNATURE, "not checked: no answer to verify");
        }
    }
}

/// `https://`, no query (WeChat refuses notify URLs with parameters), and a host name that
/// WeChat's servers can reach: not localhost, a private or reserved address, or a name that
/// only resolves inside a network.
fn notify_url(r: &mut Report, value: &str) {
    match check_notify_url(value) {
        Ok(()) => r.pass(
            names::NOTIFY_URL,
            format!("{value} (WeChat calls {value}/notify/pay and {value}/notify/refund)"),
        ),
        Err(why) => r.fail(
            names::NOTIFY_URL,
            format!("WXPAY_NOTIFY_URL={value}: {why}"),
            "use the public https:// address of this host (a domain name with a valid \
             certificate, reachable from the internet), without query parameters",
        ),
    }
}

/// Why `value` cannot be WeChat's notify URL base.
///
/// # Errors
/// A short reason.
pub fn check_notify_url(value: &str) -> Result<(), String> {
    let u = url::Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if u.scheme() != "https" {
        return Err(format!(
            "must be https:// (WeChat Pay only calls https), not {}://",
            u.scheme()
        ));
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not carry query parameters".into());
    }
    match u.host() {
        None => Err("has no host".into()),
        Some(url::Host::Ipv4(ip)) => public_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => public_ip(IpAddr::V6(ip)),
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            const INTERNAL: [&str; 9] = [
                ".localhost",
                ".local",
                ".localdomain",
                ".internal",
                ".lan",
                ".home.arpa",
                ".test",
                ".invalid",
                ".example",
            ];
            if d == "localhost" || INTERNAL.iter().any(|s| d.ends_with(s)) {
                Err(format!("{d} is not a public host name"))
            } else if !d.contains('.') {
                Err(format!(
                    "{d} is a single-label name, not a public host name"
                ))
            } else {
                Ok(())
            }
        }
    }
}

fn public_ip(ip: IpAddr) -> Result<(), String> {
    let private = match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                // 100.64.0.0/10, carrier-grade NAT
                || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                // fc00::/7 unique local, fe80::/10 link-local
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
        }
    };
    if private {
        Err(format!("{ip} is not a public address"))
    } else {
        Ok(())
    }
}

/// Connects (never creating a SQLite file) and compares the applied migrations with the ones
/// this binary carries; nothing is written.
async fn database(r: &mut Report, url: &str) {
    match tokio::time::timeout(DB_TIMEOUT, migrations_state(url)).await {
        Ok(Ok(detail)) => r.pass(names::DATABASE, detail),
        Ok(Err((detail, fix))) => r.fail(names::DATABASE, detail, fix),
        Err(_) => r.fail(
            names::DATABASE,
            format!("no answer within {} s", DB_TIMEOUT.as_secs()),
            "check that WXPAY_DATABASE_URL's server is reachable",
        ),
    }
}

type DbResult = Result<String, (String, String)>;

async fn migrations_state(url: &str) -> DbResult {
    let connect_fix = |e: &dyn fmt::Display| {
        (
            format!("cannot connect: {e}"),
            "check WXPAY_DATABASE_URL (host, credentials, database name; for SQLite the file \
             must exist: `serve` creates it)"
                .to_owned(),
        )
    };
    if url.starts_with("sqlite:") {
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
            .map_err(|e| connect_fix(&e))?
            .create_if_missing(false);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts)
            .await
            .map_err(|e| connect_fix(&e))?;
        let out = compare(&mut conn, &SQLITE_MIGRATIONS, "SQLite").await;
        let _ = conn.close().await;
        out
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .map_err(|e| connect_fix(&e))?;
        let out = compare(&mut conn, &POSTGRES_MIGRATIONS, "PostgreSQL").await;
        let _ = conn.close().await;
        out
    } else {
        Err((
            "unsupported database URL".into(),
            "use sqlite://… or postgres://…".into(),
        ))
    }
}

async fn compare<C: Migrate>(conn: &mut C, known: &Migrator, backend: &str) -> DbResult {
    let table = known.table_name.as_ref();
    let not_migrated = |e: &dyn fmt::Display| {
        (
            format!("no migration history ({e})"),
            "a new database: start `wxpay-host serve` once (it applies the migrations), or \
             check that WXPAY_DATABASE_URL names the right database"
                .to_owned(),
        )
    };
    if let Some(v) = conn
        .dirty_version(table)
        .await
        .map_err(|e| not_migrated(&e))?
    {
        return Err((
            format!("migration {v} failed halfway"),
            "restore the database from a backup taken before the upgrade".into(),
        ));
    }
    let applied = conn
        .list_applied_migrations(table)
        .await
        .map_err(|e| not_migrated(&e))?;
    let ups: Vec<_> = known
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .collect();
    let pending: Vec<i64> = ups
        .iter()
        .filter(|m| !applied.iter().any(|a| a.version == m.version))
        .map(|m| m.version)
        .collect();
    let unknown: Vec<i64> = applied
        .iter()
        .filter(|a| !ups.iter().any(|m| m.version == a.version))
        .map(|a| a.version)
        .collect();
    let changed: Vec<i64> = ups
        .iter()
        .filter(|m| {
            applied
                .iter()
                .any(|a| a.version == m.version && a.checksum != m.checksum)
        })
        .map(|m| m.version)
        .collect();
    if !unknown.is_empty() {
        Err((
            format!("the database has migrations this binary does not know: {unknown:?}"),
            "run the wxpay-host version that migrated this database (or newer)".into(),
        ))
    } else if !changed.is_empty() {
        Err((
            format!("migrations {changed:?} differ from the ones applied"),
            "a migration file was edited after it ran: restore it".into(),
        ))
    } else if !pending.is_empty() {
        Err((
            format!("migrations {pending:?} are not applied yet"),
            "start `wxpay-host serve` once: it applies them at start".into(),
        ))
    } else {
        Ok(format!(
            "{backend} connects; {} migrations applied, as this binary expects",
            applied.len()
        ))
    }
}

/// Parses a captured callback's headers: one `Name: value` per line; blank lines, `#` comments
/// and a leading request line (`POST /notify/pay HTTP/1.1`) are skipped.
///
/// # Errors
/// The first line that is none of these, by number.
pub fn parse_header_lines(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if i == 0 && line.contains(" HTTP/") {
            continue;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(format!("line {}: expected `Name: value`", i + 1));
        };
        let name = name.trim();
        if name.is_empty() || name.contains(' ') {
            return Err(format!("line {}: expected `Name: value`", i + 1));
        }
        out.push((name.to_owned(), value.trim().to_owned()));
    }
    Ok(out)
}

/// Checks a captured v3 notification the way `POST /notify/*` does, one line per step: the
/// headers, the timestamp window (now), the serial, the signature (at the notification's own
/// time, so that an old capture still shows whether it was authentic), the decryption.
pub async fn verify_notification(
    config: &Config,
    headers: &[(String, String)],
    body: &[u8],
) -> Report {
    let mut r = Report::default();
    let client = match WechatClient::new(config, Metrics::default(), Arc::new(SystemClock)) {
        Ok(c) => c,
        Err(e) => {
            r.fail(
                names::PLATFORM_KEYS,
                format!("cannot load the keys: {e}"),
                "run `wxpay-host doctor`",
            );
            return r;
        }
    };
    if let Some(v2) = client.v2() {
        verify_v2_notification(&mut r, v2, &config.appid, body);
        return r;
    }
    if client.certificate_mode()
        && let Err(e) = client.refresh_certificates(true).await
    {
        r.fail(
            names::PLATFORM_KEYS,
            format!("cannot download the platform certificates: {e}"),
            "run `wxpay-host doctor`",
        );
        return r;
    }
    let wx =
        match WechatpayHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
            Ok(wx) => {
                r.pass(
                    names::HEADERS,
                    format!(
                        "Wechatpay-Serial {}, Wechatpay-Timestamp {}",
                        wx.serial, wx.timestamp
                    ),
                );
                wx
            }
            Err(e) => {
                r.fail(
                    names::HEADERS,
                    e.to_string(),
                    "the headers file needs Wechatpay-Timestamp, -Nonce, -Signature and -Serial \
                 as received, one `Name: value` per line",
                );
                return r;
            }
        };
    let now = u64::try_from(SystemClock.now()).unwrap_or(0);
    let skew = wx.timestamp.abs_diff(now);
    if skew <= MAX_CLOCK_SKEW {
        r.pass(
            names::TIMESTAMP,
            format!("{skew} s from now (at most {MAX_CLOCK_SKEW} s)"),
        );
    } else {
        r.fail(
            names::TIMESTAMP,
            format!("{skew} s from now (at most {MAX_CLOCK_SKEW} s): the host refuses it now"),
            "for a live callback, check the server clock (NTP); a capture older than 5 minutes \
             is refused as a replay, but the checks below still tell whether it was authentic",
        );
    }
    let known = client.with_platform_keys(|k| k.contains(&wx.serial));
    if known {
        r.pass(
            names::SERIAL,
            format!("{} is a platform key we hold", wx.serial),
        );
    } else {
        let held = client.with_platform_keys(PlatformKeys::serials).join(", ");
        r.fail(
            names::SERIAL,
            format!("{} is not among the keys we hold ({held})", wx.serial),
            if wx.serial.starts_with("PUB_KEY_ID_") {
                "the callback is signed with the WeChat Pay public key: set \
                 WXPAY_PLATFORM_PUBLIC_KEY_FILE and WXPAY_PLATFORM_PUBLIC_KEY_ID to it"
            } else {
                "the callback is signed with a platform certificate: use certificate mode \
                 (unset WXPAY_PLATFORM_PUBLIC_KEY_*), or it is for another merchant"
            },
        );
        r.skip(names::SIGNATURE, "not checked: unknown serial");
        r.skip(names::DECRYPTION, "not checked: unknown serial");
        return r;
    }
    // At the notification's own time: the window is the line above.
    let at = wx.timestamp;
    let signed = client.with_platform_keys(|k| v3::verify_response(k, &wx, body, at));
    let body = match signed {
        Ok(()) => {
            r.pass(names::SIGNATURE, "verifies over the exact body bytes");
            body
        }
        Err(e) => {
            // The most common capture mistake: an editor added a final newline.
            let trimmed = body.strip_suffix(b"\n").filter(|t| {
                client
                    .with_platform_keys(|k| v3::verify_response(k, &wx, t, at))
                    .is_ok()
            });
            let fix = if trimmed.is_some() {
                "the body file ends with a newline the callback did not have: save the body \
                 exactly as received (the signature covers every byte)"
            } else if matches!(e, wxpay_core::Error::SignTestProbe) {
                "a WECHATPAY/SIGNTEST probe: WeChat checks that merchants refuse it (correct)"
            } else {
                "the body or the headers are not exactly those received, or it was not signed \
                 by WeChat Pay"
            };
            r.fail(names::SIGNATURE, format!("does not verify: {e}"), fix);
            r.skip(
                names::DECRYPTION,
                "not checked: the signature must verify first",
            );
            return r;
        }
    };
    let Some(api_v3_key) = client.api_v3_key() else {
        r.skip(names::DECRYPTION, "not checked: no APIv3 key");
        return r;
    };
    let decrypted =
        client.with_platform_keys(|k| v3::verify_notification(k, api_v3_key, &wx, body, at));
    match decrypted {
        Ok(n) => {
            let what = n
                .transaction()
                .map(|t| format!("order {} {}", t.out_trade_no, t.trade_state))
                .or_else(|_| {
                    n.refund()
                        .map(|f| format!("refund {} {}", f.out_refund_no, f.refund_status))
                })
                .unwrap_or_else(|_| "an unknown resource".into());
            r.pass(
                names::DECRYPTION,
                format!("{} (id {}): {what}", n.event_type, n.id),
            );
        }
        Err(e) => r.fail(
            names::DECRYPTION,
            format!("does not decrypt: {e}"),
            "WXPAY_API_V3_KEY differs from the APIv3 key set in the merchant platform",
        ),
    }
    r
}

/// APIv2: a payment notification's signature (configured sign type), or a refund
/// notification's `req_info` decryption. The headers play no part in APIv2.
fn verify_v2_notification(r: &mut Report, v2: &V2Api, appid: &str, body: &[u8]) {
    let Some(fields) = std::str::from_utf8(body)
        .ok()
        .and_then(|x| wxpay_core::v2::parse_xml(x).ok())
    else {
        r.fail(
            names::HEADERS,
            "the body is not an APIv2 XML document",
            "save the body exactly as received",
        );
        return;
    };
    r.skip(
        names::HEADERS,
        "APIv2 notifications carry no Wechatpay headers",
    );
    r.skip(names::TIMESTAMP, "APIv2 notifications carry no timestamp");
    r.skip(
        names::SERIAL,
        "APIv2 notifications are signed with the APIv2 key",
    );
    if fields.contains_key("req_info") {
        r.skip(
            names::SIGNATURE,
            "APIv2 refund notifications are not signed: req_info decrypting is the check",
        );
        match v2.refund_notification(body, appid) {
            Ok(n) => r.pass(
                names::DECRYPTION,
                format!(
                    "refund {} {} (order {})",
                    n.notice.out_refund_no, n.notice.refund_status, n.notice.out_trade_no
                ),
            ),
            Err(e) => r.fail(
                names::DECRYPTION,
                format!("does not decrypt: {e}"),
                "WXPAY_API_V2_KEY differs from the APIv2 key set in the merchant platform, or \
                 the notification is for another mini-program",
            ),
        }
        return;
    }
    match v2.pay_notification(body) {
        Ok(n) => r.pass(
            names::SIGNATURE,
            format!(
                "verifies with {}: order {} {} ({})",
                v2.sign_type(),
                n.transaction.out_trade_no,
                n.transaction.trade_state,
                n.id
            ),
        ),
        Err(e) => r.fail(
            names::SIGNATURE,
            format!("does not verify with {}: {e}", v2.sign_type()),
            "WXPAY_API_V2_KEY or WXPAY_V2_SIGN_TYPE differ from the merchant's, or the body is \
             not exactly as received",
        ),
    }
    r.skip(
        names::DECRYPTION,
        "APIv2 payment notifications are not encrypted",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_urls() {
        for ok in [
            "https://pay.example.com",
            "https://pay.example.com/base",
            "https://8.8.8.8",
        ] {
            assert_eq!(check_notify_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://pay.example.com",
            "https://localhost",
            "https://127.0.0.1:8443",
            "https://10.1.2.3",
            "https://192.168.1.1",
            "https://100.64.0.1",
            "https://[::1]",
            "https://[fd00::1]",
            "https://intranet",
            "https://pay.internal",
            "https://pay.example.com/?a=1",
            "not a url",
        ] {
            assert!(check_notify_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn header_lines() {
        let h = parse_header_lines(
            "POST /notify/pay HTTP/1.1\r\n# captured\r\nWechatpay-Nonce: abc\r\n\r\nX-A: b: c\n",
        )
        .expect("parses");
        assert_eq!(
            h,
            [
                ("Wechatpay-Nonce".to_owned(), "abc".to_owned()),
                ("X-A".to_owned(), "b: c".to_owned())
            ]
        );
        assert!(parse_header_lines("no colon here").is_err());
    }
}
