//! DynamoDB change records delivered through Kinesis Data Streams (format `ddb-kinesis`).
//!
//! A Kinesis Lambda event holds records whose `kinesis.data` is base64. For a table streaming to
//! Kinesis, the decoded data is a DynamoDB change record: the shape of a DynamoDB Streams record,
//! with `tableName` instead of a stream ARN and without the stream's `SequenceNumber`. Its
//! `dynamodb` object, images, TTL deletions and attribute values are read by [`crate::ddb`].
//!
//! Kinesis may deliver these records duplicated and out of order, so their order is the change's
//! creation time in microseconds, then the Kinesis sequence number
//! ([`Seq::micros_then_decimal`]). The creation time is milliseconds unless
//! `ApproximateCreationDateTimePrecision` is `MICROSECOND`; both are converted from their
//! decimal text, never through a float.
//!
//! The raw line keeps the decoded change record as its `record`; the Kinesis metadata goes in its
//! origin ([`KinesisOrigin`]), where transform finds the sequence number again.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Change, Format, Route};
use crate::ddb::StreamRecord;
use crate::error::DecodeError;
use crate::json::{read_str, Limits};
use crate::raw::{KinesisOrigin, Origin, OriginKind};
use crate::seq::{truncate, Seq};
use crate::time::scaled;

/// The `eventSource` of the records of a Kinesis Lambda event.
pub const EVENT_SOURCE: &str = "aws:kinesis";

/// The `eventSource` of a DynamoDB change record.
pub const DYNAMODB_SOURCE: &str = "aws:dynamodb";

/// The path of the Kinesis sequence number in a Lambda record, for errors.
const SEQUENCE_PATH: &str = "kinesis.sequenceNumber";

/// The path of the creation time in a change record, for errors.
const CREATED_PATH: &str = "dynamodb.ApproximateCreationDateTime";

/// A borrowed view of one record of a Kinesis Lambda event (the object under `Records[]`).
#[derive(Debug, Deserialize)]
pub struct LambdaRecord<'a> {
    /// `shardId-…:<sequence number>`.
    #[serde(rename = "eventID", borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
    /// `aws:kinesis`.
    #[serde(rename = "eventSource", borrow, default)]
    pub event_source: Option<Cow<'a, str>>,
    /// The stream ARN.
    #[serde(rename = "eventSourceARN", borrow, default)]
    pub event_source_arn: Option<Cow<'a, str>>,
    /// The Kinesis record itself.
    #[serde(borrow, default)]
    pub kinesis: Option<KinesisData<'a>>,
}

/// The `kinesis` object of a Lambda record.
#[derive(Debug, Deserialize)]
pub struct KinesisData<'a> {
    /// The record's bytes, base64.
    #[serde(borrow, default)]
    pub data: Option<Cow<'a, str>>,
    /// The Kinesis sequence number, a decimal string of up to 129 digits.
    #[serde(rename = "sequenceNumber", borrow, default)]
    pub sequence_number: Option<Cow<'a, str>>,
    /// The partition key the producer chose.
    #[serde(rename = "partitionKey", borrow, default)]
    pub partition_key: Option<Cow<'a, str>>,
    /// When Kinesis received the record, in epoch seconds.
    #[serde(rename = "approximateArrivalTimestamp", borrow, default)]
    pub approximate_arrival_timestamp: Option<&'a RawValue>,
    /// The event schema version.
    #[serde(rename = "kinesisSchemaVersion", borrow, default)]
    pub kinesis_schema_version: Option<Cow<'a, str>>,
}

impl<'a> LambdaRecord<'a> {
    /// Reads the view from the record's JSON text.
    pub fn parse(text: &'a str) -> Result<Self, DecodeError> {
        object(text, "a Kinesis record")?;
        serde_json::from_str(text).map_err(|e| DecodeError::UnknownShape {
            detail: format!("not a Kinesis record: {e}"),
        })
    }

    /// The Kinesis sequence number, as it came, when the record has one.
    pub fn sequence_number(&self) -> Option<&str> {
        self.kinesis.as_ref()?.sequence_number.as_deref()
    }

    /// The shard id: the part of `eventID` before its `:`.
    pub fn shard_id(&self) -> Option<&str> {
        let id = self.event_id.as_deref()?;
        let (shard, _) = id.split_once(':')?;
        (!shard.is_empty()).then_some(shard)
    }

    /// Where the record came from. `index` names it when it has neither an `eventID` nor a
    /// sequence number.
    pub fn origin(&self, index: usize) -> Origin<'a> {
        let data = self.kinesis.as_ref();
        let kinesis = data.and_then(|d| {
            Some(KinesisOrigin {
                shard_id: self.shard_id().map(|s| Cow::Owned(s.to_owned())),
                sequence_number: d.sequence_number.clone()?,
                partition_key: d.partition_key.clone(),
                approximate_arrival_timestamp: d.approximate_arrival_timestamp.map(Cow::Borrowed),
                schema_version: d.kinesis_schema_version.clone(),
            })
        });
        let id = self
            .event_id
            .clone()
            .or_else(|| data.and_then(|d| d.sequence_number.clone()))
            .unwrap_or_else(|| Cow::Owned(format!("record-{index}")));
        Origin {
            kind: OriginKind::Kinesis,
            arn: self.event_source_arn.clone().unwrap_or(Cow::Borrowed("")),
            id,
            attributes: None,
            message_attributes: None,
            kinesis,
        }
    }

    /// The record's data: base64-decoded, checked to be UTF-8 JSON within `limits`, compacted.
    pub fn data(&self, limits: &Limits) -> Result<String, DecodeError> {
        let b64 = self
            .kinesis
            .as_ref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "kinesis".into(),
            })?
            .data
            .as_deref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "kinesis.data".into(),
            })?;
        // Base64 is 4 characters for every 3 bytes: refuse what cannot fit before decoding it.
        let bound = (limits.max_record_bytes.saturating_add(2) / 3)
            .saturating_mul(4)
            .saturating_add(4);
        if b64.len() > bound {
            return Err(DecodeError::TooLarge {
                size: b64.len() / 4 * 3,
                limit: limits.max_record_bytes,
            });
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| DecodeError::InvalidBase64 {
                path: "kinesis.data".into(),
                detail: e.to_string(),
            })?;
        let text = String::from_utf8(bytes).map_err(|e| DecodeError::InvalidUtf8 {
            detail: format!("in the decoded kinesis.data: {}", e.utf8_error()),
        })?;
        match read_str(&text, limits)? {
            Cow::Borrowed(_) => Ok(text),
            Cow::Owned(compact) => Ok(compact),
        }
    }
}

/// What a change record adds to the fields [`StreamRecord`] reads.
#[derive(Debug, Deserialize)]
struct Extras<'a> {
    #[serde(rename = "tableName", borrow, default)]
    table_name: Option<Cow<'a, str>>,
    #[serde(rename = "eventSource", borrow, default)]
    event_source: Option<Cow<'a, str>>,
    #[serde(rename = "recordFormat", borrow, default)]
    record_format: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    dynamodb: Option<ExtraData<'a>>,
}

#[derive(Debug, Deserialize)]
struct ExtraData<'a> {
    #[serde(rename = "ApproximateCreationDateTimePrecision", borrow, default)]
    precision: Option<Cow<'a, str>>,
}

/// A borrowed view of a DynamoDB change record, as decoded from a Kinesis record's data.
#[derive(Debug)]
pub struct ChangeRecord<'a> {
    /// The fields shared with DynamoDB Streams records: `eventName`, `userIdentity`, `dynamodb`.
    pub stream: StreamRecord<'a>,
    extras: Extras<'a>,
}

impl<'a> ChangeRecord<'a> {
    /// Reads the view from the decoded data's JSON text.
    ///
    /// Refuses JSON that is not an object, and objects that are not DynamoDB change records
    /// (another `eventSource`, or neither `eventSource` nor `dynamodb`).
    pub fn parse(text: &'a str) -> Result<Self, DecodeError> {
        let not_a_change = |e: serde_json::Error| DecodeError::UnknownShape {
            detail: format!("not a DynamoDB change record: {e}"),
        };
        object(text, "a DynamoDB change record")?;
        let stream: StreamRecord<'a> = serde_json::from_str(text).map_err(not_a_change)?;
        let extras: Extras<'a> = serde_json::from_str(text).map_err(not_a_change)?;
        match extras.event_source.as_deref() {
            Some(DYNAMODB_SOURCE) => {}
            Some(other) => {
                return Err(DecodeError::UnknownShape {
                    detail: format!(
                        "not a DynamoDB change record: eventSource is {:?}, expected {DYNAMODB_SOURCE:?}",
                        truncate(other)
                    ),
                })
            }
            None if stream.dynamodb.is_none() => {
                return Err(DecodeError::UnknownShape {
                    detail: "not a DynamoDB change record: it has neither eventSource nor dynamodb"
                        .into(),
                })
            }
            None => {}
        }
        if let Some(format) = extras.record_format.as_deref() {
            if format != "application/json" {
                return Err(DecodeError::InvalidField {
                    path: "recordFormat".into(),
                    detail: format!(
                        "expected \"application/json\", found {:?}",
                        truncate(format)
                    ),
                });
            }
        }
        Ok(Self { stream, extras })
    }

    /// The source table, from `tableName`.
    pub fn table(&self) -> Result<&str, DecodeError> {
        match self.extras.table_name.as_deref() {
            None => Err(DecodeError::MissingField {
                path: "tableName".into(),
            }),
            Some(t) if t.trim().is_empty() => Err(DecodeError::InvalidField {
                path: "tableName".into(),
                detail: "the table name is empty".into(),
            }),
            Some(t) => Ok(t),
        }
    }

    /// The creation time in microseconds, exact: milliseconds are multiplied up, and the
    /// precision field (absent means milliseconds) says which the number is.
    pub fn created_micros(&self) -> Result<u64, DecodeError> {
        let data = self
            .stream
            .dynamodb
            .as_ref()
            .ok_or_else(|| DecodeError::MissingField {
                path: "dynamodb".into(),
            })?;
        let precision = self
            .extras
            .dynamodb
            .as_ref()
            .and_then(|d| d.precision.as_deref());
        let shift = match precision {
            None | Some("MILLISECOND") => 3,
            Some("MICROSECOND") => 0,
            Some(other) => {
                return Err(DecodeError::InvalidField {
                    path: "dynamodb.ApproximateCreationDateTimePrecision".into(),
                    detail: format!(
                        "expected MILLISECOND or MICROSECOND, found {:?}",
                        truncate(other)
                    ),
                })
            }
        };
        let raw = match data.approximate_creation_date_time {
            Some(raw) if raw.get() != "null" => raw.get(),
            _ => {
                return Err(DecodeError::MissingSeq {
                    path: CREATED_PATH.into(),
                })
            }
        };
        let unit = if shift == 0 {
            "microseconds"
        } else {
            "milliseconds"
        };
        scaled(raw.trim_matches('"'), shift)
            .and_then(|us| u64::try_from(us).ok())
            .ok_or_else(|| DecodeError::InvalidField {
                path: CREATED_PATH.into(),
                detail: format!("expected epoch {unit}, found {}", truncate(raw)),
            })
    }

    /// Table, op, seq and commit time, with the Kinesis sequence number that delivered it.
    pub fn route(&self, kinesis_sequence: &str) -> Result<Route, DecodeError> {
        if self.stream.dynamodb.is_none() {
            return Err(DecodeError::MissingField {
                path: "dynamodb".into(),
            });
        }
        let table = self.table()?;
        let op = self.stream.op()?;
        let micros = self.created_micros()?;
        let seq = Seq::micros_then_decimal(micros, kinesis_sequence, SEQUENCE_PATH)?;
        let ts_ms = i64::try_from(micros / 1000).ok();
        Ok(Route::new(Format::DdbKinesis, table, op, seq, ts_ms))
    }

    /// The whole change, with keys and images decoded into DynamoDB attribute values.
    pub fn decode(&self, kinesis_sequence: &str) -> Result<Change, DecodeError> {
        self.stream.decode_with(self.route(kinesis_sequence)?)
    }
}

/// Refuses JSON that is not an object (serde would read a struct from an array too).
fn object(text: &str, what: &str) -> Result<(), DecodeError> {
    let found = match text.trim_start().as_bytes().first() {
        Some(b'{') => return Ok(()),
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    };
    Err(DecodeError::UnknownShape {
        detail: format!("not {what}: expected a JSON object, found {found}"),
    })
}

/// Decodes a landed `ddb-kinesis` raw line: its `record`, ordered by the line's landed `seq`.
///
/// Part of the order, the Kinesis sequence number, is not in the record but in the Lambda
/// record that delivered it, so transform takes the token ingest computed rather than computing
/// it again (as it does for every format whose record carries its own order).
pub fn decode_line(record: &str, seq: &Seq) -> Result<Change, DecodeError> {
    let change = ChangeRecord::parse(record)?;
    let mut route = change.route("0")?;
    route.seq = seq.clone();
    change.stream.decode_with(route)
}
#[cfg(test)]
mod tests;
