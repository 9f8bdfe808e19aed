//! Load run (not a test): verified payment notifications per second against a host on SQLite
//! or PostgreSQL.
//!
//! ```text
//! cargo run --release -p wxpay-host --example notify_load -- [ORDERS] [DUPLICATES] [CONCURRENCY] [sqlite|postgres]
//! ```
//!
//! Starts the simulator (for its generated test keys) and a host on a temporary SQLite file (or
//! a fresh schema of the PostgreSQL at `WXPAY_TEST_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/test`),
//! creates `ORDERS` orders, has the simulator sign one `TRANSACTION.SUCCESS` notification per
//! order with its platform key, then posts every notification `DUPLICATES` times (a duplicate storm) with
//! `CONCURRENCY` requests in flight. Reports throughput, p50/p99 latency and the process RSS
//! (host + load generator + simulator share the process, so RSS is an upper bound), and checks
//! that every order ended `PAID` exactly once. Loopback only; bounded in count.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use wxpay_host::domain::{Amount, Description, OrderState, OutTradeNo};
use wxpay_host::sandbox::simulator_config;
use wxpay_host::service::orders::{self, NewOrder};
use wxpay_host::store::User;
use wxpay_host::{Host, Listeners, Secret};
use wxpay_simulator::SimulatorOptions;

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let orders = arg(1, 2000);
    let dups = arg(2, 3).max(1);
    let concurrency = arg(3, 64).max(1);
    let sim = wxpay_simulator::spawn(SimulatorOptions::default())
        .await
        .expect("simulator");
    let postgres = std::env::args().nth(4).is_some_and(|a| a == "postgres");
    let dir = std::env::temp_dir().join(format!("wxpay-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pg_base = std::env::var("WXPAY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("load_{}", std::process::id());
    let db = if postgres {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&pg_base)
            .await
            .expect("postgres");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let sep = if pg_base.contains('?') { '&' } else { '?' };
        format!("{pg_base}{sep}options=-c%20search_path%3D{schema}")
    } else {
        format!("sqlite://{}", dir.join("load.db").display())
    };
    let listeners = Listeners::loopback().await.unwrap();
    let addr = listeners.public.local_addr().unwrap();
    let config = simulator_config(
        &sim,
        addr,
        &format!("http://{addr}"),
        &db,
        "load-admin-token-0000",
    );
    let host = Host::start(config, listeners, false).await.expect("host");
    let store = host.state.store.clone();
    let now = host.state.now();
    store
        .upsert_user(
            &User {
                openid: "o_load".into(),
                unionid: None,
                session_key: Secret::new("x"),
            },
            now,
        )
        .await
        .unwrap();
    for i in 0..orders {
        let o = NewOrder {
            out_trade_no: Some(OutTradeNo::parse(format!("LOAD{i:08}")).unwrap()),
            openid: "o_load".into(),
            amount: Amount::parse("amount", 100).unwrap(),
            description: Description::parse("load".into()).unwrap(),
            attach: None,
            expire_in: 3600,
        };
        orders::create(&host.state, o).await.unwrap();
    }
    let mut requests = Vec::with_capacity(orders * dups);
    for i in 0..orders {
        let plain = json!({
            "mchid": sim.mchid(), "appid": sim.appid(), "out_trade_no": format!("LOAD{i:08}"),
            "transaction_id": format!("42{i:026}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "payer": { "openid": "o_load" },
            "amount": { "total": 100, "payer_total": 100, "currency": "CNY" },
        });
        let notification = sim
            .signed_notification(
                &format!("load-{i}"),
                "TRANSACTION.SUCCESS",
                "transaction",
                &plain,
            )
            .unwrap();
        for _ in 0..dups {
            requests.push(notification.clone());
        }
    }
    let rss_before = rss_kib();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let url = format!("http://{addr}/notify/pay");
    let queue = Arc::new(std::sync::Mutex::new(requests));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (queue, http, url) = (queue.clone(), http.clone(), url.clone());
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0usize;
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((headers, body)) = next else {
                    break;
                };
                let t = Instant::now();
                let mut req = http.post(&url).header("content-type", "application/json");
                for (name, value) in headers {
                    req = req.header(name, value);
                }
                let resp = req.body(body).send().await;
                lat.push(t.elapsed());
                if !resp.is_ok_and(|r| r.status().as_u16() == 204) {
                    failures += 1;
                }
            }
            (lat, failures)
        });
    }
    let mut lat: Vec<Duration> = Vec::new();
    let mut failures = 0;
    while let Some(r) = workers.join_next().await {
        let (l, f) = r.unwrap();
        lat.extend(l);
        failures += f;
    }
    let took = started.elapsed();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let counts = store.order_counts().await.unwrap();
    let paid = counts
        .iter()
        .find(|(s, _)| *s == OrderState::Paid)
        .map_or(0, |(_, n)| *n);
    let mut transitions = 0usize;
    for i in 0..orders {
        let events = store.order_events(&format!("LOAD{i:08}")).await.unwrap();
        transitions += events.iter().filter(|e| e.kind == "notify_paid").count();
    }
    println!(
        "store: {}\n\
         notifications: {} ({} orders x {} copies), concurrency {concurrency}\n\
         throughput: {:.0} verified notifications/s ({:.2} s)\n\
         latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
         failures (non-204): {failures}\n\
         orders PAID: {paid}/{orders}, PAID transitions: {transitions}\n\
         RSS: {} KiB before the run, {} KiB after (whole process)",
        if postgres { "postgres" } else { "sqlite" },
        lat.len(),
        orders,
        dups,
        lat.len() as f64 / took.as_secs_f64(),
        took.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        rss_before,
        rss_kib(),
    );
    host.stop().await;
    sim.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if postgres {
        use sqlx::Connection as _;
        let mut conn = sqlx::PgConnection::connect(&pg_base)
            .await
            .expect("postgres");
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&mut conn)
            .await;
    }
    assert_eq!(transitions, orders, "exactly one PAID transition per order");
    assert_eq!(failures, 0, "every notification must be answered 204");
    assert_eq!(paid as usize, orders, "every order must be PAID");
}
