//! The canonical change: what every supported source format decodes into.
//!
//! Ingest needs only a change's [`Route`] (format, table, op, seq, commit time) to land it.
//! Transform needs the whole [`Change`], with its images. Both come from one borrowed parse.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::logical::Logical;
use crate::seq::Seq;

/// The source format of a raw line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Format {
    /// A DynamoDB Streams record.
    #[serde(rename = "ddb-stream")]
    DdbStream,
    /// A DynamoDB change record delivered through Kinesis Data Streams.
    #[serde(rename = "ddb-kinesis")]
    DdbKinesis,
    /// An application-level change event (DESIGN §3.2).
    #[serde(rename = "app")]
    App,
    /// A Debezium change event envelope.
    #[serde(rename = "debezium")]
    Debezium,
    /// An AWS DMS record.
    #[serde(rename = "dms")]
    Dms,
}

impl Format {
    /// The name used in raw lines and envelopes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DdbStream => "ddb-stream",
            Self::DdbKinesis => "ddb-kinesis",
            Self::App => "app",
            Self::Debezium => "debezium",
            Self::Dms => "dms",
        }
    }
}

/// What a change does to its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// A new row.
    Insert,
    /// A changed row.
    Update,
    /// A removed row.
    Delete,
    /// A row read by an initial snapshot or full load.
    Snapshot,
    /// Every row of the table removed.
    Truncate,
    /// A record about the source (DDL, DMS control), not about a row.
    Control,
}

impl Op {
    /// The name used in raw lines.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Snapshot => "snapshot",
            Self::Truncate => "truncate",
            Self::Control => "control",
        }
    }
}

/// What ingest extracts from a source record to route and order it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The source format.
    pub format: Format,
    /// The source table the change belongs to.
    pub table: String,
    /// The operation.
    pub op: Op,
    /// The normalised ordering token.
    pub seq: Seq,
    /// The source commit time in milliseconds, when the source carries one.
    pub ts_ms: Option<i64>,
}

impl Route {
    /// A route.
    pub fn new(
        format: Format,
        table: impl Into<String>,
        op: Op,
        seq: Seq,
        ts_ms: Option<i64>,
    ) -> Self {
        Self {
            format,
            table: table.into(),
            op,
            seq,
            ts_ms,
        }
    }
}

/// A row image: the DynamoDB attributes of a stream record, or the JSON columns of an event.
///
/// JSON columns stay raw text, so every number literal reaches typing exactly as written.
#[derive(Debug, Clone)]
pub enum Image {
    /// DynamoDB attribute values, with `N` kept as decimal text.
    Ddb(BTreeMap<String, serde_dynamo::AttributeValue>),
    /// JSON columns, each kept as its raw text.
    Json(BTreeMap<String, Box<RawValue>>),
}

impl Image {
    /// The number of attributes or columns in the image.
    pub fn len(&self) -> usize {
        match self {
            Self::Ddb(m) => m.len(),
            Self::Json(m) => m.len(),
        }
    }

    /// Whether the image has no attributes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the image has an attribute or column of this name.
    pub fn contains(&self, name: &str) -> bool {
        match self {
            Self::Ddb(m) => m.contains_key(name),
            Self::Json(m) => m.contains_key(name),
        }
    }

    /// The first column of `key` that this image holds with another value: a key that names
    /// one row and an image of another. Columns the image lacks agree. Numbers compare by
    /// value (`135` and `1.35E2` agree); a string never equals a number.
    pub fn disagrees_with(&self, key: &Image) -> Option<String> {
        match (key, self) {
            (Self::Ddb(key), Self::Ddb(image)) => ddb_disagreement(key, image),
            (Self::Json(key), Self::Json(image)) => key
                .iter()
                .find(|(name, k)| image.get(*name).is_some_and(|v| !same_json(k, v)))
                .map(|(name, _)| name.clone()),
            // Sources never mix the two; a key of one kind cannot be checked against the other.
            _ => None,
        }
    }
}

/// [`Image::disagrees_with`] for DynamoDB attribute maps.
pub fn ddb_disagreement(
    key: &BTreeMap<String, serde_dynamo::AttributeValue>,
    image: &BTreeMap<String, serde_dynamo::AttributeValue>,
) -> Option<String> {
    key.iter()
        .find(|(name, k)| image.get(*name).is_some_and(|v| !same_ddb(k, v)))
        .map(|(name, _)| name.clone())
}

fn same_ddb(a: &serde_dynamo::AttributeValue, b: &serde_dynamo::AttributeValue) -> bool {
    use serde_dynamo::AttributeValue as A;
    match (a, b) {
        (A::N(x), A::N(y)) => same_number(x, y),
        _ => a == b,
    }
}

fn same_json(a: &RawValue, b: &RawValue) -> bool {
    let (x, y) = (a.get().trim(), b.get().trim());
    let numeric = |t: &str| t.starts_with(|c: char| c == '-' || c.is_ascii_digit());
    if numeric(x) && numeric(y) {
        return same_number(x, y);
    }
    match (
        serde_json::from_str::<serde_json::Value>(x),
        serde_json::from_str::<serde_json::Value>(y),
    ) {
        (Ok(p), Ok(q)) => p == q,
        _ => x == y,
    }
}

/// Two decimal texts of the same value, compared exactly.
fn same_number(x: &str, y: &str) -> bool {
    match (
        crate::decimal::canonical_decimal(x),
        crate::decimal::canonical_decimal(y),
    ) {
        (Ok(p), Ok(q)) => p == q,
        _ => x == y,
    }
}

/// A decoded change, ready for a contract to type it.
#[derive(Debug, Clone)]
pub struct Change {
    /// Format, table, op, seq and commit time.
    pub route: Route,
    /// A REMOVE made by DynamoDB's TTL sweeper rather than by a client.
    pub ttl_delete: bool,
    /// The key of the row, where the source names it apart from the images.
    pub key: Option<Image>,
    /// The row before the change, where the source gives it.
    pub before: Option<Image>,
    /// The row after the change, where the source gives it.
    pub after: Option<Image>,
    /// What the event's own schema says each column's values mean (Debezium's Kafka Connect
    /// schema); empty when the event carries none.
    pub logical: BTreeMap<String, Logical>,
    /// Columns of the new image that are present but cannot be read (a DynamoDB `B` that is
    /// not base64, say), with why. They land verbatim; a contract that reads one quarantines
    /// the change, naming the field.
    pub unreadable: BTreeMap<String, String>,
}

impl Change {
    /// A change of `route` with these images: not a TTL delete, with no schema of its own and
    /// nothing unreadable (set those fields where a source has them).
    pub fn new(
        route: Route,
        key: Option<Image>,
        before: Option<Image>,
        after: Option<Image>,
    ) -> Self {
        Self {
            route,
            ttl_delete: false,
            key,
            before,
            after,
            logical: BTreeMap::new(),
            unreadable: BTreeMap::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> Image {
        Image::Json(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn a_key_and_an_image_of_another_row_disagree() {
        let key = json(r#"{"id":135}"#);
        assert_eq!(
            json(r#"{"id":136,"name":"x"}"#).disagrees_with(&key),
            Some("id".into())
        );
        assert_eq!(json(r#"{"id":135,"name":"x"}"#).disagrees_with(&key), None);
        assert_eq!(
            json(r#"{"id":1.35E2}"#).disagrees_with(&key),
            None,
            "by value"
        );
        assert_eq!(
            json(r#"{"name":"x"}"#).disagrees_with(&key),
            None,
            "absent agrees"
        );
        assert_eq!(
            json(r#"{"id":"135"}"#).disagrees_with(&key),
            Some("id".into())
        );
        assert_eq!(
            json(r#"{"id":null}"#).disagrees_with(&key),
            Some("id".into())
        );
        let composite = json(r#"{"a":"x","b":"\u0079"}"#);
        assert_eq!(
            json(r#"{"a":"x","b":"y"}"#).disagrees_with(&composite),
            None
        );
        assert_eq!(
            json(r#"{"a":"x","b":"z"}"#).disagrees_with(&composite),
            Some("b".into())
        );
        use serde_dynamo::AttributeValue as A;
        let ddb = |pairs: &[(&str, A)]| {
            Image::Ddb(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.clone()))
                    .collect(),
            )
        };
        let key = ddb(&[("pk", A::N("10".into()))]);
        assert_eq!(
            ddb(&[("pk", A::N("1E1".into()))]).disagrees_with(&key),
            None
        );
        assert_eq!(
            ddb(&[("pk", A::N("11".into()))]).disagrees_with(&key),
            Some("pk".into())
        );
        assert_eq!(
            ddb(&[("pk", A::S("10".into()))]).disagrees_with(&key),
            Some("pk".into())
        );
    }
}
