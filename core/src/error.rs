//! The one error type of the core.

/// Everything that can go wrong in the core.
///
/// Verification failures are deliberately opaque (like RustCrypto's `signature::Error`): they say
/// *that* a check failed, never which byte or which step, so an attacker learns nothing from them.
/// [`Error::code`] maps every variant to the stable codes of the project's test vectors, which
/// callers (and the JavaScript bindings) branch on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A signature does not verify (missing, empty, not base64, or simply wrong).
    #[error("signature does not verify")]
    SignatureMismatch,
    /// A `WECHATPAY/SIGNTEST/` probe signature: WeChat Pay sends these to check that a merchant
    /// really verifies signatures. It must be rejected like any bad signature; it is a separate
    /// variant only so that a host can log it as a probe rather than as an attack.
    #[error("signature does not verify (WECHATPAY/SIGNTEST probe)")]
    SignTestProbe,
    /// `Wechatpay-Serial` names no key the caller holds (a host may refresh its certificates and
    /// retry once).
    #[error("no platform key with this serial")]
    UnknownSerial,
    /// `Wechatpay-Timestamp` is more than 300 s away from `now`, in either direction.
    #[error("timestamp outside the allowed window")]
    TimestampExpired,
    /// Structurally bad input; the text names the part (never secret material).
    #[error("malformed input: {0}")]
    Malformed(&'static str),
    /// AEAD tag check, padding or key failed.
    #[error("decryption failed")]
    DecryptFailed,
    /// A key of the wrong size or format; the text names what was expected.
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
}

impl Error {
    /// The stable error code: one of `signature_mismatch`, `unknown_serial`, `timestamp_expired`,
    /// `malformed`, `decrypt_failed`, `invalid_key` (the codes of `tests/vectors/README.md`).
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::SignatureMismatch | Self::SignTestProbe => "signature_mismatch",
            Self::UnknownSerial => "unknown_serial",
            Self::TimestampExpired => "timestamp_expired",
            Self::Malformed(_) => "malformed",
            Self::DecryptFailed => "decrypt_failed",
            Self::InvalidKey(_) => "invalid_key",
        }
    }

    /// Whether this is the rejection of a `WECHATPAY/SIGNTEST/` probe signature.
    #[must_use]
    pub fn is_probe(&self) -> bool {
        matches!(self, Self::SignTestProbe)
    }
}

/// `Result` with the core's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_the_vector_codes() {
        let all = [
            (Error::SignatureMismatch, "signature_mismatch"),
            (Error::SignTestProbe, "signature_mismatch"),
            (Error::UnknownSerial, "unknown_serial"),
            (Error::TimestampExpired, "timestamp_expired"),
            (Error::Malformed("x"), "malformed"),
            (Error::DecryptFailed, "decrypt_failed"),
            (Error::InvalidKey("x"), "invalid_key"),
        ];
        for (e, code) in all {
            assert_eq!(e.code(), code);
            assert_eq!(e.is_probe(), matches!(e, Error::SignTestProbe));
        }
    }
}
