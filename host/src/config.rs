//! Configuration from `WXPAY_*` environment variables and an optional TOML file.
//!
//! Precedence: environment variable, then the TOML file named by `WXPAY_CONFIG` (keys are the
//! variable names without the `WXPAY_` prefix, in lower case, e.g. `listen = "0.0.0.0:8080"`),
//! then the documented default. Anything missing or malformed stops start-up with a
//! [`ConfigError`] that names the variable.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use zeroize::Zeroizing;

/// Default listen address (`WXPAY_LISTEN`).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default database (`WXPAY_DATABASE_URL`): a SQLite file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://wxpay.db";
/// Default WeChat Pay API base (`WXPAY_API_BASE`).
pub const DEFAULT_API_BASE: &str = "https://api.mch.weixin.qq.com";
/// Default WeChat login API base (`WXPAY_LOGIN_BASE`).
pub const DEFAULT_LOGIN_BASE: &str = "https://api.weixin.qq.com";

/// A secret string: zeroized on drop, `Debug` prints `[redacted]`.
#[derive(Clone, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a secret value.
    #[must_use]
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }

    /// The secret value; callers must not log it.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// A database URL whose `Debug` hides the password (`postgres://user:***@host/db`).
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// The URL, for connecting; callers must not log it.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for DatabaseUrl {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("***"));
                write!(f, "{:?}", u.as_str())
            }
            Ok(u) if u.query().is_some() => {
                // Connection options may carry a password too.
                write!(
                    f,
                    "{:?}",
                    format!(
                        "{}://{}{}?***",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                )
            }
            _ => write!(f, "{:?}", self.0),
        }
    }
}

/// The internet-facing edge: listeners, timeouts and throttles.
#[derive(Clone, Debug)]
pub struct Edge {
    /// `WXPAY_ADMIN_LISTEN`: the private listener for `/admin/*`, `/metrics` and
    /// `/openapi.json` (default `127.0.0.1:8081`; keep it off the internet).
    pub admin_listen: SocketAddr,
    /// `WXPAY_LOGIN_RATE_PER_MIN`: logins per client IP and minute (default 30; 1..=10000).
    pub login_rate_per_min: u32,
    /// `WXPAY_TRUSTED_PROXIES`: comma-separated IPs of reverse proxies whose
    /// `X-Forwarded-For` is believed (default none: the socket's peer is the client).
    pub trusted_proxies: Vec<IpAddr>,
    /// `WXPAY_HEADER_TIMEOUT_MS`: time a client has to send its request headers (default
    /// 10000; 100..=60000).
    pub header_timeout: Duration,
    /// `WXPAY_REQUEST_TIMEOUT_MS`: time to answer one request (default 30000; 1000..=120000).
    pub request_timeout: Duration,
    /// `WXPAY_MAX_CONNECTIONS`: open connections per listener (default 1024; 1..=100000).
    pub max_connections: usize,
    /// `WXPAY_MAX_IN_FLIGHT`: requests handled at once per listener (default 256; 1..=10000).
    pub max_in_flight: usize,
}

impl Default for Edge {
    fn default() -> Self {
        Self {
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            login_rate_per_min: 30,
            trusted_proxies: Vec::new(),
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_in_flight: 256,
        }
    }
}

/// How the platform (WeChat Pay) signing keys are obtained (`WXPAY_PLATFORM_MODE`).
#[derive(Clone, Debug)]
pub enum PlatformKeySource {
    /// `public_key`: a WeChat Pay public key PEM and its id (`PUB_KEY_ID_…`).
    PublicKey {
        /// The key id sent in `Wechatpay-Serial`.
        id: String,
        /// SPKI PEM text.
        pem: String,
    },
    /// `certificate`: platform certificates are downloaded from `/v3/certificates`.
    Certificates,
    /// `combined`, for the switch from platform certificates to the WeChat Pay public key
    /// (WeChat Pay "如何从平台证书切换成微信支付公钥"): the public key *and* the downloaded
    /// certificates are held, so that answers and notifications verify under either serial
    /// while WeChat moves from one to the other; requests name the public key in
    /// `Wechatpay-Serial`, asking WeChat to sign their answers with it.
    Combined {
        /// The public key id (`PUB_KEY_ID_…`), sent in `Wechatpay-Serial`.
        id: String,
        /// SPKI PEM text of the public key.
        pem: String,
    },
}

impl PlatformKeySource {
    /// The `WXPAY_PLATFORM_MODE` value of this source.
    #[must_use]
    pub fn mode(&self) -> &'static str {
        match self {
            Self::PublicKey { .. } => "public_key",
            Self::Certificates => "certificate",
            Self::Combined { .. } => "combined",
        }
    }

    /// The configured public key `(id, pem)`, in public-key and combined mode.
    #[must_use]
    pub fn public_key(&self) -> Option<(&str, &str)> {
        match self {
            Self::PublicKey { id, pem } | Self::Combined { id, pem } => Some((id, pem)),
            Self::Certificates => None,
        }
    }

    /// Whether platform certificates are downloaded (certificate and combined mode).
    #[must_use]
    pub fn downloads_certificates(&self) -> bool {
        matches!(self, Self::Certificates | Self::Combined { .. })
    }
}

/// Which WeChat Pay API the host speaks (`WXPAY_PAY_API`).
#[derive(Clone, Debug, Default)]
pub enum PayApi {
    /// `v3` (default): JSON, RSA-signed requests and answers, AES-GCM resources.
    #[default]
    V3,
    /// `v2`: XML signed with the APIv2 key (`MD5` or `HMAC-SHA256`), refunds over mutual TLS.
    V2(ApiV2Settings),
}

/// The APIv2 settings (`WXPAY_PAY_API=v2`).
#[derive(Clone, Debug)]
pub struct ApiV2Settings {
    /// `WXPAY_API_V2_KEY`: the 32-byte APIv2 key (required in v2 mode).
    pub key: Secret,
    /// `WXPAY_V2_SIGN_TYPE`: `MD5` (default) or `HMAC-SHA256`. Requests are signed with it and
    /// answers verified with it, whatever type an answer claims.
    pub sign_type: wxpay_core::v2::SignType,
    /// Contents of `WXPAY_V2_CLIENT_CERT_FILE`: the merchant API certificate
    /// (`apiclient_cert.pem`) presented on `/secapi/` (refunds). Refunds need it.
    pub client_cert_pem: Option<String>,
    /// Contents of `WXPAY_V2_CLIENT_KEY_FILE`: its private key (`apiclient_key.pem`).
    pub client_key_pem: Option<Secret>,
    /// `WXPAY_V2_SPBILL_CREATE_IP`: the `spbill_create_ip` of `unifiedorder`, the IP of the
    /// machine calling WeChat Pay (default `127.0.0.1`).
    pub spbill_create_ip: String,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("missing configuration: {0} must be set")]
    Missing(&'static str),
    /// A variable is set but its value is unusable.
    #[error("invalid configuration: {var}: {reason}")]
    Invalid {
        /// The variable name.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The host configuration. See the crate README for the table of variables and defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// `WXPAY_LISTEN`: socket address to listen on (default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// `WXPAY_DATABASE_URL`: `sqlite://…` (default `sqlite://wxpay.db`) or `postgres://…`.
    pub database_url: DatabaseUrl,
    /// `WXPAY_APPID`: mini-program app id (required).
    pub appid: String,
    /// `WXPAY_APPSECRET`: mini-program app secret for `jscode2session` (required).
    pub appsecret: Secret,
    /// `WXPAY_MCHID`: merchant id (required).
    pub mchid: String,
    /// `WXPAY_PAY_API`: `v3` (default) or `v2` with its settings.
    pub pay_api: PayApi,
    /// `WXPAY_MERCHANT_SERIAL`: serial number of the merchant API certificate (required in v3
    /// mode; empty in v2 mode).
    pub merchant_serial: String,
    /// Contents of `WXPAY_MERCHANT_KEY_FILE`: merchant private key PEM (required in v3 mode;
    /// empty in v2 mode).
    pub merchant_key_pem: Secret,
    /// `WXPAY_API_V3_KEY`: the 32-byte APIv3 key (required in v3 mode; empty in v2 mode).
    pub api_v3_key: Secret,
    /// `WXPAY_PLATFORM_MODE` (`certificate`, `public_key` or `combined`) with
    /// `WXPAY_PLATFORM_PUBLIC_KEY_FILE` + `WXPAY_PLATFORM_PUBLIC_KEY_ID` (required by
    /// `public_key` and `combined`). Default: `public_key` when the public key is configured,
    /// else `certificate`; `certificate` ignores a configured public key (a way back).
    pub platform: PlatformKeySource,
    /// `WXPAY_NOTIFY_URL`: public HTTPS base URL WeChat calls (required); the pay notification
    /// goes to `{notify_url}/notify/pay`, refunds to `{notify_url}/notify/refund`.
    pub notify_url: String,
    /// `WXPAY_ADMIN_TOKEN`: bearer token of the back-office API (required, ≥ 32 characters,
    /// not trivially repetitive).
    pub admin_token: Secret,
    /// `WXPAY_API_BASE`: WeChat Pay API base (default `https://api.mch.weixin.qq.com`).
    pub api_base: String,
    /// `WXPAY_LOGIN_BASE`: login API base (default `https://api.weixin.qq.com`).
    pub login_base: String,
    /// Contents of `WXPAY_API_CA_FILE` (optional): an extra trusted root certificate (PEM) for
    /// the API and login bases, e.g. a local simulator's or a corporate proxy's; the system's
    /// roots stay trusted.
    pub api_ca_pem: Option<String>,
    /// `WXPAY_ORDER_EXPIRE_SECS`: default order lifetime (default 1800).
    pub order_expire: Duration,
    /// `WXPAY_SESSION_TTL_SECS`: lifetime of a login token (default 7200).
    pub session_ttl: Duration,
    /// `WXPAY_RECONCILE_INTERVAL_SECS`: how often the reconciler runs (default 30).
    pub reconcile_interval: Duration,
    /// `WXPAY_RECONCILE_AFTER_SECS`: unpaid orders older than this are queried (default 60).
    pub reconcile_after: Duration,
    /// `WXPAY_CERT_REFRESH_SECS`: certificate-mode refresh period (default 43200).
    pub cert_refresh_interval: Duration,
    /// `WXPAY_HTTP_TIMEOUT_MS`: timeout of one upstream request (default 10000; 100..=60000).
    pub http_timeout: Duration,
    /// `WXPAY_UPSTREAM_RETRIES`: retries after a transport error or 5xx (default 2; 0..=5).
    pub upstream_retries: u32,
    /// `WXPAY_BODY_LIMIT_BYTES`: maximum request body (default 65536; 1024..=1048576).
    pub body_limit: usize,
    /// `WXPAY_RECORDED_PAYMENTS`: how many committed payments this process remembers, so that a
    /// repeat of one is answered without the database (default 32768; 0..=1048576, 0 turns it
    /// off).
    pub recorded_payments: usize,
    /// Listeners, timeouts and throttles of the internet-facing side.
    pub edge: Edge,
    /// `WXPAY_DATA_KEY`: 32-byte key sealing session keys at rest (default: derived from the
    /// APIv3 key with HKDF).
    pub data_key: Option<Secret>,
}

type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl Config {
    /// Loads the configuration from the process environment (and `WXPAY_CONFIG`, if set).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process(Self::from_sources)
    }

    /// Loads the configuration from a variable lookup and an optional parsed TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first missing or malformed variable.
    pub fn from_sources(
        env: &Lookup<'_>,
        file: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let src = Source { env, file };
        let pay_api = pay_api(&src)?;
        let platform = platform_source(&src)?;
        let (merchant_key_pem, merchant_serial, api_v3_key) = match pay_api {
            PayApi::V3 => {
                let key_path = src.required("WXPAY_MERCHANT_KEY_FILE")?;
                let pem = Secret::new(read_file("WXPAY_MERCHANT_KEY_FILE", &key_path)?);
                let api_v3_key = Secret::new(src.required("WXPAY_API_V3_KEY")?);
                if api_v3_key.expose().len() != 32 {
                    return Err(invalid("WXPAY_API_V3_KEY", "must be exactly 32 bytes"));
                }
                (pem, src.required("WXPAY_MERCHANT_SERIAL")?, api_v3_key)
            }
            // APIv2 signs with the APIv2 key alone: the RSA key, its serial and the APIv3 key
            // are not used.
            PayApi::V2(_) => (Secret::default(), String::new(), Secret::default()),
        };
        let api_ca_pem = match src.get("WXPAY_API_CA_FILE") {
            Some(path) => Some(read_file("WXPAY_API_CA_FILE", &path)?),
            None => None,
        };
        let admin_token = Secret::new(src.required("WXPAY_ADMIN_TOKEN")?);
        check_admin_token(admin_token.expose())?;
        let notify_url = src.required("WXPAY_NOTIFY_URL")?;
        check_url("WXPAY_NOTIFY_URL", &notify_url, false)?;
        let api_base = src.or("WXPAY_API_BASE", DEFAULT_API_BASE);
        check_url("WXPAY_API_BASE", &api_base, true)?;
        let login_base = src.or("WXPAY_LOGIN_BASE", DEFAULT_LOGIN_BASE);
        check_url("WXPAY_LOGIN_BASE", &login_base, true)?;
        let trusted_proxies = match src.get("WXPAY_TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(|p| {
                    p.parse::<IpAddr>()
                        .map_err(|e| invalid("WXPAY_TRUSTED_PROXIES", format!("{p:?}: {e}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let data_key = src.get("WXPAY_DATA_KEY").map(Secret::new);
        if data_key.as_ref().is_some_and(|k| k.expose().len() != 32) {
            return Err(invalid("WXPAY_DATA_KEY", "must be exactly 32 bytes"));
        }
        let edge = Edge {
            admin_listen: src.parse("WXPAY_ADMIN_LISTEN", "127.0.0.1:8081")?,
            login_rate_per_min: src.bounded("WXPAY_LOGIN_RATE_PER_MIN", 30, 1, 10_000)?,
            trusted_proxies,
            header_timeout: Duration::from_millis(src.bounded(
                "WXPAY_HEADER_TIMEOUT_MS",
                10_000,
                100,
                60_000,
            )?),
            request_timeout: Duration::from_millis(src.bounded(
                "WXPAY_REQUEST_TIMEOUT_MS",
                30_000,
                1_000,
                120_000,
            )?),
            max_connections: src.bounded("WXPAY_MAX_CONNECTIONS", 1024, 1, 100_000)?,
            max_in_flight: src.bounded("WXPAY_MAX_IN_FLIGHT", 256, 1, 10_000)?,
        };
        let database_url = src.or("WXPAY_DATABASE_URL", DEFAULT_DATABASE_URL);
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            return Err(invalid(
                "WXPAY_DATABASE_URL",
                "must start with sqlite: or postgres://",
            ));
        }
        Ok(Self {
            listen: src.parse("WXPAY_LISTEN", DEFAULT_LISTEN)?,
            database_url: database_url.into(),
            appid: src.required("WXPAY_APPID")?,
            appsecret: Secret::new(src.required("WXPAY_APPSECRET")?),
            mchid: src.required("WXPAY_MCHID")?,
            pay_api,
            merchant_serial,
            merchant_key_pem,
            api_v3_key,
            platform,
            notify_url: notify_url.trim_end_matches('/').to_owned(),
            admin_token,
            api_base: api_base.trim_end_matches('/').to_owned(),
            login_base: login_base.trim_end_matches('/').to_owned(),
            api_ca_pem,
            order_expire: src.secs("WXPAY_ORDER_EXPIRE_SECS", 1800)?,
            session_ttl: src.secs("WXPAY_SESSION_TTL_SECS", 7200)?,
            reconcile_interval: src.secs("WXPAY_RECONCILE_INTERVAL_SECS", 30)?,
            reconcile_after: src.secs("WXPAY_RECONCILE_AFTER_SECS", 60)?,
            cert_refresh_interval: src.secs("WXPAY_CERT_REFRESH_SECS", 43_200)?,
            http_timeout: Duration::from_millis(src.bounded(
                "WXPAY_HTTP_TIMEOUT_MS",
                10_000,
                100,
                60_000,
            )?),
            upstream_retries: src.bounded("WXPAY_UPSTREAM_RETRIES", 2, 0, 5)?,
            body_limit: src.bounded("WXPAY_BODY_LIMIT_BYTES", 65_536, 1_024, 1_048_576)?,
            recorded_payments: src.bounded("WXPAY_RECORDED_PAYMENTS", 32_768, 0, 1_048_576)?,
            edge,
            data_key,
        })
    }
}

impl Config {
    /// The secret the data key is derived from when `WXPAY_DATA_KEY` is not set: the APIv3
    /// key, or the APIv2 key in v2 mode (both 32 bytes, both known only to the merchant).
    #[must_use]
    pub fn root_secret(&self) -> &Secret {
        match &self.pay_api {
            PayApi::V3 => &self.api_v3_key,
            PayApi::V2(v2) => &v2.key,
        }
    }

    /// The APIv2 settings, in v2 mode.
    #[must_use]
    pub fn api_v2(&self) -> Option<&ApiV2Settings> {
        match &self.pay_api {
            PayApi::V3 => None,
            PayApi::V2(v2) => Some(v2),
        }
    }
}

/// `WXPAY_PAY_API` and, for `v2`, its settings (see [`PayApi`]).
fn pay_api(src: &Source<'_>) -> Result<PayApi, ConfigError> {
    const VAR: &str = "WXPAY_PAY_API";
    match src
        .get(VAR)
        .map(|m| m.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("v3") => Ok(PayApi::V3),
        Some("v2") => {
            let key = Secret::new(src.required("WXPAY_API_V2_KEY")?);
            if key.expose().len() != 32 {
                return Err(invalid("WXPAY_API_V2_KEY", "must be exactly 32 bytes"));
            }
            let sign_type = src
                .or("WXPAY_V2_SIGN_TYPE", "MD5")
                .trim()
                .to_ascii_uppercase()
                .parse()
                .map_err(|_| invalid("WXPAY_V2_SIGN_TYPE", "must be MD5 or HMAC-SHA256"))?;
            let (client_cert_pem, client_key_pem) = match (
                src.get("WXPAY_V2_CLIENT_CERT_FILE"),
                src.get("WXPAY_V2_CLIENT_KEY_FILE"),
            ) {
                (Some(cert), Some(key)) => (
                    Some(read_file("WXPAY_V2_CLIENT_CERT_FILE", &cert)?),
                    Some(Secret::new(read_file("WXPAY_V2_CLIENT_KEY_FILE", &key)?)),
                ),
                (None, None) => (None, None),
                (Some(_), None) => return Err(ConfigError::Missing("WXPAY_V2_CLIENT_KEY_FILE")),
                (None, Some(_)) => return Err(ConfigError::Missing("WXPAY_V2_CLIENT_CERT_FILE")),
            };
            let spbill_create_ip = src.or("WXPAY_V2_SPBILL_CREATE_IP", "127.0.0.1");
            spbill_create_ip
                .parse::<IpAddr>()
                .map_err(|e| invalid("WXPAY_V2_SPBILL_CREATE_IP", e.to_string()))?;
            Ok(PayApi::V2(ApiV2Settings {
                key,
                sign_type,
                client_cert_pem,
                client_key_pem,
                spbill_create_ip,
            }))
        }
        Some(other) => Err(invalid(VAR, format!("{other:?}: must be v3 or v2"))),
    }
}

/// Settings read only by `wxpay-host doctor`. Kept out of [`Config`]: `serve` does not need
/// them, and a missing one must not stop a server.
#[derive(Clone, Debug, Default)]
pub struct DoctorConfig {
    /// Contents of `WXPAY_MERCHANT_CERT_FILE` (optional): the merchant API certificate
    /// (`apiclient_cert.pem`), checked against the merchant key and `WXPAY_MERCHANT_SERIAL`.
    pub merchant_cert_pem: Option<String>,
}

impl DoctorConfig {
    /// Loads the doctor's settings from the process environment (and `WXPAY_CONFIG`), with
    /// the same precedence as [`Config::from_env`].
    ///
    /// # Errors
    /// [`ConfigError`] naming an unreadable file.
    pub fn from_env() -> Result<Self, ConfigError> {
        from_process(Self::from_sources)
    }

    /// Loads the doctor's settings from a variable lookup and an optional parsed TOML file.
    ///
    /// # Errors
    /// [`ConfigError`] naming an unreadable file.
    pub fn from_sources(
        env: &Lookup<'_>,
        file: Option<&BTreeMap<String, String>>,
    ) -> Result<Self, ConfigError> {
        let src = Source { env, file };
        let merchant_cert_pem = match src.get("WXPAY_MERCHANT_CERT_FILE") {
            Some(path) => Some(read_file("WXPAY_MERCHANT_CERT_FILE", &path)?),
            None => None,
        };
        Ok(Self { merchant_cert_pem })
    }
}

/// `WXPAY_PLATFORM_MODE` and the public key variables (see [`Config::platform`]).
fn platform_source(src: &Source<'_>) -> Result<PlatformKeySource, ConfigError> {
    const MODE: &str = "WXPAY_PLATFORM_MODE";
    let public_key = match (
        src.get("WXPAY_PLATFORM_PUBLIC_KEY_FILE"),
        src.get("WXPAY_PLATFORM_PUBLIC_KEY_ID"),
    ) {
        (Some(path), Some(id)) => Some((
            id.trim().to_owned(),
            read_file("WXPAY_PLATFORM_PUBLIC_KEY_FILE", &path)?,
        )),
        (None, None) => None,
        (Some(_), None) => return Err(ConfigError::Missing("WXPAY_PLATFORM_PUBLIC_KEY_ID")),
        (None, Some(_)) => return Err(ConfigError::Missing("WXPAY_PLATFORM_PUBLIC_KEY_FILE")),
    };
    let mode = src.get(MODE).map(|m| m.trim().to_ascii_lowercase());
    let needs_key = |mode: &str| {
        invalid(
            MODE,
            format!(
                "{mode} requires WXPAY_PLATFORM_PUBLIC_KEY_ID and WXPAY_PLATFORM_PUBLIC_KEY_FILE"
            ),
        )
    };
    match (mode.as_deref(), public_key) {
        (None, Some((id, pem))) | (Some("public_key"), Some((id, pem))) => {
            Ok(PlatformKeySource::PublicKey { id, pem })
        }
        (None | Some("certificate"), _) => Ok(PlatformKeySource::Certificates),
        (Some("combined"), Some((id, pem))) => Ok(PlatformKeySource::Combined { id, pem }),
        (Some(m @ ("public_key" | "combined")), None) => Err(needs_key(m)),
        (Some(other), _) => Err(invalid(
            MODE,
            format!("{other:?}: must be certificate, public_key or combined"),
        )),
    }
}

/// Runs `load` on the process environment and the TOML file named by `WXPAY_CONFIG` (if set).
fn from_process<T>(
    load: impl FnOnce(&Lookup<'_>, Option<&BTreeMap<String, String>>) -> Result<T, ConfigError>,
) -> Result<T, ConfigError> {
    let file = match std::env::var("WXPAY_CONFIG") {
        Ok(path) => Some(read_toml(&path)?),
        Err(_) => None,
    };
    let env = |k: &str| std::env::var(k).ok();
    load(&env, file.as_ref())
}

struct Source<'a> {
    env: &'a Lookup<'a>,
    file: Option<&'a BTreeMap<String, String>>,
}

impl Source<'_> {
    fn get(&self, var: &str) -> Option<String> {
        let from_env = (self.env)(var).filter(|v| !v.is_empty());
        from_env.or_else(|| {
            let key = var.trim_start_matches("WXPAY_").to_ascii_lowercase();
            self.file?.get(&key).cloned()
        })
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing(var))
    }

    fn or(&self, var: &str, default: &str) -> String {
        self.get(var).unwrap_or_else(|| default.to_owned())
    }

    fn parse<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: &str,
    ) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        self.or(var, default)
            .trim()
            .parse()
            .map_err(|e: T::Err| invalid(var, e.to_string()))
    }

    /// A whole number in `min..=max` (an out-of-range value is a start-up error naming it).
    fn bounded<T>(&self, var: &'static str, default: T, min: T, max: T) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let v: T = self.parse(var, &default.to_string())?;
        if v < min || v > max {
            return Err(invalid(var, format!("must be between {min} and {max}")));
        }
        Ok(v)
    }

    fn secs(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse::<u64>(var, &default.to_string())
            .map(Duration::from_secs)
    }
}

fn invalid(var: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        var,
        reason: reason.into(),
    }
}

/// An `http(s)` URL; with `tls_unless_loopback`, plain `http` only for a loopback host (the
/// simulator, tests): secrets such as the AppSecret travel in these requests.
fn check_url(var: &'static str, value: &str, tls_unless_loopback: bool) -> Result<(), ConfigError> {
    let u = url::Url::parse(value).map_err(|e| invalid(var, e.to_string()))?;
    match u.scheme() {
        "https" => Ok(()),
        "http" if !tls_unless_loopback => Ok(()),
        "http" => {
            let loopback = match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(d)) => d == "localhost",
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(invalid(
                    var,
                    "must be https:// (http:// only for a loopback host)",
                ))
            }
        }
        _ => Err(invalid(var, "must be an http(s) URL")),
    }
}

/// At least 32 characters, at least 8 distinct ones, and not a short pattern repeated: a
/// token that guards refunds must not be guessable.
fn check_admin_token(t: &str) -> Result<(), ConfigError> {
    let bytes = t.as_bytes();
    let distinct = bytes
        .iter()
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let repeated = (1..=bytes.len() / 2)
        .any(|k| bytes.len().is_multiple_of(k) && bytes.chunks(k).all(|c| c == &bytes[..k]));
    if bytes.len() < 32 {
        Err(invalid(
            "WXPAY_ADMIN_TOKEN",
            "must be at least 32 characters",
        ))
    } else if distinct < 8 || repeated {
        Err(invalid(
            "WXPAY_ADMIN_TOKEN",
            "is trivially repetitive: use a random token (e.g. openssl rand -hex 32)",
        ))
    } else {
        Ok(())
    }
}

fn read_file(var: &'static str, path: &str) -> Result<String, ConfigError> {
    std::fs::read_to_string(PathBuf::from(path))
        .map_err(|e| invalid(var, format!("cannot read {path}: {e}")))
}

fn read_toml(path: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let text = read_file("WXPAY_CONFIG", path)?;
    let table: toml::Table =
        toml::from_str(&text).map_err(|e| invalid("WXPAY_CONFIG", e.to_string()))?;
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let s = match v {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            other => {
                return Err(invalid(
                    "WXPAY_CONFIG",
                    format!("{k}: unsupported value {other}"),
                ));
            }
        };
        out.insert(k.to_ascii_lowercase(), s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &std::path::Path) -> BTreeMap<&'static str, String> {
        let key = dir.join("key.pem");
        std::fs::write(&key, "PEM").expect("write temp file");
        BTreeMap::from([
            ("WXPAY_APPID", "wx1".to_owned()),
            ("WXPAY_APPSECRET", "s".to_owned()),
            ("WXPAY_MCHID", "1900000001".to_owned()),
            ("WXPAY_MERCHANT_SERIAL", "ABC".to_owned()),
            ("WXPAY_MERCHANT_KEY_FILE", key.display().to_string()),
            (
                "WXPAY_API_V3_KEY",
                "0123456789abcdef0123456789abcdef".to_owned(),
            ),
            ("WXPAY_NOTIFY_URL", "https://example.invalid/".to_owned()),
            (
                "WXPAY_ADMIN_TOKEN",
                "admin-token-0123456789-abcdefghij".to_owned(),
            ),
        ])
    }

    fn load(vars: &BTreeMap<&'static str, String>) -> Result<Config, ConfigError> {
        let env = |k: &str| vars.get(k).cloned();
        Config::from_sources(&env, None)
    }

    fn tmp() -> PathBuf {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).expect("os rng");
        let d = std::env::temp_dir().join(format!("wxpay-cfg-{}", hex::encode(b)));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn defaults_apply() {
        let d = tmp();
        let c = load(&base(&d)).expect("config");
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.database_url.as_str(), DEFAULT_DATABASE_URL);
        assert_eq!(c.edge.admin_listen.to_string(), "127.0.0.1:8081");
        assert_eq!(c.edge.login_rate_per_min, 30);
        assert_eq!(c.api_base, DEFAULT_API_BASE);
        assert_eq!(c.notify_url, "https://example.invalid");
        assert!(matches!(c.platform, PlatformKeySource::Certificates));
        assert_eq!(format!("{:?}", c.api_v3_key), "[redacted]");
        let debug = format!("{c:?}");
        for secret in [
            "0123456789abcdef0123456789abcdef",
            "admin-token-0123456789-abcdefghij",
            "PEM",
        ] {
            assert!(!debug.contains(secret), "{secret} leaked in {debug}");
        }
    }

    #[test]
    fn v2_mode_needs_its_own_key_and_not_the_v3_ones() {
        let d = tmp();
        let mut v = base(&d);
        for k in [
            "WXPAY_MERCHANT_SERIAL",
            "WXPAY_MERCHANT_KEY_FILE",
            "WXPAY_API_V3_KEY",
        ] {
            v.remove(k);
        }
        v.insert("WXPAY_PAY_API", "v2".into());
        let e = load(&v).expect_err("no APIv2 key").to_string();
        assert!(e.contains("WXPAY_API_V2_KEY"), "{e}");
        v.insert("WXPAY_API_V2_KEY", "short".into());
        let e = load(&v).expect_err("short key").to_string();
        assert!(e.contains("WXPAY_API_V2_KEY"), "{e}");
        v.insert(
            "WXPAY_API_V2_KEY",
            "fedcba9876543210fedcba9876543210".into(),
        );
        let c = load(&v).expect("v2 config");
        let v2 = c.api_v2().expect("v2 mode");
        assert_eq!(v2.sign_type, wxpay_core::v2::SignType::Md5);
        assert!(v2.client_cert_pem.is_none());
        assert_eq!(v2.spbill_create_ip, "127.0.0.1");
        assert_eq!(c.root_secret().expose(), "fedcba9876543210fedcba9876543210");
        assert!(
            !format!("{c:?}").contains("fedcba9876543210"),
            "key in Debug"
        );
        v.insert("WXPAY_V2_SIGN_TYPE", "hmac-sha256".into());
        let c = load(&v).expect("HMAC config");
        assert_eq!(
            c.api_v2().map(|v2| v2.sign_type),
            Some(wxpay_core::v2::SignType::HmacSha256)
        );
        v.insert("WXPAY_V2_SIGN_TYPE", "SHA1".into());
        let e = load(&v).expect_err("bad sign type").to_string();
        assert!(e.contains("WXPAY_V2_SIGN_TYPE"), "{e}");
        v.remove("WXPAY_V2_SIGN_TYPE");
        let cert = d.join("apiclient_cert.pem");
        std::fs::write(&cert, "CERT").expect("write");
        v.insert("WXPAY_V2_CLIENT_CERT_FILE", cert.display().to_string());
        let e = load(&v).expect_err("cert without key").to_string();
        assert!(e.contains("WXPAY_V2_CLIENT_KEY_FILE"), "{e}");
        v.insert("WXPAY_V2_CLIENT_KEY_FILE", cert.display().to_string());
        let c = load(&v).expect("cert and key");
        assert_eq!(
            c.api_v2().and_then(|v2| v2.client_cert_pem.as_deref()),
            Some("CERT")
        );
        v.insert("WXPAY_PAY_API", "v4".into());
        let e = load(&v).expect_err("unknown API").to_string();
        assert!(e.contains("WXPAY_PAY_API"), "{e}");
        // v3 (the default) still needs its keys.
        v.remove("WXPAY_PAY_API");
        let e = load(&v).expect_err("v3 without its key").to_string();
        assert!(e.contains("WXPAY_MERCHANT_KEY_FILE"), "{e}");
    }

    #[test]
    fn missing_and_bad_vars_are_named() {
        let d = tmp();
        let mut v = base(&d);
        v.remove("WXPAY_MCHID");
        let e = load(&v).expect_err("must fail").to_string();
        assert!(e.contains("WXPAY_MCHID"), "{e}");
        let mut v = base(&d);
        v.insert("WXPAY_LISTEN", "nope".into());
        let e = load(&v).expect_err("must fail").to_string();
        assert!(e.contains("WXPAY_LISTEN"), "{e}");
        let mut v = base(&d);
        v.insert("WXPAY_API_V3_KEY", "short".into());
        assert!(
            load(&v)
                .expect_err("must fail")
                .to_string()
                .contains("WXPAY_API_V3_KEY")
        );
        let mut v = base(&d);
        v.insert("WXPAY_PLATFORM_PUBLIC_KEY_ID", "PUB_KEY_ID_1".into());
        let e = load(&v).expect_err("must fail").to_string();
        assert!(e.contains("WXPAY_PLATFORM_PUBLIC_KEY_FILE"), "{e}");
    }

    #[test]
    fn platform_mode_defaults_from_what_is_configured() {
        let d = tmp();
        let pem = d.join("pub_key.pem");
        std::fs::write(&pem, "PUBLIC").expect("write temp file");
        let with_key = |mode: Option<&str>| {
            let mut v = base(&d);
            v.insert("WXPAY_PLATFORM_PUBLIC_KEY_ID", "PUB_KEY_ID_0114".into());
            v.insert("WXPAY_PLATFORM_PUBLIC_KEY_FILE", pem.display().to_string());
            if let Some(m) = mode {
                v.insert("WXPAY_PLATFORM_MODE", m.into());
            }
            v
        };
        let mode = |v: &BTreeMap<&'static str, String>| load(v).expect("config").platform.mode();
        assert_eq!(mode(&base(&d)), "certificate");
        assert_eq!(mode(&with_key(None)), "public_key");
        assert_eq!(mode(&with_key(Some("public_key"))), "public_key");
        assert_eq!(mode(&with_key(Some("certificate"))), "certificate");
        let c = load(&with_key(Some("Combined"))).expect("config");
        assert!(c.platform.downloads_certificates());
        assert_eq!(c.platform.public_key(), Some(("PUB_KEY_ID_0114", "PUBLIC")));
        for (mode, with) in [
            ("combined", false),
            ("public_key", false),
            ("publickey", true),
            ("both", true),
        ] {
            let mut v = if with { with_key(None) } else { base(&d) };
            v.insert("WXPAY_PLATFORM_MODE", mode.into());
            let e = load(&v).expect_err(mode).to_string();
            assert!(e.contains("WXPAY_PLATFORM_MODE"), "{mode}: {e}");
        }
    }

    #[test]
    fn toml_file_is_read_and_env_wins() {
        let d = tmp();
        let v = base(&d);
        let file = BTreeMap::from([
            ("listen".to_owned(), "127.0.0.1:9999".to_owned()),
            ("database_url".to_owned(), "sqlite://x.db".to_owned()),
        ]);
        let mut v2 = v.clone();
        v2.insert("WXPAY_DATABASE_URL", "sqlite://y.db".into());
        let env = |k: &str| v2.get(k).cloned();
        let c = Config::from_sources(&env, Some(&file)).expect("config");
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.database_url.as_str(), "sqlite://y.db");
    }

    #[test]
    fn knobs_are_bounded_and_tokens_strong() {
        let d = tmp();
        for (var, value) in [
            ("WXPAY_UPSTREAM_RETRIES", "6"),
            ("WXPAY_UPSTREAM_RETRIES", "32"),
            ("WXPAY_HTTP_TIMEOUT_MS", "60001"),
            ("WXPAY_HTTP_TIMEOUT_MS", "0"),
            ("WXPAY_LOGIN_RATE_PER_MIN", "0"),
            ("WXPAY_BODY_LIMIT_BYTES", "99999999"),
            ("WXPAY_TRUSTED_PROXIES", "10.0.0.1,nope"),
            ("WXPAY_API_BASE", "http://api.mch.weixin.qq.com"),
            ("WXPAY_LOGIN_BASE", "http://example.com"),
            ("WXPAY_ADMIN_TOKEN", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"),
            ("WXPAY_ADMIN_TOKEN", "abcdabcdabcdabcdabcdabcdabcdabcdabcd"),
            ("WXPAY_ADMIN_TOKEN", "0123456789abcdef0123456789abcde"),
            ("WXPAY_ADMIN_TOKEN", "abababababababababababab12121212121"),
        ] {
            let mut v = base(&d);
            v.insert(var, value.into());
            let e = load(&v).expect_err(value).to_string();
            assert!(e.contains(var), "{var}={value}: {e}");
        }
        let mut v = base(&d);
        v.insert("WXPAY_API_BASE", "http://127.0.0.1:9000".into());
        v.insert("WXPAY_LOGIN_BASE", "http://localhost:9000".into());
        v.insert("WXPAY_UPSTREAM_RETRIES", "5".into());
        v.insert("WXPAY_TRUSTED_PROXIES", "10.0.0.1, ::1".into());
        let c = load(&v).expect("loopback http and bounds are fine");
        assert_eq!(c.edge.trusted_proxies.len(), 2);
    }

    #[test]
    fn database_password_is_not_in_debug() {
        let d = tmp();
        let mut v = base(&d);
        v.insert(
            "WXPAY_DATABASE_URL",
            "postgres://wxpay:hunter2@db.internal/wxpay".into(),
        );
        let c = load(&v).expect("config");
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("db.internal"), "{debug}");
        let url = DatabaseUrl::from("postgres://db/x?password=hunter2");
        assert!(!format!("{url:?}").contains("hunter2"));
    }
}
