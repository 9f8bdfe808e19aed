//! The host's HTTP API as the harness uses it: user login and pay, the back office (create,
//! close, inspect orders), and WeChat-style notification delivery with redelivery.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::sim::Notification;

/// How long one request may take. Longer than the host's own database acquire timeout (10 s
/// today), so a host that answers 5xx after waiting for its pool is seen answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The longest pause between two deliveries of one notification (WeChat waits 15 s, 15 s,
/// 30 s, 3 min …; compressed here so a run stays short).
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// An HTTP client for loopback only (no system proxy).
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(64)
        .build()
        .context("build the HTTP client")
}

/// One host's API: the public listener and the back office with its token.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    admin_base: String,
    admin: String,
}

impl Api {
    /// The API at `base` (`http://ADDR`), the back office at `admin_base`.
    pub fn new(http: &reqwest::Client, base: String, admin_base: String, admin: &str) -> Self {
        Self {
            http: http.clone(),
            base,
            admin_base,
            admin: admin.to_owned(),
        }
    }

    /// `POST /api/login` with a `wx.login` code; returns the session token.
    pub async fn login(&self, code: &str) -> Result<String> {
        let (status, v) = self
            .send(
                self.http
                    .post(self.url("/api/login"))
                    .json(&json!({ "code": code })),
            )
            .await?;
        ensure!(status == 200, "login answered {status}: {v}");
        v["token"]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("login answer without a token: {v}"))
    }

    /// `POST /admin/orders`: a `CREATED` order of `amount` fen for `openid`.
    pub async fn create_order(&self, openid: &str, no: &str, amount: i64) -> Result<()> {
        let body = json!({ "openid": openid, "amount": amount, "description": "chaos tea",
                           "out_trade_no": no, "expire_in": 3600 });
        let req = self
            .admin(self.http.post(self.admin_url("/admin/orders")))
            .json(&body);
        let (status, v) = self.send(req).await?;
        ensure!(status == 201, "creating {no} answered {status}: {v}");
        Ok(())
    }

    /// `POST /api/orders/{no}/pay` as the user: the order gets a prepay id.
    pub async fn pay(&self, token: &str, no: &str) -> Result<()> {
        let req = self
            .http
            .post(self.url(&format!("/api/orders/{no}/pay")))
            .bearer_auth(token);
        let (status, v) = self.send(req).await?;
        ensure!(status == 200, "paying {no} answered {status}: {v}");
        Ok(())
    }

    /// `POST /admin/orders/{no}/close`; returns the status (a connection error is an error).
    pub async fn close(&self, no: &str) -> Result<(u16, Value)> {
        let req = self.admin(
            self.http
                .post(self.admin_url(&format!("/admin/orders/{no}/close"))),
        );
        self.send(req).await
    }

    /// `GET /admin/orders/{no}`: the order with its events.
    pub async fn order(&self, no: &str) -> Result<Value> {
        let req = self.admin(
            self.http
                .get(self.admin_url(&format!("/admin/orders/{no}"))),
        );
        let (status, v) = self.send(req).await?;
        ensure!(status == 200, "reading {no} answered {status}: {v}");
        Ok(v)
    }

    /// `{base}/notify/pay`.
    pub fn notify_url(&self) -> String {
        self.url("/notify/pay")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base)
    }

    fn admin(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.bearer_auth(&self.admin)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, Value)> {
        let resp = req.send().await.context("request to the host")?;
        let status = resp.status().as_u16();
        let text = resp.text().await.context("read the host's answer")?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }
}

/// What one delivery attempt got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// No answer: refused, reset or closed (the host is down or was killed mid-request).
    ConnectionError,
    /// No answer within the request timeout.
    Timeout,
}

impl Answer {
    /// WeChat stops redelivering on any 2xx.
    pub fn is_2xx(self) -> bool {
        matches!(self, Self::Status(s) if (200..300).contains(&s))
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s) => write!(f, "{s}"),
            Self::ConnectionError => f.write_str("connection error"),
            Self::Timeout => f.write_str("timeout"),
        }
    }
}

/// Delivery counters shared by the tasks of one scenario.
#[derive(Debug, Default)]
pub struct Tally {
    /// Attempts made.
    pub attempts: AtomicU64,
    /// Attempts answered 2xx.
    pub ok: AtomicU64,
    /// Attempts answered 5xx.
    pub server_errors: AtomicU64,
    /// Attempts answered anything else (4xx, 3xx, 1xx).
    pub other: AtomicU64,
    /// Attempts without an answer (refused, reset).
    pub connection_errors: AtomicU64,
    /// Attempts that timed out.
    pub timeouts: AtomicU64,
}

impl Tally {
    fn record(&self, a: Answer) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        let c = match a {
            Answer::Status(200..=299) => &self.ok,
            Answer::Status(500..=599) => &self.server_errors,
            Answer::Status(_) => &self.other,
            Answer::ConnectionError => &self.connection_errors,
            Answer::Timeout => &self.timeouts,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A one-line account for the detail output.
    pub fn describe(&self) -> String {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "{} attempts: {} 2xx, {} 5xx, {} other status, {} connection errors, {} timeouts",
            g(&self.attempts),
            g(&self.ok),
            g(&self.server_errors),
            g(&self.other),
            g(&self.connection_errors),
            g(&self.timeouts)
        )
    }
}

/// POSTs a notification once.
pub async fn post(http: &reqwest::Client, url: &str, n: &Notification) -> Answer {
    let mut req = http
        .post(url)
        .header("content-type", "application/json")
        .body(n.body.clone());
    for (k, v) in &n.headers {
        req = req.header(k, v);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the answer so the connection can be reused; the status is what counts.
            let _ = resp.bytes().await;
            Answer::Status(status)
        }
        Err(e) if e.is_timeout() => Answer::Timeout,
        Err(_) => Answer::ConnectionError,
    }
}

/// Delivers `n` like WeChat: any answer that is not 2xx (or none) is redelivered after a short
/// growing pause, until 2xx or `deadline`. Attempt `k` goes to `urls[k % urls.len()]`; each
/// attempt holds a permit of `gate` (the sender's in-flight limit) only while it is in flight.
/// `observe` sees every attempt's send time and answer.
///
/// Returns the number of attempts, or the last answer if the deadline passed without a 2xx.
pub async fn until_2xx(
    http: &reqwest::Client,
    urls: &[String],
    n: &Notification,
    gate: &Semaphore,
    deadline: Instant,
    tally: &Tally,
    mut observe: impl FnMut(Instant, Answer),
) -> Result<u32> {
    let mut attempt: u32 = 0;
    loop {
        let url = &urls[attempt as usize % urls.len()];
        let answer = {
            let _permit = gate.acquire().await.context("the delivery gate closed")?;
            let sent = Instant::now();
            let answer = post(http, url, n).await;
            observe(sent, answer);
            answer
        };
        attempt += 1;
        tally.record(answer);
        if answer.is_2xx() {
            return Ok(attempt);
        }
        let backoff = Duration::from_millis(50)
            .saturating_mul(1 << attempt.min(5))
            .min(MAX_BACKOFF)
            + super::rand::between(Duration::ZERO, Duration::from_millis(50));
        if Instant::now() + backoff > deadline {
            bail!("not answered 2xx after {attempt} attempts (last: {answer})");
        }
        tokio::time::sleep(backoff).await;
    }
}

/// How an order ended, read through the back office.
#[derive(Debug)]
pub struct Ending {
    /// `state`.
    pub state: String,
    /// `transaction_id` (`None` if null).
    pub transaction_id: Option<String>,
    /// Events that moved the order into `PAID` (`to_state == "PAID"` from another state).
    pub paid_events: usize,
}

impl Ending {
    /// Reads an order's ending from its back-office view.
    pub fn of(order: &Value) -> Self {
        let paid_events = order["events"].as_array().map_or(0, |events| {
            events
                .iter()
                .filter(|e| e["to_state"] == "PAID" && e["from_state"] != "PAID")
                .count()
        });
        Self {
            state: order["state"].as_str().unwrap_or("?").to_owned(),
            transaction_id: order["transaction_id"].as_str().map(str::to_owned),
            paid_events,
        }
    }
}
