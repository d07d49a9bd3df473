//! What the peers print on their `check:` line, computed from sluice's typed rows: the count of
//! rows and tombstones, and over the live rows `sum(amount)`, `sum(qty)`, how many are `paid`,
//! how many `tags` they hold, and the earliest and latest `created_at`.
//!
//! The orders contract of `bench/peers/contract-orders.yaml` names these fields; rows of other
//! shapes are counted, and their missing fields are left out of the sums.

use std::collections::BTreeMap;

use serde_dynamo::AttributeValue;
use sluice_core::row::{Item, DELETED_ATTR};

/// The sums and counts of a set of typed rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Check {
    /// Rows stored, tombstones included.
    pub rows: usize,
    /// Rows that are tombstones (`_deleted = true`).
    pub tombstones: usize,
    /// The sum of `amount` over live rows, exact.
    pub sum_amount: DecimalSum,
    /// The sum of `qty` over live rows.
    pub sum_qty: i128,
    /// Live rows whose `paid` is true.
    pub paid: usize,
    /// Elements of `tags` over live rows.
    pub tags: usize,
    /// The earliest `created_at` of a live row, as stored.
    pub created_at_min: Option<String>,
    /// The latest `created_at` of a live row, as stored.
    pub created_at_max: Option<String>,
    /// Numbers that could not be summed (not plain decimals): a bug to look at, never ignored.
    pub unreadable: usize,
}

impl Check {
    /// The check of the rows of a typed-table store, by key.
    pub fn of_rows(rows: &BTreeMap<String, Item>) -> Self {
        let mut c = Self::default();
        let mut earliest: Option<(Instant, &str)> = None;
        let mut latest: Option<(Instant, &str)> = None;
        for item in rows.values() {
            c.rows += 1;
            if matches!(item.get(DELETED_ATTR), Some(AttributeValue::Bool(true))) {
                c.tombstones += 1;
                continue;
            }
            if let Some(AttributeValue::N(n)) = item.get("amount") {
                if !c.sum_amount.add(n) {
                    c.unreadable += 1;
                }
            }
            if let Some(AttributeValue::N(n)) = item.get("qty") {
                match n.parse::<i128>() {
                    Ok(q) => c.sum_qty += q,
                    Err(_) => c.unreadable += 1,
                }
            }
            if matches!(item.get("paid"), Some(AttributeValue::Bool(true))) {
                c.paid += 1;
            }
            if let Some(AttributeValue::Ss(tags)) = item.get("tags") {
                c.tags += tags.len();
            }
            if let Some(AttributeValue::S(ts)) = item.get("created_at") {
                let Some(at) = Instant::of(ts) else {
                    c.unreadable += 1;
                    continue;
                };
                if earliest.as_ref().is_none_or(|(e, _)| at < *e) {
                    earliest = Some((at.clone(), ts));
                }
                if latest.as_ref().is_none_or(|(l, _)| at > *l) {
                    latest = Some((at, ts));
                }
            }
        }
        c.created_at_min = earliest.map(|(_, s)| s.to_owned());
        c.created_at_max = latest.map(|(_, s)| s.to_owned());
        c
    }

    /// As JSON, numbers that may be large or exact as strings.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rows": self.rows,
            "tombstones": self.tombstones,
            "live": self.rows - self.tombstones,
            "sum_amount": self.sum_amount.to_string(),
            "sum_qty": self.sum_qty.to_string(),
            "paid": self.paid,
            "tags": self.tags,
            "created_at_min": self.created_at_min,
            "created_at_max": self.created_at_max,
            "unreadable": self.unreadable,
        })
    }
}

/// An exact sum of plain decimal texts (`-12.345`), as DynamoDB's canonical numbers are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecimalSum {
    /// The sum times `10^scale`.
    units: i128,
    /// Digits after the point.
    scale: u32,
}

impl DecimalSum {
    /// Adds a plain decimal; `false` (and nothing added) for text that is not one, or a sum
    /// that would not fit.
    pub fn add(&mut self, text: &str) -> bool {
        let (negative, digits) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !plain(int) || !plain(frac) {
            return false;
        }
        let Ok(frac_scale) = u32::try_from(frac.len()) else {
            return false;
        };
        let Ok(mut value) = format!("{int}{frac}").parse::<i128>() else {
            return false;
        };
        if negative {
            value = -value;
        }
        let scale = self.scale.max(frac_scale);
        let rescale = |v: i128, from: u32| {
            10i128
                .checked_pow(scale - from)
                .and_then(|f| v.checked_mul(f))
        };
        match (rescale(self.units, self.scale), rescale(value, frac_scale)) {
            (Some(a), Some(b)) => match a.checked_add(b) {
                Some(sum) => {
                    self.units = sum;
                    self.scale = scale;
                    true
                }
                None => false,
            },
            _ => false,
        }
    }
}

impl std::fmt::Display for DecimalSum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sign = if self.units < 0 { "-" } else { "" };
        let digits = self.units.unsigned_abs().to_string();
        let scale = usize::try_from(self.scale).unwrap_or(0);
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

/// An RFC 3339 UTC timestamp as sluice stores one (`2026-11-24T10:00:00.5Z`), ordered by time:
/// the stored text keeps the fraction's digits, so text order is not time order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Instant {
    /// `YYYY-MM-DDTHH:MM:SS`.
    seconds: String,
    /// Nanoseconds.
    nanos: u32,
}

impl Instant {
    fn of(text: &str) -> Option<Self> {
        let body = text.strip_suffix('Z')?;
        let (seconds, frac) = body.split_once('.').unwrap_or((body, ""));
        if seconds.len() != 19 || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let nanos = format!("{frac:0<9}").parse().ok()?;
        Some(Self {
            seconds: seconds.to_owned(),
            nanos,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_sums_are_exact_across_scales() {
        let mut s = DecimalSum::default();
        assert!(s.add("12.5"));
        assert!(s.add("0.25"));
        assert!(s.add("-3"));
        assert_eq!(s.to_string(), "9.75");
        assert!(!s.add("n/a"));
        assert!(!s.add("1e3"));
        assert!(!s.add(""));
        assert_eq!(s.to_string(), "9.75", "nothing added by a refused text");
        let mut small = DecimalSum::default();
        assert!(small.add("0.001"));
        assert_eq!(small.to_string(), "0.001");
        assert_eq!(DecimalSum::default().to_string(), "0");
    }

    #[test]
    fn timestamps_order_by_time_not_text() {
        let a = Instant::of("2026-11-29T04:35:05.031Z").unwrap();
        let b = Instant::of("2026-11-29T04:35:05Z").unwrap();
        let c = Instant::of("2026-11-29T04:35:05.5Z").unwrap();
        assert!(b < a && a < c);
        assert!(Instant::of("2026-11-29T04:35:05+01:00").is_none());
    }

    #[test]
    fn live_rows_are_summed_and_tombstones_counted() {
        let live = |amount: &str, ts: &str| -> Item {
            [
                ("amount", AttributeValue::N(amount.into())),
                ("qty", AttributeValue::N("2".into())),
                ("paid", AttributeValue::Bool(true)),
                ("tags", AttributeValue::Ss(vec!["a".into(), "b".into()])),
                ("created_at", AttributeValue::S(ts.into())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
        };
        let dead: Item = [(DELETED_ATTR.to_owned(), AttributeValue::Bool(true))]
            .into_iter()
            .collect();
        let rows: BTreeMap<String, Item> = [
            ("o/1".to_owned(), live("1.50", "2026-11-02T00:00:00.5Z")),
            ("o/2".to_owned(), live("2", "2026-11-02T00:00:00Z")),
            ("o/3".to_owned(), dead),
        ]
        .into_iter()
        .collect();
        let c = Check::of_rows(&rows);
        assert_eq!((c.rows, c.tombstones, c.paid, c.tags), (3, 1, 2, 4));
        assert_eq!((c.sum_amount.to_string(), c.sum_qty), ("3.50".into(), 4));
        assert_eq!(c.created_at_min.as_deref(), Some("2026-11-02T00:00:00Z"));
        assert_eq!(c.created_at_max.as_deref(), Some("2026-11-02T00:00:00.5Z"));
        assert_eq!(c.to_json()["live"], 2);
    }
}
