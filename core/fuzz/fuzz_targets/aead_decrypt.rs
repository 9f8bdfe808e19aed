//! `aead::decrypt` (AEAD_AES_256_GCM). Input fields: key, nonce, associated data, ciphertext
//! (base64). Round trip: `encrypt` then `decrypt` gives the ciphertext field back as plaintext.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use wxpay_core::aead::{self, ApiV3Key};

fuzz_target!(|data: &[u8]| {
    let [key, nonce, aad, ct] = common::fields::<4>(data);
    let key = ApiV3Key::new(&common::text(key))
        .unwrap_or_else(|_| ApiV3Key::new(common::API_V3_KEY).expect("32 bytes"));
    let (nonce, aad, ct) = (common::text(nonce), common::text(aad), common::text(ct));
    let _ = aead::decrypt(&key, &nonce, &aad, &ct);
    if let Ok(sealed) = aead::encrypt(&key, &nonce, &aad, ct.as_bytes()) {
        let opened = aead::decrypt(&key, &nonce, &aad, &sealed).expect("round trip decrypts");
        assert_eq!(opened, ct);
    }
});
