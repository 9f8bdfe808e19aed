//! wasm-bindgen bindings: handles for keys, free functions for the rest, camelCase names.
//!
//! Only conversions live here: JS values in, core calls, JS values out. Every error leaves as a
//! JS `Error` with `code` (module `error`).

mod error;
mod glue;
pub mod provider;

use error::{IntoJs, JsResult, malformed};
use js_sys::{Array, Object, Reflect, Uint8Array};
use rand_core::UnwrapErr;
use std::collections::BTreeMap;
use wasm_bindgen::prelude::*;
use wxpay_core::provider::{CryptoProvider, rustcrypto};
use wxpay_core::{keys, v2, v3};

/// The RNG for blinding, nonces and OAEP: `crypto.getRandomValues` via getrandom's JS backend.
fn rng() -> UnwrapErr<getrandom::SysRng> {
    UnwrapErr(getrandom::SysRng)
}

/// `now` in unix seconds: the caller's, else `Date.now()`.
fn now_or_clock(now: Option<f64>) -> JsResult<u64> {
    let now = now.unwrap_or_else(|| js_sys::Date::now() / 1000.0);
    if now.is_finite() && now >= 0.0 {
        // Truncation to whole seconds is intended; the range is checked above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Ok(now.floor() as u64)
    } else {
        Err(malformed("now must be unix seconds"))
    }
}

/// The timestamp and nonce a signing call uses: the caller's (`options[ts_key]`,
/// `options.nonceStr`), else `now`/the clock and a fresh nonce.
fn stamp_and_nonce(
    options: &JsValue,
    ts_key: &str,
    rng: &mut UnwrapErr<getrandom::SysRng>,
) -> JsResult<(String, String)> {
    let stamp = match opt_string(options, ts_key)? {
        Some(t) => t,
        None => wxpay_core::timestamp(now_or_clock(opt_number(options, "now")?)?),
    };
    let nonce = match opt_string(options, "nonceStr")? {
        Some(n) => n,
        None => wxpay_core::nonce_str(rng),
    };
    Ok((stamp, nonce))
}

fn get(obj: &JsValue, key: &str) -> JsValue {
    if obj.is_object() {
        Reflect::get(obj, &JsValue::from_str(key)).unwrap_or(JsValue::UNDEFINED)
    } else {
        JsValue::UNDEFINED
    }
}

fn opt_string(obj: &JsValue, key: &str) -> JsResult<Option<String>> {
    let v = get(obj, key);
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        v.as_string()
            .map(Some)
            .ok_or_else(|| malformed("option must be a string"))
    }
}

fn opt_number(obj: &JsValue, key: &str) -> JsResult<Option<f64>> {
    let v = get(obj, key);
    if v.is_undefined() || v.is_null() {
        Ok(None)
    } else {
        v.as_f64()
            .map(Some)
            .ok_or_else(|| malformed("option must be a number"))
    }
}

/// `{ provider: "auto" | "platform" | "rust" }`; `auto` (the default) is the platform provider
/// when one is installed, else the pure-Rust one.
fn provider_from(options: &JsValue) -> JsResult<&'static dyn CryptoProvider> {
    match opt_string(options, "provider")?
        .as_deref()
        .unwrap_or("auto")
    {
        "auto" if provider::platform_crypto_available() => Ok(&provider::PROVIDER),
        "auto" | "rust" => Ok(&rustcrypto::PROVIDER),
        "platform" if provider::platform_crypto_available() => Ok(&provider::PROVIDER),
        "platform" => Err(error::to_js(&wxpay_core::Error::InvalidKey(
            "provider \"platform\" requested but no node:crypto is installed",
        ))),
        _ => Err(malformed(
            "provider must be \"auto\", \"platform\" or \"rust\"",
        )),
    }
}

/// The provider name as shown to JS: `"platform"` or `"rust"`.
fn provider_label(name: &str) -> String {
    if name == provider::PROVIDER.name() {
        "platform"
    } else {
        "rust"
    }
    .to_owned()
}

/// A message or body: a string (UTF-8) or bytes.
fn bytes_of(v: &JsValue) -> JsResult<Vec<u8>> {
    if let Some(s) = v.as_string() {
        Ok(s.into_bytes())
    } else if let Some(b) = v.dyn_ref::<Uint8Array>() {
        Ok(b.to_vec())
    } else {
        Err(malformed("expected a string or a Uint8Array"))
    }
}

fn wechatpay_headers(headers: &JsValue) -> JsResult<v3::WechatpayHeaders> {
    if let Some(([ts, nonce, signature, serial], sig_type)) = glue::wechatpay_headers(headers) {
        let mut pairs = vec![
            ("Wechatpay-Timestamp", ts),
            ("Wechatpay-Nonce", nonce),
            ("Wechatpay-Signature", signature),
            ("Wechatpay-Serial", serial),
        ];
        if let Some(t) = sig_type {
            pairs.push(("Wechatpay-Signature-Type", t));
        }
        return v3::WechatpayHeaders::from_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str()))).js();
    }
    // Anything but a plain object with the headers as strings (see `glue.js`).
    let pairs = glue::header_pairs(headers)
        .ok_or_else(|| malformed("headers must be an object, Headers, Map or pairs of strings"))?;
    // A header under both spellings is a repeated header: `from_pairs` refuses it.
    v3::WechatpayHeaders::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))).js()
}

/// A plain JS object with string properties, built by property writes (no JSON round trip):
/// for the hot results, whose long strings (ciphertext, plaintext) would otherwise be escaped
/// in wasm and unescaped again by `JSON.parse`.
fn object_of(fields: &[(&str, &JsValue)]) -> Object {
    let obj = Object::new();
    for (k, v) in fields {
        // `Reflect.set` on a fresh, extensible plain object cannot fail.
        let _ = Reflect::set(&obj, &JsValue::from_str(k), v);
    }
    obj
}

/// v2 parameters: an object whose values are strings, safe integers or booleans (as
/// `JSON.stringify` writes them); `null`/`undefined` values are left out, like empty ones.
fn params_of(params: &JsValue) -> JsResult<BTreeMap<String, String>> {
    if !params.is_object() || Array::is_array(params) {
        return Err(malformed("params must be an object"));
    }
    let pairs = glue::flat_params(params).ok_or_else(|| {
        malformed("v2 parameter values must be strings, safe integers or booleans")
    })?;
    Ok(pairs.into_iter().collect())
}

// ---------------------------------------------------------------------------------------------
// Keys

/// The merchant's signing key with its `mchid` and certificate serial, parsed once.
#[wasm_bindgen]
pub struct MerchantSigner {
    inner: keys::MerchantSigner,
}

#[wasm_bindgen]
impl MerchantSigner {
    /// Parses `apiclient_key.pem` (PKCS#8 or PKCS#1).
    ///
    /// # Errors
    /// `invalid_key` for anything but an unencrypted RSA 2048–4096 key or an empty mchid/serial.
    #[wasm_bindgen(constructor)]
    pub fn new(
        pem: &str,
        mchid: &str,
        serial_no: &str,
        options: Option<Object>,
    ) -> JsResult<MerchantSigner> {
        let provider = provider_from(&options.into())?;
        let inner = keys::MerchantSigner::from_pem(provider, pem, mchid, serial_no).js()?;
        Ok(Self { inner })
    }

    /// The merchant id.
    #[wasm_bindgen(getter)]
    pub fn mchid(&self) -> String {
        self.inner.mchid().to_owned()
    }

    /// The merchant API certificate serial.
    #[wasm_bindgen(getter, js_name = serialNo)]
    pub fn serial_no(&self) -> String {
        self.inner.serial_no().to_owned()
    }

    /// `"platform"` or `"rust"`.
    #[wasm_bindgen(getter)]
    pub fn provider(&self) -> String {
        provider_label(self.inner.provider_name())
    }

    /// SHA256withRSA over `message` (string or bytes), base64.
    ///
    /// # Errors
    /// `malformed` for a message of the wrong type.
    pub fn sign(&self, message: &JsValue) -> JsResult<String> {
        self.inner.sign(&mut rng(), &bytes_of(message)?).js()
    }

    /// Decrypts an RSA-OAEP (SHA-1) sensitive field encrypted to the merchant key.
    ///
    /// # Errors
    /// `malformed` (not base64) or `decrypt_failed`.
    #[wasm_bindgen(js_name = decryptOaep)]
    pub fn decrypt_oaep(&self, ciphertext: &str) -> JsResult<String> {
        self.inner.decrypt_oaep(&mut rng(), ciphertext).js()
    }

    /// The APIv3 `Authorization` header for a request: `{ message, signature, header }`.
    /// `options`: `{ timestamp?: string, nonceStr?: string, now?: number }`.
    ///
    /// # Errors
    /// `malformed` for a lower-case method, a URL not starting with `/`, bad timestamp/nonce.
    pub fn authorization(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        options: Option<Object>,
    ) -> JsResult<JsValue> {
        let options: JsValue = options.into();
        let mut rng = rng();
        let (timestamp, nonce) = stamp_and_nonce(&options, "timestamp", &mut rng)?;
        let body = body.unwrap_or_default();
        let auth = v3::authorization(
            &self.inner,
            &mut rng,
            method,
            url,
            &timestamp,
            &nonce,
            &body,
        )
        .js()?;
        Ok(glue::authorization_object(&auth.message, &auth.signature, &auth.header).into())
    }

    /// The ready `wx.requestPayment` object `{ appId, timeStamp, nonceStr, package, signType:
    /// "RSA", paySign }` for a `prepay_id` (with or without the `prepay_id=` prefix).
    /// `options`: `{ timeStamp?: string, nonceStr?: string, now?: number }`.
    ///
    /// # Errors
    /// `malformed` for empty fields or fields with newlines.
    #[wasm_bindgen(js_name = paySign)]
    pub fn pay_sign(
        &self,
        app_id: &str,
        prepay_id: &str,
        options: Option<Object>,
    ) -> JsResult<JsValue> {
        let options: JsValue = options.into();
        let mut rng = rng();
        let (time_stamp, nonce) = stamp_and_nonce(&options, "timeStamp", &mut rng)?;
        let pay = v3::pay_sign(
            &self.inner,
            &mut rng,
            app_id,
            &time_stamp,
            &nonce,
            prepay_id,
        )
        .js()?;
        Ok(payment_object(
            &pay.app_id,
            &pay.time_stamp,
            &pay.nonce_str,
            &pay.package,
            pay.sign_type,
            &pay.pay_sign,
        )
        .into())
    }
}

/// A single RSA public key (SPKI PEM), e.g. to check a merchant signature in a simulator.
#[wasm_bindgen]
pub struct PublicKey {
    inner: keys::PublicKey,
}

#[wasm_bindgen]
impl PublicKey {
    /// Parses a `PUBLIC KEY` PEM.
    ///
    /// # Errors
    /// `invalid_key`.
    #[wasm_bindgen(constructor)]
    pub fn new(pem: &str, options: Option<Object>) -> JsResult<PublicKey> {
        let provider = provider_from(&options.into())?;
        Ok(Self {
            inner: keys::PublicKey::from_pem(provider, pem).js()?,
        })
    }

    /// Verifies a base64 SHA256withRSA signature over `message`.
    ///
    /// # Errors
    /// `signature_mismatch`.
    pub fn verify(&self, message: &JsValue, signature: &str) -> JsResult<()> {
        self.inner.verify(&bytes_of(message)?, signature).js()
    }

    /// RSA-OAEP (SHA-1) encryption of a sensitive field, base64.
    ///
    /// # Errors
    /// `malformed` if the plaintext is too long for the key.
    #[wasm_bindgen(js_name = encryptOaep)]
    pub fn encrypt_oaep(&self, plaintext: &str) -> JsResult<String> {
        self.inner.encrypt_oaep(&mut rng(), plaintext).js()
    }
}

/// The WeChat Pay platform keys, by serial: certificates (`Wechatpay-Serial` = certificate
/// serial) and public keys (`PUB_KEY_ID_…`) side by side.
#[wasm_bindgen]
pub struct PlatformKeys {
    inner: keys::PlatformKeys,
    provider: &'static dyn CryptoProvider,
}

#[wasm_bindgen]
impl PlatformKeys {
    /// An empty set; keys added later use the provider chosen here.
    ///
    /// # Errors
    /// `invalid_key` when `provider: "platform"` is asked for and none is installed.
    #[wasm_bindgen(constructor)]
    pub fn new(options: Option<Object>) -> JsResult<PlatformKeys> {
        Ok(Self {
            inner: keys::PlatformKeys::new(),
            provider: provider_from(&options.into())?,
        })
    }

    /// `"platform"` or `"rust"`.
    #[wasm_bindgen(getter)]
    pub fn provider(&self) -> String {
        provider_label(self.provider.name())
    }

    /// Adds a platform certificate (PEM); returns its serial (upper-case hex).
    ///
    /// # Errors
    /// `invalid_key`.
    #[wasm_bindgen(js_name = addCertificate)]
    pub fn add_certificate(&mut self, pem: &str) -> JsResult<String> {
        self.inner.insert_certificate_pem(self.provider, pem).js()
    }

    /// Adds a "WeChat Pay public key" (SPKI PEM) under its id (`PUB_KEY_ID_…`).
    ///
    /// # Errors
    /// `invalid_key`.
    #[wasm_bindgen(js_name = addPublicKey)]
    pub fn add_public_key(&mut self, key_id: &str, pem: &str) -> JsResult<()> {
        self.inner
            .insert_public_key_pem(self.provider, key_id, pem)
            .js()
    }

    /// Whether a key with this serial is held.
    pub fn has(&self, serial: &str) -> bool {
        self.inner.contains(serial)
    }

    /// The serials held.
    pub fn serials(&self) -> Vec<String> {
        self.inner.serials()
    }

    /// The serial to put in `Wechatpay-Serial` when encrypting for WeChat Pay: the newest valid
    /// certificate, else a public key.
    ///
    /// # Errors
    /// `malformed` for a bad `now`.
    #[wasm_bindgen(js_name = preferredSerial)]
    pub fn preferred_serial(&self, now: Option<f64>) -> JsResult<Option<String>> {
        Ok(self
            .inner
            .preferred_serial(now_or_clock(now)?)
            .map(str::to_owned))
    }

    /// Drops certificates expired at `now` (default: the clock); returns how many.
    ///
    /// # Errors
    /// `malformed` for a bad `now`.
    #[wasm_bindgen(js_name = removeExpired)]
    pub fn remove_expired(&mut self, now: Option<f64>) -> JsResult<u32> {
        let removed = self.inner.remove_expired(now_or_clock(now)?);
        Ok(u32::try_from(removed).unwrap_or(u32::MAX))
    }

    /// Verifies a base64 signature over `message` with the key `serial`.
    ///
    /// # Errors
    /// `unknown_serial`, `signature_mismatch`.
    pub fn verify(&self, serial: &str, message: &JsValue, signature: &str) -> JsResult<()> {
        self.inner
            .verify(serial, &bytes_of(message)?, signature)
            .js()
    }

    /// RSA-OAEP (SHA-1) encryption of a sensitive field for the key `serial`, base64.
    ///
    /// # Errors
    /// `unknown_serial`, `malformed`.
    #[wasm_bindgen(js_name = encryptOaep)]
    pub fn encrypt_oaep(&self, serial: &str, plaintext: &str) -> JsResult<String> {
        self.inner.encrypt_oaep(&mut rng(), serial, plaintext).js()
    }

    /// Verifies an APIv3 response: `headers` (any case; object, `Headers`, `Map` or pairs),
    /// the body exactly as received, `now` (default: the clock).
    ///
    /// # Errors
    /// `malformed`, `timestamp_expired`, `unknown_serial`, `signature_mismatch`.
    #[wasm_bindgen(js_name = verifyResponse)]
    pub fn verify_response(
        &self,
        headers: &JsValue,
        body: &JsValue,
        now: Option<f64>,
    ) -> JsResult<()> {
        let headers = wechatpay_headers(headers)?;
        v3::verify_response(&self.inner, &headers, &bytes_of(body)?, now_or_clock(now)?).js()
    }

    /// Verifies a `GET /v3/certificates` response and decrypts its certificates into `[{
    /// serialNo, effectiveTime, expireTime, notBefore, notAfter, pem }]`; with `add: true` they
    /// are also added to this set. The signature is checked with the key its `Wechatpay-Serial`
    /// names: one held here, or — on the first download, when none is held — the matching
    /// certificate of the response itself, which only the APIv3 key decrypts (certificate
    /// bootstrap). `options`: `{ now?: number, add?: boolean }`.
    ///
    /// # Errors
    /// `malformed`, `timestamp_expired`, `unknown_serial`, `signature_mismatch`,
    /// `decrypt_failed`, `invalid_key`.
    #[wasm_bindgen(js_name = verifyCertificatesResponse)]
    pub fn verify_certificates_response(
        &mut self,
        api_v3_key: &ApiV3Key,
        headers: &JsValue,
        body: &JsValue,
        options: Option<Object>,
    ) -> JsResult<Array> {
        let options: JsValue = options.into();
        let headers = wechatpay_headers(headers)?;
        let certs = v3::verify_certificates_response(
            self.provider,
            &self.inner,
            &api_v3_key.inner,
            &headers,
            &bytes_of(body)?,
            now_or_clock(opt_number(&options, "now")?)?,
        )
        .js()?;
        if get(&options, "add").is_truthy() {
            for c in &certs {
                self.inner
                    .insert_certificate_pem(self.provider, &c.pem)
                    .js()?;
            }
        }
        Ok(certificates_array(&certs))
    }

    /// Verifies an APIv3 notification and decrypts its resource.
    ///
    /// # Errors
    /// `malformed`, `timestamp_expired`, `unknown_serial`, `signature_mismatch`,
    /// `decrypt_failed`.
    #[wasm_bindgen(js_name = verifyNotification)]
    pub fn verify_notification(
        &self,
        api_v3_key: &ApiV3Key,
        headers: &JsValue,
        body: &JsValue,
        now: Option<f64>,
    ) -> JsResult<JsValue> {
        let headers = wechatpay_headers(headers)?;
        let n = v3::verify_notification(
            &self.inner,
            &api_v3_key.inner,
            &headers,
            &bytes_of(body)?,
            now_or_clock(now)?,
        )
        .js()?;
        Ok(notification_object(&n).into())
    }
}

/// The APIv3 key (32 bytes), held for AEAD_AES_256_GCM. With the platform provider (the
/// default where `node:crypto` is installed) decryption runs in `node:crypto`.
#[wasm_bindgen]
pub struct ApiV3Key {
    inner: v3::ApiV3Key,
    provider: &'static dyn CryptoProvider,
}

#[wasm_bindgen]
impl ApiV3Key {
    /// `options`: `{ provider?: "auto" | "platform" | "rust" }`.
    ///
    /// # Errors
    /// `invalid_key` unless exactly 32 bytes, or when `provider: "platform"` is asked for and
    /// none is installed.
    #[wasm_bindgen(constructor)]
    pub fn new(key: &str, options: Option<Object>) -> JsResult<ApiV3Key> {
        let provider = provider_from(&options.into())?;
        Ok(Self {
            inner: v3::ApiV3Key::new(key).js()?.with_provider(provider),
            provider,
        })
    }

    /// `"platform"` or `"rust"`: where decryption runs.
    #[wasm_bindgen(getter)]
    pub fn provider(&self) -> String {
        provider_label(self.provider.name())
    }

    /// AEAD_AES_256_GCM decryption of a `resource` (ciphertext = base64 of ct ‖ tag).
    ///
    /// # Errors
    /// `malformed` (bad base64 or nonce), `decrypt_failed`.
    pub fn decrypt(
        &self,
        nonce: &str,
        associated_data: &str,
        ciphertext: &str,
    ) -> JsResult<String> {
        wxpay_core::aead::decrypt(&self.inner, nonce, associated_data, ciphertext).js()
    }

    /// AEAD_AES_256_GCM encryption (for simulators and tests), base64 of ct ‖ tag.
    ///
    /// # Errors
    /// `malformed` for a nonce that is not 12 bytes.
    pub fn encrypt(&self, nonce: &str, associated_data: &str, plaintext: &str) -> JsResult<String> {
        wxpay_core::aead::encrypt(&self.inner, nonce, associated_data, plaintext.as_bytes()).js()
    }

    /// Decrypts a `GET /v3/certificates` body into `[{ serialNo, effectiveTime, expireTime,
    /// notBefore, notAfter, pem }]`. Verify the response signature first.
    ///
    /// # Errors
    /// `malformed`, `decrypt_failed`, `invalid_key`.
    #[wasm_bindgen(js_name = decryptCertificates)]
    pub fn decrypt_certificates(&self, body: &JsValue) -> JsResult<JsValue> {
        let certs = v3::decrypt_certificates(&self.inner, &bytes_of(body)?).js()?;
        Ok(certificates_array(&certs).into())
    }
}

/// `{ id, createTime, eventType, resourceType, summary, resource: { originalType, algorithm,
/// ciphertext, associatedData, nonce }, plaintext }`.
fn notification_object(n: &v3::Notification) -> Object {
    let r = &n.resource;
    glue::notification_object(&[
        &n.id,
        &n.create_time,
        &n.event_type,
        &n.resource_type,
        &n.summary,
        &r.original_type,
        &r.algorithm,
        &r.ciphertext,
        &r.associated_data,
        &r.nonce,
        &n.plaintext,
    ])
}

/// `[{ serialNo, effectiveTime, expireTime, notBefore, notAfter, pem }]`.
fn certificates_array(certs: &[v3::DownloadedCertificate]) -> Array {
    let s = |v: &str| JsValue::from_str(v);
    // Unix seconds are far inside f64's exact integer range.
    #[allow(clippy::cast_precision_loss)]
    let n = |v: i64| JsValue::from_f64(v as f64);
    certs
        .iter()
        .map(|c| {
            JsValue::from(object_of(&[
                ("serialNo", &s(&c.serial_no)),
                ("effectiveTime", &s(&c.effective_time)),
                ("expireTime", &s(&c.expire_time)),
                ("notBefore", &n(c.not_before)),
                ("notAfter", &n(c.not_after)),
                ("pem", &s(&c.pem)),
            ]))
        })
        .collect()
}

/// The `wx.requestPayment` object `{ appId, timeStamp, nonceStr, package, signType, paySign }`
/// (the same shape for v2 and v3).
fn payment_object(
    app_id: &str,
    time_stamp: &str,
    nonce_str: &str,
    package: &str,
    sign_type: &str,
    pay_sign: &str,
) -> Object {
    glue::payment_object(&[app_id, time_stamp, nonce_str, package, sign_type, pay_sign])
}

/// An object of strings from a map (v2 fields).
fn map_object(map: &BTreeMap<String, String>) -> Object {
    glue::map_object(map.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

// ---------------------------------------------------------------------------------------------
// Nonces and diagnostics

/// A 32-character `[0-9A-Za-z]` nonce from `crypto.getRandomValues`.
#[wasm_bindgen(js_name = nonceStr)]
#[must_use]
pub fn nonce_str() -> String {
    wxpay_core::nonce_str(&mut rng())
}

/// The decimal seconds string for `timestamp` / `timeStamp` (default: the clock).
///
/// # Errors
/// `malformed` for a bad `now`.
#[wasm_bindgen]
pub fn timestamp(now: Option<f64>) -> JsResult<String> {
    Ok(wxpay_core::timestamp(now_or_clock(now)?))
}

/// The exact text an APIv3 request signature covers (diagnostics).
#[wasm_bindgen(js_name = requestMessage)]
#[must_use]
pub fn request_message(
    method: &str,
    url: &str,
    timestamp: &str,
    nonce_str: &str,
    body: &str,
) -> String {
    v3::request_message(method, url, timestamp, nonce_str, body)
}

/// The exact text a `paySign` covers (diagnostics).
#[wasm_bindgen(js_name = paySignMessage)]
#[must_use]
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    v3::pay_sign_message(app_id, time_stamp, nonce_str, package)
}

/// The exact text a response or notification signature covers (diagnostics).
#[wasm_bindgen(js_name = responseMessage)]
pub fn response_message(timestamp: &str, nonce: &str, body: &JsValue) -> JsResult<String> {
    let m = v3::response_message(timestamp, nonce, &bytes_of(body)?);
    String::from_utf8(m).map_err(|_| malformed("body is not UTF-8"))
}

// ---------------------------------------------------------------------------------------------
// APIv2

fn sign_type(s: Option<String>) -> JsResult<v2::SignType> {
    s.as_deref().unwrap_or("MD5").parse().js()
}

/// APIv2 signature: `{ stringToSign, sign }` (upper-case hex) with `"MD5"` (default) or
/// `"HMAC-SHA256"`.
///
/// # Errors
/// `malformed` for bad params or sign type.
#[wasm_bindgen(js_name = v2Sign)]
pub fn v2_sign(params: &JsValue, key: &str, sign_type_: Option<String>) -> JsResult<JsValue> {
    let signed = v2::sign(
        &params_of(params)?,
        &v2::ApiV2Key::new(key),
        sign_type(sign_type_)?,
    );
    Ok(glue::signed_object(&signed.string_to_sign, &signed.sign).into())
}

/// The APIv2 canonical string (sorted `k=v&…` without `sign`, empty values and `&key=`).
///
/// # Errors
/// `malformed` for bad params.
#[wasm_bindgen(js_name = v2CanonicalString)]
pub fn v2_canonical_string(params: &JsValue) -> JsResult<String> {
    Ok(v2::canonical_string(&params_of(params)?))
}

/// Checks `params.sign`.
///
/// # Errors
/// `signature_mismatch`, `malformed`.
#[wasm_bindgen(js_name = v2Verify)]
pub fn v2_verify(params: &JsValue, key: &str, sign_type_: Option<String>) -> JsResult<()> {
    v2::verify(
        &params_of(params)?,
        &v2::ApiV2Key::new(key),
        sign_type(sign_type_)?,
    )
    .js()
}

/// Parses an APIv2 XML body (no DTDs or entities) into an object of strings.
///
/// # Errors
/// `malformed`.
#[wasm_bindgen(js_name = v2ParseXml)]
pub fn v2_parse_xml(xml: &str) -> JsResult<JsValue> {
    Ok(map_object(&v2::parse_xml(xml).js()?).into())
}

/// Verifies an APIv2 XML notification; the sign type is the order's (default `"MD5"`) unless
/// the notification names one. Returns the fields.
///
/// # Errors
/// `malformed`, `signature_mismatch`.
#[wasm_bindgen(js_name = v2VerifyNotification)]
pub fn v2_verify_notification(
    xml: &str,
    key: &str,
    sign_type_: Option<String>,
) -> JsResult<JsValue> {
    let fields =
        v2::verify_notification(xml, &v2::ApiV2Key::new(key), sign_type(sign_type_)?).js()?;
    Ok(map_object(&fields).into())
}

/// Signs `params` and renders the APIv2 XML request body.
///
/// # Errors
/// `malformed`.
#[wasm_bindgen(js_name = v2SignedXml)]
pub fn v2_signed_xml(params: &JsValue, key: &str, sign_type_: Option<String>) -> JsResult<String> {
    let params = params_of(params)?;
    v2::signed_xml(&params, &v2::ApiV2Key::new(key), sign_type(sign_type_)?)
        .map(|s| s.xml)
        .js()
}

/// The XML reply to an APIv2 notification.
#[wasm_bindgen(js_name = v2ReplyXml)]
#[must_use]
pub fn v2_reply_xml(ok: bool, message: &str) -> String {
    v2::reply_xml(ok, message)
}

/// Decrypts a refund notification's `req_info` (AES-256-ECB keyed with MD5 of the APIv2 key).
///
/// # Errors
/// `malformed`, `decrypt_failed`.
#[wasm_bindgen(js_name = v2DecryptReqInfo)]
pub fn v2_decrypt_req_info(req_info: &str, key: &str) -> JsResult<String> {
    v2::decrypt_req_info(req_info, &v2::ApiV2Key::new(key)).js()
}

/// The APIv2 `wx.requestPayment` object `{ appId, timeStamp, nonceStr, package, signType,
/// paySign }`. `options`: `{ timeStamp?, nonceStr?, now? }`.
///
/// # Errors
/// `malformed`.
#[wasm_bindgen(js_name = v2RequestPayment)]
pub fn v2_request_payment(
    key: &str,
    sign_type_: Option<String>,
    app_id: &str,
    prepay_id: &str,
    options: Option<Object>,
) -> JsResult<JsValue> {
    let options: JsValue = options.into();
    let (time_stamp, nonce) = stamp_and_nonce(&options, "timeStamp", &mut rng())?;
    let r = v2::request_payment(
        &v2::ApiV2Key::new(key),
        sign_type(sign_type_)?,
        app_id,
        &time_stamp,
        &nonce,
        prepay_id,
    );
    Ok(payment_object(
        &r.app_id,
        &r.time_stamp,
        &r.nonce_str,
        &r.package,
        r.sign_type.as_str(),
        &r.pay_sign,
    )
    .into())
}
