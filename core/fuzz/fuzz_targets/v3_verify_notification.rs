//! `WechatpayHeaders::from_pairs` + v3 `verify_notification`. Input fields (0xFF-separated):
//! `now` (decimal), header lines (`name: value` per line), body. The decrypted resource's
//! parsers (`transaction`, `refund`) are fuzzed here too, on the body as plaintext, since a
//! fuzzer cannot forge the RSA signature that guards them.
#![no_main]
mod common;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wxpay_core::PlatformKeys;
use wxpay_core::v3::{self, ApiV3Key, EncryptedResource, Notification, WechatpayHeaders};

static KEYS: LazyLock<PlatformKeys> = LazyLock::new(common::platform_keys);

fuzz_target!(|data: &[u8]| {
    let [now, headers, body] = common::fields::<3>(data);
    let now: u64 = common::text(now).trim().parse().unwrap_or(1_614_739_000);
    let headers = common::text(headers);
    let pairs = headers.lines().filter_map(|l| l.split_once(':'));
    let api_v3_key = ApiV3Key::new(common::API_V3_KEY).expect("32 bytes");
    if let Ok(h) = WechatpayHeaders::from_pairs(pairs) {
        let _ = h.is_probe();
        let _ = v3::verify_notification(&KEYS, &api_v3_key, &h, body, now);
    }
    let n = Notification {
        id: String::new(),
        create_time: String::new(),
        event_type: String::new(),
        resource_type: String::new(),
        summary: String::new(),
        resource: EncryptedResource {
            algorithm: String::new(),
            ciphertext: String::new(),
            associated_data: String::new(),
            original_type: String::new(),
            nonce: String::new(),
        },
        plaintext: common::text(body),
    };
    let _ = n.transaction();
    let _ = n.refund();
});
