//! v2 `verify_notification`: input = order sign type byte, then the XML. Round trip: a parsed
//! map re-signed with the key by `signed_xml`'s algorithm (`sign`) verifies.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use wxpay_core::v2::{self, ApiV2Key, SignType};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let order = if mode & 1 == 0 {
        SignType::Md5
    } else {
        SignType::HmacSha256
    };
    let xml = common::text(rest);
    let key = ApiV2Key::new(common::API_V2_KEY);
    let _ = v2::verify_notification(&xml, &key, order);
    if mode & 2 != 0
        && let Ok(mut map) = v2::parse_xml(&xml)
    {
        map.remove("sign_type");
        map.remove("sign");
        let signed = v2::sign(&map, &key, order);
        map.insert("sign".to_owned(), signed.sign);
        v2::verify(&map, &key, order).expect("freshly signed map verifies");
    }
});
