//! The APIv2 flow end to end (`WXPAY_PAY_API=v2`), on SQLite and PostgreSQL: a host speaking
//! XML to the simulator over HTTPS, refunds over mutual TLS with the merchant API certificate,
//! the XML notifications through the same state machine as APIv3.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ADMIN, Backend, Env, events};
use reqwest::StatusCode;
use serde_json::{Value, json};
use wxpay_core::v2::{ApiV2Key, SignType, signed_xml};
use wxpay_simulator::{NotifyBehavior, V2SignType};

on_both!(
    v2_pay_notification_flow,
    v2_hmac_sha256_flow_refuses_a_downgrade,
    v2_sync_and_close_use_orderquery_and_closeorder,
    v2_refund_over_mutual_tls_and_req_info_notification,
    v2_refund_without_the_client_certificate_changes_nothing,
    v2_a_wrong_key_is_reported_and_changes_nothing,
);

const SUCCESS_REPLY: &str = "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>";

/// What a payment notification says.
struct Paid<'a> {
    no: &'a str,
    openid: &'a str,
    total: i64,
    txid: &'a str,
}

/// A payment notification as WeChat sends it, signed with `key` / `sign_type` (and naming
/// `claimed` as its `sign_type`, if any).
fn pay_xml(
    env: &Env,
    key: &str,
    (sign_type, claimed): (SignType, Option<SignType>),
    p: &Paid<'_>,
) -> String {
    let Paid {
        no,
        openid,
        total,
        txid,
    } = *p;
    let mut f: BTreeMap<String, String> = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("result_code", "SUCCESS"),
        ("appid", env.sim.appid()),
        ("mch_id", env.sim.mchid()),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("openid", openid),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("fee_type", "CNY"),
        ("transaction_id", txid),
        ("out_trade_no", no),
        ("time_end", "20261201120000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    f.insert("total_fee".into(), total.to_string());
    f.insert("cash_fee".into(), total.to_string());
    if let Some(t) = claimed {
        f.insert("sign_type".into(), t.as_str().into());
    }
    signed_xml(&f, &ApiV2Key::new(key), sign_type).unwrap().xml
}

async fn post_xml(env: &Env, path: &str, body: String) -> (StatusCode, String) {
    let resp = env
        .http
        .post(env.public_url(path))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/xml"),
        "APIv2 notifications are answered in XML"
    );
    (status, resp.text().await.unwrap())
}

fn is_fail(body: &str) -> bool {
    body.contains("<return_code><![CDATA[FAIL]]></return_code>")
}

/// The pay parameters WeChat's client would accept (the simulator's check of `paySign`).
async fn client_accepts(env: &Env, params: &Value, openid: &str) -> Value {
    let mut check = params.clone();
    check["openid"] = json!(openid);
    env.sim_http()
        .post(format!("{}/sim/request-payment/check", env.sim.base_url()))
        .json(&check)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn v2_pay_notification_flow(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |_| {}).await;
    let (_, params) = env.ordered("o_v2", "V2PAY00001", 1999).await;
    assert_eq!(params["signType"], "MD5", "{params}");
    assert_eq!(params["appId"], env.sim.appid());
    assert!(
        params["package"]
            .as_str()
            .unwrap()
            .starts_with("prepay_id="),
        "{params}"
    );
    assert_eq!(
        client_accepts(&env, &params, "o_v2").await["ok"],
        true,
        "{params}"
    );
    // A paySign for other parameters is refused by the client check (the check can fail).
    let mut forged = params.clone();
    forged["nonceStr"] = json!("another-nonce");
    assert_ne!(client_accepts(&env, &forged, "o_v2").await["ok"], true);

    // The payer pays; the simulator's XML notification makes the order PAID once.
    env.sim.pay("V2PAY00001").unwrap();
    let order = env.wait_state("V2PAY00001", "PAID", 10).await;
    assert_eq!(order["paid_amount"], 1999, "{order}");
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    let txid = order["transaction_id"].as_str().unwrap().to_owned();
    env.sim
        .wait_for_deliveries(1, Duration::from_secs(10))
        .await
        .unwrap();

    // The same notification again: SUCCESS, nothing changes.
    let key = env.sim.api_v2_key().to_owned();
    let again = pay_xml(
        &env,
        &key,
        (SignType::Md5, None),
        &Paid {
            no: "V2PAY00001",
            openid: "o_v2",
            total: 1999,
            txid: &txid,
        },
    );
    let (s, body) = post_xml(&env, "/notify/pay", again).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, SUCCESS_REPLY));
    let after = env.admin_order("V2PAY00001").await;
    assert_eq!(events(&after, "notify_paid"), 1, "{after}");
    assert_eq!(
        after["events"], order["events"],
        "a duplicate changes nothing"
    );

    // A bad signature, and an unknown order: FAIL, no state change.
    let bad = pay_xml(
        &env,
        &"x".repeat(32),
        (SignType::Md5, None),
        &Paid {
            no: "V2PAY00002",
            openid: "o_v2",
            total: 1,
            txid: "42",
        },
    );
    let (s, body) = post_xml(&env, "/notify/pay", bad).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(is_fail(&body), "{body}");
    let unknown = pay_xml(
        &env,
        &key,
        (SignType::Md5, None),
        &Paid {
            no: "V2NOSUCH01",
            openid: "o_v2",
            total: 1,
            txid: "43",
        },
    );
    let (s, body) = post_xml(&env, "/notify/pay", unknown).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(is_fail(&body), "{body}");
    // Not XML at all.
    let (s, body) = post_xml(&env, "/notify/pay", "{\"id\":\"x\"}".into()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(is_fail(&body), "{body}");
    // Over the body limit: refused from its announced length, in XML too.
    let (s, body) = post_xml(&env, "/notify/pay", "x".repeat(70_000)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_fail(&body), "{body}");

    // An authentic payment that does not match the order (amount) goes to review, once.
    env.create_order("o_v2", "V2PAY00003", 500, 1800).await;
    let wrong = pay_xml(
        &env,
        &key,
        (SignType::Md5, None),
        &Paid {
            no: "V2PAY00003",
            openid: "o_v2",
            total: 400,
            txid: "4200009",
        },
    );
    let (s, body) = post_xml(&env, "/notify/pay", wrong).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, SUCCESS_REPLY));
    assert_eq!(env.admin_order("V2PAY00003").await["state"], "REVIEW");
    // Another payer's openid is not this order's payment either.
    env.create_order("o_v2", "V2PAY00004", 500, 1800).await;
    let other = pay_xml(
        &env,
        &key,
        (SignType::Md5, None),
        &Paid {
            no: "V2PAY00004",
            openid: "o_x",
            total: 500,
            txid: "4200010",
        },
    );
    post_xml(&env, "/notify/pay", other).await;
    assert_eq!(env.admin_order("V2PAY00004").await["state"], "REVIEW");
    env.finish().await;
}

async fn v2_hmac_sha256_flow_refuses_a_downgrade(b: Backend) {
    let env = Env::v2(b, V2SignType::HmacSha256, false, |_| {}).await;
    let (_, params) = env.ordered("o_v2h", "V2HMAC0001", 300).await;
    assert_eq!(params["signType"], "HMAC-SHA256", "{params}");
    assert_eq!(
        client_accepts(&env, &params, "o_v2h").await["ok"],
        true,
        "{params}"
    );
    let key = env.sim.api_v2_key().to_owned();
    // Correctly signed with MD5 and claiming MD5: refused, the merchant uses HMAC-SHA256.
    let md5 = pay_xml(
        &env,
        &key,
        (SignType::Md5, Some(SignType::Md5)),
        &Paid {
            no: "V2HMAC0001",
            openid: "o_v2h",
            total: 300,
            txid: "4200001",
        },
    );
    let (s, body) = post_xml(&env, "/notify/pay", md5).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(is_fail(&body), "{body}");
    assert_eq!(env.admin_order("V2HMAC0001").await["state"], "CREATED");
    env.sim.pay("V2HMAC0001").unwrap();
    let order = env.wait_state("V2HMAC0001", "PAID", 10).await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    env.finish().await;
}

async fn v2_sync_and_close_use_orderquery_and_closeorder(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |_| {}).await;
    let (token, _) = env.ordered("o_v2s", "V2SYNC0001", 990).await;
    env.sim.set_notify_behavior(NotifyBehavior::Drop);
    env.sim.pay("V2SYNC0001").unwrap();
    let queries = env.sim.query_count("V2SYNC0001");
    let (s, o) = env
        .post("/api/orders/V2SYNC0001/sync", Some(&token), Value::Null)
        .await;
    assert_eq!(
        (s, o["state"].as_str()),
        (StatusCode::OK, Some("PAID")),
        "{o}"
    );
    assert_eq!(env.sim.query_count("V2SYNC0001"), queries + 1);
    let order = env.admin_order("V2SYNC0001").await;
    assert_eq!(events(&order, "reconciled_paid"), 1, "{order}");
    assert_eq!(order["paid_amount"], 990);

    // Closing an unpaid order closes it at WeChat (closeorder) and here.
    env.ordered("o_v2s", "V2SYNC0002", 100).await;
    let (s, o) = env
        .post("/admin/orders/V2SYNC0002/close", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(
        (s, o["state"].as_str()),
        (StatusCode::OK, Some("CLOSED")),
        "{o}"
    );
    let at_wechat = env.sim.order("V2SYNC0002").unwrap();
    assert_eq!(
        at_wechat.trade_state,
        wxpay_simulator::TradeState::Closed,
        "closed at WeChat too"
    );
    // A paid order cannot be closed: WeChat's verified ORDERPAID is read as APIv3's.
    env.ordered("o_v2s", "V2SYNC0003", 100).await;
    env.sim.pay("V2SYNC0003").unwrap();
    let (s, o) = env
        .post("/admin/orders/V2SYNC0003/close", Some(ADMIN), Value::Null)
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{o}");
    assert_eq!(env.admin_order("V2SYNC0003").await["state"], "PAID");
    env.finish().await;
}

async fn v2_refund_over_mutual_tls_and_req_info_notification(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |_| {}).await;
    env.ordered("o_v2r", "V2REFD0001", 1000).await;
    env.sim.pay("V2REFD0001").unwrap();
    env.wait_state("V2REFD0001", "PAID", 10).await;
    let (s, r) = env
        .post(
            "/admin/orders/V2REFD0001/refund",
            Some(ADMIN),
            json!({ "amount": 400, "reason": "v2 test", "out_refund_no": "V2RF000001" }),
        )
        .await;
    assert_eq!(s, StatusCode::ACCEPTED, "{r}");
    assert_eq!(r["state"], "PROCESSING", "accepted over mutual TLS: {r}");
    assert!(env.sim.refund("V2RF000001").is_some(), "created at WeChat");
    // The simulator completes it and sends the encrypted req_info notification.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let order = loop {
        let o = env.admin_order("V2REFD0001").await;
        // The back-office view is three reads (order, events, refunds): wait for all of them.
        if o["refunds"][0]["state"] == "SUCCESS" && o["refunded"] == 400 {
            break o;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refund never SUCCESS: {o}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(order["refunded"], 400, "{order}");
    assert_eq!(events(&order, "refund_succeeded"), 1, "{order}");
    // A req_info that does not decrypt under our key: FAIL, nothing changes.
    let forged = format!(
        "<xml><return_code>SUCCESS</return_code><appid>{}</appid><mch_id>{}</mch_id>\
         <nonce_str>x</nonce_str><req_info>{}</req_info></xml>",
        env.sim.appid(),
        env.sim.mchid(),
        "q".repeat(64)
    );
    let (s, body) = post_xml(&env, "/notify/refund", forged).await;
    assert!(
        matches!(s, StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST),
        "{s}"
    );
    assert!(is_fail(&body), "{body}");
    assert_eq!(
        env.admin_order("V2REFD0001").await["events"],
        order["events"]
    );
    env.finish().await;
}

async fn v2_refund_without_the_client_certificate_changes_nothing(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |c| {
        if let wxpay_host::config::PayApi::V2(v2) = &mut c.pay_api {
            v2.client_cert_pem = None;
            v2.client_key_pem = None;
        }
    })
    .await;
    env.ordered("o_v2n", "V2NOCE0001", 1000).await;
    env.sim.pay("V2NOCE0001").unwrap();
    env.wait_state("V2NOCE0001", "PAID", 10).await;
    let (s, r) = env
        .post(
            "/admin/orders/V2NOCE0001/refund",
            Some(ADMIN),
            json!({ "amount": 100, "out_refund_no": "V2RF000002" }),
        )
        .await;
    // Recorded, outcome unknown: resubmitted later, nothing refunded, nothing at WeChat.
    assert_eq!(
        (s, r["state"].as_str()),
        (StatusCode::ACCEPTED, Some("PENDING")),
        "{r}"
    );
    assert!(env.sim.refund("V2RF000002").is_none());
    assert_eq!(env.admin_order("V2NOCE0001").await["refunded"], 0);
    env.finish().await;
}

async fn v2_a_wrong_key_is_reported_and_changes_nothing(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |c| {
        if let wxpay_host::config::PayApi::V2(v2) = &mut c.pay_api {
            v2.key = wxpay_host::config::Secret::new("0123456789abcdef0123456789abcdef");
        }
    })
    .await;
    let token = env.login("o_v2k").await;
    env.create_order("o_v2k", "V2KEY00001", 100, 1800).await;
    let (s, e) = env
        .post("/api/orders/V2KEY00001/pay", Some(&token), Value::Null)
        .await;
    // WeChat's unsigned "签名错误" is reported, not believed.
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{e}");
    assert_eq!(e["error"]["wechat_verified"], false, "{e}");
    let order = env.admin_order("V2KEY00001").await;
    assert_eq!(order["state"], "CREATED");
    assert!(order["prepay_id"].is_null(), "{order}");
    env.finish().await;
}
