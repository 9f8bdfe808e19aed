//! Verifying what WeChat Pay sends: response and notification signatures.
//!
//! The signed message is `Wechatpay-Timestamp\nWechatpay-Nonce\nbody\n` over the body bytes
//! exactly as received (never re-serialized), signed by the platform key that
//! `Wechatpay-Serial` names.

use crate::keys::{MerchantSigner, PlatformKeys};
use crate::{Error, Result};
use rand_core::CryptoRng;

/// The largest accepted `|now − Wechatpay-Timestamp|`, in seconds (WeChat recommends 5 minutes).
pub const MAX_CLOCK_SKEW: u64 = 300;

/// Prefix of the probe signatures WeChat Pay sends to check that merchants really verify.
pub const SIGNTEST_PREFIX: &str = "WECHATPAY/SIGNTEST/";

/// The four `Wechatpay-*` headers of a response or notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WechatpayHeaders {
    /// `Wechatpay-Timestamp`, decimal seconds.
    pub timestamp: u64,
    /// `Wechatpay-Nonce`.
    pub nonce: String,
    /// `Wechatpay-Signature`, base64.
    pub signature: String,
    /// `Wechatpay-Serial`: a certificate serial or a `PUB_KEY_ID_…`.
    pub serial: String,
    /// The raw `Wechatpay-Timestamp` text (the signature covers the text, not the number).
    timestamp_text: String,
}

impl WechatpayHeaders {
    /// Picks the `Wechatpay-*` headers out of all headers (names compared case-insensitively).
    ///
    /// # Errors
    /// [`Error::Malformed`] if `Wechatpay-Timestamp`, `-Nonce`, `-Signature` or `-Serial` is
    /// missing or repeated, the timestamp is not decimal, or `Wechatpay-Signature-Type` is present
    /// with another scheme than `WECHATPAY2-SHA256-RSA2048`.
    pub fn from_pairs<'a, I>(headers: I) -> Result<Self>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut found: [Option<&str>; 5] = [None; 5];
        const NAMES: [&str; 5] = [
            "wechatpay-timestamp",
            "wechatpay-nonce",
            "wechatpay-signature",
            "wechatpay-serial",
            "wechatpay-signature-type",
        ];
        for (name, value) in headers {
            if let Some(i) = NAMES
                .iter()
                .position(|n| name.trim().eq_ignore_ascii_case(n))
                && found[i].replace(value.trim()).is_some()
            {
                return Err(Error::Malformed("repeated Wechatpay header"));
            }
        }
        let [ts, nonce, signature, serial, sig_type] = found;
        let ts = ts.ok_or(Error::Malformed("missing Wechatpay-Timestamp"))?;
        let nonce = nonce.ok_or(Error::Malformed("missing Wechatpay-Nonce"))?;
        let signature = signature.ok_or(Error::Malformed("missing Wechatpay-Signature"))?;
        let serial = serial.ok_or(Error::Malformed("missing Wechatpay-Serial"))?;
        if let Some(t) = sig_type
            && t != super::AUTH_SCHEME
        {
            return Err(Error::Malformed("unsupported Wechatpay-Signature-Type"));
        }
        if ts.is_empty() || ts.len() > 19 || !ts.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Malformed(
                "Wechatpay-Timestamp is not decimal seconds",
            ));
        }
        let timestamp = ts
            .parse()
            .map_err(|_| Error::Malformed("Wechatpay-Timestamp is not decimal seconds"))?;
        Ok(Self {
            timestamp,
            nonce: nonce.to_owned(),
            signature: signature.to_owned(),
            serial: serial.to_owned(),
            timestamp_text: ts.to_owned(),
        })
    }

    /// Whether the signature is a `WECHATPAY/SIGNTEST/` probe.
    #[must_use]
    pub fn is_probe(&self) -> bool {
        self.signature.starts_with(SIGNTEST_PREFIX)
    }
}

/// `timestamp\nnonce\nbody\n` as bytes.
#[must_use]
pub fn response_message(timestamp: &str, nonce: &str, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(timestamp.len() + nonce.len() + body.len() + 3);
    m.extend_from_slice(timestamp.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(nonce.as_bytes());
    m.push(b'\n');
    m.extend_from_slice(body);
    m.push(b'\n');
    m
}

/// Verifies an APIv3 response (or the signature part of a notification) at time `now`.
///
/// Checks, in order: the timestamp window ([`MAX_CLOCK_SKEW`]), probe signatures, the serial,
/// the signature.
///
/// # Errors
/// [`Error::TimestampExpired`], [`Error::SignTestProbe`] (code `signature_mismatch`),
/// [`Error::UnknownSerial`] or [`Error::SignatureMismatch`].
pub fn verify_response(
    keys: &PlatformKeys,
    headers: &WechatpayHeaders,
    body: &[u8],
    now: u64,
) -> Result<()> {
    if headers.timestamp.abs_diff(now) > MAX_CLOCK_SKEW {
        return Err(Error::TimestampExpired);
    }
    if headers.is_probe() {
        return Err(Error::SignTestProbe);
    }
    if !keys.contains(&headers.serial) {
        return Err(Error::UnknownSerial);
    }
    let message = response_message(&headers.timestamp_text, &headers.nonce, body);
    keys.verify(&headers.serial, &message, &headers.signature)
}

/// Signs a response or notification the way WeChat Pay does (for simulators and tests): returns
/// the `Wechatpay-Signature` value for `timestamp\nnonce\nbody\n`.
///
/// # Errors
/// [`Error::InvalidKey`] if the key cannot sign.
pub fn sign_response<R: CryptoRng>(
    platform: &MerchantSigner,
    rng: &mut R,
    timestamp: &str,
    nonce: &str,
    body: &[u8],
) -> Result<String> {
    platform.sign(rng, &response_message(timestamp, nonce, body))
}
