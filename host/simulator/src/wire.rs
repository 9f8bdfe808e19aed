//! Wire formats of the simulated services that involve no cryptography: the APIv3
//! `Authorization` header, WeChat's RFC 3339 times, identifiers and the v3 error body.
//!
//! Signing, verification and AEAD all live in `wxpay-core`; this module only parses and formats.

use std::fmt;
use std::str::FromStr;

use axum::http::StatusCode;
use serde_json::{Value, json};

use wxpay_core::v3::AUTH_SCHEME;

/// A parsed APIv3 `Authorization` header (WeChat Pay APIv3 "签名生成"):
/// `WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",signature="..",timestamp="..",serial_no=".."`
/// (parameters in any order, as the specification allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizationHeader {
    pub mchid: String,
    pub nonce_str: String,
    pub signature: String,
    pub timestamp: String,
    pub serial_no: String,
}

/// Why an `Authorization` header could not be parsed; the text goes into the 401 body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AuthorizationFormatError(&'static str);

impl fmt::Display for AuthorizationFormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl FromStr for AuthorizationHeader {
    type Err = AuthorizationFormatError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let rest = value
            .strip_prefix(AUTH_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(AuthorizationFormatError(
                "Authorization must use the WECHATPAY2-SHA256-RSA2048 scheme",
            ))?;
        let (mut mchid, mut nonce_str, mut signature, mut timestamp, mut serial_no) =
            (None, None, None, None, None);
        for part in rest.split(',') {
            let (key, quoted) = part.trim().split_once('=').ok_or(AuthorizationFormatError(
                "Authorization parameter without '='",
            ))?;
            let val = quoted
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .ok_or(AuthorizationFormatError(
                    "Authorization values must be quoted",
                ))?;
            let slot = match key {
                "mchid" => &mut mchid,
                "nonce_str" => &mut nonce_str,
                "signature" => &mut signature,
                "timestamp" => &mut timestamp,
                "serial_no" => &mut serial_no,
                _ => return Err(AuthorizationFormatError("unknown Authorization parameter")),
            };
            if slot.replace(val.to_owned()).is_some() {
                return Err(AuthorizationFormatError("repeated Authorization parameter"));
            }
        }
        let missing = AuthorizationFormatError(
            "Authorization needs mchid, nonce_str, signature, timestamp and serial_no",
        );
        Ok(Self {
            mchid: mchid.ok_or(missing)?,
            nonce_str: nonce_str.ok_or(missing)?,
            signature: signature.ok_or(missing)?,
            timestamp: timestamp.ok_or(missing)?,
            serial_no: serial_no.ok_or(missing)?,
        })
    }
}

impl AuthorizationHeader {
    /// The signed message `METHOD\nURL\ntimestamp\nnonce\nbody\n` over the raw body bytes.
    pub(crate) fn message(&self, method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::with_capacity(body.len() + 128);
        for line in [method, path_and_query, &self.timestamp, &self.nonce_str] {
            m.extend_from_slice(line.as_bytes());
            m.push(b'\n');
        }
        m.extend_from_slice(body);
        m.push(b'\n');
        m
    }

    /// The timestamp as seconds, if it is plain decimal digits.
    pub(crate) fn timestamp_secs(&self) -> Option<u64> {
        digits_only(&self.timestamp)
            .then(|| self.timestamp.parse().ok())
            .flatten()
    }
}

/// Whether `s` is non-empty and all ASCII digits (no sign, no spaces).
pub(crate) fn digits_only(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// An APIv3 error: status plus `{"code","message","detail"?}` (WeChat Pay APIv3 "错误码",
/// <https://pay.weixin.qq.com/doc/v3/merchant/4012081578>).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct V3Error {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub detail: Option<Value>,
    /// How the answer is signed (WeChat leaves a `SIGN_ERROR` unsigned).
    pub signing: crate::AnswerSigning,
}

impl V3Error {
    pub(crate) fn new(
        status: StatusCode,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            detail: None,
            signing: crate::AnswerSigning::Signed,
        }
    }

    /// The same error signed as `signing` says.
    pub(crate) fn signed_as(mut self, signing: crate::AnswerSigning) -> Self {
        self.signing = signing;
        self
    }

    /// The same error with WeChat's `detail` object.
    pub(crate) fn with_detail(mut self, detail: Value) -> Self {
        self.detail = Some(detail);
        self
    }

    /// 400 `PARAM_ERROR`.
    pub(crate) fn param(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "PARAM_ERROR", message)
    }

    /// 401 `SIGN_ERROR`, unsigned: WeChat Pay does not sign the answer to a request whose
    /// `Authorization` it rejected.
    pub(crate) fn sign(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "SIGN_ERROR", message)
            .signed_as(crate::AnswerSigning::Unsigned)
    }

    /// 404 `ORDER_NOT_EXIST`.
    pub(crate) fn order_not_exist() -> Self {
        Self::new(StatusCode::NOT_FOUND, "ORDER_NOT_EXIST", "订单不存在")
    }

    /// 400 `INVALID_REQUEST`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    /// The JSON body WeChat sends with the error.
    pub(crate) fn body(&self) -> Vec<u8> {
        let mut v = json!({ "code": self.code, "message": self.message });
        if let (Some(d), Some(o)) = (&self.detail, v.as_object_mut()) {
            o.insert("detail".into(), d.clone());
        }
        v.to_string().into_bytes()
    }
}

/// Longest `truncated_sign_message` sent back; longer messages are cut (on a character
/// boundary) and marked with `...`.
const TRUNCATED_SIGN_MESSAGE: usize = 256;

/// WeChat Pay's `detail` of a `SIGN_ERROR` whose signature did not match (as seen from real
/// answers: `{"detail":{"issue":"sign not match"},"field":"signature","location":
/// "authorization","sign_information":{"method","sign_message_length",
/// "truncated_sign_message","url"}}`): the message WeChat rebuilt from the request, for the
/// merchant to compare with what it signed.
pub(crate) fn sign_error_detail(method: &str, url: &str, message: &[u8]) -> Value {
    let text = String::from_utf8_lossy(message);
    let truncated = if text.len() > TRUNCATED_SIGN_MESSAGE {
        let mut end = TRUNCATED_SIGN_MESSAGE;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &text[..end])
    } else {
        text.into_owned()
    };
    json!({
        "detail": { "issue": "sign not match" },
        "field": "signature",
        "location": "authorization",
        "sign_information": {
            "method": method,
            "sign_message_length": message.len(),
            "truncated_sign_message": truncated,
            "url": url,
        },
    })
}

/// Seconds east of UTC of China Standard Time, in which WeChat Pay reports all times.
const CST_OFFSET: i64 = 8 * 3600;

/// `2026-11-26T19:00:00+08:00`: WeChat Pay's RFC 3339 format, always in China Standard Time.
pub(crate) fn rfc3339_cst(unix: u64) -> String {
    let t = i64::try_from(unix).unwrap_or(i64::MAX - CST_OFFSET) + CST_OFFSET;
    let (days, secs) = (t.div_euclid(86_400), t.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// `yyyyMMdd` in China Standard Time, as used inside WeChat identifiers.
pub(crate) fn ymd_cst(unix: u64) -> String {
    rfc3339_cst(unix)[..10].replace('-', "")
}

/// The UTC calendar date `(year, month, day)` of a unix time (years past 9999 are clamped).
pub(crate) fn civil_date(unix: u64) -> (i32, u8, u8) {
    let days = i64::try_from(unix / 86_400).unwrap_or(i64::MAX / 2);
    let (y, m, d) = civil_from_days(days.min(2_932_896)); // 9999-12-31
    (
        i32::try_from(y).unwrap_or(9999),
        u8::try_from(m).unwrap_or(1),
        u8::try_from(d).unwrap_or(1),
    )
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` (the `time_expire` format) to unix seconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' {
        return None;
    }
    if b[16] != b':' {
        return None;
    }
    let num = |r| num_in(s, r);
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut rest = &s[19..];
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        rest = &frac[n..];
    }
    let offset = match rest {
        "Z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (oh, om) = (num_in(rest, 1..3)?, num_in(rest, 4..6)?);
            sign * (oh * 3600 + om * 60)
        }
    };
    let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    u64::try_from(t).ok()
}

fn num_in(s: &str, r: std::ops::Range<usize>) -> Option<i64> {
    let t = s.get(r)?;
    digits_only(t).then(|| t.parse().ok()).flatten()
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The inverse of [`civil_from_days`].
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A UUID-shaped identifier (notification ids look like this) from 16 random bytes.
pub(crate) fn uuid_like(bytes: [u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "WECHATPAY2-SHA256-RSA2048 mchid=\"1900009191\",nonce_str=\"abc\",\
        signature=\"c2ln\",timestamp=\"1565140765\",serial_no=\"1DDE\"";

    #[test]
    fn parses_the_documented_header_in_any_order() {
        let h: AuthorizationHeader = HEADER.parse().expect("valid header");
        assert_eq!(h.mchid, "1900009191");
        assert_eq!(h.timestamp_secs(), Some(1_565_140_765));
        let reordered = "WECHATPAY2-SHA256-RSA2048 serial_no=\"1DDE\", timestamp=\"1565140765\",\
            signature=\"c2ln\",nonce_str=\"abc\",mchid=\"1900009191\"";
        assert_eq!(reordered.parse::<AuthorizationHeader>(), Ok(h));
    }

    #[test]
    fn rejects_bad_headers() {
        for bad in [
            "",
            "Bearer x",
            "WECHATPAY2-SHA256-RSA2048",
            "WECHATPAY2-SHA256-RSA2048 mchid=1",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\"",
            "WECHATPAY2-SHA256-RSA2048 mchid=\"1\",mchid=\"1\",nonce_str=\"a\",signature=\"s\",\
             timestamp=\"1\",serial_no=\"x\"",
        ] {
            assert!(bad.parse::<AuthorizationHeader>().is_err(), "{bad}");
        }
    }

    #[test]
    fn message_is_the_documented_layout() {
        let h: AuthorizationHeader = HEADER.parse().expect("valid header");
        assert_eq!(
            h.message("GET", "/v3/certificates", b""),
            b"GET\n/v3/certificates\n1565140765\nabc\n\n"
        );
    }

    #[test]
    fn times_round_trip_in_china_standard_time() {
        assert_eq!(rfc3339_cst(0), "1970-01-01T08:00:00+08:00");
        assert_eq!(rfc3339_cst(1_614_738_995), "2021-03-03T10:36:35+08:00");
        assert_eq!(ymd_cst(1_614_738_995), "20210303");
        for t in [0, 951_782_400, 1_614_738_995, 4_102_444_800] {
            assert_eq!(parse_rfc3339(&rfc3339_cst(t)), Some(t));
        }
        assert_eq!(parse_rfc3339("2021-03-03T02:36:35Z"), Some(1_614_738_995));
        assert_eq!(
            parse_rfc3339("2021-03-03T02:36:35.123Z"),
            Some(1_614_738_995)
        );
        for bad in [
            "",
            "2021-03-03",
            "2021-13-03T02:36:35Z",
            "2021-03-03T02:36:35+0800",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
