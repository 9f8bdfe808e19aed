//! `decrypt_certificates` and `verify_certificates_response`. Input fields: `now`, header lines,
//! body (a `/v3/certificates` JSON body).
#![no_main]
mod common;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wxpay_core::v3::{self, ApiV3Key, WechatpayHeaders};
use wxpay_core::{PlatformKeys, provider};

static KEYS: LazyLock<PlatformKeys> = LazyLock::new(common::platform_keys);

fuzz_target!(|data: &[u8]| {
    let [now, headers, body] = common::fields::<3>(data);
    let now: u64 = common::text(now).trim().parse().unwrap_or(1_614_739_000);
    let headers = common::text(headers);
    let pairs = headers.lines().filter_map(|l| l.split_once(':'));
    let key = ApiV3Key::new(common::API_V3_KEY).expect("32 bytes");
    let _ = v3::decrypt_certificates(&key, body);
    if let Ok(h) = WechatpayHeaders::from_pairs(pairs) {
        let p = provider::default_provider();
        let _ = v3::verify_certificates_response(p, &KEYS, &key, &h, body, now);
        let _ = v3::verify_certificates_response(p, &PlatformKeys::new(), &key, &h, body, now);
    }
});
