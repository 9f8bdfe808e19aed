//! Property tests over the public API: round trips, and "never panics" on arbitrary input to
//! every parser and verifier.
#![allow(missing_docs)]

use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use wxpay_core::provider::all_providers;
use wxpay_core::v3::{self, ApiV3Key, WechatpayHeaders};
use wxpay_core::{MerchantSigner, PlatformKeys, PublicKey};

const MERCHANT: &str = include_str!("../../tests/vectors/keys/merchant_private_key.pem");
const MERCHANT_PUB: &str = include_str!("../../tests/vectors/keys/merchant_public_key.pem");
const PLATFORM: &str = include_str!("../../tests/vectors/keys/platform_private_key.pem");
const CERT: &str = include_str!("../../tests/vectors/keys/platform_cert.pem");
const SERIAL: &str = "5157F09EFDC096DE15EBE81A47057A7232F8BB6B";
const KEY: &str = "abababababababababababababababab";

fn keys() -> PlatformKeys {
    let mut k = PlatformKeys::new();
    k.insert_certificate_pem(wxpay_core::provider::default_provider(), CERT)
        .expect("cert");
    k
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn sign_verify_round_trip_and_one_flipped_byte(msg in proptest::collection::vec(any::<u8>(), 0..300),
                                                   seed in any::<u64>(), flip in any::<usize>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for p in all_providers() {
            let signer = MerchantSigner::from_pem(p, MERCHANT, "1", "S").expect("key");
            let public = PublicKey::from_pem(p, MERCHANT_PUB).expect("pub");
            let sig = signer.sign(&mut rng, &msg).expect("sign");
            prop_assert!(public.verify(&msg, &sig).is_ok());
            let mut tampered = msg.clone();
            if tampered.is_empty() { tampered.push(0) } else { let i = flip % tampered.len(); tampered[i] ^= 0x01; }
            prop_assert_eq!(public.verify(&tampered, &sig).expect_err("tampered").code(), "signature_mismatch");
        }
    }

    #[test]
    fn oaep_round_trip(text in "\\PC{0,60}", seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        for p in all_providers() {
            let signer = MerchantSigner::from_pem(p, MERCHANT, "1", "S").expect("key");
            let public = PublicKey::from_pem(p, MERCHANT_PUB).expect("pub");
            let ct = public.encrypt_oaep(&mut rng, &text).expect("encrypt");
            prop_assert_eq!(signer.decrypt_oaep(&mut rng, &ct).expect("decrypt"), text.clone());
        }
    }

    #[test]
    fn notification_round_trip_through_sign_response(amount in 1i64..10_000_000, ts in 1_600_000_000u64..1_900_000_000, seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let p = wxpay_core::provider::default_provider();
        let platform = MerchantSigner::from_pem(p, PLATFORM, "x", SERIAL).expect("platform");
        let key = ApiV3Key::new(KEY).expect("key");
        let plain = format!(r#"{{"mchid":"1","appid":"wx","out_trade_no":"o","trade_state":"SUCCESS","amount":{{"total":{amount}}}}}"#);
        let ct = wxpay_core::aead::encrypt(&key, "0123456789ab", "transaction", plain.as_bytes()).expect("enc");
        let body = format!(r#"{{"id":"EV-1","create_time":"t","event_type":"TRANSACTION.SUCCESS","resource_type":"encrypt-resource","summary":"s","resource":{{"original_type":"transaction","algorithm":"AEAD_AES_256_GCM","ciphertext":"{ct}","associated_data":"transaction","nonce":"0123456789ab"}}}}"#);
        let nonce = wxpay_core::nonce_str(&mut rng);
        let sig = v3::sign_response(&platform, &mut rng, &ts.to_string(), &nonce, body.as_bytes()).expect("sign");
        let h = WechatpayHeaders::from_pairs([
            ("wechatpay-timestamp", ts.to_string().as_str()), ("Wechatpay-Nonce", &nonce),
            ("Wechatpay-Signature", &sig), ("Wechatpay-Serial", SERIAL)]).expect("headers");
        let n = v3::verify_notification(&keys(), &key, &h, body.as_bytes(), ts + 299).expect("verify");
        prop_assert_eq!(n.transaction().expect("tx").amount.expect("amount").total, amount);
        prop_assert_eq!(v3::verify_notification(&keys(), &key, &h, body.as_bytes(), ts + 301).expect_err("late").code(), "timestamp_expired");
    }

    #[test]
    fn v3_verifiers_never_panic(ts in ".{0,12}", nonce in ".{0,40}", sig in ".{0,400}", serial in ".{0,50}",
                                body in proptest::collection::vec(any::<u8>(), 0..400), now in any::<u64>()) {
        let keys = keys();
        let key = ApiV3Key::new(KEY).expect("key");
        if let Ok(h) = WechatpayHeaders::from_pairs([("Wechatpay-Timestamp", ts.as_str()), ("Wechatpay-Nonce", &nonce),
                                                      ("Wechatpay-Signature", &sig), ("Wechatpay-Serial", &serial)]) {
            let _ = v3::verify_response(&keys, &h, &body, now);
            let _ = v3::verify_notification(&keys, &key, &h, &body, now);
        }
        let _ = v3::decrypt_certificates(&key, &body);
    }

    #[test]
    fn key_and_certificate_parsers_never_panic(s in "(-----BEGIN [A-Z ]{0,20}-----\n)?[A-Za-z0-9+/=\n]{0,300}(-----END [A-Z ]{0,20}-----)?") {
        for p in all_providers() {
            let _ = MerchantSigner::from_pem(p, &s, "1", "S");
            let _ = PublicKey::from_pem(p, &s);
            let _ = PlatformKeys::new().insert_certificate_pem(p, &s);
        }
        let _ = wxpay_core::keys::parse_certificate_pem(&s);
    }

    #[test]
    fn oaep_decrypt_never_panics(ct in "[A-Za-z0-9+/=]{0,400}") {
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        for p in all_providers() {
            let signer = MerchantSigner::from_pem(p, MERCHANT, "1", "S").expect("key");
            let _ = signer.decrypt_oaep(&mut rng, &ct);
        }
    }
}
