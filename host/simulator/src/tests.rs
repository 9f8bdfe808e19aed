//! The simulator over real sockets, checked with `wxpay-core` the way a merchant host checks
//! WeChat Pay.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use wxpay_core::keys::{MerchantSigner, PlatformKeys};
use wxpay_core::provider::default_provider;
use wxpay_core::v3::{
    ApiV3Key, WechatpayHeaders, authorization, decrypt_certificates, pay_sign, verify_notification,
    verify_response,
};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn fast() -> SimulatorOptions {
    SimulatorOptions {
        notify_retry_schedule: vec![Duration::from_millis(20); 15],
        refund_delay: Some(Duration::from_millis(20)),
        ..SimulatorOptions::default()
    }
}

async fn sim(opts: SimulatorOptions) -> SimulatorHandle {
    spawn(opts).await.expect("simulator starts")
}

fn now() -> u64 {
    SystemClock.now()
}

fn signer(h: &SimulatorHandle) -> MerchantSigner {
    MerchantSigner::from_pem(
        default_provider(),
        h.merchant_private_key_pem(),
        h.mchid(),
        h.merchant_serial(),
    )
    .expect("merchant key")
}

/// What a host in the simulator's mode trusts.
fn platform_keys(h: &SimulatorHandle) -> PlatformKeys {
    let mut keys = PlatformKeys::new();
    match h.platform_public_key_id() {
        Some(id) => keys
            .insert_public_key_pem(default_provider(), id, h.platform_public_key_pem())
            .expect("public key"),
        None => {
            let serial = keys
                .insert_certificate_pem(
                    default_provider(),
                    &h.credentials().platform_certificate_pem,
                )
                .expect("certificate");
            assert_eq!(Some(serial.as_str()), h.platform_certificate_serial());
        }
    }
    keys
}

fn wechatpay_headers(headers: &HeaderMap) -> WechatpayHeaders {
    WechatpayHeaders::from_pairs(
        headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str(), v.to_str().ok()?))),
    )
    .expect("Wechatpay-* headers")
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// Asserts the response is signed by the platform over exactly these bytes.
    fn verified(self, h: &SimulatorHandle) -> Self {
        verify_response(
            &platform_keys(h),
            &wechatpay_headers(&self.headers),
            &self.body,
            now(),
        )
        .expect("response signature verifies");
        self
    }
}

/// An APIv3 call with a correct `Authorization` over `sign_body` (normally the body sent).
async fn v3_with(
    h: &SimulatorHandle,
    method: &str,
    url: &str,
    body: &str,
    sign_body: &str,
) -> Reply {
    let auth = authorization(
        &signer(h),
        &mut rng(),
        method,
        url,
        &now().to_string(),
        &wxpay_core::nonce::nonce_str(&mut rng()),
        sign_body,
    )
    .expect("authorization");
    send(h, method, url, body, Some(&auth.header)).await
}

async fn v3(h: &SimulatorHandle, method: &str, url: &str, body: &str) -> Reply {
    v3_with(h, method, url, body, body).await
}

async fn send(
    h: &SimulatorHandle,
    method: &str,
    url: &str,
    body: &str,
    authorization: Option<&str>,
) -> Reply {
    // With TLS: trusting the simulator CA, no client certificate.
    let client = super::v2_tests::client(h, None);
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client
        .request(method, format!("{}{url}", h.base_url()))
        .header("Content-Type", "application/json")
        .header("Accept", "application/json")
        .body(body.to_owned());
    if let Some(a) = authorization {
        req = req.header("Authorization", a);
    }
    let resp = req.send().await.expect("simulator answers");
    let status = StatusCode::from_u16(resp.status().as_u16()).expect("status");
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

fn order_body(h: &SimulatorHandle, no: &str, total: u64, notify_url: &str) -> String {
    json!({
        "appid": h.appid(),
        "mchid": h.mchid(),
        "description": "Image形象店-深圳腾大-QQ公仔",
        "out_trade_no": no,
        "notify_url": notify_url,
        "amount": { "total": total, "currency": "CNY" },
        "payer": { "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o" },
        "attach": "a=1",
    })
    .to_string()
}

async fn order(h: &SimulatorHandle, no: &str, total: u64, notify_url: &str) -> String {
    let r = v3(
        h,
        "POST",
        "/v3/pay/transactions/jsapi",
        &order_body(h, no, total, notify_url),
    )
    .await
    .verified(h);
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    r.json()["prepay_id"]
        .as_str()
        .expect("prepay_id")
        .to_owned()
}

/// A merchant notify endpoint (`/notify`, and `/notify/refund` for console refunds) that
/// answers with queued statuses (then 204) and records every request and its path.
#[derive(Default)]
struct Receiver {
    answers: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<(HeaderMap, Bytes)>>,
    paths: Mutex<Vec<String>>,
}

impl Receiver {
    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().expect("lock").clone()
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().expect("lock").clone()
    }
}

async fn receiver(answers: &[u16]) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        answers: Mutex::new(answers.iter().copied().collect()),
        received: Mutex::default(),
        paths: Mutex::default(),
    });
    let handler = |State(r): State<Arc<Receiver>>,
                   uri: axum::http::Uri,
                   headers: HeaderMap,
                   body: Bytes| async move {
        r.paths.lock().expect("lock").push(uri.path().to_owned());
        r.received.lock().expect("lock").push((headers, body));
        let answer = r.answers.lock().expect("lock").pop_front().unwrap_or(204);
        StatusCode::from_u16(answer).expect("status")
    };
    let app = axum::Router::new()
        .route("/notify", post(handler))
        .route("/notify/refund", post(handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/notify", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn verify_received(
    h: &SimulatorHandle,
    (headers, body): &(HeaderMap, Bytes),
) -> wxpay_core::Result<wxpay_core::v3::Notification> {
    let key = ApiV3Key::new(h.api_v3_key()).expect("api v3 key");
    verify_notification(
        &platform_keys(h),
        &key,
        &wechatpay_headers(headers),
        body,
        now(),
    )
}

#[tokio::test]
async fn bad_authorization_is_401_sign_error_unsigned() {
    let h = sim(fast()).await;
    let body = order_body(&h, "T0000001", 100, "http://127.0.0.1:9/notify");
    let cases = [
        // Signed over a different body.
        v3_with(&h, "POST", "/v3/pay/transactions/jsapi", &body, "{}").await,
        send(&h, "POST", "/v3/pay/transactions/jsapi", &body, None).await,
        send(
            &h,
            "POST",
            "/v3/pay/transactions/jsapi",
            &body,
            Some("Bearer abc"),
        )
        .await,
    ];
    for r in cases {
        // Like WeChat Pay: the answer to a rejected signature is not signed.
        assert!(r.headers.get("wechatpay-signature").is_none());
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["code"], "SIGN_ERROR");
    }
    // A signature over another body: the detail shows the message rebuilt from the request.
    let r = v3_with(&h, "POST", "/v3/pay/transactions/jsapi", &body, "{}").await;
    let info = &r.json()["detail"]["sign_information"];
    let truncated = info["truncated_sign_message"].as_str().expect("truncated");
    assert!(
        truncated.starts_with("POST\n/v3/pay/transactions/jsapi\n"),
        "{truncated}"
    );
    assert!(
        truncated.ends_with("..."),
        "a long message is cut: {truncated}"
    );
    assert!(info["sign_message_length"].as_u64().expect("length") > 256);
    assert_eq!(info["url"], "/v3/pay/transactions/jsapi");
    // The URL is part of the message: a signature for another query string fails.
    let auth = authorization(
        &signer(&h),
        &mut rng(),
        "GET",
        "/v3/certificates",
        &now().to_string(),
        "nonce1",
        "",
    )
    .expect("authorization");
    let r = send(&h, "GET", "/v3/certificates?x=1", "", Some(&auth.header)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = send(&h, "GET", "/v3/certificates", "", Some(&auth.header)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(h.order("T0000001").is_none());
}

#[tokio::test]
async fn order_query_close_in_both_modes() {
    for public_key_mode in [false, true] {
        let h = sim(SimulatorOptions {
            public_key_mode,
            ..fast()
        })
        .await;
        let url = "http://127.0.0.1:9/notify";
        let prepay = order(&h, "T1000001", 100, url).await;
        assert!(prepay.starts_with("wx"));
        assert_eq!(
            order(&h, "T1000001", 100, url).await,
            prepay,
            "same order again"
        );
        let r = v3(
            &h,
            "POST",
            "/v3/pay/transactions/jsapi",
            &order_body(&h, "T1000001", 101, url),
        )
        .await
        .verified(&h);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("INVALID_REQUEST"))
        );
        let mut bad =
            serde_json::from_str::<Value>(&order_body(&h, "T1000002", 1, url)).expect("json");
        bad["amount"]["total"] = json!(0);
        let r = v3(&h, "POST", "/v3/pay/transactions/jsapi", &bad.to_string())
            .await
            .verified(&h);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("PARAM_ERROR"))
        );
        let q = format!(
            "/v3/pay/transactions/out-trade-no/T1000001?mchid={}",
            h.mchid()
        );
        let r = v3(&h, "GET", &q, "").await.verified(&h);
        assert_eq!(r.json()["trade_state"], "NOTPAY");
        let close = "/v3/pay/transactions/out-trade-no/T1000001/close";
        let r = v3(
            &h,
            "POST",
            close,
            &json!({ "mchid": h.mchid() }).to_string(),
        )
        .await
        .verified(&h);
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.body.is_empty());
        let r = v3(&h, "GET", &q, "").await.verified(&h);
        assert_eq!(r.json()["trade_state"], "CLOSED");
        let missing = format!(
            "/v3/pay/transactions/out-trade-no/NOPE0001?mchid={}",
            h.mchid()
        );
        let r = v3(&h, "GET", &missing, "").await.verified(&h);
        assert_eq!(
            (r.status, r.json()["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("ORDER_NOT_EXIST"))
        );
        h.shutdown().await;
    }
}

#[tokio::test]
async fn v3_order_query_and_certificates_over_tls_without_a_client_certificate() {
    let h = sim(SimulatorOptions {
        tls: true,
        ..fast()
    })
    .await;
    assert!(h.base_url().starts_with("https://"));
    let prepay = order(&h, "TLS00001", 100, "http://127.0.0.1:9/notify").await;
    assert!(prepay.starts_with("wx"));
    let q = format!(
        "/v3/pay/transactions/out-trade-no/TLS00001?mchid={}",
        h.mchid()
    );
    let r = v3(&h, "GET", &q, "").await.verified(&h);
    assert_eq!(r.json()["trade_state"], "NOTPAY");
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(h.query_count("TLS00001"), 1);
}

#[tokio::test]
async fn certificates_in_certificate_mode_and_404_in_public_key_mode() {
    let h = sim(fast()).await;
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(r.status, StatusCode::OK);
    let key = ApiV3Key::new(h.api_v3_key()).expect("key");
    let certs = decrypt_certificates(&key, &r.body).expect("decrypts");
    assert_eq!(certs.len(), 1);
    assert_eq!(
        Some(certs[0].serial_no.as_str()),
        h.platform_certificate_serial()
    );

    let h = sim(SimulatorOptions {
        public_key_mode: true,
        ..fast()
    })
    .await;
    assert!(h.platform_serial().starts_with("PUB_KEY_ID_"));
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("NOT_FOUND"))
    );
}

#[tokio::test]
async fn rotation_lists_both_certificates_and_signs_with_the_new_key() {
    let h = sim(fast()).await;
    let (url, rx) = receiver(&[]).await;
    order(&h, "ROTATE01", 100, &url).await;
    let old = h.platform_serial().to_owned();
    assert_eq!(h.current_platform_serial(), old);
    let new = h.rotate_platform_certificate().expect("rotates");
    assert_ne!(new, old);
    assert_eq!(h.current_platform_serial(), new);
    assert_eq!(h.rotate_platform_certificate().expect("again"), new);
    assert_eq!(
        h.platform_certificate_serials(),
        vec![old.clone(), new.clone()]
    );

    let r = v3(&h, "GET", "/v3/certificates", "").await;
    assert_eq!(r.status, StatusCode::OK);
    let headers = wechatpay_headers(&r.headers);
    assert_eq!(headers.serial, new);
    // Only the old certificate: the new serial is unknown.
    assert_eq!(
        verify_response(&platform_keys(&h), &headers, &r.body, now()).err(),
        Some(wxpay_core::Error::UnknownSerial)
    );
    // Both certificates decrypt with the APIv3 key; the response verifies under the new one.
    let key = ApiV3Key::new(h.api_v3_key()).expect("key");
    let certs = decrypt_certificates(&key, &r.body).expect("decrypts");
    let serials: Vec<&str> = certs.iter().map(|c| c.serial_no.as_str()).collect();
    assert_eq!(serials, [old.as_str(), new.as_str()]);
    let mut keys = PlatformKeys::new();
    for c in &certs {
        keys.insert_certificate_pem(default_provider(), &c.pem)
            .expect("certificate");
    }
    verify_response(&keys, &headers, &r.body, now()).expect("verifies under the new key");

    // Notifications too.
    h.pay("ROTATE01").expect("pay");
    h.wait_for_deliveries(1, WAIT).await.expect("delivered");
    let received = rx.received.lock().expect("lock")[0].clone();
    let wx = wechatpay_headers(&received.0);
    assert_eq!(wx.serial, new);
    verify_notification(&keys, &key, &wx, &received.1, now()).expect("notification verifies");

    let pk = sim(SimulatorOptions {
        public_key_mode: true,
        ..fast()
    })
    .await;
    assert!(matches!(
        pk.rotate_platform_certificate(),
        Err(SimulatorError::PublicKeyMode)
    ));
}

#[tokio::test]
async fn jscode2session_codes_are_single_use() {
    let h = sim(fast()).await;
    let code = h.issue_login_code("oUser1");
    let url = |code: &str| {
        format!(
            "/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
            h.appid(),
            h.appsecret()
        )
    };
    let r = send(&h, "GET", &url(&code), "", None).await.json();
    assert_eq!(r["openid"], "oUser1");
    assert!(r["session_key"].as_str().is_some_and(|k| k.len() == 24));
    assert!(r["unionid"].is_string());
    let r = send(&h, "GET", &url(&code), "", None).await.json();
    assert_eq!(r["errcode"], 40163);
    let r = send(&h, "GET", &url("nonsense"), "", None).await.json();
    assert_eq!(r["errcode"], 40029);
    h.fail_next_logins(45011, 1);
    let code = h.issue_login_code("oUser1");
    let r = send(&h, "GET", &url(&code), "", None).await.json();
    assert_eq!(r["errcode"], 45011);
    let r = send(&h, "GET", &url(&code), "", None).await.json();
    assert_eq!(
        r["openid"], "oUser1",
        "a failed call does not use the code up"
    );
}

#[tokio::test]
async fn notification_is_delivered_and_retried_on_500() {
    let (url, rx) = receiver(&[500, 500]).await;
    let h = sim(fast()).await;
    order(&h, "T2000001", 88, &url).await;
    let paid = h.pay("T2000001").expect("pays");
    assert_eq!(paid.trade_state, TradeState::Success);
    h.wait_for_deliveries(1, WAIT).await.expect("delivered");
    let attempts = h.delivery_attempts();
    let statuses: Vec<_> = attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(204)]);
    assert_eq!(h.notifications_delivered(), 1);
    let received = rx.received();
    assert_eq!(received.len(), 3);
    let ids: Vec<_> = received
        .iter()
        .map(|r| verify_received(&h, r).expect("authentic").id)
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "retries keep the id");
    let n = verify_received(&h, &received[2]).expect("authentic");
    assert_eq!(n.event_type, "TRANSACTION.SUCCESS");
    let tx = n.transaction().expect("transaction");
    assert_eq!(tx.out_trade_no, "T2000001");
    assert_eq!(tx.trade_state, "SUCCESS");
    assert_eq!(tx.transaction_id, paid.transaction_id);
    assert_eq!(
        tx.amount.map(|a| (a.total, a.payer_total)),
        Some((88, Some(88)))
    );
    assert!(tx.success_time.is_some_and(|t| t.ends_with("+08:00")));
    let q = format!(
        "/v3/pay/transactions/out-trade-no/T2000001?mchid={}",
        h.mchid()
    );
    assert_eq!(
        v3(&h, "GET", &q, "").await.verified(&h).json()["trade_state"],
        "SUCCESS"
    );
}

#[tokio::test]
async fn delivery_gives_up_after_the_schedule() {
    let (url, rx) = receiver(&[500; 10]).await;
    let h = sim(SimulatorOptions {
        notify_retry_schedule: vec![Duration::from_millis(5); 3],
        ..fast()
    })
    .await;
    order(&h, "T2100001", 1, &url).await;
    h.pay("T2100001").expect("pays");
    h.wait_idle(WAIT).await.expect("idle");
    assert_eq!(rx.received().len(), 4, "first attempt + 3 retries");
    assert_eq!(h.delivery_stats().gave_up, 1);
    assert_eq!(h.notifications_delivered(), 0);
}

#[tokio::test]
async fn duplicates_are_delivered_n_times() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(fast()).await;
    order(&h, "T3000001", 5, &url).await;
    h.set_notify_behavior(NotifyBehavior::Duplicate(5));
    h.pay("T3000001").expect("pays");
    h.wait_for_deliveries(5, WAIT).await.expect("delivered");
    h.wait_idle(WAIT).await.expect("idle");
    let received = rx.received();
    assert_eq!(received.len(), 5);
    let first = verify_received(&h, &received[0]).expect("authentic").id;
    for r in &received {
        assert_eq!(verify_received(&h, r).expect("authentic").id, first);
    }
}

#[tokio::test]
async fn probe_tamper_and_drop() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(SimulatorOptions {
        notify_retry_schedule: vec![Duration::from_millis(5); 2],
        ..fast()
    })
    .await;
    order(&h, "T4000001", 5, &url).await;
    order(&h, "T4000002", 5, &url).await;
    order(&h, "T4000003", 5, &url).await;

    h.set_notify_behavior(NotifyBehavior::ProbeFirst);
    h.pay("T4000001").expect("pays");
    h.wait_idle(WAIT).await.expect("idle");
    let received = rx.received();
    assert_eq!(received.len(), 2);
    let probe = verify_received(&h, &received[0]).expect_err("probe is rejected");
    assert!(probe.is_probe());
    verify_received(&h, &received[1]).expect("then the real one");

    // The receiver acknowledges tampered bodies too; the host under test would not.
    h.set_notify_behavior(NotifyBehavior::Tamper);
    h.pay("T4000002").expect("pays");
    h.wait_idle(WAIT).await.expect("idle");
    let received = rx.received();
    assert_eq!(received.len(), 3);
    let e = verify_received(&h, &received[2]).expect_err("tampered");
    assert_eq!(e.code(), "signature_mismatch");

    h.set_notify_behavior(NotifyBehavior::Drop);
    h.pay("T4000003").expect("pays");
    h.wait_idle(WAIT).await.expect("idle");
    assert_eq!(rx.received().len(), 3);
    assert_eq!(h.delivery_stats().dropped, 1);
    assert_eq!(
        h.order("T4000003").map(|o| o.trade_state),
        Some(TradeState::Success)
    );
}

#[tokio::test]
async fn refund_then_refund_notification() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(fast()).await;
    order(&h, "T5000001", 100, &url).await;
    h.pay("T5000001").expect("pays");
    h.wait_for_deliveries(1, WAIT)
        .await
        .expect("payment notified");
    let body = json!({
        "out_trade_no": "T5000001",
        "out_refund_no": "R5000001",
        "reason": "test",
        "notify_url": url,
        "amount": { "refund": 60, "total": 100, "currency": "CNY" },
    })
    .to_string();
    let r = v3(&h, "POST", "/v3/refund/domestic/refunds", &body)
        .await
        .verified(&h);
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["status"], "PROCESSING");
    h.wait_idle(WAIT).await.expect("refund completes by itself");
    assert_eq!(
        h.notifications_delivered(),
        2,
        "payment and refund notified"
    );
    let received = rx.received();
    let n = verify_received(&h, &received[1]).expect("authentic");
    assert_eq!(n.event_type, "REFUND.SUCCESS");
    let refund = n.refund().expect("refund notice");
    assert_eq!(
        (refund.out_refund_no.as_str(), refund.refund_status.as_str()),
        ("R5000001", "SUCCESS")
    );
    assert_eq!((refund.amount.refund, refund.amount.total), (60, 100));
    assert_eq!(
        h.refund("R5000001").map(|r| r.status),
        Some(RefundStatus::Success)
    );
    let too_much = body
        .replace("R5000001", "R5000002")
        .replace("\"refund\":60", "\"refund\":41");
    let r = v3(&h, "POST", "/v3/refund/domestic/refunds", &too_much)
        .await
        .verified(&h);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn request_payment_check_like_the_client() {
    let h = sim(fast()).await;
    let prepay = order(&h, "T6000001", 1, "http://127.0.0.1:9/notify").await;
    let params = pay_sign(
        &signer(&h),
        &mut rng(),
        h.appid(),
        &now().to_string(),
        &wxpay_core::nonce::nonce_str(&mut rng()),
        &prepay,
    )
    .expect("pay sign");
    let good = serde_json::to_value(&params).expect("json");
    let check = |v: &Value| {
        let (h, body) = (&h, v.to_string());
        async move { send(h, "POST", "/sim/request-payment/check", &body, None).await }
    };
    let r = check(&good).await;
    assert_eq!(
        (r.status, r.json()["ok"].as_bool()),
        (StatusCode::OK, Some(true))
    );

    let mut bad = good.clone();
    bad["nonceStr"] = json!("x");
    let r = check(&bad).await.json();
    assert_eq!(r["errMsg"], "requestPayment:fail 支付验证签名失败");
    let mut bad = good.clone();
    bad["timeStamp"] = json!(1_700_000_000);
    let r = check(&bad).await.json();
    assert!(
        r["errMsg"]
            .as_str()
            .is_some_and(|m| m.contains("timeStamp should be String instead of Number")),
        "{r}"
    );
    let mut bad = good.clone();
    bad["package"] = json!("prepay_id=wx_unknown");
    assert_eq!(check(&bad).await.json()["ok"], false);

    let mut pay = good.clone();
    pay["pay"] = json!(true);
    assert_eq!(check(&pay).await.json()["order"]["trade_state"], "SUCCESS");
    assert_eq!(
        check(&good).await.json()["errMsg"],
        "requestPayment:fail 该订单已支付"
    );
}

#[tokio::test]
async fn forced_v3_failures_are_signed() {
    let h = sim(fast()).await;
    h.fail_next_v3(500, "SYSTEM_ERROR", 1);
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("SYSTEM_ERROR"))
    );
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn forced_v3_failures_can_be_unsigned_or_badly_signed() {
    let h = sim(fast()).await;
    h.fail_next_v3_signed(404, "ORDER_NOT_EXIST", 1, AnswerSigning::Unsigned);
    h.fail_next_v3_signed(404, "ORDER_NOT_EXIST", 1, AnswerSigning::BadSignature);
    h.reject_next_signatures(1);
    let r = v3(&h, "GET", "/v3/certificates", "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers.get("wechatpay-signature").is_none());
    let r = v3(&h, "GET", "/v3/certificates", "").await;
    assert_eq!(r.json()["code"], "ORDER_NOT_EXIST");
    let e = verify_response(
        &platform_keys(&h),
        &wechatpay_headers(&r.headers),
        &r.body,
        now(),
    )
    .expect_err("a bad signature does not verify");
    assert_eq!(e.code(), "signature_mismatch");
    let r = v3(&h, "GET", "/v3/certificates", "").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.headers.get("wechatpay-signature").is_none());
    let info = &r.json()["detail"]["sign_information"];
    let t = info["truncated_sign_message"].as_str().expect("truncated");
    assert!(t.starts_with("GET\n/v3/certificates\n"), "{t}");
    assert_eq!(info["sign_message_length"].as_u64(), Some(t.len() as u64));
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn injected_clock_expires_login_codes() {
    let clock = Arc::new(OffsetClock::default());
    let h = sim(SimulatorOptions {
        clock: clock.clone(),
        ..fast()
    })
    .await;
    let code = h.issue_login_code("oLate");
    clock.advance(Duration::from_secs(301));
    let url = format!(
        "/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
        h.appid(),
        h.appsecret()
    );
    assert_eq!(
        send(&h, "GET", &url, "", None).await.json()["errcode"],
        40029
    );
}

// ---------------------------------------------------------------------------------------------
// Keys

#[tokio::test]
async fn keys_are_generated_per_start_and_usable() {
    let a = sim(fast()).await;
    let b = sim(fast()).await;
    let (ca, cb) = (a.credentials(), b.credentials());
    assert_ne!(ca.merchant_private_key_pem, cb.merchant_private_key_pem);
    assert_ne!(ca.platform_public_key_pem, cb.platform_public_key_pem);
    assert_ne!(a.platform_serial(), b.platform_serial());
    assert!(
        ca.merchant_private_key_pem
            .starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8, as MerchantSigner accepts"
    );
    // The generated certificate is what the core accepts: 40 hex digits, valid now.
    let info = wxpay_core::keys::parse_certificate_pem(&ca.platform_certificate_pem).expect("cert");
    assert_eq!(info.serial_no.len(), 40);
    assert_eq!(
        Some(info.serial_no.as_str()),
        a.platform_certificate_serial()
    );
    let now = i64::try_from(now()).expect("now");
    assert!(info.not_before <= now && now < info.not_after);
    assert!(info.not_after - now > 4 * 365 * 86_400, "valid for years");
    // A signer over the generated merchant key is accepted by the simulator.
    let r = v3(&a, "GET", "/v3/certificates", "").await.verified(&a);
    assert_eq!(r.status, StatusCode::OK);
}

fn vector_keys() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/vectors/keys")
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "wxpay-sim-{name}-{}",
        &wxpay_core::nonce::nonce_str(&mut rng())[..8]
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

#[tokio::test]
async fn keys_dir_reads_the_published_test_keys_at_run_time() {
    let dir = vector_keys();
    let h = sim(fast().keys_dir(&dir)).await;
    let file = |name: &str| std::fs::read_to_string(dir.join(name)).expect("key file");
    assert_eq!(
        h.merchant_private_key_pem(),
        file("merchant_private_key.pem")
    );
    assert_eq!(
        h.platform_certificate_serial(),
        Some("5157F09EFDC096DE15EBE81A47057A7232F8BB6B")
    );
    let r = v3(&h, "GET", "/v3/certificates", "").await.verified(&h);
    assert_eq!(r.status, StatusCode::OK);
    // Rotation still works: the second key is generated.
    let new = h.rotate_platform_certificate().expect("rotates");
    assert_ne!(new, "5157F09EFDC096DE15EBE81A47057A7232F8BB6B");

    // Only the private keys: the public keys are derived and a certificate is generated.
    let only = temp_dir("only-private");
    for name in ["merchant_private_key.pem", "platform_private_key.pem"] {
        std::fs::copy(dir.join(name), only.join(name)).expect("copy");
    }
    let h2 = sim(fast().keys_dir(&only)).await;
    assert_eq!(
        h2.platform_public_key_pem().trim(),
        file("platform_public_key.pem").trim()
    );
    assert_ne!(
        h2.platform_certificate_serial(),
        Some("5157F09EFDC096DE15EBE81A47057A7232F8BB6B")
    );
    let r = v3(&h2, "GET", "/v3/certificates", "").await.verified(&h2);
    assert_eq!(r.status, StatusCode::OK);

    // Files that do not belong together are refused at start.
    let mixed = temp_dir("mixed");
    for name in ["merchant_private_key.pem", "platform_private_key.pem"] {
        std::fs::copy(dir.join(name), mixed.join(name)).expect("copy");
    }
    std::fs::copy(
        dir.join("merchant_public_key.pem"),
        mixed.join("platform_public_key.pem"),
    )
    .expect("copy");
    assert!(matches!(
        spawn(fast().keys_dir(&mixed)).await,
        Err(SimulatorError::KeyMismatch(_))
    ));
    assert!(matches!(
        spawn(fast().keys_dir(mixed.join("missing"))).await,
        Err(SimulatorError::KeyFile { .. })
    ));
    for d in [only, mixed] {
        let _ = std::fs::remove_dir_all(d);
    }
}

// ---------------------------------------------------------------------------------------------
// Behaviours for the host's order and refund state machine

fn query_path(h: &SimulatorHandle, no: &str) -> String {
    format!("/v3/pay/transactions/out-trade-no/{no}?mchid={}", h.mchid())
}

async fn trade_state(h: &SimulatorHandle, no: &str) -> Value {
    v3(h, "GET", &query_path(h, no), "")
        .await
        .verified(h)
        .json()
}

async fn close(h: &SimulatorHandle, no: &str) {
    let r = v3(
        h,
        "POST",
        &format!("/v3/pay/transactions/out-trade-no/{no}/close"),
        &json!({ "mchid": h.mchid() }).to_string(),
    )
    .await
    .verified(h);
    assert_eq!(r.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_payment_crossing_the_close_is_notified() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(fast()).await;
    order(&h, "RACE0001", 100, &url).await;
    order(&h, "RACE0002", 100, &url).await;
    close(&h, "RACE0001").await;
    close(&h, "RACE0002").await;
    assert!(matches!(
        h.pay("RACE0001"),
        Err(SimulatorError::OrderState {
            state: TradeState::Closed,
            ..
        })
    ));
    let paid = h.pay_even_if_closed("RACE0001").expect("pays");
    assert_eq!(paid.trade_state, TradeState::Success);
    let r = send(
        &h,
        "POST",
        "/sim/orders/RACE0002/pay-even-if-closed",
        "",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["trade_state"], "SUCCESS");
    h.wait_for_deliveries(2, WAIT).await.expect("delivered");
    for (headers, body) in rx.received() {
        let n = verify_received(&h, &(headers, body)).expect("authentic");
        assert_eq!(n.event_type, "TRANSACTION.SUCCESS");
        let tx = n.transaction().expect("transaction");
        assert_eq!(tx.trade_state, "SUCCESS");
        assert!(tx.transaction_id.is_some());
    }
    assert_eq!(trade_state(&h, "RACE0001").await["trade_state"], "SUCCESS");
    assert!(matches!(
        h.pay_even_if_closed("RACE0001"),
        Err(SimulatorError::OrderState { .. })
    ));
}

#[tokio::test]
async fn a_double_payment_has_a_new_transaction_id() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(fast()).await;
    order(&h, "TWICE001", 100, &url).await;
    assert!(matches!(
        h.pay_again("TWICE001"),
        Err(SimulatorError::OrderState { .. })
    ));
    let first = h.pay("TWICE001").expect("pays").transaction_id;
    let second = h.pay_again("TWICE001").expect("pays again");
    assert_ne!(Some(second.clone()), first);
    let r = send(&h, "POST", "/sim/orders/TWICE001/pay-again", "", None).await;
    let third = r.json()["transaction_id"].as_str().expect("id").to_owned();
    h.wait_for_deliveries(3, WAIT).await.expect("delivered");
    let mut ids: Vec<_> = rx
        .received()
        .iter()
        .map(|r| {
            verify_received(&h, r)
                .expect("authentic")
                .transaction()
                .expect("transaction")
                .transaction_id
        })
        .collect();
    ids.sort();
    let mut expected = vec![first.clone(), Some(second.clone()), Some(third.clone())];
    expected.sort();
    assert_eq!(ids, expected);
    // Queries keep answering the first payment; the snapshot lists the others.
    assert_eq!(
        trade_state(&h, "TWICE001").await["transaction_id"].as_str(),
        first.as_deref()
    );
    let snapshot = h.order("TWICE001").expect("order");
    assert_eq!(snapshot.double_payments, vec![second, third]);
}

#[tokio::test]
async fn trade_states_for_queries_and_refund_after_a_refund() {
    let h = sim(fast()).await;
    let url = "http://127.0.0.1:9/notify";
    order(&h, "STATE001", 100, url).await;
    for state in [
        TradeState::UserPaying,
        TradeState::PayError,
        TradeState::Revoked,
        TradeState::Closed,
        TradeState::NotPay,
    ] {
        h.set_trade_state("STATE001", state).expect("set");
        let q = trade_state(&h, "STATE001").await;
        assert_eq!(q["trade_state"], state.as_str());
        assert!(q["trade_state_desc"].is_string());
        assert!(q.get("transaction_id").is_none());
    }
    let r = send(
        &h,
        "POST",
        "/sim/orders/STATE001/trade-state",
        r#"{"trade_state":"PAYERROR"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(trade_state(&h, "STATE001").await["trade_state"], "PAYERROR");
    let r = send(
        &h,
        "POST",
        "/sim/orders/STATE001/trade-state",
        r#"{"trade_state":"SUCCESS"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(matches!(
        h.set_trade_state("STATE001", TradeState::Success),
        Err(SimulatorError::Unsupported(_))
    ));
    // A payer who failed once can pay; then a partial refund makes the query answer REFUND.
    h.pay("STATE001").expect("pays");
    assert!(matches!(
        h.set_trade_state("STATE001", TradeState::Closed),
        Err(SimulatorError::OrderState { .. })
    ));
    let body = json!({
        "out_trade_no": "STATE001", "out_refund_no": "RSTATE01",
        "amount": { "refund": 10, "total": 100, "currency": "CNY" },
    })
    .to_string();
    let r = v3(&h, "POST", "/v3/refund/domestic/refunds", &body).await;
    assert_eq!(r.status, StatusCode::OK);
    let q = trade_state(&h, "STATE001").await;
    assert_eq!(q["trade_state"], "REFUND");
    assert!(q["transaction_id"].is_string());
}

async fn refund_req(
    h: &SimulatorHandle,
    no: &str,
    out_refund_no: &str,
    amount: u64,
    url: &str,
) -> Reply {
    let body = json!({
        "out_trade_no": no,
        "out_refund_no": out_refund_no,
        "notify_url": url,
        "amount": { "refund": amount, "total": 100, "currency": "CNY" },
    })
    .to_string();
    v3(h, "POST", "/v3/refund/domestic/refunds", &body)
        .await
        .verified(h)
}

async fn refund_query(h: &SimulatorHandle, out_refund_no: &str) -> Reply {
    v3(
        h,
        "GET",
        &format!("/v3/refund/domestic/refunds/{out_refund_no}"),
        "",
    )
    .await
    .verified(h)
}

#[tokio::test]
async fn refund_statuses_unknown_refunds_and_resubmission() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(SimulatorOptions {
        refund_delay: None,
        ..fast()
    })
    .await;
    order(&h, "REFUND01", 100, &url).await;
    h.pay("REFUND01").expect("pays");
    h.wait_for_deliveries(1, WAIT).await.expect("payment");

    let r = refund_query(&h, "NEVERSEEN").await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_EXISTS"))
    );

    // The same out_refund_no twice is the same refund.
    let a = refund_req(&h, "REFUND01", "RF000001", 30, &url)
        .await
        .json();
    let b = refund_req(&h, "REFUND01", "RF000001", 30, &url)
        .await
        .json();
    assert_eq!(a["refund_id"], b["refund_id"]);
    assert_eq!(h.order("REFUND01").expect("order").refunded, 30);

    // PROCESSING -> ABNORMAL -> SUCCESS, each notified.
    let r = h
        .set_refund_status("RF000001", RefundStatus::Abnormal)
        .expect("abnormal");
    assert_eq!(r.status, RefundStatus::Abnormal);
    assert_eq!(
        refund_query(&h, "RF000001").await.json()["status"],
        "ABNORMAL"
    );
    let r = send(
        &h,
        "POST",
        "/sim/refunds/RF000001/status",
        r#"{"status":"SUCCESS"}"#,
        None,
    )
    .await;
    assert_eq!(r.json()["status"], "SUCCESS");
    // PROCESSING -> CLOSED, notified; its amount is refundable again.
    refund_req(&h, "REFUND01", "RF000002", 70, &url).await;
    h.set_refund_status("RF000002", RefundStatus::Closed)
        .expect("closed");
    assert_eq!(h.order("REFUND01").expect("order").refunded, 30);
    assert!(matches!(
        h.set_refund_status("RF000002", RefundStatus::Success),
        Err(SimulatorError::RefundState {
            status: RefundStatus::Closed,
            ..
        })
    ));
    assert!(matches!(
        h.complete_refund("RF000002"),
        Err(SimulatorError::RefundState { .. })
    ));
    // Setting the same status again sends nothing.
    h.set_refund_status("RF000001", RefundStatus::Success)
        .expect("unchanged");
    h.wait_for_deliveries(4, WAIT).await.expect("refunds");
    h.wait_idle(WAIT).await.expect("idle");
    let events: Vec<(String, String, String)> = rx.received()[1..]
        .iter()
        .map(|r| {
            let n = verify_received(&h, r).expect("authentic");
            let refund = n.refund().expect("refund");
            (n.event_type, refund.out_refund_no, refund.refund_status)
        })
        .collect();
    let expect = |e: &str, no: &str, s: &str| (e.to_owned(), no.to_owned(), s.to_owned());
    assert_eq!(
        events,
        [
            expect("REFUND.ABNORMAL", "RF000001", "ABNORMAL"),
            expect("REFUND.SUCCESS", "RF000001", "SUCCESS"),
            expect("REFUND.CLOSED", "RF000002", "CLOSED"),
        ]
    );
    assert_eq!(h.refund_query_count("RF000001"), 1);
    assert_eq!(h.refund_query_count("NEVERSEEN"), 1);
    let r = send(&h, "GET", "/sim/refunds/NEVERSEEN/query-count", "", None).await;
    assert_eq!(r.json()["count"], 1);
}

#[tokio::test]
async fn an_abnormal_refund_does_not_succeed_by_itself() {
    let (url, _rx) = receiver(&[]).await;
    let h = sim(SimulatorOptions {
        refund_delay: Some(Duration::from_millis(200)),
        ..fast()
    })
    .await;
    order(&h, "ABNORM01", 100, &url).await;
    h.pay("ABNORM01").expect("pays");
    refund_req(&h, "ABNORM01", "RFAB0001", 100, &url).await;
    h.set_refund_status("RFAB0001", RefundStatus::Abnormal)
        .expect("abnormal");
    h.wait_idle(WAIT).await.expect("idle");
    assert_eq!(
        h.refund("RFAB0001").map(|r| r.status),
        Some(RefundStatus::Abnormal)
    );
}

#[tokio::test]
async fn refund_answers_can_be_lost_after_creating_or_refused_before() {
    let (url, _rx) = receiver(&[]).await;
    let h = sim(SimulatorOptions {
        refund_delay: None,
        ..fast()
    })
    .await;
    order(&h, "LOST0001", 100, &url).await;
    h.pay("LOST0001").expect("pays");

    // Created, answered 500: the query finds it, and resubmitting returns it.
    h.fail_next_refunds(RefundFault::CreatedButError(500), 1);
    let r = refund_req(&h, "LOST0001", "RFLOST01", 10, &url).await;
    assert_eq!(
        (r.status, r.json()["code"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("SYSTEM_ERROR"))
    );
    assert_eq!(refund_query(&h, "RFLOST01").await.status, StatusCode::OK);
    let again = refund_req(&h, "LOST0001", "RFLOST01", 10, &url).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(h.order("LOST0001").expect("order").refunded, 10);

    // Refused before creating: nothing exists.
    let r = send(
        &h,
        "POST",
        "/sim/refunds/fail",
        r#"{"mode":"reject","status":503,"code":"SYSTEM_ERROR"}"#,
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = refund_req(&h, "LOST0001", "RFLOST02", 10, &url).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        refund_query(&h, "RFLOST02").await.status,
        StatusCode::NOT_FOUND
    );

    // Created, answered late: a client with a short timeout gives up, the refund exists.
    h.fail_next_refunds(
        RefundFault::CreatedButDelayed(Duration::from_millis(1500)),
        1,
    );
    let body = json!({
        "out_trade_no": "LOST0001", "out_refund_no": "RFLOST03",
        "amount": { "refund": 10, "total": 100, "currency": "CNY" },
    })
    .to_string();
    let path = "/v3/refund/domestic/refunds";
    let auth = authorization(
        &signer(&h),
        &mut rng(),
        "POST",
        path,
        &now().to_string(),
        &wxpay_core::nonce::nonce_str(&mut rng()),
        &body,
    )
    .expect("authorization");
    let late = reqwest::Client::new()
        .post(format!("{}{path}", h.base_url()))
        .header("Authorization", auth.header)
        .header("Content-Type", "application/json")
        .timeout(Duration::from_millis(300))
        .body(body)
        .send()
        .await;
    assert!(late.is_err_and(|e| e.is_timeout()));
    assert_eq!(refund_query(&h, "RFLOST03").await.status, StatusCode::OK);
    assert_eq!(h.order("LOST0001").expect("order").refunded, 20);
}

#[tokio::test]
async fn console_refunds_notify_the_refund_url() {
    let (url, rx) = receiver(&[]).await;
    let h = sim(fast()).await;
    order(&h, "CONSOLE1", 100, &url).await;
    assert!(matches!(
        h.console_refund("CONSOLE1", 10),
        Err(SimulatorError::OrderState { .. })
    ));
    h.pay("CONSOLE1").expect("pays");
    let no = h.console_refund("CONSOLE1", 40).expect("refund");
    let r = send(
        &h,
        "POST",
        "/sim/orders/CONSOLE1/console-refund",
        r#"{"amount":60}"#,
        None,
    )
    .await;
    let no2 = r.json()["out_refund_no"].as_str().expect("no").to_owned();
    assert!(matches!(
        h.console_refund("CONSOLE1", 1),
        Err(SimulatorError::RefundRefused(_))
    ));
    h.wait_for_deliveries(3, WAIT).await.expect("delivered");
    h.wait_idle(WAIT).await.expect("idle");
    assert_eq!(rx.paths(), ["/notify", "/notify/refund", "/notify/refund"]);
    let mut refunded: Vec<(String, i64)> = rx.received()[1..]
        .iter()
        .map(|r| {
            let n = verify_received(&h, r).expect("authentic");
            assert_eq!(n.event_type, "REFUND.SUCCESS");
            let refund = n.refund().expect("refund");
            (refund.out_refund_no, refund.amount.refund)
        })
        .collect();
    refunded.sort();
    let mut expected = vec![(no, 40), (no2, 60)];
    expected.sort();
    assert_eq!(refunded, expected);
    assert_eq!(trade_state(&h, "CONSOLE1").await["trade_state"], "REFUND");

    // Or to a configured URL.
    let (other, rx2) = receiver(&[]).await;
    let h = sim(SimulatorOptions {
        refund_notify_url: Some(other.clone()),
        ..fast()
    })
    .await;
    order(&h, "CONSOLE2", 100, &url).await;
    h.pay("CONSOLE2").expect("pays");
    h.console_refund("CONSOLE2", 100).expect("refund");
    h.wait_idle(WAIT).await.expect("idle");
    assert_eq!(rx2.paths(), ["/notify"]);
}

#[tokio::test]
async fn order_and_refund_queries_are_counted() {
    let h = sim(fast()).await;
    order(&h, "COUNT001", 100, "http://127.0.0.1:9/notify").await;
    assert_eq!(h.query_count("COUNT001"), 0);
    for _ in 0..3 {
        trade_state(&h, "COUNT001").await;
    }
    trade_state(&h, "NOPE0001").await;
    let paid = h.pay("COUNT001").expect("pays");
    let by_id = format!(
        "/v3/pay/transactions/id/{}?mchid={}",
        paid.transaction_id.expect("id"),
        h.mchid()
    );
    v3(&h, "GET", &by_id, "").await.verified(&h);
    assert_eq!(h.query_count("COUNT001"), 4);
    assert_eq!(h.query_count("NOPE0001"), 1);
    let r = send(&h, "GET", "/sim/orders/COUNT001/query-count", "", None).await;
    assert_eq!(r.json()["count"], 4);
    // A forced failure is answered before the query: not counted.
    h.fail_next_v3(500, "SYSTEM_ERROR", 1);
    trade_state(&h, "COUNT001").await;
    assert_eq!(h.query_count("COUNT001"), 4);
}

#[tokio::test]
async fn signed_notifications_for_any_resource() {
    let h = sim(fast()).await;
    let resource = json!({ "mchid": h.mchid(), "out_trade_no": "ANY00001",
        "transaction_id": "4200000000000000000000000001", "trade_state": "SUCCESS" });
    let (headers, body) = h
        .signed_notification("any-1", "TRANSACTION.SUCCESS", "transaction", &resource)
        .expect("signed");
    let pairs = || headers.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let wx = WechatpayHeaders::from_pairs(pairs()).expect("headers");
    assert_eq!(wx.serial, h.platform_serial());
    let key = ApiV3Key::new(h.api_v3_key()).expect("key");
    let n = verify_notification(&platform_keys(&h), &key, &wx, &body, now()).expect("verifies");
    assert_eq!(
        (n.id.as_str(), n.event_type.as_str()),
        ("any-1", "TRANSACTION.SUCCESS")
    );
    let plain: Value = serde_json::from_slice(n.plaintext.as_bytes()).expect("json");
    assert_eq!(plain, resource);
    // After a rotation, signed with the new key.
    let new = h.rotate_platform_certificate().expect("rotates");
    let (headers, _) = h
        .signed_notification("any-2", "REFUND.SUCCESS", "refund", &resource)
        .expect("signed");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "Wechatpay-Serial" && *v == new)
    );
}

/// An APIv3 `GET` whose request names `serial` in `Wechatpay-Serial` (or nothing).
async fn get_naming(h: &SimulatorHandle, url: &str, serial: Option<&str>) -> Reply {
    let auth = authorization(
        &signer(h),
        &mut rng(),
        "GET",
        url,
        &now().to_string(),
        &wxpay_core::nonce::nonce_str(&mut rng()),
        "",
    )
    .expect("authorization");
    let mut req = reqwest::Client::new()
        .get(format!("{}{url}", h.base_url()))
        .header("Accept", "application/json")
        .header("Authorization", auth.header);
    if let Some(s) = serial {
        req = req.header("Wechatpay-Serial", s);
    }
    let resp = req.send().await.expect("simulator answers");
    Reply {
        status: StatusCode::from_u16(resp.status().as_u16()).expect("status"),
        headers: resp.headers().clone(),
        body: resp.bytes().await.expect("body"),
    }
}

#[tokio::test]
async fn migration_signs_answers_by_the_requested_serial_and_switches_notifications() {
    let h = sim(SimulatorOptions {
        public_key_migration: true,
        ..fast()
    })
    .await;
    let id = h
        .platform_public_key_id()
        .expect("public key id")
        .to_owned();
    let cert = h
        .platform_certificate_serial()
        .expect("certificate serial")
        .to_owned();
    assert!(id.starts_with("PUB_KEY_ID_"));
    assert_eq!(h.current_platform_serial(), cert);
    // The two kinds, each its own key: a host holding both verifies either answer.
    let mut certificate_only = PlatformKeys::new();
    certificate_only
        .insert_certificate_pem(
            default_provider(),
            &h.credentials().platform_certificate_pem,
        )
        .expect("certificate");
    let mut public_key_only = PlatformKeys::new();
    public_key_only
        .insert_public_key_pem(default_provider(), &id, h.platform_public_key_pem())
        .expect("public key");
    let mut both = PlatformKeys::new();
    both.insert_certificate_pem(
        default_provider(),
        &h.credentials().platform_certificate_pem,
    )
    .expect("certificate");
    both.insert_public_key_pem(default_provider(), &id, h.platform_public_key_pem())
        .expect("public key");
    // The public key's PEM under the certificate's serial does not verify: different keys.
    let mut crossed = PlatformKeys::new();
    crossed
        .insert_public_key_pem(default_provider(), &cert, h.platform_public_key_pem())
        .expect("public key");
    let url = "/v3/certificates";
    for (named, switched, expect) in [
        (None, false, &cert),
        (Some(id.as_str()), false, &id),
        (Some(cert.as_str()), false, &cert),
        (None, true, &id),
        (Some(id.as_str()), true, &id),
        (Some(cert.as_str()), true, &cert),
    ] {
        if switched {
            assert_eq!(h.switch_to_public_key().expect("migrating"), id);
        }
        let r = get_naming(&h, url, named).await;
        assert_eq!(r.status, StatusCode::OK);
        let wx = wechatpay_headers(&r.headers);
        assert_eq!(&wx.serial, expect, "request naming {named:?}");
        verify_response(&both, &wx, &r.body, now()).expect("verifies with both");
        let (own, other) = if expect == &id {
            (&public_key_only, &certificate_only)
        } else {
            (&certificate_only, &public_key_only)
        };
        verify_response(own, &wx, &r.body, now()).expect("verifies with its own kind");
        assert_eq!(
            verify_response(other, &wx, &r.body, now()).err(),
            Some(wxpay_core::Error::UnknownSerial)
        );
        if expect == &cert {
            assert_eq!(
                verify_response(&crossed, &wx, &r.body, now()).err(),
                Some(wxpay_core::Error::SignatureMismatch)
            );
        }
    }
    let log = h.answer_serials();
    assert_eq!(log.len(), 6);
    assert!(log.iter().all(|a| a.path == url), "{log:?}");
    assert_eq!(log[1].requested.as_deref(), Some(id.as_str()));
    // Notifications follow the switch.
    assert_eq!(h.current_platform_serial(), id);
    let resource = json!({ "out_trade_no": "MIGRATE1" });
    let (headers, body) = h
        .signed_notification("n1", "TRANSACTION.SUCCESS", "transaction", &resource)
        .expect("notification");
    let wx = WechatpayHeaders::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .expect("headers");
    assert_eq!(wx.serial, id);
    let key = ApiV3Key::new(h.api_v3_key()).expect("key");
    verify_notification(&public_key_only, &key, &wx, &body, now()).expect("verifies");

    let plain = sim(fast()).await;
    assert!(matches!(
        plain.switch_to_public_key(),
        Err(SimulatorError::NotMigrating)
    ));
}
