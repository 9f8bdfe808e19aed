//! WeChat Pay APIv2 (`WXPAY_PAY_API=v2`): XML requests signed with the APIv2 key, answers
//! verified with the *configured* sign type (never the type a message claims), refunds over
//! mutual TLS with the merchant API certificate, and the v2 notifications.
//!
//! Wire formats: WeChat Pay APIv2 JSAPI (pay.weixin.qq.com/wiki/doc/api/jsapi.php) "统一下单"
//! `/pay/unifiedorder`, "查询订单" `/pay/orderquery`, "关闭订单" `/pay/closeorder`, "申请退款"
//! `/secapi/pay/refund` (mutual TLS), "查询退款" `/pay/refundquery`, "支付结果通知" and
//! "退款结果通知" (`req_info`, decrypted by `wxpay-core`).
//!
//! An answer with `return_code=FAIL` is unsigned (WeChat does not sign a request it refused):
//! it becomes [`UpstreamError::Unverified`] and never changes state. A signed answer with
//! `result_code=FAIL` is WeChat's verified refusal: [`UpstreamError::Api`] with its `err_code`
//! kept as WeChat wrote it (`ORDERNOTEXIST`, `ORDERPAID`…); [`UpstreamError::api_code`] reads
//! the codes services act on under their APIv3 names, so one state machine serves both APIs.
//! `SYSTEMERROR` / `BIZERR_NEED_RETRY` (WeChat: "retry with the same parameters") and
//! `FREQUENCY_LIMITED` are retried with the client's backoff.
//!
//! The results come back in the shapes the services already use for APIv3
//! ([`Transaction`], [`RefundAnswer`], [`RefundNotice`]), so no decision is written twice.

use std::collections::BTreeMap;

use reqwest::header::{CONTENT_TYPE, USER_AGENT};
use wxpay_core::v2::{self, ApiV2Key, RequestPaymentV2, SignType};
use wxpay_core::v3::{Amount, Payer, RefundAmount, RefundNotice, Transaction};

use super::{
    ClientInitError, RefundAnswer, RefundRequest, Try, UpstreamError, WechatClient, http_client,
    rfc3339_cst, rng,
};
use crate::config::{ApiV2Settings, Config};
use crate::domain::Order;

type Fields = BTreeMap<String, String>;

/// The APIv2 side of the client: the key, the sign type, and the client that presents the
/// merchant API certificate on `/secapi/`.
pub struct V2Api {
    key: ApiV2Key,
    sign_type: SignType,
    /// `None` when `WXPAY_V2_CLIENT_CERT_FILE` is not configured: refunds are refused locally.
    secapi: Option<reqwest::Client>,
    spbill_create_ip: String,
}

impl std::fmt::Debug for V2Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V2Api")
            .field("sign_type", &self.sign_type)
            .field("client_certificate", &self.secapi.is_some())
            .finish_non_exhaustive()
    }
}

impl V2Api {
    /// Builds the APIv2 side from its settings; the mutual-TLS client when a client
    /// certificate is configured.
    pub(super) fn new(config: &Config, s: &ApiV2Settings) -> Result<Self, ClientInitError> {
        let secapi = match (&s.client_cert_pem, &s.client_key_pem) {
            (Some(cert), Some(key)) => {
                let mut pem = zeroize::Zeroizing::new(Vec::with_capacity(
                    cert.len() + key.expose().len() + 1,
                ));
                pem.extend_from_slice(cert.as_bytes());
                pem.push(b'\n');
                pem.extend_from_slice(key.expose().as_bytes());
                let identity = reqwest::Identity::from_pem(&pem)
                    .map_err(|e| ClientInitError::ClientCert(e.to_string()))?;
                Some(
                    http_client(config)?
                        .identity(identity)
                        .build()
                        .map_err(|e| ClientInitError::ClientCert(e.to_string()))?,
                )
            }
            _ => None,
        };
        Ok(Self {
            key: ApiV2Key::new(s.key.expose()),
            sign_type: s.sign_type,
            secapi,
            spbill_create_ip: s.spbill_create_ip.clone(),
        })
    }

    /// The configured sign type.
    #[must_use]
    pub fn sign_type(&self) -> SignType {
        self.sign_type
    }

    /// Whether refunds can be made (a client certificate is configured).
    #[must_use]
    pub fn has_client_certificate(&self) -> bool {
        self.secapi.is_some()
    }

    /// The v2 `wx.requestPayment` parameters, signed with the configured type.
    #[must_use]
    pub fn request_payment(
        &self,
        appid: &str,
        time_stamp: &str,
        nonce_str: &str,
        prepay_id: &str,
    ) -> RequestPaymentV2 {
        v2::request_payment(
            &self.key,
            self.sign_type,
            appid,
            time_stamp,
            nonce_str,
            prepay_id,
        )
    }

    /// Verifies a v2 payment notification ("支付结果通知") with the configured sign type (a
    /// notification may name a stronger type, never a weaker one) and reads it as a
    /// transaction, with the id it is recorded under.
    ///
    /// A notification with `result_code=FAIL` (a failed attempt; the order stays payable) reads
    /// as `NOTPAY`: recorded, nothing changes.
    ///
    /// # Errors
    /// [`wxpay_core::Error::Malformed`] (not XML, `return_code` not `SUCCESS`, missing or bad
    /// fields), [`wxpay_core::Error::SignatureMismatch`].
    pub fn pay_notification(&self, body: &[u8]) -> Result<PayNotification, wxpay_core::Error> {
        let xml =
            std::str::from_utf8(body).map_err(|_| wxpay_core::Error::Malformed("not UTF-8"))?;
        let f = v2::verify_notification(xml, &self.key, self.sign_type)?;
        if field(&f, "return_code") != Some("SUCCESS") {
            return Err(wxpay_core::Error::Malformed("return_code is not SUCCESS"));
        }
        let paid = field(&f, "result_code") == Some("SUCCESS");
        let trade_state = if paid { "SUCCESS" } else { "NOTPAY" };
        let transaction = transaction(&f, trade_state)?;
        let id = match (&transaction.transaction_id, paid) {
            (Some(txid), true) => format!("v2:{txid}"),
            _ => format!(
                "v2:{}:{}:{}",
                transaction.out_trade_no,
                field(&f, "err_code").unwrap_or("FAIL"),
                field(&f, "nonce_str").unwrap_or("")
            ),
        };
        Ok(PayNotification {
            id,
            event_type: if paid {
                "TRANSACTION.SUCCESS"
            } else {
                "TRANSACTION.FAIL"
            },
            transaction,
        })
    }

    /// Reads a v2 refund notification ("退款结果通知"). It carries no signature: it is
    /// authenticated by `req_info` decrypting under the APIv2 key (AES-256-ECB with strict
    /// PKCS#7 padding) into a well-formed refund, and by its `appid` matching ours.
    ///
    /// # Errors
    /// [`wxpay_core::Error::Malformed`] (not XML, `return_code` not `SUCCESS`, another appid,
    /// missing fields), [`wxpay_core::Error::DecryptFailed`] (not encrypted with our key).
    pub fn refund_notification(
        &self,
        body: &[u8],
        appid: &str,
    ) -> Result<V2RefundNotification, wxpay_core::Error> {
        let xml =
            std::str::from_utf8(body).map_err(|_| wxpay_core::Error::Malformed("not UTF-8"))?;
        let outer = v2::parse_xml(xml)?;
        if field(&outer, "return_code") != Some("SUCCESS") {
            return Err(wxpay_core::Error::Malformed("return_code is not SUCCESS"));
        }
        if field(&outer, "appid") != Some(appid) {
            return Err(wxpay_core::Error::Malformed("appid is not ours"));
        }
        let req_info =
            field(&outer, "req_info").ok_or(wxpay_core::Error::Malformed("req_info is missing"))?;
        let inner = v2::parse_xml(&v2::decrypt_req_info(req_info, &self.key)?)?;
        let need = |k: &'static str| {
            field(&inner, k)
                .map(str::to_owned)
                .ok_or(wxpay_core::Error::Malformed("req_info lacks a field"))
        };
        let fen = |k: &'static str| {
            need(k)?
                .parse::<i64>()
                .map_err(|_| wxpay_core::Error::Malformed("req_info amount is not a number"))
        };
        let wechat_status = need("refund_status")?;
        let notice = RefundNotice {
            mchid: field(&outer, "mch_id").unwrap_or("").to_owned(),
            out_trade_no: need("out_trade_no")?,
            transaction_id: field(&inner, "transaction_id").map(str::to_owned),
            out_refund_no: need("out_refund_no")?,
            refund_id: field(&inner, "refund_id").map(str::to_owned),
            refund_status: refund_status(&wechat_status)
                .ok_or(wxpay_core::Error::Malformed("unknown refund_status"))?
                .to_owned(),
            success_time: field(&inner, "success_time").and_then(spaced_to_rfc3339),
            user_received_account: field(&inner, "refund_recv_accout").map(str::to_owned),
            amount: RefundAmount {
                total: fen("total_fee")?,
                refund: fen("refund_fee")?,
                payer_total: None,
                payer_refund: None,
            },
        };
        Ok(V2RefundNotification {
            id: format!(
                "v2:{}:{wechat_status}",
                notice.refund_id.as_deref().unwrap_or(&notice.out_refund_no)
            ),
            event_type: match notice.refund_status.as_str() {
                "SUCCESS" => "REFUND.SUCCESS",
                "CLOSED" => "REFUND.CLOSED",
                _ => "REFUND.ABNORMAL",
            },
            notice,
        })
    }
}

/// A verified v2 payment notification.
#[derive(Clone, Debug)]
pub struct PayNotification {
    /// The id it is recorded under once (`v2:{transaction_id}`).
    pub id: String,
    /// `TRANSACTION.SUCCESS` or `TRANSACTION.FAIL`.
    pub event_type: &'static str,
    /// What it says, in the shape the state machine reads.
    pub transaction: Transaction,
}

/// A decrypted v2 refund notification.
#[derive(Clone, Debug)]
pub struct V2RefundNotification {
    /// The id it is recorded under once (`v2:{refund_id}:{refund_status}`).
    pub id: String,
    /// `REFUND.SUCCESS`, `REFUND.CLOSED` or `REFUND.ABNORMAL`.
    pub event_type: &'static str,
    /// What it says, in the shape the refund state machine reads.
    pub notice: RefundNotice,
}

fn field<'a>(f: &'a Fields, k: &str) -> Option<&'a str> {
    f.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

/// v2's refund status under its APIv3 name: `SUCCESS`, `CLOSED` (`REFUNDCLOSE`), `PROCESSING`,
/// `ABNORMAL` (`CHANGE`).
fn refund_status(v2: &str) -> Option<&'static str> {
    Some(match v2 {
        "SUCCESS" => "SUCCESS",
        "REFUNDCLOSE" => "CLOSED",
        "PROCESSING" => "PROCESSING",
        "CHANGE" => "ABNORMAL",
        _ => return None,
    })
}

/// The APIv3 name of a v2 `err_code` that a service acts on (the codes differ only in
/// spelling); others are returned as they are.
#[must_use]
pub fn v3_code(code: &str) -> &str {
    match code {
        "ORDERNOTEXIST" => "ORDER_NOT_EXIST",
        "ORDERCLOSED" => "ORDER_CLOSED",
        "REFUNDNOTEXIST" => "RESOURCE_NOT_EXISTS",
        other => other,
    }
}

/// `yyyyMMddHHmmss` in China Standard Time (v2 `time_expire`).
#[must_use]
pub fn compact_cst(unix: i64) -> String {
    rfc3339_cst(unix)
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect()
}

/// v2 `time_end` (`yyyyMMddHHmmss`, CST) as RFC 3339.
fn compact_to_rfc3339(t: &str) -> Option<String> {
    (t.len() == 14 && t.bytes().all(|b| b.is_ascii_digit())).then(|| {
        format!(
            "{}-{}-{}T{}:{}:{}+08:00",
            &t[0..4],
            &t[4..6],
            &t[6..8],
            &t[8..10],
            &t[10..12],
            &t[12..14]
        )
    })
}

/// v2 refund `success_time` (`yyyy-MM-dd HH:mm:ss`, CST) as RFC 3339.
fn spaced_to_rfc3339(t: &str) -> Option<String> {
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    (t.len() == 19).then_some(())?;
    compact_to_rfc3339(&digits)
}

/// An order query answer or payment notification as a [`Transaction`].
fn transaction(f: &Fields, trade_state: &str) -> Result<Transaction, wxpay_core::Error> {
    let total = match field(f, "total_fee") {
        Some(t) => Some(
            t.parse::<i64>()
                .map_err(|_| wxpay_core::Error::Malformed("total_fee is not a number"))?,
        ),
        None => None,
    };
    Ok(Transaction {
        mchid: field(f, "mch_id").unwrap_or("").to_owned(),
        appid: field(f, "appid").unwrap_or("").to_owned(),
        out_trade_no: field(f, "out_trade_no")
            .ok_or(wxpay_core::Error::Malformed("out_trade_no is missing"))?
            .to_owned(),
        transaction_id: field(f, "transaction_id").map(str::to_owned),
        trade_type: field(f, "trade_type").map(str::to_owned),
        trade_state: trade_state.to_owned(),
        trade_state_desc: field(f, "trade_state_desc").map(str::to_owned),
        bank_type: field(f, "bank_type").map(str::to_owned),
        attach: field(f, "attach").map(str::to_owned),
        success_time: field(f, "time_end").and_then(compact_to_rfc3339),
        payer: field(f, "openid").map(|o| Payer {
            openid: o.to_owned(),
        }),
        amount: total.map(|total| Amount {
            total,
            payer_total: field(f, "cash_fee").and_then(|c| c.parse().ok()),
            currency: Some(field(f, "fee_type").unwrap_or("CNY").to_owned()),
            payer_currency: None,
        }),
    })
}

impl WechatClient {
    /// Signs `params` (plus `appid`, `mch_id`, `nonce_str`, `sign_type`) and POSTs the XML,
    /// retrying transport errors, 5xx, `SYSTEMERROR`-like answers and rate limits; returns the
    /// verified fields of a `result_code=SUCCESS` answer.
    async fn v2_call(
        &self,
        v2: &V2Api,
        endpoint: &'static str,
        path: &str,
        mut params: Fields,
        secapi: bool,
    ) -> Result<Fields, UpstreamError> {
        let http = if secapi {
            v2.secapi.as_ref().ok_or_else(|| {
                UpstreamError::Config(
                    "APIv2 refunds need the merchant API certificate: set \
                     WXPAY_V2_CLIENT_CERT_FILE and WXPAY_V2_CLIENT_KEY_FILE"
                        .into(),
                )
            })?
        } else {
            &self.http
        };
        params.insert("appid".into(), self.appid.clone());
        params.insert("mch_id".into(), self.mchid.clone());
        params.insert("sign_type".into(), v2.sign_type.as_str().into());
        let url = format!("{}{path}", self.api_base);
        self.retrying(endpoint, || {
            let mut params = params.clone();
            let url = &url;
            async move {
                // A fresh nonce per try: WeChat treats the same out_trade_no / out_refund_no as
                // the same request whatever the nonce.
                params.insert("nonce_str".into(), wxpay_core::nonce_str(&mut rng()));
                let signed = match v2::signed_xml(&params, &v2.key, v2.sign_type) {
                    Ok(s) => s,
                    Err(e) => return Try::Done(Err(UpstreamError::Sign(e))),
                };
                let res = http
                    .post(url)
                    .header(CONTENT_TYPE, "text/xml; charset=utf-8")
                    .header(
                        USER_AGENT,
                        concat!("wxpay-host/", env!("CARGO_PKG_VERSION")),
                    )
                    .body(signed.xml)
                    .send()
                    .await;
                let resp = match res {
                    Ok(r) => r,
                    Err(e) => return Try::Retry(UpstreamError::Transport(transport(&e, secapi))),
                };
                let status = resp.status().as_u16();
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => return Try::Retry(UpstreamError::Transport(e.to_string())),
                };
                if status >= 500 {
                    return Try::Retry(UpstreamError::Busy(format!("{endpoint}: HTTP {status}")));
                }
                self.v2_answer(v2, endpoint, status, &body, &signed.string_to_sign)
            }
        })
        .await
    }

    /// Reads one v2 answer: `return_code`, then the signature with the configured type, then
    /// `result_code`.
    fn v2_answer(
        &self,
        v2: &V2Api,
        endpoint: &'static str,
        status: u16,
        body: &[u8],
        string_to_sign: &str,
    ) -> Try<Fields> {
        let Some(f) = std::str::from_utf8(body)
            .ok()
            .and_then(|x| v2::parse_xml(x).ok())
        else {
            return Try::Done(Err(UpstreamError::Decode(format!(
                "{endpoint}: HTTP {status}, not XML"
            ))));
        };
        if field(&f, "return_code") != Some("SUCCESS") || !(200..300).contains(&status) {
            let message = field(&f, "return_msg").unwrap_or("").to_owned();
            if message.contains("签名") {
                // WeChat's "签名错误": compare what we signed with what WeChat expects.
                tracing::error!(endpoint, status, return_msg = %message,
                    string_to_sign_sha256 = %super::answer::sha256_hex(string_to_sign.as_bytes()),
                    string_to_sign_len = string_to_sign.len(),
                    sign_type = %v2.sign_type,
                    "WeChat Pay refused our APIv2 signature: check WXPAY_API_V2_KEY and \
                     WXPAY_V2_SIGN_TYPE");
            }
            tracing::warn!(endpoint, status, return_msg = %message,
                "APIv2 return_code=FAIL (unsigned): reported, not acted on");
            return Try::Done(Err(UpstreamError::Unverified {
                status,
                code: "FAIL".into(),
                message,
                why: wxpay_core::Error::Malformed("return_code=FAIL answers are unsigned"),
            }));
        }
        // Verified with the configured type: a `sign_type` in the answer is what an attacker
        // controls, so it never picks the algorithm.
        if let Err(e) = v2::verify(&f, &v2.key, v2.sign_type) {
            return Try::Done(Err(UpstreamError::Verify(e)));
        }
        if field(&f, "appid").is_some_and(|a| a != self.appid)
            || field(&f, "mch_id").is_some_and(|m| m != self.mchid)
        {
            return Try::Done(Err(UpstreamError::Verify(wxpay_core::Error::Malformed(
                "answer for another appid or mch_id",
            ))));
        }
        if field(&f, "result_code") == Some("SUCCESS") {
            return Try::Done(Ok(f));
        }
        let code = field(&f, "err_code").unwrap_or("FAIL").to_owned();
        let message = field(&f, "err_code_des").unwrap_or("").to_owned();
        match code.as_str() {
            "SYSTEMERROR" | "BIZERR_NEED_RETRY" => {
                Try::Retry(UpstreamError::Busy(format!("{endpoint}: {code} {message}")))
            }
            "FREQUENCY_LIMITED" => Try::Retry(UpstreamError::RateLimited),
            _ => Try::Done(Err(UpstreamError::Api {
                status,
                code,
                message,
            })),
        }
    }

    /// `/pay/unifiedorder` (`trade_type=JSAPI`): places the order, returns its `prepay_id`.
    pub(super) async fn v2_unifiedorder(
        &self,
        v2: &V2Api,
        order: &Order,
    ) -> Result<String, UpstreamError> {
        let mut p = Fields::new();
        p.insert("body".into(), order.description.clone());
        p.insert("out_trade_no".into(), order.out_trade_no.clone());
        p.insert("total_fee".into(), order.amount.to_string());
        p.insert("fee_type".into(), "CNY".into());
        p.insert("spbill_create_ip".into(), v2.spbill_create_ip.clone());
        p.insert("time_expire".into(), compact_cst(order.expire_at));
        p.insert(
            "notify_url".into(),
            format!("{}/notify/pay", self.notify_url),
        );
        p.insert("trade_type".into(), "JSAPI".into());
        p.insert("openid".into(), order.openid.clone());
        if let Some(attach) = &order.attach {
            p.insert("attach".into(), attach.clone());
        }
        let f = self
            .v2_call(v2, "jsapi", "/pay/unifiedorder", p, false)
            .await?;
        field(&f, "prepay_id")
            .map(str::to_owned)
            .ok_or_else(|| UpstreamError::Decode("unifiedorder: no prepay_id".into()))
    }

    /// `/pay/orderquery`.
    pub(super) async fn v2_orderquery(
        &self,
        v2: &V2Api,
        out_trade_no: &str,
    ) -> Result<Transaction, UpstreamError> {
        let p = Fields::from([("out_trade_no".into(), out_trade_no.to_owned())]);
        let f = self
            .v2_call(v2, "query", "/pay/orderquery", p, false)
            .await?;
        let state = field(&f, "trade_state")
            .ok_or_else(|| UpstreamError::Decode("orderquery: no trade_state".into()))?
            .to_owned();
        let tx = transaction(&f, &state).map_err(|e| UpstreamError::Decode(e.to_string()))?;
        if tx.out_trade_no != out_trade_no {
            return Err(UpstreamError::Decode(
                "orderquery: answer for another order".into(),
            ));
        }
        Ok(tx)
    }

    /// `/pay/closeorder`.
    pub(super) async fn v2_closeorder(
        &self,
        v2: &V2Api,
        out_trade_no: &str,
    ) -> Result<(), UpstreamError> {
        let p = Fields::from([("out_trade_no".into(), out_trade_no.to_owned())]);
        self.v2_call(v2, "close", "/pay/closeorder", p, false)
            .await
            .map(drop)
    }

    /// `/secapi/pay/refund` over mutual TLS. Accepted refunds are `PROCESSING`; the result
    /// comes by notification or `/pay/refundquery`.
    pub(super) async fn v2_refund(
        &self,
        v2: &V2Api,
        r: &RefundRequest<'_>,
    ) -> Result<RefundAnswer, UpstreamError> {
        let mut p = Fields::new();
        p.insert("out_trade_no".into(), r.out_trade_no.to_owned());
        p.insert("out_refund_no".into(), r.out_refund_no.to_owned());
        p.insert("total_fee".into(), r.total.to_string());
        p.insert("refund_fee".into(), r.refund.to_string());
        p.insert("refund_fee_type".into(), "CNY".into());
        p.insert(
            "notify_url".into(),
            format!("{}/notify/refund", self.notify_url),
        );
        if let Some(reason) = r.reason {
            p.insert("refund_desc".into(), reason.to_owned());
        }
        let f = self
            .v2_call(v2, "refund", "/secapi/pay/refund", p, true)
            .await?;
        if field(&f, "out_refund_no") != Some(r.out_refund_no) {
            return Err(UpstreamError::Decode(
                "refund: answer for another refund".into(),
            ));
        }
        Ok(RefundAnswer {
            refund_id: field(&f, "refund_id").map(str::to_owned),
            out_refund_no: r.out_refund_no.to_owned(),
            status: "PROCESSING".into(),
        })
    }

    /// `/pay/refundquery` by `out_refund_no`.
    pub(super) async fn v2_refundquery(
        &self,
        v2: &V2Api,
        out_refund_no: &str,
    ) -> Result<RefundAnswer, UpstreamError> {
        let p = Fields::from([("out_refund_no".into(), out_refund_no.to_owned())]);
        let f = self
            .v2_call(v2, "refund_query", "/pay/refundquery", p, false)
            .await?;
        let count: usize = field(&f, "refund_count")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let n = (0..count)
            .find(|n| field(&f, &format!("out_refund_no_{n}")) == Some(out_refund_no))
            .ok_or_else(|| UpstreamError::Decode("refundquery: refund not in answer".into()))?;
        let status = field(&f, &format!("refund_status_{n}"))
            .and_then(refund_status)
            .ok_or_else(|| UpstreamError::Decode("refundquery: unknown refund_status".into()))?;
        Ok(RefundAnswer {
            refund_id: field(&f, &format!("refund_id_{n}")).map(str::to_owned),
            out_refund_no: out_refund_no.to_owned(),
            status: status.to_owned(),
        })
    }
}

/// A transport error's text; a failed TLS handshake at `/secapi/` is most often a missing or
/// wrong client certificate, so say so there.
fn transport(e: &reqwest::Error, secapi: bool) -> String {
    let text = e.to_string();
    if secapi && e.is_connect() {
        format!("{text} (is WXPAY_V2_CLIENT_CERT_FILE the merchant API certificate?)")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wechat_times_convert() {
        assert_eq!(compact_cst(1_528_425_296), "20180608103456");
        assert_eq!(
            compact_to_rfc3339("20180608103456").as_deref(),
            Some("2018-06-08T10:34:56+08:00")
        );
        assert_eq!(compact_to_rfc3339("2018060810345"), None);
        assert_eq!(compact_to_rfc3339("2018-06-08 10:3"), None);
        assert_eq!(
            spaced_to_rfc3339("2018-06-08 10:34:56").as_deref(),
            Some("2018-06-08T10:34:56+08:00")
        );
        assert_eq!(spaced_to_rfc3339("20180608103456"), None);
    }

    #[test]
    fn v2_codes_read_under_their_v3_names() {
        assert_eq!(v3_code("ORDERNOTEXIST"), "ORDER_NOT_EXIST");
        assert_eq!(v3_code("ORDERCLOSED"), "ORDER_CLOSED");
        assert_eq!(v3_code("REFUNDNOTEXIST"), "RESOURCE_NOT_EXISTS");
        assert_eq!(v3_code("ORDERPAID"), "ORDERPAID");
        assert_eq!(refund_status("REFUNDCLOSE"), Some("CLOSED"));
        assert_eq!(refund_status("CHANGE"), Some("ABNORMAL"));
        assert_eq!(refund_status("NOPE"), None);
    }
}
