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
        super::decode_public(text)
    }
}

/// Table-driven strict decoding for the public data this module handles (signatures,
/// ciphertexts): base64ct's constant-time decoder, which PEM keys need, costs several times
/// more per byte in wasm and was a measurable part of notification handling. Canonical only:
/// padded, no whitespace, zero pad bits.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn decode_public(text: &str) -> Option<Vec<u8>> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut t = [INVALID; 256];
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut i = 0;
        while i < 64 {
            t[alphabet[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let pad = b.iter().rev().take_while(|&&c| c == b'=').count();
    if pad > 2 {
        return None;
    }
    let body = &b[..b.len() - pad];
    // Whole quads straight into a buffer of their final size: one table lookup per symbol and
    // one validity test per quad (every valid symbol is below 64, `INVALID` is not), no
    // per-byte capacity checks. Measurably faster in wasm at opt-level "z" than pushing.
    let (quads, rest) = body.as_chunks::<4>();
    let mut out = Vec::with_capacity(quads.len() * 3 + 2);
    out.resize(quads.len() * 3, 0);
    for (q, o) in quads.iter().zip(out.as_chunks_mut::<3>().0) {
        let t = |i: usize| TABLE[usize::from(q[i])];
        let v = [t(0), t(1), t(2), t(3)];
        if (v[0] | v[1] | v[2] | v[3]) & 0xc0 != 0 {
            return None;
        }
        let n =
            u32::from(v[0]) << 18 | u32::from(v[1]) << 12 | u32::from(v[2]) << 6 | u32::from(v[3]);
        let [_, x, y, z] = n.to_be_bytes();
        *o = [x, y, z];
    }
    if !rest.is_empty() {
        // 2 or 3 symbols before the padding: 1 or 2 bytes, unused low bits must be zero.
        let mut n = 0u32;
        for &ch in rest {
            let v = TABLE[usize::from(ch)];
            if v == INVALID {
                return None;
            }
            n = (n << 6) | u32::from(v);
        }
        match rest.len() {
            2 if n & 0xf == 0 => out.push((n >> 4) as u8),
            3 if n & 0x3 == 0 => out.extend_from_slice(&((n >> 2) as u16).to_be_bytes()),
            _ => return None,
        }
    } else if pad != 0 {
        return None;
    }
    Some(out)
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
        for bad in [
            "AP9hYg=",
            "AP9h Yg==",
            "!!!!",
            "AP9hYh==",
            "AP9hYg===",
            "A===",
            "AP9hY=g=",
        ] {
            assert_eq!(decode(bad), Err(InvalidBase64), "{bad}");
            assert_eq!(decode_public(bad), None, "{bad}");
        }
    }

    proptest! {
        /// The wasm codec (base64ct) and the native one accept and produce the same things.
        #[test]
        fn native_and_wasm_codecs_agree(bytes in proptest::collection::vec(any::<u8>(), 0..200),
                                        text in "[A-Za-z0-9+/=]{0,40}") {
            prop_assert_eq!(encode(&bytes), Base64::encode_string(&bytes));
            prop_assert_eq!(decode(&text).ok(), Base64::decode_vec(&text).ok());
            prop_assert_eq!(decode_public(&text), Base64::decode_vec(&text).ok());
            let encoded = encode(&bytes);
            prop_assert_eq!(decode_public(&encoded), Some(bytes));
        }
    }
}
