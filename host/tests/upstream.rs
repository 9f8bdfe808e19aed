//! Honest upstream errors (host + simulator, SQLite and PostgreSQL): a non-2xx answer is read as
//! WeChat's error whether or not it is signed, an unverified one never changes state, a
//! `SIGN_ERROR` is logged with what was signed, and rate limits back off into a 429.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use common::{ADMIN, Backend, Env, events};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wxpay_host::Secret;
use wxpay_host::service::reconcile::run_once;
use wxpay_simulator::{AnswerSigning, RefundStatus, SimulatorOptions, TradeState};

on_both!(
    sign_error_is_reported_and_logged,
    rate_limits_back_off_then_answer_429,
    unverified_order_not_exist_changes_nothing,
    unverified_refund_refusal_leaves_the_refund_pending,
    unverified_refund_not_found_is_not_resubmitted
);

/// Everything the host logs in this test binary (warnings and up), for the `SIGN_ERROR` line.
/// Installed before any [`Env`] (whose own `try_init` then does nothing).
fn logs() -> &'static Mutex<Vec<u8>> {
    static LOGS: OnceLock<&'static Mutex<Vec<u8>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf: &'static Mutex<Vec<u8>> = Box::leak(Box::new(Mutex::new(Vec::new())));
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("warn"))
            .with_ansi(false)
            .with_writer(move || Capture(buf))
            .try_init();
        buf
    })
}

struct Capture(&'static Mutex<Vec<u8>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines_with(needle: &str) -> Vec<String> {
    let buf = logs().lock().unwrap();
    String::from_utf8_lossy(&buf)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

fn no_auto_refunds() -> SimulatorOptions {
    SimulatorOptions {
        refund_delay: None,
        ..common::fast_sim()
    }
}

async fn sign_error_is_reported_and_logged(b: Backend) {
    logs();
    // A merchant key that is not the one of WXPAY_MERCHANT_SERIAL: WeChat cannot verify our
    // requests and answers 401 SIGN_ERROR, unsigned.
    let wrong_key =
        std::fs::read_to_string(common::vector_keys_dir().join("platform_private_key.pem"))
            .unwrap();
    let env = Env::with_config(b, common::fast_sim(), false, |c| {
        c.merchant_key_pem = Secret::new(wrong_key);
    })
    .await;
    let token = env.login("o_sign").await;
    env.create_order("o_sign", "SIGNERR001", 100, 1800).await;
    let (s, v) = env
        .post("/api/orders/SIGNERR001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    let e = &v["error"];
    assert_eq!(e["code"], "upstream_error", "{v}");
    assert_eq!(e["wechat_code"], "SIGN_ERROR", "{v}");
    assert_eq!(e["wechat_verified"], false, "{v}");
    assert!(e["wechat_message"].as_str().is_some_and(|m| !m.is_empty()));
    // Not "response verification failed: malformed … Wechatpay-Timestamp", and no detail
    // (the signed message) for the client.
    assert!(!v.to_string().contains("Wechatpay"), "{v}");
    assert!(!v.to_string().contains("truncated"), "{v}");
    assert_eq!(events(&env.admin_order("SIGNERR001").await, "prepay"), 0);
    // The warning names what was signed, and WeChat's copy of it matches.
    let url = format!("{}/v3/pay/transactions/jsapi", env.sim.base_url());
    let lines = log_lines_with(&url);
    let line = lines
        .iter()
        .find(|l| l.contains("SIGN_ERROR") && l.contains("sign_message_sha256="))
        .unwrap_or_else(|| panic!("no SIGN_ERROR log line for {url}: {lines:?}"));
    for field in [
        "method=POST",
        "timestamp=",
        "nonce=",
        "truncated_sign_message_matches=Some(true)",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    for secret in ["PRIVATE KEY", "WECHATPAY2-SHA256-RSA2048", "signature=\""] {
        assert!(!line.contains(secret), "{secret} logged: {line}");
    }
    env.finish().await;
}

async fn rate_limits_back_off_then_answer_429(b: Backend) {
    logs();
    let env = Env::with_config(b, common::fast_sim(), false, |c| c.upstream_retries = 2).await;
    let token = env.login("o_rate").await;
    env.create_order("o_rate", "RATELIM001", 100, 1800).await;
    // One unsigned 429 is absorbed by a retry after a backoff.
    env.sim
        .fail_next_v3_signed(429, "FREQUENCY_LIMITED", 1, AnswerSigning::Unsigned);
    let (s, v) = env
        .post("/api/orders/RATELIM001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Three (the try and both retries) are a 429 for our client, not a 502; FREQUENCY_LIMITED
    // counts whatever the status.
    env.create_order("o_rate", "RATELIM002", 100, 1800).await;
    for status in [429, 403] {
        env.sim
            .fail_next_v3_signed(status, "FREQUENCY_LIMITED", 3, AnswerSigning::Unsigned);
        let (s, v) = env
            .post("/api/orders/RATELIM002/pay", Some(&token), Value::Null)
            .await;
        assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{status}: {v}");
        assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    }
    assert_eq!(events(&env.admin_order("RATELIM002").await, "prepay"), 0);
    let (s, v) = env
        .post("/api/orders/RATELIM002/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    env.finish().await;
}

async fn unverified_order_not_exist_changes_nothing(b: Backend) {
    logs();
    let env = Env::new(b).await;
    env.ordered("o_une", "UNVERIF001", 100).await;
    // Closing queries the order first. An unsigned or badly signed ORDER_NOT_EXIST must not
    // be read as "never reached WeChat": the close fails, nothing changes anywhere.
    for signing in [AnswerSigning::Unsigned, AnswerSigning::BadSignature] {
        env.sim
            .fail_next_v3_signed(404, "ORDER_NOT_EXIST", 1, signing);
        let (s, v) = env
            .post("/admin/orders/UNVERIF001/close", Some(ADMIN), Value::Null)
            .await;
        assert_eq!(s, StatusCode::BAD_GATEWAY, "{signing:?}: {v}");
        assert_eq!(v["error"]["wechat_code"], "ORDER_NOT_EXIST", "{v}");
        assert_eq!(v["error"]["wechat_verified"], false, "{v}");
        let o = env.admin_order("UNVERIF001").await;
        assert_eq!(o["state"], "CREATED", "{o}");
        assert_eq!(
            env.sim.order("UNVERIF001").unwrap().trade_state,
            TradeState::NotPay,
            "no close was sent"
        );
    }
    // The reconciler treats it like an unknown outcome too: an error, retried later.
    env.sim
        .fail_next_v3_signed(404, "ORDER_NOT_EXIST", 1, AnswerSigning::Unsigned);
    let r = run_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!((r.queried, r.errors), (0, 1), "{r:?}");
    assert_eq!(env.admin_order("UNVERIF001").await["state"], "CREATED");
    // The same answer, signed by WeChat, is believed: not at WeChat, so the close goes ahead.
    env.sim
        .fail_next_v3_signed(404, "ORDER_NOT_EXIST", 1, AnswerSigning::Signed);
    let (s, v) = env
        .post("/admin/orders/UNVERIF001/close", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "CLOSED", "{v}");
    env.finish().await;
}

async fn unverified_refund_refusal_leaves_the_refund_pending(b: Backend) {
    logs();
    let env = Env::with(b, no_auto_refunds()).await;
    env.ordered("o_unr", "UNVREF0001", 1000).await;
    env.sim.pay("UNVREF0001").unwrap();
    env.wait_state("UNVREF0001", "PAID", 10).await;
    // An unsigned 4xx refusal is not a refusal: the outcome is unknown, the refund PENDING
    // (resubmitted later with the same number), its amount still reserved.
    env.sim
        .fail_next_v3_signed(403, "NOT_ENOUGH", 1, AnswerSigning::Unsigned);
    let (s, v) = env
        .post(
            "/admin/orders/UNVREF0001/refund",
            Some(ADMIN),
            json!({ "amount": 300, "out_refund_no": "RFUNV00001" }),
        )
        .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{v}"
    );
    // A rejected request signature is our configuration, not WeChat refusing the refund: even
    // signed, it leaves the refund PENDING.
    env.sim
        .fail_next_v3_signed(401, "SIGN_ERROR", 1, AnswerSigning::Signed);
    let (s, v) = env
        .post(
            "/admin/orders/UNVREF0001/refund",
            Some(ADMIN),
            json!({ "amount": 200, "out_refund_no": "RFUNV00002" }),
        )
        .await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{v}"
    );
    let o = env.admin_order("UNVREF0001").await;
    let states: Vec<_> = o["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["state"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(states, ["PENDING", "PENDING"], "{o}");
    // The same refusal, signed by WeChat, is final: FAILED, its amount released.
    env.sim
        .fail_next_v3_signed(403, "NOT_ENOUGH", 1, AnswerSigning::Signed);
    let (s, v) = env
        .post(
            "/admin/orders/UNVREF0001/refund",
            Some(ADMIN),
            json!({ "amount": 100, "out_refund_no": "RFUNV00003" }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    let o = env.admin_order("UNVREF0001").await;
    let failed = o["refunds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["out_refund_no"] == "RFUNV00003")
        .unwrap();
    assert_eq!(failed["state"], "FAILED", "{o}");
    env.finish().await;
}

async fn unverified_refund_not_found_is_not_resubmitted(b: Backend) {
    logs();
    let env = Env::with(b, no_auto_refunds()).await;
    env.ordered("o_unq", "UNVQRY0001", 500).await;
    env.sim.pay("UNVQRY0001").unwrap();
    env.wait_state("UNVQRY0001", "PAID", 10).await;
    let (s, v) = env
        .post(
            "/admin/orders/UNVQRY0001/refund",
            Some(ADMIN),
            json!({ "amount": 500, "out_refund_no": "RFUNQ00001" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "PROCESSING", "{v}");
    // The reconciler's query gets an unsigned RESOURCE_NOT_EXISTS: believed, it would mean
    // "submit again"; unverified, it is an error and the refund stays as it is.
    env.sim
        .fail_next_v3_signed(404, "RESOURCE_NOT_EXISTS", 1, AnswerSigning::Unsigned);
    let r = run_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!((r.errors, r.resubmitted), (1, 0), "{r:?}");
    let o = env.admin_order("UNVQRY0001").await;
    assert_eq!(o["refunds"][0]["state"], "PROCESSING", "{o}");
    // Still a refund at WeChat, which finishes it as usual.
    assert_eq!(
        env.sim.refund("RFUNQ00001").unwrap().status,
        RefundStatus::Processing
    );
    env.sim.complete_refund("RFUNQ00001").unwrap();
    env.wait_state("UNVQRY0001", "REFUNDED", 10).await;
    env.finish().await;
}
