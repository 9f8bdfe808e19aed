//! Shared by every target: input splitting and the fixed test keys of `tests/vectors/keys`.
#![allow(dead_code)]

use wxpay_core::{PlatformKeys, PublicKey, provider};

/// Field separator in fuzz inputs (the seed generator in `scripts/fuzz.sh` uses the same byte).
pub const SEP: u8 = 0xFF;

/// Splits `data` on [`SEP`] into exactly `N` fields: missing ones are empty, separators past
/// the `N - 1`th stay in the last field. 0xFF never occurs in UTF-8, so text fields keep every
/// byte they can carry.
pub fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&data[..0]; N];
    for (slot, part) in out.iter_mut().zip(data.splitn(N, |&b| b == SEP)) {
        *slot = part;
    }
    out
}

/// Lossy UTF-8: the core takes `&str`, so invalid bytes become U+FFFD instead of a dead input.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub const PLATFORM_CERT: &str = include_str!("../../../../tests/vectors/keys/platform_cert.pem");
pub const PLATFORM_PUBLIC_KEY: &str =
    include_str!("../../../../tests/vectors/keys/platform_public_key.pem");
pub const MERCHANT_PRIVATE_KEY: &str =
    include_str!("../../../../tests/vectors/keys/merchant_private_key.pem");
pub const MERCHANT_PUBLIC_KEY: &str =
    include_str!("../../../../tests/vectors/keys/merchant_public_key.pem");
pub const PUB_KEY_ID: &str = "PUB_KEY_ID_01177091453416538289665537193159";
pub const API_V3_KEY: &str = "abababababababababababababababab";
pub const API_V2_KEY: &str = "192006250b4c09247ec02edce69f6a2d";

/// The platform key set of the v3 vectors: the certificate and the WeChat Pay public key.
pub fn platform_keys() -> PlatformKeys {
    let p = provider::default_provider();
    let mut keys = PlatformKeys::new();
    keys.insert_certificate_pem(p, PLATFORM_CERT)
        .expect("vector certificate parses");
    keys.insert_public_key_pem(p, PUB_KEY_ID, PLATFORM_PUBLIC_KEY)
        .expect("vector public key parses");
    let _ = PublicKey::from_pem(p, MERCHANT_PUBLIC_KEY).expect("vector merchant key parses");
    keys
}
