//! `wxpay-host doctor` and `verify-notification` against the simulator, on SQLite and
//! PostgreSQL: a good configuration passes every check, each kind of mistake fails its own line.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::process::Command;

use common::{Backend, Env};
use wxpay_host::config::DoctorConfig;
use wxpay_host::doctor::{self, Report, Status, names};
use wxpay_host::{Config, PlatformKeySource, Secret};
use wxpay_simulator::SimulatorOptions;

on_both!(
    doctor_passes_in_both_modes,
    doctor_names_each_mistake,
    doctor_binary_exit_status
);

fn key(name: &str) -> String {
    std::fs::read_to_string(common::vector_keys_dir().join(name)).unwrap()
}

/// The host's configuration with a notify URL WeChat could reach (the doctor only reads it).
fn live(env: &Env) -> Config {
    let mut c = env.config.clone();
    c.notify_url = "https://pay.example.com/wx".into();
    c
}

fn status(r: &Report, name: &str) -> Status {
    r.check(name)
        .unwrap_or_else(|| panic!("no {name} line:\n{r}"))
        .status
}

async fn doctor_passes_in_both_modes(b: Backend) {
    for public_key_mode in [false, true] {
        let env = Env::with(
            b,
            SimulatorOptions {
                public_key_mode,
                ..common::fast_sim()
            },
        )
        .await;
        let r = doctor::run(&live(&env), &DoctorConfig::default()).await;
        assert!(r.passed(), "public_key_mode={public_key_mode}:\n{r}");
        for name in [
            names::MERCHANT_KEY,
            names::API_V3_KEY,
            names::PLATFORM_KEYS,
            names::SIGNED_REQUEST,
            names::ANSWER_SIGNATURE,
            names::NOTIFY_URL,
            names::DATABASE,
        ] {
            assert_eq!(status(&r, name), Status::Pass, "{name}:\n{r}");
        }
        let text = r.to_string();
        assert!(text.contains("✓ signed request"), "{text}");
        assert!(text.ends_with("checks passed"), "{text}");
        env.finish().await;
    }
}

async fn doctor_names_each_mistake(b: Backend) {
    let env = Env::new(b).await;
    // A merchant key that is not the one of WXPAY_MERCHANT_SERIAL, and the host's own
    // http://127.0.0.1 notify URL.
    let mut c = env.config.clone();
    c.merchant_key_pem = Secret::new(key("platform_private_key.pem"));
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert!(!r.passed(), "{r}");
    let signed = r.check(names::SIGNED_REQUEST).unwrap();
    assert_eq!(signed.status, Status::Fail, "{r}");
    assert!(signed.detail.contains("SIGN_ERROR"), "{r}");
    assert!(
        signed
            .fix
            .as_deref()
            .unwrap()
            .contains("WXPAY_MERCHANT_KEY_FILE"),
        "{r}"
    );
    assert_eq!(status(&r, names::MERCHANT_KEY), Status::Pass, "it parses");
    assert_eq!(status(&r, names::NOTIFY_URL), Status::Fail, "{r}");
    assert!(r.to_string().contains("✗ notify URL"), "{r}");
    assert_eq!(status(&r, names::DATABASE), Status::Pass, "{r}");

    // A certificate that is not the merchant's: its serial differs from WXPAY_MERCHANT_SERIAL.
    let cert = DoctorConfig {
        merchant_cert_pem: Some(key("platform_cert.pem")),
    };
    let r = doctor::run(&live(&env), &cert).await;
    let line = r.check(names::MERCHANT_CERT).unwrap();
    assert_eq!(line.status, Status::Fail, "{r}");
    assert!(
        line.fix
            .as_deref()
            .unwrap()
            .contains("WXPAY_MERCHANT_SERIAL="),
        "{r}"
    );
    // Same serial, other key: not the certificate of the key.
    let serial = wxpay_core::keys::parse_certificate_pem(&key("platform_cert.pem"))
        .unwrap()
        .serial_no;
    let mut c = live(&env);
    c.merchant_serial = serial.clone();
    let r = doctor::run(&c, &cert).await;
    let line = r.check(names::MERCHANT_CERT).unwrap();
    assert_eq!(line.status, Status::Fail, "{r}");
    assert!(line.detail.contains("is not the certificate"), "{r}");
    // The key and the certificate issued together match.
    c.merchant_key_pem = Secret::new(key("platform_private_key.pem"));
    let r = doctor::run(&c, &cert).await;
    assert_eq!(status(&r, names::MERCHANT_CERT), Status::Pass, "{r}");

    // A malformed public key id; a database without migrations; a bad APIv3 key.
    let mut c = live(&env);
    c.platform = PlatformKeySource::PublicKey {
        id: "PUB_KEY_ID_abc".into(),
        pem: key("platform_public_key.pem"),
    };
    let (db, schema, dir) = common::fresh_db(b).await;
    c.database_url = db.as_str().into();
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert_eq!(status(&r, names::PLATFORM_KEYS), Status::Fail, "{r}");
    assert_eq!(status(&r, names::DATABASE), Status::Fail, "{r}");
    assert!(!r.passed());
    // The client needs a usable APIv3 key: the network checks are skipped, not passed.
    let mut c = live(&env);
    c.api_v3_key = Secret::new("short");
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert_eq!(status(&r, names::API_V3_KEY), Status::Fail, "{r}");
    assert_eq!(status(&r, names::SIGNED_REQUEST), Status::Skipped, "{r}");
    assert!(!r.passed());
    common::drop_db(schema.as_deref(), dir.as_deref()).await;
    env.finish().await;
}

/// `wxpay-host doctor` itself, configured through WXPAY_* variables: exit status 0 when all
/// pass, 1 otherwise; the same for `verify-notification` on a genuine and a tampered callback.
async fn doctor_binary_exit_status(b: Backend) {
    let env = Env::new(b).await;
    let dir = std::env::temp_dir().join(format!("wxpay-doctor-{}", env.addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = dir.join("apiclient_key.pem");
    std::fs::write(&key_file, env.config.merchant_key_pem.expose()).unwrap();
    let c = &env.config;
    let vars = [
        ("WXPAY_APPID", c.appid.clone()),
        ("WXPAY_APPSECRET", c.appsecret.expose().to_owned()),
        ("WXPAY_MCHID", c.mchid.clone()),
        ("WXPAY_MERCHANT_SERIAL", c.merchant_serial.clone()),
        ("WXPAY_MERCHANT_KEY_FILE", key_file.display().to_string()),
        ("WXPAY_API_V3_KEY", c.api_v3_key.expose().to_owned()),
        ("WXPAY_NOTIFY_URL", "https://pay.example.com".to_owned()),
        (
            "WXPAY_ADMIN_TOKEN",
            "doctor-test-admin-token-0123456789abcdef".to_owned(),
        ),
        ("WXPAY_API_BASE", c.api_base.clone()),
        ("WXPAY_LOGIN_BASE", c.login_base.clone()),
        ("WXPAY_DATABASE_URL", env.db_url.clone()),
    ];
    let run = |args: &[&str], notify: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxpay-host"));
        cmd.args(args)
            .env_remove("WXPAY_CONFIG")
            .env("RUST_LOG", "error");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        cmd.env("WXPAY_NOTIFY_URL", notify);
        cmd.output().unwrap()
    };
    let out = run(&["doctor"], "https://pay.example.com");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("✓ signed request"), "{stdout}");
    let out = run(&["doctor"], "http://pay.example.com");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("✗ notify URL"), "{stdout}");

    // A callback as the simulator signs it, saved the way an operator would capture it.
    let no = "DOCTORNT01";
    let plain = env.transaction(no, "o_doc", 100, "4200000000000000000000000001");
    let (headers, body) = env.craft_notification(
        "4f9b8b1a-0000-4000-8000-000000000001",
        "TRANSACTION.SUCCESS",
        "transaction",
        &plain,
    );
    let mut text = String::from("POST /notify/pay HTTP/1.1\n");
    for (k, v) in &headers {
        text.push_str(&format!("{k}: {v}\n"));
    }
    let headers_file = dir.join("headers.txt");
    std::fs::write(&headers_file, &text).unwrap();
    let body_file = dir.join("body.json");
    let hf = headers_file.display().to_string();
    let bf = body_file.display().to_string();
    let verify = |body: &[u8]| {
        std::fs::write(&body_file, body).unwrap();
        let out = run(
            &["verify-notification", "--headers", &hf, "--body", &bf],
            "https://pay.example.com",
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, stdout) = verify(&body);
    assert_eq!(code, Some(0), "{stdout}");
    for line in [
        "✓ headers",
        "✓ timestamp window",
        "✓ serial known",
        "✓ signature",
        "✓ decryption",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    assert!(stdout.contains(no), "{stdout}");
    // Tampered: one byte of the body changed.
    let mut tampered = body.clone();
    let i = tampered.iter().position(|&c| c == b'{').unwrap();
    tampered.insert(i + 1, b' ');
    let (code, stdout) = verify(&tampered);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("✗ signature"), "{stdout}");
    assert!(stdout.contains("· decryption"), "{stdout}");
    // A capture mistake the check names: a final newline added by an editor.
    let mut newline = body.clone();
    newline.push(b'\n');
    let (code, stdout) = verify(&newline);
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("ends with a newline"), "{stdout}");

    // In-process, the same checks on the parsed headers.
    let pairs = doctor::parse_header_lines(&text).unwrap();
    let r = doctor::verify_notification(&env.config, &pairs, &body).await;
    assert!(r.passed(), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
    env.finish().await;
}
