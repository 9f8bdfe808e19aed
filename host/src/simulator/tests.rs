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
                    h.credentials().platform_certificate_pem,
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
    let client = reqwest::Client::new();
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

/// A merchant notify endpoint that answers with queued statuses (then 204) and records every
/// request.
#[derive(Default)]
struct Receiver {
    answers: Mutex<VecDeque<u16>>,
    received: Mutex<Vec<(HeaderMap, Bytes)>>,
}

impl Receiver {
    fn received(&self) -> Vec<(HeaderMap, Bytes)> {
        self.received.lock().expect("lock").clone()
    }
}

async fn receiver(answers: &[u16]) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        answers: Mutex::new(answers.iter().copied().collect()),
        received: Mutex::default(),
    });
    let app = axum::Router::new()
        .route(
            "/notify",
            post(
                |State(r): State<Arc<Receiver>>, headers: HeaderMap, body: Bytes| async move {
                    r.received.lock().expect("lock").push((headers, body));
                    let answer = r.answers.lock().expect("lock").pop_front().unwrap_or(204);
                    StatusCode::from_u16(answer).expect("status")
                },
            ),
        )
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
async fn bad_authorization_is_401_sign_error_and_signed() {
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
        let r = r.verified(&h);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(r.json()["code"], "SIGN_ERROR");
    }
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
