//! The internet-facing edge, over real sockets: slow clients are cut off, logins are throttled
//! per client IP before any upstream call, the back office lives on its own listener and
//! throttles failed authentications.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN, Backend, Env};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn env_with(adjust: impl FnOnce(&mut wxpay_host::Config)) -> Env {
    Env::with_config(Backend::Sqlite, common::fast_sim(), false, adjust).await
}

/// The number of `jscode2session` calls the host made, from its metrics.
async fn login_calls(env: &Env) -> u64 {
    let (_, m) = env.get("/metrics", None).await;
    m.as_str()
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "wxpay_upstream_request_duration_seconds_count{endpoint=\"jscode2session\"} ",
            )
        })
        .map_or(0, |n| n.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let env = env_with(|c| c.edge.header_timeout = Duration::from_secs(1)).await;
    let mut s = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    s.write_all(b"POST /api/login HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    // Trickle one header byte every 200 ms; the server must hang up within a few seconds.
    let mut closed = false;
    for _ in 0..50 {
        if s.write_all(b"x").await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        // hyper may answer 408 before closing; a read of 0 bytes or an error is the close.
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(200), s.read(&mut buf)).await
        {
            closed = true;
            break;
        }
    }
    let took = started.elapsed();
    assert!(closed, "slow-headers connection still open after {took:?}");
    assert!(took < Duration::from_secs(5), "closed only after {took:?}");
    // Normal requests are unaffected.
    let (st, _) = env.get("/healthz", None).await;
    assert_eq!(st, StatusCode::OK);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_flood_is_throttled_before_any_upstream_call() {
    let env = env_with(|c| c.edge.login_rate_per_min = 5).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..20 {
        let resp = env
            .http
            .post(env.url("/api/login"))
            .json(&json!({ "code": format!("bogus-code-{i}") }))
            .send()
            .await
            .unwrap();
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            retry_after = resp.headers().get("retry-after").cloned();
        }
        statuses.push(resp.status());
    }
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    let invalid = statuses
        .iter()
        .filter(|s| **s == StatusCode::BAD_REQUEST)
        .count();
    assert_eq!((invalid, throttled), (5, 15), "{statuses:?}");
    let secs: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=13).contains(&secs), "Retry-After {secs}");
    assert_eq!(
        login_calls(&env).await,
        5,
        "only the allowed logins reached WeChat"
    );
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    // Untrusted: X-Forwarded-For is ignored, every request counts against 127.0.0.1.
    let env = env_with(|c| c.edge.login_rate_per_min = 2).await;
    for i in 0..4 {
        let st = env
            .http
            .post(env.url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "code": "bogus" }))
            .send()
            .await
            .unwrap()
            .status();
        let want = if i < 2 {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::TOO_MANY_REQUESTS
        };
        assert_eq!(st, want, "request {i}");
    }
    env.finish().await;
    // Trusted loopback proxy: each forwarded client has its own bucket.
    let env = env_with(|c| {
        c.edge.login_rate_per_min = 2;
        c.edge.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    for i in 0..4 {
        let st = env
            .http
            .post(env.url("/api/login"))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .json(&json!({ "code": "bogus" }))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(st, StatusCode::BAD_REQUEST, "client {i} has its own bucket");
    }
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_office_is_private_and_guessing_is_throttled() {
    let env = env_with(|_| {}).await;
    // Not on the public listener at all.
    let r = env
        .http
        .get(env.public_url("/admin/orders/NOSUCH0001"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = env
        .http
        .get(env.public_url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // On the admin listener, wrong tokens: 401 ten times, then 429 even for the right one.
    let mut last = Value::Null;
    for i in 0..10 {
        let (st, v) = env
            .get(
                "/admin/orders/NOSUCH0001",
                Some(&format!("wrong-token-{i}")),
            )
            .await;
        assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
        last = v;
    }
    assert_eq!(last["error"]["code"], "unauthorized");
    let (st, v) = env.get("/admin/orders/NOSUCH0001", Some(ADMIN)).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS, "{v}");
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_is_decrypted_with_the_sealed_session_key() {
    let env = env_with(|_| {}).await;
    let token = env.login("o_open").await;
    // The session key is stored sealed, never in clear.
    let stored = env
        .state()
        .store
        .session_key("o_open")
        .await
        .unwrap()
        .unwrap();
    assert!(stored.starts_with("v1."), "{stored}");
    let (data, iv) = env
        .sim
        .open_data(
            "o_open",
            json!({ "phoneNumber": "13800138000", "countryCode": "86" }),
        )
        .unwrap();
    let (st, v) = env
        .post(
            "/api/user/decrypt",
            Some(&token),
            json!({ "encryptedData": data, "iv": iv }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["phoneNumber"], "13800138000");
    assert_eq!(v["watermark"]["appid"], env.sim.appid());
    // Another user's data does not decrypt under this user's key.
    env.login("o_other").await;
    let (data, iv) = env.sim.open_data("o_other", json!({ "x": 1 })).unwrap();
    let (st, v) = env
        .post(
            "/api/user/decrypt",
            Some(&token),
            json!({ "encryptedData": data, "iv": iv }),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("undecryptable")),
        "{v}"
    );
    // Without a token: 401.
    let (st, _) = env
        .post(
            "/api/user/decrypt",
            None,
            json!({ "encryptedData": "", "iv": "" }),
        )
        .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    env.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_data_for_another_app_is_refused() {
    let env = env_with(|_| {}).await;
    let token = env.login("o_wm").await;
    // Encrypted the WeChat way under this user's key, but watermarked for another AppID.
    let key = {
        let stored = env
            .state()
            .store
            .session_key("o_wm")
            .await
            .unwrap()
            .unwrap();
        env.state().data_key.open(&stored).unwrap()
    };
    let iv = "r7BXXKkLb8qrSNn05n0qiA==";
    let plain = json!({ "x": 1, "watermark": { "appid": "wx_someone_else", "timestamp": 1 } });
    let data =
        wxpay_core::open_data::encrypt_open_data(key.expose(), plain.to_string().as_bytes(), iv)
            .unwrap();
    let (st, v) = env
        .post(
            "/api/user/decrypt",
            Some(&token),
            json!({ "encryptedData": data, "iv": iv }),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("watermark"),
        "{v}"
    );
    env.finish().await;
}
