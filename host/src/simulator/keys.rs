//! The simulator's credentials.
//!
//! TEST-ONLY KEY MATERIAL. The RSA keys below are the project's published test keys
//! (`tests/vectors/keys`, also used by the known-answer vectors); they are compiled in so that
//! the simulator starts instantly and deterministically. Anyone can read them: never configure
//! a real merchant with them, and never point a real host at a simulator on a public address.
//! The APIv3 key and the AppSecret are drawn fresh at every start.

use std::fmt;

use rand_core::CryptoRng;
use wxpay_core::keys::{CertificateInfo, MerchantSigner, PublicKey, parse_certificate_pem};
use wxpay_core::provider::default_provider;

/// The merchant's API private key (PKCS#8), test-only.
const MERCHANT_PRIVATE_KEY_PEM: &str =
    include_str!("../../../tests/vectors/keys/merchant_private_key.pem");
/// The merchant's public key, which the simulator verifies `Authorization` and `paySign` with.
const MERCHANT_PUBLIC_KEY_PEM: &str =
    include_str!("../../../tests/vectors/keys/merchant_public_key.pem");
/// WeChat Pay's platform private key, test-only: signs responses and notifications.
const PLATFORM_PRIVATE_KEY_PEM: &str =
    include_str!("../../../tests/vectors/keys/platform_private_key.pem");
/// The platform public key (public-key mode, `pub_key.pem`).
const PLATFORM_PUBLIC_KEY_PEM: &str =
    include_str!("../../../tests/vectors/keys/platform_public_key.pem");
/// The self-signed platform certificate over the same key (certificate mode).
const PLATFORM_CERT_PEM: &str = include_str!("../../../tests/vectors/keys/platform_cert.pem");
/// TEST-ONLY: the platform key WeChat Pay "rotates to" in
/// [`super::SimulatorHandle::rotate_platform_certificate`]. Generated once for the simulator
/// (`openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=wxpay simulator rotated
/// test cert"`) and published with the source: never use it for anything real.
const ROTATED_PLATFORM_PRIVATE_KEY_PEM: &str = include_str!("rotated_platform_private_key.pem");
/// TEST-ONLY: the self-signed certificate over [`ROTATED_PLATFORM_PRIVATE_KEY_PEM`], with a
/// serial different from the first platform certificate's.
const ROTATED_PLATFORM_CERT_PEM: &str = include_str!("rotated_platform_cert.pem");

/// The merchant id of the test vectors.
const MCHID: &str = "1900009191";
/// The mini-program AppID of the test vectors.
const APPID: &str = "wxd678efh567hg6787";
/// Serial number of the merchant API certificate in the test vectors.
const MERCHANT_SERIAL: &str = "1DDE55AD98ED71D6EDD4A4A16996DE7B47773A8C";
/// The WeChat Pay public key id under which the test vectors publish the platform public key.
const PLATFORM_PUBLIC_KEY_ID: &str = "PUB_KEY_ID_01177091453416538289665537193159";

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
    /// The merchant API private key, PKCS#8 PEM (content of `WXPAY_MERCHANT_KEY_FILE`).
    pub merchant_private_key_pem: &'static str,
    /// The merchant public key the simulator verifies with, SPKI PEM.
    pub merchant_public_key_pem: &'static str,
    /// WeChat Pay platform public key, SPKI PEM (content of `WXPAY_PLATFORM_PUBLIC_KEY_FILE`).
    pub platform_public_key_pem: &'static str,
    /// The platform certificate PEM (what `/v3/certificates` delivers in certificate mode).
    pub platform_certificate_pem: &'static str,
    /// `Some(PUB_KEY_ID_…)` in public-key mode (`WXPAY_PLATFORM_PUBLIC_KEY_ID`), else `None`.
    pub platform_public_key_id: Option<String>,
    /// `Some(serial)` of the platform certificate in certificate mode, else `None`.
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
    /// The `Wechatpay-Serial` the simulator signs under: the public key id in public-key mode,
    /// the certificate serial in certificate mode.
    #[must_use]
    pub fn platform_serial(&self) -> &str {
        self.platform_public_key_id
            .as_deref()
            .or(self.platform_certificate_serial.as_deref())
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
    pub pem: &'static str,
}

/// The second, TEST-ONLY platform certificate and key that a rotation switches to.
pub(crate) fn rotated_platform_certificate(mchid: &str) -> wxpay_core::Result<PlatformCertificate> {
    let info = parse_certificate_pem(ROTATED_PLATFORM_CERT_PEM)?;
    let signer = MerchantSigner::from_pem(
        default_provider(),
        ROTATED_PLATFORM_PRIVATE_KEY_PEM,
        mchid,
        &info.serial_no,
    )?;
    Ok(PlatformCertificate {
        signer,
        info,
        pem: ROTATED_PLATFORM_CERT_PEM,
    })
}

/// The parsed keys the simulator works with.
pub(crate) struct SimKeys {
    pub credentials: SimulatorCredentials,
    /// The platform private key, wrapped as a signer whose "serial" is the platform serial.
    pub platform_signer: MerchantSigner,
    /// Verifies the merchant's `Authorization` and `paySign`.
    pub merchant_public: PublicKey,
    /// Validity of the platform certificate, for `/v3/certificates`.
    pub certificate: CertificateInfo,
}

impl SimKeys {
    /// Parses the compiled-in test keys and draws the per-start secrets.
    pub(crate) fn load<R: CryptoRng>(
        rng: &mut R,
        public_key_mode: bool,
        api_v3_key: Option<String>,
    ) -> wxpay_core::Result<Self> {
        let provider = default_provider();
        let certificate = parse_certificate_pem(PLATFORM_CERT_PEM)?;
        let (platform_public_key_id, platform_certificate_serial) = if public_key_mode {
            (Some(PLATFORM_PUBLIC_KEY_ID.to_owned()), None)
        } else {
            (None, Some(certificate.serial_no.clone()))
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
            merchant_private_key_pem: MERCHANT_PRIVATE_KEY_PEM,
            merchant_public_key_pem: MERCHANT_PUBLIC_KEY_PEM,
            platform_public_key_pem: PLATFORM_PUBLIC_KEY_PEM,
            platform_certificate_pem: PLATFORM_CERT_PEM,
            platform_public_key_id,
            platform_certificate_serial,
        };
        let platform_signer = MerchantSigner::from_pem(
            provider,
            PLATFORM_PRIVATE_KEY_PEM,
            MCHID,
            credentials.platform_serial(),
        )?;
        let merchant_public = PublicKey::from_pem(provider, MERCHANT_PUBLIC_KEY_PEM)?;
        Ok(Self {
            credentials,
            platform_signer,
            merchant_public,
            certificate,
        })
    }
}
