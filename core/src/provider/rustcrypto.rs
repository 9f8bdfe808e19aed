//! The portable provider: RustCrypto `rsa` 0.10 (pure Rust, builds for `wasm32`).
//!
//! Private-key operations are blinded with the RNG the caller passes in, and `crypto-bigint`
//! arithmetic is constant-time (the Marvin attack, RUSTSEC-2023-0071, affected `rsa` 0.9).

use super::{CryptoProvider, MAX_BITS, MIN_BITS, RsaPrivateKey, RsaPublicKey};
use crate::{Error, Result};
use rand_core::CryptoRng;
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{RandomizedSigner, SignatureEncoding, Verifier};
use rsa::traits::PublicKeyParts;
use rsa::{Oaep, pkcs1v15};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The RustCrypto provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustCrypto;

/// The RustCrypto provider as a `&'static dyn CryptoProvider`-able value.
pub static PROVIDER: RustCrypto = RustCrypto;

/// MD5 of the concatenation of `parts` ([`CryptoProvider::md5`]'s default).
#[must_use]
pub fn md5(parts: &[&[u8]]) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// HMAC-SHA256 over the concatenation of `parts` ([`CryptoProvider::hmac_sha256`]'s default).
#[must_use]
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    // HMAC accepts keys of any length: this cannot fail.
    let mut m = match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

fn check_size(bits: usize) -> Result<()> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(Error::InvalidKey("RSA modulus must be 2048 to 4096 bits"))
    }
}

impl CryptoProvider for RustCrypto {
    fn name(&self) -> &'static str {
        "rustcrypto"
    }

    fn private_key(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivateKey>> {
        let key = rsa::PrivateKey::from_pkcs8_der(pkcs8_der)
            .map_err(|_| Error::InvalidKey("not an RSA PKCS#8 private key"))?;
        check_size(key.n().bit_width() as usize)?;
        Ok(Box::new(PrivateKey {
            signer: pkcs1v15::SigningKey::new(key.clone()),
            key,
        }))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublicKey>> {
        let key = rsa::PublicKey::from_public_key_der(spki_der)
            .map_err(|_| Error::InvalidKey("not an RSA SubjectPublicKeyInfo"))?;
        check_size(key.n().bit_width() as usize)?;
        Ok(Box::new(PublicKey {
            verifier: pkcs1v15::VerifyingKey::new(key.clone()),
            key,
        }))
    }
}

struct PrivateKey {
    // `rsa::PrivateKey` zeroizes itself on drop.
    key: rsa::PrivateKey,
    signer: pkcs1v15::SigningKey<Sha256>,
}

impl RsaPrivateKey for PrivateKey {
    fn sign_pkcs1v15_sha256(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let sig = self
            .signer
            .try_sign_with_rng(rng, message)
            .map_err(|_| Error::InvalidKey("the RSA key could not sign"))?;
        Ok(sig.to_vec())
    }

    fn decrypt_oaep_sha1(
        &self,
        rng: &mut dyn CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        self.key
            .decrypt_blinded(rng, Oaep::<sha1::Sha1>::new(), ciphertext)
            .map(Zeroizing::new)
            .map_err(|_| Error::DecryptFailed)
    }
}

struct PublicKey {
    key: rsa::PublicKey,
    verifier: pkcs1v15::VerifyingKey<Sha256>,
}

impl RsaPublicKey for PublicKey {
    fn verify_pkcs1v15_sha256(&self, message: &[u8], signature: &[u8]) -> Result<()> {
        let sig = pkcs1v15::Signature::try_from(signature).map_err(|_| Error::SignatureMismatch)?;
        self.verifier
            .verify(message, &sig)
            .map_err(|_| Error::SignatureMismatch)
    }

    fn encrypt_oaep_sha1(&self, rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        self.key
            .encrypt(rng, Oaep::<sha1::Sha1>::new(), message)
            .map_err(|_| Error::Malformed("plaintext too long for RSA-OAEP"))
    }
}
