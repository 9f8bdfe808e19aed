//! APIv3 notifications: verify, then decrypt `resource` into typed payloads.
//! (WeChat Pay APIv3, "支付通知", "退款结果通知".)

use super::verify::{WechatpayHeaders, verify_response};
use crate::aead::{self, ApiV3Key};
use crate::keys::PlatformKeys;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};

/// The encrypted `resource` of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptedResource {
    /// `transaction`, `refund`, …
    #[serde(default)]
    pub original_type: String,
    /// Must be `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// Base64 ciphertext ‖ tag.
    pub ciphertext: String,
    /// AAD (may be empty).
    #[serde(default)]
    pub associated_data: String,
    /// The 12-byte nonce.
    pub nonce: String,
}

#[derive(Deserialize)]
struct Envelope {
    id: String,
    #[serde(default)]
    create_time: String,
    event_type: String,
    #[serde(default)]
    resource_type: String,
    #[serde(default)]
    summary: String,
    resource: EncryptedResource,
}

/// A verified, decrypted notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// Notification id (unique per event; use it for idempotency).
    pub id: String,
    /// `create_time`, RFC 3339.
    pub create_time: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`, …
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    /// Human-readable summary.
    pub summary: String,
    /// The resource as received.
    pub resource: EncryptedResource,
    /// The decrypted resource, exactly as WeChat sent it (JSON text).
    pub plaintext: String,
}

impl Notification {
    /// The resource as a payment result (`TRANSACTION.*` events).
    ///
    /// # Errors
    /// [`Error::Malformed`] if the plaintext is not a transaction object.
    pub fn transaction(&self) -> Result<Transaction> {
        serde_json::from_str(&self.plaintext).map_err(|_| Error::Malformed("not a transaction"))
    }

    /// The resource as a refund result (`REFUND.*` events).
    ///
    /// # Errors
    /// [`Error::Malformed`] if the plaintext is not a refund object.
    pub fn refund(&self) -> Result<RefundNotice> {
        serde_json::from_str(&self.plaintext).map_err(|_| Error::Malformed("not a refund"))
    }
}

/// The payer of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payer {
    /// The payer's openid under the order's appid.
    pub openid: String,
}

/// Amounts of a transaction, in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Order total.
    pub total: i64,
    /// What the payer paid (total minus discounts).
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// `CNY`.
    #[serde(default)]
    pub currency: Option<String>,
    /// The payer's currency.
    #[serde(default)]
    pub payer_currency: Option<String>,
}

/// A payment result (the decrypted `transaction` resource or an order query answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    /// Merchant id.
    pub mchid: String,
    /// App id the order was placed for.
    pub appid: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat's transaction id (absent before payment).
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// `JSAPI`, …
    #[serde(default)]
    pub trade_type: Option<String>,
    /// `SUCCESS`, `NOTPAY`, `CLOSED`, `REFUND`, `REVOKED`, `USERPAYING`, `PAYERROR`.
    pub trade_state: String,
    /// Description of the state.
    #[serde(default)]
    pub trade_state_desc: Option<String>,
    /// Bank type.
    #[serde(default)]
    pub bank_type: Option<String>,
    /// The merchant's `attach`, echoed.
    #[serde(default)]
    pub attach: Option<String>,
    /// Payment time, RFC 3339.
    #[serde(default)]
    pub success_time: Option<String>,
    /// The payer.
    #[serde(default)]
    pub payer: Option<Payer>,
    /// Amounts (absent for some unpaid states).
    #[serde(default)]
    pub amount: Option<Amount>,
}

/// Amounts of a refund, in fen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundAmount {
    /// Order total.
    pub total: i64,
    /// Refunded amount.
    pub refund: i64,
    /// What the payer paid.
    #[serde(default)]
    pub payer_total: Option<i64>,
    /// What the payer gets back.
    #[serde(default)]
    pub payer_refund: Option<i64>,
}

/// A refund result (the decrypted `refund` resource).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundNotice {
    /// Merchant id.
    pub mchid: String,
    /// The merchant's order number.
    pub out_trade_no: String,
    /// WeChat's transaction id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// The merchant's refund number.
    pub out_refund_no: String,
    /// WeChat's refund id.
    #[serde(default)]
    pub refund_id: Option<String>,
    /// `SUCCESS`, `CLOSED`, `ABNORMAL`.
    pub refund_status: String,
    /// Completion time, RFC 3339.
    #[serde(default)]
    pub success_time: Option<String>,
    /// Where the money went.
    #[serde(default)]
    pub user_received_account: Option<String>,
    /// Amounts.
    pub amount: RefundAmount,
}

/// Verifies a notification's signature on the raw body, then decrypts its resource.
///
/// # Errors
/// Everything [`verify_response`] returns; then [`Error::Malformed`] if the body is not a
/// notification object or uses another algorithm, [`Error::DecryptFailed`] if the resource does
/// not decrypt with `api_v3_key`.
pub fn verify_notification(
    keys: &PlatformKeys,
    api_v3_key: &ApiV3Key,
    headers: &WechatpayHeaders,
    body: &[u8],
    now: u64,
) -> Result<Notification> {
    verify_response(keys, headers, body, now)?;
    let env: Envelope =
        serde_json::from_slice(body).map_err(|_| Error::Malformed("not a notification object"))?;
    if env.resource.algorithm != "AEAD_AES_256_GCM" {
        return Err(Error::Malformed("unsupported resource algorithm"));
    }
    let plaintext = aead::decrypt(
        api_v3_key,
        &env.resource.nonce,
        &env.resource.associated_data,
        &env.resource.ciphertext,
    )?;
    Ok(Notification {
        id: env.id,
        create_time: env.create_time,
        event_type: env.event_type,
        resource_type: env.resource_type,
        summary: env.summary,
        resource: env.resource,
        plaintext,
    })
}
