//! `GET /v3/certificates`: the platform certificates, each encrypted with the APIv3 key.
//! (WeChat Pay APIv3, "下载平台证书".) Verify the response signature first: with the
//! certificates already held, or — on first download, when none is held — by checking the
//! response against a certificate it carries itself (see the host).

use crate::aead::{self, ApiV3Key};
use crate::keys::parse_certificate_pem;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// A decrypted platform certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DownloadedCertificate {
    /// The serial WeChat lists (checked against the certificate itself).
    pub serial_no: String,
    /// `effective_time`, RFC 3339, as listed.
    pub effective_time: String,
    /// `expire_time`, RFC 3339, as listed.
    pub expire_time: String,
    /// `notBefore` of the certificate, unix seconds.
    pub not_before: i64,
    /// `notAfter` of the certificate, unix seconds.
    pub not_after: i64,
    /// The certificate PEM.
    pub pem: String,
}

#[derive(Deserialize)]
struct Body {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    serial_no: String,
    #[serde(default)]
    effective_time: String,
    #[serde(default)]
    expire_time: String,
    encrypt_certificate: super::EncryptedResource,
}

/// Decrypts every certificate of a `/v3/certificates` response body.
///
/// # Errors
/// [`Error::Malformed`] for a body that is not the documented JSON, or a certificate whose own
/// serial differs from the listed `serial_no`; [`Error::DecryptFailed`] if one does not decrypt
/// with `api_v3_key`; [`Error::InvalidKey`] if one is not an X.509 certificate.
pub fn decrypt_certificates(
    api_v3_key: &ApiV3Key,
    body: &[u8],
) -> Result<Vec<DownloadedCertificate>> {
    let body: Body =
        serde_json::from_slice(body).map_err(|_| Error::Malformed("not a certificate list"))?;
    body.data
        .into_iter()
        .map(|item| {
            let r = &item.encrypt_certificate;
            if r.algorithm != "AEAD_AES_256_GCM" {
                return Err(Error::Malformed("unsupported certificate algorithm"));
            }
            let pem = aead::decrypt(api_v3_key, &r.nonce, &r.associated_data, &r.ciphertext)?;
            let info = parse_certificate_pem(&pem)?;
            if !info.serial_no.eq_ignore_ascii_case(&item.serial_no) {
                return Err(Error::Malformed(
                    "certificate serial differs from serial_no",
                ));
            }
            Ok(DownloadedCertificate {
                serial_no: info.serial_no,
                effective_time: item.effective_time,
                expire_time: item.expire_time,
                not_before: info.not_before,
                not_after: info.not_after,
                pem,
            })
        })
        .collect()
}

/// Verifies a `/v3/certificates` response and decrypts it. The response signature is checked
/// with the platform key its `Wechatpay-Serial` names: one already held in `keys`, or — on the
/// first download, when none is held — one of the certificates in the response itself (which
/// only decrypt with the merchant's APIv3 key, so they cannot be forged by a third party).
///
/// # Errors
/// Everything [`super::verify_response`] and [`decrypt_certificates`] return.
pub fn verify_certificates_response(
    provider: &dyn crate::CryptoProvider,
    keys: &crate::PlatformKeys,
    api_v3_key: &ApiV3Key,
    headers: &super::WechatpayHeaders,
    body: &[u8],
    now: u64,
) -> Result<Vec<DownloadedCertificate>> {
    let certs = decrypt_certificates(api_v3_key, body)?;
    if keys.contains(&headers.serial) {
        super::verify_response(keys, headers, body, now)?;
    } else {
        let mut fresh = crate::PlatformKeys::new();
        for c in &certs {
            fresh.insert_certificate_pem(provider, &c.pem)?;
        }
        super::verify_response(&fresh, headers, body, now)?;
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::default_provider;
    use crate::v3::{WechatpayHeaders, sign_response};
    use crate::{MerchantSigner, PlatformKeys};

    const PLATFORM: &str = include_str!("../../../tests/vectors/keys/platform_private_key.pem");
    const VECTORS: &str = include_str!("../../../tests/vectors/v3_certificates.json");

    #[test]
    fn first_download_verifies_with_its_own_certificate() {
        let v: serde_json::Value = serde_json::from_str(VECTORS).expect("json");
        let body = v["cases"][0]["body"].as_str().expect("body").as_bytes();
        let key = ApiV3Key::new(v["cases"][0]["api_v3_key"].as_str().expect("key")).expect("key");
        let p = default_provider();
        let serial = "5157F09EFDC096DE15EBE81A47057A7232F8BB6B";
        let platform = MerchantSigner::from_pem(p, PLATFORM, "x", serial).expect("platform");
        let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
        let sig = sign_response(&platform, &mut rng, "1000", "n", body).expect("sign");
        let h = |sig: &str, serial: &str| {
            WechatpayHeaders::from_pairs([
                ("Wechatpay-Timestamp", "1000"),
                ("Wechatpay-Nonce", "n"),
                ("Wechatpay-Signature", sig),
                ("Wechatpay-Serial", serial),
            ])
            .expect("headers")
        };
        let empty = PlatformKeys::new();
        let certs = verify_certificates_response(p, &empty, &key, &h(&sig, serial), body, 1000)
            .expect("verifies");
        assert_eq!(certs[0].serial_no, serial);
        let bad = sign_response(&platform, &mut rng, "1000", "m", body).expect("sign");
        assert_eq!(
            verify_certificates_response(p, &empty, &key, &h(&bad, serial), body, 1000)
                .expect_err("wrong nonce"),
            Error::SignatureMismatch
        );
        assert_eq!(
            verify_certificates_response(p, &empty, &key, &h(&sig, "ABCD"), body, 1000)
                .expect_err("serial"),
            Error::UnknownSerial
        );
    }
}
