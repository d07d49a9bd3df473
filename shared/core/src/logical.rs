//! Logical types: what a value means beyond its JSON kind.
//!
//! Debezium encodes decimals and times in Kafka Connect's primitive types and names the meaning
//! in the event's schema: a `bytes` column named `org.apache.kafka.connect.data.Decimal` holds the
//! base64 of a big-endian two's-complement unscaled integer, with the scale in the schema's
//! parameters; an `int64` named `io.debezium.time.MicroTimestamp` holds microseconds since the
//! epoch. [`Logical`] is that meaning, read from the schema ([`from_connect_schema`]) or, when an
//! event comes without its schema, from the contract (a decimal field's `scale`, a temporal
//! field's `unit`).
//!
//! [`prepare`] turns such a value into the plain text that typing reads: exact decimal text
//! (never through `f64`), `YYYY-MM-DD`, `HH:MM:SS.ffffff` or UTC RFC 3339. Values before 1970
//! are negative epoch numbers and convert like any other.

use std::borrow::Cow;
use std::collections::BTreeMap;

use base64::Engine;
use chrono::{Duration, NaiveDate};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::decimal::canonical_decimal;
use crate::field_type::FieldType;
use crate::time::{epoch_timestamp, TimeUnit};
use crate::value::SrcRef;

/// The Kafka Connect schema name of exact decimals (bytes plus a `scale` parameter).
pub const CONNECT_DECIMAL: &str = "org.apache.kafka.connect.data.Decimal";
/// Debezium's decimal whose scale travels with each value, `{scale, value}`.
pub const VARIABLE_SCALE_DECIMAL: &str = "io.debezium.data.VariableScaleDecimal";

/// What a column's values mean, as a schema or a contract declares it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logical {
    /// Base64 of a big-endian two's-complement unscaled integer, with this scale.
    Decimal {
        /// Digits after the decimal point.
        scale: i32,
    },
    /// `{"scale": s, "value": "<base64 unscaled integer>"}`.
    VariableScaleDecimal,
    /// Days since 1970-01-01.
    Date,
    /// Time since midnight in this unit.
    Time(TimeUnit),
    /// Time since the epoch in this unit.
    Timestamp(TimeUnit),
    /// ISO 8601 text with an offset.
    ZonedTimestamp,
}

impl Logical {
    /// The logical type of a Kafka Connect schema name, given the schema's `scale` parameter.
    ///
    /// `Err` for a decimal schema whose scale is missing or not a number: its values cannot be
    /// read without it.
    pub fn from_schema_name(name: &str, scale: Option<&str>) -> Result<Option<Self>, String> {
        Ok(Some(match name {
            CONNECT_DECIMAL => {
                let scale = scale.ok_or("a Decimal schema without a `scale` parameter")?;
                Self::Decimal {
                    scale: scale.trim().parse().map_err(|_| {
                        format!(
                            "a Decimal schema whose `scale` parameter is not a whole number: {:?}",
                            crate::seq::truncate(scale)
                        )
                    })?,
                }
            }
            VARIABLE_SCALE_DECIMAL => Self::VariableScaleDecimal,
            "io.debezium.time.Date" | "org.apache.kafka.connect.data.Date" => Self::Date,
            "io.debezium.time.Time" | "org.apache.kafka.connect.data.Time" => {
                Self::Time(TimeUnit::Milliseconds)
            }
            "io.debezium.time.MicroTime" => Self::Time(TimeUnit::Microseconds),
            "io.debezium.time.NanoTime" => Self::Time(TimeUnit::Nanoseconds),
            "io.debezium.time.Timestamp" | "org.apache.kafka.connect.data.Timestamp" => {
                Self::Timestamp(TimeUnit::Milliseconds)
            }
            "io.debezium.time.MicroTimestamp" => Self::Timestamp(TimeUnit::Microseconds),
            "io.debezium.time.NanoTimestamp" => Self::Timestamp(TimeUnit::Nanoseconds),
            "io.debezium.time.ZonedTimestamp" => Self::ZonedTimestamp,
            _ => return Ok(None),
        }))
    }
}

/// One field of a Kafka Connect struct schema, as the JSON converter writes it.
#[derive(Deserialize)]
struct ConnectField<'a> {
    #[serde(borrow, default)]
    field: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<BTreeMap<Cow<'a, str>, &'a RawValue>>,
    #[serde(borrow, default)]
    fields: Option<Vec<ConnectField<'a>>>,
}

/// The logical types of a Debezium event's columns, from the `schema` half of Kafka Connect's
/// schema/payload wrapper. Reads the `after` struct (else `before`); columns of plain types are
/// left out. A missing or null schema gives an empty map.
///
/// `Err` names the schema path that cannot be read.
pub fn from_connect_schema(schema: &RawValue) -> Result<BTreeMap<String, Logical>, String> {
    if schema.get() == "null" {
        return Ok(BTreeMap::new());
    }
    let root: ConnectField<'_> = serde_json::from_str(schema.get())
        .map_err(|e| format!("schema: not a Kafka Connect struct schema: {e}"))?;
    let structs = root.fields.unwrap_or_default();
    let image = structs
        .iter()
        .find(|f| f.field.as_deref() == Some("after"))
        .or_else(|| {
            structs
                .iter()
                .find(|f| f.field.as_deref() == Some("before"))
        });
    let mut out = BTreeMap::new();
    let Some(columns) = image.and_then(|f| f.fields.as_ref()) else {
        return Ok(out);
    };
    for column in columns {
        let (Some(field), Some(name)) = (column.field.as_deref(), column.name.as_deref()) else {
            continue;
        };
        let scale = match column.parameters.as_ref().and_then(|p| p.get("scale")) {
            Some(raw) => Some(
                serde_json::from_str::<Cow<'_, str>>(raw.get()).unwrap_or(Cow::Borrowed(raw.get())),
            ),
            None => None,
        };
        let logical = Logical::from_schema_name(name, scale.as_deref())
            .map_err(|e| format!("schema: column `{}`: {e}", crate::seq::truncate(field)))?;
        if let Some(logical) = logical {
            out.insert(field.to_owned(), logical);
        }
    }
    Ok(out)
}

/// How to read one value: what the event's schema says, and what the contract adds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Hint {
    /// The logical type the event's schema gives the column.
    pub logical: Option<Logical>,
    /// The contract field's `unit`, for epoch and time-of-day numbers without a schema.
    pub unit: Option<TimeUnit>,
    /// The contract field's `scale`: string values are Connect Decimal bytes with this scale.
    pub scale: Option<i32>,
}

impl Hint {
    /// A hint with only a contract unit.
    pub fn unit(unit: Option<TimeUnit>) -> Self {
        Self {
            unit,
            ..Self::default()
        }
    }
}

/// The text a logical value becomes, as a JSON document, for typing to read. `Ok(None)` when the
/// value needs no preparation.
pub fn prepare(
    value: SrcRef<'_>,
    ty: &FieldType,
    hint: &Hint,
) -> Result<Option<String>, &'static str> {
    let logical = match hint.logical {
        Some(l) => Some(l),
        None => match (ty, hint.unit) {
            (FieldType::Date, Some(TimeUnit::Days)) => Some(Logical::Date),
            (FieldType::Time, Some(unit)) => Some(Logical::Time(unit)),
            _ => None,
        },
    };
    match logical {
        Some(Logical::Date | Logical::Time(_) | Logical::Timestamp(_)) => {
            // Epoch and time-of-day numbers, from any source: JSON numbers, DynamoDB `N`, and
            // numeric strings. Other values (already formatted text) are typing's to read.
            match (logical, numeric_text(value)) {
                (Some(l), Some(text)) => temporal(l, &text, ty),
                _ => Ok(None),
            }
        }
        Some(Logical::ZonedTimestamp) => Ok(None),
        Some(Logical::Decimal { scale }) => match value {
            SrcRef::Json(raw) => {
                let s = serde_json::from_str::<Cow<'_, str>>(raw.get())
                    .map_err(|_| "a Connect Decimal is base64 text")?;
                Ok(Some(decimal_out(&decimal_bytes(&s, scale)?, ty)))
            }
            _ => Ok(None),
        },
        Some(Logical::VariableScaleDecimal) => variable_scale(value, ty),
        None if *ty == FieldType::Decimal => match (value, hint.scale) {
            // A VariableScaleDecimal is recognised by its shape.
            (SrcRef::Json(raw), _) if raw.get().starts_with('{') => variable_scale(value, ty),
            // The contract's scale: string values are Connect Decimal bytes.
            (SrcRef::Json(raw), Some(scale)) if raw.get().starts_with('"') => {
                let s = serde_json::from_str::<Cow<'_, str>>(raw.get())
                    .map_err(|_| "a Connect Decimal is base64 text")?;
                Ok(Some(decimal_out(&decimal_bytes(&s, scale)?, ty)))
            }
            (SrcRef::Ddb(serde_dynamo::AttributeValue::S(s)), Some(scale)) => {
                Ok(Some(decimal_out(&decimal_bytes(s, scale)?, ty)))
            }
            _ => Ok(None),
        },
        None => Ok(None),
    }
}

/// `{"scale": s, "value": "<base64>"}` as an exact decimal.
fn variable_scale(value: SrcRef<'_>, ty: &FieldType) -> Result<Option<String>, &'static str> {
    #[derive(Deserialize)]
    struct Vsd<'a> {
        scale: i32,
        #[serde(borrow)]
        value: Cow<'a, str>,
    }
    let SrcRef::Json(raw) = value else {
        return Ok(None);
    };
    if !raw.get().starts_with('{') {
        return Ok(None);
    }
    let v: Vsd<'_> = serde_json::from_str(raw.get())
        .map_err(|_| "a VariableScaleDecimal is {\"scale\": <int>, \"value\": <base64>}")?;
    Ok(Some(decimal_out(&decimal_bytes(&v.value, v.scale)?, ty)))
}

/// The text of a number, from a JSON number or numeric string, a DynamoDB `N` (or numeric `S`),
/// or a set member.
fn numeric_text<'a>(value: SrcRef<'a>) -> Option<Cow<'a, str>> {
    let text: Cow<'a, str> = match value {
        SrcRef::Json(raw) => {
            let t = raw.get();
            if t.starts_with('"') {
                Cow::Owned(serde_json::from_str::<String>(t).ok()?)
            } else {
                Cow::Borrowed(t)
            }
        }
        SrcRef::Ddb(serde_dynamo::AttributeValue::N(n) | serde_dynamo::AttributeValue::S(n)) => {
            Cow::Borrowed(n.as_str())
        }
        SrcRef::Num(n) | SrcRef::Str(n) => Cow::Borrowed(n),
        _ => return None,
    };
    crate::decimal::is_number(&text).then_some(text)
}

/// A date, time of day or timestamp number as the field wants it. `Ok(None)` leaves the number
/// to typing (an `int` field keeps it as it is).
fn temporal(logical: Logical, text: &str, ty: &FieldType) -> Result<Option<String>, &'static str> {
    match logical {
        Logical::Date => {
            let days: i64 = text
                .parse()
                .map_err(|_| "a date is a whole number of days")?;
            let date = NaiveDate::from_ymd_opt(1970, 1, 1)
                .and_then(|epoch| epoch.checked_add_signed(Duration::try_days(days)?))
                .ok_or("outside the date range")?;
            let day = date.format("%Y-%m-%d");
            Ok(match ty {
                FieldType::Date | FieldType::String => Some(quote(&day.to_string())),
                FieldType::Timestamp => Some(quote(&format!("{day}T00:00:00Z"))),
                _ => None,
            })
        }
        Logical::Time(unit) => match ty {
            FieldType::Time | FieldType::String => Ok(Some(quote(&time_of_day(text, unit)?))),
            FieldType::Timestamp | FieldType::Date => {
                Err("a time of day is not a point in time; type the field `time`")
            }
            _ => Ok(None),
        },
        Logical::Timestamp(unit) => {
            let stamp = epoch_timestamp(text, Some(unit))?;
            Ok(match ty {
                FieldType::Timestamp | FieldType::String => Some(quote(&stamp)),
                FieldType::Date => Some(quote(stamp.get(..10).unwrap_or(&stamp))),
                _ => None,
            })
        }
        _ => Ok(None),
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// A decimal's text as the field wants it: a number literal, or a string for a string field.
fn decimal_out(canonical: &str, ty: &FieldType) -> String {
    match ty {
        FieldType::String => quote(canonical),
        _ => canonical.to_owned(),
    }
}

/// The canonical decimal text of Connect Decimal bytes: base64 of a big-endian two's-complement
/// unscaled integer. Fits DynamoDB's 38 digits or fails.
pub fn decimal_bytes(base64_text: &str, scale: i32) -> Result<String, &'static str> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(base64_text.as_bytes())
        .map_err(|_| "not base64 (Connect Decimal bytes)")?;
    let Some(&first) = bytes.first() else {
        return Err("empty Connect Decimal bytes");
    };
    let negative = first & 0x80 != 0;
    // A sign-extension byte carries no digits when the byte after it has the same sign bit;
    // what remains (its first byte holding the sign) must fit an i128.
    let sign_byte = if negative { 0xff } else { 0x00 };
    let skip = bytes
        .windows(2)
        .take_while(|w| w[0] == sign_byte && (w[1] & 0x80) == (sign_byte & 0x80))
        .count();
    let significant = &bytes[skip..];
    if significant.len() > 16 {
        return Err("more than 38 significant digits, which DynamoDB cannot store");
    }
    let mut buf = [sign_byte; 16];
    buf[16 - significant.len()..].copy_from_slice(significant);
    let unscaled = i128::from_be_bytes(buf);
    canonical_decimal(&format!("{unscaled}E{}", -i64::from(scale)))
}

/// `HH:MM:SS[.fraction]` of a time since midnight; `24:00:00` is allowed, as Postgres has it.
fn time_of_day(text: &str, unit: TimeUnit) -> Result<String, &'static str> {
    let per_second: i64 = match unit {
        TimeUnit::Days => return Err("days are not a unit of a time of day"),
        TimeUnit::Seconds => 1,
        TimeUnit::Milliseconds => 1_000,
        TimeUnit::Microseconds => 1_000_000,
        TimeUnit::Nanoseconds => 1_000_000_000,
    };
    let ticks: i64 = text
        .parse()
        .map_err(|_| "a time of day is a whole number")?;
    if !(0..=86_400 * per_second).contains(&ticks) {
        return Err("outside 00:00:00 to 24:00:00");
    }
    let secs = ticks / per_second;
    let frac = ticks % per_second;
    let mut out = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let digits = per_second.to_string().len() - 1;
    if digits > 0 {
        out.push_str(&format!(".{frac:0digits$}"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prep(text: &str, ty: &str, hint: Hint) -> Result<Option<String>, &'static str> {
        let raw = RawValue::from_string(text.to_owned()).unwrap();
        prepare(SrcRef::Json(&raw), &FieldType::parse(ty).unwrap(), &hint)
    }

    fn schema(l: Logical) -> Hint {
        Hint {
            logical: Some(l),
            ..Hint::default()
        }
    }

    #[test]
    fn connect_decimal_bytes_are_exact_twos_complement() {
        // 0x01E240 = 123456
        assert_eq!(decimal_bytes("AeJA", 2).unwrap(), "1234.56");
        // 0xFE1DC0 = -123456
        assert_eq!(decimal_bytes("/h3A", 3).unwrap(), "-123.456");
        assert_eq!(decimal_bytes("AA==", 2).unwrap(), "0");
        assert_eq!(decimal_bytes("/w==", 0).unwrap(), "-1");
        // Redundant sign bytes: 0x0000000001 = 1.
        assert_eq!(decimal_bytes("AAAAAAE=", 1).unwrap(), "0.1");
        // Negative scale multiplies.
        assert_eq!(decimal_bytes("BQ==", -3).unwrap(), "5000");
        // 38 nines fit; 17 significant bytes do not.
        let nines = 10i128.pow(38) - 1;
        let b64 = base64::engine::general_purpose::STANDARD.encode(nines.to_be_bytes());
        assert_eq!(decimal_bytes(&b64, 10).unwrap().len(), 39);
        let big = base64::engine::general_purpose::STANDARD.encode([0x7f; 17]);
        assert!(decimal_bytes(&big, 0).unwrap_err().contains("38"));
        // A leading sign byte is needed when the next byte's top bit differs: 2^128 - 1 and
        // -2^128 take 17 bytes, and are refused rather than read with the wrong sign.
        let mut max = vec![0x00];
        max.extend([0xff; 16]);
        let max = base64::engine::general_purpose::STANDARD.encode(max);
        assert!(decimal_bytes(&max, 0).unwrap_err().contains("38"));
        let mut min = vec![0xff];
        min.extend([0x00; 16]);
        let min = base64::engine::general_purpose::STANDARD.encode(min);
        assert!(decimal_bytes(&min, 0).unwrap_err().contains("38"));
        // 0x00FF is 255, 0xFF00 is -256, 0xFF7F is -129.
        assert_eq!(decimal_bytes("AP8=", 0).unwrap(), "255");
        assert_eq!(decimal_bytes("/wA=", 0).unwrap(), "-256");
        assert_eq!(decimal_bytes("/38=", 0).unwrap(), "-129");
        assert_eq!(decimal_bytes("", 0), Err("empty Connect Decimal bytes"));
        assert_eq!(
            decimal_bytes("not base64!", 0),
            Err("not base64 (Connect Decimal bytes)")
        );
    }

    #[test]
    fn decimals_from_schema_contract_and_shape() {
        let d = schema(Logical::Decimal { scale: 2 });
        assert_eq!(prep(r#""AeJA""#, "decimal", d).unwrap().unwrap(), "1234.56");
        assert_eq!(
            prep(r#""AeJA""#, "string", d).unwrap().unwrap(),
            r#""1234.56""#
        );
        assert!(prep("12", "decimal", d).is_err());
        // VariableScaleDecimal, with or without a schema.
        let v = r#"{"scale":3,"value":"AeJA"}"#;
        assert_eq!(
            prep(v, "decimal", Hint::default()).unwrap().unwrap(),
            "123.456"
        );
        assert_eq!(
            prep(v, "decimal", schema(Logical::VariableScaleDecimal))
                .unwrap()
                .unwrap(),
            "123.456"
        );
        assert!(prep(r#"{"scale":"x"}"#, "decimal", Hint::default()).is_err());
        // The contract's scale, when the event comes without its schema.
        let c = Hint {
            scale: Some(2),
            ..Hint::default()
        };
        assert_eq!(prep(r#""AeJA""#, "decimal", c).unwrap().unwrap(), "1234.56");
        // Without either, a string is left to typing (which reads numeric text or refuses).
        assert_eq!(prep(r#""AeJA""#, "decimal", Hint::default()).unwrap(), None);
        assert_eq!(prep("1234.56", "decimal", c).unwrap(), None);
    }

    #[test]
    fn temporal_types_by_unit_including_before_1970() {
        let date = schema(Logical::Date);
        assert_eq!(
            prep("19000", "date", date).unwrap().unwrap(),
            r#""2022-01-08""#
        );
        assert_eq!(
            prep("-1", "date", date).unwrap().unwrap(),
            r#""1969-12-31""#
        );
        assert_eq!(
            prep("0", "timestamp", date).unwrap().unwrap(),
            r#""1970-01-01T00:00:00Z""#
        );
        assert_eq!(prep("19000", "int", date).unwrap(), None);
        assert!(prep("1e400", "date", date).is_err());
        assert!(prep("1.5", "date", date).is_err());
        assert!(prep("99999999999", "date", date).is_err());

        let micro = schema(Logical::Timestamp(TimeUnit::Microseconds));
        assert_eq!(
            prep("1700000000123456", "timestamp", micro)
                .unwrap()
                .unwrap(),
            r#""2023-11-14T22:13:20.123456Z""#
        );
        assert_eq!(
            prep("-1000001", "timestamp", micro).unwrap().unwrap(),
            r#""1969-12-31T23:59:58.999999Z""#
        );
        // A small number is still microseconds: the schema, not the magnitude, decides.
        assert_eq!(
            prep("5", "timestamp", micro).unwrap().unwrap(),
            r#""1970-01-01T00:00:00.000005Z""#
        );
        assert_eq!(
            prep("1700000000123456", "date", micro).unwrap().unwrap(),
            r#""2023-11-14""#
        );
        let ms = schema(Logical::Timestamp(TimeUnit::Milliseconds));
        assert_eq!(
            prep("-86400000", "timestamp", ms).unwrap().unwrap(),
            r#""1969-12-31T00:00:00.000Z""#
        );
        let ns = schema(Logical::Timestamp(TimeUnit::Nanoseconds));
        assert_eq!(
            prep("1700000000123456789", "timestamp", ns)
                .unwrap()
                .unwrap(),
            r#""2023-11-14T22:13:20.123456789Z""#
        );

        let t = schema(Logical::Time(TimeUnit::Microseconds));
        assert_eq!(
            prep("45296000001", "time", t).unwrap().unwrap(),
            r#""12:34:56.000001""#
        );
        assert_eq!(
            prep("86400000000", "time", t).unwrap().unwrap(),
            r#""24:00:00.000000""#
        );
        assert!(prep("86400000001", "time", t).is_err());
        assert!(prep("1", "timestamp", t).is_err());
        let t_ms = schema(Logical::Time(TimeUnit::Milliseconds));
        assert_eq!(
            prep("1500", "time", t_ms).unwrap().unwrap(),
            r#""00:00:01.500""#
        );
        // Already formatted text passes through.
        assert_eq!(prep(r#""2020-01-01""#, "date", date).unwrap(), None);
    }

    #[test]
    fn contract_units_apply_to_dynamodb_numbers_and_numeric_strings() {
        let n = serde_dynamo::AttributeValue::N("45296000000".into());
        let us = Hint::unit(Some(TimeUnit::Microseconds));
        assert_eq!(
            prepare(SrcRef::Ddb(&n), &FieldType::Time, &us)
                .unwrap()
                .unwrap(),
            r#""12:34:56.000000""#
        );
        let d = serde_dynamo::AttributeValue::N("19000".into());
        let days = Hint::unit(Some(TimeUnit::Days));
        assert_eq!(
            prepare(SrcRef::Ddb(&d), &FieldType::Date, &days)
                .unwrap()
                .unwrap(),
            r#""2022-01-08""#
        );
        assert_eq!(
            prep(r#""19000""#, "date", days).unwrap().unwrap(),
            r#""2022-01-08""#
        );
        // Formatted text is left to typing.
        assert_eq!(prep(r#""12:00:00""#, "time", us).unwrap(), None);
    }

    #[test]
    fn contract_units_without_a_schema() {
        let days = Hint::unit(Some(TimeUnit::Days));
        assert_eq!(prep("1", "date", days).unwrap().unwrap(), r#""1970-01-02""#);
        let ns = Hint::unit(Some(TimeUnit::Nanoseconds));
        assert_eq!(
            prep("1000", "time", ns).unwrap().unwrap(),
            r#""00:00:00.000001000""#
        );
    }

    #[test]
    fn schemas_name_the_logical_type_of_each_column() {
        let schema = r#"{"type":"struct","fields":[
            {"type":"struct","optional":true,"field":"before","fields":[]},
            {"type":"struct","optional":true,"field":"after","fields":[
                {"type":"int32","optional":false,"field":"id"},
                {"type":"bytes","name":"org.apache.kafka.connect.data.Decimal","version":1,
                 "parameters":{"scale":"2","connect.decimal.precision":"10"},"field":"price"},
                {"type":"int64","name":"io.debezium.time.MicroTimestamp","field":"created_at"},
                {"type":"int32","name":"io.debezium.time.Date","field":"born"},
                {"type":"struct","name":"io.debezium.data.VariableScaleDecimal","field":"n"},
                {"type":"string","name":"io.debezium.data.Json","field":"doc"}
            ]},
            {"type":"struct","field":"source","fields":[]}
        ]}"#;
        let raw = RawValue::from_string(schema.into()).unwrap();
        let m = from_connect_schema(&raw).unwrap();
        assert_eq!(m.get("price"), Some(&Logical::Decimal { scale: 2 }));
        assert_eq!(
            m.get("created_at"),
            Some(&Logical::Timestamp(TimeUnit::Microseconds))
        );
        assert_eq!(m.get("born"), Some(&Logical::Date));
        assert_eq!(m.get("n"), Some(&Logical::VariableScaleDecimal));
        assert_eq!(m.get("id"), None);
        assert_eq!(m.get("doc"), None);

        let null = RawValue::from_string("null".into()).unwrap();
        assert!(from_connect_schema(&null).unwrap().is_empty());
        let bad = RawValue::from_string(
            r#"{"fields":[{"field":"after","fields":[{"field":"p","name":"org.apache.kafka.connect.data.Decimal"}]}]}"#.into(),
        )
        .unwrap();
        assert_eq!(
            from_connect_schema(&bad).unwrap_err(),
            "schema: column `p`: a Decimal schema without a `scale` parameter"
        );
        let not_struct = RawValue::from_string("[1]".into()).unwrap();
        assert!(from_connect_schema(&not_struct)
            .unwrap_err()
            .starts_with("schema: not a Kafka Connect struct schema"));
    }

    /// The shortest big-endian two's complement of a number, as Kafka Connect writes it.
    fn minimal_bytes(x: i128) -> Vec<u8> {
        let bytes = x.to_be_bytes();
        let sign = if x < 0 { 0xff } else { 0 };
        let mut start = 0;
        while start < 15 && bytes[start] == sign && (bytes[start + 1] & 0x80) == (sign & 0x80) {
            start += 1;
        }
        bytes[start..].to_vec()
    }

    proptest::proptest! {
        /// Every unscaled integer DynamoDB can hold reads back exactly, at any scale, with or
        /// without redundant sign bytes.
        #[test]
        fn connect_decimal_bytes_round_trip(
            x in -(10i128.pow(38) - 1)..10i128.pow(38),
            scale in -20i32..40,
            pad in 0usize..3,
        ) {
            let mut bytes = vec![if x < 0 { 0xff } else { 0 }; pad];
            bytes.extend(minimal_bytes(x));
            let b64 = base64::engine::general_purpose::STANDARD.encode(&bytes);
            let expect = canonical_decimal(&format!("{x}E{}", -i64::from(scale)));
            proptest::prop_assert_eq!(decimal_bytes(&b64, scale), expect);
        }
    }
}
