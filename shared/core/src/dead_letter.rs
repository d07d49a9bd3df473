//! What reaches the dead-letter queue, told apart (DESIGN §3.6).
//!
//! Three kinds of message reach the DLQ, and only the first says what went wrong:
//! 1. sluice's own failure envelopes (`sluice_failure: 1`): a record that failed, with its
//!    original and its cause. These are accounted for.
//! 2. The on-failure record of a stream event source mapping (`DDBStreamBatchInfo`, or
//!    `KinesisBatchInfo`): only a range of sequence numbers of one shard, given up after the
//!    mapping's retries. The records themselves are still in the stream, for its retention.
//! 3. A message moved by a queue's redrive policy after `maxReceiveCount` receives: a source
//!    message of the ingest queue, or a notification (or inline raw line) of the transform
//!    queue, exactly as it was sent. Nothing says why it failed.
//!
//! Kinds 2 and 3 are changes that were never processed. A pipeline holding one is not clean
//! until the change is brought back and processed; [`classify`] says which kind a body is and
//! what it holds, without any I/O.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::change::{Format, Op};
use crate::envelope::FailureEnvelope;
use crate::json::Limits;
use crate::notification::{self, Work};
use crate::seq::Seq;

/// A message on the dead-letter queue, by kind.
#[derive(Debug, Clone)]
pub enum DeadLetter {
    /// A sluice failure envelope.
    Envelope(Box<FailureEnvelope>),
    /// The on-failure record of a stream event source mapping.
    StreamBatch(StreamBatch),
    /// A message moved by a queue's redrive policy (or put on the DLQ by anything else).
    Moved(Moved),
}

impl DeadLetter {
    /// Whether the message stands for changes that were never processed: an on-failure record,
    /// or a moved message that names a change, an object or a body sluice cannot read.
    pub fn is_unprocessed(&self) -> bool {
        match self {
            Self::Envelope(_) => false,
            Self::StreamBatch(_) => true,
            Self::Moved(m) => !matches!(m.holds, Holds::Nothing { .. }),
        }
    }
}

/// Which kind of stream an on-failure record is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// A DynamoDB stream (`DDBStreamBatchInfo`).
    DynamoDb,
    /// A Kinesis data stream (`KinesisBatchInfo`).
    Kinesis,
}

/// The range of a shard that a stream event source mapping gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamBatch {
    /// DynamoDB or Kinesis.
    pub kind: StreamKind,
    /// The stream's ARN.
    pub stream_arn: Option<String>,
    /// The shard.
    pub shard_id: Option<String>,
    /// The first sequence number of the range.
    pub start_sequence_number: Option<String>,
    /// The last sequence number of the range.
    pub end_sequence_number: Option<String>,
    /// How many records the range holds.
    pub batch_size: Option<u64>,
    /// Why it was given up (`RetryAttemptsExhausted`, `RecordAgeExceeded`…).
    pub condition: Option<String>,
    /// When it was given up (RFC 3339).
    pub timestamp: Option<String>,
}

impl std::fmt::Display for StreamBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unknown = "?";
        write!(
            f,
            "{} record(s) of shard {} of {} stream {}, sequence numbers {} to {}",
            self.batch_size
                .map_or_else(|| unknown.to_owned(), |n| n.to_string()),
            self.shard_id.as_deref().unwrap_or(unknown),
            match self.kind {
                StreamKind::DynamoDb => "DynamoDB",
                StreamKind::Kinesis => "Kinesis",
            },
            self.stream_arn.as_deref().unwrap_or(unknown),
            self.start_sequence_number.as_deref().unwrap_or(unknown),
            self.end_sequence_number.as_deref().unwrap_or(unknown),
        )?;
        if let Some(c) = &self.condition {
            write!(f, ", given up ({c})")?;
        }
        Ok(())
    }
}

/// A message moved to the DLQ without an envelope, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Moved {
    /// What the body holds.
    pub holds: Holds,
}

/// What a moved message holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holds {
    /// A source change meant for the ingest queue.
    Change {
        /// The source format.
        format: Format,
        /// The source table.
        table: String,
        /// The operation.
        op: Op,
        /// The ordering token.
        seq: Seq,
    },
    /// Raw objects named by an S3 notification meant for the transform queue.
    Objects {
        /// `s3://bucket/key` of each.
        refs: Vec<String>,
    },
    /// A raw line sent inline to the transform queue.
    RawLine {
        /// The raw line's table, when it can be read.
        table: Option<String>,
        /// The raw line's ordering token, when it can be read.
        seq: Option<String>,
    },
    /// A body sluice cannot read: ingest would have dead-lettered it with this code, had it
    /// been processed.
    Unreadable {
        /// The decoding error's code (`not_json`, `unknown_shape`…).
        code: &'static str,
        /// The decoding error.
        detail: String,
    },
    /// Nothing to process: an `s3:TestEvent`, or notifications other than `ObjectCreated`.
    Nothing {
        /// What it is.
        what: String,
    },
}

impl std::fmt::Display for Holds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Change {
                format,
                table,
                op,
                seq,
            } => write!(
                f,
                "a change to table {table:?} ({} {}, seq {seq})",
                format.as_str(),
                op.as_str()
            ),
            Self::Objects { refs } => write!(
                f,
                "a notification of raw object(s) {} not yet transformed",
                refs.join(", ")
            ),
            Self::RawLine { table, seq } => write!(
                f,
                "a raw line of table {} (seq {}) not yet transformed",
                table.as_deref().unwrap_or("?"),
                seq.as_deref().unwrap_or("?")
            ),
            Self::Unreadable { code, detail } => {
                write!(f, "a body that cannot be read ({code}: {detail})")
            }
            Self::Nothing { what } => f.write_str(what),
        }
    }
}

#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    sluice_failure: Option<&'a RawValue>,
    #[serde(rename = "DDBStreamBatchInfo", borrow, default)]
    ddb: Option<&'a RawValue>,
    #[serde(rename = "KinesisBatchInfo", borrow, default)]
    kinesis: Option<&'a RawValue>,
    #[serde(rename = "requestContext", borrow, default)]
    request_context: Option<&'a RawValue>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct BatchInfo {
    #[serde(default)]
    shard_id: Option<String>,
    #[serde(default)]
    start_sequence_number: Option<String>,
    #[serde(default)]
    end_sequence_number: Option<String>,
    #[serde(default)]
    batch_size: Option<u64>,
    #[serde(default)]
    stream_arn: Option<String>,
}

#[derive(Deserialize, Default)]
struct RequestContext {
    #[serde(default)]
    condition: Option<String>,
}

#[derive(Deserialize)]
struct LineProbe {
    #[serde(default)]
    table: Option<String>,
    #[serde(default)]
    seq: Option<String>,
}

/// Tells what a DLQ message body is.
///
/// A body that looks like an envelope (`sluice_failure`) but does not read as one is not
/// accounted for: it is classified by what else it holds, like any moved message.
pub fn classify(body: &str, limits: &Limits) -> DeadLetter {
    // Only an object: serde reads a struct from an array too, field by field.
    let probe: Option<Probe<'_>> = body
        .trim_start()
        .starts_with('{')
        .then(|| serde_json::from_str(body).ok())
        .flatten();
    if let Some(p) = &probe {
        if p.sluice_failure.is_some_and(|v| v.get() == "1") {
            if let Ok(env) = serde_json::from_str::<FailureEnvelope>(body) {
                return DeadLetter::Envelope(Box::new(env));
            }
        }
        let batch = match (p.ddb, p.kinesis) {
            (Some(info), _) => Some((StreamKind::DynamoDb, info)),
            (None, Some(info)) => Some((StreamKind::Kinesis, info)),
            (None, None) => None,
        };
        if let Some((kind, info)) = batch {
            let info: BatchInfo = serde_json::from_str(info.get()).unwrap_or_default();
            let context: RequestContext = p
                .request_context
                .and_then(|c| serde_json::from_str(c.get()).ok())
                .unwrap_or_default();
            return DeadLetter::StreamBatch(StreamBatch {
                kind,
                stream_arn: info.stream_arn,
                shard_id: info.shard_id,
                start_sequence_number: info.start_sequence_number,
                end_sequence_number: info.end_sequence_number,
                batch_size: info.batch_size,
                condition: context.condition,
                timestamp: p.timestamp.clone(),
            });
        }
    }
    DeadLetter::Moved(Moved {
        holds: holds(body, limits),
    })
}

/// What a moved body holds: a transform message first (the shapes are disjoint from source
/// events), then a source change.
fn holds(body: &str, limits: &Limits) -> Holds {
    match notification::parse(body, "") {
        Ok(work) if work.is_empty() => {
            return Holds::Nothing {
                what: "a transform message that names no new object (an s3:TestEvent, or other \
                       S3 notifications)"
                    .into(),
            }
        }
        Ok(work) => {
            let mut refs = Vec::new();
            for w in work {
                match w {
                    Work::Object { bucket, key } => refs.push(format!("s3://{bucket}/{key}")),
                    Work::Line { bucket, key, line } => {
                        refs.push(format!("s3://{bucket}/{key}#L{line}"));
                    }
                    Work::Window { bucket, key, .. } => refs.push(format!("s3://{bucket}/{key}")),
                    Work::Inline { line, .. } => {
                        let probe: Option<LineProbe> = serde_json::from_str(&line).ok();
                        return Holds::RawLine {
                            table: probe.as_ref().and_then(|p| p.table.clone()),
                            seq: probe.and_then(|p| p.seq),
                        };
                    }
                }
            }
            return Holds::Objects { refs };
        }
        Err(_) => {}
    }
    match crate::body::decode(body, limits) {
        Ok(change) => Holds::Change {
            format: change.route.format,
            table: change.route.table,
            op: change.route.op,
            seq: change.route.seq,
        },
        Err(e) => Holds::Unreadable {
            code: e.code(),
            detail: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits::default()
    }

    #[test]
    fn envelopes_are_accounted_for() {
        let body = r#"{"sluice_failure":1,"failure_id":"f1","step":"ingest","error_class":"bad_format","error_code":"not_json","error":"x","origin":{"kind":"sqs"},"original":"hi","original_bytes":2,"first_failed_at":"t","failed_at":"t","retry_count":0,"pipeline_version":"0.1.0"}"#;
        let d = classify(body, &limits());
        assert!(matches!(&d, DeadLetter::Envelope(e) if e.failure_id == "f1"));
        assert!(!d.is_unprocessed());
    }

    #[test]
    fn a_broken_envelope_is_not_accounted_for() {
        // It says it is an envelope but lacks the fields of one: whatever it held is unknown.
        let d = classify(r#"{"sluice_failure":1,"failure_id":"f1"}"#, &limits());
        assert!(d.is_unprocessed(), "{d:?}");
    }

    #[test]
    fn stream_on_failure_records_are_unprocessed_ranges() {
        let body = r#"{"requestContext":{"requestId":"r","functionArn":"arn:aws:lambda:us-east-2:1:function:f","condition":"RetryAttemptsExhausted","approximateInvokeCount":1},"responseContext":{"statusCode":200},"version":"1.0","timestamp":"2019-11-14T00:13:49Z","DDBStreamBatchInfo":{"shardId":"shardId-1","startSequenceNumber":"800","endSequenceNumber":"802","batchSize":3,"streamArn":"arn:aws:dynamodb:us-east-2:1:table/t/stream/2019"}}"#;
        let d = classify(body, &limits());
        let DeadLetter::StreamBatch(b) = &d else {
            panic!("{d:?}")
        };
        assert_eq!(b.kind, StreamKind::DynamoDb);
        assert_eq!(b.batch_size, Some(3));
        assert_eq!(b.condition.as_deref(), Some("RetryAttemptsExhausted"));
        assert!(d.is_unprocessed());
        assert_eq!(
            b.to_string(),
            "3 record(s) of shard shardId-1 of DynamoDB stream arn:aws:dynamodb:us-east-2:1:table/t/stream/2019, sequence numbers 800 to 802, given up (RetryAttemptsExhausted)"
        );
        let kinesis = r#"{"KinesisBatchInfo":{"shardId":"shardId-000000000000","startSequenceNumber":"4959","endSequenceNumber":"4960","batchSize":2,"streamArn":"arn:aws:kinesis:us-east-1:1:stream/s"}}"#;
        assert!(matches!(
            classify(kinesis, &limits()),
            DeadLetter::StreamBatch(StreamBatch {
                kind: StreamKind::Kinesis,
                ..
            })
        ));
    }

    #[test]
    fn a_moved_source_message_names_its_change() {
        let body =
            r#"{"table":"customers","op":"update","key":{"id":7},"after":{"id":7},"seq":42}"#;
        let d = classify(body, &limits());
        assert!(d.is_unprocessed());
        let DeadLetter::Moved(m) = d else { panic!() };
        assert_eq!(
            m.holds.to_string(),
            "a change to table \"customers\" (app update, seq 0000000000000000000000000000000000000042)"
        );
        let dbz = r#"{"before":null,"after":{"id":1},"source":{"connector":"postgresql","table":"products","lsn":46523128},"op":"c","ts_ms":1}"#;
        assert!(matches!(
            classify(dbz, &limits()),
            DeadLetter::Moved(Moved {
                holds: Holds::Change {
                    format: Format::Debezium,
                    ..
                }
            })
        ));
    }

    #[test]
    fn moved_transform_messages_name_their_objects_or_line() {
        let s3 = r#"{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"raw%2Ft%2Fx.ndjson.gz"}}}]}"#;
        let DeadLetter::Moved(m) = classify(s3, &limits()) else {
            panic!()
        };
        assert_eq!(
            m.holds,
            Holds::Objects {
                refs: vec!["s3://b/raw/t/x.ndjson.gz".into()]
            }
        );
        let line = r#"{"v":1,"format":"app","table":"t","op":"insert","seq":"7","ts_ms":1,"ts_source":"source","ingested_ms":1,"origin":{},"record":{}}"#;
        let DeadLetter::Moved(m) = classify(line, &limits()) else {
            panic!()
        };
        assert_eq!(
            m.holds,
            Holds::RawLine {
                table: Some("t".into()),
                seq: Some("7".into())
            }
        );
    }

    #[test]
    fn a_test_event_holds_nothing_and_garbage_is_unprocessed() {
        let test_event = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Bucket":"b"}"#;
        let d = classify(test_event, &limits());
        assert!(!d.is_unprocessed(), "{d:?}");
        for body in ["hello world", "", "{\"a\":1}", "[1,2]"] {
            let d = classify(body, &limits());
            assert!(
                matches!(
                    &d,
                    DeadLetter::Moved(Moved {
                        holds: Holds::Unreadable { .. }
                    })
                ),
                "{body}: {d:?}"
            );
            assert!(d.is_unprocessed());
        }
    }
}
