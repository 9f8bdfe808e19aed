//! The switch from platform certificates to the WeChat Pay public key (WeChat Pay
//! "如何从平台证书切换成微信支付公钥"), against a simulator migrating like WeChat: answers signed
//! with the key the request's `Wechatpay-Serial` names, notifications under the certificate
//! until the merchant applies the switch, under the public key id after. Combined mode
//! (`WXPAY_PLATFORM_MODE=combined`) accepts both; either single mode refuses one of them.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::time::Duration;

use common::{Backend, Env, events};
use reqwest::StatusCode;
use wxpay_host::PlatformKeySource;
use wxpay_simulator::{NotifyBehavior, SimulatorOptions};

on_both!(
    combined_mode_accepts_both_kinds_through_the_switch,
    certificate_mode_refuses_public_key_notifications,
    public_key_mode_refuses_certificate_notifications,
    combined_mode_starts_when_certificates_are_gone,
    doctor_passes_in_combined_mode,
);

/// A simulator in the middle of the switch: certificate and public key both exist.
fn migrating() -> SimulatorOptions {
    SimulatorOptions {
        public_key_migration: true,
        ..common::fast_sim()
    }
}

/// The `(requested, signed)` serials of the last answer to a path starting with `prefix`.
fn last_answer(env: &Env, prefix: &str) -> (Option<String>, String) {
    let a = env
        .sim
        .answer_serials()
        .into_iter()
        .rev()
        .find(|a| a.path.starts_with(prefix))
        .unwrap_or_else(|| panic!("no answer to {prefix}"));
    (a.requested, a.signed)
}

/// Waits for the simulator's deliveries and returns `(attempt, status)` of each.
async fn deliveries(env: &Env) -> Vec<(usize, Option<u16>)> {
    env.sim.wait_idle(Duration::from_secs(20)).await.unwrap();
    env.sim
        .delivery_attempts()
        .iter()
        .map(|a| (a.attempt, a.status))
        .collect()
}

async fn combined_mode_accepts_both_kinds_through_the_switch(b: Backend) {
    let env = Env::with(b, migrating()).await;
    let id = env.sim.platform_public_key_id().unwrap().to_owned();
    let cert = env.sim.platform_certificate_serial().unwrap().to_owned();
    // Start-up: the public key configured, the certificate downloaded.
    assert_eq!(env.config.platform.mode(), "combined");
    let wechat = &env.state().wechat;
    assert!(wechat.certificate_mode());
    assert_eq!(wechat.public_key_id(), Some(id.as_str()));
    let mut held = wechat.with_platform_keys(wxpay_core::keys::PlatformKeys::serials);
    held.sort();
    let mut expected = vec![id.clone(), cert.clone()];
    expected.sort();
    assert_eq!(held, expected);
    // Requests name the public key, so WeChat signs the answers with it (the certificate
    // download included: the public key was known before it).
    assert_eq!(wechat.request_serial().as_deref(), Some(id.as_str()));
    assert_eq!(
        last_answer(&env, "/v3/certificates"),
        (Some(id.clone()), id.clone())
    );

    // Before the switch: the answer to the order signed with the public key, the
    // notification with the certificate. Both verify; the payment is applied once.
    env.ordered("o_mig", "MIGRATE001", 100).await;
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/jsapi"),
        (Some(id.clone()), id.clone())
    );
    assert_eq!(env.sim.current_platform_serial(), cert);
    env.sim.set_notify_behavior(NotifyBehavior::Duplicate(2));
    env.sim.pay("MIGRATE001").unwrap();
    assert_eq!(
        deliveries(&env).await,
        vec![(0, Some(204)), (0, Some(204))],
        "both copies accepted at their first attempt"
    );
    let order = env.wait_state("MIGRATE001", "PAID", 10).await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");

    // WeChat's gray switch may still sign answers with the certificate whatever the request
    // names: those verify too.
    env.sim.answers_follow_request(false).unwrap();
    let paid = env.state().wechat.query_order("MIGRATE001").await.unwrap();
    assert_eq!(paid.trade_state, "SUCCESS");
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/out-trade-no/MIGRATE001"),
        (Some(id.clone()), cert.clone())
    );
    env.ordered("o_mig", "MIGRATE002", 200).await;
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/jsapi"),
        (Some(id.clone()), cert.clone())
    );

    // The merchant applies the switch: notifications now come under the public key id.
    assert_eq!(env.sim.switch_to_public_key().unwrap(), id);
    env.sim.answers_follow_request(true).unwrap();
    assert_eq!(env.sim.current_platform_serial(), id);
    env.sim.pay("MIGRATE002").unwrap();
    assert_eq!(
        deliveries(&env).await[2..],
        [(0, Some(204)), (0, Some(204))],
        "both copies accepted at their first attempt"
    );
    let order = env.wait_state("MIGRATE002", "PAID", 10).await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    // A late copy of the first notification, re-signed by WeChat under the public key: the
    // same payment, not applied again.
    let (h, body) = env.craft_notification(
        "EV-MIGRATE001-late",
        "TRANSACTION.SUCCESS",
        "transaction",
        &env.transaction(
            "MIGRATE001",
            "o_mig",
            100,
            paid.transaction_id.as_deref().unwrap(),
        ),
    );
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{v}");
    let order = env.admin_order("MIGRATE001").await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    // Answers under the public key after the switch, requested or not.
    env.sim.answers_follow_request(false).unwrap();
    env.state().wechat.query_order("MIGRATE002").await.unwrap();
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/out-trade-no/MIGRATE002"),
        (Some(id.clone()), id.clone())
    );
    env.finish().await;
}

/// Certificate mode alone: a notification under the public key id is an unknown serial (401,
/// WeChat retries), even after a certificate refresh — the switch would lose payments.
async fn certificate_mode_refuses_public_key_notifications(b: Backend) {
    let env = Env::with_config(b, migrating(), false, |c| {
        c.platform = PlatformKeySource::Certificates;
    })
    .await;
    let cert = env.sim.platform_certificate_serial().unwrap().to_owned();
    assert_eq!(env.state().wechat.public_key_id(), None);
    env.ordered("o_cert", "CERTONLY01", 100).await;
    // No public key configured: requests name the certificate, answers come under it.
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/jsapi"),
        (Some(cert.clone()), cert.clone())
    );
    env.sim.switch_to_public_key().unwrap();
    let (h, body) = env.craft_notification(
        "EV-CERTONLY01",
        "TRANSACTION.SUCCESS",
        "transaction",
        &env.transaction("CERTONLY01", "o_cert", 100, "4200000000000000000000000001"),
    );
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_ne!(env.admin_order("CERTONLY01").await["state"], "PAID");
    env.finish().await;
}

/// Public-key mode alone, too early: a notification still under the certificate serial is
/// refused (401), and public-key mode downloads no certificate to learn it.
async fn public_key_mode_refuses_certificate_notifications(b: Backend) {
    let env = Env::with_config(b, migrating(), false, |c| {
        if let Some((id, pem)) = c.platform.public_key() {
            c.platform = PlatformKeySource::PublicKey {
                id: id.to_owned(),
                pem: pem.to_owned(),
            };
        }
    })
    .await;
    let id = env.sim.platform_public_key_id().unwrap().to_owned();
    assert_eq!(env.config.platform.mode(), "public_key");
    assert!(!env.state().wechat.certificate_mode());
    // Answers follow the request's public key id, so requests work…
    env.ordered("o_pk", "PKONLY0001", 100).await;
    assert_eq!(
        last_answer(&env, "/v3/pay/transactions/jsapi"),
        (Some(id.clone()), id)
    );
    // …but the notification is still signed with the certificate.
    let (h, body) = env.craft_notification(
        "EV-PKONLY0001",
        "TRANSACTION.SUCCESS",
        "transaction",
        &env.transaction("PKONLY0001", "o_pk", 100, "4200000000000000000000000002"),
    );
    let (s, v) = env.send_notification("/notify/pay", &h, body).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{v}");
    assert_ne!(env.admin_order("PKONLY0001").await["state"], "PAID");
    env.finish().await;
}

/// Combined mode against a merchant WeChat has moved fully (no certificates: 404) still starts
/// and works on the public key; the next step is `public_key`.
async fn combined_mode_starts_when_certificates_are_gone(b: Backend) {
    let env = Env::with_config(
        b,
        SimulatorOptions {
            public_key_mode: true,
            ..common::fast_sim()
        },
        false,
        |c| {
            if let Some((id, pem)) = c.platform.public_key() {
                c.platform = PlatformKeySource::Combined {
                    id: id.to_owned(),
                    pem: pem.to_owned(),
                };
            }
        },
    )
    .await;
    assert_eq!(env.config.platform.mode(), "combined");
    assert_eq!(env.state().wechat.platform_key_count(), 1);
    env.ordered("o_gone", "GONE000001", 100).await;
    env.sim.pay("GONE000001").unwrap();
    let order = env.wait_state("GONE000001", "PAID", 10).await;
    assert_eq!(events(&order, "notify_paid"), 1, "{order}");
    let (s, v) = env.get("/readyz", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    env.finish().await;
}

/// A bad `WXPAY_PLATFORM_MODE` stops `serve` with an error naming it; `combined` without the
/// public key names what is missing.
#[test]
fn bad_platform_mode_is_a_start_up_error() {
    for (mode, expect) in [
        ("both", "WXPAY_PLATFORM_MODE"),
        ("combined", "WXPAY_PLATFORM_PUBLIC_KEY_ID"),
    ] {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_wxpay-host"));
        for (k, _) in std::env::vars() {
            if k.starts_with("WXPAY_") {
                cmd.env_remove(k);
            }
        }
        let out = cmd
            .arg("serve")
            .env("WXPAY_PLATFORM_MODE", mode)
            .output()
            .expect("runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{mode}: {stderr}");
        assert!(
            stderr.contains("WXPAY_PLATFORM_MODE") && stderr.contains(expect),
            "{mode}: {stderr}"
        );
    }
}

/// `wxpay-host doctor` in combined mode: the public key id and the certificates both check.
async fn doctor_passes_in_combined_mode(b: Backend) {
    let env = Env::with(b, migrating()).await;
    let mut config = env.config.clone();
    config.notify_url = "https://pay.example.com/wx".into();
    let r = wxpay_host::doctor::run(&config, &wxpay_host::config::DoctorConfig::default()).await;
    assert!(r.passed(), "{r}");
    let line = r
        .check(wxpay_host::doctor::names::PLATFORM_KEYS)
        .expect("platform keys line");
    let text = format!("{r}");
    let cert = env.sim.platform_certificate_serial().unwrap();
    assert!(
        text.contains("combined mode") && text.contains(cert),
        "{line:?}\n{text}"
    );
    env.finish().await;
}
