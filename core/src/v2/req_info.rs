//! APIv2 refund notification `req_info`: base64 of AES-256-ECB with PKCS#7 padding, keyed with
//! the lower-case hex MD5 of the APIv2 key. (WeChat Pay APIv2, "退款结果通知", 解密方式.)

use super::ApiV2Key;
use crate::b64;
use crate::{Error, Result};
use aes::Aes256;
use cipher::{Array, BlockCipherDecrypt, KeyInit};
use zeroize::Zeroizing;

/// Decrypts `req_info` to its XML text (`<root>…</root>`; parse it with [`super::parse_xml`]).
///
/// # Errors
/// [`Error::Malformed`] if it is not base64 of whole 16-byte blocks; [`Error::DecryptFailed`]
/// if the PKCS#7 padding is wrong (wrong key) or the plaintext is not UTF-8.
pub fn decrypt_req_info(req_info_b64: &str, key: &ApiV2Key) -> Result<String> {
    let mut data = Zeroizing::new(
        b64::decode(req_info_b64.trim()).map_err(|_| Error::Malformed("req_info is not base64"))?,
    );
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(Error::Malformed("req_info is not whole AES blocks"));
    }
    let digest = key.provider().md5(&[key.expose()]);
    let mut hex_key = Zeroizing::new([0u8; 32]);
    for (i, b) in digest.iter().enumerate() {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        hex_key[2 * i] = HEX[usize::from(b >> 4)];
        hex_key[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    let aes =
        Aes256::new_from_slice(hex_key.as_slice()).map_err(|_| Error::InvalidKey("AES-256 key"))?;
    for chunk in data.chunks_exact_mut(16) {
        let block: &mut Array<u8, _> =
            <&mut Array<u8, _>>::try_from(chunk).map_err(|_| Error::DecryptFailed)?;
        aes.decrypt_block(block);
    }
    // Strict PKCS#7: 1..=16 bytes, all equal to the pad length.
    let pad = usize::from(*data.last().ok_or(Error::DecryptFailed)?);
    if pad == 0
        || pad > 16
        || data[data.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return Err(Error::DecryptFailed);
    }
    let len = data.len() - pad;
    String::from_utf8(data[..len].to_vec()).map_err(|_| Error::DecryptFailed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_input_is_typed() {
        let k = ApiV2Key::new("192006250b4c09247ec02edce69f6a2d");
        assert_eq!(
            decrypt_req_info("***", &k).expect_err("b64").code(),
            "malformed"
        );
        assert_eq!(
            decrypt_req_info("AAAA", &k).expect_err("blocks").code(),
            "malformed"
        );
        assert_eq!(
            decrypt_req_info("", &k).expect_err("empty").code(),
            "malformed"
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "[A-Za-z0-9+/=]{0,200}") {
            let _ = decrypt_req_info(&s, &ApiV2Key::new("k"));
        }
    }
}
