//! The money path under races, on both backends, without WeChat: two "replicas" (two app
//! states, two pools) on one database, and interleavings forced by holding the database lock.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Backend, drop_db, fresh_db, vector_keys_dir};
use serde_json::json;
use wxpay_core::v3::Transaction;
use wxpay_host::Config;
use wxpay_host::config::{PlatformKeySource, Secret};
use wxpay_host::domain::{Amount, Description, OrderState, OutTradeNo, RefundState};
use wxpay_host::service::orders::{self, NewOrder};
use wxpay_host::service::payments::{self, Source};
use wxpay_host::service::{AppState, Outcome, ServiceError, refunds};
use wxpay_host::store::{BoxFuture, Cas, NotificationRecord, Store, StoreError, Tx, User};

on_both!(
    replicas_make_one_transition,
    refund_balance_is_guarded,
    close_pay_race_never_loses_a_payment,
    identical_refund_requests_make_one_refund,
    migrations_are_idempotent,
    writes_commit_together_and_fail_alone
);

/// An app state on `url` whose WeChat is unreachable (nothing listens on port 9): these tests
/// exercise the services and the store only.
async fn offline_state(url: &str) -> AppState {
    let keys = vector_keys_dir();
    let read = |f: &str| std::fs::read_to_string(keys.join(f)).unwrap();
    let config = Config {
        pay_api: wxpay_host::config::PayApi::V3,
        api_ca_pem: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: url.into(),
        appid: "wx_store".into(),
        appsecret: Secret::new("s"),
        mchid: "1900000001".into(),
        merchant_serial: "ABC".into(),
        merchant_key_pem: Secret::new(read("merchant_private_key.pem")),
        api_v3_key: Secret::new("0123456789abcdef0123456789abcdef"),
        platform: PlatformKeySource::PublicKey {
            id: "PUB_KEY_ID_0001".into(),
            pem: read("platform_public_key.pem"),
        },
        notify_url: "http://127.0.0.1:9".into(),
        admin_token: Secret::new("store-test-admin-token-000000000"),
        api_base: "http://127.0.0.1:9".into(),
        login_base: "http://127.0.0.1:9".into(),
        order_expire: Duration::from_secs(600),
        session_ttl: Duration::from_secs(600),
        reconcile_interval: Duration::from_secs(600),
        reconcile_after: Duration::from_secs(60),
        cert_refresh_interval: Duration::from_secs(600),
        http_timeout: Duration::from_millis(200),
        upstream_retries: 0,
        body_limit: 65_536,
        recorded_payments: 32_768,
        edge: wxpay_host::config::Edge::default(),
        data_key: None,
    };
    AppState::new(config).await.unwrap()
}

async fn order(s: &AppState, no: &str, amount: i64) {
    s.store
        .upsert_user(
            &User {
                openid: "o_store".into(),
                unionid: None,
                session_key: Secret::new("k"),
            },
            s.now(),
        )
        .await
        .unwrap();
    let new = || NewOrder {
        out_trade_no: Some(OutTradeNo::parse(no.into()).unwrap()),
        openid: "o_store".into(),
        amount: Amount::parse("amount", amount).unwrap(),
        description: Description::parse("store test".into()).unwrap(),
        attach: None,
        expire_in: 600,
    };
    orders::create(s, new()).await.unwrap();
    let again = orders::create(s, new()).await;
    assert!(matches!(again, Err(ServiceError::Conflict(_))), "{again:?}");
}

fn transaction(no: &str, id: &str, total: i64) -> Transaction {
    serde_json::from_value(json!({
        "mchid": "1900000001", "appid": "wx_store", "out_trade_no": no,
        "transaction_id": id, "trade_state": "SUCCESS", "trade_type": "JSAPI",
        "payer": { "openid": "o_store" }, "amount": { "total": total, "currency": "CNY" },
    }))
    .unwrap()
}

async fn pay(s: &AppState, no: &str, notification: &str, id: &str, total: i64) -> Outcome {
    let tx = transaction(no, id, total);
    let source = Source::Notification {
        id: notification,
        event_type: "TRANSACTION.SUCCESS",
    };
    payments::apply(s, &tx, source).await.unwrap().unwrap()
}

async fn replicas_make_one_transition(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = offline_state(&url).await;
    let replica = offline_state(&url).await;
    order(&a, "STORE00001", 100).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        let s = if i % 2 == 0 {
            a.clone()
        } else {
            replica.clone()
        };
        // 30 distinct notification ids, each delivered twice.
        set.spawn(async move {
            pay(
                &s,
                "STORE00001",
                &format!("n-{}", i / 2),
                "4200000000000000000001",
                100,
            )
            .await
            .label()
        });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = set.join_next().await {
        outcomes.push(r.unwrap());
    }
    let count = |x: &str| outcomes.iter().filter(|o| **o == x).count();
    assert_eq!(count("notify_paid"), 1, "{outcomes:?}");
    assert_eq!(count("duplicate"), 59, "{outcomes:?}");
    let o = replica.store.order("STORE00001").await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::Paid);
    let events = a.store.order_events("STORE00001").await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "notify_paid").count(), 1);
    a.store.close().await;
    replica.store.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

async fn refund_balance_is_guarded(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = offline_state(&url).await;
    let replica = offline_state(&url).await;
    order(&a, "STORE00002", 100).await;
    let ten = Amount::parse("amount", 10).unwrap();
    let early = refunds::request(&a, "STORE00002", None, ten, None).await;
    assert!(
        matches!(early, Err(ServiceError::Conflict(_))),
        "unpaid: {early:?}"
    );
    pay(&a, "STORE00002", "n-2", "4200000000000000000002", 100).await;
    let states = Arc::new([a.clone(), replica.clone()]);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let states = states.clone();
        set.spawn(async move {
            let thirty = Amount::parse("amount", 30).unwrap();
            refunds::request(
                &states[i % 2],
                "STORE00002",
                None,
                thirty,
                Some("race".into()),
            )
            .await
            .is_ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += usize::from(r.unwrap());
    }
    assert_eq!(ok, 3, "only 3 x 30 fit into 100");
    let o = a.store.order("STORE00002").await.unwrap().unwrap();
    assert_eq!((o.state, o.refund_pending), (OrderState::Refunding, 90));
    // WeChat was unreachable: the three stay PENDING (to be resubmitted), reserving 90.
    let all = a.store.refunds("STORE00002").await.unwrap();
    assert!(
        all.iter().all(|r| r.state == RefundState::Pending),
        "{all:?}"
    );
    // Finish them from two replicas at once; each result applies once.
    for r in all {
        let ev = wxpay_host::domain::RefundEvent::Status {
            status: "SUCCESS",
            refund_id: Some("50300000"),
        };
        let (x, y) = tokio::join!(
            refunds::apply(&a, &r.out_refund_no, &ev, None),
            refunds::apply(&replica, &r.out_refund_no, &ev, None)
        );
        let changed = [x.unwrap(), y.unwrap()]
            .iter()
            .filter(|o| matches!(o, refunds::RefundOutcome::Changed { .. }))
            .count();
        assert_eq!(changed, 1);
    }
    let o = a.store.order("STORE00002").await.unwrap().unwrap();
    assert_eq!(
        (o.state, o.refunded, o.refund_pending),
        (OrderState::Paid, 90, 0)
    );
    a.store.close().await;
    replica.store.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

/// Holds the database's write lock (SQLite) or the order's row lock (PostgreSQL) until
/// `release` fires, so that the operations started meanwhile all wait and then race.
async fn hold_lock(
    url: String,
    no: String,
    locked: tokio::sync::oneshot::Sender<()>,
    release: tokio::sync::oneshot::Receiver<()>,
) {
    let store = Store::connect(&url).await.unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.order_for_update(&no).await.unwrap();
    locked.send(()).unwrap();
    release.await.unwrap();
    drop(tx);
    store.close().await;
}

/// Issue 3.1: a verified `SUCCESS` and a close in flight at once, many times, both orders of
/// commit. The payment is never acknowledged without being recorded: either it wins (`PAID`,
/// the close is refused) or the close wins and the payment lands in `REVIEW` with its id.
async fn close_pay_race_never_loses_a_payment(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let s = offline_state(&url).await;
    let (mut paid_first, mut closed_first) = (0, 0);
    for i in 0..40 {
        let no = format!("RACE{i:06}");
        order(&s, &no, 100).await;
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel();
        let holder = tokio::spawn(hold_lock(url.clone(), no.clone(), locked_tx, release_rx));
        locked_rx.await.unwrap();
        // Alternate which one queues first on the lock.
        let (s1, s2, n1, n2) = (s.clone(), s.clone(), no.clone(), no.clone());
        let id = format!("42000000000000{i:08}");
        let pay_task = async move { pay(&s1, &n1, &format!("race-{i}"), &id, 100).await };
        let close_task = async move { orders::close(&s2, &n2, "closed_by_merchant").await };
        let (p, c) = if i % 2 == 0 {
            let p = tokio::spawn(pay_task);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let c = tokio::spawn(close_task);
            (p, c)
        } else {
            let c = tokio::spawn(close_task);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let p = tokio::spawn(pay_task);
            (p, c)
        };
        tokio::time::sleep(Duration::from_millis(30)).await;
        release_tx.send(()).unwrap();
        holder.await.unwrap();
        let paid = p.await.unwrap();
        let closed = c.await.unwrap();
        let o = s.store.order(&no).await.unwrap().unwrap();
        // The money is recorded whatever the order of commits.
        assert!(
            o.transaction_id.is_some(),
            "lost payment: {o:?} {paid:?} {closed:?}"
        );
        match o.state {
            OrderState::Paid => {
                paid_first += 1;
                assert!(
                    matches!(closed, Err(ServiceError::Conflict(_))),
                    "{closed:?}"
                );
            }
            OrderState::Review => {
                closed_first += 1;
                assert!(closed.is_ok());
                assert!(o.review_reason.unwrap().contains("closed"));
            }
            other => panic!("unexpected {other}"),
        }
        let kind = paid.label();
        assert!(kind == "notify_paid" || kind == "flagged_review", "{kind}");
    }
    eprintln!(
        "close/pay race ({b:?}): {paid_first} paid first, {closed_first} closed first, 0 lost"
    );
    assert!(
        paid_first > 0 && closed_first > 0,
        "both orders of commit must occur"
    );
    s.store.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

/// Concurrent identical refund requests (same `out_refund_no`) get the same answer and make
/// one refund.
async fn identical_refund_requests_make_one_refund(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let s = offline_state(&url).await;
    order(&s, "STORE00004", 100).await;
    pay(&s, "STORE00004", "n-4", "4200000000000000000004", 100).await;
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let s = s.clone();
        set.spawn(async move {
            let no = wxpay_host::domain::OutRefundNo::parse("RF_SAME_0001".into()).unwrap();
            refunds::request(
                &s,
                "STORE00004",
                Some(no),
                Amount::parse("amount", 40).unwrap(),
                None,
            )
            .await
            .map(|r| (r.out_refund_no, r.amount))
            .map_err(|e| e.to_string())
        });
    }
    let mut answers = Vec::new();
    while let Some(r) = set.join_next().await {
        answers.push(r.unwrap());
    }
    assert!(
        answers
            .iter()
            .all(|a| a == &Ok(("RF_SAME_0001".to_owned(), 40))),
        "{answers:?}"
    );
    let o = s.store.order("STORE00004").await.unwrap().unwrap();
    assert_eq!(o.refund_pending, 40);
    assert_eq!(s.store.refunds("STORE00004").await.unwrap().len(), 1);
    // The same number for another amount is a conflict.
    let no = wxpay_host::domain::OutRefundNo::parse("RF_SAME_0001".into()).unwrap();
    let other = refunds::request(
        &s,
        "STORE00004",
        Some(no),
        Amount::parse("amount", 41).unwrap(),
        None,
    )
    .await;
    assert!(matches!(other, Err(ServiceError::Conflict(_))), "{other:?}");
    s.store.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

async fn migrations_are_idempotent(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = offline_state(&url).await;
    order(&a, "STORE00003", 5).await;
    a.store.close().await;
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.order("STORE00003").await.unwrap().unwrap().amount, 5);
    let counts = again.order_counts().await.unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 1);
    again.ping().await.unwrap();
    again.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

/// A write job appending an event of `kind` to BATCH00001, then failing if `fail`.
fn event_job(
    kind: &'static str,
    fail: bool,
) -> impl for<'a> FnOnce(&'a mut Tx) -> BoxFuture<'a, Result<&'static str, StoreError>> + Send + 'static
{
    move |tx: &mut Tx| {
        Box::pin(async move {
            tx.event("BATCH00001", kind, None, None, "", 0).await?;
            if fail {
                return Err(StoreError::Corrupt(format!("{kind} fails after writing")));
            }
            Ok(kind)
        })
    }
}

/// Issue 11 item 1: SQLite's writes go through one writer that commits what queued together;
/// a job that fails is undone alone; every answer comes after its commit (the rows are there
/// for a reader as soon as `write` returns). On PostgreSQL `write` is one transaction per job:
/// the same assertions hold, without batches.
async fn writes_commit_together_and_fail_alone(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let s = offline_state(&url).await;
    order(&s, "BATCH00001", 100).await;
    // Hold the write lock so that the writes below queue, then let them all go at once.
    let (locked_tx, locked) = tokio::sync::oneshot::channel();
    let (release, release_rx) = tokio::sync::oneshot::channel();
    let holder = tokio::spawn(hold_lock(
        url.clone(),
        "BATCH00001".into(),
        locked_tx,
        release_rx,
    ));
    locked.await.unwrap();
    let before = s.store.writer_stats();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..64 {
        let store = s.store.clone();
        let job = event_job(if i == 17 { "failing" } else { "batched" }, i == 17);
        set.spawn(async move { store.write(job).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    release.send(()).unwrap();
    holder.await.unwrap();
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok("batched") => ok += 1,
            Err(StoreError::Corrupt(_)) => failed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((ok, failed), (63, 1));
    let events = s.store.order_events("BATCH00001").await.unwrap();
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count("batched"), 63, "every answered write is committed");
    assert_eq!(count("failing"), 0, "the failed job was undone alone");
    if let (Some(before), Some(after)) = (before, s.store.writer_stats()) {
        let (batches, jobs) = (after.batches - before.batches, after.jobs - before.jobs);
        assert_eq!(jobs, 64);
        assert!(
            batches <= 3,
            "64 queued writes committed in {batches} batches"
        );
    } else {
        assert!(s.store.is_postgres());
    }
    // After close, a write fails and commits nothing.
    s.store.close().await;
    assert!(
        s.store
            .write(event_job("after_close", false))
            .await
            .is_err()
    );
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

/// Issue 11 item 2: PostgreSQL's optimistic write applies a decision only to the row it was
/// taken on: a row changed since the read is `Stale` (nothing written), a notification recorded
/// since the read is `Duplicate` and undoes the whole statement (no half-applied change).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn optimistic_write_applies_only_to_the_row_read() {
    if std::env::var("WXPAY_TEST_POSTGRES_URL").is_err() {
        eprintln!("skipped: WXPAY_TEST_POSTGRES_URL is not set");
        return;
    }
    let (url, schema, dir) = fresh_db(Backend::Postgres).await;
    let s = offline_state(&url).await;
    order(&s, "CAS0000001", 100).await;
    let note = |id| NotificationRecord {
        id,
        kind: "pay",
        event_type: "TRANSACTION.SUCCESS",
        out_trade_no: "CAS0000001",
    };
    let (seen, recorded) = s
        .store
        .order_and_seen("CAS0000001", Some("N1"))
        .await
        .unwrap();
    let seen = seen.unwrap();
    assert!(!recorded);
    let mut next = seen.clone();
    next.checks += 1;
    // Someone else changes the order in between: the write is refused, nothing recorded.
    let mut other = seen.clone();
    other.review_reason = Some("changed meanwhile".into());
    let mut tx = s.store.begin().await.unwrap();
    tx.write_order(&other).await.unwrap();
    tx.commit().await.unwrap();
    let cas = s
        .store
        .apply_if_unchanged(
            &seen,
            Some((&next, "test_change", "")),
            Some((&note("N1"), "x")),
            1,
        )
        .await
        .unwrap();
    assert_eq!(cas, Cas::Stale);
    assert!(!s.store.notification_seen("N1").await.unwrap());
    let now = s.store.order("CAS0000001").await.unwrap().unwrap();
    assert_eq!(now.checks, seen.checks, "the stale decision wrote nothing");
    // On the fresh row it applies: order, event and notification together.
    let cas = s
        .store
        .apply_if_unchanged(
            &now,
            Some((&next, "test_change", "d")),
            Some((&note("N1"), "x")),
            1,
        )
        .await
        .unwrap();
    assert_eq!(cas, Cas::Applied);
    assert!(s.store.notification_seen("N1").await.unwrap());
    let events = s.store.order_events("CAS0000001").await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "test_change").count(), 1);
    // The same notification again (recorded after our read): Duplicate, and the order update
    // in the same statement is undone.
    let fresh = s.store.order("CAS0000001").await.unwrap().unwrap();
    let mut again = fresh.clone();
    again.checks += 10;
    let cas = s
        .store
        .apply_if_unchanged(
            &fresh,
            Some((&again, "test_change", "")),
            Some((&note("N1"), "x")),
            2,
        )
        .await
        .unwrap();
    assert_eq!(cas, Cas::Duplicate);
    let after = s.store.order("CAS0000001").await.unwrap().unwrap();
    assert_eq!(after.checks, fresh.checks, "nothing half-applied");
    let events = s.store.order_events("CAS0000001").await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "test_change").count(), 1);
    s.store.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}
