//! APIv2: MD5 / HMAC-SHA256 signatures over the canonical parameter string, XML bodies and
//! notifications, the v2 `wx.requestPayment` parameters and refund `req_info` decryption.
//! (WeChat Pay APIv2, "安全规范": 签名算法.)

mod req_info;
mod xml;

pub use req_info::decrypt_req_info;
pub use xml::{MAX_XML_LEN, parse_xml, reply_xml, to_xml};

use crate::provider::{CryptoProvider, rustcrypto};
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// The merchant's APIv2 key (`key` in the merchant platform), zeroized on drop; `Debug`
/// redacts it.
///
/// Its digests (MD5, HMAC-SHA256) run in the core unless a provider is attached with
/// [`ApiV2Key::with_provider`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiV2Key {
    key: Vec<u8>,
    #[zeroize(skip)]
    provider: &'static dyn CryptoProvider,
}

impl fmt::Debug for ApiV2Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV2Key(<redacted>)")
    }
}

impl ApiV2Key {
    /// Wraps the key. WeChat issues 32-character keys; the algorithm itself accepts any length,
    /// so no length is enforced here.
    #[must_use]
    pub fn new(key: &str) -> Self {
        Self {
            key: key.as_bytes().to_vec(),
            provider: &rustcrypto::PROVIDER,
        }
    }

    /// Computes the digests through `provider` ([`CryptoProvider::md5`],
    /// [`CryptoProvider::hmac_sha256`]).
    #[must_use]
    pub fn with_provider(mut self, provider: &'static dyn CryptoProvider) -> Self {
        self.provider = provider;
        self
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.key
    }

    pub(crate) fn provider(&self) -> &'static dyn CryptoProvider {
        self.provider
    }
}

/// The APIv2 signature algorithm (`sign_type` / `signType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SignType {
    /// `MD5`: upper-case hex MD5 of `canonical&key=KEY` (the default when `sign_type` is absent).
    #[serde(rename = "MD5")]
    Md5,
    /// `HMAC-SHA256`: upper-case hex HMAC-SHA256 of `canonical&key=KEY`, keyed with KEY.
    #[serde(rename = "HMAC-SHA256")]
    HmacSha256,
}

impl SignType {
    /// The wire name (`MD5` or `HMAC-SHA256`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::HmacSha256 => "HMAC-SHA256",
        }
    }
}

impl FromStr for SignType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "MD5" => Ok(Self::Md5),
            "HMAC-SHA256" => Ok(Self::HmacSha256),
            _ => Err(Error::Malformed("sign_type must be MD5 or HMAC-SHA256")),
        }
    }
}

impl fmt::Display for SignType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signature together with the exact string it was computed over (without `&key=…`), to
/// compare with what WeChat Pay reports when it answers "签名错误".
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signed {
    /// `k=v&k=v…` as signed (the key suffix omitted).
    pub string_to_sign: String,
    /// Upper-case hex signature.
    pub sign: String,
}

/// The canonical string: keys in ASCII order, `sign` and empty values skipped, `k=v` joined by
/// `&`, values as they are (no URL encoding).
#[must_use]
pub fn canonical_string(params: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (k, v) in params {
        if k == "sign" || v.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

fn upper_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 15)]));
    }
    s
}

fn digest(canonical: &str, key: &ApiV2Key, sign_type: SignType) -> String {
    // The key is appended as `&key=KEY`, even when the canonical string is empty.
    let parts: [&[u8]; 3] = [canonical.as_bytes(), b"&key=", key.expose()];
    match sign_type {
        SignType::Md5 => upper_hex(&key.provider().md5(&parts)),
        SignType::HmacSha256 => upper_hex(&key.provider().hmac_sha256(key.expose(), &parts)),
    }
}

/// Signs `params` (any `sign` entry is ignored).
#[must_use]
pub fn sign(params: &BTreeMap<String, String>, key: &ApiV2Key, sign_type: SignType) -> Signed {
    let string_to_sign = canonical_string(params);
    let sign = digest(&string_to_sign, key, sign_type);
    Signed {
        string_to_sign,
        sign,
    }
}

/// Verifies `params["sign"]` over the other parameters, in constant time, accepting either hex
/// case.
///
/// # Errors
/// [`Error::SignatureMismatch`] if `sign` is missing or does not match.
pub fn verify(
    params: &BTreeMap<String, String>,
    key: &ApiV2Key,
    sign_type: SignType,
) -> Result<()> {
    let received = params.get("sign").ok_or(Error::SignatureMismatch)?;
    let expected = digest(&canonical_string(params), key, sign_type);
    let received = received.to_ascii_uppercase();
    if bool::from(expected.as_bytes().ct_eq(received.as_bytes())) {
        Ok(())
    } else {
        Err(Error::SignatureMismatch)
    }
}

/// Parses and verifies an APIv2 notification (payment result, etc.) over every field received.
///
/// `order_sign_type` is the sign type the order was placed with. A `sign_type` field in the
/// notification may name a *stronger* algorithm (an MD5 order answered with HMAC-SHA256, as
/// WeChat does), never a weaker one: the message is what an attacker controls, so an
/// HMAC-SHA256 order whose notification claims `MD5` is rejected whatever its signature, or a
/// forger could fall back to the weaker algorithm.
///
/// # Errors
/// [`Error::Malformed`] for bad XML or an unknown `sign_type`; [`Error::SignatureMismatch`] for
/// a missing or wrong `sign`, or a `sign_type` weaker than `order_sign_type`.
pub fn verify_notification(
    xml: &str,
    key: &ApiV2Key,
    order_sign_type: SignType,
) -> Result<BTreeMap<String, String>> {
    let fields = parse_xml(xml)?;
    let sign_type = match fields.get("sign_type") {
        Some(s) => match (order_sign_type, s.parse()?) {
            (SignType::HmacSha256, SignType::Md5) => return Err(Error::SignatureMismatch),
            (_, claimed) => claimed,
        },
        None => order_sign_type,
    };
    verify(&fields, key, sign_type)?;
    Ok(fields)
}

/// A signed XML request body and what went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedXml {
    /// The canonical string that was signed (without `&key=…`).
    pub string_to_sign: String,
    /// The signature placed in the `sign` field.
    pub sign: String,
    /// The `<xml>…</xml>` body to send.
    pub xml: String,
}

/// A signed XML request body (e.g. for `unifiedorder`): `params` plus `sign`.
///
/// When signing with HMAC-SHA256, include `sign_type=HMAC-SHA256` in `params` (WeChat reads it
/// to choose the algorithm).
///
/// # Errors
/// [`Error::Malformed`] if a parameter name is not a valid XML element name.
pub fn signed_xml(
    params: &BTreeMap<String, String>,
    key: &ApiV2Key,
    sign_type: SignType,
) -> Result<SignedXml> {
    let signed = sign(params, key, sign_type);
    let mut all = params.clone();
    all.insert("sign".to_owned(), signed.sign.clone());
    Ok(SignedXml {
        xml: to_xml(&all)?,
        string_to_sign: signed.string_to_sign,
        sign: signed.sign,
    })
}

/// The v2 `wx.requestPayment` parameters, serialized with WeChat's camelCase names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPaymentV2 {
    /// `appId` (signed, though `wx.requestPayment` does not take it).
    pub app_id: String,
    /// `timeStamp`, decimal seconds.
    pub time_stamp: String,
    /// `nonceStr`.
    pub nonce_str: String,
    /// `package`: `prepay_id=…`.
    pub package: String,
    /// `signType`: `MD5` or `HMAC-SHA256`.
    pub sign_type: SignType,
    /// `paySign`.
    pub pay_sign: String,
    /// The string that was signed (diagnostics; do not send it to the client).
    #[serde(skip)]
    pub string_to_sign: String,
}

/// Builds and signs the v2 `wx.requestPayment` parameters.
#[must_use]
pub fn request_payment(
    key: &ApiV2Key,
    sign_type: SignType,
    app_id: &str,
    time_stamp: &str,
    nonce_str: &str,
    prepay_id: &str,
) -> RequestPaymentV2 {
    let package = format!("prepay_id={prepay_id}");
    let params: BTreeMap<String, String> = [
        ("appId", app_id),
        ("timeStamp", time_stamp),
        ("nonceStr", nonce_str),
        ("package", package.as_str()),
        ("signType", sign_type.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let signed = sign(&params, key, sign_type);
    RequestPaymentV2 {
        app_id: app_id.to_owned(),
        time_stamp: time_stamp.to_owned(),
        nonce_str: nonce_str.to_owned(),
        package,
        sign_type,
        pay_sign: signed.sign,
        string_to_sign: signed.string_to_sign,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn map(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    #[test]
    fn spec_example() {
        let p = map(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ]);
        assert_eq!(
            sign(&p, &ApiV2Key::new(KEY), SignType::Md5).sign,
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    /// A provider whose digests are constants: shows that signing goes through the key's
    /// provider and only the digest comes from it.
    #[derive(Debug)]
    struct ConstDigests;

    impl CryptoProvider for ConstDigests {
        fn name(&self) -> &'static str {
            "const"
        }
        fn private_key(&self, _: &[u8]) -> Result<Box<dyn crate::provider::RsaPrivateKey>> {
            Err(Error::InvalidKey("none"))
        }
        fn public_key(&self, _: &[u8]) -> Result<Box<dyn crate::provider::RsaPublicKey>> {
            Err(Error::InvalidKey("none"))
        }
        fn md5(&self, _: &[&[u8]]) -> [u8; 16] {
            [0xab; 16]
        }
        fn hmac_sha256(&self, _: &[u8], _: &[&[u8]]) -> [u8; 32] {
            [0x01; 32]
        }
    }

    static CONST_DIGESTS: ConstDigests = ConstDigests;

    #[test]
    fn digests_come_from_the_keys_provider() {
        let p = map(&[("appid", "wx1"), ("body", "b")]);
        let k = ApiV2Key::new(KEY).with_provider(&CONST_DIGESTS);
        let md5 = sign(&p, &k, SignType::Md5);
        assert_eq!(md5.sign, "AB".repeat(16));
        assert_eq!(md5.string_to_sign, "appid=wx1&body=b");
        assert_eq!(sign(&p, &k, SignType::HmacSha256).sign, "01".repeat(32));
        // The default provider is the core's own code.
        assert_eq!(
            sign(&p, &ApiV2Key::new(KEY), SignType::Md5).sign,
            sign(
                &p,
                &ApiV2Key::new(KEY).with_provider(&rustcrypto::PROVIDER),
                SignType::Md5
            )
            .sign
        );
    }

    #[test]
    fn request_payment_signs_its_own_sign_type() {
        let k = ApiV2Key::new(KEY);
        let r = request_payment(&k, SignType::HmacSha256, "wx1", "1", "n", "p");
        assert!(r.string_to_sign.contains("signType=HMAC-SHA256"));
        let json = serde_json::to_value(&r).expect("json");
        assert_eq!(json["signType"], "HMAC-SHA256");
        assert_eq!(json["package"], "prepay_id=p");
        assert!(json.get("string_to_sign").is_none() && json.get("stringToSign").is_none());
    }

    #[test]
    fn signed_xml_verifies_as_a_notification() {
        let k = ApiV2Key::new(KEY);
        let p = map(&[
            ("appid", "wx1"),
            ("body", "a&b"),
            ("sign_type", "HMAC-SHA256"),
        ]);
        let signed = signed_xml(&p, &k, SignType::HmacSha256).expect("xml");
        let body = signed.xml;
        assert!(body.contains(&format!("<sign><![CDATA[{}]]></sign>", signed.sign)));
        verify_notification(&body, &k, SignType::Md5).expect("verifies");
        assert_eq!(
            verify_notification(&body, &ApiV2Key::new("x"), SignType::Md5).expect_err("key"),
            Error::SignatureMismatch
        );
        assert_eq!(
            "SHA1".parse::<SignType>().expect_err("bad").code(),
            "malformed"
        );
    }

    #[test]
    fn notification_sign_type_may_upgrade_but_never_downgrade() {
        let k = ApiV2Key::new(KEY);
        let md5 = map(&[("appid", "wx1"), ("total_fee", "1"), ("sign_type", "MD5")]);
        let hmac = map(&[
            ("appid", "wx1"),
            ("total_fee", "1"),
            ("sign_type", "HMAC-SHA256"),
        ]);
        let md5_xml = signed_xml(&md5, &k, SignType::Md5).expect("xml").xml;
        let hmac_xml = signed_xml(&hmac, &k, SignType::HmacSha256)
            .expect("xml")
            .xml;
        // Upgrade: an MD5 order answered with HMAC-SHA256.
        verify_notification(&hmac_xml, &k, SignType::Md5).expect("upgrade");
        verify_notification(&hmac_xml, &k, SignType::HmacSha256).expect("same");
        verify_notification(&md5_xml, &k, SignType::Md5).expect("same");
        // Downgrade: an HMAC-SHA256 order, a correctly MD5-signed message claiming MD5.
        assert_eq!(
            verify_notification(&md5_xml, &k, SignType::HmacSha256),
            Err(Error::SignatureMismatch)
        );
    }

    proptest! {
        /// `signed_xml` → `verify_notification` for any printable values, CR, LF and tab
        /// included (a CR once came back as LF and broke the signature).
        #[test]
        fn signed_xml_round_trips_through_verify_notification(
            p in proptest::collection::btree_map("[a-z_][a-z0-9_]{0,8}", "(\\PC|[\r\n\t]){0,20}", 0..8),
            hmac in any::<bool>(),
        ) {
            let k = ApiV2Key::new(KEY);
            let (t, mut p) = (if hmac { SignType::HmacSha256 } else { SignType::Md5 }, p);
            p.remove("sign");
            p.remove("sign_type");
            let signed = signed_xml(&p, &k, t).expect("xml");
            let fields = verify_notification(&signed.xml, &k, t).expect("verifies");
            p.insert("sign".into(), signed.sign);
            prop_assert_eq!(fields, p);
        }

        #[test]
        fn sign_then_verify(p in proptest::collection::btree_map("[a-z_]{1,8}", ".{0,20}", 0..8),
                            hmac in any::<bool>()) {
            let k = ApiV2Key::new(KEY);
            let t = if hmac { SignType::HmacSha256 } else { SignType::Md5 };
            let mut p = p;
            let s = sign(&p, &k, t).sign;
            p.insert("sign".into(), s.to_ascii_lowercase());
            prop_assert!(verify(&p, &k, t).is_ok());
            p.insert("sign".into(), "0".repeat(s.len()));
            prop_assert_eq!(verify(&p, &k, t), Err(Error::SignatureMismatch));
        }

        #[test]
        fn notification_never_panics(s in ".{0,300}") {
            let _ = verify_notification(&s, &ApiV2Key::new(KEY), SignType::Md5);
        }
    }
}
