//! `wxpay-host doctor` and `verify-notification` against the simulator, on SQLite and
//! PostgreSQL: a good configuration passes every check, each kind of mistake fails its own line.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::{Backend, Env};
use wxpay_core::v2::{ApiV2Key, SignType, signed_xml};
use wxpay_host::config::{DoctorConfig, PayApi};
use wxpay_host::doctor::{self, Report, Status, names};
use wxpay_host::{Config, PlatformKeySource, Secret};
use wxpay_simulator::{SimulatorOptions, V2SignType};

on_both!(
    doctor_passes_in_both_modes,
    doctor_names_each_mistake,
    doctor_binary_exit_status,
    doctor_passes_in_v2_mode,
    doctor_names_v2_mistakes,
    verify_notification_in_v2_mode,
    verify_notification_v2_genuine_callbacks,
    doctor_binary_exit_status_v2,
);

/// An APIv2 key that is not the simulator's (32 bytes, so the configuration loads).
const OTHER_V2_KEY: &str = "0123456789abcdef0123456789abcdef";

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

/// The APIv2 settings of a v2 configuration.
fn v2_mut(c: &mut Config) -> &mut wxpay_host::config::ApiV2Settings {
    match &mut c.pay_api {
        PayApi::V2(v2) => v2,
        PayApi::V3 => panic!("not a v2 configuration"),
    }
}

/// The checks APIv2 mode runs, and the APIv3-only ones it skips.
const V2_PASSING: [&str; 6] = [
    names::API_V2_KEY,
    names::CLIENT_CERT,
    names::SIGNED_REQUEST,
    names::ANSWER_SIGNATURE,
    names::NOTIFY_URL,
    names::DATABASE,
];
const V2_SKIPPED: [&str; 3] = [names::MERCHANT_KEY, names::API_V3_KEY, names::PLATFORM_KEYS];

async fn doctor_passes_in_v2_mode(b: Backend) {
    for sign_type in [V2SignType::Md5, V2SignType::HmacSha256] {
        let env = Env::v2(b, sign_type, false, |_| {}).await;
        let c = live(&env);
        assert_eq!(c.api_v2().unwrap().sign_type, sign_type);
        let r = doctor::run(&c, &DoctorConfig::default()).await;
        assert!(r.passed(), "{sign_type}:\n{r}");
        for name in V2_PASSING {
            assert_eq!(status(&r, name), Status::Pass, "{sign_type} {name}:\n{r}");
        }
        for name in V2_SKIPPED {
            assert_eq!(
                status(&r, name),
                Status::Skipped,
                "{sign_type} {name}:\n{r}"
            );
        }
        assert!(r.check(names::MERCHANT_CERT).is_none(), "{r}");
        let key = r.check(names::API_V2_KEY).unwrap();
        assert!(key.detail.contains(sign_type.as_str()), "{r}");
        // ORDERNOTEXIST (as WeChat spells it) to a signed orderquery: the signature was accepted.
        let signed = r.check(names::SIGNED_REQUEST).unwrap();
        assert!(signed.detail.contains("ORDERNOTEXIST"), "{r}");
        let text = r.to_string();
        assert!(text.contains("✓ client certificate"), "{text}");
        assert!(text.ends_with("checks passed"), "{text}");
        env.finish().await;
    }
}

async fn doctor_names_v2_mistakes(b: Backend) {
    let env = Env::v2(b, V2SignType::Md5, false, |_| {}).await;

    // A wrong APIv2 key: WeChat's (unsigned) 签名错误, and the fix names the variables.
    let mut c = live(&env);
    v2_mut(&mut c).key = Secret::new(OTHER_V2_KEY);
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert!(!r.passed(), "{r}");
    let signed = r.check(names::SIGNED_REQUEST).unwrap();
    assert_eq!(signed.status, Status::Fail, "{r}");
    assert!(signed.detail.contains("签名错误"), "{r}");
    let fix = signed.fix.as_deref().unwrap();
    assert!(
        fix.contains("WXPAY_API_V2_KEY") && fix.contains("WXPAY_V2_SIGN_TYPE"),
        "{r}"
    );
    assert_eq!(status(&r, names::ANSWER_SIGNATURE), Status::Skipped, "{r}");
    // The other lines are unaffected.
    for name in [
        names::API_V2_KEY,
        names::CLIENT_CERT,
        names::NOTIFY_URL,
        names::DATABASE,
    ] {
        assert_eq!(status(&r, name), Status::Pass, "{name}:\n{r}");
    }

    // A key of the wrong length (a library caller; the WXPAY_* loader refuses it earlier).
    let mut c = live(&env);
    v2_mut(&mut c).key = Secret::new("short");
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert_eq!(status(&r, names::API_V2_KEY), Status::Fail, "{r}");

    // No client certificate: refunds would fail, the doctor says so (the query still works).
    let mut c = live(&env);
    let v2 = v2_mut(&mut c);
    v2.client_cert_pem = None;
    v2.client_key_pem = None;
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert!(!r.passed(), "{r}");
    let cert = r.check(names::CLIENT_CERT).unwrap();
    assert_eq!(cert.status, Status::Fail, "{r}");
    assert!(
        cert.fix
            .as_deref()
            .unwrap()
            .contains("WXPAY_V2_CLIENT_CERT_FILE"),
        "{r}"
    );
    assert_eq!(status(&r, names::SIGNED_REQUEST), Status::Pass, "{r}");
    // A client certificate that is not a PEM: the client cannot be built.
    let mut c = live(&env);
    v2_mut(&mut c).client_cert_pem = Some("not a certificate".into());
    let r = doctor::run(&c, &DoctorConfig::default()).await;
    assert_eq!(status(&r, names::CLIENT_CERT), Status::Fail, "{r}");
    assert_eq!(status(&r, names::SIGNED_REQUEST), Status::Skipped, "{r}");
    assert!(!r.passed(), "{r}");
    env.finish().await;

    // The merchant signs with HMAC-SHA256, the host is set to MD5: the simulator refuses an
    // MD5-signed request for that merchant (a downgrade) with 签名错误.
    let env = Env::v2(b, V2SignType::HmacSha256, false, |c| {
        v2_mut(c).sign_type = SignType::Md5;
    })
    .await;
    let r = doctor::run(&live(&env), &DoctorConfig::default()).await;
    assert!(!r.passed(), "{r}");
    let signed = r.check(names::SIGNED_REQUEST).unwrap();
    assert_eq!(signed.status, Status::Fail, "{r}");
    assert!(signed.detail.contains("签名错误"), "{r}");
    assert!(
        signed
            .fix
            .as_deref()
            .unwrap()
            .contains("WXPAY_V2_SIGN_TYPE"),
        "{r}"
    );
    env.finish().await;

    // The merchant signs with MD5, the host with HMAC-SHA256: the simulator, like WeChat,
    // takes the request's own sign_type, accepts it and answers signed with HMAC-SHA256, so
    // the query itself cannot tell. The doctor passes the query, and the payment notification
    // the simulator would send for such an order verifies too (it is signed with the
    // order's type).
    let env = Env::v2(b, V2SignType::Md5, false, |c| {
        v2_mut(c).sign_type = SignType::HmacSha256;
    })
    .await;
    let r = doctor::run(&live(&env), &DoctorConfig::default()).await;
    assert_eq!(status(&r, names::SIGNED_REQUEST), Status::Pass, "{r}");
    assert_eq!(status(&r, names::ANSWER_SIGNATURE), Status::Pass, "{r}");
    // But an MD5 notification (what the MD5 merchant's WeChat sends) does not verify under
    // the host's HMAC-SHA256: verify-notification names it.
    let key = env.sim.api_v2_key().to_owned();
    let md5 = pay_xml(&env, &key, SignType::Md5, None, "V2DOC00001");
    let r = doctor::verify_notification(&env.config, &[], md5.as_bytes()).await;
    assert_eq!(status(&r, names::SIGNATURE), Status::Fail, "{r}");
    assert!(
        r.check(names::SIGNATURE)
            .unwrap()
            .detail
            .contains("HMAC-SHA256"),
        "{r}"
    );
    env.finish().await;
}

/// A payment notification as WeChat sends it for `no`, signed with `key` / `sign_type`
/// (`claimed`: the `sign_type` field, if any).
fn pay_xml(
    env: &Env,
    key: &str,
    sign_type: SignType,
    claimed: Option<SignType>,
    no: &str,
) -> String {
    let mut f: BTreeMap<String, String> = [
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("result_code", "SUCCESS"),
        ("appid", env.sim.appid()),
        ("mch_id", env.sim.mchid()),
        ("nonce_str", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
        ("openid", "o_doc"),
        ("trade_type", "JSAPI"),
        ("bank_type", "OTHERS"),
        ("fee_type", "CNY"),
        ("transaction_id", "4200000000000000000000000042"),
        ("out_trade_no", no),
        ("time_end", "20261201120000"),
        ("total_fee", "100"),
        ("cash_fee", "100"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    if let Some(t) = claimed {
        f.insert("sign_type".into(), t.as_str().into());
    }
    signed_xml(&f, &ApiV2Key::new(key), sign_type).unwrap().xml
}

async fn verify_notification_in_v2_mode(b: Backend) {
    for sign_type in [V2SignType::Md5, V2SignType::HmacSha256] {
        let env = Env::v2(b, sign_type, false, |_| {}).await;
        let key = env.sim.api_v2_key().to_owned();
        let claimed = (sign_type == SignType::HmacSha256).then_some(sign_type);
        let body = pay_xml(&env, &key, sign_type, claimed, "V2DOC00002");
        let r = doctor::verify_notification(&env.config, &[], body.as_bytes()).await;
        assert!(r.passed(), "{sign_type}:\n{r}");
        let sig = r.check(names::SIGNATURE).unwrap();
        assert_eq!(sig.status, Status::Pass, "{r}");
        assert!(sig.detail.contains("V2DOC00002"), "{r}");
        assert!(sig.detail.contains(sign_type.as_str()), "{r}");
        for name in [
            names::HEADERS,
            names::TIMESTAMP,
            names::SERIAL,
            names::DECRYPTION,
        ] {
            assert_eq!(status(&r, name), Status::Skipped, "{name}:\n{r}");
        }
        // Headers are irrelevant in APIv2: the same verdict with some.
        let pairs = vec![("Content-Type".to_owned(), "text/xml".to_owned())];
        let r = doctor::verify_notification(&env.config, &pairs, body.as_bytes()).await;
        assert!(r.passed(), "{r}");

        // Tampered: the amount changed after signing.
        let tampered = body.replace("<total_fee><![CDATA[100]]>", "<total_fee><![CDATA[1]]>");
        let tampered = if tampered == body {
            body.replace("<total_fee>100</total_fee>", "<total_fee>1</total_fee>")
        } else {
            tampered
        };
        assert_ne!(tampered, body, "the amount is in the body: {body}");
        let r = doctor::verify_notification(&env.config, &[], tampered.as_bytes()).await;
        assert!(!r.passed(), "{r}");
        assert_eq!(status(&r, names::SIGNATURE), Status::Fail, "{r}");
        assert!(r.to_string().contains("✗ signature"), "{r}");
        // Signed with another key.
        let other = pay_xml(&env, OTHER_V2_KEY, sign_type, claimed, "V2DOC00002");
        let r = doctor::verify_notification(&env.config, &[], other.as_bytes()).await;
        assert_eq!(status(&r, names::SIGNATURE), Status::Fail, "{r}");
        assert!(
            r.check(names::SIGNATURE)
                .unwrap()
                .fix
                .as_deref()
                .unwrap()
                .contains("WXPAY_API_V2_KEY"),
            "{r}"
        );

        // A refund notification whose req_info does not decrypt under our key.
        let refund = format!(
            "<xml><return_code>SUCCESS</return_code><appid>{}</appid><mch_id>{}</mch_id>\
             <nonce_str>x</nonce_str><req_info>{}</req_info></xml>",
            env.sim.appid(),
            env.sim.mchid(),
            "q".repeat(64)
        );
        let r = doctor::verify_notification(&env.config, &[], refund.as_bytes()).await;
        assert!(!r.passed(), "{r}");
        assert_eq!(status(&r, names::DECRYPTION), Status::Fail, "{r}");
        assert_eq!(status(&r, names::SIGNATURE), Status::Skipped, "{r}");

        // Not XML at all (an APIv3 body saved by mistake).
        let r = doctor::verify_notification(&env.config, &[], b"{\"id\":\"x\"}").await;
        assert!(!r.passed(), "{r}");
        env.finish().await;
    }
}

/// `wxpay-host doctor` and `verify-notification` in v2 mode, configured through WXPAY_*
/// variables with the certificate files on disk: 0 when all pass, 1 with a wrong APIv2 key.
async fn doctor_binary_exit_status_v2(b: Backend) {
    let env = Env::v2(b, V2SignType::HmacSha256, false, |_| {}).await;
    let dir = std::env::temp_dir().join(format!("wxpay-doctor-v2-{}", env.addr.port()));
    std::fs::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let cert_file = write(
        "apiclient_cert.pem",
        env.sim.merchant_client_cert_pem().unwrap(),
    );
    let key_file = write(
        "apiclient_key.pem",
        env.sim.merchant_client_key_pem().unwrap(),
    );
    let ca_file = write("tls_ca.pem", env.sim.tls_root_ca_pem().unwrap());
    let c = &env.config;
    assert!(c.api_base.starts_with("https://"), "{}", c.api_base);
    let vars = [
        ("WXPAY_PAY_API", "v2".to_owned()),
        ("WXPAY_APPID", c.appid.clone()),
        ("WXPAY_APPSECRET", c.appsecret.expose().to_owned()),
        ("WXPAY_MCHID", c.mchid.clone()),
        ("WXPAY_V2_SIGN_TYPE", "HMAC-SHA256".to_owned()),
        ("WXPAY_V2_CLIENT_CERT_FILE", cert_file),
        ("WXPAY_V2_CLIENT_KEY_FILE", key_file),
        ("WXPAY_API_CA_FILE", ca_file),
        ("WXPAY_NOTIFY_URL", "https://pay.example.com".to_owned()),
        (
            "WXPAY_ADMIN_TOKEN",
            "doctor-test-admin-token-0123456789abcdef".to_owned(),
        ),
        ("WXPAY_API_BASE", c.api_base.clone()),
        ("WXPAY_LOGIN_BASE", c.login_base.clone()),
        ("WXPAY_DATABASE_URL", env.db_url.clone()),
    ];
    let run = |args: &[&str], v2_key: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_wxpay-host"));
        cmd.args(args)
            .env_remove("WXPAY_CONFIG")
            .env_remove("WXPAY_MERCHANT_KEY_FILE")
            .env_remove("WXPAY_MERCHANT_SERIAL")
            .env_remove("WXPAY_API_V3_KEY")
            .env("RUST_LOG", "error");
        for (k, v) in &vars {
            cmd.env(k, v);
        }
        cmd.env("WXPAY_API_V2_KEY", v2_key);
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let key = env.sim.api_v2_key().to_owned();
    let (code, stdout, stderr) = run(&["doctor"], &key);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for line in [
        "✓ APIv2 key",
        "✓ client certificate",
        "✓ signed request",
        "✓ answer signature",
        "· merchant key",
        "· APIv3 key",
        "· platform keys",
    ] {
        assert!(stdout.contains(line), "{line}: {stdout}");
    }
    let (code, stdout, stderr) = run(&["doctor"], OTHER_V2_KEY);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("✗ signed request"), "{stdout}");

    // verify-notification on a saved APIv2 callback: the headers file may be empty.
    let headers_file = write("headers.txt", "");
    let body = pay_xml(
        &env,
        &key,
        SignType::HmacSha256,
        Some(SignType::HmacSha256),
        "V2DOC00003",
    );
    let body_file = write("body.xml", &body);
    let args = [
        "verify-notification",
        "--headers",
        &headers_file,
        "--body",
        &body_file,
    ];
    let (code, stdout, stderr) = run(&args, &key);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("✓ signature"), "{stdout}");
    assert!(stdout.contains("V2DOC00003"), "{stdout}");
    let (code, stdout, stderr) = run(&args, OTHER_V2_KEY);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("✗ signature"), "{stdout}");
    let _ = std::fs::remove_dir_all(&dir);
    env.finish().await;
}

/// The callbacks the simulator really sends in v2 mode, captured on their way (the host's
/// notify URL points at a recorder): the payment notification's signature and the refund
/// notification's `req_info` both pass `verify_notification`.
async fn verify_notification_v2_genuine_callbacks(b: Backend) {
    use axum::extract::{Path, State};
    type Captured = tokio::sync::mpsc::UnboundedSender<(String, Vec<u8>)>;
    async fn record(
        State(tx): State<Captured>,
        Path(kind): Path<String>,
        body: axum::body::Bytes,
    ) -> &'static str {
        let _ = tx.send((kind, body.to_vec()));
        "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let recorder = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/notify/{kind}", axum::routing::post(record))
        .with_state(tx);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut next = async |kind: &str| {
        let (k, body) = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} notification"))
            .unwrap();
        assert_eq!(k, kind);
        body
    };

    let env = Env::v2(b, V2SignType::HmacSha256, false, |c| {
        c.notify_url = recorder
    })
    .await;
    env.ordered("o_docv2", "V2DOCREF01", 800).await;
    env.sim.pay("V2DOCREF01").unwrap();
    let pay = next("pay").await;
    let r = doctor::verify_notification(&env.config, &[], &pay).await;
    assert!(r.passed(), "{r}");
    assert!(
        r.check(names::SIGNATURE)
            .unwrap()
            .detail
            .contains("V2DOCREF01"),
        "{r}"
    );
    // Under another key the same callback does not verify.
    let mut other = env.config.clone();
    v2_mut(&mut other).key = Secret::new(OTHER_V2_KEY);
    let r = doctor::verify_notification(&other, &[], &pay).await;
    assert_eq!(status(&r, names::SIGNATURE), Status::Fail, "{r}");

    // The host learns of the payment (the callback never reached it), then refunds.
    let (s, body) = env.send_notification("/notify/pay", &[], pay).await;
    assert!(s.is_success(), "{s} {body}");
    env.wait_state("V2DOCREF01", "PAID", 10).await;
    let (s, v) = env
        .post(
            "/admin/orders/V2DOCREF01/refund",
            Some(common::ADMIN),
            serde_json::json!({ "amount": 300, "out_refund_no": "V2DOCRF001" }),
        )
        .await;
    assert!(s.is_success(), "{s} {v}");
    let refund = next("refund").await;
    let r = doctor::verify_notification(&env.config, &[], &refund).await;
    assert!(r.passed(), "{r}");
    let dec = r.check(names::DECRYPTION).unwrap();
    assert_eq!(dec.status, Status::Pass, "{r}");
    assert!(dec.detail.contains("V2DOCRF001"), "{r}");
    assert_eq!(status(&r, names::SIGNATURE), Status::Skipped, "{r}");
    let r = doctor::verify_notification(&other, &[], &refund).await;
    assert_eq!(status(&r, names::DECRYPTION), Status::Fail, "{r}");
    server.abort();
    env.finish().await;
}
