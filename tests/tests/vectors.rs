//! Known-answer vector runner: every case of every file in `$WXPAY_VECTORS_DIR` (default
//! `tests/vectors`) through every RSA provider compiled in.

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use wxpay_core::provider::{CryptoProvider, all_providers};
use wxpay_core::v2::{self, ApiV2Key, SignType};
use wxpay_core::v3::{self, ApiV3Key, WechatpayHeaders};
use wxpay_core::{Error, MerchantSigner, PlatformKeys, Result};
use wxpay_tests::{
    KNOWN_FILES, faulty_vectors_copy, fixtures_dir, runner_contract_dir, vector_files, vectors_dir,
};

type Rng = rand_core::UnwrapErr<getrandom::SysRng>;

fn rng() -> Rng {
    rand_core::UnwrapErr(getrandom::SysRng)
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector field {key:?} missing or not a string"))
}

fn outcome<T>(r: Result<T>) -> (String, Option<T>) {
    match r {
        Ok(v) => ("ok".to_owned(), Some(v)),
        Err(e) => (e.code().to_owned(), None),
    }
}

struct Ctx<'a> {
    dir: &'a Path,
    file: &'a Value,
    provider: &'static dyn CryptoProvider,
}

impl Ctx<'_> {
    fn key_pem(&self, name: &str) -> String {
        let file = self.file["keys"][name]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}.pem"));
        std::fs::read_to_string(self.dir.join("keys").join(&file))
            .unwrap_or_else(|e| panic!("key file {file}: {e}"))
    }

    /// The case's APIv3 key, decrypting through this context's provider (where it has AES-GCM).
    fn api_v3_key(&self, case: &Value) -> Result<ApiV3Key> {
        ApiV3Key::new(s(case, "api_v3_key")).map(|k| k.with_provider(self.provider))
    }

    fn signer(&self, mchid: &str, serial: &str) -> MerchantSigner {
        MerchantSigner::from_pem(
            self.provider,
            &self.key_pem("merchant_private_key"),
            mchid,
            serial,
        )
        .expect("merchant key parses")
    }

    /// Platform keys from `keys.platform_serials` (serial → file); certificate files are
    /// inserted as certificates (checking that the serial is the certificate's own), others as
    /// public keys.
    fn platform_keys(&self) -> PlatformKeys {
        let mut keys = PlatformKeys::new();
        let serials = self.file["keys"]["platform_serials"]
            .as_object()
            .expect("keys.platform_serials");
        for (serial, file) in serials {
            let file = file.as_str().expect("file name");
            let pem = std::fs::read_to_string(self.dir.join("keys").join(file)).expect("key file");
            if pem.contains("BEGIN CERTIFICATE") {
                let got = keys
                    .insert_certificate_pem(self.provider, &pem)
                    .expect("cert");
                assert_eq!(&got, serial, "certificate serial of {file}");
            } else {
                keys.insert_public_key_pem(self.provider, serial, &pem)
                    .expect("public key");
            }
        }
        keys
    }
}

fn headers(case: &Value) -> Result<WechatpayHeaders> {
    let h = case["headers"].as_object().expect("headers object");
    WechatpayHeaders::from_pairs(
        h.iter()
            .map(|(k, v)| (k.as_str(), v.as_str().expect("header value"))),
    )
}

fn params(case: &Value, key: &str) -> BTreeMap<String, String> {
    case[key]
        .as_object()
        .expect("params object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().expect("string value").to_owned()))
        .collect()
}

/// Runs one case; returns a description of the mismatch, if any.
fn run_case(op: &str, ctx: &Ctx<'_>, case: &Value) -> std::result::Result<(), String> {
    // `v3_authorization` cases carry `expected_signature`/`expected_header` instead.
    let expected = case.get("expected").and_then(Value::as_str).unwrap_or("ok");
    let mut rng = rng();
    let (got, detail): (String, String) = match op {
        "v2_sign" => {
            let t: SignType = s(case, "sign_type")
                .parse()
                .map_err(|e: Error| e.to_string())?;
            let signed = v2::sign(&params(case, "params"), &ApiV2Key::new(s(case, "key")), t);
            if signed.string_to_sign != s(case, "string_to_sign") {
                return Err(format!("string_to_sign {:?}", signed.string_to_sign));
            }
            // A verify round trip in both hex cases.
            let mut p = params(case, "params");
            p.insert("sign".into(), expected.to_ascii_lowercase());
            v2::verify(&p, &ApiV2Key::new(s(case, "key")), t).map_err(|e| e.to_string())?;
            (signed.sign, String::new())
        }
        "v2_notify" => {
            let t: SignType = s(case, "sign_type")
                .parse()
                .map_err(|e: Error| e.to_string())?;
            let (code, fields) = outcome(v2::verify_notification(
                s(case, "xml"),
                &ApiV2Key::new(s(case, "key")),
                t,
            ));
            if let Some(f) = fields
                && f != params(case, "fields")
            {
                return Err(format!("fields {f:?}"));
            }
            (code, String::new())
        }
        "v2_refund_req_info" => {
            let (code, pt) = outcome(v2::decrypt_req_info(
                s(case, "req_info"),
                &ApiV2Key::new(s(case, "key")),
            ));
            if let Some(pt) = pt {
                if pt != s(case, "plaintext") {
                    return Err(format!("plaintext {pt:?}"));
                }
                // Parsed only when the case says what it parses to: a plaintext is just text.
                if case.get("fields").is_some() {
                    let fields = v2::parse_xml(&pt).map_err(|e| format!("parse: {e}"))?;
                    if fields != params(case, "fields") {
                        return Err(format!("fields {fields:?}"));
                    }
                }
            }
            (code, String::new())
        }
        "v3_pay_sign" => {
            assert_eq!(s(case, "sign_type"), "RSA");
            let signer = ctx.signer("1900009191", "SERIAL");
            let prepay = s(case, "package")
                .strip_prefix("prepay_id=")
                .expect("package prefix");
            let r = v3::pay_sign(
                &signer,
                &mut rng,
                s(case, "app_id"),
                s(case, "time_stamp"),
                s(case, "nonce_str"),
                prepay,
            )
            .map_err(|e| e.to_string())?;
            if r.message() != s(case, "message") || r.package != s(case, "package") {
                return Err(format!("message {:?}", r.message()));
            }
            (r.pay_sign, String::new())
        }
        "v3_authorization" => {
            let signer = ctx.signer(s(case, "mchid"), s(case, "serial_no"));
            let a = v3::authorization(
                &signer,
                &mut rng,
                s(case, "method"),
                s(case, "url"),
                s(case, "timestamp"),
                s(case, "nonce_str"),
                s(case, "body"),
            )
            .map_err(|e| e.to_string())?;
            if a.message != s(case, "message") || a.signature != s(case, "expected_signature") {
                return Err(format!("message/signature {a:?}"));
            }
            if a.header != s(case, "expected_header") {
                return Err(format!("header {:?}", a.header));
            }
            ("ok".into(), String::new())
        }
        "v3_response" => {
            let keys = ctx.platform_keys();
            let now = case["now"].as_u64().expect("now");
            let r = headers(case)
                .and_then(|h| v3::verify_response(&keys, &h, s(case, "body").as_bytes(), now));
            (outcome(r).0, String::new())
        }
        "v3_notification" => {
            let keys = ctx.platform_keys();
            let api_key = ApiV3Key::new(
                case.get("api_v3_key")
                    .and_then(Value::as_str)
                    .unwrap_or_else(|| s(ctx.file, "api_v3_key")),
            )
            .expect("api v3 key")
            .with_provider(ctx.provider);
            let now = case["now"].as_u64().expect("now");
            let r = headers(case).and_then(|h| {
                v3::verify_notification(&keys, &api_key, &h, s(case, "body").as_bytes(), now)
            });
            let probe = matches!(&r, Err(e) if e.is_probe());
            let (code, n) = outcome(r);
            if let Some(n) = n {
                if n.plaintext != s(case, "resource_plaintext") {
                    return Err(format!("plaintext {:?}", n.plaintext));
                }
                if n.resource.original_type == "transaction" {
                    n.transaction()
                        .map_err(|e| format!("typed transaction: {e}"))?;
                }
            }
            if case["name"].as_str().is_some_and(|n| n.contains("probe")) && !probe {
                return Err("probe not recognised as a probe".into());
            }
            (code, String::new())
        }
        "v3_decrypt" => {
            let r = ctx.api_v3_key(case).and_then(|k| {
                wxpay_core::aead::decrypt(
                    &k,
                    s(case, "nonce"),
                    s(case, "associated_data"),
                    s(case, "ciphertext"),
                )
            });
            let (code, pt) = outcome(r);
            if let Some(pt) = pt
                && Some(pt.as_str()) != case["plaintext"].as_str()
            {
                return Err(format!("plaintext {pt:?}"));
            }
            (code, String::new())
        }
        "v3_certificates" => {
            let r = ctx
                .api_v3_key(case)
                .and_then(|k| v3::decrypt_certificates(&k, s(case, "body").as_bytes()));
            let (code, certs) = outcome(r);
            if let Some(certs) = certs {
                let want = case["certificates"].as_array().expect("certificates");
                if certs.len() != want.len() {
                    return Err(format!("{} certificates", certs.len()));
                }
                for (c, w) in certs.iter().zip(want) {
                    if c.serial_no != s(w, "serial_no") || c.pem != s(w, "pem") {
                        return Err(format!("certificate {}", c.serial_no));
                    }
                    // The downloaded certificate must be usable as a platform key.
                    PlatformKeys::new()
                        .insert_certificate_pem(ctx.provider, &c.pem)
                        .map_err(|e| e.to_string())?;
                }
            }
            (code, String::new())
        }
        "rsa_oaep" => {
            let signer = ctx.signer("1900009191", "SERIAL");
            let (code, pt) = outcome(signer.decrypt_oaep(&mut rng, s(case, "ciphertext")));
            if let Some(pt) = &pt
                && Some(pt.as_str()) != case["plaintext"].as_str()
            {
                return Err(format!("plaintext {pt:?}"));
            }
            // Round trip: encrypt to the merchant public key, decrypt again.
            if let Some(pt) = case["plaintext"].as_str() {
                let public = wxpay_core::PublicKey::from_pem(
                    ctx.provider,
                    &ctx.key_pem("merchant_public_key"),
                )
                .expect("merchant public key");
                let ct = public
                    .encrypt_oaep(&mut rng, pt)
                    .map_err(|e| e.to_string())?;
                let back = signer
                    .decrypt_oaep(&mut rng, &ct)
                    .map_err(|e| e.to_string())?;
                if back != pt {
                    return Err("OAEP round trip".into());
                }
            }
            (code, String::new())
        }
        other => return Err(format!("no runner for {other}")),
    };
    if got == expected {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {expected:?} {detail}"))
    }
}

/// Runs every file of `dir`; returns (runs, failures). Unknown files are failures.
fn run_dir(dir: &Path) -> (usize, Vec<String>) {
    let files = vector_files(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut failures = Vec::new();
    let mut total = 0usize;
    if files.is_empty() {
        failures.push(format!("no vector files in {}", dir.display()));
    }
    for (stem, path) in &files {
        if !KNOWN_FILES.contains(&stem.as_str()) {
            failures.push(format!("unknown vector file {}", path.display()));
            continue;
        }
        let text = std::fs::read_to_string(path).expect("read vector file");
        let file: Value = serde_json::from_str(&text).expect("vector file is JSON");
        let cases = file["cases"].as_array().expect("cases array");
        let mut ran = 0usize;
        for provider in all_providers() {
            let ctx = Ctx {
                dir,
                file: &file,
                provider,
            };
            for case in cases {
                ran += 1;
                if let Err(e) = run_case(stem, &ctx, case) {
                    failures.push(format!(
                        "{stem} / {} / {}: {e}",
                        s(case, "name"),
                        provider.name()
                    ));
                }
            }
        }
        println!(
            "{stem}: {} cases x {} providers = {ran} runs",
            cases.len(),
            all_providers().len()
        );
        total += ran;
    }
    (total, failures)
}

#[test]
fn every_vector_through_every_provider() {
    let dir = vectors_dir();
    let (total, failures) = run_dir(&dir);
    println!("vectors: {total} runs from {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 0);
}

/// The runner itself must fail on a wrong expectation and on a file it does not know.
#[test]
fn runner_reports_a_flipped_vector_and_an_unknown_file() {
    let tmp = faulty_vectors_copy(&fixtures_dir(), "native");
    let (_, failures) = run_dir(&tmp);
    std::fs::remove_dir_all(&tmp).ok();
    assert!(
        failures.iter().any(|f| f.contains("paySign 0")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("unknown vector file")),
        "{failures:?}"
    );
    // only the flipped case (once per provider) and the unknown file
    assert_eq!(failures.len(), all_providers().len() + 1, "{failures:?}");
}

/// `req_info` plaintext is compared as the case says: as text, and parsed only for `fields`.
#[test]
fn runner_follows_the_req_info_contract() {
    let (total, failures) = run_dir(&runner_contract_dir());
    assert_eq!(total, 3 * all_providers().len());
    assert_eq!(failures.len(), all_providers().len(), "{failures:?}");
    assert!(
        failures.iter().all(|f| f.contains("/ wrong fields /")),
        "{failures:?}"
    );
}

#[test]
fn project_copy_is_identical_to_shared_vectors() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors");
    if !shared.is_dir() {
        println!("../shared/vectors not present; nothing to compare");
        return;
    }
    let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors");
    let mut compared = 0;
    for sub in ["", "keys"] {
        for entry in std::fs::read_dir(shared.join(sub)).expect("read shared") {
            let p = entry.expect("entry").path();
            if p.is_file() {
                let name = p.file_name().expect("name");
                let a = std::fs::read(&p).expect("shared file");
                let b = std::fs::read(ours.join(sub).join(name))
                    .unwrap_or_else(|_| panic!("tests/vectors lacks {}", p.display()));
                assert!(
                    a == b,
                    "tests/vectors/{sub}/{name:?} differs from ../shared/vectors"
                );
                compared += 1;
            }
        }
    }
    println!("{compared} files identical to ../shared/vectors");
}
