//! The OpenAPI 3.1 description of the host's HTTP API.
//!
//! Generated from the code that serves it: every route is registered through
//! [`utoipa_axum`]'s `routes!`, which takes the method and path from the handler's
//! `#[utoipa::path]` attribute, so a route cannot exist without being described (or the other
//! way round). Request and answer bodies are the handlers' own (de)serialized types. The
//! document covers both listeners — tags `api`, `notify` and `ops` are served on the public
//! one, `admin` and `/metrics` on the private one — and is served at `/openapi.json` on the
//! private listener only.

use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa::{Modify, PartialSchema, ToSchema};

use crate::domain::{OrderState, RefundState};

/// The document's fixed parts; the paths come from the routers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "wxpay-host",
        description = "WeChat Pay mini-program payment server. Tags `api`, `notify` and `ops` are \
                       served on the public listener (`WXPAY_LISTEN`); `admin` and `/metrics` on \
                       the private one (`WXPAY_ADMIN_LISTEN`), which also serves this document.",
    ),
    modifiers(&Security),
    tags(
        (name = "api", description = "The mini-program's API (user session token from `/api/login`)."),
        (name = "notify", description = "WeChat Pay's notifications (signed by WeChat Pay)."),
        (name = "admin", description = "The back office (`WXPAY_ADMIN_TOKEN`), private listener only."),
        (name = "ops", description = "Liveness, readiness, metrics."),
    )
)]
struct Base;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, what) in [
            ("user", "session token answered by `POST /api/login`"),
            ("admin", "`WXPAY_ADMIN_TOKEN`"),
        ] {
            components.add_security_scheme(
                name,
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .description(Some(what))
                        .build(),
                ),
            );
        }
    }
}

/// The whole document: the fixed parts and the paths of both routers.
#[must_use]
pub fn document(public: OpenApi, admin: OpenApi) -> OpenApi {
    use utoipa::OpenApi as _;
    let mut doc = Base::openapi();
    doc.merge(public);
    doc.merge(admin);
    doc
}

fn string_enum(values: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(values))
        .into()
}

impl PartialSchema for OrderState {
    fn schema() -> RefOr<Schema> {
        string_enum(Self::ALL.iter().map(|s| s.as_str()))
    }
}
impl ToSchema for OrderState {}

impl PartialSchema for RefundState {
    fn schema() -> RefOr<Schema> {
        string_enum(Self::ALL.iter().map(|s| s.as_str()))
    }
}
impl ToSchema for RefundState {}

/// Every error of the API: `{"error": {"code", "message"}}`.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `invalid_field`, `not_found`, `rate_limited`,
    /// `upstream_error`.
    pub code: String,
    /// Human-readable explanation, safe to show.
    pub message: String,
    /// For errors WeChat answered: WeChat's own code (e.g. `SIGN_ERROR`).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_code: Option<String>,
    /// For errors WeChat answered: WeChat's message.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_message: Option<String>,
    /// For errors WeChat answered: whether the answer's signature verified (WeChat does not
    /// sign the answer to a request whose own signature was wrong, e.g. `SIGN_ERROR`).
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wechat_verified: Option<bool>,
}

/// The answer to WeChat Pay when a notification is not recorded (WeChat redelivers).
#[derive(Serialize, ToSchema)]
pub struct NotifyFailure {
    /// Always `FAIL`.
    pub code: String,
    /// Short English reason.
    pub message: String,
}

/// A WeChat Pay APIv3 notification, as WeChat Pay sends it (verified over its raw bytes, so it
/// is described here, not parsed into this type).
#[derive(Serialize, ToSchema)]
pub struct Notification {
    /// Notification id.
    pub id: String,
    /// RFC 3339 time.
    pub create_time: String,
    /// E.g. `TRANSACTION.SUCCESS`, `REFUND.SUCCESS`.
    pub event_type: String,
    /// `encrypt-resource`.
    pub resource_type: String,
    /// The encrypted resource.
    pub resource: NotificationResource,
    /// Short description.
    pub summary: String,
}

/// The AES-256-GCM encrypted resource of a notification.
#[derive(Serialize, ToSchema)]
pub struct NotificationResource {
    /// `AEAD_AES_256_GCM`.
    pub algorithm: String,
    /// Base64 ciphertext and tag.
    pub ciphertext: String,
    /// 12-byte nonce.
    pub nonce: String,
    /// Associated data.
    #[schema(nullable = false)]
    pub associated_data: Option<String>,
    /// `transaction` or `refund`.
    pub original_type: String,
}

/// `/healthz`, `/readyz`: `{"status"}` (and why not ready).
#[derive(Serialize, ToSchema)]
pub struct Status {
    /// `ok`, `ready` or `not_ready`.
    pub status: String,
    /// Why not ready.
    #[schema(nullable = false)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasons: Option<Vec<String>>,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn state_schemas_list_every_state() {
        let json = serde_json::to_value(OrderState::schema()).unwrap();
        let values = json["enum"].as_array().unwrap();
        assert_eq!(values.len(), OrderState::ALL.len());
        assert!(values.contains(&serde_json::json!("REVIEW")));
        let json = serde_json::to_value(RefundState::schema()).unwrap();
        assert_eq!(
            json["enum"].as_array().unwrap().len(),
            RefundState::ALL.len()
        );
    }
}
