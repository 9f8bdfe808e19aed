//! Validated values with WeChat Pay's own rules ("parse, don't validate"): once a value of one of
//! these types exists, WeChat will accept it, so a bad field is refused with a 400 naming it
//! before any upstream call instead of as a 502 on every payment attempt.
//!
//! Limits from the JSAPI order and refund APIs (WeChat Pay APIv3 "JSAPI下单", "退款申请"):
//! `out_trade_no` 6–32 of `[0-9A-Za-z_-|*]`, `out_refund_no` 1–64 of `[0-9A-Za-z_-|*@]`,
//! `description` ≤ 127 bytes, `attach` 1–128 bytes, `amount.total` an integer number of fen.

use std::fmt;

/// A field that does not satisfy WeChat's rules; `field` names it for the 400 answer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field} {rule}")]
pub struct InvalidField {
    /// The request field, e.g. `out_trade_no`.
    pub field: &'static str,
    /// What it must be, e.g. `must be 6-32 characters of [0-9A-Za-z_-|*]`.
    pub rule: &'static str,
}

impl InvalidField {
    const fn new(field: &'static str, rule: &'static str) -> Self {
        Self { field, rule }
    }
}

fn merchant_chars(s: &str, extra: &[u8]) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"_-|*".contains(&b) || extra.contains(&b))
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as WeChat receives it.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The owned value.
            #[must_use]
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidField;
            fn from_str(s: &str) -> Result<Self, InvalidField> {
                Self::parse(s.to_owned())
            }
        }
    };
}

string_newtype!(
    /// A merchant order number: 6–32 characters of `[0-9A-Za-z_-|*]`.
    OutTradeNo
);
string_newtype!(
    /// A merchant refund number: 1–64 characters of `[0-9A-Za-z_-|*@]`.
    OutRefundNo
);
string_newtype!(
    /// Goods description: 1–127 bytes of UTF-8 (WeChat counts bytes, not characters).
    Description
);
string_newtype!(
    /// Merchant data echoed in the notification: 1–128 bytes of UTF-8.
    Attach
);

impl OutTradeNo {
    /// Validates an order number.
    ///
    /// # Errors
    /// [`InvalidField`] when it is not 6–32 characters of `[0-9A-Za-z_-|*]`.
    pub fn parse(s: String) -> Result<Self, InvalidField> {
        if (6..=32).contains(&s.len()) && merchant_chars(&s, b"") {
            Ok(Self(s))
        } else {
            Err(InvalidField::new(
                "out_trade_no",
                "must be 6-32 characters of [0-9A-Za-z_-|*]",
            ))
        }
    }
}

impl OutRefundNo {
    /// Validates a refund number.
    ///
    /// # Errors
    /// [`InvalidField`] when it is not 1–64 characters of `[0-9A-Za-z_-|*@]`.
    pub fn parse(s: String) -> Result<Self, InvalidField> {
        if (1..=64).contains(&s.len()) && merchant_chars(&s, b"@") {
            Ok(Self(s))
        } else {
            Err(InvalidField::new(
                "out_refund_no",
                "must be 1-64 characters of [0-9A-Za-z_-|*@]",
            ))
        }
    }
}

impl Description {
    /// Validates a description (surrounding white space is removed first).
    ///
    /// # Errors
    /// [`InvalidField`] when it is empty or longer than 127 bytes.
    pub fn parse(s: String) -> Result<Self, InvalidField> {
        let t = s.trim();
        if !t.is_empty() && t.len() <= 127 && !t.chars().any(char::is_control) {
            Ok(Self(t.to_owned()))
        } else {
            Err(InvalidField::new(
                "description",
                "must be 1-127 bytes of text without control characters",
            ))
        }
    }
}

impl Attach {
    /// Validates merchant data.
    ///
    /// # Errors
    /// [`InvalidField`] when it is empty or longer than 128 bytes.
    pub fn parse(s: String) -> Result<Self, InvalidField> {
        if (1..=128).contains(&s.len()) {
            Ok(Self(s))
        } else {
            Err(InvalidField::new("attach", "must be 1-128 bytes"))
        }
    }
}

/// An amount of money in fen (分), 1 ..= 10^10 (WeChat's `amount.total` is an int64 of fen;
/// 10^10 fen = 100 million yuan bounds sums far below `i64::MAX`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Amount(i64);

impl Amount {
    /// The largest accepted amount.
    pub const MAX: i64 = 10_000_000_000;

    /// Validates an amount for `field`.
    ///
    /// # Errors
    /// [`InvalidField`] when it is not in 1 ..= 10^10.
    pub fn parse(field: &'static str, fen: i64) -> Result<Self, InvalidField> {
        if (1..=Self::MAX).contains(&fen) {
            Ok(Self(fen))
        } else {
            Err(InvalidField::new(
                field,
                "must be an integer number of fen from 1 to 10000000000",
            ))
        }
    }

    /// The amount in fen.
    #[must_use]
    pub const fn fen(self) -> i64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn out_trade_no_rules() {
        for ok in ["ABC123", "a_b-c|d*e", &"x".repeat(32)] {
            assert!(OutTradeNo::parse(ok.to_owned()).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "abc12",
            &"x".repeat(33),
            "ORDER 1",
            "ORDER@1",
            "订单号123456",
            "../abc",
        ] {
            let e = OutTradeNo::parse(bad.to_owned()).unwrap_err();
            assert_eq!(e.field, "out_trade_no", "{bad}");
        }
        assert!(OutRefundNo::parse("R@1".into()).is_ok());
        assert!(OutRefundNo::parse("R/1".into()).is_err());
        assert!(OutRefundNo::parse(String::new()).is_err());
    }

    #[test]
    fn texts_are_limited_in_bytes_not_characters() {
        // 42 CJK characters = 126 bytes: fine; 43 = 129 bytes: too long although < 127 chars.
        assert!(Description::parse("商".repeat(42)).is_ok());
        assert_eq!(
            Description::parse("商".repeat(43)).unwrap_err().field,
            "description"
        );
        assert!(Description::parse("  ".into()).is_err());
        assert_eq!(Description::parse(" x ".into()).unwrap().as_str(), "x");
        assert!(Attach::parse("a".repeat(128)).is_ok());
        assert!(Attach::parse("é".repeat(65)).is_err());
        assert!(Attach::parse(String::new()).is_err());
    }

    #[test]
    fn amounts() {
        assert!(Amount::parse("amount", 0).is_err());
        assert!(Amount::parse("amount", -1).is_err());
        assert_eq!(Amount::parse("amount", 1).unwrap().fen(), 1);
        assert!(Amount::parse("amount", Amount::MAX).is_ok());
        assert!(Amount::parse("amount", Amount::MAX + 1).is_err());
    }
}
