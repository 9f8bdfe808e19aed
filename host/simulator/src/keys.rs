//! The simulator's credentials and key material.
//!
//! No private key is compiled into any binary. By default every start generates fresh RSA-2048
//! key pairs (AWS-LC, through `rcgen`) for the merchant and for WeChat Pay's platform, and a
//! self-signed platform certificate over the platform key; a certificate rotation generates
//! another pair and certificate. With [`super::SimulatorOptions::keys_dir`] the keys are read at
//! run time from PEM files instead (e.g. the project's published test keys in
//! `tests/vectors/keys`, so that a test can check against known answers):
//!
//! | file | required | content |
//! | --- | --- | --- |
//! | `merchant_private_key.pem` | yes | merchant API key, PKCS#8 `PRIVATE KEY` or PKCS#1 `RSA PRIVATE KEY` |
//! | `merchant_public_key.pem` | no | its SPKI `PUBLIC KEY` (derived from the private key if absent) |
//! | `platform_private_key.pem` | yes | WeChat Pay's platform key (PKCS#8 or PKCS#1) |
//! | `platform_public_key.pem` | no | its SPKI `PUBLIC KEY` (derived if absent) |
//! | `platform_cert.pem` | no | an X.509 certificate over the platform key (generated if absent) |
//!
//! Files that do not belong together (a public key or certificate of another key) are refused
//! at start. The APIv3 key and the AppSecret are drawn fresh at every start either way.

use std::fmt;
use std::path::{Path, PathBuf};

use rand_core::CryptoRng;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256};
use wxpay_core::keys::{
    CertificateInfo, MerchantSigner, PlatformKeys, PublicKey, parse_certificate_pem,
};
use wxpay_core::provider::default_provider;

use super::SimulatorError;
use super::wire::civil_date;

/// The merchant id of the test vectors.
const MCHID: &str = "1900009191";
/// The mini-program AppID of the test vectors.
const APPID: &str = "wxd678efh567hg6787";
/// Serial number of the merchant API certificate in the test vectors. The simulator never sees
/// the merchant's certificate, only this serial in `Authorization`, so it is kept for generated
/// keys too.
const MERCHANT_SERIAL: &str = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C";
/// The WeChat Pay public key id under which the test vectors publish the platform public key.
const PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_01177091453416538289665537193159";
/// How long a generated platform certificate is valid (WeChat Pay's are valid for five years).
const CERTIFICATE_YEARS: u64 = 5;

/// Everything a merchant host needs to talk to the simulator. All of it is test material.
///
/// `Debug` redacts the AppSecret, the APIv3 key and the private key.
#[derive(Clone)]
pub struct SimulatorCredentials {
    /// Merchant id (`WXPAY_MCHID`).
    pub mchid: String,
    /// Mini-program AppID (`WXPAY_APPID`).
    pub appid: String,
    /// Mini-program AppSecret for `jscode2session` (`WXPAY_APPSECRET`), random per start.
    pub appsecret: String,
    /// APIv3 key, 32 characters (`WXPAY_API_V3_KEY`), random per start unless configured.
    pub api_v3_key: String,
    /// Serial number of the merchant API certificate (`WXPAY_MERCHANT_SERIAL`).
    pub merchant_serial: String,
    /// The merchant API private key, PKCS#8 PEM when generated (content of
    /// `WXPAY_MERCHANT_KEY_FILE`); as read from the keys directory otherwise.
    pub merchant_private_key_pem: String,
    /// The merchant public key the simulator verifies with, SPKI PEM.
    pub merchant_public_key_pem: String,
    /// WeChat Pay platform public key, SPKI PEM (content of `WXPAY_PLATFORM_PUBLIC_KEY_FILE`).
    /// In public-key migration mode, the WeChat Pay public key (a key of its own, not the
    /// certificate's).
    pub platform_public_key_pem: String,
    /// The platform certificate PEM (what `/v3/certificates` delivers in certificate mode).
    pub platform_certificate_pem: String,
    /// `Some(PUB_KEY_ID_…)` in public-key and migration mode (`WXPAY_PLATFORM_PUBLIC_KEY_ID`),
    /// else `None`.
    pub platform_public_key_id: Option<String>,
    /// `Some(serial)` of the platform certificate in certificate and migration mode, else
    /// `None`.
    pub platform_certificate_serial: Option<String>,
}

impl fmt::Debug for SimulatorCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorCredentials")
            .field("mchid", &self.mchid)
            .field("appid", &self.appid)
            .field("appsecret", &"<redacted>")
            .field("api_v3_key", &"<redacted>")
            .field("merchant_serial", &self.merchant_serial)
            .field("merchant_private_key_pem", &"<redacted>")
            .field("platform_public_key_id", &self.platform_public_key_id)
            .field(
                "platform_certificate_serial",
                &self.platform_certificate_serial,
            )
            .finish_non_exhaustive()
    }
}

impl SimulatorCredentials {
    /// The `Wechatpay-Serial` the simulator signs under at start: the public key id in
    /// public-key mode, the certificate serial in certificate and migration mode.
    #[must_use]
    pub fn platform_serial(&self) -> &str {
        self.platform_certificate_serial
            .as_deref()
            .or(self.platform_public_key_id.as_deref())
            .unwrap_or_default()
    }
}

/// A platform key pair that can sign: the certificate `/v3/certificates` lists and the signer
/// whose "serial" is that certificate's serial.
pub(crate) struct PlatformCertificate {
    /// Signs responses and notifications under the certificate's serial.
    pub signer: MerchantSigner,
    /// Serial number and validity, for `Wechatpay-Serial` and `/v3/certificates`.
    pub info: CertificateInfo,
    /// The certificate PEM (encrypted into `/v3/certificates`).
    pub pem: String,
}

/// A freshly generated platform key and certificate, for a rotation at `now`.
///
/// # Errors
/// [`SimulatorError::KeyGeneration`] if AWS-LC or `rcgen` fails, [`SimulatorError::Keys`] if
/// the core refuses the result.
pub(crate) fn rotated_platform_certificate(
    mchid: &str,
    now: u64,
) -> Result<PlatformCertificate, SimulatorError> {
    let key = generate_rsa()?;
    let pem = self_signed_certificate(&key, "wxpay simulator rotated platform (TEST ONLY)", now)?;
    let info = parse_certificate_pem(&pem)?;
    let signer = MerchantSigner::from_pem(
        default_provider(),
        &key.serialize_pem(),
        mchid,
        &info.serial_no,
    )?;
    Ok(PlatformCertificate { signer, info, pem })
}

/// Which platform keys a simulated merchant has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PlatformMode {
    /// Platform certificates only.
    Certificate,
    /// The WeChat Pay public key only.
    PublicKey,
    /// Switching from the certificate to the public key: both, each with its own key pair.
    Migration,
}

/// The parsed keys the simulator works with.
pub(crate) struct SimKeys {
    pub credentials: SimulatorCredentials,
    /// The platform private key, wrapped as a signer whose "serial" is the platform serial.
    pub platform_signer: MerchantSigner,
    /// Migration mode: the WeChat Pay public key's private half, whose "serial" is its id.
    pub public_key_signer: Option<MerchantSigner>,
    /// Verifies the merchant's `Authorization` and `paySign`.
    pub merchant_public: PublicKey,
    /// Validity of the platform certificate, for `/v3/certificates`.
    pub certificate: CertificateInfo,
}

/// The PEM texts before parsing.
struct KeyPems {
    merchant_private: String,
    merchant_public: String,
    platform_private: String,
    platform_public: String,
    platform_cert: String,
}

impl SimKeys {
    /// Generates the key pairs (or reads them from `keys_dir`) and draws the per-start
    /// secrets. `now` (unix seconds) dates a generated certificate.
    ///
    /// # Errors
    /// [`SimulatorError::KeyFile`] for an unreadable required file, [`SimulatorError::Keys`] for
    /// keys the core refuses or an unusable APIv3 key, [`SimulatorError::KeyMismatch`] for files
    /// that do not belong together, [`SimulatorError::KeyGeneration`] if generation fails.
    pub(crate) fn load<R: CryptoRng>(
        rng: &mut R,
        mode: PlatformMode,
        api_v3_key: Option<String>,
        keys_dir: Option<&Path>,
        now: u64,
    ) -> Result<Self, SimulatorError> {
        let pems = match keys_dir {
            Some(dir) => read_dir(dir, now)?,
            None => generate(now)?,
        };
        let provider = default_provider();
        let certificate = parse_certificate_pem(&pems.platform_cert)?;
        let (platform_public_key_id, platform_certificate_serial) = match mode {
            PlatformMode::PublicKey => (Some(PLATFORM_PUBLIC_KEY_ID.to_owned()), None),
            PlatformMode::Certificate => (None, Some(certificate.serial_no.clone())),
            PlatformMode::Migration => (
                Some(PLATFORM_PUBLIC_KEY_ID.to_owned()),
                Some(certificate.serial_no.clone()),
            ),
        };
        // WeChat Pay's public key is a key of its own: in migration mode a message verified
        // with the wrong one of the two fails.
        let public_key_pair = match mode {
            PlatformMode::Migration => Some(generate_rsa()?),
            PlatformMode::Certificate | PlatformMode::PublicKey => None,
        };
        let api_v3_key = api_v3_key.unwrap_or_else(|| wxpay_core::nonce::nonce_str(rng));
        // Fail at start, not at the first notification, if a configured key is unusable.
        wxpay_core::aead::ApiV3Key::new(&api_v3_key)?;
        let credentials = SimulatorCredentials {
            mchid: MCHID.to_owned(),
            appid: APPID.to_owned(),
            appsecret: wxpay_core::nonce::nonce_str(rng).to_ascii_lowercase(),
            api_v3_key,
            merchant_serial: MERCHANT_SERIAL.to_owned(),
            merchant_private_key_pem: pems.merchant_private,
            merchant_public_key_pem: pems.merchant_public,
            platform_public_key_pem: public_key_pair
                .as_ref()
                .map_or(pems.platform_public, KeyPair::public_key_pem),
            platform_certificate_pem: pems.platform_cert,
            platform_public_key_id,
            platform_certificate_serial,
        };
        let platform_signer = MerchantSigner::from_pem(
            provider,
            &pems.platform_private,
            MCHID,
            credentials.platform_serial(),
        )?;
        let merchant_public = PublicKey::from_pem(provider, &credentials.merchant_public_key_pem)?;
        let merchant_signer = MerchantSigner::from_pem(
            provider,
            &credentials.merchant_private_key_pem,
            MCHID,
            MERCHANT_SERIAL,
        )?;
        check_pair(
            &merchant_signer,
            &merchant_public,
            "merchant_public_key.pem is not the merchant private key's public key",
        )?;
        let public_key_signer = match &public_key_pair {
            Some(pair) => Some(MerchantSigner::from_pem(
                provider,
                &pair.serialize_pem(),
                MCHID,
                PLATFORM_PUBLIC_KEY_ID,
            )?),
            None => None,
        };
        let platform_public = PublicKey::from_pem(provider, &credentials.platform_public_key_pem)?;
        check_pair(
            public_key_signer.as_ref().unwrap_or(&platform_signer),
            &platform_public,
            "platform_public_key.pem is not the platform private key's public key",
        )?;
        let mut held = PlatformKeys::new();
        let serial =
            held.insert_certificate_pem(provider, &credentials.platform_certificate_pem)?;
        let mut rng = super::rng();
        let probe = b"wxpay-simulator key check";
        let signature = platform_signer.sign(&mut rng, probe)?;
        held.verify(&serial, probe, &signature).map_err(|_| {
            SimulatorError::KeyMismatch("platform_cert.pem is not over the platform key")
        })?;
        Ok(Self {
            credentials,
            platform_signer,
            public_key_signer,
            merchant_public,
            certificate,
        })
    }
}

/// Signs a probe with `signer` and verifies it with `public`.
fn check_pair(
    signer: &MerchantSigner,
    public: &PublicKey,
    mismatch: &'static str,
) -> Result<(), SimulatorError> {
    let probe = b"wxpay-simulator key check";
    let signature = signer.sign(&mut super::rng(), probe)?;
    public
        .verify(probe, &signature)
        .map_err(|_| SimulatorError::KeyMismatch(mismatch))
}

/// A fresh RSA-2048 key pair (AWS-LC).
fn generate_rsa() -> Result<KeyPair, SimulatorError> {
    KeyPair::generate_for(&PKCS_RSA_SHA256)
        .map_err(|e| SimulatorError::KeyGeneration(format!("RSA key: {e}")))
}

/// Fresh merchant and platform key pairs and a platform certificate. The two keys are
/// generated on two threads: RSA key generation is the slow part of a start.
fn generate(now: u64) -> Result<KeyPems, SimulatorError> {
    let (merchant, platform) = std::thread::scope(|s| {
        let merchant = s.spawn(generate_rsa);
        let platform = generate_rsa();
        let merchant = merchant.join().unwrap_or_else(|_| {
            Err(SimulatorError::KeyGeneration(
                "keygen thread panicked".into(),
            ))
        });
        (merchant, platform)
    });
    let (merchant, platform) = (merchant?, platform?);
    let platform_cert = self_signed_certificate(
        &platform,
        "Tenpay.com Root CA (wxpay simulator, TEST ONLY)",
        now,
    )?;
    Ok(KeyPems {
        merchant_private: merchant.serialize_pem(),
        merchant_public: merchant.public_key_pem(),
        platform_private: platform.serialize_pem(),
        platform_public: platform.public_key_pem(),
        platform_cert,
    })
}

/// Reads the key files of `dir` (see the module documentation for the layout).
fn read_dir(dir: &Path, now: u64) -> Result<KeyPems, SimulatorError> {
    let merchant_private = read(dir, "merchant_private_key.pem")?;
    let platform_private = read(dir, "platform_private_key.pem")?;
    let merchant_public = match read_optional(dir, "merchant_public_key.pem")? {
        Some(pem) => pem,
        None => load_key(&merchant_private, "merchant_private_key.pem")?.public_key_pem(),
    };
    let platform_key = load_key(&platform_private, "platform_private_key.pem")?;
    let platform_public = match read_optional(dir, "platform_public_key.pem")? {
        Some(pem) => pem,
        None => platform_key.public_key_pem(),
    };
    let platform_cert = match read_optional(dir, "platform_cert.pem")? {
        Some(pem) => pem,
        None => self_signed_certificate(
            &platform_key,
            "Tenpay.com Root CA (wxpay simulator, TEST ONLY)",
            now,
        )?,
    };
    Ok(KeyPems {
        merchant_private,
        merchant_public,
        platform_private,
        platform_public,
        platform_cert,
    })
}

fn load_key(pem: &str, name: &'static str) -> Result<KeyPair, SimulatorError> {
    KeyPair::from_pem_and_sign_algo(pem, &PKCS_RSA_SHA256)
        .map_err(|e| SimulatorError::KeyGeneration(format!("{name}: {e}")))
}

fn read(dir: &Path, name: &str) -> Result<String, SimulatorError> {
    let path = dir.join(name);
    std::fs::read_to_string(&path).map_err(|source| SimulatorError::KeyFile { path, source })
}

fn read_optional(dir: &Path, name: &str) -> Result<Option<String>, SimulatorError> {
    let path: PathBuf = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(pem) => Ok(Some(pem)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SimulatorError::KeyFile { path, source }),
    }
}

/// A self-signed X.509 v3 certificate over `key` (sha256WithRSAEncryption), valid from a day
/// before `now` for [`CERTIFICATE_YEARS`], with a random positive 20-byte serial whose first
/// byte is not zero, so that its hex is exactly what `wxpay_core::keys::parse_certificate_pem`
/// reports and what `Wechatpay-Serial` carries (40 upper-case hex digits, like WeChat's).
fn self_signed_certificate(
    key: &KeyPair,
    common_name: &str,
    now: u64,
) -> Result<String, SimulatorError> {
    let mut serial = [0u8; 20];
    rand_core::Rng::fill_bytes(&mut super::rng(), &mut serial);
    // Positive (high bit clear) and without a leading zero byte.
    serial[0] = (serial[0] & 0x7f).max(0x10);
    let mut params = CertificateParams::default();
    params.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    // Midnight UTC of the day of a unix time, as `rcgen` dates certificates.
    let ymd = |unix: u64| {
        let (y, m, d) = civil_date(unix);
        rcgen::date_time_ymd(y, m, d)
    };
    params.not_before = ymd(now.saturating_sub(86_400));
    params.not_after = ymd(now.saturating_add(CERTIFICATE_YEARS * 365 * 86_400));
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, "CN");
    name.push(DnType::OrganizationName, "Tenpay.com");
    name.push(DnType::OrganizationalUnitName, "Tenpay.com CA Center");
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    let cert = params
        .self_signed(key)
        .map_err(|e| SimulatorError::KeyGeneration(format!("platform certificate: {e}")))?;
    Ok(cert.pem())
}
