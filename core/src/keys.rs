//! Typed keys: the merchant's signing key and the set of WeChat Pay platform keys.
//!
//! Keys are parsed once (PEM → provider key) and then used for every call; hot paths never
//! re-parse PEM.

use crate::b64;
use crate::provider::{CryptoProvider, RsaPrivateKey, RsaPublicKey};
use crate::{Error, Result};
use rand_core::CryptoRng;
use std::collections::BTreeMap;
use std::fmt;
use zeroize::Zeroizing;

/// A decoded PEM block; the DER of private keys is zeroized when dropped.
fn pem_decode(pem: &str) -> Result<(String, Zeroizing<Vec<u8>>)> {
    // Files from Windows tools and copy-paste into env vars bring CRLF and stray blanks.
    let normalized = Zeroizing::new(pem.trim().replace("\r\n", "\n"));
    let (label, der) = pem_rfc7468::decode_vec(normalized.as_bytes())
        .map_err(|_| Error::InvalidKey("not a PEM document"))?;
    Ok((label.to_owned(), Zeroizing::new(der)))
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|&&b| b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 `RSAPrivateKey` in a PKCS#8 `PrivateKeyInfo` (RFC 5208), so that providers
/// only ever see one format.
fn pkcs1_to_pkcs8(pkcs1: &[u8]) -> Zeroizing<Vec<u8>> {
    // version 0, AlgorithmIdentifier { rsaEncryption, NULL }
    const HEAD: &[u8] = &[
        0x02, 0x01, 0x00, 0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01,
        0x01, 0x05, 0x00,
    ];
    let mut octets = Zeroizing::new(Vec::with_capacity(pkcs1.len() + 8));
    octets.push(0x04);
    der_len(pkcs1.len(), &mut octets);
    octets.extend_from_slice(pkcs1);
    let mut out = Zeroizing::new(Vec::with_capacity(octets.len() + HEAD.len() + 8));
    out.push(0x30);
    der_len(HEAD.len() + octets.len(), &mut out);
    out.extend_from_slice(HEAD);
    out.extend_from_slice(&octets);
    out
}

/// Parses a private key PEM (`PRIVATE KEY` = PKCS#8, `RSA PRIVATE KEY` = PKCS#1).
fn private_key_from_pem(
    provider: &dyn CryptoProvider,
    pem: &str,
) -> Result<Box<dyn RsaPrivateKey>> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "PRIVATE KEY" => provider.private_key(&der),
        "RSA PRIVATE KEY" => provider.private_key(&pkcs1_to_pkcs8(&der)),
        "ENCRYPTED PRIVATE KEY" => Err(Error::InvalidKey(
            "encrypted private keys are not supported",
        )),
        _ => Err(Error::InvalidKey(
            "expected a PRIVATE KEY or RSA PRIVATE KEY PEM",
        )),
    }
}

fn decode_signature(signature_b64: &str) -> Result<Vec<u8>> {
    if signature_b64.is_empty() {
        return Err(Error::SignatureMismatch);
    }
    b64::decode(signature_b64.trim()).map_err(|_| Error::SignatureMismatch)
}

/// The merchant's API certificate private key, with the `mchid` and certificate `serial_no` that
/// go into every `Authorization` header.
///
/// `Debug` shows the mchid and serial, never key material; the provider's key is wiped on drop.
pub struct MerchantSigner {
    mchid: String,
    serial_no: String,
    key: Box<dyn RsaPrivateKey>,
    provider: &'static str,
}

impl fmt::Debug for MerchantSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MerchantSigner")
            .field("mchid", &self.mchid)
            .field("serial_no", &self.serial_no)
            .field("provider", &self.provider)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl MerchantSigner {
    /// Parses the merchant private key (`apiclient_key.pem`: PKCS#8 `PRIVATE KEY`, or PKCS#1
    /// `RSA PRIVATE KEY`).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for anything that is not an unencrypted RSA 2048–4096 key, and for
    /// an empty mchid or serial.
    pub fn from_pem(
        provider: &dyn CryptoProvider,
        pem: &str,
        mchid: &str,
        serial_no: &str,
    ) -> Result<Self> {
        if mchid.is_empty() || serial_no.is_empty() {
            return Err(Error::InvalidKey("mchid and serial_no must not be empty"));
        }
        Ok(Self {
            mchid: mchid.to_owned(),
            serial_no: serial_no.to_owned(),
            key: private_key_from_pem(provider, pem)?,
            provider: provider.name(),
        })
    }

    /// The merchant id (`mchid`).
    #[must_use]
    pub fn mchid(&self) -> &str {
        &self.mchid
    }

    /// The serial number of the merchant API certificate.
    #[must_use]
    pub fn serial_no(&self) -> &str {
        &self.serial_no
    }

    /// Name of the provider the key lives in.
    #[must_use]
    pub fn provider_name(&self) -> &'static str {
        self.provider
    }

    /// SHA256withRSA over `message`, base64 (standard alphabet, padded).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the provider fails to sign.
    pub fn sign<R: CryptoRng>(&self, rng: &mut R, message: &[u8]) -> Result<String> {
        Ok(b64::encode(self.key.sign_pkcs1v15_sha256(rng, message)?))
    }

    /// Decrypts a base64 RSA-OAEP (SHA-1, MGF1-SHA-1) ciphertext that was encrypted to the
    /// merchant's public key, as UTF-8 text.
    ///
    /// # Errors
    /// [`Error::Malformed`] for non-base64 input, [`Error::DecryptFailed`] for anything that
    /// does not decrypt to UTF-8.
    pub fn decrypt_oaep<R: CryptoRng>(&self, rng: &mut R, ciphertext_b64: &str) -> Result<String> {
        let ct = b64::decode(ciphertext_b64.trim())
            .map_err(|_| Error::Malformed("ciphertext is not base64"))?;
        let pt = self.key.decrypt_oaep_sha1(rng, &ct)?;
        String::from_utf8(pt.to_vec()).map_err(|_| Error::DecryptFailed)
    }
}

/// An RSA public key from `SubjectPublicKeyInfo` PEM (`BEGIN PUBLIC KEY`) or from an X.509
/// certificate.
pub struct PublicKey {
    key: Box<dyn RsaPublicKey>,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublicKey(..)")
    }
}

impl PublicKey {
    /// Parses a `BEGIN PUBLIC KEY` PEM.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if it is not an RSA 2048–4096 public key.
    pub fn from_pem(provider: &dyn CryptoProvider, pem: &str) -> Result<Self> {
        let (label, der) = pem_decode(pem)?;
        if label != "PUBLIC KEY" {
            return Err(Error::InvalidKey("expected a PUBLIC KEY PEM"));
        }
        Ok(Self {
            key: provider.public_key(&der)?,
        })
    }

    /// Verifies a base64 SHA256withRSA signature over `message`.
    ///
    /// # Errors
    /// [`Error::SignatureMismatch`] (opaque) for any failure.
    pub fn verify(&self, message: &[u8], signature_b64: &str) -> Result<()> {
        let sig = decode_signature(signature_b64)?;
        self.key.verify_pkcs1v15_sha256(message, &sig)
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA-1) encryption of a sensitive field, base64.
    ///
    /// # Errors
    /// [`Error::Malformed`] if the plaintext is too long for the key.
    pub fn encrypt_oaep<R: CryptoRng>(&self, rng: &mut R, plaintext: &str) -> Result<String> {
        Ok(b64::encode(
            self.key.encrypt_oaep_sha1(rng, plaintext.as_bytes())?,
        ))
    }
}

/// What a platform certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateInfo {
    /// Serial number, upper-case hex without leading zero bytes (as in `Wechatpay-Serial`).
    pub serial_no: String,
    /// `notBefore`, unix seconds.
    pub not_before: i64,
    /// `notAfter`, unix seconds.
    pub not_after: i64,
    /// The certificate's `SubjectPublicKeyInfo` DER.
    pub spki_der: Vec<u8>,
}

/// Parses an X.509 certificate PEM.
///
/// # Errors
/// [`Error::InvalidKey`] if it is not a PEM `CERTIFICATE` that parses as X.509.
pub fn parse_certificate_pem(pem: &str) -> Result<CertificateInfo> {
    let (label, der) = pem_decode(pem)?;
    if label != "CERTIFICATE" {
        return Err(Error::InvalidKey("expected a CERTIFICATE PEM"));
    }
    use der::{Decode, Encode};
    let cert = x509_cert::Certificate::from_der(&der)
        .map_err(|_| Error::InvalidKey("not an X.509 certificate"))?;
    let tbs = cert.tbs_certificate();
    let raw = tbs.serial_number().as_bytes();
    let skip = raw
        .iter()
        .take_while(|&&b| b == 0)
        .count()
        .min(raw.len().saturating_sub(1));
    let serial_no = raw[skip..].iter().map(|b| format!("{b:02X}")).collect();
    let secs = |t: x509_cert::time::Time| {
        i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
    };
    let validity = tbs.validity();
    Ok(CertificateInfo {
        serial_no,
        not_before: secs(validity.not_before),
        not_after: secs(validity.not_after),
        spki_der: tbs
            .subject_public_key_info()
            .to_der()
            .map_err(|_| Error::InvalidKey("certificate public key"))?,
    })
}

struct PlatformKey {
    key: Box<dyn RsaPublicKey>,
    /// `(not_before, not_after)` for certificates; `None` for `PUB_KEY_ID_…` public keys, which
    /// carry no validity.
    validity: Option<(i64, i64)>,
}

/// The WeChat Pay platform keys a merchant trusts, by serial.
///
/// Certificate serials (certificate mode) and `PUB_KEY_ID_…` ids (public-key mode) live side by
/// side, because merchants migrating between the modes receive signatures under both.
#[derive(Default)]
pub struct PlatformKeys {
    keys: BTreeMap<String, PlatformKey>,
}

impl fmt::Debug for PlatformKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlatformKeys")
            .field("serials", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl PlatformKeys {
    /// An empty set.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a platform certificate (from `/v3/certificates` or a file) under its own serial,
    /// which is returned.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if the PEM is not an X.509 certificate with an RSA 2048–4096 key.
    pub fn insert_certificate_pem(
        &mut self,
        provider: &dyn CryptoProvider,
        pem: &str,
    ) -> Result<String> {
        let info = parse_certificate_pem(pem)?;
        let key = provider.public_key(&info.spki_der)?;
        self.keys.insert(
            info.serial_no.clone(),
            PlatformKey {
                key,
                validity: Some((info.not_before, info.not_after)),
            },
        );
        Ok(info.serial_no)
    }

    /// Adds a WeChat Pay public key (`pub_key.pem`) under its id (`PUB_KEY_ID_…`).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty id or a PEM that is not an RSA public key.
    pub fn insert_public_key_pem(
        &mut self,
        provider: &dyn CryptoProvider,
        key_id: &str,
        pem: &str,
    ) -> Result<()> {
        if key_id.trim().is_empty() {
            return Err(Error::InvalidKey("public key id must not be empty"));
        }
        let key = PublicKey::from_pem(provider, pem)?.key;
        self.keys.insert(
            key_id.trim().to_ascii_uppercase(),
            PlatformKey {
                key,
                validity: None,
            },
        );
        Ok(())
    }

    /// Whether a key with this serial is held.
    #[must_use]
    pub fn contains(&self, serial: &str) -> bool {
        self.keys.contains_key(&serial.to_ascii_uppercase())
    }

    /// The serials held, sorted.
    #[must_use]
    pub fn serials(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }

    /// Number of keys held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Drops certificates whose `notAfter` is before `now` (unix seconds); returns how many.
    /// Public keys have no validity and are kept.
    pub fn remove_expired(&mut self, now: u64) -> usize {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let before = self.keys.len();
        self.keys
            .retain(|_, k| k.validity.is_none_or(|(_, not_after)| not_after >= now));
        before - self.keys.len()
    }

    /// The certificate serial to use when encrypting for WeChat Pay: the newest valid
    /// certificate, else a public key id.
    #[must_use]
    pub fn preferred_serial(&self, now: u64) -> Option<&str> {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        self.keys
            .iter()
            .filter(|(_, k)| k.validity.is_some_and(|(nb, na)| nb <= now && now <= na))
            .max_by_key(|(_, k)| k.validity.map(|(nb, _)| nb))
            .or_else(|| self.keys.iter().find(|(_, k)| k.validity.is_none()))
            .map(|(s, _)| s.as_str())
    }

    fn key(&self, serial: &str) -> Result<&PlatformKey> {
        self.keys
            .get(serial)
            .or_else(|| self.keys.get(&serial.to_ascii_uppercase()))
            .ok_or(Error::UnknownSerial)
    }

    /// Verifies a base64 SHA256withRSA signature over `message` with the key named `serial`.
    ///
    /// # Errors
    /// [`Error::UnknownSerial`] if no such key is held; [`Error::SignatureMismatch`] otherwise.
    pub fn verify(&self, serial: &str, message: &[u8], signature_b64: &str) -> Result<()> {
        let key = self.key(serial)?;
        let sig = decode_signature(signature_b64)?;
        key.key.verify_pkcs1v15_sha256(message, &sig)
    }

    /// RSA-OAEP (SHA-1, MGF1-SHA-1) encryption of a sensitive field for WeChat Pay with the key
    /// named `serial` (send that serial as `Wechatpay-Serial`), base64.
    ///
    /// # Errors
    /// [`Error::UnknownSerial`], or [`Error::Malformed`] if the plaintext is too long.
    pub fn encrypt_oaep<R: CryptoRng>(
        &self,
        rng: &mut R,
        serial: &str,
        plaintext: &str,
    ) -> Result<String> {
        let key = self.key(serial)?;
        Ok(b64::encode(
            key.key.encrypt_oaep_sha1(rng, plaintext.as_bytes())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::all_providers;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const MERCHANT: &str = include_str!("../../tests/vectors/keys/merchant_private_key.pem");
    const MERCHANT_PUB: &str = include_str!("../../tests/vectors/keys/merchant_public_key.pem");
    const CERT: &str = include_str!("../../tests/vectors/keys/platform_cert.pem");

    #[test]
    fn certificate_serial_and_validity() {
        let info = parse_certificate_pem(CERT).expect("cert");
        assert_eq!(info.serial_no, "5157F09EFDC096DE15EBE81A47057A7232F8BB6B");
        assert!(info.not_before < info.not_after);
    }

    #[test]
    fn pkcs1_and_pkcs8_sign_the_same_bytes() {
        // Build the PKCS#1 PEM from the PKCS#8 one with the rsa crate, independent of our wrapper.
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::pkcs8::DecodePrivateKey;
        let key = rsa::PrivateKey::from_pkcs8_pem(MERCHANT).expect("pkcs8");
        let pkcs1 = key.to_pkcs1_pem(Default::default()).expect("pkcs1");
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        for p in all_providers() {
            let a = MerchantSigner::from_pem(p, MERCHANT, "1", "S").expect("a");
            let b = MerchantSigner::from_pem(p, &pkcs1, "1", "S").expect("b");
            let sa = a.sign(&mut rng, b"msg").expect("sa");
            assert_eq!(sa, b.sign(&mut rng, b"msg").expect("sb"));
            PublicKey::from_pem(p, MERCHANT_PUB)
                .expect("pub")
                .verify(b"msg", &sa)
                .expect("verifies");
        }
    }

    #[test]
    fn bad_keys_are_invalid_key() {
        for p in all_providers() {
            for pem in ["", "garbage", CERT, MERCHANT_PUB] {
                let e = MerchantSigner::from_pem(p, pem, "1", "S").expect_err("bad");
                assert_eq!(e.code(), "invalid_key");
            }
            assert_eq!(
                MerchantSigner::from_pem(p, MERCHANT, "", "S")
                    .expect_err("empty")
                    .code(),
                "invalid_key"
            );
            assert_eq!(
                PublicKey::from_pem(p, MERCHANT)
                    .expect_err("private as public")
                    .code(),
                "invalid_key"
            );
        }
    }

    #[test]
    fn platform_keys_hold_both_modes_and_expire_certificates() {
        let p = crate::provider::default_provider();
        let mut keys = PlatformKeys::new();
        let serial = keys.insert_certificate_pem(p, CERT).expect("cert");
        keys.insert_public_key_pem(p, "PUB_KEY_ID_0114", MERCHANT_PUB)
            .expect("pk");
        assert!(keys.contains(&serial) && keys.contains("PUB_KEY_ID_0114"));
        assert_eq!(keys.preferred_serial(0), Some("PUB_KEY_ID_0114"));
        let info = parse_certificate_pem(CERT).expect("cert");
        let inside = u64::try_from(info.not_before + 1).expect("positive");
        assert_eq!(keys.preferred_serial(inside), Some(serial.as_str()));
        assert_eq!(keys.remove_expired(inside), 0);
        let after = u64::try_from(info.not_after + 1).expect("positive");
        assert_eq!(keys.remove_expired(after), 1);
        assert_eq!(keys.serials(), vec!["PUB_KEY_ID_0114".to_owned()]);
        assert_eq!(
            keys.verify(&serial, b"m", "AAAA").expect_err("gone"),
            Error::UnknownSerial
        );
    }

    #[test]
    fn debug_redacts() {
        let s = MerchantSigner::from_pem(crate::provider::default_provider(), MERCHANT, "19", "AB")
            .expect("key");
        let d = format!("{s:?}");
        assert!(d.contains("redacted") && !d.contains("MII"));
    }
}
