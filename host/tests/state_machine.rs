//! The order and refund state machines end to end (host + simulator), on SQLite and PostgreSQL:
//! every state has a way out, nothing authentic is dropped, nothing is acknowledged unrecorded.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{ADMIN, Backend, Env, events};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wxpay_host::service::reconcile::run_once;
use wxpay_simulator::{NotifyBehavior, RefundFault, RefundStatus, SimulatorOptions, TradeState};

on_both!(
    payment_after_close_is_reviewed_then_accepted,
    review_is_refundable,
    console_refund_is_recorded,
    abnormal_refund_keeps_its_reservation,
    unknown_refund_outcome_is_resubmitted,
    refund_unknown_at_wechat_is_submitted_again,
    reconciler_handles_every_trade_state,
    lost_notification_found_among_abandoned_orders,
    closed_order_is_rechecked_once,
    double_payment_is_flagged,
    repeats_of_a_recorded_payment_skip_the_database,
    replicas_reconcile_without_repeating,
    errors_are_typed,
    back_office_view_is_one_snapshot
);

fn no_auto_refunds() -> SimulatorOptions {
    SimulatorOptions {
        refund_delay: None,
        ..common::fast_sim()
    }
}

async fn admin(env: &Env, path: &str, body: Value) -> (StatusCode, Value) {
    env.post(path, Some(ADMIN), body).await
}

async fn refund(env: &Env, no: &str, amount: i64, out_refund_no: &str) -> (StatusCode, Value) {
    admin(
        env,
        &format!("/admin/orders/{no}/refund"),
        json!({ "amount": amount, "out_refund_no": out_refund_no }),
    )
    .await
}

/// A paid order under review: closed by the merchant, then paid at WeChat anyway.
async fn reviewed(env: &Env, openid: &str, no: &str, amount: i64) -> Value {
    env.ordered(openid, no, amount).await;
    let (s, v) = admin(env, &format!("/admin/orders/{no}/close"), Value::Null).await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("CLOSED")),
        "{v}"
    );
    env.sim.pay_even_if_closed(no).unwrap();
    env.wait_state(no, "REVIEW", 10).await
}

async fn payment_after_close_is_reviewed_then_accepted(b: Backend) {
    let env = Env::new(b).await;
    let order = reviewed(&env, "o_late", "LATE000001", 500).await;
    // Recorded, not dropped: the transaction id, the reason, an event; WeChat got a 2xx.
    assert!(order["transaction_id"].as_str().is_some(), "{order}");
    assert!(
        order["review_reason"].as_str().unwrap().contains("closed"),
        "{order}"
    );
    assert_eq!(events(&order, "flagged_review"), 1, "{order}");
    env.sim.wait_idle(Duration::from_secs(10)).await.unwrap();
    assert!(
        env.sim
            .delivery_attempts()
            .iter()
            .any(|a| a.status == Some(204))
    );
    // Closing again is harmless; paying is refused.
    let (s, v) = admin(&env, "/admin/orders/LATE000001/close", Value::Null).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["message"], "order is REVIEW");
    let (s, v) = admin(&env, "/admin/orders/LATE000001/accept", Value::Null).await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::OK, Some("PAID")),
        "{v}"
    );
    assert_eq!(events(&v, "review_accepted"), 1);
    let (s, v) = admin(&env, "/admin/orders/LATE000001/accept", Value::Null).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    env.finish().await;
}

async fn review_is_refundable(b: Backend) {
    let env = Env::with(b, no_auto_refunds()).await;
    reviewed(&env, "o_rr", "REVREF0001", 1000).await;
    let (s, v) = refund(&env, "REVREF0001", 400, "RFREV00001").await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PROCESSING")),
        "{v}"
    );
    assert_eq!(env.admin_order("REVREF0001").await["state"], "REFUNDING");
    env.sim.complete_refund("RFREV00001").unwrap();
    let order = env.wait_state("REVREF0001", "PAID", 10).await;
    assert_eq!(order["refunded"], 400);
    let (s, _) = refund(&env, "REVREF0001", 600, "RFREV00002").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    env.sim.complete_refund("RFREV00002").unwrap();
    let order = env.wait_state("REVREF0001", "REFUNDED", 10).await;
    assert_eq!(order["refunded"], 1000);
    let (s, v) = refund(&env, "REVREF0001", 1, "RFREV00003").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    env.finish().await;
}

async fn console_refund_is_recorded(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_con", "CONSOLE001", 800).await;
    env.sim.pay("CONSOLE001").unwrap();
    env.wait_state("CONSOLE001", "PAID", 10).await;
    let out_refund_no = env.sim.console_refund("CONSOLE001", 300).unwrap();
    // PROCESSING is not notified; SUCCESS (after the refund delay) is, and creates the row.
    for _ in 0..100 {
        if env.admin_order("CONSOLE001").await["refunded"] == 300 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let order = env.admin_order("CONSOLE001").await;
    assert_eq!(order["refunded"], 300, "{order}");
    let refunds = order["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1, "{order}");
    assert_eq!(refunds[0]["out_refund_no"], out_refund_no.as_str());
    assert_eq!(
        (refunds[0]["source"].as_str(), refunds[0]["state"].as_str()),
        (Some("console"), Some("SUCCESS"))
    );
    assert_eq!(events(&order, "external_refund"), 1);
    env.sim.wait_idle(Duration::from_secs(10)).await.unwrap();
    assert!(
        env.sim
            .delivery_attempts()
            .iter()
            .all(|a| a.status.is_none_or(|s| s == 204)),
        "every delivery answered 2xx: {:?}",
        env.sim.delivery_attempts()
    );
    env.finish().await;
}

async fn abnormal_refund_keeps_its_reservation(b: Backend) {
    let env = Env::with(b, no_auto_refunds()).await;
    env.ordered("o_abn", "ABNORMAL01", 1000).await;
    env.sim.pay("ABNORMAL01").unwrap();
    env.wait_state("ABNORMAL01", "PAID", 10).await;
    let (s, _) = refund(&env, "ABNORMAL01", 700, "RFABN00001").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    env.sim
        .set_refund_status("RFABN00001", RefundStatus::Abnormal)
        .unwrap();
    let mut order = Value::Null;
    for _ in 0..100 {
        order = env.admin_order("ABNORMAL01").await;
        if order["refunds"][0]["state"] == "ABNORMAL" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(order["refunds"][0]["state"], "ABNORMAL", "{order}");
    assert_eq!(
        (order["state"].as_str(), order["refund_pending"].as_i64()),
        (Some("REFUNDING"), Some(700))
    );
    // The reserved 700 cannot be refunded again meanwhile.
    let (s, v) = refund(&env, "ABNORMAL01", 301, "RFABN00002").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    // The later SUCCESS for the same out_refund_no is applied.
    env.sim
        .set_refund_status("RFABN00001", RefundStatus::Success)
        .unwrap();
    let order = env.wait_state("ABNORMAL01", "PAID", 10).await;
    assert_eq!(
        (order["refunded"].as_i64(), order["refund_pending"].as_i64()),
        (Some(700), Some(0)),
        "{order}"
    );
    assert_eq!(order["refunds"][0]["state"], "SUCCESS");
    env.finish().await;
}

async fn unknown_refund_outcome_is_resubmitted(b: Backend) {
    let env = Env::with(b, no_auto_refunds()).await;
    env.ordered("o_unk", "UNKNOWN001", 600).await;
    env.sim.pay("UNKNOWN001").unwrap();
    env.wait_state("UNKNOWN001", "PAID", 10).await;
    // WeChat creates the refund but every answer is a 500 (more than the client's retries).
    env.sim
        .fail_next_refunds(RefundFault::CreatedButError(500), 3);
    let (s, v) = refund(&env, "UNKNOWN001", 600, "RFUNK00001").await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{v}"
    );
    // The reserved amount blocks another refund.
    let (s, _) = refund(&env, "UNKNOWN001", 1, "RFUNK00002").await;
    assert_eq!(s, StatusCode::CONFLICT);
    // The reconciler resubmits the same out_refund_no: WeChat answers with the same refund.
    let r = run_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!((r.resubmitted, r.errors), (1, 0), "{r:?}");
    let order = env.admin_order("UNKNOWN001").await;
    assert_eq!(order["refunds"][0]["state"], "PROCESSING", "{order}");
    assert_eq!(order["refunds"].as_array().unwrap().len(), 1);
    env.sim.complete_refund("RFUNK00001").unwrap();
    let order = env.wait_state("UNKNOWN001", "REFUNDED", 10).await;
    assert_eq!(order["refunded"], 600);
    // A refused submission (nothing created) releases the amount: 409 with WeChat's code.
    env.ordered("o_unk", "UNKNOWN002", 600).await;
    env.sim.pay("UNKNOWN002").unwrap();
    env.wait_state("UNKNOWN002", "PAID", 10).await;
    env.sim.fail_next_refunds(
        RefundFault::Rejected {
            status: 403,
            code: "NOT_ENOUGH".into(),
        },
        1,
    );
    let (s, v) = refund(&env, "UNKNOWN002", 600, "RFUNK00003").await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("NOT_ENOUGH"),
        "{v}"
    );
    let order = env.admin_order("UNKNOWN002").await;
    assert_eq!(
        (
            order["state"].as_str(),
            order["refunds"][0]["state"].as_str()
        ),
        (Some("PAID"), Some("FAILED"))
    );
    env.finish().await;
}

async fn refund_unknown_at_wechat_is_submitted_again(b: Backend) {
    let env = Env::with(b, no_auto_refunds()).await;
    env.ordered("o_nf", "NOTFOUND01", 500).await;
    env.sim.pay("NOTFOUND01").unwrap();
    env.wait_state("NOTFOUND01", "PAID", 10).await;
    // A 5xx before anything is created: the outcome is unknown, so PENDING.
    env.sim.fail_next_refunds(
        RefundFault::Rejected {
            status: 500,
            code: "SYSTEM_ERROR".into(),
        },
        3,
    );
    let (s, v) = refund(&env, "NOTFOUND01", 500, "RFNF000001").await;
    assert_eq!(
        (s, v["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{v}"
    );
    // Pretend an earlier answer said PROCESSING: the query answers RESOURCE_NOT_EXISTS, which
    // means "submit again".
    let ev = wxpay_host::domain::RefundEvent::Status {
        status: "PROCESSING",
        refund_id: None,
    };
    wxpay_host::service::refunds::apply(env.state(), "RFNF000001", &ev, None)
        .await
        .unwrap();
    let r = run_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!(r.errors, 0, "{r:?}");
    assert_eq!(
        env.admin_order("NOTFOUND01").await["refunds"][0]["state"],
        "PENDING"
    );
    assert_eq!(env.sim.refund_query_count("RFNF000001"), 1);
    // Due again at once, but taken in the next pass (after the lease of this one).
    let r = run_once(env.state(), Env::now() + 120 + 121).await.unwrap();
    assert_eq!(r.resubmitted, 1, "{r:?}");
    assert!(
        env.sim.refund("RFNF000001").is_some(),
        "created at WeChat now"
    );
    env.sim.complete_refund("RFNF000001").unwrap();
    env.wait_state("NOTFOUND01", "REFUNDED", 10).await;
    env.finish().await;
}

async fn reconciler_handles_every_trade_state(b: Backend) {
    let env = Env::with(b, no_auto_refunds()).await;
    let cases = [
        ("TSREVOKED1", TradeState::Revoked, "CLOSED"),
        ("TSPAYERR01", TradeState::PayError, "CLOSED"),
        ("TSCLOSED01", TradeState::Closed, "CLOSED"),
        ("TSUSERPAY1", TradeState::UserPaying, "CREATED"),
        ("TSNOTPAY01", TradeState::NotPay, "CREATED"),
    ];
    for (no, ts, _) in cases {
        env.ordered("o_ts", no, 100).await;
        env.sim.set_trade_state(no, ts).unwrap();
    }
    // Paid, then refunded in the console, both notifications lost: trade_state REFUND.
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.ordered("o_ts", "TSREFUND01", 100).await;
    env.sim.pay("TSREFUND01").unwrap();
    env.sim.console_refund("TSREFUND01", 100).unwrap();
    assert_eq!(
        env.sim.order("TSREFUND01").unwrap().trade_state.as_str(),
        "REFUND"
    );
    let r = run_once(env.state(), Env::now() + 120).await.unwrap();
    assert_eq!((r.queried, r.errors), (6, 0), "{r:?}");
    for (no, ts, want) in cases {
        let o = env.admin_order(no).await;
        assert_eq!(o["state"], want, "{}: {o}", ts.as_str());
    }
    let o = env.admin_order("TSREFUND01").await;
    assert_eq!(o["state"], "PAID", "{o}");
    assert!(o["transaction_id"].as_str().is_some());
    // Unpaid ones are asked again later, with backoff: not in the next minute.
    let before = env.sim.query_count("TSNOTPAY01");
    let r = run_once(env.state(), Env::now() + 150).await.unwrap();
    assert_eq!(r.queried, 0, "{r:?}");
    let r = run_once(env.state(), Env::now() + 120 + 121).await.unwrap();
    assert_eq!(r.queried, 2, "NOTPAY and USERPAYING again: {r:?}");
    assert_eq!(env.sim.query_count("TSNOTPAY01"), before + 1);
    env.finish().await;
}

async fn lost_notification_found_among_abandoned_orders(b: Backend) {
    let env = Env::new(b).await;
    let token = env.login("o_ab").await;
    // 250 abandoned orders placed at WeChat first (more than one claim batch).
    for i in 0..250 {
        let no = format!("ABANDON{i:05}");
        env.create_order("o_ab", &no, 100, 7200).await;
        let (s, _) = env
            .post(&format!("/api/orders/{no}/pay"), Some(&token), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let t0 = Env::now();
    let r = run_once(env.state(), t0 + 61).await.unwrap();
    assert_eq!((r.queried, r.errors), (250, 0), "{r:?}");
    // Then a paid order whose notification is lost.
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.create_order("o_ab", "ABANDONLOST", 100, 7200).await;
    let (s, _) = env
        .post("/api/orders/ABANDONLOST/pay", Some(&token), Value::Null)
        .await;
    assert_eq!(s, StatusCode::OK);
    env.sim.pay("ABANDONLOST").unwrap();
    // Its first check comes on its own schedule; the abandoned ones wait for their backoff.
    let r = run_once(env.state(), Env::now() + 61).await.unwrap();
    assert_eq!((r.queried, r.paid), (1, 1), "{r:?}");
    assert_eq!(env.admin_order("ABANDONLOST").await["state"], "PAID");
    env.finish().await;
}

async fn closed_order_is_rechecked_once(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_rc", "RECHECK001", 100).await;
    let (s, _) = admin(&env, "/admin/orders/RECHECK001/close", Value::Null).await;
    assert_eq!(s, StatusCode::OK);
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.sim.pay_even_if_closed("RECHECK001").unwrap();
    let r = run_once(env.state(), Env::now() + 60).await.unwrap();
    assert_eq!(r.queried, 0, "not before the re-check time: {r:?}");
    let r = run_once(env.state(), Env::now() + 301).await.unwrap();
    assert_eq!((r.queried, r.paid), (1, 1), "{r:?}");
    let o = env.admin_order("RECHECK001").await;
    assert_eq!(o["state"], "REVIEW", "{o}");
    assert!(o["transaction_id"].as_str().is_some());
    let n = env.sim.query_count("RECHECK001");
    let r = run_once(env.state(), Env::now() + 3600).await.unwrap();
    assert_eq!(r.queried, 0, "{r:?}");
    assert_eq!(env.sim.query_count("RECHECK001"), n);
    env.finish().await;
}

async fn double_payment_is_flagged(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_dbl", "DOUBLE0001", 100).await;
    env.sim.pay("DOUBLE0001").unwrap();
    let first = env.wait_state("DOUBLE0001", "PAID", 10).await;
    let second = env.sim.pay_again("DOUBLE0001").unwrap();
    let mut o = Value::Null;
    for _ in 0..100 {
        o = env.admin_order("DOUBLE0001").await;
        if o["double_payment"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(o["double_payment"], second.as_str(), "{o}");
    assert_eq!(o["transaction_id"], first["transaction_id"]);
    assert_eq!(
        (o["state"].as_str(), events(&o, "double_payment")),
        (Some("PAID"), 1)
    );
    env.finish().await;
}

/// A repeat of a payment this process committed is answered without the database — and only
/// that: another transaction id for the same order, or a payment for an unknown order, still
/// reaches it. A replica that never saw the payment asks the database.
async fn repeats_of_a_recorded_payment_skip_the_database(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_mem", "MEMORY0001", 300).await;
    let send = |id: &str, no: &str, txid: &str| {
        let tx = env.transaction(no, "o_mem", 300, txid);
        env.craft_notification(id, "TRANSACTION.SUCCESS", "transaction", &tx)
    };
    let known = || env.state().metrics.payments_known_in_memory();
    let (h, body) = send("mem-1", "MEMORY0001", "TXMEM1");
    assert_eq!(
        env.send_notification("/notify/pay", &h, body).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(known(), 0);
    // A repeat under a new notification id: from memory, nothing written.
    let (h, body) = send("mem-2", "MEMORY0001", "TXMEM1");
    assert_eq!(
        env.send_notification("/notify/pay", &h, body).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(known(), 1);
    // Another payment of the same order: recorded as a double payment.
    let (h, body) = send("mem-3", "MEMORY0001", "TXMEM2");
    assert_eq!(
        env.send_notification("/notify/pay", &h, body).await.0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(known(), 1);
    let o = env.admin_order("MEMORY0001").await;
    assert_eq!(
        (o["transaction_id"].as_str(), o["double_payment"].as_str()),
        (Some("TXMEM1"), Some("TXMEM2")),
        "{o}"
    );
    assert_eq!(
        (events(&o, "notify_paid"), events(&o, "double_payment")),
        (1, 1),
        "{o}"
    );
    // The same transaction id reported for an order we do not have: the database says so.
    let (h, body) = send("mem-4", "NOSUCH0001", "TXMEM1");
    assert_eq!(
        env.send_notification("/notify/pay", &h, body).await.0,
        StatusCode::BAD_REQUEST
    );
    // A second replica has not seen the payment: its first repeat reads the row, the next
    // comes from its memory.
    let replica = wxpay_host::AppState::new(env.config.clone()).await.unwrap();
    let tx = env.transaction("MEMORY0001", "o_mem", 300, "TXMEM1");
    for expected in [0, 1] {
        let outcome = wxpay_host::service::payments::apply(
            &replica,
            &serde_json::from_value(tx.clone()).unwrap(),
            wxpay_host::service::payments::Source::Notification {
                id: &format!("mem-replica-{expected}"),
                event_type: "TRANSACTION.SUCCESS",
            },
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(outcome.label(), "duplicate");
        assert_eq!(replica.metrics.payments_known_in_memory(), expected);
    }
    let o = env.admin_order("MEMORY0001").await;
    assert_eq!(
        (events(&o, "notify_paid"), events(&o, "double_payment")),
        (1, 1),
        "{o}"
    );
    env.finish().await;
}

async fn replicas_reconcile_without_repeating(b: Backend) {
    let env = Env::new(b).await;
    let replica = wxpay_host::AppState::new(env.config.clone()).await.unwrap();
    let token = env.login("o_rp").await;
    for i in 0..40 {
        let no = format!("REPLREC{i:03}");
        env.create_order("o_rp", &no, 100, 7200).await;
        let (s, _) = env
            .post(&format!("/api/orders/{no}/pay"), Some(&token), Value::Null)
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    let at = Env::now() + 61;
    let (a, b2) = tokio::join!(run_once(env.state(), at), run_once(&replica, at));
    let (a, b2) = (a.unwrap(), b2.unwrap());
    assert_eq!(a.queried + b2.queried, 40, "{a:?} {b2:?}");
    let total: usize = (0..40)
        .map(|i| env.sim.query_count(&format!("REPLREC{i:03}")))
        .sum();
    assert_eq!(total, 40, "each order queried once across both replicas");
    replica.store.close().await;
    env.finish().await;
}

async fn errors_are_typed(b: Backend) {
    let mut env = Env::new(b).await;
    env.ordered("o_err", "ERRORS0001", 100).await;
    // Conflict: refunding an unpaid order.
    let (s, v) = refund(&env, "ERRORS0001", 10, "RFERR00001").await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("conflict")),
        "{v}"
    );
    // Upstream: WeChat busy on every try while closing → 503, order unchanged.
    env.sim.fail_next_v3(500, "SYSTEM_ERROR", 3);
    let (s, v) = admin(&env, "/admin/orders/ERRORS0001/close", Value::Null).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("upstream_unavailable")
        ),
        "{v}"
    );
    assert_eq!(env.admin_order("ERRORS0001").await["state"], "CREATED");
    // Storage: the database goes away → 500 (not 502) with a clear code.
    let (s, _) = env.get("/healthz", None).await;
    assert_eq!(s, StatusCode::OK);
    env.state().store.close().await;
    let (s, v) = admin(&env, "/admin/orders/ERRORS0001/accept", Value::Null).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("internal")),
        "{v}"
    );
    env.stop_host().await;
    env.start_host().await;
    assert_eq!(env.admin_order("ERRORS0001").await["state"], "CREATED");
    env.finish().await;
}

/// The back-office view of an order is read in one snapshot: while refunds complete in the
/// background, every view's amounts agree with its own refund list (refunded = the `SUCCESS`
/// refunds, reserved = the ones not final). Three separate reads could show a refund
/// `SUCCESS` next to an order that has not counted it yet.
async fn back_office_view_is_one_snapshot(b: Backend) {
    let env = Env::new(b).await;
    env.ordered("o_snap", "SNAPSHOT01", 1000).await;
    env.sim.pay("SNAPSHOT01").unwrap();
    env.wait_state("SNAPSHOT01", "PAID", 10).await;
    for i in 0..5 {
        let (s, v) = refund(&env, "SNAPSHOT01", 100, &format!("RFSNAP{i:04}")).await;
        assert_eq!(s, StatusCode::ACCEPTED, "{v}");
    }
    let sum = |o: &Value, states: &[&str]| -> i64 {
        o["refunds"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| states.contains(&r["state"].as_str().unwrap()))
            .map(|r| r["amount"].as_i64().unwrap())
            .sum()
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut views = 0;
    loop {
        let o = env.admin_order("SNAPSHOT01").await;
        views += 1;
        assert_eq!(o["refunded"].as_i64(), Some(sum(&o, &["SUCCESS"])), "{o}");
        assert_eq!(
            o["refund_pending"].as_i64(),
            Some(sum(&o, &["PENDING", "PROCESSING", "ABNORMAL"])),
            "{o}"
        );
        if o["refunded"] == 500 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refunds never completed: {o}"
        );
    }
    assert!(views > 1, "the view was read while the refunds completed");
    env.finish().await;
}
