//! The cryptographic primitives, behind a provider trait (like rustls' `CryptoProvider`).
//!
//! The core builds every message, encoding and policy itself; a provider only performs the four
//! RSA operations WeChat Pay needs, on keys it parsed once, and may take over the symmetric
//! primitives (AES-256-GCM decryption, MD5, HMAC-SHA256) where its platform does them faster
//! than the core's own RustCrypto code:
//!
//! | provider | where | timing |
//! | --- | --- | --- |
//! | [`rustcrypto::PROVIDER`] | everywhere, also `wasm32` | RustCrypto `rsa` 0.10: constant-time `crypto-bigint` arithmetic, blinded private-key operations using the RNG passed in |
//! | `aws_lc::PROVIDER` (feature `aws-lc`) | native | AWS-LC (BoringSSL lineage): constant-time, blinded with its own RNG |
//! | the npm package's JS provider | Node / workerd | the platform's OpenSSL/BoringSSL via `node:crypto` |
//!
//! PKCS#1 v1.5 signatures are deterministic, so every provider produces identical bytes; the
//! vector runner checks that for each provider compiled in.

use crate::Result;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

pub mod rustcrypto;

#[cfg(feature = "aws-lc")]
pub mod aws_lc;

/// A source of RSA keys. Implementations must be cheap to share (`&'static` is typical).
pub trait CryptoProvider: Send + Sync + core::fmt::Debug {
    /// A short name for diagnostics and benchmark labels (`"rustcrypto"`, `"aws-lc"`, …).
    fn name(&self) -> &'static str;

    /// Parses an RSA private key from PKCS#8 `PrivateKeyInfo` DER (the core converts PKCS#1 keys
    /// to PKCS#8 before calling this).
    ///
    /// # Errors
    /// [`crate::Error::InvalidKey`] if the bytes are not an RSA private key of 2048–4096 bits.
    fn private_key(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivateKey>>;

    /// Parses an RSA public key from X.509 `SubjectPublicKeyInfo` DER.
    ///
    /// # Errors
    /// [`crate::Error::InvalidKey`] if the bytes are not an RSA public key of 2048–4096 bits.
    fn public_key(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublicKey>>;

    /// `AEAD_AES_256_GCM` decryption of `ciphertext ‖ 16-byte tag`, for providers whose platform
    /// does it faster than the core's own code (in wasm, `node:crypto` has AES instructions and
    /// the module has not). The default, `None`, lets the core decrypt.
    ///
    /// The core has already checked the key (32 bytes), the nonce (12 bytes) and that the input
    /// holds at least a tag. Implementations answer `Some(Err(DecryptFailed))` for any
    /// authentication failure.
    fn aes_256_gcm_decrypt(
        &self,
        _key: &[u8; 32],
        _nonce: &[u8; 12],
        _aad: &[u8],
        _ciphertext_and_tag: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        None
    }

    /// MD5 of the concatenation of `parts` (APIv2 `MD5` signatures, the `req_info` key).
    ///
    /// The default is the core's RustCrypto implementation; a provider overrides it where its
    /// platform is faster (from wasm, `node:crypto`). Providers must produce the same digest.
    fn md5(&self, parts: &[&[u8]]) -> [u8; 16] {
        rustcrypto::md5(parts)
    }

    /// HMAC-SHA256 keyed with `key` (any length) over the concatenation of `parts` (APIv2
    /// `HMAC-SHA256` signatures). The default is the core's RustCrypto implementation.
    fn hmac_sha256(&self, key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
        rustcrypto::hmac_sha256(key, parts)
    }
}

/// A parsed RSA private key.
pub trait RsaPrivateKey: Send + Sync {
    /// RSASSA-PKCS1-v1_5 with SHA-256 over `message` (the provider hashes).
    ///
    /// # Errors
    /// [`crate::Error::InvalidKey`] if the provider cannot sign with this key.
    fn sign_pkcs1v15_sha256(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>>;

    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label.
    ///
    /// # Errors
    /// [`crate::Error::DecryptFailed`] for any ciphertext that does not decrypt.
    fn decrypt_oaep_sha1(
        &self,
        rng: &mut dyn CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>>;
}

/// A parsed RSA public key.
pub trait RsaPublicKey: Send + Sync {
    /// Verifies an RSASSA-PKCS1-v1_5 SHA-256 signature over `message`.
    ///
    /// # Errors
    /// [`crate::Error::SignatureMismatch`] and nothing more specific.
    fn verify_pkcs1v15_sha256(&self, message: &[u8], signature: &[u8]) -> Result<()>;

    /// RSAES-OAEP with SHA-1 and MGF1-SHA-1, empty label.
    ///
    /// # Errors
    /// [`crate::Error::Malformed`] if the message is too long for the key.
    fn encrypt_oaep_sha1(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>>;
}

/// The fastest provider compiled in: `aws-lc` when that feature is on, otherwise RustCrypto.
#[must_use]
pub fn default_provider() -> &'static dyn CryptoProvider {
    #[cfg(feature = "aws-lc")]
    {
        &aws_lc::PROVIDER
    }
    #[cfg(not(feature = "aws-lc"))]
    {
        &rustcrypto::PROVIDER
    }
}

/// Every provider compiled into this build (the vector runner runs each case through each).
#[must_use]
pub fn all_providers() -> Vec<&'static dyn CryptoProvider> {
    vec![
        &rustcrypto::PROVIDER,
        #[cfg(feature = "aws-lc")]
        &aws_lc::PROVIDER,
    ]
}

/// Smallest and largest modulus accepted: WeChat Pay keys are RSA-2048; 4096 leaves room.
pub(crate) const MIN_BITS: usize = 2048;
pub(crate) const MAX_BITS: usize = 4096;
