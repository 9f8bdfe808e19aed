//! The universal C-ABI module (`wxpay-wasm --features c-abi`, see `wasm/README.md`) in
//! wasmtime: every case of every file in `$WXPAY_VECTORS_DIR` (default `tests/vectors`) through
//! the `.wasm`, compared with the expected results (which the native runner, `vectors.rs`,
//! checks the native core against), plus native-vs-wasm equality of the signatures.
//!
//! The module is built by `scripts/build-pkg.sh`; its path is `$WXPAY_CABI_WASM`, else
//! `$CARGO_TARGET_DIR/wxpay-cabi.wasm`, else `target/wxpay-cabi.wasm`. When the variable is
//! unset and no module is found the test says so and passes (a plain `cargo test` before any
//! wasm build); `scripts/test-pkg.sh` always sets it, so there a missing module fails.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use wasmtime::{Caller, Engine, Instance, Linker, Memory, Module, Store, TypedFunc};
use wxpay_tests::{
    KNOWN_FILES, faulty_vectors_copy, fixtures_dir, runner_contract_dir, vector_files, vectors_dir,
};

fn module_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WXPAY_CABI_WASM") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "WXPAY_CABI_WASM={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let p = target.join("wxpay-cabi.wasm");
    p.is_file().then_some(p)
}

/// One instance of the module and its three exports.
struct Wasm {
    store: Store<()>,
    instance: Instance,
    memory: Memory,
    alloc: TypedFunc<u32, u32>,
    free: TypedFunc<(u32, u32), ()>,
    call: TypedFunc<(u32, u32), u64>,
}

impl Wasm {
    fn new(engine: &Engine, module: &Module) -> Self {
        let mut linker = Linker::new(engine);
        linker
            .func_wrap(
                "wxpay_host",
                "random_get",
                |mut caller: Caller<'_, ()>, ptr: u32, len: u32| -> i32 {
                    let Some(wasmtime::Extern::Memory(mem)) = caller.get_export("memory") else {
                        return 1;
                    };
                    let mut buf = vec![0u8; len as usize];
                    if getrandom::fill(&mut buf).is_err() {
                        return 2;
                    }
                    match mem.write(&mut caller, ptr as usize, &buf) {
                        Ok(()) => 0,
                        Err(_) => 3,
                    }
                },
            )
            .expect("define random_get");
        let mut store = Store::new(engine, ());
        let instance: Instance = linker.instantiate(&mut store, module).expect("instantiate");
        let memory = instance
            .get_memory(&mut store, "memory")
            .expect("memory export");
        let alloc = instance
            .get_typed_func(&mut store, "wxpay_alloc")
            .expect("wxpay_alloc(i32) -> i32");
        let free = instance
            .get_typed_func(&mut store, "wxpay_free")
            .expect("wxpay_free(i32, i32)");
        let call = instance
            .get_typed_func(&mut store, "wxpay_call")
            .expect("wxpay_call(i32, i32) -> i64");
        Self {
            store,
            instance,
            memory,
            alloc,
            free,
            call,
        }
    }

    /// One JSON request: `Ok(value)` or `Err(code)`.
    fn call(&mut self, request: &Value) -> Result<Value, String> {
        let input = request.to_string().into_bytes();
        let len = u32::try_from(input.len()).expect("request fits in u32");
        let ptr = self.alloc.call(&mut self.store, len).expect("alloc");
        self.memory
            .write(&mut self.store, ptr as usize, &input)
            .expect("write request");
        let packed = self
            .call
            .call(&mut self.store, (ptr, len))
            .expect("wxpay_call traps");
        self.free
            .call(&mut self.store, (ptr, len))
            .expect("free request");
        let (out_ptr, out_len) = ((packed >> 32) as u32, packed as u32);
        let mut out = vec![0u8; out_len as usize];
        self.memory
            .read(&self.store, out_ptr as usize, &mut out)
            .expect("read response");
        self.free
            .call(&mut self.store, (out_ptr, out_len))
            .expect("free response");
        let response: Value = serde_json::from_slice(&out).expect("response is JSON");
        match (response.get("ok"), response.get("error")) {
            (Some(v), None) => Ok(v.clone()),
            (None, Some(e)) => Err(e["code"].as_str().expect("error code").to_owned()),
            _ => panic!("response is neither ok nor error: {response}"),
        }
    }

    fn ok(&mut self, request: &Value) -> Value {
        self.call(request)
            .unwrap_or_else(|code| panic!("{request}: {code}"))
    }
}

fn code<T>(r: Result<T, String>) -> (String, Option<T>) {
    match r {
        Ok(v) => ("ok".to_owned(), Some(v)),
        Err(c) => (c, None),
    }
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("vector field {key:?}"))
}

struct Ctx<'a> {
    dir: &'a Path,
    file: &'a Value,
}

impl Ctx<'_> {
    fn key_pem(&self, name: &str) -> String {
        let file = self.file["keys"][name]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("{name}.pem"));
        std::fs::read_to_string(self.dir.join("keys").join(&file)).expect("key file")
    }

    fn signer(&self, w: &mut Wasm, mchid: &str, serial: &str) -> Value {
        w.ok(
            &json!({"op": "merchant_signer.new", "pem": self.key_pem("merchant_private_key"),
            "mchid": mchid, "serial_no": serial}),
        )
    }

    fn platform_keys(&self, w: &mut Wasm) -> Value {
        let h = w.ok(&json!({"op": "platform_keys.new"}));
        let serials = self.file["keys"]["platform_serials"]
            .as_object()
            .expect("platform_serials");
        for (serial, file) in serials {
            let pem =
                std::fs::read_to_string(self.dir.join("keys").join(file.as_str().expect("name")))
                    .expect("key file");
            if pem.contains("BEGIN CERTIFICATE") {
                let got =
                    w.ok(&json!({"op": "platform_keys.add_certificate", "handle": h, "pem": pem}));
                assert_eq!(got, json!(serial));
            } else {
                w.ok(&json!({"op": "platform_keys.add_public_key", "handle": h, "key_id": serial, "pem": pem}));
            }
        }
        h
    }
}

/// Runs one case through the module; returns a description of the mismatch, if any.
#[allow(clippy::too_many_lines)] // one arm per vector file, like vectors.rs
fn run_case(op: &str, ctx: &Ctx<'_>, w: &mut Wasm, case: &Value) -> Result<(), String> {
    let expected = case.get("expected").and_then(Value::as_str).unwrap_or("ok");
    let got: String = match op {
        "v2_sign" => {
            let r = w.ok(
                &json!({"op": "v2.sign", "params": case["params"], "key": case["key"],
                "sign_type": case["sign_type"]}),
            );
            if r["string_to_sign"] != case["string_to_sign"] {
                return Err(format!("string_to_sign {}", r["string_to_sign"]));
            }
            let mut p = case["params"].clone();
            p["sign"] = json!(expected.to_ascii_lowercase());
            w.call(&json!({"op": "v2.verify", "params": p, "key": case["key"], "sign_type": case["sign_type"]}))?;
            r["sign"].as_str().unwrap_or_default().to_owned()
        }
        "v2_notify" => {
            let (c, fields) = code(
                w.call(&json!({"op": "v2.verify_notification", "xml": case["xml"],
                "key": case["key"], "sign_type": case["sign_type"]})),
            );
            if let Some(f) = fields
                && f != case["fields"]
            {
                return Err(format!("fields {f}"));
            }
            c
        }
        "v2_refund_req_info" => {
            let (c, pt) = code(w.call(
                &json!({"op": "v2.decrypt_req_info", "req_info": case["req_info"],
                "key": case["key"]}),
            ));
            if let Some(pt) = pt {
                if pt != case["plaintext"] {
                    return Err(format!("plaintext {pt}"));
                }
                // Parsed only when the case says what it parses to: a plaintext is just text.
                if let Some(want) = case.get("fields") {
                    let fields = w.call(&json!({"op": "v2.parse_xml", "xml": pt}))?;
                    if fields != *want {
                        return Err(format!("fields {fields}"));
                    }
                }
            }
            c
        }
        "v3_pay_sign" => {
            let h = ctx.signer(w, "1900009191", "SERIAL");
            let prepay = s(case, "package")
                .strip_prefix("prepay_id=")
                .expect("package prefix");
            let r = w.call(&json!({"op": "v3.pay_sign", "handle": h, "app_id": case["app_id"],
                "time_stamp": case["time_stamp"], "nonce_str": case["nonce_str"], "prepay_id": prepay}))?;
            w.ok(&json!({"op": "handle.free", "handle": h}));
            if r["message"] != case["message"] || r["request_payment"]["package"] != case["package"]
            {
                return Err(format!("message {}", r["message"]));
            }
            if r["request_payment"]["signType"] != "RSA" {
                return Err(format!("request_payment {}", r["request_payment"]));
            }
            r["request_payment"]["paySign"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        }
        "v3_authorization" => {
            let h = ctx.signer(w, s(case, "mchid"), s(case, "serial_no"));
            let a = w.call(
                &json!({"op": "v3.authorization", "handle": h, "method": case["method"],
                "url": case["url"], "timestamp": case["timestamp"], "nonce_str": case["nonce_str"],
                "body": case["body"]}),
            )?;
            w.ok(&json!({"op": "handle.free", "handle": h}));
            if a["message"] != case["message"] || a["signature"] != case["expected_signature"] {
                return Err(format!("message/signature {a}"));
            }
            if a["header"] != case["expected_header"] {
                return Err(format!("header {}", a["header"]));
            }
            "ok".to_owned()
        }
        "v3_response" | "v3_notification" => {
            let h = ctx.platform_keys(w);
            let api_v3_key = case
                .get("api_v3_key")
                .or_else(|| ctx.file.get("api_v3_key"));
            let what = if op == "v3_response" {
                "v3.verify_response"
            } else {
                "v3.verify_notification"
            };
            let (c, n) = code(
                w.call(&json!({"op": what, "handle": h, "headers": case["headers"],
                "body": case["body"], "now": case["now"], "api_v3_key": api_v3_key})),
            );
            w.ok(&json!({"op": "handle.free", "handle": h}));
            if op == "v3_notification"
                && let Some(n) = n
                && n["plaintext"] != case["resource_plaintext"]
            {
                return Err(format!("plaintext {}", n["plaintext"]));
            }
            c
        }
        "v3_decrypt" => {
            let (c, pt) = code(w.call(
                &json!({"op": "v3.decrypt", "api_v3_key": case["api_v3_key"],
                "nonce": case["nonce"], "associated_data": case["associated_data"],
                "ciphertext": case["ciphertext"]}),
            ));
            if let Some(pt) = pt
                && pt != case["plaintext"]
            {
                return Err(format!("plaintext {pt}"));
            }
            c
        }
        "v3_certificates" => {
            let (c, certs) = code(w.call(&json!({"op": "v3.decrypt_certificates",
                "api_v3_key": case["api_v3_key"], "body": case["body"]})));
            if let Some(certs) = certs {
                let (got, want) = (
                    certs.as_array().cloned().unwrap_or_default(),
                    case["certificates"].clone(),
                );
                let want = want.as_array().cloned().unwrap_or_default();
                if got.len() != want.len() {
                    return Err(format!("{} certificates", got.len()));
                }
                for (g, w_) in got.iter().zip(&want) {
                    if g["serial_no"] != w_["serial_no"] || g["pem"] != w_["pem"] {
                        return Err(format!("certificate {}", g["serial_no"]));
                    }
                }
            }
            c
        }
        "rsa_oaep" => {
            let h = ctx.signer(w, "1900009191", "SERIAL");
            let (c, pt) = code(
                w.call(&json!({"op": "merchant_signer.decrypt_oaep", "handle": h,
                "ciphertext": case["ciphertext"]})),
            );
            if let Some(pt) = &pt
                && *pt != case["plaintext"]
            {
                return Err(format!("plaintext {pt}"));
            }
            if case["plaintext"].is_string() {
                // Round trip through the C ABI: encrypt to the merchant public key (as a
                // public-key-mode platform key), decrypt with the merchant key.
                let k = w.ok(&json!({"op": "platform_keys.new"}));
                w.ok(
                    &json!({"op": "platform_keys.add_public_key", "handle": k, "key_id": "MERCHANT",
                    "pem": ctx.key_pem("merchant_public_key")}),
                );
                let ct = w.ok(
                    &json!({"op": "platform_keys.encrypt_oaep", "handle": k, "serial": "MERCHANT",
                    "plaintext": case["plaintext"]}),
                );
                let back = w.ok(
                    &json!({"op": "merchant_signer.decrypt_oaep", "handle": h, "ciphertext": ct}),
                );
                w.ok(&json!({"op": "handle.free", "handle": k}));
                if back != case["plaintext"] {
                    return Err("OAEP round trip".into());
                }
            }
            w.ok(&json!({"op": "handle.free", "handle": h}));
            c
        }
        other => return Err(format!("no runner for {other}")),
    };
    if got == expected {
        Ok(())
    } else {
        Err(format!("got {got:?}, expected {expected:?}"))
    }
}

/// Runs every file of `dir`; returns (runs, failures). Unknown files are failures.
fn run_dir(w: &mut Wasm, dir: &Path) -> (usize, Vec<String>) {
    let files = vector_files(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut failures = Vec::new();
    let mut total = 0;
    if files.is_empty() {
        failures.push(format!("no vector files in {}", dir.display()));
    }
    for (stem, path) in &files {
        if !KNOWN_FILES.contains(&stem.as_str()) {
            failures.push(format!("unknown vector file {}", path.display()));
            continue;
        }
        let file: Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("read")).expect("JSON");
        let ctx = Ctx { dir, file: &file };
        let cases = file["cases"].as_array().expect("cases");
        for case in cases {
            if let Err(e) = run_case(stem, &ctx, w, case) {
                failures.push(format!("{stem} / {}: {e}", s(case, "name")));
            }
        }
        println!("{stem}: {} cases through the C-ABI .wasm", cases.len());
        total += cases.len();
    }
    (total, failures)
}

fn load() -> Option<(Engine, Module)> {
    let Some(path) = module_path() else {
        println!("no C-ABI module (build it with scripts/build-pkg.sh); nothing to run");
        return None;
    };
    let engine = Engine::default();
    let module = Module::from_file(&engine, &path).expect("compile the C-ABI module");
    Some((engine, module))
}

#[test]
fn every_vector_through_the_c_abi_module() {
    let Some((engine, module)) = load() else {
        return;
    };
    // The module imports exactly the one documented host function.
    let imports: Vec<_> = module
        .imports()
        .map(|i| format!("{}.{}", i.module(), i.name()))
        .collect();
    assert_eq!(imports, ["wxpay_host.random_get"]);
    let mut w = Wasm::new(&engine, &module);
    let dir = vectors_dir();
    let (total, failures) = run_dir(&mut w, &dir);
    println!("wasmtime: {total} cases from {}", dir.display());
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(total > 0);
}

#[test]
fn c_abi_equals_native_and_rejects_garbage() {
    let Some((engine, module)) = load() else {
        return;
    };
    let mut w = Wasm::new(&engine, &module);
    // Same signature bytes as the native core for a message no vector has.
    let pem =
        std::fs::read_to_string(fixtures_dir().join("keys/merchant_private_key.pem")).expect("key");
    let native = wxpay_core::MerchantSigner::from_pem(
        wxpay_core::provider::default_provider(),
        &pem,
        "1900009191",
        "SERIAL",
    )
    .expect("native key");
    let h = w.ok(&json!({"op": "merchant_signer.new", "pem": pem, "mchid": "1900009191", "serial_no": "SERIAL"}));
    for msg in ["", "x", "多字节\n", &"a".repeat(10_000)] {
        let got = w.ok(&json!({"op": "merchant_signer.sign", "handle": h, "message": msg}));
        let want = native
            .sign(&mut rand_core::UnwrapErr(getrandom::SysRng), msg.as_bytes())
            .expect("native sign");
        assert_eq!(got, json!(want));
    }
    // Nonces come from the host import: well-formed and distinct.
    let a = w.ok(&json!({"op": "nonce_str"}));
    let b = w.ok(&json!({"op": "nonce_str"}));
    assert_ne!(a, b);
    assert_eq!(a.as_str().map(str::len), Some(32));
    // An HMAC-SHA256 order does not accept a notification that claims MD5 (no downgrade).
    let key = "192006250b4c09247ec02edce69f6a2d";
    let md5 = w.ok(
        &json!({"op": "v2.signed_xml", "key": key, "sign_type": "MD5",
        "params": {"appid": "wx1", "body": "a\rb", "sign_type": "MD5"}}),
    );
    let fields =
        w.ok(&json!({"op": "v2.verify_notification", "xml": md5, "key": key, "sign_type": "MD5"}));
    assert_eq!(fields["body"], "a\rb");
    assert_eq!(
        w.call(
            &json!({"op": "v2.verify_notification", "xml": md5, "key": key,
            "sign_type": "HMAC-SHA256"})
        ),
        Err("signature_mismatch".to_owned())
    );
    // Bad requests are errors with codes, never traps.
    assert_eq!(
        w.call(&json!({"op": "no.such.op"})),
        Err("malformed".to_owned())
    );
    assert_eq!(
        w.call(&json!({"op": "v3.pay_sign", "handle": 999})),
        Err("malformed".to_owned())
    );
    assert_eq!(w.call(&json!([1, 2])), Err("malformed".to_owned()));
}

/// The runner itself must fail on a wrong expectation and on a file it does not know.
#[test]
fn wasm_runner_reports_a_flipped_vector_and_an_unknown_file() {
    let Some((engine, module)) = load() else {
        return;
    };
    let mut w = Wasm::new(&engine, &module);
    let tmp = faulty_vectors_copy(&fixtures_dir(), "wasm");
    let (_, failures) = run_dir(&mut w, &tmp);
    std::fs::remove_dir_all(&tmp).ok();
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().any(|f| f.contains("paySign 0")),
        "{failures:?}"
    );
    assert!(
        failures.iter().any(|f| f.contains("unknown vector file")),
        "{failures:?}"
    );
}

/// `req_info` plaintext is compared as the case says: as text, and parsed only for `fields`.
#[test]
fn wasm_runner_follows_the_req_info_contract() {
    let Some((engine, module)) = load() else {
        return;
    };
    let mut w = Wasm::new(&engine, &module);
    let (total, failures) = run_dir(&mut w, &runner_contract_dir());
    assert_eq!(total, 3);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].contains("/ wrong fields:"), "{failures:?}");
}

/// Optional host crypto: the test host appends RSA signing and AES-GCM (native, the core's
/// default provider) to the module's function table, installs them, and gets the same bytes as
/// the pure-wasm provider — faster. (The speed is printed, not asserted.)
#[test]
fn host_supplied_rsa_and_aes_gcm_through_the_function_table() {
    use wasmtime::{Func, Ref};
    use wxpay_core::provider::{RsaPrivateKey, default_provider};

    let Some((engine, module)) = load() else {
        return;
    };
    let mut w = Wasm::new(&engine, &module);
    let table = w
        .instance
        .get_table(&mut w.store, "__indirect_function_table")
        .expect("the C-ABI module exports its function table");
    // Host state lives outside the store (its data type is `()`): keys by handle.
    let keys: std::sync::Arc<std::sync::Mutex<Vec<Box<dyn RsaPrivateKey>>>> = Default::default();
    let memory = w.memory;
    let k = keys.clone();
    let rsa_key = Func::wrap(
        &mut w.store,
        move |mut c: Caller<'_, ()>, ptr: u32, len: u32| -> i32 {
            let mut der = vec![0u8; len as usize];
            if memory.read(&c, ptr as usize, &mut der).is_err() {
                return -1;
            }
            let _ = &mut c;
            match default_provider().private_key(&der) {
                Ok(key) => {
                    let mut k = k.lock().expect("lock");
                    k.push(key);
                    i32::try_from(k.len() - 1).unwrap_or(-1)
                }
                Err(_) => -1,
            }
        },
    );
    let k = keys.clone();
    let rsa_sign = Func::wrap(
        &mut w.store,
        move |mut c: Caller<'_, ()>, h: i32, mp: u32, ml: u32, op: u32, cap: u32| -> i32 {
            let mut msg = vec![0u8; ml as usize];
            if memory.read(&c, mp as usize, &mut msg).is_err() {
                return -1;
            }
            let keys = k.lock().expect("lock");
            let Some(key) = usize::try_from(h).ok().and_then(|h| keys.get(h)) else {
                return -1;
            };
            let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
            match key.sign_pkcs1v15_sha256(&mut rng, &msg) {
                Ok(sig) if sig.len() <= cap as usize => {
                    if memory.write(&mut c, op as usize, &sig).is_err() {
                        return -1;
                    }
                    i32::try_from(sig.len()).unwrap_or(-1)
                }
                _ => -1,
            }
        },
    );
    let key_free = Func::wrap(&mut w.store, |_: Caller<'_, ()>, _h: i32| {});
    let aes_calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let calls = aes_calls.clone();
    #[allow(clippy::too_many_arguments)]
    let aes = Func::wrap(
        &mut w.store,
        move |mut c: Caller<'_, ()>,
              kp: u32,
              np: u32,
              ap: u32,
              al: u32,
              cp: u32,
              cl: u32,
              op: u32|
              -> i32 {
            calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let (mut key, mut nonce) = ([0u8; 32], [0u8; 12]);
            let (mut aad, mut ct) = (vec![0u8; al as usize], vec![0u8; cl as usize]);
            for (p, buf) in [
                (kp, &mut key[..]),
                (np, &mut nonce[..]),
                (ap, &mut aad[..]),
                (cp, &mut ct[..]),
            ] {
                if memory.read(&c, p as usize, buf).is_err() {
                    return -1;
                }
            }
            match default_provider().aes_256_gcm_decrypt(&key, &nonce, &aad, &ct) {
                Some(Ok(pt)) if memory.write(&mut c, op as usize, &pt).is_ok() => {
                    i32::try_from(pt.len()).unwrap_or(-1)
                }
                _ => -1,
            }
        },
    );
    let mut slot = |f: Func| -> u64 {
        table
            .grow(&mut w.store, 1, Ref::Func(Some(f)))
            .expect("the table grows")
    };
    let (i_key, i_sign, i_free, i_aes) = (slot(rsa_key), slot(rsa_sign), slot(key_free), slot(aes));
    // A half-supplied RSA is refused; the whole set is accepted.
    assert_eq!(
        w.call(&json!({"op": "host_crypto.install", "rsa_key": i_key})),
        Err("malformed".to_owned())
    );
    w.ok(
        &json!({"op": "host_crypto.install", "rsa_key": i_key, "rsa_sign": i_sign,
        "rsa_key_free": i_free, "aes_256_gcm_decrypt": i_aes}),
    );

    let pem =
        std::fs::read_to_string(fixtures_dir().join("keys/merchant_private_key.pem")).expect("key");
    let signer = |w: &mut Wasm, provider: &str| {
        w.ok(
            &json!({"op": "merchant_signer.new", "pem": pem, "mchid": "1", "serial_no": "S",
            "provider": provider}),
        )
    };
    let (host, rust) = (signer(&mut w, "host"), signer(&mut w, "rust"));
    let time = |w: &mut Wasm, h: &Value, n: u32| {
        let t = std::time::Instant::now();
        let mut last = Value::Null;
        for i in 0..n {
            last = w.ok(&json!({"op": "merchant_signer.sign", "handle": h, "message": format!("m{}", i % 2)}));
        }
        (last, f64::from(n) / t.elapsed().as_secs_f64())
    };
    let (a, host_rate) = time(&mut w, &host, 20);
    let (b, rust_rate) = time(&mut w, &rust, 4);
    assert_eq!(a, b, "host and pure-wasm signatures are the same bytes");
    println!(
        "C-ABI sign/s (debug host build): host-supplied {host_rate:.0}, pure wasm {rust_rate:.1}"
    );
    // The decryption vectors through the host's AES-GCM: same plaintexts, same error codes.
    let file: Value = serde_json::from_str(
        &std::fs::read_to_string(fixtures_dir().join("v3_decrypt.json")).expect("read"),
    )
    .expect("json");
    for case in file["cases"].as_array().expect("cases") {
        let (got, pt) = code(w.call(
            &json!({"op": "v3.decrypt", "api_v3_key": case["api_v3_key"],
            "nonce": case["nonce"], "associated_data": case["associated_data"],
            "ciphertext": case["ciphertext"]}),
        ));
        assert_eq!(
            got,
            case["expected"].as_str().unwrap_or("ok"),
            "{}",
            case["name"]
        );
        if let Some(pt) = pt {
            assert_eq!(pt, case["plaintext"], "{}", case["name"]);
        }
    }
    assert!(
        aes_calls.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "host AES-GCM was used"
    );
    assert_eq!(keys.lock().expect("lock").len(), 1);
}
