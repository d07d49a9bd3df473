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

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use base64::Engine;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use serde_dynamo::AttributeValue;
use serde_json::value::RawValue;

use crate::contract::FieldType;
use crate::logical::{self, Hint};

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
    fn fraction_digits(self) -> u32 {
        match self {
            Self::Seconds | Self::Days => 0,
            Self::Milliseconds => 3,
            Self::Microseconds => 6,
            Self::Nanoseconds => 9,
        }
    }

    /// The unit of an epoch number by its magnitude.
    fn by_magnitude(integer_digits: usize) -> Self {
        match integer_digits {
            0..=11 => Self::Seconds,
            12..=14 => Self::Milliseconds,
            15..=17 => Self::Microseconds,
            _ => Self::Nanoseconds,
        }
    }
}

/// A value in a source image.
#[derive(Debug, Clone, Copy)]
pub enum SrcRef<'a> {
    /// A DynamoDB attribute value.
    Ddb(&'a AttributeValue),
    /// A raw JSON value.
    Json(&'a RawValue),
    /// A member of a DynamoDB string set.
    Str(&'a str),
    /// A member of a DynamoDB number set, as decimal text.
    Num(&'a str),
    /// A member of a DynamoDB binary set.
    Bin(&'a [u8]),
}

/// One level of a source value, seen uniformly.
enum Node<'a> {
    Null,
    Bool(bool),
    Num(Cow<'a, str>),
    Str(Cow<'a, str>),
    Bin(&'a [u8]),
    List(Vec<SrcRef<'a>>),
    Map,
    StrSet(&'a [String]),
    NumSet(&'a [String]),
    BinSet(&'a [Vec<u8>]),
}

impl Node<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Self::Null => "null",
            Self::Bool(_) => "a boolean",
            Self::Num(_) => "a number",
            Self::Str(_) => "a string",
            Self::Bin(_) => "binary",
            Self::List(_) => "a list",
            Self::Map => "a map",
            Self::StrSet(_) => "a string set",
            Self::NumSet(_) => "a number set",
            Self::BinSet(_) => "a binary set",
        }
    }
}

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

impl<'a> SrcRef<'a> {
    fn node(self) -> Result<Node<'a>, &'static str> {
        match self {
            Self::Ddb(v) => Ok(match v {
                AttributeValue::Null(_) => Node::Null,
                AttributeValue::Bool(b) => Node::Bool(*b),
                AttributeValue::N(n) => Node::Num(Cow::Borrowed(n)),
                AttributeValue::S(s) => Node::Str(Cow::Borrowed(s)),
                AttributeValue::B(b) => Node::Bin(b),
                AttributeValue::L(l) => Node::List(l.iter().map(SrcRef::Ddb).collect()),
                AttributeValue::M(_) => Node::Map,
                AttributeValue::Ss(s) => Node::StrSet(s),
                AttributeValue::Ns(n) => Node::NumSet(n),
                AttributeValue::Bs(b) => Node::BinSet(b),
            }),
            Self::Str(s) => Ok(Node::Str(Cow::Borrowed(s))),
            Self::Num(n) => Ok(Node::Num(Cow::Borrowed(n))),
            Self::Bin(b) => Ok(Node::Bin(b)),
            Self::Json(raw) => {
                let text = raw.get();
                match text.as_bytes().first() {
                    Some(b'n') => Ok(Node::Null),
                    Some(b't') => Ok(Node::Bool(true)),
                    Some(b'f') => Ok(Node::Bool(false)),
                    Some(b'"') => serde_json::from_str::<String>(text)
                        .map(|s| Node::Str(Cow::Owned(s)))
                        .map_err(|_| "a string that is not valid Unicode"),
                    Some(b'[') => serde_json::from_str::<Vec<&RawValue>>(text)
                        .map(|v| Node::List(v.into_iter().map(SrcRef::Json).collect()))
                        .map_err(|_| "unreadable JSON"),
                    Some(b'{') => Ok(Node::Map),
                    Some(_) => Ok(Node::Num(Cow::Borrowed(text))),
                    None => Err("empty JSON"),
                }
            }
        }
    }

    /// The kind of the value, such as `a number` or `a string`, for messages.
    pub fn kind(self) -> &'static str {
        self.node().map_or("an unreadable value", |n| n.kind())
    }

    /// Whether the value is null.
    pub fn is_null(self) -> bool {
        matches!(self.node(), Ok(Node::Null))
    }

    /// The member `name` of a map value, if this is a map that has it.
    pub fn member(self, name: &str) -> Option<SrcRef<'a>> {
        match self {
            Self::Ddb(AttributeValue::M(m)) => m.get(name).map(SrcRef::Ddb),
            Self::Json(raw) if raw.get().starts_with('{') => {
                let entries = serde_json::from_str::<MapEntries<'a>>(raw.get()).ok()?.0;
                entries
                    .into_iter()
                    .find(|(k, _)| k.0 == name)
                    .map(|(_, v)| SrcRef::Json(v))
            }
            _ => None,
        }
    }
}

/// A JSON object's entries in order, keys borrowed where they have no escapes.
struct MapEntries<'a>(Vec<(KeyText<'a>, &'a RawValue)>);

#[derive(Deserialize)]
struct KeyText<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for MapEntries<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for V<'a> {
            type Value = MapEntries<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Self::Value, M::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<KeyText<'de>, &'de RawValue>()? {
                    out.push((k, v));
                }
                Ok(MapEntries(out))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
    }
}

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
            let mut out = String::new();
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
                let typed = coerce(item, elem, unit, &format!("{path}[{i}]"))?;
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
                let p = format!("{path}[{i}]");
                match coerce(item, elem, unit, &p)? {
                    Some(v) => typed.push(v),
                    None => {
                        return Err(TypeError {
                            path: p,
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
    let mut strings = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    let mut binaries = BTreeSet::new();
    for item in items {
        match item {
            AttributeValue::S(s) => {
                strings.insert(s);
            }
            AttributeValue::N(n) => {
                numbers.insert(n);
            }
            AttributeValue::B(b) => {
                binaries.insert(b);
            }
            _ => {}
        }
    }
    if !numbers.is_empty() {
        AttributeValue::Ns(numbers.into_iter().collect())
    } else if !binaries.is_empty() {
        AttributeValue::Bs(binaries.into_iter().collect())
    } else {
        AttributeValue::Ss(strings.into_iter().collect())
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

/// Writes a source value as compact JSON. DynamoDB values map to JSON naturally: `N` becomes a
/// number literal with its exact text, `B` base64 text, sets arrays.
pub fn write_json(value: SrcRef<'_>, out: &mut String) -> Result<(), &'static str> {
    match value {
        SrcRef::Json(raw) => {
            out.push_str(&crate::json::compact_raw(raw));
            Ok(())
        }
        SrcRef::Ddb(v) => {
            write_ddb_json(v, out);
            Ok(())
        }
        SrcRef::Str(s) => {
            push_json_string(s, out);
            Ok(())
        }
        SrcRef::Num(n) => {
            out.push_str(n);
            Ok(())
        }
        SrcRef::Bin(b) => {
            push_json_string(&base64::engine::general_purpose::STANDARD.encode(b), out);
            Ok(())
        }
    }
}

fn push_json_string(s: &str, out: &mut String) {
    // Serialising a str to JSON cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

fn write_ddb_json(v: &AttributeValue, out: &mut String) {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    match v {
        AttributeValue::Null(_) => out.push_str("null"),
        AttributeValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        AttributeValue::N(n) => out.push_str(n),
        AttributeValue::S(s) => push_json_string(s, out),
        AttributeValue::B(b) => push_json_string(&b64(b), out),
        AttributeValue::L(l) => {
            out.push('[');
            for (i, item) in l.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ddb_json(item, out);
            }
            out.push(']');
        }
        AttributeValue::M(m) => {
            let sorted: BTreeMap<&String, &AttributeValue> = m.iter().collect();
            out.push('{');
            for (i, (k, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_string(k, out);
                out.push(':');
                write_ddb_json(item, out);
            }
            out.push('}');
        }
        AttributeValue::Ss(s) => {
            let items: Vec<String> = s
                .iter()
                .map(|x| serde_json::to_string(x).unwrap_or_default())
                .collect();
            out.push_str(&format!("[{}]", items.join(",")));
        }
        AttributeValue::Ns(n) => out.push_str(&format!("[{}]", n.join(","))),
        AttributeValue::Bs(b) => {
            let items: Vec<String> = b.iter().map(|x| format!("\"{}\"", b64(x))).collect();
            out.push_str(&format!("[{}]", items.join(",")));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

/// A decimal number's parts: sign, significant digits (no leading or trailing zeros), and the
/// position of the decimal point relative to the first digit (`value = 0.DIGITS × 10^point`).
struct Decimal {
    negative: bool,
    digits: String,
    point: i64,
}

/// Whether text is a decimal number (`-12.5E3`), of any size.
pub(crate) fn is_number(text: &str) -> bool {
    parse_decimal(text).is_ok()
}

fn parse_decimal(text: &str) -> Result<Decimal, &'static str> {
    let t = text.trim();
    let (negative, body) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        Some(_) => (false, t),
        None => return Err("empty"),
    };
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (
            &body[..i],
            body[i + 1..].parse::<i64>().map_err(|_| "not a number")?,
        ),
        None => (body, 0),
    };
    let (int_part, frac_part) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if (int_part.is_empty() && frac_part.is_empty())
        || !int_part
            .bytes()
            .chain(frac_part.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return Err("not a number");
    }
    let all = format!("{int_part}{frac_part}");
    let leading = all.len() - all.trim_start_matches('0').len();
    let digits = all.trim_matches('0').to_owned();
    let int_len = i64::try_from(int_part.len()).map_err(|_| "too long")?;
    let lead = i64::try_from(leading).map_err(|_| "too long")?;
    let point = int_len - lead + exponent;
    Ok(Decimal {
        negative: negative && !digits.is_empty(),
        digits,
        point,
    })
}

fn plain(d: &Decimal) -> String {
    if d.digits.is_empty() {
        return "0".into();
    }
    let mut s = String::new();
    if d.negative {
        s.push('-');
    }
    let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
    if d.point <= 0 {
        s.push_str("0.");
        for _ in 0..(-d.point) {
            s.push('0');
        }
        s.push_str(&d.digits);
    } else if d.point >= len {
        s.push_str(&d.digits);
        for _ in 0..(d.point - len) {
            s.push('0');
        }
    } else {
        let cut = usize::try_from(d.point).unwrap_or(0);
        s.push_str(&d.digits[..cut]);
        s.push('.');
        s.push_str(&d.digits[cut..]);
    }
    s
}

/// The canonical text of an exact decimal that DynamoDB can store: at most 38 significant
/// digits, magnitude between 1E-130 and 1E+126. No exponent, no insignificant zeros.
pub fn canonical_decimal(text: &str) -> Result<String, &'static str> {
    let d = parse_decimal(text)?;
    if d.digits.len() > 38 {
        return Err("more than 38 significant digits, which DynamoDB cannot store");
    }
    if !d.digits.is_empty() && !(-129..=126).contains(&d.point) {
        return Err("outside DynamoDB's number range (1E-130 to 1E+126)");
    }
    Ok(plain(&d))
}

/// The canonical text of a whole number within `i64`.
pub fn canonical_int(text: &str) -> Result<String, &'static str> {
    let d = parse_decimal(text)?;
    let len = i64::try_from(d.digits.len()).unwrap_or(i64::MAX);
    if d.point < len {
        return Err("not a whole number");
    }
    if d.point > 19 {
        return Err("outside the int range");
    }
    let s = plain(&d);
    s.parse::<i64>().map_err(|_| "outside the int range")?;
    Ok(s)
}

/// The canonical text of a finite binary float: its shortest round-trip form.
pub fn canonical_float(text: &str) -> Result<String, &'static str> {
    parse_decimal(text)?;
    let f: f64 = text.trim().parse().map_err(|_| "not a number")?;
    if !f.is_finite() {
        return Err("not finite");
    }
    canonical_decimal(&format!("{f:e}"))
}

// ---------------------------------------------------------------------------------------------
// Time

/// `HH:MM:SS` with an optional fraction of up to 9 digits, kept as written; `24:00:00` allowed.
fn time_text(text: &str) -> Result<String, &'static str> {
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

fn format_utc(t: DateTime<Utc>, fraction_digits: u32) -> String {
    let base = t.format("%Y-%m-%dT%H:%M:%S").to_string();
    if fraction_digits == 0 {
        return format!("{base}Z");
    }
    let nanos = format!("{:09}", t.timestamp_subsec_nanos());
    let digits = usize::try_from(fraction_digits.min(9)).unwrap_or(9);
    format!("{base}.{}Z", &nanos[..digits])
}

fn timestamp_text(text: &str, unit: Option<TimeUnit>) -> Result<String, &'static str> {
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

pub(crate) fn epoch_timestamp(text: &str, unit: Option<TimeUnit>) -> Result<String, &'static str> {
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
    let nanos_total: i64 = crate::time::scaled(text.trim(), i32::try_from(shift).unwrap_or(9))
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
