//! Notification delivery: WeChat Pay's APIv3 callbacks, encrypted and signed, with its retry
//! schedule and the test behaviours of [`NotifyBehavior`].
//!
//! Wire format: WeChat Pay APIv3 "支付成功回调通知" / "退款结果通知": a JSON envelope whose
//! `resource` is the event's JSON encrypted with `AEAD_AES_256_GCM` under the APIv3 key, posted
//! with `Wechatpay-Timestamp/-Nonce/-Signature/-Serial/-Signature-Type` headers that sign
//! `timestamp\nnonce\nbody\n` with the platform key. Each retry is a new request, signed anew
//! with a fresh timestamp and nonce, carrying the same notification `id`.

use std::sync::{Arc, PoisonError};

use serde::Serialize;
use serde_json::Value;
use wxpay_core::v3::SIGNTEST_PREFIX;

use super::state::{NotifyBehavior, Order, Refund};
use super::wire::{rfc3339_cst, uuid_like};
use super::{Shared, rng};

/// What a delivery attempt sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DeliveryKind {
    /// The genuine, correctly signed notification.
    Notification,
    /// A `WECHATPAY/SIGNTEST/` probe (its answer is ignored).
    Probe,
    /// The notification with its body altered after signing.
    Tampered,
}

/// One HTTP attempt to deliver a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeliveryAttempt {
    /// The notification's `id` (the same for retries and duplicate copies).
    pub notification_id: String,
    /// `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`, `REFUND.ABNORMAL` or `REFUND.CLOSED`.
    pub event_type: &'static str,
    /// Where it was posted.
    pub url: String,
    /// Which duplicate copy (0 unless [`NotifyBehavior::Duplicate`]).
    pub copy: usize,
    /// 0 for the first attempt, then 1, 2, … along the retry schedule.
    pub attempt: usize,
    /// What was sent.
    pub kind: DeliveryKind,
    /// The HTTP status answered; `None` for a connection error or timeout.
    pub status: Option<u16>,
    /// Whether the answer counted as success (200 or 204).
    pub acknowledged: bool,
}

/// Notification counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct DeliveryStats {
    /// Copies acknowledged with 200/204.
    pub delivered: usize,
    /// HTTP attempts made, probes included.
    pub attempts: usize,
    /// Copies still being delivered or waiting for a retry, plus accepted refunds waiting to
    /// complete by themselves ([`super::SimulatorOptions::refund_delay`]).
    pub in_flight: usize,
    /// Copies abandoned after the last retry.
    pub gave_up: usize,
    /// Notifications not sent because of [`NotifyBehavior::Drop`].
    pub dropped: usize,
}

/// The notification envelope, in WeChat's field order.
#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    create_time: String,
    resource_type: &'static str,
    event_type: &'a str,
    summary: &'a str,
    resource: Resource<'a>,
}

#[derive(Serialize)]
struct Resource<'a> {
    original_type: &'a str,
    algorithm: &'static str,
    ciphertext: String,
    associated_data: &'a str,
    nonce: &'a str,
}

/// A notification ready to send.
struct Prepared {
    id: String,
    event_type: &'static str,
    url: String,
    body: String,
}

/// Sends the `TRANSACTION.SUCCESS` notification of a paid order.
pub(crate) fn send_transaction(shared: &Arc<Shared>, order: &Order) {
    let plaintext = order.transaction_json();
    let url = order.req.notify_url.clone();
    dispatch(
        shared,
        "TRANSACTION.SUCCESS",
        "支付成功",
        "transaction",
        &plaintext,
        url,
    );
}

/// Sends the notification of a refund that reached `SUCCESS`, `ABNORMAL` or `CLOSED`
/// (`REFUND.SUCCESS`, `REFUND.ABNORMAL`, `REFUND.CLOSED`), if it has a notify URL.
pub(crate) fn send_refund(shared: &Arc<Shared>, refund: &Refund) {
    let (Some(url), Some((event_type, summary))) =
        (refund.notify_url.clone(), refund.status.event())
    else {
        return;
    };
    let plaintext = refund.notification_json(&shared.creds.mchid);
    dispatch(shared, event_type, summary, "refund", &plaintext, url);
}

/// WeChat's `summary` for an event type.
pub(crate) fn summary_of(event_type: &str) -> &'static str {
    match event_type {
        "TRANSACTION.SUCCESS" => "支付成功",
        "REFUND.SUCCESS" => "退款成功",
        "REFUND.ABNORMAL" => "退款异常",
        "REFUND.CLOSED" => "退款关闭",
        _ => "通知",
    }
}

fn dispatch(
    shared: &Arc<Shared>,
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
    plaintext: &Value,
    url: String,
) {
    let prepared = match prepare(shared, event_type, summary, original_type, plaintext, url) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            tracing::error!(error = %e, "cannot encrypt notification");
            return;
        }
    };
    let behavior = shared.world().behavior;
    let copies = match behavior {
        NotifyBehavior::Drop => {
            shared.stats.send_modify(|s| s.dropped += 1);
            tracing::info!(id = %prepared.id, "notification dropped (behaviour Drop)");
            return;
        }
        NotifyBehavior::Duplicate(n) => n.max(1),
        _ => 1,
    };
    // Counted before spawning, so that a `wait_idle` right after `pay` sees the work.
    shared.stats.send_modify(|s| s.in_flight += copies);
    for copy in 0..copies {
        let (shared, prepared) = (shared.clone(), prepared.clone());
        shared.runtime.clone().spawn(async move {
            if behavior == NotifyBehavior::ProbeFirst {
                let status = send_once(&shared, &prepared, DeliveryKind::Probe).await;
                record(
                    &shared,
                    &prepared,
                    copy,
                    0,
                    DeliveryKind::Probe,
                    status,
                    false,
                );
            }
            let kind = if behavior == NotifyBehavior::Tamper {
                DeliveryKind::Tampered
            } else {
                DeliveryKind::Notification
            };
            let delivered = deliver(&shared, &prepared, copy, kind).await;
            shared.stats.send_modify(|s| {
                s.in_flight -= 1;
                if delivered {
                    s.delivered += 1;
                } else {
                    s.gave_up += 1;
                }
            });
        });
    }
}

fn prepare(
    shared: &Shared,
    event_type: &'static str,
    summary: &'static str,
    original_type: &'static str,
    plaintext: &Value,
    url: String,
) -> wxpay_core::Result<Prepared> {
    let mut id_bytes = [0u8; 16];
    rand_core::Rng::fill_bytes(&mut rng(), &mut id_bytes);
    let id = uuid_like(id_bytes);
    let body = envelope(shared, &id, event_type, summary, original_type, plaintext)?;
    Ok(Prepared {
        id,
        event_type,
        url,
        body,
    })
}

/// The JSON body of a notification: the envelope with `resource` encrypted under the APIv3 key
/// (`original_type` as associated data) and `create_time` now.
///
/// # Errors
/// What the core's AEAD returns; [`wxpay_core::Error::Malformed`] if the JSON cannot be
/// written.
pub(crate) fn envelope(
    shared: &Shared,
    id: &str,
    event_type: &str,
    summary: &str,
    original_type: &str,
    plaintext: &Value,
) -> wxpay_core::Result<String> {
    // AEAD nonces are 12 characters; 62^12 random values never repeat in practice.
    let nonce = wxpay_core::nonce::nonce_str(&mut rng())[..12].to_owned();
    let ciphertext = wxpay_core::aead::encrypt(
        &shared.api_v3_key,
        &nonce,
        original_type,
        plaintext.to_string().as_bytes(),
    )?;
    let envelope = Envelope {
        id,
        create_time: rfc3339_cst(shared.now()),
        resource_type: "encrypt-resource",
        event_type,
        summary,
        resource: Resource {
            original_type,
            algorithm: "AEAD_AES_256_GCM",
            ciphertext,
            associated_data: original_type,
            nonce: &nonce,
        },
    };
    serde_json::to_string(&envelope).map_err(|_| wxpay_core::Error::Malformed("notification JSON"))
}

/// Delivers one copy along the retry schedule; `true` once acknowledged.
async fn deliver(shared: &Arc<Shared>, p: &Prepared, copy: usize, kind: DeliveryKind) -> bool {
    let mut stop = shared.shutdown.subscribe();
    for attempt in 0..=shared.schedule.len() {
        if attempt > 0 {
            tokio::select! {
                () = tokio::time::sleep(shared.schedule[attempt - 1]) => {}
                _ = stop.wait_for(|s| *s) => return false,
            }
        }
        if *stop.borrow() {
            return false;
        }
        let status = send_once(shared, p, kind).await;
        let acknowledged = matches!(status, Some(200 | 204));
        record(shared, p, copy, attempt, kind, status, acknowledged);
        if acknowledged {
            return true;
        }
    }
    tracing::warn!(id = %p.id, url = %p.url, "notification abandoned after the last retry");
    false
}

/// One signed POST; the HTTP status, or `None` for a transport failure.
async fn send_once(shared: &Shared, p: &Prepared, kind: DeliveryKind) -> Option<u16> {
    let signed = match shared.sign(p.body.as_bytes()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot sign notification");
            return None;
        }
    };
    let (signature, body) = match kind {
        DeliveryKind::Notification => (signed.signature, p.body.clone()),
        DeliveryKind::Probe => (
            format!("{SIGNTEST_PREFIX}{}", signed.signature),
            p.body.clone(),
        ),
        DeliveryKind::Tampered => (signed.signature, tamper(&p.body)),
    };
    let mut req = shared
        .http
        .post(&p.url)
        .header("Content-Type", "application/json")
        .body(body);
    for (name, value) in
        super::Signed::headers_with(&signed.timestamp, &signed.nonce, &signature, &signed.serial)
    {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(resp) => Some(resp.status().as_u16()),
        Err(e) => {
            tracing::debug!(error = %e, url = %p.url, "notification attempt failed");
            None
        }
    }
}

/// The body with one ciphertext character changed: still well-formed JSON and base64, so only
/// the signature (and the AEAD tag) can tell.
fn tamper(body: &str) -> String {
    const FIELD: &str = "\"ciphertext\":\"";
    let Some(start) = body.find(FIELD).map(|i| i + FIELD.len()) else {
        return format!("{body} ");
    };
    let mut out = body.to_owned();
    let replacement = if body[start..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    out.replace_range(start..=start, replacement);
    out
}

fn record(
    shared: &Shared,
    p: &Prepared,
    copy: usize,
    attempt: usize,
    kind: DeliveryKind,
    status: Option<u16>,
    acknowledged: bool,
) {
    shared.stats.send_modify(|s| s.attempts += 1);
    shared
        .deliveries
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(DeliveryAttempt {
            notification_id: p.id.clone(),
            event_type: p.event_type,
            url: p.url.clone(),
            copy,
            attempt,
            kind,
            status,
            acknowledged,
        });
}

#[cfg(test)]
mod tests {
    use super::tamper;

    #[test]
    fn tampering_changes_exactly_one_ciphertext_character() {
        let body = r#"{"resource":{"ciphertext":"Abc=","nonce":"x"}}"#;
        let t = tamper(body);
        assert_eq!(t, r#"{"resource":{"ciphertext":"Bbc=","nonce":"x"}}"#);
        assert_eq!(tamper(&t), body);
    }
}
