//! End-to-end tests: the host against the simulator, on SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{ADMIN, Backend, Env, events};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wxpay_host::service::reconcile::run_once as reconcile_once;
use wxpay_simulator::{NotifyBehavior, SimulatorOptions, TradeState};

on_both!(
    full_flow,
    duplicate_storm,
    lost_notification_reconciled,
    sync_after_request_payment,
    probe_then_real,
    tampered_rejected,
    amount_mismatch_flagged,
    expiry_closes,
    refund_flow,
    restart_mid_flow,
    bad_requests,
    storage_failure_is_not_acked,
    background_reconciler,
    replicas_share_one_database,
    platform_certificate_rotation,
);

async fn full_flow(b: Backend) {
    let env = Env::new(b).await;
    let (token, params) = env.ordered("o_full", "FULL000001", 2500).await;
    assert_eq!(params["signType"], "RSA");
    assert!(
        params["package"]
            .as_str()
            .unwrap()
            .starts_with("prepay_id=")
    );
    for k in ["timeStamp", "nonceStr", "paySign"] {
        assert!(
            params[k].as_str().is_some_and(|s| !s.is_empty()),
            "{k} missing: {params}"
        );
    }
    // WeChat's client accepts the parameters.
    let mut check = params.clone();
    check["openid"] = json!("o_full");
    let r = env
        .http
        .post(format!("{}/sim/request-payment/check", env.sim.base_url()))
        .json(&check)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    // A second request reuses the prepay id.
    let (_, again) = env
        .post("/api/orders/FULL000001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(again["package"], params["package"]);

    env.sim.pay("FULL000001").unwrap();
    env.sim
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await
        .unwrap();
    let order = env.admin_order("FULL000001").await;
    assert_eq!(order["state"], "PAID", "{order}");
    assert!(order["transaction_id"].as_str().is_some());
    assert_eq!(events(&order, "notify_paid"), 1);
    assert_eq!(events(&order, "prepay"), 1, "prepay placed once: {order}");
    let (status, mine) = env.get("/api/orders/FULL000001", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["state"], "PAID");
    assert!(mine.get("openid").is_none() || mine["openid"] == "o_full");
    // Paying a paid order is a conflict.
    let (status, v) = env
        .post("/api/orders/FULL000001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{v}");
    let (_, metrics) = env.get("/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains("wxpay_orders{state=\"PAID\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("wxpay_notifications_total{kind=\"pay\",outcome=\"applied\"} 1"));
    assert!(
        metrics.contains("wxpay_upstream_request_duration_seconds_count{endpoint=\"jsapi\"} 1")
    );
    let (status, health) = env.get("/healthz", None).await;
    assert_eq!(
        (status, health),
        (StatusCode::OK, json!({ "status": "ok" }))
    );
    env.finish().await;
}

async fn duplicate_storm(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_dup", "DUP0000001", 990).await;
    env.sim.set_notify_behavior(NotifyBehavior::Duplicate(50));
    env.sim.pay("DUP0000001").unwrap();
    env.sim
        .wait_for_deliveries(50, Duration::from_secs(30))
        .await
        .unwrap();
    let order = env.admin_order("DUP0000001").await;
    assert_eq!(order["state"], "PAID");
    assert_eq!(
        events(&order, "notify_paid"),
        1,
        "exactly one transition: {order}"
    );
    let m = &env.state().metrics;
    assert_eq!(m.notification_count("pay", "applied"), 1);
    assert_eq!(m.notification_count("pay", "duplicate"), 49);

    // 50 concurrent, *different* authentic notifications for one order (as if several
    // replicas each got one): still one transition.
    env.sim.set_notify_behavior(NotifyBehavior::Normal);
    let token = env.login("o_dup2").await;
    env.create_order("o_dup2", "DUP0000002", 100, 1800).await;
    let (s, _) = env
        .post("/api/orders/DUP0000002/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    let notifications = (0..50)
        .map(|i| {
            let tx = env.transaction("DUP0000002", "o_dup2", 100, "4200000000000000000002");
            let (h, body) = env.craft_notification(
                &format!("dup2-{i}"),
                "TRANSACTION.SUCCESS",
                "transaction",
                &tx,
            );
            (env.url("/notify/pay"), h, body)
        })
        .collect();
    let statuses = env.post_concurrently(notifications).await;
    assert_eq!(statuses.len(), 50);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
        "{statuses:?}"
    );
    let order = env.admin_order("DUP0000002").await;
    assert_eq!(order["state"], "PAID");
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    env.finish().await;
}

async fn lost_notification_reconciled(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_lost", "LOST000001", 1234).await;
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.sim.pay("LOST000001").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.admin_order("LOST000001").await["state"], "CREATED");
    // Too early for the reconciler: nothing is queried.
    let r = reconcile_once(env.state(), Env::now()).await.unwrap();
    assert_eq!(r.queried, 0);
    let r = reconcile_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!((r.queried, r.paid, r.errors), (1, 1, 0), "{r:?}");
    let order = env.admin_order("LOST000001").await;
    assert_eq!(order["state"], "PAID", "{order}");
    assert_eq!(events(&order, "reconciled_paid"), 1);
    assert!(order["transaction_id"].as_str().is_some());
    // A late notification changes nothing.
    let tx = env.transaction(
        "LOST000001",
        "o_lost",
        1234,
        order["transaction_id"].as_str().unwrap(),
    );
    let (h, body) = env.craft_notification("late-1", "TRANSACTION.SUCCESS", "transaction", &tx);
    let (s, _) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let order = env.admin_order("LOST000001").await;
    assert_eq!(events(&order, "notify_paid"), 0);
    env.finish().await;
}

/// `/api/orders/{no}/sync`: what the mini-program calls after `wx.requestPayment` when the
/// notification is late — one query, applied through the state machine; asked again within the
/// window, no second query; another user's order is 404.
async fn sync_after_request_payment(b: Backend) {
    let env = Env::new(b).await;
    let (token, _) = env.ordered("o_sync", "SYNC000001", 990).await;
    let path = "/api/orders/SYNC000001/sync";
    // Not paid yet: WeChat says NOTPAY, the order stays CREATED.
    let (s, o) = env.post(path, Some(&token), Value::Null).await;
    assert_eq!(
        (s, o["state"].as_str()),
        (StatusCode::OK, Some("CREATED")),
        "{o}"
    );
    let queries = env.sim.query_count("SYNC000001");
    assert_eq!(queries, 1);
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.sim.pay("SYNC000001").unwrap();
    // Within the window: the stored order, no second query.
    let (s, o) = env.post(path, Some(&token), Value::Null).await;
    assert_eq!(
        (s, o["state"].as_str()),
        (StatusCode::OK, Some("CREATED")),
        "{o}"
    );
    assert_eq!(env.sim.query_count("SYNC000001"), queries);
    tokio::time::sleep(wxpay_host::http::SYNC_WINDOW).await;
    let (s, o) = env.post(path, Some(&token), Value::Null).await;
    assert_eq!(
        (s, o["state"].as_str()),
        (StatusCode::OK, Some("PAID")),
        "{o}"
    );
    assert_eq!(env.sim.query_count("SYNC000001"), queries + 1);
    let order = env.admin_order("SYNC000001").await;
    assert_eq!(events(&order, "reconciled_paid"), 1, "{order}");
    // Final: answered from the database.
    let (s, _) = env.post(path, Some(&token), Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(env.sim.query_count("SYNC000001"), queries + 1);
    // Someone else's order.
    let other = env.login("o_sync_other").await;
    let (s, _) = env.post(path, Some(&other), Value::Null).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    env.sim.set_notify_behavior(NotifyBehavior::Normal);
    env.finish().await;
}

async fn probe_then_real(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_probe", "PROBE00001", 500).await;
    env.sim.set_notify_behavior(NotifyBehavior::ProbeFirst);
    env.sim.pay("PROBE00001").unwrap();
    env.sim
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        env.wait_state("PROBE00001", "PAID", 5).await["state"],
        "PAID"
    );
    assert_eq!(env.state().metrics.notification_count("pay", "probe"), 1);
    env.finish().await;
}

async fn tampered_rejected(b: Backend) {
    let env = Env::with(
        b,
        SimulatorOptions {
            notify_retry_schedule: vec![Duration::from_millis(20); 2],
            ..common::fast_sim()
        },
    )
    .await;
    env.ordered("o_tamper", "TAMPER0001", 700).await;
    env.sim.set_notify_behavior(NotifyBehavior::Tamper);
    env.sim.pay("TAMPER0001").unwrap();
    env.sim.wait_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(env.sim.notifications_delivered(), 0);
    let order = env.admin_order("TAMPER0001").await;
    assert_eq!(order["state"], "CREATED", "{order}");
    assert!(
        env.state()
            .metrics
            .notification_count("pay", "bad_signature")
            >= 1
    );
    // Flip one byte of an authentic body: 401 with WeChat's error shape.
    let tx = env.transaction("TAMPER0001", "o_tamper", 700, "4200000000000000000009");
    let (h, mut body) =
        env.craft_notification("tamper-1", "TRANSACTION.SUCCESS", "transaction", &tx);
    let i = body.len() / 2;
    body[i] ^= 0x01;
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(v["code"], "FAIL");
    // Stale timestamp.
    let (mut h, body) =
        env.craft_notification("tamper-2", "TRANSACTION.SUCCESS", "transaction", &tx);
    h[0].1 = (Env::now() - 3600).to_string();
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert!(s.is_client_error(), "{s}");
    assert_eq!(v["code"], "FAIL");
    // An unknown serial: one (rate-limited) certificate refresh, still unknown, rejected.
    let (mut h, body) =
        env.craft_notification("tamper-3", "TRANSACTION.SUCCESS", "transaction", &tx);
    h[3].1 = "0123456789ABCDEF".to_owned();
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(
        env.state()
            .metrics
            .notification_count("pay", "unknown_serial"),
        1
    );
    assert_eq!(env.admin_order("TAMPER0001").await["state"], "CREATED");
    // The real payment still lands through the reconciler.
    let r = reconcile_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!(r.paid, 1);
    env.finish().await;
}

/// How many `/v3/certificates` downloads the host made, from its `/metrics`.
async fn certificate_downloads(env: &Env) -> u64 {
    const LINE: &str = "wxpay_upstream_request_duration_seconds_count{endpoint=\"certificates\"} ";
    let (status, metrics) = env.get("/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let text = metrics.as_str().unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(LINE))
        .map_or(0, |n| n.parse().unwrap())
}

/// WeChat Pay rotates its platform certificate: the payment notification arrives signed under
/// a serial the host has never seen. The host downloads `/v3/certificates` once (concurrent
/// copies included), verifies, and applies the payment exactly once; later responses under the
/// new serial verify without another download.
async fn platform_certificate_rotation(b: Backend) {
    let env = Env::new(b).await;
    let held = |env: &Env| {
        env.state()
            .wechat
            .with_platform_keys(wxpay_core::keys::PlatformKeys::serials)
    };
    let old = env.sim.platform_serial().to_owned();
    env.ordered("o_rotate", "ROTATE0001", 900).await;
    assert_eq!(held(&env), vec![old.clone()]);
    let downloads = certificate_downloads(&env).await;
    assert_eq!(downloads, 1, "the start-up download only");

    let new = env.sim.rotate_platform_certificate().unwrap();
    assert_ne!(new, old);
    assert_eq!(env.sim.current_platform_serial(), new);
    assert_eq!(
        env.sim.platform_certificate_serials(),
        vec![old.clone(), new.clone()]
    );
    // Three concurrent copies, all signed under the new serial.
    env.sim.set_notify_behavior(NotifyBehavior::Duplicate(3));
    env.sim.pay("ROTATE0001").unwrap();
    env.sim.wait_idle(Duration::from_secs(20)).await.unwrap();
    // Every copy accepted at its first attempt (no 401 and retry).
    let attempts: Vec<_> = env
        .sim
        .delivery_attempts()
        .iter()
        .map(|a| (a.copy, a.attempt, a.status))
        .collect();
    assert_eq!(attempts.len(), 3, "(copy, attempt, status): {attempts:?}");
    assert!(
        attempts.iter().all(|a| a.1 == 0 && a.2 == Some(204)),
        "(copy, attempt, status): {attempts:?}"
    );
    let order = env.wait_state("ROTATE0001", "PAID", 10).await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    let m = &env.state().metrics;
    assert_eq!(m.notification_count("pay", "applied"), 1);
    assert_eq!(m.notification_count("pay", "duplicate"), 2);
    assert_eq!(m.notification_count("pay", "unknown_serial"), 0);
    // Exactly one refresh, and the host now holds both certificates.
    assert_eq!(certificate_downloads(&env).await, downloads + 1);
    let mut serials = held(&env);
    serials.sort();
    let mut both = vec![old, new.clone()];
    both.sort();
    assert_eq!(serials, both);

    // API responses signed with the new key verify with what is held: no further download.
    env.ordered("o_rotate", "ROTATE0002", 100).await;
    env.sim.set_notify_behavior(NotifyBehavior::Normal);
    env.sim.pay("ROTATE0002").unwrap();
    env.wait_state("ROTATE0002", "PAID", 10).await;
    assert_eq!(certificate_downloads(&env).await, downloads + 1);
    assert_eq!(env.admin_order("ROTATE0001").await["state"], "PAID");
    env.finish().await;
}

async fn amount_mismatch_flagged(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_amt", "AMOUNT0001", 1000).await;
    let tx = env.transaction("AMOUNT0001", "o_amt", 1, "4200000000000000000010");
    let (h, body) = env.craft_notification("amt-1", "TRANSACTION.SUCCESS", "transaction", &tx);
    let (s, _) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let order = env.admin_order("AMOUNT0001").await;
    assert_eq!(order["state"], "REVIEW", "{order}");
    assert!(
        order["review_reason"]
            .as_str()
            .unwrap()
            .contains("amount 1"),
        "{order}"
    );
    assert_eq!(events(&order, "flagged_review"), 1);
    // Appid mismatch is rejected outright, unchanged.
    let mut tx = env.transaction("AMOUNT0001", "o_amt", 1000, "4200000000000000000011");
    tx["appid"] = json!("wx_someone_else");
    let (h, body) = env.craft_notification("amt-2", "TRANSACTION.SUCCESS", "transaction", &tx);
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(env.admin_order("AMOUNT0001").await["state"], "REVIEW");
    env.finish().await;
}

async fn expiry_closes(b: Backend) {
    let env = Env::new(b).await;
    let token = env.login("o_exp").await;
    env.create_order("o_exp", "EXPIRE0001", 300, 60).await;
    let (s, _) = env
        .post("/api/orders/EXPIRE0001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    env.create_order("o_exp", "EXPIRE0002", 300, 60).await; // never ordered at WeChat
    let r = reconcile_once(env.state(), Env::now() + 61).await.unwrap();
    assert_eq!(r.closed, 2, "{r:?}");
    assert_eq!(env.admin_order("EXPIRE0001").await["state"], "CLOSED");
    assert_eq!(env.admin_order("EXPIRE0002").await["state"], "CLOSED");
    assert_eq!(
        env.sim.order("EXPIRE0001").unwrap().trade_state,
        TradeState::Closed
    );
    assert!(
        env.sim.pay("EXPIRE0001").is_err(),
        "WeChat no longer takes the payment"
    );
    let (s, v) = env
        .post("/api/orders/EXPIRE0001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Merchant close of a fresh order.
    env.create_order("o_exp", "EXPIRE0003", 300, 600).await;
    let (s, _) = env
        .post("/api/orders/EXPIRE0003/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env
        .post("/admin/orders/EXPIRE0003/close", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "CLOSED");
    assert_eq!(
        env.sim.order("EXPIRE0003").unwrap().trade_state,
        TradeState::Closed
    );
    env.finish().await;
}

async fn refund_flow(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_ref", "REFUND0001", 1000).await;
    env.sim.pay("REFUND0001").unwrap();
    env.wait_state("REFUND0001", "PAID", 10).await;
    // Over-refund is refused.
    let (s, v) = env
        .post(
            "/admin/orders/REFUND0001/refund",
            Some(ADMIN),
            json!({ "amount": 1001 }),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Partial refund, then the rest.
    let (s, v) = env
        .post(
            "/admin/orders/REFUND0001/refund",
            Some(ADMIN),
            json!({ "amount": 400, "reason": "one cup spilt", "out_refund_no": "RF00000001" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "PROCESSING");
    let order = env.wait_state("REFUND0001", "PAID", 10).await;
    assert_eq!(order["refunded"], 400, "{order}");
    let (s, v) = env
        .post(
            "/admin/orders/REFUND0001/refund",
            Some(ADMIN),
            json!({ "amount": 600, "out_refund_no": "RF00000002" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    let order = env.wait_state("REFUND0001", "REFUNDED", 10).await;
    assert_eq!(order["refunded"], 1000);
    let refunds = order["refunds"].as_array().unwrap();
    assert!(refunds.iter().all(|r| r["state"] == "SUCCESS"), "{order}");
    // Retrying a finished refund number is idempotent.
    let (s, v) = env
        .post(
            "/admin/orders/REFUND0001/refund",
            Some(ADMIN),
            json!({ "amount": 600, "out_refund_no": "RF00000002" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "SUCCESS");
    assert_eq!(env.admin_order("REFUND0001").await["refunded"], 1000);
    env.finish().await;
}

async fn restart_mid_flow(b: Backend) {
    let mut env = Env::with(
        b,
        SimulatorOptions {
            notify_retry_schedule: vec![Duration::from_millis(250); 40],
            ..common::fast_sim()
        },
    )
    .await;
    let (token, _) = env.ordered("o_rst", "RESTART001", 880).await;
    env.stop_host().await;
    // The payer pays while the host is down: deliveries fail and are retried.
    env.sim.pay("RESTART001").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(env.sim.notifications_delivered(), 0);
    env.start_host().await;
    env.sim
        .wait_for_deliveries(1, Duration::from_secs(15))
        .await
        .unwrap();
    let order = env.admin_order("RESTART001").await;
    assert_eq!(order["state"], "PAID", "{order}");
    assert_eq!(events(&order, "created"), 1);
    // The session survived the restart.
    let (s, v) = env.get("/api/orders/RESTART001", Some(&token)).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "PAID");
    env.finish().await;
}

async fn bad_requests(b: Backend) {
    let env = Env::new(b).await;
    let (token_a, _) = env.ordered("o_alice", "ALICE00001", 100).await;
    let token_b = env.login("o_bob").await;
    let url = env.url("/api/login");
    // Bad JSON.
    let r = env
        .http
        .post(&url)
        .header("content-type", "application/json")
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json", "{v}");
    // Wrong shape / missing content type.
    let (s, v) = env.post("/api/login", None, json!({ "cod": "x" })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let r = env
        .http
        .post(&url)
        .body("{\"code\":\"x\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Huge bodies are refused from their announced length (413), before being read.
    assert_eq!(env.post_announcing("/api/login", 200_000).await, 413);
    assert_eq!(env.post_announcing("/notify/pay", 200_000).await, 413);
    // Invalid / used login codes, rate limit, busy.
    let (s, v) = env
        .post("/api/login", None, json!({ "code": "not-a-code" }))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let code = env.sim.issue_login_code("o_carol");
    let (s, _) = env.post("/api/login", None, json!({ "code": code })).await;
    assert_eq!(s, StatusCode::OK);
    let (s, v) = env.post("/api/login", None, json!({ "code": code })).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    env.sim.fail_next_logins(45011, 1);
    let (s, v) = env
        .post(
            "/api/login",
            None,
            json!({ "code": env.sim.issue_login_code("o_c") }),
        )
        .await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{v}");
    // errcode -1 ("busy") is retried: once is absorbed, more than the retries is a 503.
    env.sim.fail_next_logins(-1, 1);
    let (s, v) = env
        .post(
            "/api/login",
            None,
            json!({ "code": env.sim.issue_login_code("o_c") }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    env.sim.fail_next_logins(-1, 3);
    let (s, v) = env
        .post(
            "/api/login",
            None,
            json!({ "code": env.sim.issue_login_code("o_c") }),
        )
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    // Tokens.
    let (s, v) = env.get("/api/orders/ALICE00001", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (s, _) = env.get("/api/orders/ALICE00001", Some("wrong-token")).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env.post("/admin/orders", Some(&token_a), json!({})).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = env
        .get(
            "/admin/orders/ALICE00001",
            Some("test-admin-token-012345678X"),
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Someone else's order, unknown orders, malformed numbers.
    let (s, _) = env.get("/api/orders/ALICE00001", Some(&token_b)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env
        .post("/api/orders/ALICE00001/pay", Some(&token_b), Value::Null)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.get("/api/orders/NOSUCH0001", Some(&token_a)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = env.get("/api/orders/..%2F..%2Fetc", Some(&token_a)).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Admin validation.
    let (s, v) = env
        .post(
            "/admin/orders",
            Some(ADMIN),
            json!({ "openid": "o_alice", "amount": -5, "description": "x" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = env
        .post(
            "/admin/orders",
            Some(ADMIN),
            json!({ "openid": "o_alice", "amount": "100", "description": "x" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = env
        .post(
            "/admin/orders",
            Some(ADMIN),
            json!({ "openid": "o_nobody", "amount": 5, "description": "x" }),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    let (s, v) = env
        .post("/admin/orders", Some(ADMIN),
              json!({ "openid": "o_alice", "amount": 5, "description": "x", "out_trade_no": "ALICE00001" }))
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // Notifications without headers or with garbage.
    let (s, v) = env
        .send_notification("/notify/pay", &[], b"{}".to_vec())
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["code"], "FAIL");
    let (s, _) = env.get("/no/such/route", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(env.admin_order("ALICE00001").await["state"], "CREATED");
    env.finish().await;
}

async fn storage_failure_is_not_acked(b: Backend) {
    let mut env = Env::new(b).await;
    env.ordered("o_sto", "STORE00001", 100).await;
    let tx = env.transaction("STORE00001", "o_sto", 100, "4200000000000000000077");
    let (h, body) = env.craft_notification("sto-1", "TRANSACTION.SUCCESS", "transaction", &tx);
    // The database goes away under the running server.
    env.state().store.close().await;
    let (s, v) = env.send_notification("/notify/pay", &h, body.clone()).await;
    assert!(s.is_server_error(), "{s} {v}");
    assert_eq!(v["code"], "FAIL");
    env.stop_host().await;
    env.start_host().await;
    assert_eq!(env.admin_order("STORE00001").await["state"], "CREATED");
    // WeChat's retry then succeeds.
    let (s, _) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(env.admin_order("STORE00001").await["state"], "PAID");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_key_mode_full_flow() {
    let env = Env::with(
        Backend::Sqlite,
        SimulatorOptions {
            public_key_mode: true,
            ..common::fast_sim()
        },
    )
    .await;
    assert!(!env.state().wechat.certificate_mode());
    env.ordered("o_pk", "PKMODE0001", 100).await;
    env.sim.pay("PKMODE0001").unwrap();
    env.wait_state("PKMODE0001", "PAID", 10).await;
    // Certificate download is a configuration error in public-key mode, not a crash.
    assert!(env.state().wechat.refresh_certificates(true).await.is_err());
    // A host misconfigured for certificate mode gets WeChat's 404: a clear start-up error.
    let mut config = wxpay_host::sandbox::simulator_config(
        &env.sim,
        env.addr,
        &env.url(""),
        "sqlite::memory:",
        ADMIN,
    );
    config.platform = wxpay_host::PlatformKeySource::Certificates;
    let err = wxpay_host::AppState::new(config)
        .await
        .expect_err("must not start")
        .to_string();
    assert!(
        err.contains("404") && err.contains("WXPAY_PLATFORM_PUBLIC_KEY_FILE"),
        "{err}"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_retried_then_reported() {
    let env = Env::new(Backend::Sqlite).await;
    let token = env.login("o_retry").await;
    env.create_order("o_retry", "RETRY00001", 100, 1800).await;
    // Two 500s are absorbed by the retries (WXPAY_UPSTREAM_RETRIES = 2).
    env.sim.fail_next_v3(500, "SYSTEM_ERROR", 2);
    let (s, v) = env
        .post("/api/orders/RETRY00001/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // Three are not: 503, and nothing was stored.
    env.create_order("o_retry", "RETRY00002", 100, 1800).await;
    env.sim.fail_next_v3(500, "SYSTEM_ERROR", 3);
    let (s, v) = env
        .post("/api/orders/RETRY00002/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert!(
        !v.to_string().contains("SYSTEM_ERROR"),
        "detail must not leak: {v}"
    );
    assert_eq!(events(&env.admin_order("RETRY00002").await, "prepay"), 0);
    // A signed 4xx (e.g. PARAM_ERROR) is a 502, not retried.
    env.sim.fail_next_v3(400, "PARAM_ERROR", 1);
    let (s, v) = env
        .post("/api/orders/RETRY00002/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{v}");
    let (s, _) = env
        .post("/api/orders/RETRY00002/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (_, metrics) = env.get("/metrics", None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("wxpay_upstream_errors_total{endpoint=\"jsapi\"} 5")
    );
    env.finish().await;
}

async fn background_reconciler(b: Backend) {
    // The real loop: every second, orders older than 0 s are queried, refunds too.
    let env = Env::with_config(
        b,
        SimulatorOptions {
            refund_delay: None,
            ..common::fast_sim()
        },
        true,
        |c| {
            c.reconcile_interval = Duration::from_secs(1);
            c.reconcile_after = Duration::from_secs(0);
        },
    )
    .await;
    env.ordered("o_bg", "BGLOOP0001", 300).await;
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.sim.pay("BGLOOP0001").unwrap();
    let order = env.wait_state("BGLOOP0001", "PAID", 10).await;
    assert_eq!(events(&order, "reconciled_paid"), 1, "{order}");
    // A refund whose notification is lost is finished by the refund query.
    let (s, v) = env
        .post(
            "/admin/orders/BGLOOP0001/refund",
            Some(ADMIN),
            json!({ "amount": 300, "out_refund_no": "RFBG000001" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    assert_eq!(env.admin_order("BGLOOP0001").await["state"], "REFUNDING");
    env.sim.complete_refund("RFBG000001").unwrap();
    let order = env.wait_state("BGLOOP0001", "REFUNDED", 10).await;
    assert_eq!(order["refunded"], 300);
    assert_eq!(
        env.sim.notifications_delivered(),
        0,
        "all notifications were dropped"
    );
    env.finish().await;
}

async fn replicas_share_one_database(b: Backend) {
    let env = Env::new(b).await;
    // A second replica on the same database, behind its own port.
    let listeners = wxpay_host::Listeners::loopback().await.unwrap();
    let second = format!("http://{}", listeners.public.local_addr().unwrap());
    let second_admin = format!("http://{}", listeners.admin.local_addr().unwrap());
    let replica = wxpay_host::Host::start(env.config.clone(), listeners, false)
        .await
        .unwrap();
    env.ordered("o_rep", "REPLICA001", 100).await;
    let tx = env.transaction("REPLICA001", "o_rep", 100, "4200000000000000000042");
    // 20 notification ids, each delivered to both replicas at once.
    let notifications = (0..40)
        .map(|i| {
            let (h, body) = env.craft_notification(
                &format!("rep-{}", i / 2),
                "TRANSACTION.SUCCESS",
                "transaction",
                &tx,
            );
            let base = if i % 2 == 0 {
                env.url("")
            } else {
                second.clone()
            };
            (format!("{base}/notify/pay"), h, body)
        })
        .collect();
    let statuses = env.post_concurrently(notifications).await;
    assert_eq!(statuses.len(), 40);
    assert!(
        statuses.iter().all(|s| *s == StatusCode::NO_CONTENT),
        "{statuses:?}"
    );
    let order = env.admin_order("REPLICA001").await;
    assert_eq!(order["state"], "PAID");
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    // Both replicas see the same order.
    let r = env
        .http
        .get(format!("{second_admin}/admin/orders/REPLICA001"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["state"], "PAID");
    replica.stop().await;
    env.finish().await;
}
