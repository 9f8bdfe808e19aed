//! Standard base64 (RFC 4648 §4, padded, canonical) for signatures and ciphertexts.
//!
//! Natively this is the `base64` crate (fast: it is a measurable part of notification
//! handling); in WebAssembly it is `base64ct`, which PEM decoding links anyway, so the `.wasm`
//! carries one codec instead of two. Both are strict, and a test checks that they agree.

/// Encodes `bytes` as padded standard base64.
#[must_use]
pub fn encode(bytes: impl AsRef<[u8]>) -> String {
    imp::encode(bytes.as_ref())
}

/// Decodes padded standard base64 (no whitespace, canonical padding).
///
/// # Errors
/// [`InvalidBase64`] for anything that is not canonical base64.
pub fn decode(text: &str) -> Result<Vec<u8>, InvalidBase64> {
    imp::decode(text).ok_or(InvalidBase64)
}

/// The input was not canonical padded standard base64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub(super) fn encode(bytes: &[u8]) -> String {
        STANDARD.encode(bytes)
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        STANDARD.decode(text).ok()
    }
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use base64ct::{Base64, Encoding};

    pub(super) fn encode(bytes: &[u8]) -> String {
        Base64::encode_string(bytes)
    }

    pub(super) fn decode(text: &str) -> Option<Vec<u8>> {
        Base64::decode_vec(text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64ct::{Base64, Encoding};
    use proptest::prelude::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(encode(b"\x00\xffab"), "AP9hYg==");
        assert_eq!(decode("AP9hYg==").expect("ok"), b"\x00\xffab");
        for bad in ["AP9hYg=", "AP9h Yg==", "!!!!", "AP9hYh==", "AP9hYg==="] {
            assert_eq!(decode(bad), Err(InvalidBase64), "{bad}");
        }
    }

    proptest! {
        /// The wasm codec (base64ct) and the native one accept and produce the same things.
        #[test]
        fn native_and_wasm_codecs_agree(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                        text in "[A-Za-z0-9+/=]{0,40}") {
            prop_assert_eq!(encode(&bytes), Base64::encode_string(&bytes));
            prop_assert_eq!(decode(&text).ok(), Base64::decode_vec(&text).ok());
        }
    }
}
