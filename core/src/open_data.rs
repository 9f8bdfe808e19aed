//! Mini-program open data (开放数据解密): data that `wx.getUserInfo`, `getPhoneNumber`,
//! `wx.getWeRunData` … hand the mini-program as `encryptedData` + `iv`, encrypted by WeChat with
//! the user's `session_key` (from `jscode2session`): AES-128-CBC, PKCS#7 padding, all three
//! values base64. The plaintext is JSON carrying a `watermark.appid` that the caller must check
//! against its own AppID ("小程序登录 / 开放数据校验与解密").

use aes::Aes128;
use cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

use crate::b64;
use crate::{Error, Result};

fn block16(what: &'static str, b64_value: &str) -> Result<[u8; 16]> {
    let raw = b64::decode(b64_value).map_err(|_| Error::Malformed(what))?;
    raw.as_slice()
        .try_into()
        .map_err(|_| Error::Malformed(what))
}

/// Decrypts `encrypted_data_b64` with the user's `session_key_b64` and `iv_b64`, returning the
/// plaintext (JSON text; check its `watermark.appid`).
///
/// # Errors
/// [`Error::Malformed`] when the session key or iv is not base64 of 16 bytes, or the data is not
/// base64 of whole 16-byte blocks; [`Error::DecryptFailed`] for bad padding (a wrong or stale
/// session key) or non-UTF-8 plaintext.
pub fn decrypt_open_data(
    session_key_b64: &str,
    encrypted_data_b64: &str,
    iv_b64: &str,
) -> Result<String> {
    let key = zeroize::Zeroizing::new(block16("session_key", session_key_b64)?);
    let mut prev = block16("iv", iv_b64)?;
    let mut data =
        b64::decode(encrypted_data_b64).map_err(|_| Error::Malformed("encryptedData"))?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(Error::Malformed("encryptedData"));
    }
    let cipher = Aes128::new(&Array::from(*key));
    for chunk in data.chunks_exact_mut(16) {
        let mut c = [0u8; 16];
        c.copy_from_slice(chunk);
        let block = <&mut Array<u8, _>>::try_from(&mut *chunk).map_err(|_| Error::DecryptFailed)?;
        cipher.decrypt_block(block);
        for (p, x) in chunk.iter_mut().zip(prev) {
            *p ^= x;
        }
        prev = c;
    }
    let pad = usize::from(*data.last().ok_or(Error::DecryptFailed)?);
    if !(1..=16).contains(&pad)
        || data[data.len() - pad..]
            .iter()
            .any(|&b| usize::from(b) != pad)
    {
        return Err(Error::DecryptFailed);
    }
    data.truncate(data.len() - pad);
    String::from_utf8(data).map_err(|_| Error::DecryptFailed)
}

/// Encrypts `plaintext` the way WeChat encrypts open data (for simulators and tests).
///
/// # Errors
/// [`Error::Malformed`] when the session key or iv is not base64 of 16 bytes.
pub fn encrypt_open_data(session_key_b64: &str, plaintext: &[u8], iv_b64: &str) -> Result<String> {
    let key = zeroize::Zeroizing::new(block16("session_key", session_key_b64)?);
    let mut prev = block16("iv", iv_b64)?;
    let pad = 16 - plaintext.len() % 16;
    let mut data = plaintext.to_vec();
    data.extend(std::iter::repeat_n(u8::try_from(pad).unwrap_or(16), pad));
    let cipher = Aes128::new(&Array::from(*key));
    for chunk in data.chunks_exact_mut(16) {
        for (p, x) in chunk.iter_mut().zip(prev) {
            *p ^= x;
        }
        let block =
            <&mut Array<u8, _>>::try_from(&mut *chunk).map_err(|_| Error::Malformed("block"))?;
        cipher.encrypt_block(block);
        prev.copy_from_slice(chunk);
    }
    Ok(b64::encode(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example of WeChat's open-data documentation (the demo code's appid wx4f4bc4dec97d474b).
    const KEY: &str = "tiihtNczf5v6AKRyjwEUhQ==";
    const IV: &str = "r7BXXKkLb8qrSNn05n0qiA==";
    const DATA: &str = "CiyLU1Aw2KjvrjMdj8YKliAjtP4gsMZMQmRzooG2xrDcvSnxIMXFufNstNGTyaGS9uT5geRa0W4oTOb1WT7fJlAC+oNPdbB+3hVbJSRgv+4lGOETKUQz6OYStslQ142dNCuabNPGBzlooOmB231qMM85d2/fV6ChevvXvQP8Hkue1poOFtnEtpyxVLW1zAo6/1Xx1COxFvrc2d7UL/lmHInNlxuacJXwu0fjpXfz/YqYzBIBzD6WUfTIF9GRHpOn/Hz7saL8xz+W//FRAUid1OksQaQx4CMs8LOddcQhULW4ucetDf96JcR3g0gfRK4PC7E/r7Z6xNrXd2UIeorGj5Ef7b1pJAYB6Y5anaHqZ9J6nKEBvB4DnNLIVWSgARns/8wR2SiRS7MNACwTyrGvt9ts8p12PKFdlqYTopNHR1Vf7XjfhQlVsAJdNiKdYmYVoKlaRv85IfVunYzO0IKXsyl7JCUjCpoG20f0a04COwfneQAGGwd5oa+T8yO5hzuyDb/XcxxmK01EpqOyuxINew==";

    #[test]
    fn wechat_documentation_example() {
        let json = decrypt_open_data(KEY, DATA, IV).expect("decrypts");
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v["watermark"]["appid"], "wx4f4bc4dec97d474b");
        assert_eq!(v["nickName"], "Band");
        assert_eq!(v["openId"], "oGZUI0egBJY1zhBYw2KhdUfwVJJE");
    }

    #[test]
    fn round_trip_and_typed_errors() {
        let ct = encrypt_open_data(KEY, br#"{"a":1}"#, IV).expect("encrypts");
        assert_eq!(
            decrypt_open_data(KEY, &ct, IV).expect("round trip"),
            r#"{"a":1}"#
        );
        let other = "AAAAAAAAAAAAAAAAAAAAAA==";
        assert!(decrypt_open_data(other, &ct, IV).is_err());
        assert_eq!(
            decrypt_open_data("short", &ct, IV),
            Err(Error::Malformed("session_key"))
        );
        assert_eq!(
            decrypt_open_data(KEY, &ct, "x"),
            Err(Error::Malformed("iv"))
        );
        assert_eq!(
            decrypt_open_data(KEY, "AAAA", IV),
            Err(Error::Malformed("encryptedData"))
        );
        assert_eq!(
            decrypt_open_data(KEY, "", IV),
            Err(Error::Malformed("encryptedData"))
        );
    }
}
