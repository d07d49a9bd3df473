//! Typing: turning a source value into the typed value a contract field asks for.
//!
//! Source values are DynamoDB attribute values (from stream images) or raw JSON (from app,
//! Debezium and DMS images). Both are read without a detour through `f64`: a DynamoDB `N` and a
//! JSON number literal keep their decimal text until the field's type decides what they become.
//!
//! The coercions are strict and documented (README, "Typing"):
//!
//! | type | accepts | stored as |
//! |---|---|---|
//! | `string` | a string | `S` |
//! | `int` | a number or a string of a number, whole and within `i64` (`5`, `"5"`, `5.0`, `5E2`) | `N` |
//! | `decimal` | a number or a string of a number, up to 38 significant digits, exactly | `N` |
//! | `float` | a number or a string of a number, finite | `N` (shortest round-trip text) |
//! | `bool` | a boolean | `BOOL` |
//! | `timestamp` | RFC 3339 text with an offset; epoch seconds, ms, µs or ns as a number or numeric string | `S`, UTC RFC 3339 with `Z`, the source's fraction digits (up to 9) |
//! | `date` | `YYYY-MM-DD` | `S` |
//! | `json` | anything | `S`, compact JSON |
//! | `binary` | DynamoDB `B`, or a string of strict base64 | `B` |
//! | `list<T>` | a list or a DynamoDB set; elements typed one by one (null elements stay `NULL`) | `L` |
//! | `set<T>` | a list or a DynamoDB set, non-empty; duplicates removed | `SS`, `NS` or `BS` |
//!
//! A null or absent value is "missing": the field's default applies, or a required field fails.
//! Epoch numbers whose unit neither the source nor the contract names are read by magnitude:
//! seconds below 1e11, milliseconds from 1e11, microseconds from 1e14, nanoseconds from 1e17.

mod json_out;

use std::fmt;

use base64::Engine;
use chrono::NaiveDate;
use serde_dynamo::AttributeValue;
use serde_json::value::RawValue;

pub use crate::decimal::{canonical_decimal, canonical_float, canonical_int};
use crate::field_type::FieldType;
use crate::logical::{self, Hint};
pub use crate::time::TimeUnit;
use crate::time::{epoch_timestamp, time_text, timestamp_text};
use crate::value::Node;
pub use crate::value::SrcRef;
pub use json_out::write_json;

/// Why a value does not fit its field. Names the path, the type expected and the kind of value
/// found; never the value itself, which may be personal data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeError {
    /// The field path, such as `total` or `tags[2]`.
    pub path: String,
    /// The type the contract asks for.
    pub expected: String,
    /// The kind of value found, such as `a string`.
    pub found: &'static str,
    /// What is wrong with it beyond its kind, if anything.
    pub detail: Option<&'static str>,
}

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}`: expected {}, found {}",
            self.path, self.expected, self.found
        )?;
        if let Some(d) = self.detail {
            write!(f, " ({d})")?;
        }
        Ok(())
    }
}

impl std::error::Error for TypeError {}

/// Types a source value for a field. `Ok(None)` means the value is null (missing).
pub fn coerce(
    value: SrcRef<'_>,
    ty: &FieldType,
    unit: Option<TimeUnit>,
    path: &str,
) -> Result<Option<AttributeValue>, TypeError> {
    coerce_hinted(value, ty, &Hint::unit(unit), path)
}

/// Types a source value for a field, reading logical values (Debezium decimals and times) as
/// the hint says. `Ok(None)` means the value is null (missing).
pub fn coerce_hinted(
    value: SrcRef<'_>,
    ty: &FieldType,
    hint: &Hint,
    path: &str,
) -> Result<Option<AttributeValue>, TypeError> {
    let unit = hint.unit;
    {
        let prepared = logical::prepare(value, ty, hint).map_err(|detail| TypeError {
            path: path.to_owned(),
            expected: ty.to_string(),
            found: value.node().map_or("an unreadable value", |n| n.kind()),
            detail: Some(detail),
        })?;
        if let Some(text) = prepared {
            let raw = RawValue::from_string(text).map_err(|_| TypeError {
                path: path.to_owned(),
                expected: ty.to_string(),
                found: "an unreadable value",
                detail: None,
            })?;
            return coerce_hinted(SrcRef::Json(&raw), ty, &Hint::default(), path);
        }
    }
    let node = value.node().map_err(|detail| TypeError {
        path: path.to_owned(),
        expected: ty.to_string(),
        found: "an unreadable value",
        detail: Some(detail),
    })?;
    if matches!(node, Node::Null) {
        return Ok(None);
    }
    let fail = |node: &Node<'_>, detail: Option<&'static str>| TypeError {
        path: path.to_owned(),
        expected: ty.to_string(),
        found: node.kind(),
        detail,
    };
    // An element's path is written only when it fails: its own path is empty while it is
    // typed, and nested elements prefix theirs on the way out (`tags[2]`, `m[1][0]`).
    let element = |i: usize, elem: &FieldType, item: SrcRef<'_>| {
        coerce(item, elem, unit, "").map_err(|mut e| {
            e.path = format!("{path}[{i}]{}", e.path);
            e
        })
    };
    let typed = match (ty, &node) {
        (FieldType::String, Node::Str(s)) => AttributeValue::S(s.to_string()),
        (FieldType::Int, Node::Num(t) | Node::Str(t)) => {
            AttributeValue::N(canonical_int(t).map_err(|d| fail(&node, Some(d)))?)
        }
        (FieldType::Decimal, Node::Num(t) | Node::Str(t)) => {
            AttributeValue::N(canonical_decimal(t).map_err(|d| {
                let bytes_like = matches!(node, Node::Str(_)) && d == "not a number" && looks_base64(t);
                fail(
                    &node,
                    Some(if bytes_like {
                        "not a number; if it is Kafka Connect Decimal bytes (base64) from an event without its schema, give the field a `scale`"
                    } else {
                        d
                    }),
                )
            })?)
        }
        (FieldType::Float, Node::Num(t) | Node::Str(t)) => {
            AttributeValue::N(canonical_float(t).map_err(|d| fail(&node, Some(d)))?)
        }
        (FieldType::Bool, Node::Bool(b)) => AttributeValue::Bool(*b),
        (FieldType::Timestamp, Node::Str(t)) => {
            AttributeValue::S(timestamp_text(t, unit).map_err(|d| fail(&node, Some(d)))?)
        }
        (FieldType::Timestamp, Node::Num(t)) => {
            AttributeValue::S(epoch_timestamp(t, unit).map_err(|d| fail(&node, Some(d)))?)
        }
        (FieldType::Time, Node::Str(t)) => {
            AttributeValue::S(time_text(t).map_err(|d| fail(&node, Some(d)))?)
        }
        (FieldType::Time, Node::Num(_)) => {
            return Err(fail(
                &node,
                Some("a time of day as a number needs the field's `unit` or the event's schema"),
            ))
        }
        (FieldType::Date, Node::Str(t)) => AttributeValue::S(
            NaiveDate::parse_from_str(t, "%Y-%m-%d")
                .map(|d| d.format("%Y-%m-%d").to_string())
                .map_err(|_| fail(&node, Some("not a YYYY-MM-DD date")))?,
        ),
        (FieldType::Json, _) => {
            // Room for a small object without growing on the way.
            let mut out = String::with_capacity(64);
            write_json(value, &mut out).map_err(|d| fail(&node, Some(d)))?;
            AttributeValue::S(out)
        }
        (FieldType::Binary, Node::Bin(b)) => AttributeValue::B(b.to_vec()),
        (FieldType::Binary, Node::Str(s)) => AttributeValue::B(
            base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .map_err(|_| fail(&node, Some("not strict base64")))?,
        ),
        (FieldType::List(elem), _) => {
            let items = elements(&node).ok_or_else(|| fail(&node, None))?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let typed = element(i, elem, item)?;
                out.push(typed.unwrap_or(AttributeValue::Null(true)));
            }
            AttributeValue::L(out)
        }
        (FieldType::Set(elem), _) => {
            let items = elements(&node).ok_or_else(|| fail(&node, None))?;
            if items.is_empty() {
                return Err(fail(
                    &node,
                    Some("empty; DynamoDB cannot store an empty set"),
                ));
            }
            let mut typed = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match element(i, elem, item)? {
                    Some(v) => typed.push(v),
                    None => {
                        return Err(TypeError {
                            path: format!("{path}[{i}]"),
                            expected: elem.to_string(),
                            found: "null",
                            detail: Some("a set cannot hold null"),
                        })
                    }
                }
            }
            set_of(typed)
        }
        _ => return Err(fail(&node, None)),
    };
    Ok(Some(typed))
}

/// Whether text could be padded standard base64 (as Connect Decimal bytes are written).
fn looks_base64(t: &str) -> bool {
    !t.is_empty()
        && t.len().is_multiple_of(4)
        && base64::engine::general_purpose::STANDARD
            .decode(t.as_bytes())
            .is_ok()
}

/// The elements of a list or a DynamoDB set, as source values.
fn elements<'a>(node: &Node<'a>) -> Option<Vec<SrcRef<'a>>> {
    match node {
        Node::List(items) => Some(items.clone()),
        Node::StrSet(s) => Some(s.iter().map(|m| SrcRef::Str(m)).collect()),
        Node::NumSet(n) => Some(n.iter().map(|m| SrcRef::Num(m)).collect()),
        Node::BinSet(b) => Some(b.iter().map(|m| SrcRef::Bin(m)).collect()),
        _ => None,
    }
}

/// Builds the DynamoDB set for typed members, deduplicated and sorted.
fn set_of(items: Vec<AttributeValue>) -> AttributeValue {
    fn sorted_unique<T: Ord>(mut v: Vec<T>) -> Vec<T> {
        v.sort_unstable();
        v.dedup();
        v
    }
    let mut strings = Vec::new();
    let mut numbers = Vec::new();
    let mut binaries = Vec::new();
    for item in items {
        match item {
            AttributeValue::S(s) => strings.push(s),
            AttributeValue::N(n) => numbers.push(n),
            AttributeValue::B(b) => binaries.push(b),
            _ => {}
        }
    }
    if !numbers.is_empty() {
        AttributeValue::Ns(sorted_unique(numbers))
    } else if !binaries.is_empty() {
        AttributeValue::Bs(sorted_unique(binaries))
    } else {
        AttributeValue::Ss(sorted_unique(strings))
    }
}

/// Types a contract default, written as a JSON-like value in the contract file.
pub fn coerce_json(
    value: &serde_json::Value,
    ty: &FieldType,
    unit: Option<TimeUnit>,
) -> Result<Option<AttributeValue>, String> {
    let raw = serde_json::value::to_raw_value(value).map_err(|e| e.to_string())?;
    coerce(SrcRef::Json(&raw), ty, unit, "default").map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    fn ty(t: &str) -> FieldType {
        FieldType::parse(t).unwrap()
    }

    fn from_json(text: &str, t: &str) -> Result<Option<AttributeValue>, TypeError> {
        coerce(SrcRef::Json(&json(text)), &ty(t), None, "f")
    }

    fn from_ddb(v: &AttributeValue, t: &str) -> Result<Option<AttributeValue>, TypeError> {
        coerce(SrcRef::Ddb(v), &ty(t), None, "f")
    }

    fn n(s: &str) -> Option<AttributeValue> {
        Some(AttributeValue::N(s.into()))
    }
    fn s(v: &str) -> Option<AttributeValue> {
        Some(AttributeValue::S(v.into()))
    }

    #[test]
    fn strings() {
        assert_eq!(from_json(r#""héllo""#, "string").unwrap(), s("héllo"));
        assert_eq!(
            from_ddb(&AttributeValue::S("x".into()), "string").unwrap(),
            s("x")
        );
        let e = from_json("5", "string").unwrap_err();
        assert_eq!(e.to_string(), "`f`: expected string, found a number");
    }

    #[test]
    fn ints_accept_whole_numbers_in_numbers_and_strings() {
        assert_eq!(from_json("5", "int").unwrap(), n("5"));
        assert_eq!(from_json(r#""-42""#, "int").unwrap(), n("-42"));
        assert_eq!(from_json("5.0", "int").unwrap(), n("5"));
        assert_eq!(from_json("5E2", "int").unwrap(), n("500"));
        assert_eq!(
            from_ddb(&AttributeValue::N("0100".into()), "int").unwrap(),
            n("100")
        );
        assert_eq!(
            from_json("9223372036854775807", "int").unwrap(),
            n("9223372036854775807")
        );
        for (bad, detail) in [
            ("5.5", "not a whole number"),
            ("9223372036854775808", "outside the int range"),
            ("1E30", "outside the int range"),
            (r#""five""#, "not a number"),
        ] {
            let e = from_json(bad, "int").unwrap_err();
            assert_eq!(e.detail, Some(detail), "{bad}");
        }
        assert_eq!(from_json("true", "int").unwrap_err().found, "a boolean");
    }

    #[test]
    fn decimals_keep_every_digit() {
        let big = "12345678901234567890.123456789012345678";
        assert_eq!(from_json(big, "decimal").unwrap(), n(big));
        assert_eq!(from_json(&format!("\"{big}\""), "decimal").unwrap(), n(big));
        assert_eq!(
            from_ddb(&AttributeValue::N("1E+2".into()), "decimal").unwrap(),
            n("100")
        );
        assert_eq!(from_json("1.50", "decimal").unwrap(), n("1.5"));
        assert_eq!(from_json("-0.000", "decimal").unwrap(), n("0"));
        assert_eq!(from_json("-0.0012e-2", "decimal").unwrap(), n("-0.000012"));
        assert_eq!(
            from_json("0.1", "decimal").unwrap(),
            n("0.1"),
            "never an f64"
        );
        let e = from_json(&"1".repeat(39), "decimal").unwrap_err();
        assert_eq!(
            e.detail,
            Some("more than 38 significant digits, which DynamoDB cannot store")
        );
        assert!(from_json("1E+200", "decimal").is_err());
        assert!(from_json("1E-200", "decimal").is_err());
        assert!(from_json(r#""1,5""#, "decimal").is_err());
    }

    #[test]
    fn floats_are_finite_and_shortest() {
        assert_eq!(from_json("0.1", "float").unwrap(), n("0.1"));
        assert_eq!(from_json("1e3", "float").unwrap(), n("1000"));
        assert_eq!(from_json(r#""2.5""#, "float").unwrap(), n("2.5"));
        assert_eq!(
            from_json("0.30000000000000004", "float").unwrap(),
            n("0.30000000000000004")
        );
        assert!(from_json(r#""NaN""#, "float").is_err());
        assert!(from_json(r#""inf""#, "float").is_err());
        assert!(from_json("1e400", "float").is_err());
    }

    #[test]
    fn bools_are_booleans_only() {
        assert_eq!(
            from_json("true", "bool").unwrap(),
            Some(AttributeValue::Bool(true))
        );
        assert_eq!(
            from_ddb(&AttributeValue::Bool(false), "bool").unwrap(),
            Some(AttributeValue::Bool(false))
        );
        assert_eq!(
            from_json(r#""true""#, "bool").unwrap_err().found,
            "a string"
        );
        assert_eq!(from_json("1", "bool").unwrap_err().found, "a number");
    }

    #[test]
    fn timestamps_from_text_and_epochs() {
        let cases = [
            (r#""2026-11-25T08:00:00+01:00""#, "2026-11-25T07:00:00Z"),
            (
                r#""2026-11-25T07:00:00.123456Z""#,
                "2026-11-25T07:00:00.123456Z",
            ),
            (
                r#""2026-11-25T07:00:00.123456789-00:30""#,
                "2026-11-25T07:30:00.123456789Z",
            ),
            ("1795590000", "2026-11-25T07:00:00Z"),
            ("1795590000.5", "2026-11-25T07:00:00.5Z"),
            ("1795590000123", "2026-11-25T07:00:00.123Z"),
            (r#""1795590000123""#, "2026-11-25T07:00:00.123Z"),
            ("1795590000123456", "2026-11-25T07:00:00.123456Z"),
            ("1795590000123456789", "2026-11-25T07:00:00.123456789Z"),
            ("-86400", "1969-12-31T00:00:00Z"),
        ];
        for (input, want) in cases {
            assert_eq!(from_json(input, "timestamp").unwrap(), s(want), "{input}");
        }
        assert_eq!(
            from_ddb(&AttributeValue::N("1795590000".into()), "timestamp").unwrap(),
            s("2026-11-25T07:00:00Z")
        );
        // A contract unit overrides the magnitude rule.
        let v = json("1795590000");
        let got = coerce(
            SrcRef::Json(&v),
            &ty("timestamp"),
            Some(TimeUnit::Milliseconds),
            "f",
        )
        .unwrap();
        assert_eq!(
            got,
            s("1970-01-21T18:46:30.000Z"),
            "milliseconds carry three digits"
        );
        for bad in [
            r#""2026-11-25 07:00""#,
            r#""yesterday""#,
            r#""2026-11-25T07:00:00""#,
            "true",
        ] {
            assert!(from_json(bad, "timestamp").is_err(), "{bad}");
        }
    }

    #[test]
    fn times_of_day() {
        assert_eq!(from_json(r#""12:34:56""#, "time").unwrap(), s("12:34:56"));
        assert_eq!(
            from_json(r#""23:59:59.999999""#, "time").unwrap(),
            s("23:59:59.999999")
        );
        assert_eq!(from_json(r#""24:00:00""#, "time").unwrap(), s("24:00:00"));
        for bad in [
            r#""24:00:01""#,
            r#""12:60:00""#,
            r#""1:02:03""#,
            r#""12:34""#,
            r#""12:34:56.""#,
            r#""12:34:56.1234567890""#,
        ] {
            assert!(from_json(bad, "time").is_err(), "{bad}");
        }
        let e = from_json("45296", "time").unwrap_err();
        assert!(e.detail.unwrap().contains("needs the field's `unit`"));
        let t = coerce(
            SrcRef::Json(&json("45296000")),
            &ty("time"),
            Some(TimeUnit::Microseconds),
            "f",
        );
        assert_eq!(t.unwrap(), s("00:00:45.296000"));
    }

    #[test]
    fn dates() {
        assert_eq!(
            from_json(r#""2026-02-28""#, "date").unwrap(),
            s("2026-02-28")
        );
        let e = from_json(r#""2026-02-30""#, "date").unwrap_err();
        assert_eq!(e.detail, Some("not a YYYY-MM-DD date"));
        assert!(from_json("20260228", "date").is_err());
    }

    #[test]
    fn json_keeps_literals_and_converts_dynamodb_values() {
        assert_eq!(
            from_json(r#"{"a": [1.50, "x"], "b": null}"#, "json").unwrap(),
            s(r#"{"a":[1.50,"x"],"b":null}"#)
        );
        let m = AttributeValue::M(
            [
                ("n".to_owned(), AttributeValue::N("1.50".into())),
                ("b".to_owned(), AttributeValue::B(vec![0, 1])),
                ("s".to_owned(), AttributeValue::Ss(vec!["x".into()])),
            ]
            .into_iter()
            .collect(),
        );
        assert_eq!(
            from_ddb(&m, "json").unwrap(),
            s(r#"{"b":"AAE=","n":1.50,"s":["x"]}"#)
        );
    }

    #[test]
    fn binaries_from_dynamodb_and_strict_base64() {
        assert_eq!(
            from_ddb(&AttributeValue::B(vec![1, 2]), "binary").unwrap(),
            Some(AttributeValue::B(vec![1, 2]))
        );
        assert_eq!(
            from_json(r#""AAE=""#, "binary").unwrap(),
            Some(AttributeValue::B(vec![0, 1]))
        );
        assert_eq!(
            from_json(r#""AAE""#, "binary").unwrap_err().detail,
            Some("not strict base64")
        );
        assert_eq!(from_json("12", "binary").unwrap_err().found, "a number");
    }

    #[test]
    fn lists_type_each_element_and_name_the_failing_one() {
        assert_eq!(
            from_json("[1, null, \"3\"]", "list<int>").unwrap(),
            Some(AttributeValue::L(vec![
                AttributeValue::N("1".into()),
                AttributeValue::Null(true),
                AttributeValue::N("3".into())
            ]))
        );
        let e = from_json(r#"[1, "x"]"#, "list<int>").unwrap_err();
        assert_eq!(e.path, "f[1]");
        let nested = from_json("[[1],[2,3]]", "list<list<decimal>>")
            .unwrap()
            .unwrap();
        assert!(matches!(nested, AttributeValue::L(ref l) if l.len() == 2));
        let e = from_json(r#"[[1],[2,"x"]]"#, "list<list<int>>").unwrap_err();
        assert_eq!(e.path, "f[1][1]", "a nested element's path");
        let e = from_json(r#"[["a"],["b",null]]"#, "list<set<string>>").unwrap_err();
        assert_eq!(e.path, "f[1][1]");
        assert_eq!(
            from_json(r#"{"a":1}"#, "list<int>").unwrap_err().found,
            "a map"
        );
    }

    #[test]
    fn sets_from_lists_and_dynamodb_sets() {
        assert_eq!(
            from_json(r#"["b","a","b"]"#, "set<string>").unwrap(),
            Some(AttributeValue::Ss(vec!["a".into(), "b".into()]))
        );
        assert_eq!(
            from_ddb(
                &AttributeValue::Ns(vec!["2.50".into(), "1".into()]),
                "set<decimal>"
            )
            .unwrap(),
            Some(AttributeValue::Ns(vec!["1".into(), "2.5".into()]))
        );
        assert_eq!(
            from_json(r#"["2.0", 10, 2, "1"]"#, "set<int>").unwrap(),
            Some(AttributeValue::Ns(vec![
                "1".into(),
                "10".into(),
                "2".into()
            ])),
            "typed first, then deduplicated and sorted as DynamoDB's text"
        );
        assert_eq!(
            from_ddb(&AttributeValue::Ss(vec!["x".into()]), "list<string>").unwrap(),
            Some(AttributeValue::L(vec![AttributeValue::S("x".into())]))
        );
        assert_eq!(
            from_ddb(&AttributeValue::Bs(vec![vec![1]]), "set<binary>").unwrap(),
            Some(AttributeValue::Bs(vec![vec![1]]))
        );
        let e = from_json("[]", "set<string>").unwrap_err();
        assert_eq!(e.detail, Some("empty; DynamoDB cannot store an empty set"));
        let e = from_ddb(&AttributeValue::Ss(vec![]), "set<string>").unwrap_err();
        assert!(e.to_string().contains("empty"), "{e}");
        assert_eq!(
            from_json(r#"["a", null]"#, "set<string>").unwrap_err().path,
            "f[1]"
        );
        assert_eq!(
            from_json(r#"["a", 1]"#, "set<string>").unwrap_err().path,
            "f[1]"
        );
    }

    #[test]
    fn null_is_missing_for_every_type() {
        for t in [
            "string",
            "int",
            "decimal",
            "timestamp",
            "json",
            "list<int>",
            "set<string>",
        ] {
            assert_eq!(from_json("null", t).unwrap(), None, "{t}");
            assert_eq!(
                from_ddb(&AttributeValue::Null(true), t).unwrap(),
                None,
                "{t}"
            );
        }
    }

    #[test]
    fn members_of_maps() {
        let v = json(r#"{"a":{"b":1.50}}"#);
        let b = SrcRef::Json(&v)
            .member("a")
            .and_then(|a| a.member("b"))
            .unwrap();
        assert_eq!(coerce(b, &ty("decimal"), None, "a.b").unwrap(), n("1.5"));
        assert!(SrcRef::Json(&v).member("z").is_none());
        let m = AttributeValue::M(
            [("x".to_owned(), AttributeValue::S("y".into()))]
                .into_iter()
                .collect(),
        );
        assert!(SrcRef::Ddb(&m).member("x").is_some());
        assert!(SrcRef::Ddb(&AttributeValue::S("x".into()))
            .member("x")
            .is_none());
    }
}
