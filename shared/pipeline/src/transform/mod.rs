//! The transform handler: raw staging becomes typed tables, row by row, through contracts.
//!
//! It takes an SQS event whose messages are S3 `ObjectCreated` notifications of the raw bucket
//! (one message may name several objects), or raw lines sent inline (the redrive path).
//! `s3:TestEvent` messages are acknowledged and ignored. Each object is streamed line by line:
//!
//! 1. the line is read (bounded by `SLUICE_MAX_LINE_BYTES`) and its record decoded again by its
//!    format, so a decoder fix applies on replay;
//! 2. every contract fed by the line's table and format types it into a row;
//! 3. rows are coalesced per key within the object, so only the highest `seq` is written;
//! 4. the winners are written conditionally, guarded by `seq` and the contract version.
//!
//! A line that cannot be read, has no contract or violates its contract goes to the DLQ with
//! `raw_ref = s3://bucket/key#L<n>`, and the rest of the object goes on. A retriable failure
//! (throttling that outlasted the retries, a broken connection) fails the message, so the whole
//! object is processed again later, which is always safe: writes are conditional and dead letters
//! have deterministic ids.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::raw_objects::{RawObjects, S3RawObjects};
use sluice_aws::typed_tables::{DynamoTypedTables, TypedTables};
use sluice_aws::{AwsError, DeadLetters};
use sluice_core::envelope::{FailureEnvelope, Step};
use sluice_core::notification::{self, Work};

use crate::config::TransformConfig;
use crate::contracts::{ContractCache, ContractSource};
use crate::sqs::SqsRecordView;

mod object;
#[cfg(test)]
mod orchestration_tests;

use object::{ObjectBatch, Pick};

/// The function name used in metrics.
pub const FUNCTION: &str = "transform";

/// An invocation that cannot be handled message by message.
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    /// The event is not an SQS event.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),
}

impl TransformError {
    /// An unsupported event is a wiring mistake, and fails the same way again.
    pub fn is_retriable(&self) -> bool {
        false
    }

    /// The error type the Lambda runtime reports (`errorType`), with its retriable class.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::UnsupportedEvent(_) => "NotRetriable.UnsupportedEvent",
        }
    }
}

/// What the transform handler needs.
pub struct Transform<O, T, D> {
    /// Settings read at cold start.
    pub config: TransformConfig,
    /// Raw staging, for reading.
    pub objects: O,
    /// The typed tables.
    pub tables: T,
    /// The dead-letter queue.
    pub dead_letters: D,
    /// The contracts, cached.
    pub contracts: ContractCache,
    /// Where metrics go.
    pub metrics: Sink,
}

impl Transform<S3RawObjects, DynamoTypedTables, SqsDeadLetters> {
    /// The AWS adapters, with clients built from `sdk`.
    pub fn from_sdk(config: TransformConfig, sdk: &SdkConfig, metrics: Sink) -> Self {
        let s3 = s3_client(sdk);
        Self {
            objects: S3RawObjects::new(s3.clone()),
            tables: DynamoTypedTables::new(
                aws_sdk_dynamodb::Client::new(sdk),
                config.typed_table_prefix.clone(),
            ),
            dead_letters: SqsDeadLetters::new(
                sqs_client(sdk),
                config.dlq_url.clone(),
                s3.clone(),
                config.quarantine_bucket.clone(),
            ),
            contracts: ContractCache::new(
                ContractSource::parse(&config.contracts),
                Duration::from_secs(config.contracts_ttl_secs),
                s3,
            ),
            config,
            metrics,
        }
    }
}

/// Counts of one invocation, per typed table where it applies.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TransformStats {
    /// Raw lines read.
    pub lines: usize,
    /// Objects read.
    pub objects: usize,
    /// Lines about the source rather than a row (DMS control records, Debezium messages).
    pub control: usize,
    /// Lines dead-lettered, by error class.
    pub quarantined: BTreeMap<&'static str, usize>,
    /// Lines dead-lettered, by error code.
    pub dead_letters: BTreeMap<String, usize>,
    /// Per typed table: rows written, stale (superseded in the object or by a stored row), and
    /// end-to-end latencies of written rows in ms.
    pub tables: BTreeMap<String, TableStats>,
    /// Times an object's winners were written before its end, because the rows held reached
    /// `coalesce_max_bytes`.
    pub partial_flushes: usize,
}

/// Counts for one typed table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TableStats {
    /// Rows written: conditional writes that DynamoDB acknowledged in this invocation.
    pub written: usize,
    /// Rows found already written from the same raw line: a write whose acknowledgement was
    /// lost and that was sent again, or an object processed again. Not written twice, and not
    /// stale either.
    pub already_written: usize,
    /// Rows not written because a newer (or equal) change of another line was already there,
    /// or was in the same object.
    pub stale: usize,
    /// Lines for this table that were dead-lettered.
    pub quarantined: usize,
    /// Now minus source commit time of written rows, in ms (at most 100 samples).
    pub latency_ms: Vec<f64>,
}

/// Why a message must be delivered again: everything it asked for that is done is durable and
/// idempotent, but not all of it is done.
#[derive(Debug, thiserror::Error)]
enum Retry {
    /// The contracts could not be loaded.
    #[error("contracts unavailable: {0}")]
    Contracts(#[source] crate::contracts::LoadError),
    /// A call failed in a way a retry can fix (throttling, an outage).
    #[error(transparent)]
    Aws(AwsError),
    /// A raw object broke off while it was read.
    #[error("reading {object}: {source}")]
    Read {
        /// The object.
        object: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A dead letter could not be sent, so its line is not durable anywhere.
    #[error("dead letter not sent: {0}")]
    DeadLetter(#[source] AwsError),
}

/// Handles one SQS event; returns the messages to retry.
pub async fn handle<O: RawObjects, T: TypedTables, D: DeadLetters>(
    event: &str,
    deps: &Transform<O, T, D>,
) -> Result<(SqsBatchResponse, TransformStats), TransformError> {
    let started = Instant::now();
    let now_ms = chrono::Utc::now().timestamp_millis();
    #[derive(Deserialize)]
    struct EventView<'a> {
        #[serde(rename = "Records", borrow)]
        records: Option<Vec<&'a RawValue>>,
    }
    let view: EventView<'_> = serde_json::from_str(event).map_err(|e| {
        TransformError::UnsupportedEvent(format!("expected an object with Records: {e}"))
    })?;
    let records = view
        .records
        .ok_or_else(|| TransformError::UnsupportedEvent("the event has no Records array".into()))?;
    let mut stats = TransformStats::default();
    let mut response = SqsBatchResponse::default();
    for (i, raw) in records.iter().enumerate() {
        let record: SqsRecordView<'_> = match serde_json::from_str(raw.get()) {
            Ok(r) => r,
            Err(e) => {
                return Err(TransformError::UnsupportedEvent(format!(
                    "record {i} is not an SQS message: {e}"
                )))
            }
        };
        let id = record.message_id.as_deref().unwrap_or_default().to_owned();
        if let Err(why) = Box::pin(handle_message(&record, deps, now_ms, &mut stats)).await {
            tracing::warn!(message_id = %id, reason = %why, "Message will be retried.");
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            response.batch_item_failures.push(f);
        }
    }
    emit_metrics(
        &stats,
        started,
        (records.len(), response.batch_item_failures.len()),
        &deps.metrics,
        now_ms,
    );
    crate::failpoint::hit("transform.before_response");
    Ok((response, stats))
}

async fn handle_message<O: RawObjects, T: TypedTables, D: DeadLetters>(
    record: &SqsRecordView<'_>,
    deps: &Transform<O, T, D>,
    now_ms: i64,
    stats: &mut TransformStats,
) -> Result<(), Retry> {
    let message_id = record.message_id.as_deref().unwrap_or_default();
    let queue = record.event_source_arn.as_deref().unwrap_or_default();
    let body: String = record
        .body
        .and_then(|b| serde_json::from_str(b.get()).ok())
        .unwrap_or_default();
    let mark = record.redrive_mark();
    let inline_ref = mark
        .as_ref()
        .and_then(|m| m.raw_ref.clone())
        .unwrap_or_else(|| format!("sqs://{queue}/{message_id}"));
    let first_failed_at = mark.and_then(|m| m.first_failed_at);
    let work = match notification::parse(&body, &inline_ref) {
        Ok(w) => w,
        Err(err) => {
            let origin = serde_json::json!({"kind": "sqs", "arn": queue, "id": message_id});
            let mut env = FailureEnvelope::new(
                Step::Transform,
                err.class(),
                err.code(),
                format!("transform message not understood: {err}"),
                (queue, message_id),
                serde_json::value::to_raw_value(&origin).unwrap_or_default(),
                now_ms,
            )
            .with_original(body.clone());
            env.retry_count = record.retry_count();
            if let Some(at) = first_failed_at {
                env.first_failed_at = at;
            }
            *stats.quarantined.entry(err.class().as_str()).or_default() += 1;
            *stats.dead_letters.entry(err.code().to_owned()).or_default() += 1;
            return deps.dead_letters.send(env).await.map_err(Retry::DeadLetter);
        }
    };
    let contracts = deps.contracts.get().await.map_err(Retry::Contracts)?;
    let mut result = Ok(());
    for w in work {
        let mut batch = ObjectBatch::new(&contracts, deps, now_ms, record.retry_count())
            .first_failed_at(first_failed_at.clone());
        let outcome = match w {
            Work::Object { bucket, key } => {
                stats.objects += 1;
                batch.read_object(&bucket, &key, Pick::All, stats).await
            }
            Work::Line { bucket, key, line } => {
                stats.objects += 1;
                batch
                    .read_object(&bucket, &key, Pick::Line(line), stats)
                    .await
            }
            Work::Window {
                bucket,
                key,
                since_ms,
                until_ms,
            } => {
                stats.objects += 1;
                let pick = Pick::Window { since_ms, until_ms };
                batch.read_object(&bucket, &key, pick, stats).await
            }
            Work::Inline { line, raw_ref } => {
                stats.lines += 1;
                batch.line(&line, &raw_ref, stats);
                Ok(())
            }
        };
        let flushed = batch.flush(stats).await;
        if let Err(e) = outcome.and(flushed) {
            result = Err(e);
        }
    }
    result
}

fn emit_metrics(
    stats: &TransformStats,
    started: Instant,
    (messages, failed_messages): (usize, usize),
    sink: &Sink,
    now_ms: i64,
) {
    let mut m = MetricSet::new(FUNCTION);
    // MessagesIn and BatchDuration calibrate the scaler: messages a concurrent batch takes a second.
    m.put("MessagesIn", Unit::Count, messages as f64)
        .put("LinesIn", Unit::Count, stats.lines as f64)
        .put("ObjectsRead", Unit::Count, stats.objects as f64)
        .put("ControlRecords", Unit::Count, stats.control as f64)
        .put(
            "RecordsQuarantined",
            Unit::Count,
            stats.quarantined.values().sum::<usize>() as f64,
        )
        .put("RetriableFailures", Unit::Count, failed_messages as f64)
        .put(
            "BatchDuration",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1000.0,
        );
    m.emit(sink, now_ms);
    for (table, t) in &stats.tables {
        let mut m = MetricSet::new(FUNCTION).dimension("Table", table.clone());
        m.put("RowsWritten", Unit::Count, t.written as f64)
            .put("RowsAlreadyWritten", Unit::Count, t.already_written as f64)
            .put("RowsStale", Unit::Count, t.stale as f64)
            .put("RowsQuarantined", Unit::Count, t.quarantined as f64);
        if !t.latency_ms.is_empty() {
            m.put_values("EndToEndLatency", Unit::Milliseconds, t.latency_ms.clone());
        }
        m.emit(sink, now_ms);
    }
}

pub use sluice_core::decide::decode_record;
