//! Test harness: a simulator plus a host on SQLite (temp file) or PostgreSQL (fresh schema).
#![allow(dead_code, clippy::unwrap_used, clippy::missing_panics_doc)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use tokio::net::TcpListener;
use wxpay_host::sandbox::simulator_config;
use wxpay_host::{Config, Host, Listeners};
use wxpay_simulator::{SimulatorHandle, SimulatorOptions};

/// A notification to deliver: URL, headers, body.
pub type Delivery = (String, Vec<(String, String)>, Vec<u8>);

/// The project's published test keys, read by the simulator at run time (nothing is compiled
/// in); simulators started without [`SimulatorOptions::keys_dir`] generate their own.
pub fn vector_keys_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/vectors/keys")
}

/// Storage backend for a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generates `NAME_sqlite` and `NAME_postgres` tests from `async fn NAME(b: Backend)`.
/// The PostgreSQL variant needs `WXPAY_TEST_POSTGRES_URL`; without it, it reports a skip.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if std::env::var("WXPAY_TEST_POSTGRES_URL").is_err() {
                        eprintln!("skipped: WXPAY_TEST_POSTGRES_URL is not set");
                        return;
                    }
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

pub const ADMIN: &str = "test-admin-token-0123456789";

fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).unwrap();
    hex::encode(b)
}

/// Simulator options for tests: the published test keys, fast retries, refunds complete
/// after 100 ms.
pub fn fast_sim() -> SimulatorOptions {
    SimulatorOptions {
        notify_retry_schedule: vec![Duration::from_millis(100); 30],
        notify_timeout: Duration::from_secs(5),
        refund_delay: Some(Duration::from_millis(100)),
        ..SimulatorOptions::default()
    }
    .keys_dir(vector_keys_dir())
}

/// A fresh, empty database: a temp SQLite file, or a new PostgreSQL schema selected through
/// the URL's `options=-c search_path=…`. Returns (url, schema, temp dir).
pub async fn fresh_db(backend: Backend) -> (String, Option<String>, Option<std::path::PathBuf>) {
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(format!("wxpay-test-{}", random_hex(8)));
            std::fs::create_dir_all(&dir).unwrap();
            (
                format!("sqlite://{}", dir.join("host.db").display()),
                None,
                Some(dir),
            )
        }
        Backend::Postgres => {
            let base = std::env::var("WXPAY_TEST_POSTGRES_URL").unwrap();
            let schema = format!("t_{}", random_hex(6));
            let mut conn = sqlx::PgConnection::connect(&base).await.expect("postgres");
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&mut conn)
                .await
                .unwrap();
            conn.close().await.ok();
            let sep = if base.contains('?') { '&' } else { '?' };
            (
                format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                Some(schema),
                None,
            )
        }
    }
}

/// Removes what [`fresh_db`] made.
pub async fn drop_db(schema: Option<&str>, dir: Option<&std::path::Path>) {
    if let (Some(schema), Ok(base)) = (schema, std::env::var("WXPAY_TEST_POSTGRES_URL"))
        && let Ok(mut conn) = sqlx::PgConnection::connect(&base).await
    {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut conn)
            .await;
    }
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}

pub struct Env {
    pub sim: SimulatorHandle,
    pub host: Option<Host>,
    pub http: reqwest::Client,
    pub db_url: String,
    pub addr: SocketAddr,
    /// The private admin listener (`/admin/*`, `/metrics`).
    pub admin_addr: SocketAddr,
    pub backend: Backend,
    schema: Option<String>,
    dir: Option<std::path::PathBuf>,
    pub config: Config,
}

impl Env {
    pub async fn new(backend: Backend) -> Self {
        Self::with(backend, fast_sim()).await
    }

    pub async fn with(backend: Backend, opts: SimulatorOptions) -> Self {
        Self::with_config(backend, opts, false, |_| {}).await
    }

    /// Like [`Env::with`], adjusting the host configuration; `jobs` runs the reconciler loop.
    pub async fn with_config(
        backend: Backend,
        opts: SimulatorOptions,
        jobs: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        Self::with_sim_config(backend, opts, jobs, |c, _| adjust(c)).await
    }

    /// An APIv2 host (`WXPAY_PAY_API=v2`) against a simulator over HTTPS that checks the
    /// merchant API certificate on `/secapi/`, like WeChat; `adjust` runs last.
    pub async fn v2(
        backend: Backend,
        sign_type: wxpay_simulator::V2SignType,
        jobs: bool,
        adjust: impl FnOnce(&mut Config),
    ) -> Self {
        let opts = SimulatorOptions {
            v2_sign_type: sign_type,
            tls: true,
            ..fast_sim()
        };
        Self::with_sim_config(backend, opts, jobs, |c, sim| {
            *c = wxpay_host::sandbox::simulator_config_v2(c.clone(), sim);
            adjust(c);
        })
        .await
    }

    /// A client for the simulator's own routes (`/sim/*`), trusting its test CA when it
    /// speaks HTTPS.
    pub fn sim_http(&self) -> reqwest::Client {
        let mut b = reqwest::Client::builder();
        if let Some(ca) = self.sim.tls_root_ca_pem() {
            b = b.tls_certs_only(reqwest::Certificate::from_pem_bundle(ca.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    /// Like [`Env::with_config`], with the simulator at hand while adjusting.
    pub async fn with_sim_config(
        backend: Backend,
        opts: SimulatorOptions,
        jobs: bool,
        adjust: impl FnOnce(&mut Config, &SimulatorHandle),
    ) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let sim = wxpay_simulator::spawn(opts)
            .await
            .expect("simulator starts");
        let (db_url, schema, dir) = fresh_db(backend).await;
        let listeners = Listeners::loopback().await.unwrap();
        let addr = listeners.public.local_addr().unwrap();
        let admin_addr = listeners.admin.local_addr().unwrap();
        let mut config = simulator_config(&sim, addr, &format!("http://{addr}"), &db_url, ADMIN);
        config.edge.admin_listen = admin_addr;
        adjust(&mut config, &sim);
        let host = Host::start(config.clone(), listeners, jobs)
            .await
            .expect("host starts");
        Self {
            sim,
            host: Some(host),
            http: reqwest::Client::new(),
            db_url,
            addr,
            admin_addr,
            backend,
            schema,
            dir,
            config,
        }
    }

    pub fn host(&self) -> &Host {
        self.host.as_ref().expect("host running")
    }

    pub fn state(&self) -> &wxpay_host::AppState {
        &self.host().state
    }

    /// The URL of `path`: back-office paths (`/admin/*`, `/metrics`) on the admin listener,
    /// everything else on the public one.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/admin") || path.starts_with("/metrics") {
            format!("http://{}{path}", self.admin_addr)
        } else {
            format!("http://{}{path}", self.addr)
        }
    }

    /// The URL of `path` on the public listener, whatever it is.
    pub fn public_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs a request that announces a `Content-Length` of `len` bytes but sends none of them,
    /// and returns the status line's code. A server that refuses an oversized body from the
    /// header alone answers at once. (Sending the body instead races: the server answers 413
    /// and closes while the client is still writing, and the client may see a reset instead of
    /// the answer.)
    pub async fn post_announcing(&self, path: &str, len: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect");
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {len}\r\nconnection: close\r\n\r\n",
            self.addr
        );
        s.write_all(head.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 64];
        let n = tokio::time::timeout(std::time::Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the server answers without waiting for the body")
            .expect("read");
        let line = String::from_utf8_lossy(&buf[..n]);
        line.split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("status line: {line:?}"))
    }

    /// Stops the host (graceful), keeping the database.
    pub async fn stop_host(&mut self) {
        if let Some(h) = self.host.take() {
            h.stop().await;
        }
    }

    /// Starts a new host on the same address and database.
    pub async fn start_host(&mut self) {
        let listeners = Listeners {
            public: TcpListener::bind(self.addr)
                .await
                .expect("rebind same port"),
            admin: TcpListener::bind(self.admin_addr)
                .await
                .expect("rebind same admin port"),
        };
        self.host = Some(
            Host::start(self.config.clone(), listeners, false)
                .await
                .expect("restart"),
        );
    }

    pub async fn finish(mut self) {
        self.stop_host().await;
        drop_db(self.schema.as_deref(), self.dir.as_deref()).await;
    }

    pub async fn login(&self, openid: &str) -> String {
        let code = self.sim.issue_login_code(openid);
        let (status, v) = self.post("/api/login", None, json!({ "code": code })).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["openid"], openid);
        assert!(
            v.to_string().find("session_key").is_none(),
            "session_key leaked: {v}"
        );
        v["token"].as_str().unwrap().to_owned()
    }

    pub async fn create_order(&self, openid: &str, no: &str, amount: i64, expire_in: i64) -> Value {
        let (status, v) = self
            .post(
                "/admin/orders",
                Some(ADMIN),
                json!({ "openid": openid, "amount": amount, "description": "Test tea",
                        "out_trade_no": no, "expire_in": expire_in }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert_eq!(v["state"], "CREATED");
        v
    }

    /// login + create + pay params; returns (token, params).
    pub async fn ordered(&self, openid: &str, no: &str, amount: i64) -> (String, Value) {
        let token = self.login(openid).await;
        self.create_order(openid, no, amount, 1800).await;
        let (status, params) = self
            .post(&format!("/api/orders/{no}/pay"), Some(&token), Value::Null)
            .await;
        assert_eq!(status, StatusCode::OK, "{params}");
        (token, params)
    }

    pub async fn post(&self, path: &str, bearer: Option<&str>, body: Value) -> (StatusCode, Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(self.url(path));
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn admin_order(&self, no: &str) -> Value {
        let (status, v) = self.get(&format!("/admin/orders/{no}"), Some(ADMIN)).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// Polls until the order reaches `state` (or panics after `secs`).
    pub async fn wait_state(&self, no: &str, state: &str, secs: u64) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let v = self.admin_order(no).await;
            if v["state"] == state {
                return v;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "order {no} never became {state}: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// POSTs every `(url, headers, body)` notification at once and returns the statuses.
    pub async fn post_concurrently(&self, notifications: Vec<Delivery>) -> Vec<StatusCode> {
        let mut set = tokio::task::JoinSet::new();
        for (url, headers, body) in notifications {
            let http = self.http.clone();
            set.spawn(async move {
                let mut req = http.post(url).header("content-type", "application/json");
                for (k, v) in &headers {
                    req = req.header(k, v);
                }
                req.body(body).send().await.unwrap().status()
            });
        }
        let mut out = Vec::new();
        while let Some(s) = set.join_next().await {
            out.push(s.unwrap());
        }
        out
    }

    /// A notification body + headers signed with the simulator's current platform key, as
    /// WeChat sends them.
    pub fn craft_notification(
        &self,
        id: &str,
        event_type: &str,
        original_type: &str,
        plaintext: &Value,
    ) -> (Vec<(String, String)>, Vec<u8>) {
        self.sim
            .signed_notification(id, event_type, original_type, plaintext)
            .expect("signed notification")
    }

    /// A `TRANSACTION.SUCCESS` plaintext for an order as the simulator would have it.
    pub fn transaction(&self, no: &str, openid: &str, total: i64, transaction_id: &str) -> Value {
        json!({
            "mchid": self.sim.mchid(), "appid": self.sim.appid(), "out_trade_no": no,
            "transaction_id": transaction_id, "trade_type": "JSAPI", "trade_state": "SUCCESS",
            "trade_state_desc": "ok", "bank_type": "OTHERS", "attach": "",
            "success_time": "2026-11-26T12:00:00+08:00", "payer": { "openid": openid },
            "amount": { "total": total, "payer_total": total, "currency": "CNY", "payer_currency": "CNY" },
        })
    }

    pub async fn send_notification(
        &self,
        path: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let resp = req.body(body).send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub fn now() -> i64 {
        wxpay_host::clock::Clock::now(&wxpay_host::clock::SystemClock)
    }
}

/// Number of events of `kind` in an admin order view.
pub fn events(order: &Value, kind: &str) -> usize {
    order["events"]
        .as_array()
        .map_or(0, |e| e.iter().filter(|e| e["kind"] == kind).count())
}
