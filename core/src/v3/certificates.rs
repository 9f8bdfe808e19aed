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
