//! The operations of the C ABI: one JSON request in, one JSON response out.
//!
//! Request: `{"op": "<name>", ...arguments}`. Response: `{"ok": <value>}` or
//! `{"error": {"code": "<vector code>", "message": "..."}}`. Keys are parsed once into numbered
//! handles (`merchant_signer.new`, `platform_keys.new`, freed with `handle.free`). The list of
//! operations and their arguments is in `wasm/README.md`.

use rand_core::CryptoRng;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wxpay_core::provider::rustcrypto;
use wxpay_core::{Error, MerchantSigner, PlatformKeys, Result, aead, v2, v3};

/// A parsed key held between calls.
enum Handle {
    Signer(MerchantSigner),
    Keys(PlatformKeys),
}

/// The handle table: keys parsed once, used by number.
#[derive(Default)]
pub struct State {
    handles: BTreeMap<u32, Handle>,
    next: u32,
}

fn args<T: DeserializeOwned>(req: &Value) -> Result<T> {
    T::deserialize(req).map_err(|_| Error::Malformed("missing or mistyped arguments"))
}

#[derive(Deserialize)]
struct HandleArg {
    handle: u32,
}

impl State {
    fn insert(&mut self, h: Handle) -> Result<u32> {
        self.next = self
            .next
            .checked_add(1)
            .ok_or(Error::Malformed("too many handles"))?;
        self.handles.insert(self.next, h);
        Ok(self.next)
    }

    fn signer(&self, req: &Value) -> Result<&MerchantSigner> {
        let HandleArg { handle } = args(req)?;
        match self.handles.get(&handle) {
            Some(Handle::Signer(s)) => Ok(s),
            _ => Err(Error::Malformed("handle is not a merchant signer")),
        }
    }

    fn keys(&self, req: &Value) -> Result<&PlatformKeys> {
        let HandleArg { handle } = args(req)?;
        match self.handles.get(&handle) {
            Some(Handle::Keys(k)) => Ok(k),
            _ => Err(Error::Malformed("handle is not a platform key set")),
        }
    }

    fn keys_mut(&mut self, req: &Value) -> Result<&mut PlatformKeys> {
        let HandleArg { handle } = args(req)?;
        match self.handles.get_mut(&handle) {
            Some(Handle::Keys(k)) => Ok(k),
            _ => Err(Error::Malformed("handle is not a platform key set")),
        }
    }

    /// Runs one request (JSON bytes) and renders the response (JSON bytes).
    pub fn call<R: CryptoRng>(&mut self, rng: &mut R, request: &[u8]) -> Vec<u8> {
        let response = match serde_json::from_slice::<Value>(request) {
            Ok(req) => match self.dispatch(rng, &req) {
                Ok(v) => json!({ "ok": v }),
                Err(e) => error_json(&e),
            },
            Err(_) => error_json(&Error::Malformed("request is not JSON")),
        };
        // Serializing a `Value` cannot fail.
        serde_json::to_vec(&response).unwrap_or_default()
    }

    #[allow(clippy::too_many_lines)] // one flat match is the clearest table of operations
    fn dispatch<R: CryptoRng>(&mut self, rng: &mut R, req: &Value) -> Result<Value> {
        let op = req
            .get("op")
            .and_then(Value::as_str)
            .ok_or(Error::Malformed("missing op"))?;
        let ok = |v: Value| Ok(v);
        match op {
            "version" => ok(json!(env!("CARGO_PKG_VERSION"))),
            "nonce_str" => ok(json!(wxpay_core::nonce_str(rng))),
            "handle.free" => {
                let HandleArg { handle } = args(req)?;
                ok(json!(self.handles.remove(&handle).is_some()))
            }
            "host_crypto.install" => {
                let f: super::host::HostFunctions = args(req)?;
                super::host::install(f)?;
                ok(json!(true))
            }
            "merchant_signer.new" => {
                #[derive(Deserialize)]
                struct A {
                    pem: String,
                    mchid: String,
                    serial_no: String,
                    /// `rust` (default) or `host` (RSA signing by the host's functions).
                    #[serde(default)]
                    provider: Option<String>,
                }
                let a: A = args(req)?;
                let provider: &'static dyn wxpay_core::CryptoProvider =
                    match a.provider.as_deref().unwrap_or("rust") {
                        "rust" => &rustcrypto::PROVIDER,
                        "host" => &super::host::PROVIDER,
                        _ => return Err(Error::Malformed("provider must be \"rust\" or \"host\"")),
                    };
                let s = MerchantSigner::from_pem(provider, &a.pem, &a.mchid, &a.serial_no)?;
                ok(json!(self.insert(Handle::Signer(s))?))
            }
            "merchant_signer.sign" => {
                #[derive(Deserialize)]
                struct A {
                    message: String,
                }
                let a: A = args(req)?;
                ok(json!(self.signer(req)?.sign(rng, a.message.as_bytes())?))
            }
            "merchant_signer.decrypt_oaep" => {
                #[derive(Deserialize)]
                struct A {
                    ciphertext: String,
                }
                let a: A = args(req)?;
                ok(json!(self.signer(req)?.decrypt_oaep(rng, &a.ciphertext)?))
            }
            "platform_keys.new" => ok(json!(self.insert(Handle::Keys(PlatformKeys::new()))?)),
            "platform_keys.add_certificate" => {
                #[derive(Deserialize)]
                struct A {
                    pem: String,
                }
                let a: A = args(req)?;
                ok(json!(
                    self.keys_mut(req)?
                        .insert_certificate_pem(&rustcrypto::PROVIDER, &a.pem)?
                ))
            }
            "platform_keys.add_public_key" => {
                #[derive(Deserialize)]
                struct A {
                    key_id: String,
                    pem: String,
                }
                let a: A = args(req)?;
                self.keys_mut(req)?.insert_public_key_pem(
                    &rustcrypto::PROVIDER,
                    &a.key_id,
                    &a.pem,
                )?;
                ok(Value::Null)
            }
            "platform_keys.serials" => ok(json!(self.keys(req)?.serials())),
            "platform_keys.remove_expired" => {
                #[derive(Deserialize)]
                struct A {
                    now: u64,
                }
                let a: A = args(req)?;
                ok(json!(self.keys_mut(req)?.remove_expired(a.now)))
            }
            "platform_keys.verify" => {
                #[derive(Deserialize)]
                struct A {
                    serial: String,
                    message: String,
                    signature: String,
                }
                let a: A = args(req)?;
                self.keys(req)?
                    .verify(&a.serial, a.message.as_bytes(), &a.signature)?;
                ok(Value::Null)
            }
            "platform_keys.encrypt_oaep" => {
                #[derive(Deserialize)]
                struct A {
                    serial: String,
                    plaintext: String,
                }
                let a: A = args(req)?;
                ok(json!(self.keys(req)?.encrypt_oaep(
                    rng,
                    &a.serial,
                    &a.plaintext
                )?))
            }
            "v3.authorization" => {
                #[derive(Deserialize)]
                struct A {
                    method: String,
                    url: String,
                    timestamp: String,
                    nonce_str: String,
                    #[serde(default)]
                    body: String,
                }
                let a: A = args(req)?;
                let signer = self.signer(req)?;
                let auth = v3::authorization(
                    signer,
                    rng,
                    &a.method,
                    &a.url,
                    &a.timestamp,
                    &a.nonce_str,
                    &a.body,
                )?;
                ok(to_value(&auth))
            }
            "v3.pay_sign" => {
                #[derive(Deserialize)]
                struct A {
                    app_id: String,
                    time_stamp: String,
                    nonce_str: String,
                    prepay_id: String,
                }
                let a: A = args(req)?;
                let signer = self.signer(req)?;
                let pay = v3::pay_sign(
                    signer,
                    rng,
                    &a.app_id,
                    &a.time_stamp,
                    &a.nonce_str,
                    &a.prepay_id,
                )?;
                ok(json!({ "request_payment": to_value(&pay), "message": pay.message() }))
            }
            "v3.verify_response" | "v3.verify_notification" => {
                #[derive(Deserialize)]
                struct A {
                    headers: BTreeMap<String, String>,
                    body: String,
                    now: u64,
                    #[serde(default)]
                    api_v3_key: Option<String>,
                }
                let a: A = args(req)?;
                let keys = self.keys(req)?;
                let headers = v3::WechatpayHeaders::from_pairs(
                    a.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )?;
                if op == "v3.verify_response" {
                    v3::verify_response(keys, &headers, a.body.as_bytes(), a.now)?;
                    return ok(Value::Null);
                }
                let key = v3::ApiV3Key::new(a.api_v3_key.as_deref().unwrap_or_default())?
                    .with_provider(&super::host::PROVIDER);
                let n = v3::verify_notification(keys, &key, &headers, a.body.as_bytes(), a.now)?;
                ok(to_value(&n))
            }
            "v3.verify_certificates_response" => {
                #[derive(Deserialize)]
                struct A {
                    headers: BTreeMap<String, String>,
                    body: String,
                    now: u64,
                    api_v3_key: String,
                    #[serde(default)]
                    add: bool,
                }
                let a: A = args(req)?;
                let headers = v3::WechatpayHeaders::from_pairs(
                    a.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                )?;
                let key = v3::ApiV3Key::new(&a.api_v3_key)?;
                let certs = v3::verify_certificates_response(
                    &rustcrypto::PROVIDER,
                    self.keys(req)?,
                    &key,
                    &headers,
                    a.body.as_bytes(),
                    a.now,
                )?;
                if a.add {
                    let keys = self.keys_mut(req)?;
                    for c in &certs {
                        keys.insert_certificate_pem(&rustcrypto::PROVIDER, &c.pem)?;
                    }
                }
                ok(to_value(&certs))
            }
            "v3.decrypt" | "v3.encrypt" => {
                #[derive(Deserialize)]
                struct A {
                    api_v3_key: String,
                    nonce: String,
                    #[serde(default)]
                    associated_data: String,
                    #[serde(default)]
                    ciphertext: String,
                    #[serde(default)]
                    plaintext: String,
                }
                let a: A = args(req)?;
                let key = v3::ApiV3Key::new(&a.api_v3_key)?.with_provider(&super::host::PROVIDER);
                if op == "v3.decrypt" {
                    ok(json!(aead::decrypt(
                        &key,
                        &a.nonce,
                        &a.associated_data,
                        &a.ciphertext
                    )?))
                } else {
                    ok(json!(aead::encrypt(
                        &key,
                        &a.nonce,
                        &a.associated_data,
                        a.plaintext.as_bytes()
                    )?))
                }
            }
            "v3.decrypt_certificates" => {
                #[derive(Deserialize)]
                struct A {
                    api_v3_key: String,
                    body: String,
                }
                let a: A = args(req)?;
                let key = v3::ApiV3Key::new(&a.api_v3_key)?;
                ok(to_value(&v3::decrypt_certificates(
                    &key,
                    a.body.as_bytes(),
                )?))
            }
            "v2.sign" | "v2.verify" | "v2.signed_xml" => {
                #[derive(Deserialize)]
                struct A {
                    params: BTreeMap<String, String>,
                    key: String,
                    #[serde(default)]
                    sign_type: Option<String>,
                }
                let a: A = args(req)?;
                let key = v2::ApiV2Key::new(&a.key);
                let st: v2::SignType = a.sign_type.as_deref().unwrap_or("MD5").parse()?;
                match op {
                    "v2.sign" => ok(to_value(&v2::sign(&a.params, &key, st))),
                    "v2.verify" => v2::verify(&a.params, &key, st).map(|()| Value::Null),
                    _ => ok(json!(v2::signed_xml(&a.params, &key, st)?.xml)),
                }
            }
            "v2.parse_xml" => {
                #[derive(Deserialize)]
                struct A {
                    xml: String,
                }
                let a: A = args(req)?;
                ok(json!(v2::parse_xml(&a.xml)?))
            }
            "v2.verify_notification" => {
                #[derive(Deserialize)]
                struct A {
                    xml: String,
                    key: String,
                    #[serde(default)]
                    sign_type: Option<String>,
                }
                let a: A = args(req)?;
                let st: v2::SignType = a.sign_type.as_deref().unwrap_or("MD5").parse()?;
                ok(json!(v2::verify_notification(
                    &a.xml,
                    &v2::ApiV2Key::new(&a.key),
                    st
                )?))
            }
            "v2.reply_xml" => {
                #[derive(Deserialize)]
                struct A {
                    ok: bool,
                    #[serde(default)]
                    message: String,
                }
                let a: A = args(req)?;
                ok(json!(v2::reply_xml(a.ok, &a.message)))
            }
            "v2.decrypt_req_info" => {
                #[derive(Deserialize)]
                struct A {
                    req_info: String,
                    key: String,
                }
                let a: A = args(req)?;
                ok(json!(v2::decrypt_req_info(
                    &a.req_info,
                    &v2::ApiV2Key::new(&a.key)
                )?))
            }
            "v2.request_payment" => {
                #[derive(Deserialize)]
                struct A {
                    key: String,
                    #[serde(default)]
                    sign_type: Option<String>,
                    app_id: String,
                    time_stamp: String,
                    nonce_str: String,
                    prepay_id: String,
                }
                let a: A = args(req)?;
                let st: v2::SignType = a.sign_type.as_deref().unwrap_or("MD5").parse()?;
                let r = v2::request_payment(
                    &v2::ApiV2Key::new(&a.key),
                    st,
                    &a.app_id,
                    &a.time_stamp,
                    &a.nonce_str,
                    &a.prepay_id,
                );
                ok(to_value(&r))
            }
            _ => Err(Error::Malformed("unknown op")),
        }
    }
}

fn to_value<T: serde::Serialize>(v: &T) -> Value {
    // The core's output types are plain structs of strings and integers: always serializable.
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn error_json(e: &Error) -> Value {
    json!({ "error": { "code": e.code(), "message": e.to_string(), "probe": e.is_probe() } })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::UnwrapErr;

    fn call(state: &mut State, req: Value) -> Value {
        let mut rng = UnwrapErr(getrandom_free_rng::Counter(0));
        serde_json::from_slice(&state.call(&mut rng, req.to_string().as_bytes())).expect("json")
    }

    /// A deterministic RNG for tests only (the ops under test here do not need entropy).
    mod getrandom_free_rng {
        use core::convert::Infallible;
        use rand_core::{TryCryptoRng, TryRng};
        pub struct Counter(pub u8);
        impl TryRng for Counter {
            type Error = Infallible;
            fn try_next_u32(&mut self) -> Result<u32, Infallible> {
                let mut b = [0; 4];
                self.try_fill_bytes(&mut b)?;
                Ok(u32::from_le_bytes(b))
            }
            fn try_next_u64(&mut self) -> Result<u64, Infallible> {
                let mut b = [0; 8];
                self.try_fill_bytes(&mut b)?;
                Ok(u64::from_le_bytes(b))
            }
            fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
                for b in dst {
                    self.0 = self.0.wrapping_add(1);
                    *b = self.0;
                }
                Ok(())
            }
        }
        impl TryCryptoRng for Counter {}
    }

    #[test]
    fn errors_carry_the_vector_codes() {
        let mut s = State::default();
        assert_eq!(
            call(&mut s, json!({"op": "nope"}))["error"]["code"],
            "malformed"
        );
        assert_eq!(
            call(&mut s, json!({"op": "v3.pay_sign", "handle": 9}))["error"]["code"],
            "malformed"
        );
        let bad = call(
            &mut s,
            json!({"op": "merchant_signer.new", "pem": "x", "mchid": "1", "serial_no": "2"}),
        );
        assert_eq!(bad["error"]["code"], "invalid_key");
        let r = call(
            &mut s,
            json!({"op": "v2.sign", "params": {"a": "1"}, "key": "k", "sign_type": "MD5"}),
        );
        assert_eq!(r["ok"]["string_to_sign"], "a=1");
    }

    #[test]
    fn v2_notifications_never_downgrade_and_keep_carriage_returns() {
        let mut s = State::default();
        let key = "192006250b4c09247ec02edce69f6a2d";
        let xml = |s: &mut State, sign_type: &str, body: &str| {
            call(
                s,
                json!({"op": "v2.signed_xml", "key": key, "sign_type": sign_type,
                       "params": {"appid": "wx1", "body": body, "sign_type": sign_type}}),
            )["ok"]
                .clone()
        };
        let md5 = xml(&mut s, "MD5", "a\rb");
        let hmac = xml(&mut s, "HMAC-SHA256", "a\rb");
        let verify = |s: &mut State, xml: &Value, order: &str| {
            call(
                s,
                json!({"op": "v2.verify_notification", "xml": xml, "key": key, "sign_type": order}),
            )
        };
        assert_eq!(verify(&mut s, &hmac, "MD5")["ok"]["body"], "a\rb");
        assert_eq!(verify(&mut s, &md5, "MD5")["ok"]["body"], "a\rb");
        assert_eq!(
            verify(&mut s, &md5, "HMAC-SHA256")["error"]["code"],
            "signature_mismatch"
        );
    }

    #[test]
    fn certificate_bootstrap_verifies_with_the_downloaded_certificate() {
        let vectors: Value =
            serde_json::from_str(include_str!("../../../tests/vectors/v3_certificates.json"))
                .expect("json");
        let case = &vectors["cases"][0];
        let body = case["body"].as_str().expect("body");
        let serial = case["certificates"][0]["serial_no"]
            .as_str()
            .expect("serial");
        let platform = MerchantSigner::from_pem(
            &rustcrypto::PROVIDER,
            include_str!("../../../tests/vectors/keys/platform_private_key.pem"),
            "x",
            serial,
        )
        .expect("platform key");
        let mut rng = UnwrapErr(getrandom_free_rng::Counter(0));
        let sig =
            v3::sign_response(&platform, &mut rng, "1000", "n", body.as_bytes()).expect("sig");
        let mut s = State::default();
        let h = call(&mut s, json!({"op": "platform_keys.new"}))["ok"].clone();
        let req = |nonce: &str, add: bool| {
            json!({"op": "v3.verify_certificates_response", "handle": h, "api_v3_key": case["api_v3_key"],
                   "headers": {"Wechatpay-Timestamp": "1000", "Wechatpay-Nonce": nonce,
                               "Wechatpay-Signature": sig, "Wechatpay-Serial": serial},
                   "body": body, "now": 1000, "add": add})
        };
        assert_eq!(
            call(&mut s, req("m", false))["error"]["code"],
            "signature_mismatch"
        );
        assert_eq!(call(&mut s, req("n", false))["ok"][0]["serial_no"], serial);
        assert_eq!(
            call(&mut s, json!({"op": "platform_keys.serials", "handle": h}))["ok"],
            json!([])
        );
        call(&mut s, req("n", true));
        assert_eq!(
            call(&mut s, json!({"op": "platform_keys.serials", "handle": h}))["ok"],
            json!([serial])
        );
    }

    #[test]
    fn host_crypto_is_refused_when_half_supplied_or_native() {
        let mut s = State::default();
        let half = call(&mut s, json!({"op": "host_crypto.install", "rsa_key": 3}));
        assert_eq!(half["error"]["code"], "malformed");
        // Natively there is no function table to call through.
        let all = call(
            &mut s,
            json!({"op": "host_crypto.install", "rsa_key": 3, "rsa_sign": 4}),
        );
        assert_eq!(all["error"]["code"], "malformed");
        let pem = include_str!("../../../tests/vectors/keys/merchant_private_key.pem");
        let host = call(
            &mut s,
            json!({"op": "merchant_signer.new", "pem": pem, "mchid": "1", "serial_no": "S",
                   "provider": "host"}),
        );
        assert_eq!(host["error"]["code"], "invalid_key");
    }

    #[test]
    fn handles_are_freed_once() {
        let mut s = State::default();
        let h = call(&mut s, json!({"op": "platform_keys.new"}))["ok"].clone();
        assert_eq!(
            call(&mut s, json!({"op": "handle.free", "handle": h}))["ok"],
            true
        );
        assert_eq!(
            call(&mut s, json!({"op": "handle.free", "handle": h}))["ok"],
            false
        );
    }

    #[test]
    fn garbage_is_malformed_not_a_panic() {
        let mut s = State::default();
        let mut rng = UnwrapErr(getrandom_free_rng::Counter(0));
        for input in [&b""[..], b"{", b"[]", b"null", b"{\"op\":1}", &[0xff, 0xfe]] {
            let out: Value = serde_json::from_slice(&s.call(&mut rng, input)).expect("json");
            assert_eq!(out["error"]["code"], "malformed");
        }
    }
}
