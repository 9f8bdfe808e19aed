//! Reading WeChat Pay's APIv3 error answers, signed or not, and the diagnostics of a rejected
//! request signature.
//!
//! WeChat Pay answers every error with `{"code","message","detail"?}` (APIv3 "错误码"), but it
//! does not sign the answer to a request whose own signature it rejected (401 `SIGN_ERROR`): its
//! `detail.sign_information.truncated_sign_message` shows the message WeChat reconstructed. So
//! the body is read whether or not it verifies, and the caller records which it was.

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// An APIv3 error body as WeChat sends it. Fields WeChat left out are empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// WeChat's error code, e.g. `SIGN_ERROR`, `ORDER_NOT_EXIST`; empty if the body had none.
    pub code: String,
    /// WeChat's message (often Chinese), e.g. `错误的签名，验签失败`.
    pub message: String,
    /// `detail` as compact JSON text, if present (may hold request data: log, never send).
    pub detail: Option<String>,
    /// `detail.sign_information.truncated_sign_message` of a `SIGN_ERROR`.
    pub truncated_sign_message: Option<String>,
    /// `detail.sign_information.sign_message_length` of a `SIGN_ERROR`.
    pub sign_message_length: Option<u64>,
}

impl ErrorBody {
    /// Parses an error body leniently: anything that is not WeChat's error object gives empty
    /// fields (a proxy's HTML error page, an empty body), never a failure.
    #[must_use]
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        struct Raw {
            #[serde(default)]
            code: Option<String>,
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            detail: Option<serde_json::Value>,
        }
        let Ok(raw) = serde_json::from_slice::<Raw>(body) else {
            return Self::default();
        };
        let sign_info = raw.detail.as_ref().and_then(|d| d.get("sign_information"));
        Self {
            code: raw.code.unwrap_or_default(),
            message: raw.message.unwrap_or_default(),
            truncated_sign_message: sign_info
                .and_then(|s| s.get("truncated_sign_message"))
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
            sign_message_length: sign_info
                .and_then(|s| s.get("sign_message_length"))
                .and_then(serde_json::Value::as_u64),
            detail: raw.detail.map(|d| d.to_string()),
        }
    }
}

/// SHA-256 (lower hex) of what was signed: enough to compare with WeChat's report without
/// logging the message (it names the payer).
#[must_use]
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What the host signed for one request: enough to compare with WeChat's
/// `truncated_sign_message`, and nothing secret (no key, no signature).
#[derive(Clone, Debug)]
pub struct SignedRequest {
    /// HTTP method.
    pub method: String,
    /// The full URL the request went to.
    pub url: String,
    /// The `timestamp` of the `Authorization` header.
    pub timestamp: String,
    /// The `nonce_str` of the `Authorization` header.
    pub nonce: String,
    /// The exact signed message `METHOD\nURL\ntimestamp\nnonce\nbody\n` (it holds the request
    /// body, which may carry an openid: compared and hashed here, never logged).
    message: String,
}

impl SignedRequest {
    /// Records a signed request.
    #[must_use]
    pub fn new(method: &str, url: &str, timestamp: &str, nonce: &str, message: String) -> Self {
        Self {
            method: method.to_owned(),
            url: url.to_owned(),
            timestamp: timestamp.to_owned(),
            nonce: nonce.to_owned(),
            message,
        }
    }

    /// SHA-256 (hex) of the exact signed message.
    #[must_use]
    pub fn message_sha256(&self) -> String {
        sha256_hex(self.message.as_bytes())
    }

    /// Length in bytes of the signed message (WeChat reports its `sign_message_length`).
    #[must_use]
    pub fn message_len(&self) -> usize {
        self.message.len()
    }

    /// Whether WeChat's `truncated_sign_message` is the start of what we signed (WeChat may
    /// cut it and mark the cut with `...`). `None` when WeChat sent none.
    #[must_use]
    pub fn matches_truncated(&self, truncated: Option<&str>) -> Option<bool> {
        let t = truncated?;
        let t = t.strip_suffix("...").unwrap_or(t);
        Some(!t.is_empty() && self.message.starts_with(t))
    }
}

/// Logs a rejected request signature (401 `SIGN_ERROR`) with what the host signed, so an
/// operator can compare it with WeChat's `truncated_sign_message` (also in the log: it is
/// WeChat's copy of a message we sent, minus secrets). The merchant key and the signature are
/// never logged.
pub fn log_sign_error(endpoint: &str, status: u16, err: &ErrorBody, sent: &SignedRequest) {
    tracing::warn!(
        endpoint,
        status,
        wechat_code = %err.code,
        wechat_message = %err.message,
        method = %sent.method,
        url = %sent.url,
        timestamp = %sent.timestamp,
        nonce = %sent.nonce,
        sign_message_sha256 = %sent.message_sha256(),
        sign_message_len = sent.message_len(),
        wechat_sign_message_len = ?err.sign_message_length,
        wechat_truncated_sign_message = ?err.truncated_sign_message,
        truncated_sign_message_matches = ?sent.matches_truncated(err.truncated_sign_message.as_deref()),
        "WeChat Pay rejected the request signature (SIGN_ERROR): check that WXPAY_MERCHANT_KEY_FILE \
         is the private key of the certificate WXPAY_MERCHANT_SERIAL, that WXPAY_MCHID is right, \
         and that the clock is correct; compare the message above with what was signed"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sign_error_detail() {
        let body = r#"{"code":"SIGN_ERROR","message":"错误的签名，验签失败","detail":{"detail":{"issue":"sign not match"},"field":"signature","location":"authorization","sign_information":{"method":"GET","sign_message_length":66,"truncated_sign_message":"GET\n/v3/certificates\n1721639012\n0deQ381ci7pNj9lUyMHW\n\n","url":"/v3/certificates"}}}"#;
        let e = ErrorBody::parse(body.as_bytes());
        assert_eq!(e.code, "SIGN_ERROR");
        assert_eq!(e.sign_message_length, Some(66));
        let sent = SignedRequest::new(
            "GET",
            "https://api.mch.weixin.qq.com/v3/certificates",
            "1721639012",
            "0deQ381ci7pNj9lUyMHW",
            "GET\n/v3/certificates\n1721639012\n0deQ381ci7pNj9lUyMHW\n\n".into(),
        );
        assert_eq!(
            sent.matches_truncated(e.truncated_sign_message.as_deref()),
            Some(true)
        );
        assert_eq!(sent.matches_truncated(Some("POST\n...")), Some(false));
        assert_eq!(sent.matches_truncated(Some("GET\n/v3/cert...")), Some(true));
        assert_eq!(sent.message_sha256().len(), 64);
    }

    #[test]
    fn anything_else_is_empty() {
        for body in [&b""[..], b"<html>502</html>", b"[]", br#"{"code":7}"#] {
            assert_eq!(ErrorBody::parse(body), ErrorBody::default());
        }
    }
}
