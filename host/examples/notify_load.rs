//! Load run (not a test): verified payment notifications per second against a host on SQLite.
//!
//! ```text
//! cargo run --release -p wxpay-host --example notify_load -- [ORDERS] [DUPLICATES] [CONCURRENCY]
//! ```
//!
//! Starts the simulator (for its test keys) and a host on a temporary SQLite file, creates
//! `ORDERS` orders, signs one `TRANSACTION.SUCCESS` notification per order with the platform
//! test key, then posts every notification `DUPLICATES` times (a duplicate storm) with
//! `CONCURRENCY` requests in flight. Reports throughput, p50/p99 latency and the process RSS
//! (host + load generator + simulator share the process, so RSS is an upper bound), and checks
//! that every order ended `PAID` exactly once. Loopback only; bounded in count.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand_core::UnwrapErr;
use serde_json::json;
use tokio::net::TcpListener;
use wxpay_core::MerchantSigner;
use wxpay_core::provider::default_provider;
use wxpay_core::v3::{self, ApiV3Key};
use wxpay_host::simulator::{self, SimulatorOptions};
use wxpay_host::store::{NewOrder, OrderState, User};
use wxpay_host::{Host, Secret, simulator_config};

const PLATFORM_PRIVATE_KEY_PEM: &str =
    include_str!("../../tests/vectors/keys/platform_private_key.pem");

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
    let sim = simulator::spawn(SimulatorOptions::default())
        .await
        .expect("simulator");
    let dir = std::env::temp_dir().join(format!("wxpay-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}", dir.join("load.db").display());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = simulator_config(
        &sim,
        addr,
        &format!("http://{addr}"),
        &db,
        "load-admin-token-0000",
    );
    let host = Host::start(config, listener, false).await.expect("host");
    let store = host.state.store.clone();
    let now = wxpay_host::wechat::unix_now();
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
            out_trade_no: format!("LOAD{i:08}"),
            openid: "o_load".into(),
            amount: 100,
            description: "load".into(),
            attach: None,
            expire_at: now + 3600,
        };
        store.insert_order(&o, now).await.unwrap();
    }
    let signer = MerchantSigner::from_pem(
        default_provider(),
        PLATFORM_PRIVATE_KEY_PEM,
        "platform",
        sim.platform_serial(),
    )
    .unwrap();
    let key = ApiV3Key::new(sim.api_v3_key()).unwrap();
    let mut rng = UnwrapErr(getrandom::SysRng);
    let ts = wxpay_host::wechat::unix_now().to_string();
    let mut requests = Vec::with_capacity(orders * dups);
    for i in 0..orders {
        let plain = json!({
            "mchid": sim.mchid(), "appid": sim.appid(), "out_trade_no": format!("LOAD{i:08}"),
            "transaction_id": format!("42{i:026}"), "trade_type": "JSAPI",
            "trade_state": "SUCCESS", "payer": { "openid": "o_load" },
            "amount": { "total": 100, "payer_total": 100, "currency": "CNY" },
        });
        let nonce = &wxpay_core::nonce_str(&mut rng)[..12];
        let ct =
            wxpay_core::aead::encrypt(&key, nonce, "transaction", plain.to_string().as_bytes())
                .unwrap();
        let body = json!({
            "id": format!("load-{i}"), "create_time": "2026-11-26T12:00:00+08:00",
            "resource_type": "encrypt-resource", "event_type": "TRANSACTION.SUCCESS",
            "summary": "load", "resource": { "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM", "ciphertext": ct,
            "associated_data": "transaction", "nonce": nonce },
        })
        .to_string();
        let wnonce = wxpay_core::nonce_str(&mut rng);
        let sig = v3::sign_response(&signer, &mut rng, &ts, &wnonce, body.as_bytes()).unwrap();
        for _ in 0..dups {
            requests.push((body.clone(), wnonce.clone(), sig.clone()));
        }
    }
    let serial = sim.platform_serial().to_owned();
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
        let (queue, http, url, ts, serial) = (
            queue.clone(),
            http.clone(),
            url.clone(),
            ts.clone(),
            serial.clone(),
        );
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut failures = 0usize;
            loop {
                let next = queue.lock().unwrap().pop();
                let Some((body, nonce, sig)) = next else {
                    break;
                };
                let t = Instant::now();
                let resp = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("Wechatpay-Timestamp", &ts)
                    .header("Wechatpay-Nonce", nonce)
                    .header("Wechatpay-Signature", sig)
                    .header("Wechatpay-Serial", &serial)
                    .body(body)
                    .send()
                    .await;
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
    println!(
        "notifications: {} ({} orders x {} copies), concurrency {concurrency}\n\
         throughput: {:.0} verified notifications/s ({:.2} s)\n\
         latency: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n\
         failures (non-204): {failures}\n\
         orders PAID: {paid}/{orders}\n\
         RSS: {} KiB before the run, {} KiB after (whole process)",
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
    assert_eq!(failures, 0, "every notification must be answered 204");
    assert_eq!(paid as usize, orders, "every order must be PAID");
}
