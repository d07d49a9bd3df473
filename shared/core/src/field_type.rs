//! The types of contract fields (`string`, `int`, …, `list<T>`, `set<T>`), apart from contracts
//! so typing and logical values can use them without importing contracts.

use std::fmt;

/// A field's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldType {
    /// Text (`S`).
    String,
    /// A whole number in the `i64` range (`N`).
    Int,
    /// A binary floating-point number (`N`).
    Float,
    /// An exact decimal of up to 38 significant digits (`N`).
    Decimal,
    /// `true` or `false` (`BOOL`).
    Bool,
    /// A point in time, stored as UTC RFC 3339 with `Z` (`S`).
    Timestamp,
    /// A calendar date, `YYYY-MM-DD` (`S`).
    Date,
    /// A time of day, `HH:MM:SS` with the source's fraction (`S`).
    Time,
    /// Any JSON value, stored as compact JSON text (`S`).
    Json,
    /// Bytes (`B`).
    Binary,
    /// A list of values of one type (`L`).
    List(Box<FieldType>),
    /// A set of strings, numbers or binaries (`SS`, `NS`, `BS`).
    Set(Box<FieldType>),
}

impl FieldType {
    /// Parses `string`, `list<int>`, `set<decimal>`… (spaces allowed around the angle brackets).
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let inner = |prefix: &str| {
            t.strip_prefix(prefix)
                .and_then(|r| r.trim_start().strip_prefix('<'))
                .and_then(|r| r.strip_suffix('>'))
        };
        if let Some(elem) = inner("list") {
            return Ok(Self::List(Box::new(Self::parse(elem)?)));
        }
        if let Some(elem) = inner("set") {
            let elem = Self::parse(elem)?;
            return match elem {
                Self::String
                | Self::Int
                | Self::Float
                | Self::Decimal
                | Self::Binary
                | Self::Timestamp
                | Self::Date
                | Self::Time => Ok(Self::Set(Box::new(elem))),
                other => Err(format!(
                    "a set holds strings, numbers or binaries, not {other}"
                )),
            };
        }
        Ok(match t {
            "string" => Self::String,
            "int" => Self::Int,
            "float" => Self::Float,
            "decimal" => Self::Decimal,
            "bool" => Self::Bool,
            "timestamp" => Self::Timestamp,
            "date" => Self::Date,
            "time" => Self::Time,
            "json" => Self::Json,
            "binary" => Self::Binary,
            other => {
                return Err(format!(
                    "unknown type {other:?}; expected string, int, float, decimal, bool, timestamp, date, time, json, binary, list<T> or set<T>"
                ))
            }
        })
    }

    /// The DynamoDB key attribute type (`S`, `N`, `B`) of a key field of this type, if it can be one.
    pub fn key_attribute_type(&self) -> Option<&'static str> {
        match self {
            Self::String | Self::Timestamp | Self::Date => Some("S"),
            Self::Int | Self::Decimal => Some("N"),
            Self::Binary => Some("B"),
            _ => None,
        }
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::String => f.write_str("string"),
            Self::Int => f.write_str("int"),
            Self::Float => f.write_str("float"),
            Self::Decimal => f.write_str("decimal"),
            Self::Bool => f.write_str("bool"),
            Self::Timestamp => f.write_str("timestamp"),
            Self::Date => f.write_str("date"),
            Self::Time => f.write_str("time"),
            Self::Json => f.write_str("json"),
            Self::Binary => f.write_str("binary"),
            Self::List(t) => write!(f, "list<{t}>"),
            Self::Set(t) => write!(f, "set<{t}>"),
        }
    }
}
