//! Criterion benchmarks of the hot paths, per provider, against bare OpenSSL in the same run.
//!
//! `cargo bench -p wxpay-core --features aws-lc`; `python3 scripts/bench_summary.py` turns the
//! results into ops/s and ratios to the OpenSSL baseline.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::sign::{Signer, Verifier};
use serde_json::Value;
use std::collections::BTreeMap;
use std::hint::black_box;
use wxpay_core::provider::all_providers;
use wxpay_core::v2::{self, ApiV2Key, SignType};
use wxpay_core::v3::{self, ApiV3Key, WechatpayHeaders};
use wxpay_core::{MerchantSigner, PlatformKeys};

const MERCHANT: &str = include_str!("../../tests/vectors/keys/merchant_private_key.pem");
const CERT: &str = include_str!("../../tests/vectors/keys/platform_cert.pem");
const NOTIFICATIONS: &str = include_str!("../../tests/vectors/v3_notification.json");
const RESPONSES: &str = include_str!("../../tests/vectors/v3_response.json");
const API_V3_KEY: &str = "abababababababababababababababab";

fn case(json: &str, i: usize) -> Value {
    let v: Value = serde_json::from_str(json).unwrap();
    v["cases"][i].clone()
}

fn headers(case: &Value) -> WechatpayHeaders {
    WechatpayHeaders::from_pairs(
        case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap())),
    )
    .unwrap()
}

fn benches(c: &mut Criterion) {
    let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
    let pay_msg = v3::pay_sign_message(
        "wxd678efh567hg6787",
        "1436213027",
        "LTLAPA35fRi2hj0gUisAgkya7T4JkffT",
        "prepay_id=wxd27f5e9749ce86b5799569ed4a7d771a",
    );
    let notif = case(NOTIFICATIONS, 0);
    let notif_headers = headers(&notif);
    let notif_body = notif["body"].as_str().unwrap().as_bytes().to_vec();
    let notif_now = notif["now"].as_u64().unwrap();
    let resp = case(RESPONSES, 0);
    let resp_headers = headers(&resp);
    let resp_body = resp["body"].as_str().unwrap().as_bytes().to_vec();
    let api_key = ApiV3Key::new(API_V3_KEY).unwrap();

    // Baseline: the bare primitives through OpenSSL.
    let ossl_key = PKey::private_key_from_pem(MERCHANT.as_bytes()).unwrap();
    let ossl_cert = openssl::x509::X509::from_pem(CERT.as_bytes()).unwrap();
    let ossl_pub = ossl_cert.public_key().unwrap();
    let verify_msg = v3::response_message(
        notif["headers"]["Wechatpay-Timestamp"].as_str().unwrap(),
        &notif_headers.nonce,
        &notif_body,
    );
    use base64::Engine as _;
    let verify_sig = base64::engine::general_purpose::STANDARD
        .decode(&notif_headers.signature)
        .unwrap();
    let mut g = c.benchmark_group("openssl");
    g.bench_function("rsa_sign", |b| {
        b.iter(|| {
            let mut s = Signer::new(MessageDigest::sha256(), &ossl_key).unwrap();
            s.update(pay_msg.as_bytes()).unwrap();
            black_box(s.sign_to_vec().unwrap())
        });
    });
    g.bench_function("rsa_verify", |b| {
        b.iter(|| {
            let mut v = Verifier::new(MessageDigest::sha256(), &ossl_pub).unwrap();
            v.update(&verify_msg).unwrap();
            assert!(v.verify(&verify_sig).unwrap());
        });
    });
    g.bench_function("md5", |b| {
        b.iter(|| {
            black_box(openssl::hash::hash(MessageDigest::md5(), pay_msg.as_bytes()).unwrap())
        });
    });
    g.finish();

    for p in all_providers() {
        let signer = MerchantSigner::from_pem(
            p,
            MERCHANT,
            "1900009191",
            "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C",
        )
        .unwrap();
        let mut keys = PlatformKeys::new();
        keys.insert_certificate_pem(p, CERT).unwrap();
        let api_key = api_key.clone().with_provider(p);
        let mut g = c.benchmark_group(p.name());
        g.bench_function("pay_sign", |b| {
            b.iter(|| {
                black_box(
                    v3::pay_sign(
                        &signer,
                        &mut rng,
                        "wxd678efh567hg6787",
                        "1436213027",
                        "LTLAPA35fRi2hj0gUisAgkya7T4JkffT",
                        "wxd27f5e9749ce86b5799569ed4a7d771a",
                    )
                    .unwrap(),
                )
            });
        });
        g.bench_function("authorization", |b| {
            b.iter(|| {
                black_box(
                    v3::authorization(
                        &signer,
                        &mut rng,
                        "POST",
                        "/v3/pay/transactions/jsapi",
                        "1565140765",
                        "iX6qWtVXyvXMqnKnFF2HinkrxwmttlVE",
                        r#"{"appid":"wxd678efh567hg6787","mchid":"1900009191"}"#,
                    )
                    .unwrap(),
                )
            });
        });
        g.bench_function("response_verify", |b| {
            b.iter(|| {
                v3::verify_response(&keys, &resp_headers, &resp_body, 1_614_739_000).unwrap()
            });
        });
        g.bench_function("notification_verify_decrypt", |b| {
            b.iter(|| {
                black_box(
                    v3::verify_notification(
                        &keys,
                        &api_key,
                        &notif_headers,
                        &notif_body,
                        notif_now,
                    )
                    .unwrap(),
                )
            });
        });
        g.finish();
    }

    let params: BTreeMap<String, String> = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    // Parts of notification_verify_decrypt, to see where time goes beyond the RSA verify.
    let body: Value = serde_json::from_slice(&notif_body).unwrap();
    let r = &body["resource"];
    let (nonce, aad, ct) = (
        r["nonce"].as_str().unwrap().to_owned(),
        r["associated_data"].as_str().unwrap().to_owned(),
        r["ciphertext"].as_str().unwrap().to_owned(),
    );
    let mut g = c.benchmark_group("parts");
    g.bench_function("aead_decrypt", |b| {
        b.iter(|| black_box(wxpay_core::aead::decrypt(&api_key, &nonce, &aad, &ct).unwrap()));
    });
    g.bench_function("base64_decode", |b| {
        b.iter(|| black_box(wxpay_core::b64::decode(&ct).unwrap()));
    });
    g.bench_function("json_envelope", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Value>(&notif_body).unwrap()));
    });
    g.finish();

    let v2key = ApiV2Key::new("192006250b4c09247ec02edce69f6a2d");
    c.bench_function("v2_md5_sign", |b| {
        b.iter(|| black_box(v2::sign(&params, &v2key, SignType::Md5)))
    });
}

criterion_group!(signing, benches);
criterion_main!(signing);
