//! The APIv3 request signature and `Authorization` header.

use crate::keys::MerchantSigner;
use crate::{Error, Result};
use rand_core::CryptoRng;
use serde::Serialize;

/// The authentication scheme of the `Authorization` header.
pub const AUTH_SCHEME: &str = "WECHATPAY2-SHA256-RSA2048";

/// A signed request: the header value plus what went into it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Authorization {
    /// The exact signed message (`METHOD\nURL\ntimestamp\nnonce\nbody\n`), for diagnostics.
    pub message: String,
    /// Base64 SHA256withRSA signature.
    pub signature: String,
    /// The full `Authorization` header value.
    pub header: String,
}

/// The message an APIv3 request signs: `METHOD\nURL\ntimestamp\nnonce_str\nbody\n`, where URL is
/// the path plus query exactly as sent and body is empty for GET.
#[must_use]
pub fn request_message(
    method: &str,
    url: &str,
    timestamp: &str,
    nonce_str: &str,
    body: &str,
) -> String {
    let mut m = String::with_capacity(method.len() + url.len() + body.len() + 64);
    for part in [method, url, timestamp, nonce_str, body] {
        m.push_str(part);
        m.push('\n');
    }
    m
}

fn check_token(s: &str, what: &'static str) -> Result<()> {
    // These fields are placed between quotes and newlines; anything that could break out of them
    // would let one request's signature cover a different message.
    if s.is_empty()
        || s.bytes()
            .any(|b| b == b'"' || b == b'\n' || b == b'\r' || b == b',')
    {
        Err(Error::Malformed(what))
    } else {
        Ok(())
    }
}

/// Signs an APIv3 request and builds its `Authorization` header. Sign exactly the bytes you will
/// send: `url` is the path plus query as it goes on the wire (`/v3/…?mchid=…`), `body` the exact
/// JSON text (empty for GET).
///
/// # Errors
/// [`Error::Malformed`] for an empty or non-canonical method, a URL that does not start with
/// `/`, or a timestamp/nonce containing quotes, commas or newlines; [`Error::InvalidKey`] if the
/// key cannot sign.
pub fn authorization<R: CryptoRng>(
    signer: &MerchantSigner,
    rng: &mut R,
    method: &str,
    url: &str,
    timestamp: &str,
    nonce_str: &str,
    body: &str,
) -> Result<Authorization> {
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(Error::Malformed("method must be upper-case, e.g. POST"));
    }
    if !url.starts_with('/') || url.contains('\n') {
        return Err(Error::Malformed(
            "url must be the path and query, starting with /",
        ));
    }
    check_token(timestamp, "timestamp")?;
    if !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("timestamp must be decimal seconds"));
    }
    check_token(nonce_str, "nonce_str")?;
    let message = request_message(method, url, timestamp, nonce_str, body);
    let signature = signer.sign(rng, message.as_bytes())?;
    let header = format!(
        "{AUTH_SCHEME} mchid=\"{}\",nonce_str=\"{nonce_str}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
        signer.mchid(),
        signer.serial_no()
    );
    Ok(Authorization {
        message,
        signature,
        header,
    })
}
