//! The simulator's APIv2 over real sockets, checked with `wxpay-core`'s v2 functions the way a
//! merchant host checks WeChat Pay.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::routing::post;
use rustls::pki_types::pem::PemObject;
use wxpay_core::v2::{
    ApiV2Key, SignType, decrypt_req_info, parse_xml, reply_xml, signed_xml, verify,
    verify_notification,
};

use super::*;

const WAIT: Duration = Duration::from_secs(10);

fn fast(sign_type: SignType) -> SimulatorOptions {
    SimulatorOptions {
        notify_retry_schedule: vec![Duration::from_millis(20); 15],
        refund_delay: Some(Duration::from_millis(20)),
        v2_sign_type: sign_type,
        ..SimulatorOptions::default()
    }
}

async fn sim(opts: SimulatorOptions) -> SimulatorHandle {
    spawn(opts).await.expect("simulator starts")
}

fn key(h: &SimulatorHandle) -> ApiV2Key {
    ApiV2Key::new(h.api_v2_key())
}

/// `params` plus `appid`, `mch_id`, `nonce_str` (and `sign_type` for HMAC), signed with `key`.
fn body(
    h: &SimulatorHandle,
    params: &[(&str, &str)],
    key: &ApiV2Key,
    sign_type: SignType,
) -> String {
    let mut p: BTreeMap<String, String> = params
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    p.insert("appid".into(), h.appid().into());
    p.insert("mch_id".into(), h.mchid().into());
    p.insert(
        "nonce_str".into(),
        "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".into(),
    );
    if sign_type == SignType::HmacSha256 {
        p.entry("sign_type".into())
            .or_insert_with(|| "HMAC-SHA256".into());
    }
    signed_xml(&p, key, sign_type).expect("xml").xml
}

/// A client for `h`: plain, or with [`SimulatorOptions::tls`] one that trusts only the
/// simulator CA and presents `identity` (certificate and key PEM) if given.
pub(super) fn client(h: &SimulatorHandle, identity: Option<(&str, &str)>) -> reqwest::Client {
    let Some(ca) = h.tls_root_ca_pem() else {
        return reqwest::Client::new();
    };
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.as_bytes()).expect("CA PEM")]);
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

/// A client for `h` presenting the merchant client certificate when TLS is on.
fn merchant_client(h: &SimulatorHandle) -> reqwest::Client {
    client(
        h,
        h.merchant_client_cert_pem()
            .zip(h.merchant_client_key_pem()),
    )
}

async fn post_xml(
    h: &SimulatorHandle,
    path: &str,
    xml: String,
    client: &reqwest::Client,
) -> (u16, BTreeMap<String, String>) {
    let resp = try_post_xml(h, path, xml, client).await.expect("send");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("text");
    (status, parse_xml(&text).expect("answer is v2 XML"))
}

async fn try_post_xml(
    h: &SimulatorHandle,
    path: &str,
    xml: String,
    client: &reqwest::Client,
) -> reqwest::Result<reqwest::Response> {
    client
        .post(format!("{}{path}", h.base_url()))
        .body(xml)
        .send()
        .await
}

/// A signed request with the simulator's own key and sign type; the answer's signature is
/// checked (with the merchant's sign type, never a type the answer claims) when it succeeded.
async fn call(
    h: &SimulatorHandle,
    path: &str,
    params: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let t = h.v2_sign_type();
    let (status, f) = post_xml(h, path, body(h, params, &key(h), t), &merchant_client(h)).await;
    assert_eq!(status, 200);
    assert_eq!(f["return_code"], "SUCCESS", "{f:?}");
    verify(&f, &key(h), t).expect("answer signed with the merchant's sign type");
    f
}

fn order_params<'a>(no: &'a str, total: &'a str, notify_url: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("body", "测试商品"),
        ("out_trade_no", no),
        ("total_fee", total),
        ("spbill_create_ip", "127.0.0.1"),
        ("notify_url", notify_url),
        ("trade_type", "JSAPI"),
        ("openid", "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"),
    ]
}

async fn order(h: &SimulatorHandle, no: &str, total: &str, notify_url: &str) -> String {
    let f = call(h, "/pay/unifiedorder", &order_params(no, total, notify_url)).await;
    assert_eq!(f["result_code"], "SUCCESS", "{f:?}");
    assert_eq!(f["trade_type"], "JSAPI");
    f["prepay_id"].clone()
}

/// An XML notification receiver answering from a queue (then `SUCCESS`).
#[derive(Default)]
struct Receiver {
    answers: Mutex<VecDeque<String>>,
    received: Mutex<Vec<(String, String)>>,
}

impl Receiver {
    fn received(&self) -> Vec<(String, String)> {
        self.received.lock().expect("lock").clone()
    }
}

async fn receiver(answers: &[&str]) -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver {
        answers: Mutex::new(answers.iter().map(|s| (*s).to_owned()).collect()),
        received: Mutex::default(),
    });
    let handler = |State(r): State<Arc<Receiver>>, uri: axum::http::Uri, body: String| async move {
        r.received
            .lock()
            .expect("lock")
            .push((uri.path().to_owned(), body));
        r.answers
            .lock()
            .expect("lock")
            .pop_front()
            .unwrap_or_else(|| reply_xml(true, "OK"))
    };
    let app = axum::Router::new()
        .route("/notify/pay", post(handler))
        .route("/notify/refund", post(handler))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/notify/pay", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

#[tokio::test]
async fn unifiedorder_accepts_md5_and_hmac_and_answers_signed() {
    let h = sim(fast(SignType::Md5)).await;
    order(&h, "v2-md5", "100", "http://127.0.0.1:9/notify/pay").await;
    // An MD5 merchant may sign a request with HMAC-SHA256 (an upgrade), answered in kind.
    let (_, f) = post_xml(
        &h,
        "/pay/unifiedorder",
        body(
            &h,
            &order_params("v2-up", "100", "http://127.0.0.1:9/notify/pay"),
            &key(&h),
            SignType::HmacSha256,
        ),
        &reqwest::Client::new(),
    )
    .await;
    assert_eq!(f["result_code"], "SUCCESS");
    verify(&f, &key(&h), SignType::HmacSha256).expect("HMAC answer");

    let h = sim(fast(SignType::HmacSha256)).await;
    let prepay = order(&h, "v2-hmac", "100", "http://127.0.0.1:9/notify/pay").await;
    assert_eq!(h.order("v2-hmac").expect("order").prepay_id, prepay);
    // The credentials carry the v2 settings.
    let creds: serde_json::Value = reqwest::get(format!("{}/sim/credentials", h.base_url()))
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(creds["api_v2_key"], h.api_v2_key());
    assert_eq!(creds["v2_sign_type"], "HMAC-SHA256");
    assert_eq!(h.api_v2_key().len(), 32);
}

#[tokio::test]
async fn bad_sign_and_sign_type_downgrade_are_refused() {
    let h = sim(fast(SignType::Md5)).await;
    let params = order_params("v2-bad", "100", "http://127.0.0.1:9/notify/pay");
    let wrong = ApiV2Key::new("00000000000000000000000000000000");
    let (status, f) = post_xml(
        &h,
        "/pay/unifiedorder",
        body(&h, &params, &wrong, SignType::Md5),
        &reqwest::Client::new(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(f["return_code"], "FAIL");
    assert_eq!(f["return_msg"], "签名错误");
    assert!(!f.contains_key("sign") && !f.contains_key("result_code"));
    assert!(h.order("v2-bad").is_none());
    let (_, f) = post_xml(
        &h,
        "/pay/unifiedorder",
        "<xml><a>".into(),
        &reqwest::Client::new(),
    )
    .await;
    assert_eq!(f["return_code"], "FAIL");

    // An HMAC-SHA256 merchant: a correctly MD5-signed request claiming MD5 (or nothing) is a
    // downgrade and refused.
    let h = sim(fast(SignType::HmacSha256)).await;
    let mut claimed = params.clone();
    claimed.push(("sign_type", "MD5"));
    for p in [&params, &claimed] {
        let (_, f) = post_xml(
            &h,
            "/pay/unifiedorder",
            body(&h, p, &key(&h), SignType::Md5),
            &reqwest::Client::new(),
        )
        .await;
        assert_eq!(f["return_code"], "FAIL", "{f:?}");
        assert_eq!(f["return_msg"], "签名错误");
    }
    assert!(h.order("v2-bad").is_none());
}

#[tokio::test]
async fn unifiedorder_is_idempotent_and_reports_err_codes() {
    let h = sim(fast(SignType::Md5)).await;
    let url = "http://127.0.0.1:9/notify/pay";
    let first = order(&h, "v2-idem", "100", url).await;
    assert_eq!(order(&h, "v2-idem", "100", url).await, first);
    let f = call(
        &h,
        "/pay/unifiedorder",
        &order_params("v2-idem", "101", url),
    )
    .await;
    assert_eq!(f["result_code"], "FAIL");
    assert_eq!(f["err_code"], "OUT_TRADE_NO_USED");
    assert!(!f.contains_key("prepay_id"));

    let mut no_openid = order_params("v2-param", "100", url);
    no_openid.retain(|(k, _)| *k != "openid");
    let f = call(&h, "/pay/unifiedorder", &no_openid).await;
    assert_eq!(f["err_code"], "PARAM_ERROR");
    let mut native = order_params("v2-param", "100", url);
    native.retain(|(k, _)| *k != "trade_type");
    native.push(("trade_type", "NATIVE"));
    assert_eq!(
        call(&h, "/pay/unifiedorder", &native).await["err_code"],
        "PARAM_ERROR"
    );
    let f = call(&h, "/pay/unifiedorder", &order_params("v2-param", "0", url)).await;
    assert_eq!(f["err_code"], "PARAM_ERROR");

    h.set_notify_behavior(NotifyBehavior::Drop);
    h.pay("v2-idem").expect("pay");
    let f = call(
        &h,
        "/pay/unifiedorder",
        &order_params("v2-idem", "100", url),
    )
    .await;
    assert_eq!(f["err_code"], "ORDERPAID");
}

#[tokio::test]
async fn payment_notification_is_v2_xml_verified_and_retried_on_fail() {
    for sign_type in [SignType::Md5, SignType::HmacSha256] {
        let h = sim(fast(sign_type)).await;
        let (url, r) = receiver(&[&reply_xml(false, "busy"), "not xml"]).await;
        order(&h, "v2-pay", "250", &url).await;
        let paid = h.pay("v2-pay").expect("pay");
        h.wait_for_deliveries(1, WAIT).await.expect("delivered");
        let received = r.received();
        assert_eq!(received.len(), 3, "FAIL and junk answers are retried");
        for (path, xml) in &received {
            assert_eq!(path, "/notify/pay");
            let f = verify_notification(xml, &key(&h), sign_type).expect("verifies");
            assert_eq!(f["return_code"], "SUCCESS");
            assert_eq!(f["result_code"], "SUCCESS");
            assert_eq!(f["appid"], h.appid());
            assert_eq!(f["mch_id"], h.mchid());
            assert_eq!(f["out_trade_no"], "v2-pay");
            assert_eq!(f["total_fee"], "250");
            assert_eq!(f["cash_fee"], "250");
            assert_eq!(f["trade_type"], "JSAPI");
            assert_eq!(f["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
            assert_eq!(Some(&f["transaction_id"]), paid.transaction_id.as_ref());
            assert_eq!(f["time_end"].len(), 14);
            assert!(f.contains_key("bank_type") && f.contains_key("nonce_str"));
            assert_eq!(
                f.get("sign_type").map(String::as_str),
                (sign_type == SignType::HmacSha256).then_some("HMAC-SHA256")
            );
        }
        let attempts = h.delivery_attempts();
        assert_eq!(
            attempts.iter().map(|a| a.acknowledged).collect::<Vec<_>>(),
            [false, false, true]
        );
        h.wait_idle(WAIT).await.expect("idle");
    }
}

#[tokio::test]
async fn a_tampered_v2_notification_does_not_verify() {
    let h = sim(fast(SignType::Md5)).await;
    let (url, r) = receiver(&[]).await;
    order(&h, "v2-tamper", "100", &url).await;
    h.set_notify_behavior(NotifyBehavior::Tamper);
    h.pay("v2-tamper").expect("pay");
    h.wait_idle(WAIT).await.expect("idle");
    let (_, xml) = &r.received()[0];
    assert!(verify_notification(xml, &key(&h), SignType::Md5).is_err());
}

#[tokio::test]
async fn orderquery_states_and_closeorder() {
    let h = sim(fast(SignType::Md5)).await;
    let url = "http://127.0.0.1:9/notify/pay";
    h.set_notify_behavior(NotifyBehavior::Drop);
    let query = |no: &'static str| {
        let h = &h;
        async move { call(h, "/pay/orderquery", &[("out_trade_no", no)]).await }
    };
    let f = query("v2-none").await;
    assert_eq!(
        (f["result_code"].as_str(), f["err_code"].as_str()),
        ("FAIL", "ORDERNOTEXIST")
    );

    order(&h, "v2-q", "100", url).await;
    let f = query("v2-q").await;
    assert_eq!(f["result_code"], "SUCCESS");
    assert_eq!(f["trade_state"], "NOTPAY");
    assert!(!f.contains_key("transaction_id"));
    h.set_trade_state("v2-q", TradeState::UserPaying)
        .expect("state");
    assert_eq!(query("v2-q").await["trade_state"], "USERPAYING");

    let paid = h.pay("v2-q").expect("pay");
    let f = query("v2-q").await;
    assert_eq!(f["trade_state"], "SUCCESS");
    let txid = paid.transaction_id.expect("txid");
    assert_eq!(f["transaction_id"], txid);
    let by_id = call(&h, "/pay/orderquery", &[("transaction_id", &txid)]).await;
    assert_eq!(by_id["out_trade_no"], "v2-q");
    assert_eq!(h.query_count("v2-q"), 4);
    let f = call(&h, "/pay/closeorder", &[("out_trade_no", "v2-q")]).await;
    assert_eq!(
        (f["result_code"].as_str(), f["err_code"].as_str()),
        ("FAIL", "ORDERPAID")
    );

    order(&h, "v2-c", "100", url).await;
    let f = call(&h, "/pay/closeorder", &[("out_trade_no", "v2-c")]).await;
    assert_eq!(f["result_code"], "SUCCESS", "{f:?}");
    assert_eq!(query("v2-c").await["trade_state"], "CLOSED");
    let f = call(&h, "/pay/closeorder", &[("out_trade_no", "v2-c")]).await;
    assert_eq!(f["err_code"], "ORDERCLOSED");
    let f = call(&h, "/pay/closeorder", &[("out_trade_no", "v2-none")]).await;
    assert_eq!(f["err_code"], "ORDERNOTEXIST");
    let f = call(&h, "/pay/unifiedorder", &order_params("v2-c", "100", url)).await;
    assert_eq!(f["err_code"], "ORDERCLOSED");
}

#[tokio::test]
async fn refund_then_query_and_req_info_notification_over_http_and_mutual_tls() {
    for tls in [false, true] {
        refund_query_and_notification(tls).await;
    }
}

/// The v2 refund flow; with `tls`, over HTTPS presenting the merchant client certificate
/// (`call`), after a refused attempt without one.
async fn refund_query_and_notification(tls: bool) {
    let h = sim(SimulatorOptions {
        tls,
        ..fast(SignType::HmacSha256)
    })
    .await;
    assert_eq!(h.base_url().starts_with("https://"), tls);
    let (url, r) = receiver(&[]).await;
    order(&h, "v2-r", "300", &url).await;
    let paid = h.pay("v2-r").expect("pay");
    h.wait_for_deliveries(1, WAIT)
        .await
        .expect("paid notification");
    let refund = [
        ("out_trade_no", "v2-r"),
        ("out_refund_no", "v2-r-1"),
        ("total_fee", "300"),
        ("refund_fee", "100"),
    ];
    if tls {
        let xml = body(&h, &refund, &key(&h), SignType::HmacSha256);
        let (status, f) = post_xml(&h, "/secapi/pay/refund", xml, &client(&h, None)).await;
        assert_eq!(status, 403);
        assert_eq!(f["return_code"], "FAIL");
        assert!(h.refund("v2-r-1").is_none());
    }

    let f = call(&h, "/secapi/pay/refund", &refund).await;
    assert_eq!(f["result_code"], "SUCCESS", "{f:?}");
    assert_eq!(f["refund_fee"], "100");
    assert_eq!(f["out_refund_no"], "v2-r-1");
    let refund_id = f["refund_id"].clone();
    // The same out_refund_no again is the same refund; another amount is refused.
    assert_eq!(
        call(&h, "/secapi/pay/refund", &refund).await["refund_id"],
        refund_id
    );
    let mut more = refund;
    more[3] = ("refund_fee", "101");
    assert_eq!(
        call(&h, "/secapi/pay/refund", &more).await["err_code"],
        "INVALID_REQUEST"
    );
    let too_much = [
        ("out_trade_no", "v2-r"),
        ("out_refund_no", "v2-r-2"),
        ("total_fee", "300"),
        ("refund_fee", "201"),
    ];
    assert_eq!(
        call(&h, "/secapi/pay/refund", &too_much).await["err_code"],
        "ERROR"
    );

    h.wait_for_deliveries(2, WAIT)
        .await
        .expect("refund notification");
    h.wait_idle(WAIT).await.expect("idle");
    let (path, xml) = r.received().last().cloned().expect("received");
    assert_eq!(path, "/notify/refund");
    let outer = parse_xml(&xml).expect("xml");
    assert_eq!(outer["return_code"], "SUCCESS");
    assert_eq!(outer["appid"], h.appid());
    assert_eq!(outer["mch_id"], h.mchid());
    assert!(
        !outer.contains_key("sign"),
        "v2 refund notifications are not signed"
    );
    let inner = parse_xml(&decrypt_req_info(&outer["req_info"], &key(&h)).expect("decrypts"))
        .expect("req_info XML");
    assert_eq!(inner["out_refund_no"], "v2-r-1");
    assert_eq!(inner["refund_id"], refund_id);
    assert_eq!(inner["out_trade_no"], "v2-r");
    assert_eq!(Some(&inner["transaction_id"]), paid.transaction_id.as_ref());
    assert_eq!(inner["refund_fee"], "100");
    assert_eq!(inner["total_fee"], "300");
    assert_eq!(inner["refund_status"], "SUCCESS");
    assert_eq!(inner["success_time"].len(), 19);
    assert!(decrypt_req_info(&outer["req_info"], &ApiV2Key::new("x")).is_err());

    let f = call(&h, "/pay/refundquery", &[("out_refund_no", "v2-r-1")]).await;
    assert_eq!(f["result_code"], "SUCCESS");
    assert_eq!(f["refund_count"], "1");
    assert_eq!(f["refund_status_0"], "SUCCESS");
    assert_eq!(f["refund_id_0"], refund_id);
    assert_eq!(h.refund_query_count("v2-r-1"), 1);
    let f = call(&h, "/pay/refundquery", &[("out_trade_no", "v2-r")]).await;
    assert_eq!(f["refund_count"], "1");
    h.set_refund_status("v2-r-1", RefundStatus::Closed)
        .expect_err("a successful refund is final");
    let f = call(&h, "/pay/refundquery", &[("out_refund_no", "v2-none")]).await;
    assert_eq!(f["err_code"], "REFUNDNOTEXIST");
    let f = call(&h, "/pay/orderquery", &[("out_trade_no", "v2-r")]).await;
    assert_eq!(f["trade_state"], "REFUND");
}

/// A paid v2 order `no` of 300 fen at a TLS simulator, and the signed XML of a refund request
/// `out_refund_no` of 100 fen.
async fn paid_order_and_refund_xml(h: &SimulatorHandle, no: &str, out_refund_no: &str) -> String {
    order(h, no, "300", "http://127.0.0.1:9/notify/pay").await;
    h.pay(no).expect("pay");
    let refund = [
        ("out_trade_no", no),
        ("out_refund_no", out_refund_no),
        ("total_fee", "300"),
        ("refund_fee", "100"),
    ];
    body(h, &refund, &key(h), h.v2_sign_type())
}

fn tls_sim_options() -> SimulatorOptions {
    SimulatorOptions {
        tls: true,
        refund_delay: None,
        ..fast(SignType::Md5)
    }
}

#[tokio::test]
async fn tls_secapi_refund_with_the_merchant_certificate_is_created() {
    let h = sim(tls_sim_options()).await;
    h.set_notify_behavior(NotifyBehavior::Drop);
    let xml = paid_order_and_refund_xml(&h, "tls-ok", "tls-ok-r").await;
    let (status, f) = post_xml(&h, "/secapi/pay/refund", xml, &merchant_client(&h)).await;
    assert_eq!(status, 200);
    assert_eq!(f["return_code"], "SUCCESS", "{f:?}");
    assert_eq!(f["result_code"], "SUCCESS", "{f:?}");
    let refund = h.refund("tls-ok-r").expect("the refund exists");
    assert_eq!(refund.out_trade_no, "tls-ok");
    assert_eq!(refund.refund, 100);
}

#[tokio::test]
async fn tls_secapi_refund_without_a_client_certificate_is_403_and_creates_nothing() {
    let h = sim(tls_sim_options()).await;
    h.set_notify_behavior(NotifyBehavior::Drop);
    let xml = paid_order_and_refund_xml(&h, "tls-none", "tls-none-r").await;
    let (status, f) = post_xml(&h, "/secapi/pay/refund", xml, &client(&h, None)).await;
    assert_eq!(status, 403);
    assert_eq!(f["return_code"], "FAIL");
    assert!(
        f["return_msg"].contains("client certificate required"),
        "{f:?}"
    );
    assert!(!f.contains_key("result_code"));
    assert!(h.refund("tls-none-r").is_none());
}

#[tokio::test]
async fn tls_a_client_certificate_of_another_ca_fails_and_creates_nothing() {
    let h = sim(tls_sim_options()).await;
    h.set_notify_behavior(NotifyBehavior::Drop);
    let xml = paid_order_and_refund_xml(&h, "tls-ca", "tls-ca-r").await;
    // Another CA, even under the simulator CA's name, issuing a certificate for the right CN.
    let (_, other_ca_key) = tls::other_ca();
    let (cert, cert_key) = tls::issue_client_cert(&other_ca_key, h.mchid());
    let result = try_post_xml(
        &h,
        "/secapi/pay/refund",
        xml,
        &client(&h, Some((&cert, &cert_key))),
    )
    .await;
    assert!(
        result.is_err(),
        "the handshake refuses it: {:?}",
        result.map(|r| r.status())
    );
    assert!(h.refund("tls-ca-r").is_none());
    // The same client fails on any route: the certificate is refused in the handshake.
    assert!(
        client(&h, Some((&cert, &cert_key)))
            .get(format!("{}/sim/stats", h.base_url()))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_a_simulator_ca_certificate_for_another_cn_is_403() {
    let h = sim(tls_sim_options()).await;
    h.set_notify_behavior(NotifyBehavior::Drop);
    let xml = paid_order_and_refund_xml(&h, "tls-cn", "tls-cn-r").await;
    let ca_key = &h.shared.tls.as_ref().expect("tls").ca_key_pem;
    let (cert, cert_key) = tls::issue_client_cert(ca_key, "1900000000");
    let other = client(&h, Some((&cert, &cert_key)));
    let (status, f) = post_xml(&h, "/secapi/pay/refund", xml.clone(), &other).await;
    assert_eq!(status, 403);
    assert_eq!(f["return_code"], "FAIL");
    assert!(f["return_msg"].contains("not the merchant's"), "{f:?}");
    assert!(h.refund("tls-cn-r").is_none());
    // The certificate itself is fine: other routes answer it.
    let (status, f) = post_xml(
        &h,
        "/pay/orderquery",
        body(&h, &[("out_trade_no", "tls-cn")], &key(&h), SignType::Md5),
        &other,
    )
    .await;
    assert_eq!((status, f["trade_state"].as_str()), (200, "SUCCESS"));
    // A certificate of the simulator CA for the mchid (not the one it made) is accepted.
    let (cert, cert_key) = tls::issue_client_cert(ca_key, h.mchid());
    let (status, f) = post_xml(
        &h,
        "/secapi/pay/refund",
        xml,
        &client(&h, Some((&cert, &cert_key))),
    )
    .await;
    assert_eq!((status, f["result_code"].as_str()), (200, "SUCCESS"));
    assert!(h.refund("tls-cn-r").is_some());
}

#[tokio::test]
async fn tls_other_routes_work_without_a_client_certificate() {
    let h = sim(tls_sim_options()).await;
    assert!(
        h.base_url().starts_with("https://127.0.0.1:"),
        "{}",
        h.base_url()
    );
    let anonymous = client(&h, None);
    let (status, f) = post_xml(
        &h,
        "/pay/orderquery",
        body(&h, &[("out_trade_no", "tls-nope")], &key(&h), SignType::Md5),
        &anonymous,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(f["return_code"], "SUCCESS", "{f:?}");
    assert_eq!(f["err_code"], "ORDERNOTEXIST");
    order(&h, "tls-q", "100", "http://127.0.0.1:9/notify/pay").await;
    let (_, f) = post_xml(
        &h,
        "/pay/orderquery",
        body(&h, &[("out_trade_no", "tls-q")], &key(&h), SignType::Md5),
        &anonymous,
    )
    .await;
    assert_eq!(f["trade_state"], "NOTPAY");
    // /v3 answers (401 without Authorization), /sim and login too.
    let r = anonymous
        .get(format!("{}/v3/certificates", h.base_url()))
        .send()
        .await
        .expect("v3 over TLS");
    assert_eq!(r.status(), 401);
    let creds: serde_json::Value = anonymous
        .get(format!("{}/sim/credentials", h.base_url()))
        .send()
        .await
        .expect("sim over TLS")
        .json()
        .await
        .expect("json");
    assert_eq!(creds["tls"], true);
    assert_eq!(creds["tls_root_ca_pem"].as_str(), h.tls_root_ca_pem());
    assert_eq!(
        creds["merchant_client_cert_pem"].as_str(),
        h.merchant_client_cert_pem()
    );
    let r = anonymous
        .get(format!("{}/sns/jscode2session", h.base_url()))
        .query(&[("appid", h.appid()), ("js_code", "nope")])
        .send()
        .await
        .expect("login over TLS");
    assert_eq!(r.status(), 200);
    // A client that does not trust the simulator CA cannot connect.
    assert!(
        reqwest::Client::builder()
            .tls_certs_only([])
            .build()
            .expect("client")
            .get(format!("{}/sim/stats", h.base_url()))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tls_material_is_only_there_with_tls_and_matches_the_merchant() {
    let h = sim(fast(SignType::Md5)).await;
    assert!(h.base_url().starts_with("http://"));
    assert!(h.tls_root_ca_pem().is_none());
    assert!(h.merchant_client_cert_pem().is_none());
    assert!(h.merchant_client_key_pem().is_none());
    // Without TLS nothing checks a certificate: /secapi/ goes through.
    h.set_notify_behavior(NotifyBehavior::Drop);
    let xml = paid_order_and_refund_xml(&h, "plain", "plain-r").await;
    let (status, f) = post_xml(&h, "/secapi/pay/refund", xml, &reqwest::Client::new()).await;
    assert_eq!((status, f["result_code"].as_str()), (200, "SUCCESS"));
    assert!(h.refund("plain-r").is_some());

    let h = sim(tls_sim_options()).await;
    let cert = h.merchant_client_cert_pem().expect("cert");
    let info = wxpay_core::keys::parse_certificate_pem(cert).expect("X.509");
    assert_eq!(info.serial_no, h.merchant_serial());
    // Over the merchant API key, as WeChat's apiclient_cert.pem is.
    let merchant_spki = rustls::pki_types::SubjectPublicKeyInfoDer::from_pem_slice(
        h.credentials().merchant_public_key_pem.as_bytes(),
    )
    .expect("SPKI");
    assert_eq!(info.spki_der, merchant_spki.as_ref());
    assert_eq!(
        h.merchant_client_key_pem(),
        Some(h.merchant_private_key_pem())
    );
    let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).expect("der");
    assert_eq!(tls::common_name(&der).as_deref(), Some(h.mchid()));
    let ca = h.tls_root_ca_pem().expect("CA");
    let ca_der = rustls::pki_types::CertificateDer::from_pem_slice(ca.as_bytes()).expect("der");
    assert_eq!(
        tls::common_name(&ca_der).as_deref(),
        Some(tls::CA_COMMON_NAME)
    );
}

#[tokio::test]
async fn tls_server_stops_on_shutdown_and_on_drop() {
    let h = sim(tls_sim_options()).await;
    let (url, c) = (format!("{}/sim/stats", h.base_url()), client(&h, None));
    assert!(c.get(&url).send().await.expect("up").status().is_success());
    tokio::time::timeout(WAIT, h.shutdown())
        .await
        .expect("graceful shutdown finishes");
    assert!(reqwest::Client::new().get(&url).send().await.is_err());

    let h = sim(tls_sim_options()).await;
    let addr = h.local_addr();
    let c = client(&h, None);
    let url = format!("{}/sim/stats", h.base_url());
    assert!(c.get(&url).send().await.expect("up").status().is_success());
    drop(h);
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
