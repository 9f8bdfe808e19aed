//! PEM key and certificate parsing: `MerchantSigner::from_pem`, `PublicKey::from_pem`,
//! `parse_certificate_pem`, `PlatformKeys::insert_certificate_pem` / `insert_public_key_pem`, on
//! the same text, through every compiled-in provider.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use wxpay_core::keys::parse_certificate_pem;
use wxpay_core::{MerchantSigner, PlatformKeys, PublicKey, provider};

fuzz_target!(|data: &[u8]| {
    let pem = common::text(data);
    let _ = parse_certificate_pem(&pem);
    for p in provider::all_providers() {
        let _ = MerchantSigner::from_pem(p, &pem, "1900009191", "SERIAL");
        let _ = PublicKey::from_pem(p, &pem);
        let mut keys = PlatformKeys::new();
        if let Ok(serial) = keys.insert_certificate_pem(p, &pem) {
            assert!(keys.contains(&serial), "inserted serial is held");
        }
        let _ = keys.insert_public_key_pem(p, "PUB_KEY_ID_X", &pem);
    }
});
