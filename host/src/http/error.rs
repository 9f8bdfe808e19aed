//! The one error type of the HTTP API.
//!
//! Every variant documents its status. Clients get `{"error":{"code","message"}}`; internal
//! detail (storage errors, upstream bodies) is logged and never sent.

use super::openapi::{ErrorBody, ErrorDetail, NotifyFailure};
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::service::ServiceError;
use crate::service::payments::Unusable;
use crate::store::StoreError;
use crate::wechat::UpstreamError;

/// An error answered to an API client.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed or a field is invalid; `code` is machine readable.
    #[error("{message}")]
    BadRequest {
        /// Stable machine-readable code, e.g. `invalid_json`.
        code: &'static str,
        /// Human-readable explanation, safe to show.
        message: String,
    },
    /// 401: missing, malformed, unknown or expired bearer token.
    #[error("unauthorized")]
    Unauthorized,
    /// 404: no such resource, or it belongs to someone else.
    #[error("not found")]
    NotFound,
    /// 409: the resource is in a state that does not allow the operation.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is larger than `WXPAY_BODY_LIMIT_BYTES`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 429: WeChat rate-limited the call (e.g. errcode 45011).
    #[error("rate limited, retry later")]
    RateLimited,
    /// 429 with `Retry-After`: this client sent too many requests (login, failed admin
    /// authentications).
    #[error("too many requests, retry later")]
    Throttled {
        /// Seconds until the next attempt is allowed.
        retry_after_secs: u64,
    },
    /// 503: WeChat is busy or unreachable; retry later. The detail is logged.
    #[error("upstream unavailable")]
    Unavailable(String),
    /// 502: WeChat answered something unexpected or unverifiable. The detail is logged; WeChat's
    /// own error code and message, when it sent one, are also in the answer
    /// (`wechat_code`, `wechat_message`, `wechat_verified`) so that the back office sees e.g.
    /// `SIGN_ERROR` instead of a bare "upstream error".
    #[error("upstream error")]
    Upstream {
        /// What went wrong, for the log.
        detail: String,
        /// WeChat's error, if its answer carried one.
        wechat: Option<WechatError>,
    },
    /// 500: storage or another internal failure. The detail is logged.
    #[error("internal error")]
    Internal(String),
}

/// WeChat Pay's own error in an upstream failure, shown to API clients: WeChat's code and
/// message are not secret, and `verified` says whether the answer was signed by WeChat (an
/// unsigned answer, such as the 401 `SIGN_ERROR` WeChat never signs, is shown but was not
/// acted on).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WechatError {
    /// e.g. `SIGN_ERROR`, `PARAM_ERROR`.
    pub code: String,
    /// WeChat's message, e.g. `错误的签名，验签失败`.
    pub message: String,
    /// Whether the answer's signature verified.
    pub verified: bool,
}

impl AppError {
    /// A 400 with a code and message.
    #[must_use]
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::BadRequest {
            code,
            message: message.into(),
        }
    }

    /// The HTTP status of this error.
    #[must_use]
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::RateLimited | Self::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code of this error.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. } => code,
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Conflict(_) => "conflict",
            Self::PayloadTooLarge => "payload_too_large",
            Self::RateLimited | Self::Throttled { .. } => "rate_limited",
            Self::Unavailable(_) => "upstream_unavailable",
            Self::Upstream { .. } => "upstream_error",
            Self::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Upstream { detail, .. } | Self::Unavailable(detail) => {
                tracing::warn!(%detail, "upstream error");
            }
            _ => {}
        }
        let wechat = match &self {
            Self::Upstream {
                wechat: Some(w), ..
            } => Some(w),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.to_string(),
                wechat_code: wechat.map(|w| w.code.clone()),
                wechat_message: wechat.map(|w| w.message.clone()),
                wechat_verified: wechat.map(|w| w.verified),
            },
        };
        let mut resp = (self.status(), Json(body)).into_response();
        if let Self::Throttled { retry_after_secs } = self {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(retry_after_secs.max(1)),
            );
        }
        resp
    }
}

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<ServiceError> for AppError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid(f) => Self::bad_request("invalid_field", f.to_string()),
            ServiceError::UnknownUser => {
                Self::bad_request("unknown_openid", "no user with this openid has logged in")
            }
            ServiceError::NotFound => Self::NotFound,
            ServiceError::Conflict(m) => Self::Conflict(m),
            ServiceError::Storage(e) => e.into(),
            ServiceError::Upstream(e) => e.into(),
            ServiceError::Internal(m) => Self::Internal(m),
        }
    }
}

impl From<UpstreamError> for AppError {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::RateLimited => Self::RateLimited,
            UpstreamError::Busy(d) | UpstreamError::Transport(d) => Self::Unavailable(d),
            UpstreamError::InvalidCode(m) => Self::bad_request("invalid_code", m),
            other => Self::Upstream {
                detail: other.to_string(),
                wechat: other
                    .wechat_code()
                    .map(|(code, message, verified)| WechatError {
                        code: code.to_owned(),
                        message: message.to_owned(),
                        verified,
                    }),
            },
        }
    }
}

impl From<JsonRejection> for AppError {
    fn from(r: JsonRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge;
        }
        match r {
            JsonRejection::MissingJsonContentType(_) => Self::bad_request(
                "invalid_content_type",
                "expected Content-Type: application/json",
            ),
            JsonRejection::JsonSyntaxError(e) => Self::bad_request("invalid_json", e.body_text()),
            JsonRejection::JsonDataError(e) => Self::bad_request("invalid_body", e.body_text()),
            other => Self::bad_request("invalid_body", other.body_text()),
        }
    }
}

/// An error answered to WeChat Pay on a notification endpoint: `{"code":"FAIL","message"}`.
///
/// WeChat retries any non-2xx answer, so storage failures map to 500 and are retried.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct NotifyError {
    /// HTTP status: 400 malformed or not ours, 401 signature, 500 storage.
    pub status: StatusCode,
    /// Short English reason, safe to send.
    pub message: &'static str,
}

impl NotifyError {
    /// A notification error with a status and message.
    #[must_use]
    pub const fn new(status: StatusCode, message: &'static str) -> Self {
        Self { status, message }
    }
}

impl IntoResponse for NotifyError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(NotifyFailure {
                code: "FAIL".into(),
                message: self.message.into(),
            }),
        )
            .into_response()
    }
}

impl NotifyError {
    /// A storage failure: 500, so WeChat redelivers.
    #[must_use]
    pub const fn storage() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "storage unavailable, retry later",
        )
    }
}

impl From<Unusable> for NotifyError {
    fn from(e: Unusable) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            match e {
                Unusable::Foreign => "appid or mchid mismatch",
                Unusable::Incomplete => "paid transaction without transaction_id or amount",
            },
        )
    }
}
