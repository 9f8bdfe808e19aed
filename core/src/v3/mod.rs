//! APIv3: request signing (`Authorization`), the mini-program `paySign`, response and
//! notification verification, resource decryption and certificate download.
//! (WeChat Pay APIv3, "签名生成", "签名验证", "证书和回调报文解密".)

mod auth;
mod certificates;
mod notification;
mod pay_sign;
mod verify;

pub use crate::aead::ApiV3Key;
pub use auth::{AUTH_SCHEME, Authorization, authorization, request_message};
pub use certificates::{DownloadedCertificate, decrypt_certificates, verify_certificates_response};
pub use notification::{
    Amount, EncryptedResource, Notification, Payer, RefundAmount, RefundNotice, Transaction,
    verify_notification,
};
pub use pay_sign::{RequestPayment, pay_sign, pay_sign_message};
pub use verify::{
    MAX_CLOCK_SKEW, SIGNTEST_PREFIX, WechatpayHeaders, response_message, sign_response,
    verify_response,
};
