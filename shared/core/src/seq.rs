//! The ordering token `seq` (DESIGN §3.3).
//!
//! Every change carries one normalised token that compares correctly as a plain string, so that
//! DynamoDB can compare it in a condition expression. A token is one or more unsigned integer
//! components, each zero-padded to a fixed width and joined by `.`:
//!
//! - one component of [`Seq::WIDE`] digits for DynamoDB sequence numbers (up to 40 digits) and for
//!   the per-key `seq` of application events;
//! - several components of [`Seq::NARROW`] digits for positions made of parts, such as a MySQL
//!   binlog `(file, pos, row)` or a Postgres LSN;
//! - a time in microseconds of [`Seq::NARROW`] digits, then a decimal of [`Seq::LONG`] digits, for
//!   DynamoDB changes delivered through Kinesis (creation time, then Kinesis sequence number).
//!
//! Tokens of one shape compare numerically, whatever the length of the source's digits:
//! `9000000000000000003` < `100000000000000000004`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::DecodeError;

/// A normalised ordering token. Compare tokens of the same table with `<`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Seq(String);

impl Seq {
    /// Width of a single decimal component (DynamoDB sequence numbers have up to 40 digits).
    pub const WIDE: usize = 40;
    /// Width of each component of a composite position (a `u64` has at most 20 digits).
    pub const NARROW: usize = 20;
    /// Width of a long decimal component: a Kinesis sequence number has up to 129 digits.
    pub const LONG: usize = 129;

    /// Normalises a decimal integer of up to 40 digits (leading zeros allowed).
    ///
    /// `path` names the field in errors.
    pub fn decimal(digits: &str, path: &str) -> Result<Self, DecodeError> {
        padded(digits, Self::WIDE, path).map(Self)
    }

    /// Builds a token from a time in microseconds, then a decimal integer of up to
    /// [`Seq::LONG`] digits (leading zeros allowed), such as a Kinesis sequence number.
    ///
    /// The time decides first; the decimal orders changes of the same microsecond, numerically
    /// whatever its length. `path` names the decimal's field in errors.
    pub fn micros_then_decimal(micros: u64, digits: &str, path: &str) -> Result<Self, DecodeError> {
        let tail = padded(digits, Self::LONG, path)?;
        Ok(Self(format!(
            "{micros:0width$}.{tail}",
            width = Self::NARROW
        )))
    }

    /// Builds a composite token from integer parts, most significant first.
    pub fn parts(parts: &[u64]) -> Self {
        use fmt::Write;
        let mut s = String::with_capacity(parts.len() * (Self::NARROW + 1));
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                s.push('.');
            }
            // Writing to a String cannot fail.
            let _ = write!(s, "{p:0width$}", width = Self::NARROW);
        }
        Self(s)
    }

    /// The token as it is stored and compared.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Takes a token that was normalised before, as read back from a raw line or a typed row.
    pub fn from_normalised(token: impl Into<String>) -> Self {
        Self(token.into())
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A decimal integer zero-padded to `width` digits, or an error naming `path`.
fn padded(digits: &str, width: usize, path: &str) -> Result<String, DecodeError> {
    let digits = digits.trim();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::InvalidField {
            path: path.to_owned(),
            detail: format!(
                "expected a non-negative decimal integer, found {:?}",
                truncate(digits)
            ),
        });
    }
    let significant = digits.trim_start_matches('0');
    if significant.len() > width {
        return Err(DecodeError::InvalidField {
            path: path.to_owned(),
            detail: format!(
                "sequence number has {} significant digits, more than {width}",
                significant.len()
            ),
        });
    }
    let mut s = String::with_capacity(width);
    for _ in significant.len()..width {
        s.push('0');
    }
    s.push_str(significant);
    Ok(s)
}

/// Shortens untrusted text for an error message.
pub(crate) fn truncate(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_numbers_of_different_lengths_compare_numerically() {
        let a = Seq::decimal("9000000000000000003", "s").unwrap();
        let b = Seq::decimal("100000000000000000004", "s").unwrap();
        assert!(a < b);
        assert!(
            "9000000000000000003" > "100000000000000000004",
            "a string compare would be wrong"
        );
        let forty = "9".repeat(40);
        assert!(b < Seq::decimal(&forty, "s").unwrap());
        assert_eq!(Seq::decimal(&forty, "s").unwrap().as_str().len(), 40);
    }

    #[test]
    fn leading_zeros_do_not_change_the_token() {
        assert_eq!(
            Seq::decimal("000042", "s").unwrap(),
            Seq::decimal("42", "s").unwrap()
        );
    }

    #[test]
    fn refuses_non_digits_and_overlong_numbers() {
        for bad in ["", "-1", "1.5", "abc", "12a"] {
            let err = Seq::decimal(bad, "seq").unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad:?}");
        }
        assert!(Seq::decimal(&"1".repeat(41), "seq").is_err());
        assert!(Seq::decimal(&format!("0{}", "1".repeat(40)), "seq").is_ok());
    }

    #[test]
    fn kinesis_sequence_numbers_longer_than_u64_compare_numerically() {
        let at = |us: u64, seq: &str| Seq::micros_then_decimal(us, seq, "s").unwrap();
        // Real Kinesis sequence numbers have 56 digits, far past u64's 20.
        let long_a = "49657828409187701520019995242508390119953358325192589314";
        let long_b = "49657828409187701520019995242509599045772972954367295490";
        assert!(long_a.parse::<u64>().is_err(), "longer than a u64");
        assert!(at(1, long_a) < at(1, long_b));
        // Different lengths: 9 < 10, 99…9 (56) < 1 followed by 56 zeros (57).
        assert!(at(1, "9") < at(1, "10"));
        assert!(at(1, &"9".repeat(56)) < at(1, &format!("1{}", "0".repeat(56))));
        assert!(at(1, "9000000000000000003") < at(1, "100000000000000000004"));
        // The longest the Kinesis API allows, 129 digits, still fits and still orders.
        let max = "9".repeat(Seq::LONG);
        assert!(at(1, long_b) < at(1, &max));
        assert!(Seq::micros_then_decimal(1, &format!("1{max}"), "s").is_err());
        // Leading zeros change nothing.
        assert_eq!(at(1, "00042"), at(1, "42"));
        // The time decides first: an earlier change with a larger sequence number sorts first.
        assert!(at(1_720_740_233_012_995, long_b) < at(1_720_740_233_012_996, "1"));
        assert_eq!(
            at(7, "1").as_str().len(),
            Seq::NARROW + 1 + Seq::LONG,
            "one shape, fixed width"
        );
        for bad in ["", "-1", "1.5", "0x1f", "12a"] {
            let err = Seq::micros_then_decimal(1, bad, "kinesis.sequenceNumber").unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad:?}");
            assert!(err.to_string().contains("kinesis.sequenceNumber"), "{err}");
        }
    }

    #[test]
    fn composite_positions_compare_part_by_part() {
        // binlog file 3 position 998 comes before file 3 position 1234, and before file 10.
        let a = Seq::parts(&[3, 998, 0]);
        let b = Seq::parts(&[3, 1234, 0]);
        let c = Seq::parts(&[10, 4, 0]);
        assert!(a < b && b < c);
        assert!(Seq::parts(&[u64::MAX]) > Seq::parts(&[u64::MAX - 1]));
    }
}
