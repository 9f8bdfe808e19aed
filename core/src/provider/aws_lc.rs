//! The native provider: AWS-LC through `aws-lc-rs` (feature `aws-lc`).
//!
//! AWS-LC's RSA is constant-time and blinds private-key operations with its own RNG, so the RNG
//! passed in is not used here.

use super::{CryptoProvider, MAX_BITS, MIN_BITS, RsaPrivateKey, RsaPublicKey};
use crate::{Error, Result};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{
    KeyPair, OAEP_SHA1_MGF1SHA1, OaepPrivateDecryptingKey, OaepPublicEncryptingKey,
    PrivateDecryptingKey, PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

/// The AWS-LC provider.
#[derive(Debug, Clone, Copy, Default)]
pub struct AwsLc;

/// The AWS-LC provider as a `&'static dyn CryptoProvider`-able value.
pub static PROVIDER: AwsLc = AwsLc;

fn check_size(bits: usize) -> Result<()> {
    if (MIN_BITS..=MAX_BITS).contains(&bits) {
        Ok(())
    } else {
        Err(Error::InvalidKey("RSA modulus must be 2048 to 4096 bits"))
    }
}

impl CryptoProvider for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc"
    }

    fn private_key(&self, pkcs8_der: &[u8]) -> Result<Box<dyn RsaPrivateKey>> {
        let pair = KeyPair::from_pkcs8(pkcs8_der)
            .map_err(|_| Error::InvalidKey("not an RSA PKCS#8 private key"))?;
        check_size(pair.public_modulus_len() * 8)?;
        let decrypting = PrivateDecryptingKey::from_pkcs8(pkcs8_der)
            .ok()
            .and_then(|k| OaepPrivateDecryptingKey::new(k).ok())
            .ok_or(Error::InvalidKey("not an RSA PKCS#8 private key"))?;
        Ok(Box::new(PrivateKey { pair, decrypting }))
    }

    fn public_key(&self, spki_der: &[u8]) -> Result<Box<dyn RsaPublicKey>> {
        let encrypting = PublicEncryptingKey::from_der(spki_der)
            .map_err(|_| Error::InvalidKey("not an RSA SubjectPublicKeyInfo"))?;
        check_size(encrypting.key_size_bits())?;
        let encrypting = OaepPublicEncryptingKey::new(encrypting)
            .map_err(|_| Error::InvalidKey("not an RSA SubjectPublicKeyInfo"))?;
        // Parsed once here, so that verification does not re-parse the DER on every call.
        let verifying = signature::ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, spki_der)
            .map_err(|_| Error::InvalidKey("not an RSA SubjectPublicKeyInfo"))?;
        Ok(Box::new(PublicKey {
            verifying,
            encrypting,
        }))
    }

    fn aes_256_gcm_decrypt(
        &self,
        key: &[u8; 32],
        nonce: &[u8; 12],
        aad: &[u8],
        ciphertext_and_tag: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
        let Ok(unbound) = UnboundKey::new(&AES_256_GCM, key) else {
            return Some(Err(Error::InvalidKey("AES-256 key")));
        };
        let key = LessSafeKey::new(unbound);
        let mut buf = Zeroizing::new(ciphertext_and_tag.to_vec());
        let result = key
            .open_in_place(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buf.as_mut_slice(),
            )
            .map(|plain| plain.len())
            .map_err(|_| Error::DecryptFailed)
            .map(|len| {
                buf.truncate(len);
                buf
            });
        Some(result)
    }
}

struct PrivateKey {
    pair: KeyPair,
    decrypting: OaepPrivateDecryptingKey,
}

impl RsaPrivateKey for PrivateKey {
    fn sign_pkcs1v15_sha256(&self, _rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), message, &mut sig)
            .map_err(|_| Error::InvalidKey("the RSA key could not sign"))?;
        Ok(sig)
    }

    fn decrypt_oaep_sha1(
        &self,
        _rng: &mut dyn CryptoRng,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0u8; self.decrypting.min_output_size()]);
        let n = self
            .decrypting
            .decrypt(&OAEP_SHA1_MGF1SHA1, ciphertext, &mut out, None)
            .map_err(|_| Error::DecryptFailed)?
            .len();
        out.truncate(n);
        Ok(out)
    }
}

struct PublicKey {
    verifying: signature::ParsedPublicKey,
    encrypting: OaepPublicEncryptingKey,
}

impl RsaPublicKey for PublicKey {
    fn verify_pkcs1v15_sha256(&self, message: &[u8], sig: &[u8]) -> Result<()> {
        self.verifying
            .verify_sig(message, sig)
            .map_err(|_| Error::SignatureMismatch)
    }

    fn encrypt_oaep_sha1(&self, _rng: &mut dyn CryptoRng, message: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.encrypting.ciphertext_size()];
        let n = self
            .encrypting
            .encrypt(&OAEP_SHA1_MGF1SHA1, message, &mut out, None)
            .map_err(|_| Error::Malformed("plaintext too long for RSA-OAEP"))?
            .len();
        out.truncate(n);
        Ok(out)
    }
}
