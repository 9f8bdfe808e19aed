//! v3 `verify_response` with the vectors' platform keys. Input fields: `now`, header lines,
//! body (as `v3_verify_notification`).
#![no_main]
mod common;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use wxpay_core::PlatformKeys;
use wxpay_core::v3::{self, WechatpayHeaders};

static KEYS: LazyLock<PlatformKeys> = LazyLock::new(common::platform_keys);

fuzz_target!(|data: &[u8]| {
    let [now, headers, body] = common::fields::<3>(data);
    let now: u64 = common::text(now).trim().parse().unwrap_or(1_614_739_000);
    let headers = common::text(headers);
    let pairs = headers.lines().filter_map(|l| l.split_once(':'));
    if let Ok(h) = WechatpayHeaders::from_pairs(pairs) {
        let _ = v3::verify_response(&KEYS, &h, body, now);
    }
});
