//! v2 `parse_xml` on arbitrary text; round trip: what parses, re-serialised by `to_xml`, parses
//! back to the same map.
#![no_main]
use libfuzzer_sys::fuzz_target;
use wxpay_core::v2;

fuzz_target!(|data: &[u8]| {
    let Ok(xml) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(map) = v2::parse_xml(xml)
        && let Ok(again) = v2::to_xml(&map)
    {
        let back = v2::parse_xml(&again).expect("to_xml output parses");
        assert_eq!(back, map, "parse_xml(to_xml(m)) != m");
    }
});
