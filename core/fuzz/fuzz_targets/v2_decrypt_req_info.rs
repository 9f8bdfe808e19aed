//! v2 `decrypt_req_info` (refund notification `req_info`) with the vectors' key; whatever
//! decrypts is then fed to `parse_xml`, as the host does.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use wxpay_core::v2::{self, ApiV2Key};

fuzz_target!(|data: &[u8]| {
    let key = ApiV2Key::new(common::API_V2_KEY);
    if let Ok(xml) = v2::decrypt_req_info(&common::text(data), &key) {
        let _ = v2::parse_xml(&xml);
    }
});
