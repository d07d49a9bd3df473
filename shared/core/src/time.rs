//! Reading source commit times without floating point.
//!
//! Sources write times as decimal seconds (`1428537600`, `1693997155.0`,
//! `1.635734407123456789E9`), as epoch numbers of an unnamed unit, or as RFC 3339 text. All of
//! them are read from their decimal text into whole milliseconds, never through an `f64`.
//!
//! Epoch numbers whose unit nothing names are read by magnitude: below 1e11 they are seconds, from
//! 1e11 milliseconds, from 1e14 microseconds and from 1e17 nanoseconds.

use chrono::{DateTime, Datelike, Timelike, Utc};

/// Parses decimal seconds, in integer, fractional or scientific notation, into milliseconds.
///
/// Digits past the millisecond are truncated. Returns `None` for text that is not a number or
/// is out of range.
pub fn seconds_text_to_ms(text: &str) -> Option<i64> {
    scaled_decimal(text, 3)
}

/// Parses an epoch number of unknown unit into milliseconds, by magnitude.
pub fn epoch_text_to_ms(text: &str) -> Option<i64> {
    let secs_scale = scaled_decimal(text, 0)?.unsigned_abs();
    let shift = if secs_scale >= 100_000_000_000_000_000 {
        -6
    } else if secs_scale >= 100_000_000_000_000 {
        -3
    } else if secs_scale >= 100_000_000_000 {
        0
    } else {
        3
    };
    scaled_decimal(text, shift)
}

/// Parses RFC 3339 text into milliseconds since the epoch.
pub fn rfc3339_to_ms(text: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc).timestamp_millis())
}

/// The UTC date (`YYYY-MM-DD`) and hour (`HH`) of a time in milliseconds, for partition keys.
pub fn partition(ms: i64) -> (String, String) {
    let t = DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or(DateTime::<Utc>::UNIX_EPOCH);
    (
        format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day()),
        format!("{:02}", t.hour()),
    )
}

/// Milliseconds as UTC RFC 3339 with millisecond precision, for envelopes and logs.
pub fn ms_to_rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads a decimal number (optionally signed, fractional, with an exponent) and returns it
/// multiplied by 10^`shift`, truncated toward zero. Exact: works on the digits, not on floats.
pub(crate) fn scaled(text: &str, shift: i32) -> Option<i64> {
    scaled_decimal(text, shift)
}

fn scaled_decimal(text: &str, shift: i32) -> Option<i64> {
    let text = text.trim();
    let (negative, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], body[i + 1..].parse::<i32>().ok()?),
        None => (body, 0),
    };
    let (int_part, frac_part) = match mantissa.find('.') {
        Some(i) => (&mantissa[..i], &mantissa[i + 1..]),
        None => (mantissa, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    if !int_part
        .bytes()
        .chain(frac_part.bytes())
        .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    // value = digits × 10^(exponent − frac_len + shift)
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    let power = exponent
        .checked_sub(i32::try_from(frac_part.len()).ok()?)?
        .checked_add(shift)?;
    let value: i64 = if digits.is_empty() {
        0
    } else if power >= 0 {
        let base: i64 = digits.parse().ok()?;
        base.checked_mul(10i64.checked_pow(u32::try_from(power).ok()?)?)?
    } else {
        let cut = usize::try_from(-power).ok()?;
        if cut >= digits.len() {
            0
        } else {
            digits[..digits.len() - cut].parse().ok()?
        }
    };
    Some(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_in_every_notation() {
        assert_eq!(seconds_text_to_ms("1428537600"), Some(1_428_537_600_000));
        assert_eq!(seconds_text_to_ms("1693997155.0"), Some(1_693_997_155_000));
        assert_eq!(
            seconds_text_to_ms("1795588531.458"),
            Some(1_795_588_531_458)
        );
        assert_eq!(
            seconds_text_to_ms("1.635734407123456789E9"),
            Some(1_635_734_407_123)
        );
        assert_eq!(seconds_text_to_ms("0"), Some(0));
        assert_eq!(seconds_text_to_ms("-1.5"), Some(-1500));
        for bad in ["", "abc", "1e", "1.2.3", "--1", "."] {
            assert_eq!(seconds_text_to_ms(bad), None, "{bad:?}");
        }
        assert_eq!(seconds_text_to_ms("1e400"), None);
    }

    #[test]
    fn epoch_unit_by_magnitude() {
        assert_eq!(epoch_text_to_ms("1731924555"), Some(1_731_924_555_000));
        assert_eq!(epoch_text_to_ms("1731924555370"), Some(1_731_924_555_370));
        assert_eq!(
            epoch_text_to_ms("1720740233012995"),
            Some(1_720_740_233_012)
        );
        assert_eq!(
            epoch_text_to_ms("1559033904863841257"),
            Some(1_559_033_904_863)
        );
    }

    #[test]
    fn rfc3339_with_offsets() {
        assert_eq!(
            rfc3339_to_ms("2026-01-01T00:00:00Z"),
            Some(1_767_225_600_000)
        );
        assert_eq!(
            rfc3339_to_ms("2026-01-01T01:00:00.5+01:00"),
            Some(1_767_225_600_500)
        );
        assert_eq!(rfc3339_to_ms("yesterday"), None);
    }

    #[test]
    fn partitions_are_utc_hours() {
        assert_eq!(
            partition(1_767_225_600_000 + 13 * 3_600_000),
            ("2026-01-01".to_owned(), "13".to_owned())
        );
    }
}
