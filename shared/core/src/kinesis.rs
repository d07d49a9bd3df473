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
mod tests {
    use serde_dynamo::AttributeValue as A;

    use super::*;
    use crate::change::{Image, Op};

    const STREAM: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/orders-changes";
    const SEQ: &str = "49657828409187701520019995242508390119953358325192589314";

    fn b64(s: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// A change record as DynamoDB writes it to Kinesis.
    fn change(event: &str, created: &str, precision: Option<&str>, images: &str) -> String {
        let precision = precision
            .map(|p| format!(r#","ApproximateCreationDateTimePrecision":"{p}""#))
            .unwrap_or_default();
        format!(
            r#"{{"awsRegion":"us-east-1","eventID":"0b6e3c2a-1","eventName":"{event}","userIdentity":null,"recordFormat":"application/json","tableName":"orders","dynamodb":{{"ApproximateCreationDateTime":{created},"Keys":{{"pk":{{"S":"o-1"}}}}{images},"SizeBytes":42{precision}}},"eventSource":"aws:dynamodb"}}"#
        )
    }

    fn lambda_record(data: &str, seq: &str) -> String {
        format!(
            r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"A1B2","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":1795520000.123}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000003:{seq}","eventName":"aws:kinesis:record","awsRegion":"us-east-1","eventSourceARN":"{STREAM}"}}"#
        )
    }

    fn route(text: &str) -> Result<Route, DecodeError> {
        ChangeRecord::parse(text)?.route(SEQ)
    }

    #[test]
    fn microsecond_precision_is_kept_exactly() {
        let text = change(
            "INSERT",
            "1720740233012995",
            Some("MICROSECOND"),
            r#","NewImage":{"pk":{"S":"o-1"}}"#,
        );
        let r = route(&text).unwrap();
        assert_eq!(
            r.seq,
            Seq::micros_then_decimal(1_720_740_233_012_995, SEQ, "s").unwrap()
        );
        assert_eq!(r.ts_ms, Some(1_720_740_233_012));
        assert_eq!(r.format, Format::DdbKinesis);
        assert_eq!(r.table, "orders");
        assert_eq!(r.op, Op::Insert);
    }

    #[test]
    fn millisecond_precision_is_multiplied_up() {
        let text = change("MODIFY", "1731924555370", Some("MILLISECOND"), "");
        let r = route(&text).unwrap();
        assert_eq!(
            r.seq,
            Seq::micros_then_decimal(1_731_924_555_370_000, SEQ, "s").unwrap()
        );
        assert_eq!(r.ts_ms, Some(1_731_924_555_370));
        assert_eq!(r.op, Op::Update);
        // Other notations of the same number give the same token: no float on the way.
        for same in ["1.73192455537E12", "\"1731924555370\"", "1731924555370.0"] {
            let r2 = route(&change("MODIFY", same, Some("MILLISECOND"), "")).unwrap();
            assert_eq!(r2.seq, r.seq, "{same}");
        }
    }

    #[test]
    fn absent_precision_means_milliseconds() {
        let r = route(&change("REMOVE", "1731924555370", None, "")).unwrap();
        assert_eq!(
            ChangeRecord::parse(&change("REMOVE", "1731924555370", None, ""))
                .unwrap()
                .created_micros()
                .unwrap(),
            1_731_924_555_370_000
        );
        assert_eq!(r.ts_ms, Some(1_731_924_555_370));
        assert_eq!(r.op, Op::Delete);
    }

    #[test]
    fn creation_time_orders_before_the_sequence_number() {
        let early = ChangeRecord::parse(&change("MODIFY", "1000001", Some("MICROSECOND"), ""))
            .unwrap()
            .route(&"9".repeat(60))
            .unwrap();
        let late = ChangeRecord::parse(&change("MODIFY", "1000002", Some("MICROSECOND"), ""))
            .unwrap()
            .route("1")
            .unwrap();
        assert!(early.seq < late.seq);
        // Same creation tick: the Kinesis sequence number decides, numerically.
        let a = route(&change("MODIFY", "5", None, "")).unwrap();
        let b = ChangeRecord::parse(&change("MODIFY", "5", None, ""))
            .unwrap()
            .route(&format!("{SEQ}0"))
            .unwrap();
        assert!(a.seq < b.seq);
    }

    #[test]
    fn images_ttl_and_lenient_attributes_come_from_the_stream_decoder() {
        let text = change(
            "MODIFY",
            "1720742302233719",
            Some("MICROSECOND"),
            r#","NewImage":{"pk":{"S":"o-1"},"n":{"N":12.50},"ns":{"NS":[1,0.34]},"gone":{"S":null}},"OldImage":{"pk":{"S":"o-1"},"n":{"N":"1"}}"#,
        );
        let c = ChangeRecord::parse(&text).unwrap().decode(SEQ).unwrap();
        let Some(Image::Ddb(after)) = c.after else {
            panic!("no new image")
        };
        assert_eq!(after["n"], A::N("12.50".into()));
        assert_eq!(after["ns"], A::Ns(vec!["1".into(), "0.34".into()]));
        assert_eq!(after["gone"], A::Null(true));
        assert!(c.before.is_some_and(|b| b.contains("n")));
        assert!(c.key.is_some_and(|k| k.contains("pk")));
        assert!(!c.ttl_delete);

        let ttl = change("REMOVE", "1", None, r#","OldImage":{"pk":{"S":"o-1"}}"#).replace(
            r#""userIdentity":null"#,
            r#""userIdentity":{"type":"Service","principalId":"dynamodb.amazonaws.com"}"#,
        );
        let c = ChangeRecord::parse(&ttl).unwrap().decode(SEQ).unwrap();
        assert!(c.ttl_delete);

        let bad = change(
            "INSERT",
            "1",
            None,
            r#","NewImage":{"pk":{"S":"o-1"},"blob":{"B":"%%"}}"#,
        );
        // As in a stream record: the column is set aside for a contract that reads it to refuse.
        let c = ChangeRecord::parse(&bad).unwrap().decode(SEQ).unwrap();
        assert!(
            c.unreadable["blob"].contains("invalid base64"),
            "{:?}",
            c.unreadable
        );
    }

    #[test]
    fn lambda_record_metadata_goes_to_the_origin() {
        let data = b64(change("INSERT", "1", None, "").as_bytes());
        let text = lambda_record(&data, SEQ);
        let r = LambdaRecord::parse(&text).unwrap();
        assert_eq!(r.sequence_number(), Some(SEQ));
        assert_eq!(r.shard_id(), Some("shardId-000000000003"));
        let origin = serde_json::to_value(r.origin(0)).unwrap();
        assert_eq!(
            origin,
            serde_json::json!({
                "kind": "kinesis",
                "arn": STREAM,
                "id": format!("shardId-000000000003:{SEQ}"),
                "kinesis": {
                    "shard_id": "shardId-000000000003",
                    "sequence_number": SEQ,
                    "partition_key": "A1B2",
                    "approximate_arrival_timestamp": 1795520000.123,
                    "schema_version": "1.0",
                }
            })
        );
        assert_eq!(
            r.data(&Limits::default()).unwrap(),
            change("INSERT", "1", None, "")
        );
    }

    #[test]
    fn pretty_printed_data_is_compacted_verbatim() {
        let pretty = "{\n  \"eventName\": \"INSERT\",\n  \"tableName\": \"orders\",\n  \"eventSource\": \"aws:dynamodb\",\n  \"dynamodb\": {\"ApproximateCreationDateTime\": 1.5E3, \"Keys\": {\"pk\": {\"S\": \"a b\"}}}\n}";
        let text = lambda_record(&b64(pretty.as_bytes()), "1");
        let data = LambdaRecord::parse(&text)
            .unwrap()
            .data(&Limits::default())
            .unwrap();
        assert_eq!(
            data,
            r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb","dynamodb":{"ApproximateCreationDateTime":1.5E3,"Keys":{"pk":{"S":"a b"}}}}"#
        );
    }

    #[test]
    fn a_line_decodes_with_the_seq_ingest_landed() {
        let data = change("INSERT", "7", None, r#","NewImage":{"pk":{"S":"o-1"}}"#);
        let text = lambda_record(&b64(data.as_bytes()), SEQ);
        let landed = ingest(&text).unwrap();
        let c = decode_line(&data, &landed.seq).unwrap();
        assert_eq!(c.route, landed);
    }

    /// Decodes a Lambda record's data and routes it, as ingest does.
    fn ingest(text: &str) -> Result<Route, DecodeError> {
        let r = LambdaRecord::parse(text)?;
        let data = r.data(&Limits::default())?;
        let seq = r.sequence_number().ok_or(DecodeError::MissingSeq {
            path: SEQUENCE_PATH.into(),
        })?;
        ChangeRecord::parse(&data)?.route(seq)
    }

    fn code(text: &str) -> &'static str {
        match ingest(text) {
            Ok(r) => panic!("accepted: {r:?}"),
            Err(e) => e.code(),
        }
    }

    fn with_data(data: &[u8]) -> String {
        lambda_record(&b64(data), SEQ)
    }

    #[test]
    fn data_that_is_not_base64() {
        let text = lambda_record("not base64!!", SEQ);
        assert_eq!(code(&text), "invalid_base64");
        let err = ingest(&text).unwrap_err();
        assert!(err.to_string().contains("kinesis.data"), "{err}");
    }

    #[test]
    fn data_that_is_not_utf8() {
        assert_eq!(code(&with_data(b"{\"a\":\"\xff\xfe\"}")), "invalid_utf8");
    }

    #[test]
    fn data_that_is_not_json() {
        assert_eq!(code(&with_data(b"INSERT orders o-1")), "not_json");
        assert_eq!(code(&with_data(b"{\"eventName\":\"INS")), "truncated");
        assert_eq!(code(&with_data(b"{} {}")), "trailing_content");
        assert_eq!(code(&with_data(b"")), "empty");
        assert_eq!(code(&with_data(b" \n ")), "whitespace_only");
    }

    #[test]
    fn data_over_the_limits() {
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert_eq!(code(&with_data(deep.as_bytes())), "too_deep");
        let limits = Limits {
            max_record_bytes: 64,
            ..Limits::default()
        };
        let big = with_data(change("INSERT", "1", None, "").as_bytes());
        let err = LambdaRecord::parse(&big)
            .unwrap()
            .data(&limits)
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
        // Just over the limit once decoded, though the base64 text passes the first check.
        let exact = Limits {
            max_record_bytes: change("INSERT", "1", None, "").len() - 1,
            ..Limits::default()
        };
        let err = LambdaRecord::parse(&big).unwrap().data(&exact).unwrap_err();
        assert_eq!(err.code(), "too_large");
        let unbounded = Limits {
            max_record_bytes: usize::MAX,
            ..Limits::default()
        };
        assert!(LambdaRecord::parse(&big).unwrap().data(&unbounded).is_ok());
    }

    #[test]
    fn json_that_is_not_a_dynamodb_change_record() {
        for not_a_change in [
            r#"{"device":"foo","temperature":42.42}"#,
            r#"{"eventSource":"foo:bar","dynamodb":{}}"#,
            r#"[1,2,3]"#,
            r#"[null,"INSERT",null,null,{"Keys":{}}]"#,
            "42",
            r#""INSERT""#,
            r#"{"eventSource":"aws:dynamodb","dynamodb":"INSERT"}"#,
        ] {
            assert_eq!(
                code(&with_data(not_a_change.as_bytes())),
                "unknown_shape",
                "{not_a_change}"
            );
        }
    }

    #[test]
    fn a_change_record_missing_its_table_or_dynamodb() {
        let no_table = change("INSERT", "1", None, "").replace(r#""tableName":"orders","#, "");
        assert_eq!(code(&with_data(no_table.as_bytes())), "missing_field");
        assert!(ingest(&with_data(no_table.as_bytes()))
            .unwrap_err()
            .to_string()
            .contains("tableName"));
        let empty_table = change("INSERT", "1", None, "").replace("\"orders\"", "\"  \"");
        assert_eq!(code(&with_data(empty_table.as_bytes())), "invalid_field");
        let no_dynamodb =
            r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb"}"#;
        let err = ingest(&with_data(no_dynamodb.as_bytes())).unwrap_err();
        assert_eq!(
            err,
            DecodeError::MissingField {
                path: "dynamodb".into()
            }
        );
    }

    #[test]
    fn a_change_record_with_a_bad_event_name_or_format() {
        let odd = change("UPSERT", "1", None, "");
        assert_eq!(code(&with_data(odd.as_bytes())), "invalid_field");
        let none = change("INSERT", "1", None, "").replace(r#""eventName":"INSERT","#, "");
        assert_eq!(code(&with_data(none.as_bytes())), "missing_field");
        let ion = change("INSERT", "1", None, "").replace("application/json", "application/ion");
        let err = ingest(&with_data(ion.as_bytes())).unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().contains("recordFormat"), "{err}");
    }

    #[test]
    fn a_change_record_without_a_usable_creation_time() {
        let absent = r#"{"eventName":"INSERT","tableName":"orders","eventSource":"aws:dynamodb","dynamodb":{"Keys":{"pk":{"S":"a"}}}}"#;
        assert_eq!(
            ingest(&with_data(absent.as_bytes())).unwrap_err(),
            DecodeError::MissingSeq {
                path: CREATED_PATH.into()
            }
        );
        assert_eq!(
            code(&with_data(change("INSERT", "null", None, "").as_bytes())),
            "missing_seq"
        );
        for bad in ["\"yesterday\"", "-5", "true", "1e400"] {
            let err = ingest(&with_data(change("INSERT", bad, None, "").as_bytes())).unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad}");
            assert!(err.to_string().contains(CREATED_PATH), "{err}");
        }
        let nano = change("INSERT", "1", Some("NANOSECOND"), "");
        let err = ingest(&with_data(nano.as_bytes())).unwrap_err();
        assert!(
            err.to_string()
                .contains("dynamodb.ApproximateCreationDateTimePrecision"),
            "{err}"
        );
    }

    #[test]
    fn a_lambda_record_without_data_or_sequence_number() {
        let no_data = r#"{"kinesis":{"sequenceNumber":"1"},"eventSource":"aws:kinesis"}"#;
        assert_eq!(
            ingest(no_data).unwrap_err(),
            DecodeError::MissingField {
                path: "kinesis.data".into()
            }
        );
        let no_kinesis = r#"{"eventSource":"aws:kinesis"}"#;
        assert_eq!(code(no_kinesis), "missing_field");
        let data = b64(change("INSERT", "1", None, "").as_bytes());
        let no_seq = format!(r#"{{"kinesis":{{"data":"{data}"}},"eventSource":"aws:kinesis"}}"#);
        assert_eq!(code(&no_seq), "missing_seq");
        let bad_seq = lambda_record(&data, "49x");
        assert_eq!(code(&bad_seq), "invalid_field");
        let not_a_record = r#"{"kinesis":{"data":42}}"#;
        assert_eq!(code(not_a_record), "unknown_shape");
        // Without eventID or sequence number, the origin still names the record.
        let r = LambdaRecord::parse(no_kinesis).unwrap();
        assert_eq!(r.origin(7).id, "record-7");
        assert!(r.origin(7).kinesis.is_none());
    }
}
