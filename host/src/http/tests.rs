//! Router tests with `oneshot`: no network, no WeChat.
#![allow(clippy::unwrap_used)]

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt as _;

use super::*;
use crate::config::Config;
use crate::config::{PlatformKeySource, Secret};

const MERCHANT_KEY: &str = include_str!("../../../tests/vectors/keys/merchant_private_key.pem");
const PLATFORM_PUB: &str = include_str!("../../../tests/vectors/keys/platform_public_key.pem");

async fn state() -> AppState {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).unwrap();
    let dir = std::env::temp_dir().join(format!("wxpay-unit-{}", hex::encode(b)));
    std::fs::create_dir_all(&dir).unwrap();
    let config = Config {
        pay_api: crate::config::PayApi::V3,
        api_ca_pem: None,
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: format!("sqlite://{}", dir.join("u.db").display()).into(),
        appid: "wx_unit".into(),
        appsecret: Secret::new("s"),
        mchid: "1900000001".into(),
        merchant_serial: "ABC".into(),
        merchant_key_pem: Secret::new(MERCHANT_KEY),
        api_v3_key: Secret::new("0123456789abcdef0123456789abcdef"),
        platform: PlatformKeySource::PublicKey {
            id: "PUB_KEY_ID_0001".into(),
            pem: PLATFORM_PUB.into(),
        },
        notify_url: "http://127.0.0.1:9".into(),
        admin_token: Secret::new("unit-admin-token-0000000000000000"),
        // Nothing listens there: no test here may reach WeChat.
        api_base: "http://127.0.0.1:9".into(),
        login_base: "http://127.0.0.1:9".into(),
        order_expire: std::time::Duration::from_secs(60),
        session_ttl: std::time::Duration::from_secs(60),
        reconcile_interval: std::time::Duration::from_secs(60),
        reconcile_after: std::time::Duration::from_secs(60),
        cert_refresh_interval: std::time::Duration::from_secs(60),
        http_timeout: std::time::Duration::from_millis(200),
        upstream_retries: 0,
        body_limit: 1024,
        recorded_payments: 32_768,
        edge: crate::config::Edge::default(),
        data_key: None,
    };
    AppState::new(config).await.unwrap()
}

/// Sends `req` to the router that serves its path (admin or public), like the two listeners.
async fn call(s: &AppState, req: Request<Body>) -> (StatusCode, Value) {
    let path = req.uri().path();
    let admin = path.starts_with("/admin") || path.starts_with("/metrics");
    call_on(s, req, admin).await
}

async fn call_on(s: &AppState, req: Request<Body>, admin: bool) -> (StatusCode, Value) {
    let edge = Edge::new(s);
    let router = if admin {
        admin_app(s.clone(), edge)
    } else {
        public_app(s.clone(), edge)
    };
    let resp = router.oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn routes_answer_clear_errors() {
    let s = state().await;
    let get = |uri: &str| Request::get(uri).body(Body::empty()).unwrap();
    assert_eq!(
        call(&s, get("/healthz")).await,
        (StatusCode::OK, json!({"status":"ok"}))
    );
    let (st, v) = call(&s, get("/api/orders/ORDER00001")).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert_eq!(v["error"]["code"], "unauthorized");
    let bad_json = Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from("{"))
        .unwrap();
    let (st, v) = call(&s, bad_json).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json"))
    );
    let huge = Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from(vec![b' '; 4096]))
        .unwrap();
    assert_eq!(call(&s, huge).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    let notify = Request::post("/notify/pay").body(Body::from("{}")).unwrap();
    let (st, v) = call(&s, notify).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("FAIL"))
    );
    let admin = Request::get("/admin/orders/ORDER00001")
        .header("authorization", "Bearer unit-admin-token-0000000000000000")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, admin).await.0, StatusCode::NOT_FOUND);
    let wrong = Request::get("/admin/orders/ORDER00001")
        .header("authorization", "Bearer unit-admin-token-0000000000000001")
        .body(Body::empty())
        .unwrap();
    assert_eq!(call(&s, wrong).await.0, StatusCode::UNAUTHORIZED);
    // An unreachable WeChat is a 503 with no detail.
    let login = Request::post("/api/login")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"code":"abc"}"#))
        .unwrap();
    let (st, v) = call(&s, login).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert!(!v.to_string().contains("127.0.0.1"), "{v}");
}

#[tokio::test]
async fn internal_detail_is_not_sent() {
    let resp = AppError::Internal("password=hunter2 at db".into()).into_response();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = to_bytes(resp.into_body(), 1 << 16).await.unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v,
        json!({"error":{"code":"internal","message":"internal error"}})
    );
}

fn admin_post(uri: &str, body: Value) -> Request<Body> {
    Request::post(uri)
        .header("authorization", "Bearer unit-admin-token-0000000000000000")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn fields_are_checked_with_wechat_rules_before_anything_else() {
    let s = state().await;
    let user = crate::store::User {
        openid: "o_unit".into(),
        unionid: None,
        session_key: Secret::new("k"),
    };
    s.store.upsert_user(&user, s.now()).await.unwrap();
    let create = |body: Value| admin_post("/admin/orders", body);
    let base = json!({ "openid": "o_unit", "amount": 100, "description": "tea" });
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    // 43 CJK characters are 129 bytes: over WeChat's 127-byte limit.
    for (body, field) in [
        (with("description", json!("商".repeat(43))), "description"),
        (with("attach", json!("")), "attach"),
        (with("attach", json!("é".repeat(65))), "attach"),
        (with("out_trade_no", json!("bad no")), "out_trade_no"),
        (with("amount", json!(0)), "amount"),
        (with("amount", json!(10_000_000_001_i64)), "amount"),
        (with("expire_in", json!(0)), "expire_in"),
    ] {
        let (st, v) = call(&s, create(body)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{field}: {v}");
        assert!(
            v["error"]["message"].as_str().unwrap().starts_with(field),
            "{field}: {v}"
        );
    }
    let (st, v) = call(&s, create(with("openid", json!("o_nobody")))).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unknown_openid"))
    );
    let ok = with("out_trade_no", json!("UNIT000001"));
    let (st, v) = call(&s, create(ok.clone())).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (st, _) = call(&s, create(ok)).await;
    assert_eq!(st, StatusCode::CONFLICT);
    // State rules answer 409 with a plain message.
    let (st, v) = call(
        &s,
        admin_post("/admin/orders/UNIT000001/accept", Value::Null),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(v["error"]["message"], "order is CREATED, not REVIEW");
    let (st, v) = call(
        &s,
        admin_post("/admin/orders/UNIT000001/refund", json!({ "amount": 1 })),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    // Closing an order never placed at WeChat needs no upstream call.
    let (st, v) = call(
        &s,
        admin_post("/admin/orders/UNIT000001/close", Value::Null),
    )
    .await;
    assert_eq!(
        (st, v["state"].as_str()),
        (StatusCode::OK, Some("CLOSED")),
        "{v}"
    );
    let (st, _) = call(
        &s,
        admin_post("/admin/orders/NOSUCH0001/accept", Value::Null),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn back_office_is_not_on_the_public_listener() {
    let s = state().await;
    for (method, uri) in [
        ("GET", "/admin/orders/UNIT000001"),
        ("POST", "/admin/orders"),
        ("POST", "/admin/orders/UNIT000001/refund"),
        ("GET", "/metrics"),
    ] {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", "Bearer unit-admin-token-0000000000000000")
            .body(Body::empty())
            .unwrap();
        let (st, _) = call_on(&s, req, false).await;
        assert_eq!(
            st,
            StatusCode::NOT_FOUND,
            "{method} {uri} on the public router"
        );
    }
    // And the mini-program's API is not on the admin listener.
    let req = Request::post("/api/login").body(Body::empty()).unwrap();
    assert_eq!(call_on(&s, req, true).await.0, StatusCode::NOT_FOUND);
    // Readiness: the database answers and a platform key is held (public-key mode).
    let req = Request::get("/readyz").body(Body::empty()).unwrap();
    let (st, v) = call_on(&s, req, false).await;
    assert_eq!(
        (st, v["status"].as_str()),
        (StatusCode::OK, Some("ready")),
        "{v}"
    );
    s.store.close().await;
    let req = Request::get("/readyz").body(Body::empty()).unwrap();
    let (st, v) = call_on(&s, req, false).await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["reasons"][0], "database unreachable");
}

#[tokio::test]
async fn openapi_document_describes_every_route_on_the_admin_listener_only() {
    let s = state().await;
    let get = || Request::get("/openapi.json").body(Body::empty()).unwrap();
    let (status, doc) = call_on(&s, get(), true).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/login", "post"),
        ("/api/orders/{out_trade_no}", "get"),
        ("/api/orders/{out_trade_no}/pay", "post"),
        ("/api/orders/{out_trade_no}/sync", "post"),
        ("/api/user/decrypt", "post"),
        ("/notify/pay", "post"),
        ("/notify/refund", "post"),
        ("/admin/orders", "post"),
        ("/admin/orders/{out_trade_no}", "get"),
        ("/admin/orders/{out_trade_no}/close", "post"),
        ("/admin/orders/{out_trade_no}/refund", "post"),
        ("/admin/orders/{out_trade_no}/accept", "post"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths[path][method].is_object(),
            "{method} {path} missing from {:?}",
            paths.keys()
        );
    }
    assert_eq!(paths.len(), 16, "{:?}", paths.keys());
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "OrderView",
        "AdminOrderView",
        "PayParams",
        "ErrorBody",
        "Refund",
    ] {
        assert!(schemas.contains_key(name), "schema {name} missing");
    }
    assert_eq!(
        schemas["OrderView"]["properties"]["state"]["$ref"],
        "#/components/schemas/OrderState"
    );
    assert_eq!(
        schemas["OrderState"]["enum"].as_array().map(Vec::len),
        Some(crate::domain::OrderState::ALL.len())
    );
    // Not on the internet-facing listener.
    let (status, _) = call_on(&s, get(), false).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Any JSON value, nested a few levels, with the field names the bodies use so that decoding
/// gets past the first key.
fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let key = prop_oneof![
        Just("code".to_owned()),
        Just("openid".to_owned()),
        Just("amount".to_owned()),
        Just("description".to_owned()),
        Just("attach".to_owned()),
        Just("out_trade_no".to_owned()),
        Just("out_refund_no".to_owned()),
        Just("expire_in".to_owned()),
        Just("reason".to_owned()),
        Just("encryptedData".to_owned()),
        Just("iv".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        Just(Value::from(1)),
        Just(Value::from(10_000_000_000_i64)),
        Just(Value::from("o_fuzz_user")),
        Just(Value::from("FUZZ000001")),
        ".{0,140}".prop_map(Value::from),
        "[A-Za-z0-9+/=]{0,64}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map(key.clone(), inner, 0..7)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The request-body parsers of every route that takes a body, under arbitrary bytes and
/// arbitrary JSON: never a panic, never a 500 (an internal error would mean a body got past
/// validation into storage or a service it breaks), and every refusal is the documented JSON.
#[test]
fn request_bodies_never_break_a_route() {
    use proptest::prelude::*;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (s, user_token) = rt.block_on(async {
        let s = state().await;
        let now = s.now();
        let user = crate::store::User {
            openid: "o_fuzz_user".into(),
            unionid: None,
            session_key: Secret::new(
                s.data_key
                    .seal(&Secret::new("tiihtNczf5v6AKRyjwEUhQ=="))
                    .unwrap(),
            ),
        };
        s.store.upsert_user(&user, now).await.unwrap();
        let token = "fuzz-session-token-0001";
        s.store
            .create_session(&token_hash(token), "o_fuzz_user", now + 86_400, now)
            .await
            .unwrap();
        (s, token)
    });
    let routes: &[(&str, bool)] = &[
        ("/api/login", false),
        ("/api/user/decrypt", false),
        ("/api/orders/FUZZ000001/pay", false),
        ("/api/orders/FUZZ000001/sync", false),
        ("/notify/pay", false),
        ("/notify/refund", false),
        ("/admin/orders", true),
        ("/admin/orders/FUZZ000001/refund", true),
        ("/admin/orders/FUZZ000001/close", true),
    ];
    let body = prop_oneof![
        json_value().prop_map(|v| v.to_string().into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..1_500),
    ];
    let content_type = prop_oneof![
        Just("application/json"),
        Just("application/json; charset=utf-8"),
        Just("text/plain"),
        Just(""),
    ];
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(1_500));
    runner
        .run(
            &(0..routes.len(), body, content_type),
            |(i, body, content_type)| {
                let (path, admin) = routes[i];
                let mut req = Request::post(path);
                if !content_type.is_empty() {
                    req = req.header("content-type", content_type);
                }
                let bearer = if admin {
                    "unit-admin-token-0000000000000000"
                } else {
                    user_token
                };
                let req = req
                    .header("authorization", format!("Bearer {bearer}"))
                    .body(Body::from(body))
                    .unwrap();
                let (status, answer) = rt.block_on(call_on(&s, req, admin));
                prop_assert!(
                    status != StatusCode::INTERNAL_SERVER_ERROR,
                    "{path}: 500 {answer}"
                );
                if !status.is_success() {
                    let documented = if path.starts_with("/notify/") {
                        answer["code"] == "FAIL" && answer["message"].is_string()
                    } else {
                        answer["error"]["code"].is_string()
                            && answer["error"]["message"].is_string()
                    };
                    prop_assert!(documented, "{path}: {status} {answer}");
                }
                Ok(())
            },
        )
        .unwrap();
}
