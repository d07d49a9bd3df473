//! Reading source commit times without floating point.
//!
//! Sources write times as decimal seconds (`1428537600`, `1693997155.0`,
//! `1.635734407123456789E9`), as epoch numbers of an unnamed unit, or as RFC 3339 text. All of
//! them are read from their decimal text into whole milliseconds, never through an `f64`.
//!
//! Epoch numbers whose unit nothing names are read by magnitude: below 1e11 they are seconds, from
//! 1e11 milliseconds, from 1e14 microseconds and from 1e17 nanoseconds.

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Deserialize;

use crate::decimal::parse_decimal;

/// Parses decimal seconds, in integer, fractional or scientific notation, into milliseconds.
///
/// Digits past the millisecond are truncated. Returns `None` for text that is not a number or
/// is out of range.
pub fn seconds_text_to_ms(text: &str) -> Option<i64> {
    scaled_decimal(text, 3)
}

/// Parses an epoch number of unknown unit into milliseconds, by magnitude
/// ([`TimeUnit::by_magnitude`], the one rule typing uses too).
pub fn epoch_text_to_ms(text: &str) -> Option<i64> {
    let whole = scaled_decimal(text, 0)?.unsigned_abs();
    let digits = whole.checked_ilog10().map_or(0, |d| d as usize + 1);
    let unit = TimeUnit::by_magnitude(digits);
    scaled_decimal(text, 3 - i32::try_from(unit.fraction_digits()).unwrap_or(0))
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

/// The unit of an epoch number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum TimeUnit {
    /// Seconds.
    #[serde(rename = "s")]
    Seconds,
    /// Milliseconds.
    #[serde(rename = "ms")]
    Milliseconds,
    /// Microseconds.
    #[serde(rename = "us")]
    Microseconds,
    /// Nanoseconds.
    #[serde(rename = "ns")]
    Nanoseconds,
    /// Days, for dates (days since 1970-01-01).
    #[serde(rename = "days")]
    Days,
}

impl TimeUnit {
    /// Digits of a second this unit carries.
    pub(crate) fn fraction_digits(self) -> u32 {
        match self {
            Self::Seconds | Self::Days => 0,
            Self::Milliseconds => 3,
            Self::Microseconds => 6,
            Self::Nanoseconds => 9,
        }
    }

    /// The unit of an epoch number whose unit nothing names, by the digits of its whole part:
    /// seconds below 1e11, milliseconds from 1e11, microseconds from 1e14, nanoseconds from 1e17.
    pub fn by_magnitude(integer_digits: usize) -> Self {
        match integer_digits {
            0..=11 => Self::Seconds,
            12..=14 => Self::Milliseconds,
            15..=17 => Self::Microseconds,
            _ => Self::Nanoseconds,
        }
    }
}

/// `HH:MM:SS` with an optional fraction of up to 9 digits, kept as written; `24:00:00` allowed.
pub(crate) fn time_text(text: &str) -> Result<String, &'static str> {
    const BAD: &str = "not an HH:MM:SS time of day";
    let (hms, frac) = text.split_once('.').unwrap_or((text, ""));
    let parts: Vec<&str> = hms.split(':').collect();
    let [h, m, s] = parts.as_slice() else {
        return Err(BAD);
    };
    let num = |p: &str, max: u32| -> Result<u32, &'static str> {
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(BAD);
        }
        p.parse::<u32>().ok().filter(|v| *v <= max).ok_or(BAD)
    };
    let (h, m, s) = (num(h, 24)?, num(m, 59)?, num(s, 59)?);
    if frac.len() > 9
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (text.contains('.') && frac.is_empty())
    {
        return Err(BAD);
    }
    if h == 24 && ((m, s) != (0, 0) || frac.bytes().any(|b| b != b'0')) {
        return Err("past 24:00:00");
    }
    Ok(text.to_owned())
}

pub(crate) fn format_utc(t: DateTime<Utc>, fraction_digits: u32) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(30);
    if (0..=9999).contains(&t.year()) {
        let _ = write!(
            out,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour(),
            t.minute(),
            // A leap second is 59 with a second's worth of nanoseconds; chrono writes it as 60.
            t.second() + t.nanosecond() / 1_000_000_000
        );
    } else {
        // chrono writes a sign and more digits for years outside 0 to 9999.
        let _ = write!(out, "{}", t.format("%Y-%m-%dT%H:%M:%S"));
    }
    if fraction_digits > 0 {
        let digits = usize::try_from(fraction_digits.min(9)).unwrap_or(9);
        let nanos = format!("{:09}", t.timestamp_subsec_nanos());
        out.push('.');
        out.push_str(&nanos[..digits]);
    }
    out.push('Z');
    out
}

pub(crate) fn timestamp_text(text: &str, unit: Option<TimeUnit>) -> Result<String, &'static str> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        let frac = text
            .find('.')
            .map(|i| text[i + 1..].bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        return Ok(format_utc(
            t.with_timezone(&Utc),
            u32::try_from(frac).unwrap_or(9),
        ));
    }
    if parse_decimal(text).is_ok() {
        return epoch_timestamp(text, unit);
    }
    Err("not RFC 3339 with an offset, nor an epoch number")
}

/// An epoch number as UTC RFC 3339 text, in `unit` or, when none is named, by magnitude; the
/// fraction keeps the digits the number carries, up to nanoseconds.
pub fn epoch_timestamp(text: &str, unit: Option<TimeUnit>) -> Result<String, &'static str> {
    if unit == Some(TimeUnit::Days) {
        return Err("days are a unit of dates, not of timestamps");
    }
    let d = parse_decimal(text)?;
    let int_digits = usize::try_from(d.point.max(0)).unwrap_or(0);
    let unit = unit.unwrap_or_else(|| TimeUnit::by_magnitude(int_digits));
    let frac_in_text = text
        .trim()
        .split(['e', 'E'])
        .next()
        .and_then(|m| m.split_once('.'))
        .map_or(0, |(_, f)| f.len());
    let shift = 9 - unit.fraction_digits();
    let nanos_total: i64 = scaled(text.trim(), i32::try_from(shift).unwrap_or(9))
        .ok_or("outside the timestamp range")?;
    let secs = nanos_total.div_euclid(1_000_000_000);
    let nanos = u32::try_from(nanos_total.rem_euclid(1_000_000_000)).unwrap_or(0);
    let t = DateTime::<Utc>::from_timestamp(secs, nanos).ok_or("outside the timestamp range")?;
    let digits = unit.fraction_digits() + u32::try_from(frac_in_text).unwrap_or(0);
    Ok(format_utc(t, digits.min(9)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `format_utc` wrote through chrono's format strings, which it now writes directly.
    fn format_utc_by_chrono(t: DateTime<Utc>, fraction_digits: u32) -> String {
        let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
        if fraction_digits == 0 {
            return format!("{base}Z");
        }
        let nanos = format!("{:09}", t.timestamp_subsec_nanos());
        let digits = usize::try_from(fraction_digits.min(9)).unwrap_or(9);
        format!("{base}.{}Z", &nanos[..digits])
    }

    proptest::proptest! {
        #[test]
        fn timestamps_are_written_as_chrono_writes_them(
            secs in -70_000_000_000i64..300_000_000_000,
            nanos in 0u32..1_000_000_000,
            digits in 0u32..=9,
        ) {
            let t = DateTime::<Utc>::from_timestamp(secs, nanos).unwrap();
            proptest::prop_assert_eq!(format_utc(t, digits), format_utc_by_chrono(t, digits));
        }
    }

    #[test]
    fn a_leap_second_and_far_years_are_written_as_chrono_writes_them() {
        for text in [
            "2016-12-31T23:59:60.5Z",
            "2016-12-31T23:59:60Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc);
            for digits in [0, 3, 9] {
                assert_eq!(
                    format_utc(t, digits),
                    format_utc_by_chrono(t, digits),
                    "{text}"
                );
            }
        }
        let far = DateTime::<Utc>::from_timestamp(300_000_000_000, 0).unwrap();
        assert_eq!(format_utc(far, 0), format_utc_by_chrono(far, 0));
    }

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
