//! The mini-program `wx.requestPayment` parameters for APIv3 (`signType: "RSA"`).
//! (WeChat Pay APIv3, "JSAPI调起支付" / "小程序调起支付".)

use crate::Result;
use crate::keys::MerchantSigner;
use rand_core::CryptoRng;
use serde::Serialize;

/// The object to hand to `wx.requestPayment`, serialized with WeChat's camelCase names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestPayment {
    /// `appId` (signed; `wx.requestPayment` itself does not take it).
    pub app_id: String,
    /// `timeStamp`: decimal seconds, as a string.
    pub time_stamp: String,
    /// `nonceStr`.
    pub nonce_str: String,
    /// `package`: `prepay_id=…`.
    pub package: String,
    /// Always `RSA` for APIv3.
    pub sign_type: &'static str,
    /// `paySign`: base64 SHA256withRSA.
    pub pay_sign: String,
}

impl RequestPayment {
    /// The exact signed text `appId\ntimeStamp\nnonceStr\npackage\n` (diagnostics).
    #[must_use]
    pub fn message(&self) -> String {
        pay_sign_message(
            &self.app_id,
            &self.time_stamp,
            &self.nonce_str,
            &self.package,
        )
    }
}

/// `appId\ntimeStamp\nnonceStr\npackage\n`.
#[must_use]
pub fn pay_sign_message(app_id: &str, time_stamp: &str, nonce_str: &str, package: &str) -> String {
    format!("{app_id}\n{time_stamp}\n{nonce_str}\n{package}\n")
}

/// Signs the `wx.requestPayment` parameters for a `prepay_id` (without the `prepay_id=` prefix;
/// a prefixed value is accepted as is).
///
/// # Errors
/// [`crate::Error::Malformed`] if a field is empty or contains a newline (it would shift the
/// signed lines); [`crate::Error::InvalidKey`] if the key cannot sign.
pub fn pay_sign<R: CryptoRng>(
    signer: &MerchantSigner,
    rng: &mut R,
    app_id: &str,
    time_stamp: &str,
    nonce_str: &str,
    prepay_id: &str,
) -> Result<RequestPayment> {
    for (v, what) in [
        (app_id, "appId"),
        (time_stamp, "timeStamp"),
        (nonce_str, "nonceStr"),
        (prepay_id, "prepay_id"),
    ] {
        if v.is_empty() || v.contains('\n') {
            return Err(crate::Error::Malformed(what));
        }
    }
    let package = if prepay_id.starts_with("prepay_id=") {
        prepay_id.to_owned()
    } else {
        format!("prepay_id={prepay_id}")
    };
    let message = pay_sign_message(app_id, time_stamp, nonce_str, &package);
    let pay_sign = signer.sign(rng, message.as_bytes())?;
    Ok(RequestPayment {
        app_id: app_id.to_owned(),
        time_stamp: time_stamp.to_owned(),
        nonce_str: nonce_str.to_owned(),
        package,
        sign_type: "RSA",
        pay_sign,
    })
}
