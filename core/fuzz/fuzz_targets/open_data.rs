//! `open_data::decrypt_open_data` (mini-program 开放数据). Input fields: session key, encrypted
//! data, iv (all base64). Round trip: `encrypt_open_data` then decrypt gives the data back.
#![no_main]
mod common;
use libfuzzer_sys::fuzz_target;
use wxpay_core::open_data;

fuzz_target!(|data: &[u8]| {
    let [key, enc, iv] = common::fields::<3>(data);
    let (key, enc, iv) = (common::text(key), common::text(enc), common::text(iv));
    let _ = open_data::decrypt_open_data(&key, &enc, &iv);
    if let Ok(sealed) = open_data::encrypt_open_data(&key, enc.as_bytes(), &iv) {
        let opened = open_data::decrypt_open_data(&key, &sealed, &iv).expect("round trip");
        assert_eq!(opened, enc);
    }
});
