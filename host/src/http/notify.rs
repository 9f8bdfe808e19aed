//! WeChat Pay's notifications. An answer of 2xx means "recorded": it is sent only after the
//! transaction that recorded the notification committed; anything else makes WeChat redeliver.
//!
//! In APIv2 mode (`WXPAY_PAY_API=v2`) the same two routes take WeChat's XML notifications and
//! answer in XML (`return_code` `SUCCESS` only once recorded, `FAIL` otherwise, with the same
//! HTTP statuses as APIv3); after verification both APIs go through the same services.

use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use wxpay_core::v3::{self, RefundNotice, Transaction};

use super::NotifyError;
use super::openapi::{Notification, NotifyFailure};
use crate::service::payments::{self, Source};
use crate::service::refunds::{self, NoticeRefused, RefundOutcome};
use crate::service::{AppState, Outcome};
use crate::store::NotificationRecord;
use crate::wechat::v2::V2Api;
use wxpay_core::v2::reply_xml;

/// A body that could not be read: over `WXPAY_BODY_LIMIT_BYTES` without announcing it (a body
/// that announces its length is refused before it is read), or cut off.
fn too_large(r: BytesRejection) -> NotifyError {
    NotifyError::new(
        r.status(),
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "body too large"
        } else {
            "body could not be read"
        },
    )
}

/// Verifies and decrypts a notification; maps failures to WeChat-facing errors.
async fn verified(
    s: &AppState,
    kind: &'static str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<v3::Notification, NotifyError> {
    let reject = |outcome: &'static str, status: StatusCode, message: &'static str| {
        s.metrics.notification(kind, outcome);
        tracing::warn!(kind, outcome, "notification rejected");
        NotifyError::new(status, message)
    };
    s.wechat
        .verify_notification(headers, body)
        .await
        .map_err(|e| match e {
            wxpay_core::Error::SignTestProbe => reject(
                "probe",
                StatusCode::UNAUTHORIZED,
                "signature verification failed",
            ),
            wxpay_core::Error::TimestampExpired => reject(
                "stale",
                StatusCode::BAD_REQUEST,
                "timestamp outside the allowed window",
            ),
            wxpay_core::Error::UnknownSerial => reject(
                "unknown_serial",
                StatusCode::UNAUTHORIZED,
                "unknown Wechatpay-Serial",
            ),
            // Authentic but undecryptable: most likely a rotated APIv3 key. 5xx so WeChat keeps
            // retrying while the operator fixes WXPAY_API_V3_KEY.
            wxpay_core::Error::DecryptFailed => {
                tracing::error!("notification does not decrypt: check WXPAY_API_V3_KEY");
                reject(
                    "undecryptable",
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "cannot decrypt resource",
                )
            }
            wxpay_core::Error::Malformed(_) => reject(
                "malformed",
                StatusCode::BAD_REQUEST,
                "missing or malformed Wechatpay headers or body",
            ),
            _ => reject(
                "bad_signature",
                StatusCode::UNAUTHORIZED,
                "signature verification failed",
            ),
        })
}

/// The `outcome` label of `wxpay_notifications_total`: `applied`, `duplicate`, `no_change`.
fn metric_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Changed { .. } => "applied",
        Outcome::Duplicate
        | Outcome::Kept {
            outcome: "duplicate",
            ..
        } => "duplicate",
        Outcome::Kept { .. } | Outcome::Refused { .. } => "no_change",
        Outcome::Missing => "unknown_order",
    }
}

fn storage_failed(s: &AppState, kind: &'static str, e: &dyn std::fmt::Display) -> NotifyError {
    s.metrics.notification(kind, "storage_error");
    tracing::error!(error = %e, kind, "notification not recorded: storage failure");
    NotifyError::storage()
}

/// `POST /notify/pay`: a payment result (`TRANSACTION.SUCCESS`). In APIv2 mode the body is
/// WeChat's signed XML and the answer XML `return_code` `SUCCESS` (200) or `FAIL`.
#[utoipa::path(post, path = "/notify/pay", tag = "notify", request_body = Notification,
    params(
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds"),
        ("Wechatpay-Nonce" = String, Header, description = "Random string"),
        ("Wechatpay-Signature" = String, Header, description = "Base64 RSA signature"),
        ("Wechatpay-Serial" = String, Header, description = "Platform certificate serial or public key id"),
    ),
    responses(
        (status = 204, description = "Recorded (also for a duplicate)"),
        (status = 400, description = "Malformed, stale, not ours or unknown order", body = NotifyFailure),
        (status = 401, description = "Signature does not verify or unknown serial", body = NotifyFailure),
        (status = 413, description = "Body too large", body = NotifyFailure),
        (status = 500, description = "Not recorded (storage, or undecryptable with the configured APIv3 key); WeChat redelivers", body = NotifyFailure),
    ))]
pub(super) async fn pay(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match s.wechat.v2() {
        Some(v2) => v2_reply(pay_v2(&s, v2, body).await),
        None => pay_v3(&s, &headers, body).await.into_response(),
    }
}

async fn pay_v3(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, NotifyError> {
    let body = body.map_err(too_large)?;
    let n = verified(s, "pay", headers, &body).await?;
    let tx = n.transaction().map_err(|_| {
        s.metrics.notification("pay", "malformed");
        NotifyError::new(StatusCode::BAD_REQUEST, "resource is not a transaction")
    })?;
    let source = Source::Notification {
        id: &n.id,
        event_type: &n.event_type,
    };
    record_payment(s, &tx, source).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An APIv2 payment notification: verified with the configured sign type, then the same
/// service as APIv3.
async fn pay_v2(
    s: &AppState,
    v2: &V2Api,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), NotifyError> {
    let body = body.map_err(too_large)?;
    let n = v2.pay_notification(&body).map_err(|e| {
        let (outcome, status, message) = match e {
            wxpay_core::Error::SignatureMismatch => (
                "bad_signature",
                StatusCode::UNAUTHORIZED,
                "signature verification failed",
            ),
            _ => (
                "malformed",
                StatusCode::BAD_REQUEST,
                "malformed notification",
            ),
        };
        s.metrics.notification("pay", outcome);
        tracing::warn!(kind = "pay", outcome, error = %e, "APIv2 notification rejected");
        NotifyError::new(status, message)
    })?;
    let source = Source::Notification {
        id: &n.id,
        event_type: n.event_type,
    };
    record_payment(s, &n.transaction, source).await
}

/// Applies a verified payment and maps the outcome to what WeChat is told.
async fn record_payment(
    s: &AppState,
    tx: &Transaction,
    source: Source<'_>,
) -> Result<(), NotifyError> {
    let outcome = payments::apply(s, tx, source)
        .await
        .map_err(|e| storage_failed(s, "pay", &e))?
        .map_err(|e| {
            s.metrics.notification("pay", "unusable");
            NotifyError::from(e)
        })?;
    s.metrics.notification("pay", metric_label(&outcome));
    if outcome == Outcome::Missing {
        tracing::error!(out_trade_no = %tx.out_trade_no, "notification for an unknown order");
        return Err(NotifyError::new(
            StatusCode::BAD_REQUEST,
            "unknown out_trade_no",
        ));
    }
    let id = match source {
        Source::Notification { id, .. } => id,
        Source::Query => "",
    };
    tracing::info!(out_trade_no = %tx.out_trade_no, notification = %id,
        outcome = outcome.label(), "pay notification");
    Ok(())
}

/// WeChat's APIv2 answer to a notification: `SUCCESS` once recorded, else `FAIL` with the
/// same status an APIv3 notification would get (WeChat redelivers after a `FAIL`).
pub(super) fn v2_reply(r: Result<(), NotifyError>) -> Response {
    let (status, body) = match r {
        Ok(()) => (StatusCode::OK, reply_xml(true, "OK")),
        Err(e) => (e.status, reply_xml(false, e.message)),
    };
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

/// `POST /notify/refund`: a refund result (`REFUND.SUCCESS`, `REFUND.ABNORMAL`,
/// `REFUND.CLOSED`), also for refunds made in the merchant console. In APIv2 mode the body is
/// WeChat's XML with an encrypted `req_info`, answered in XML.
#[utoipa::path(post, path = "/notify/refund", tag = "notify", request_body = Notification,
    params(
        ("Wechatpay-Timestamp" = String, Header, description = "Unix seconds"),
        ("Wechatpay-Nonce" = String, Header, description = "Random string"),
        ("Wechatpay-Signature" = String, Header, description = "Base64 RSA signature"),
        ("Wechatpay-Serial" = String, Header, description = "Platform certificate serial or public key id"),
    ),
    responses(
        (status = 204, description = "Recorded (also for a duplicate)"),
        (status = 400, description = "Malformed, stale, not ours or unknown order", body = NotifyFailure),
        (status = 401, description = "Signature does not verify or unknown serial", body = NotifyFailure),
        (status = 413, description = "Body too large", body = NotifyFailure),
        (status = 500, description = "Not recorded (storage, or undecryptable with the configured APIv3 key); WeChat redelivers", body = NotifyFailure),
        (status = 503, description = "The payment is not recorded yet; WeChat redelivers", body = NotifyFailure),
    ))]
pub(super) async fn refund(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match s.wechat.v2() {
        Some(v2) => v2_reply(refund_v2(&s, v2, body).await),
        None => refund_v3(&s, &headers, body).await.into_response(),
    }
}

async fn refund_v3(
    s: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<StatusCode, NotifyError> {
    let body = body.map_err(too_large)?;
    let n = verified(s, "refund", headers, &body).await?;
    let r = n.refund().map_err(|_| {
        s.metrics.notification("refund", "malformed");
        NotifyError::new(StatusCode::BAD_REQUEST, "resource is not a refund")
    })?;
    record_refund(s, &r, &n.id, &n.event_type).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An APIv2 refund notification: `req_info` decrypted with the APIv2 key, then the same
/// service as APIv3.
async fn refund_v2(
    s: &AppState,
    v2: &V2Api,
    body: Result<Bytes, BytesRejection>,
) -> Result<(), NotifyError> {
    let body = body.map_err(too_large)?;
    let n = v2
        .refund_notification(&body, &s.config.appid)
        .map_err(|e| {
            let (outcome, status, message) = match e {
                wxpay_core::Error::DecryptFailed => (
                    "undecryptable",
                    StatusCode::UNAUTHORIZED,
                    "req_info does not decrypt with our key",
                ),
                _ => (
                    "malformed",
                    StatusCode::BAD_REQUEST,
                    "malformed notification",
                ),
            };
            s.metrics.notification("refund", outcome);
            tracing::warn!(kind = "refund", outcome, error = %e, "APIv2 notification rejected");
            NotifyError::new(status, message)
        })?;
    record_refund(s, &n.notice, &n.id, n.event_type).await
}

/// Applies a verified refund result and maps the outcome to what WeChat is told.
async fn record_refund(
    s: &AppState,
    r: &RefundNotice,
    id: &str,
    event_type: &str,
) -> Result<(), NotifyError> {
    let note = NotificationRecord {
        id,
        kind: "refund",
        event_type,
        out_trade_no: &r.out_trade_no,
    };
    let outcome = refunds::apply_notice(s, r, &note)
        .await
        .map_err(|e| storage_failed(s, "refund", &e))?;
    match outcome {
        Ok(o) => {
            s.metrics.notification(
                "refund",
                match &o {
                    RefundOutcome::Changed { .. } => "applied",
                    RefundOutcome::Duplicate
                    | RefundOutcome::Kept {
                        outcome: "duplicate",
                        ..
                    } => "duplicate",
                    RefundOutcome::Kept { .. } => "no_change",
                    RefundOutcome::Missing => "unknown_refund",
                },
            );
            Ok(())
        }
        Err(refused) => {
            s.metrics.notification("refund", "refused");
            tracing::warn!(out_refund_no = %r.out_refund_no, reason = %refused,
                "refund notification not applied");
            Err(match refused {
                // Not acknowledged: WeChat redelivers once the payment is recorded.
                NoticeRefused::NotPaidYet => NotifyError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "payment not recorded yet, retry later",
                ),
                NoticeRefused::Foreign => {
                    NotifyError::new(StatusCode::BAD_REQUEST, "mchid mismatch")
                }
                NoticeRefused::UnknownOrder => {
                    NotifyError::new(StatusCode::BAD_REQUEST, "unknown out_trade_no")
                }
                NoticeRefused::Mismatch => {
                    NotifyError::new(StatusCode::BAD_REQUEST, "refund does not match")
                }
            })
        }
    }
}
