//! `AEAD_AES_256_GCM` as WeChat Pay APIv3 uses it for notification resources and downloaded
//! certificates: key = the 32-byte APIv3 key (its ASCII bytes), nonce = the 12-byte nonce string,
//! AAD = `associated_data`, ciphertext = base64(ct ‖ 16-byte tag).
//! (WeChat Pay APIv3, "证书和回调报文解密".)

use crate::b64;
use crate::provider::CryptoProvider;
use crate::{Error, Result};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use std::fmt;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The merchant's APIv3 key (32 ASCII bytes), zeroized on drop; `Debug` redacts it.
///
/// Decryption runs in the core unless a provider that does AES-GCM itself is attached with
/// [`ApiV3Key::with_provider`].
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct ApiV3Key {
    key: [u8; 32],
    #[zeroize(skip)]
    provider: Option<&'static dyn CryptoProvider>,
}

impl fmt::Debug for ApiV3Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiV3Key(<redacted>)")
    }
}

impl ApiV3Key {
    /// Wraps the APIv3 key as configured in the merchant platform.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] unless it is exactly 32 bytes.
    pub fn new(key: &str) -> Result<Self> {
        <[u8; 32]>::try_from(key.as_bytes())
            .map(|key| Self {
                key,
                provider: None,
            })
            .map_err(|_| Error::InvalidKey("the APIv3 key must be 32 bytes"))
    }

    /// Decrypts through `provider` where it offers AES-GCM
    /// ([`CryptoProvider::aes_256_gcm_decrypt`]), else in the core.
    #[must_use]
    pub fn with_provider(mut self, provider: &'static dyn CryptoProvider) -> Self {
        self.provider = Some(provider);
        self
    }

    fn cipher(&self) -> Result<Aes256Gcm> {
        Aes256Gcm::new_from_slice(&self.key).map_err(|_| Error::InvalidKey("AES-256 key"))
    }
}

fn nonce(nonce: &str) -> Result<&Nonce<aes_gcm::aead::consts::U12>> {
    // `Nonce` is a 12-byte array type; the conversion checks the length.
    <&Nonce<_>>::try_from(nonce.as_bytes()).map_err(|_| Error::Malformed("nonce must be 12 bytes"))
}

/// Decrypts a resource to bytes.
///
/// # Errors
/// [`Error::Malformed`] for a non-base64 ciphertext or a nonce that is not 12 bytes;
/// [`Error::DecryptFailed`] when the tag does not verify (wrong key, AAD or data).
pub fn decrypt_bytes(
    key: &ApiV3Key,
    nonce_str: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<Zeroizing<Vec<u8>>> {
    let ct = b64::decode(ciphertext_b64.trim())
        .map_err(|_| Error::Malformed("ciphertext is not base64"))?;
    let nonce = nonce(nonce_str)?;
    if ct.len() < 16 {
        return Err(Error::DecryptFailed);
    }
    if let Some(p) = key.provider
        && let Some(result) =
            p.aes_256_gcm_decrypt(&key.key, &nonce.0, associated_data.as_bytes(), &ct)
    {
        return result;
    }
    key.cipher()?
        .decrypt(
            nonce,
            Payload {
                msg: &ct,
                aad: associated_data.as_bytes(),
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| Error::DecryptFailed)
}

/// Decrypts a resource to UTF-8 text (JSON for notifications, PEM for certificates).
///
/// # Errors
/// As [`decrypt_bytes`]; plaintext that is not UTF-8 is [`Error::DecryptFailed`].
pub fn decrypt(
    key: &ApiV3Key,
    nonce_str: &str,
    associated_data: &str,
    ciphertext_b64: &str,
) -> Result<String> {
    let pt = decrypt_bytes(key, nonce_str, associated_data, ciphertext_b64)?;
    String::from_utf8(pt.to_vec()).map_err(|_| Error::DecryptFailed)
}

/// Encrypts like WeChat Pay does (for simulators and tests); `nonce_str` must be 12 bytes and
/// must never repeat under one key.
///
/// # Errors
/// [`Error::Malformed`] if the nonce is not 12 bytes.
pub fn encrypt(
    key: &ApiV3Key,
    nonce_str: &str,
    associated_data: &str,
    plaintext: &[u8],
) -> Result<String> {
    let ct = key
        .cipher()?
        .encrypt(
            nonce(nonce_str)?,
            Payload {
                msg: plaintext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| Error::Malformed("plaintext too long"))?;
    Ok(b64::encode(ct))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "abababababababababababababababab";

    #[test]
    fn wrong_key_sizes_are_invalid_key() {
        for k in ["", "abc", &KEY[1..], &format!("{KEY}a")] {
            assert_eq!(ApiV3Key::new(k).expect_err("size").code(), "invalid_key");
        }
        assert!(format!("{:?}", ApiV3Key::new(KEY).expect("key")).contains("redacted"));
    }

    #[test]
    fn short_or_bad_input_is_typed() {
        let k = ApiV3Key::new(KEY).expect("key");
        assert_eq!(
            decrypt(&k, "0123456789ab", "", "AAAA").expect_err("short"),
            Error::DecryptFailed
        );
        assert_eq!(
            decrypt(&k, "short", "", "AAAA").expect_err("nonce").code(),
            "malformed"
        );
        assert_eq!(
            decrypt(&k, "0123456789ab", "", "!!")
                .expect_err("b64")
                .code(),
            "malformed"
        );
    }

    /// A provider that refuses every AEAD, to see that an attached provider is the one asked.
    #[derive(Debug)]
    struct Refusing;

    impl CryptoProvider for Refusing {
        fn name(&self) -> &'static str {
            "refusing"
        }
        fn private_key(&self, _: &[u8]) -> Result<Box<dyn crate::provider::RsaPrivateKey>> {
            Err(Error::InvalidKey("none"))
        }
        fn public_key(&self, _: &[u8]) -> Result<Box<dyn crate::provider::RsaPublicKey>> {
            Err(Error::InvalidKey("none"))
        }
        fn aes_256_gcm_decrypt(
            &self,
            _: &[u8; 32],
            _: &[u8; 12],
            _: &[u8],
            _: &[u8],
        ) -> Option<Result<Zeroizing<Vec<u8>>>> {
            Some(Err(Error::DecryptFailed))
        }
    }

    static REFUSING: Refusing = Refusing;

    #[test]
    fn an_attached_provider_decrypts_and_others_fall_back_to_the_core() {
        let k = ApiV3Key::new(KEY).expect("key");
        let ct = encrypt(&k, "0123456789ab", "x", b"hello").expect("encrypt");
        let with_rust = k
            .clone()
            .with_provider(&crate::provider::rustcrypto::PROVIDER);
        assert_eq!(
            decrypt(&with_rust, "0123456789ab", "x", &ct).expect("core"),
            "hello"
        );
        let refusing = k.with_provider(&REFUSING);
        assert_eq!(
            decrypt(&refusing, "0123456789ab", "x", &ct),
            Err(Error::DecryptFailed)
        );
        // Input checks stay in the core, before any provider is asked.
        assert_eq!(
            decrypt(&refusing, "short", "x", &ct)
                .expect_err("nonce")
                .code(),
            "malformed"
        );
    }

    proptest! {
        #[test]
        fn round_trip_and_tamper(pt in proptest::collection::vec(any::<u8>(), 0..512),
                                 aad in "[ -~]{0,32}", nonce in "[0-9A-Za-z]{12}", flip in any::<usize>()) {
            let k = ApiV3Key::new(KEY).expect("key");
            let ct = encrypt(&k, &nonce, &aad, &pt).expect("encrypt");
            prop_assert_eq!(decrypt_bytes(&k, &nonce, &aad, &ct).expect("decrypt").to_vec(), pt);
            let mut raw = b64::decode(&ct).expect("b64");
            let i = flip % raw.len();
            raw[i] ^= 1;
            prop_assert_eq!(decrypt_bytes(&k, &nonce, &aad, &b64::encode(raw)).map(|_| ()), Err(Error::DecryptFailed));
        }

        #[test]
        fn never_panics(nonce in ".{0,20}", aad in ".{0,20}", ct in ".{0,64}") {
            let k = ApiV3Key::new(KEY).expect("key");
            let _ = decrypt(&k, &nonce, &aad, &ct);
        }
    }
}
