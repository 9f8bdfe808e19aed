//! Store tests on both backends: two "replicas" (two pools) racing on one database.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::sync::Arc;

use common::{Backend, drop_db, fresh_db};
use wxpay_host::store::{
    Applied, NewOrder, NotificationRecord, OrderState, RefundUpdate, Store, StoreError, Transition,
};

on_both!(
    replicas_make_one_transition,
    refund_balance_is_guarded,
    migrations_are_idempotent
);

fn paid() -> Transition {
    Transition {
        from: OrderState::Created,
        to: OrderState::Paid,
        kind: "notify_paid",
        detail: String::new(),
        transaction_id: Some("4200000000000000000001".into()),
        review_reason: None,
    }
}

async fn order(store: &Store, no: &str, amount: i64) {
    let now = wxpay_host::wechat::unix_now();
    let o = NewOrder {
        out_trade_no: no.into(),
        openid: "o_store".into(),
        amount,
        description: "store test".into(),
        attach: None,
        expire_at: now + 600,
    };
    store.insert_order(&o, now).await.unwrap();
    let again = store.insert_order(&o, now).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

async fn replicas_make_one_transition(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = Store::connect(&url).await.unwrap();
    let replica = Store::connect(&url).await.unwrap();
    order(&a, "STORE00001", 100).await;
    let mut set = tokio::task::JoinSet::new();
    for i in 0..60 {
        let store = if i % 2 == 0 {
            a.clone()
        } else {
            replica.clone()
        };
        // 30 distinct notification ids, each delivered twice.
        let rec = NotificationRecord {
            id: format!("n-{}", i / 2),
            kind: "pay",
            event_type: "TRANSACTION.SUCCESS".into(),
            out_trade_no: "STORE00001".into(),
        };
        set.spawn(async move {
            store
                .apply_notification(&rec, Some(&paid()), 1)
                .await
                .unwrap()
        });
    }
    let mut outcomes = Vec::new();
    while let Some(r) = set.join_next().await {
        outcomes.push(r.unwrap());
    }
    let count = |x: Applied| outcomes.iter().filter(|o| **o == x).count();
    assert_eq!(count(Applied::Transitioned), 1, "{outcomes:?}");
    assert_eq!(count(Applied::Duplicate), 30, "{outcomes:?}");
    assert_eq!(count(Applied::NoChange), 29, "{outcomes:?}");
    let o = replica.order("STORE00001").await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::Paid);
    let events = a.order_events("STORE00001").await.unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "notify_paid").count(), 1);
    a.close().await;
    replica.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

async fn refund_balance_is_guarded(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = Store::connect(&url).await.unwrap();
    let replica = Store::connect(&url).await.unwrap();
    order(&a, "STORE00002", 100).await;
    assert!(
        a.begin_refund("STORE00002", "RF_EARLY01", 10, None, 1)
            .await
            .is_err(),
        "unpaid"
    );
    assert!(a.transition("STORE00002", &paid(), 1).await.unwrap());
    let stores = Arc::new([a.clone(), replica.clone()]);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..10 {
        let stores = stores.clone();
        set.spawn(async move {
            stores[i % 2]
                .begin_refund("STORE00002", &format!("RF_RACE{i:03}"), 30, Some("race"), 2)
                .await
                .is_ok()
        });
    }
    let mut ok = 0;
    while let Some(r) = set.join_next().await {
        ok += usize::from(r.unwrap());
    }
    assert_eq!(ok, 3, "only 3 x 30 fit into 100");
    let o = a.order("STORE00002").await.unwrap().unwrap();
    assert_eq!(o.state, OrderState::Refunding);
    // Finish them; a duplicate result changes nothing.
    for r in a.refunds("STORE00002").await.unwrap() {
        let u = RefundUpdate {
            out_refund_no: r.out_refund_no.clone(),
            refund_id: Some("50300000".into()),
            status: "SUCCESS".into(),
        };
        assert_eq!(
            a.apply_refund(None, &u, 3).await.unwrap(),
            Applied::Transitioned
        );
        assert_eq!(
            replica.apply_refund(None, &u, 3).await.unwrap(),
            Applied::NoChange
        );
    }
    let o = a.order("STORE00002").await.unwrap().unwrap();
    assert_eq!((o.state, o.refunded), (OrderState::Paid, 90));
    a.close().await;
    replica.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}

async fn migrations_are_idempotent(b: Backend) {
    let (url, schema, dir) = fresh_db(b).await;
    let a = Store::connect(&url).await.unwrap();
    order(&a, "STORE00003", 5).await;
    a.close().await;
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.order("STORE00003").await.unwrap().unwrap().amount, 5);
    let counts = again.order_counts().await.unwrap();
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<i64>(), 1);
    again.ping().await.unwrap();
    again.close().await;
    drop_db(schema.as_deref(), dir.as_deref()).await;
}
