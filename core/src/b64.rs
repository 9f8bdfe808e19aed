//! Standard base64 (RFC 4648 §4, padded), constant-time over the data (`base64ct`), since it
//! carries signatures and ciphertexts. Shares the crate that PEM decoding already links.

use base64ct::{Base64, Encoding};

/// Encodes `bytes` as padded standard base64.
#[must_use]
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    Base64::encode_string(bytes.as_ref())
}

/// Decodes padded standard base64 (no whitespace, canonical padding).
///
/// # Errors
/// `base64ct::Error` for anything that is not canonical base64.
pub fn decode(text: &str) -> Result<Vec<u8>, base64ct::Error> {
    Base64::decode_vec(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(encode(b"\x00\xffab"), "AP9hYg==");
        assert_eq!(decode("AP9hYg==").expect("ok"), b"\x00\xffab");
        for bad in ["AP9hYg=", "AP9h Yg==", "!!!!", "AP9hYh=="] {
            assert!(decode(bad).is_err(), "{bad}");
        }
    }
}
