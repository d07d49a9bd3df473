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

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::raw_objects::{ObjectReader, RawObjects, S3RawObjects};
use sluice_aws::typed_tables::{DynamoTypedTables, TypedTables, WriteOutcome};
use sluice_aws::{AwsError, DeadLetters};
use sluice_core::decide::{decide, ContractResult, DecideContext, LineOutcome};
use sluice_core::envelope::{FailureEnvelope, Step};
use sluice_core::json::Limits;
use sluice_core::notification::{self, Work};
use sluice_core::raw::{OwnedRawLine, TsSource};
use sluice_core::row::{TypedRow, Violation};
use sluice_core::{DecodeError, ErrorClass};
use tokio::io::AsyncBufReadExt;

use crate::config::TransformConfig;
use crate::contracts::{ContractCache, ContractSet, ContractSource};
use crate::sqs::SqsRecordView;

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
    /// Per typed table: rows written, stale (superseded in the object or by a stored row), and
    /// end-to-end latencies of written rows in ms.
    pub tables: BTreeMap<String, TableStats>,
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
        response.batch_item_failures.len(),
        &deps.metrics,
        now_ms,
    );
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
    let work = match notification::parse(&body, &format!("sqs://{queue}/{message_id}")) {
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
            *stats.quarantined.entry(err.class().as_str()).or_default() += 1;
            return deps.dead_letters.send(env).await.map_err(Retry::DeadLetter);
        }
    };
    let contracts = deps.contracts.get().await.map_err(Retry::Contracts)?;
    let mut result = Ok(());
    for w in work {
        let mut batch = ObjectBatch::new(&contracts, deps, now_ms, record.retry_count());
        let outcome = match w {
            Work::Object { bucket, key } => {
                stats.objects += 1;
                batch.read_object(&bucket, &key, stats).await
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

/// A typed row kept for writing, with its source commit time (for latency).
type Kept = (TypedRow, Option<i64>);

// ---------------------------------------------------------------------------------------------
// One object (or one inline line)

struct ObjectBatch<'a, O, T, D> {
    contracts: &'a ContractSet,
    deps: &'a Transform<O, T, D>,
    now_ms: i64,
    retry_count: u32,
    /// Winners per (typed table, key), with the line's commit time if it came from the source.
    rows: HashMap<(String, String), Vec<Kept>>,
    dead: Vec<FailureEnvelope>,
}

impl<'a, O: RawObjects, T: TypedTables, D: DeadLetters> ObjectBatch<'a, O, T, D> {
    fn new(
        contracts: &'a ContractSet,
        deps: &'a Transform<O, T, D>,
        now_ms: i64,
        retry_count: u32,
    ) -> Self {
        Self {
            contracts,
            deps,
            now_ms,
            retry_count,
            rows: HashMap::new(),
            dead: Vec::new(),
        }
    }

    async fn read_object(
        &mut self,
        bucket: &str,
        key: &str,
        stats: &mut TransformStats,
    ) -> Result<(), Retry> {
        let object_ref = format!("s3://{bucket}/{key}");
        let mut reader = match self.deps.objects.open(bucket, key).await {
            Ok(r) => r,
            Err(e) if e.is_retriable() => return Err(Retry::Aws(e)),
            Err(e) => {
                self.object_failure(&object_ref, "object_unreadable", e.to_string(), stats);
                return Ok(());
            }
        };
        let max = self.deps.config.max_line_bytes;
        let mut buf = Vec::new();
        let mut n = 0usize;
        loop {
            buf.clear();
            let read = match read_line_capped(&mut reader, &mut buf, max).await {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    self.object_failure(
                        &object_ref,
                        "object_corrupt",
                        format!("after line {n}: {e}"),
                        stats,
                    );
                    return Ok(());
                }
                Err(source) => {
                    return Err(Retry::Read {
                        object: object_ref,
                        source,
                    })
                }
            };
            n += 1;
            let raw_ref = format!("{object_ref}#L{n}");
            let counted = match read {
                LineRead::Line => !buf.iter().all(u8::is_ascii_whitespace),
                LineRead::TooLong(_) => true,
                LineRead::Eof => false,
            };
            if counted {
                stats.lines += 1;
            }
            match read {
                LineRead::Eof => break,
                LineRead::TooLong(size) => {
                    let err = DecodeError::TooLarge { size, limit: max };
                    let mut env = self.envelope(
                        ErrorClass::TooLarge,
                        err.code(),
                        format!("line {n}: {err}"),
                        &raw_ref,
                        None,
                    );
                    env.original_ref = Some(raw_ref.clone());
                    env.original_bytes = size;
                    self.quarantine(env, None, stats);
                }
                LineRead::Line => {
                    if buf.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match std::str::from_utf8(&buf) {
                        Ok(text) => {
                            let text = text.to_owned();
                            self.line(&text, &raw_ref, stats);
                        }
                        Err(e) => {
                            let err = DecodeError::InvalidUtf8 {
                                detail: e.to_string(),
                            };
                            let env = self
                                .envelope(err.class(), err.code(), err.to_string(), &raw_ref, None)
                                .with_original(String::from_utf8_lossy(&buf).into_owned());
                            self.quarantine(env, None, stats);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn object_failure(
        &mut self,
        object_ref: &str,
        code: &str,
        error: String,
        stats: &mut TransformStats,
    ) {
        let mut env = self.envelope(ErrorClass::Internal, code, error, object_ref, None);
        env.original_ref = Some(object_ref.to_owned());
        self.quarantine(env, None, stats);
    }

    fn envelope(
        &self,
        class: ErrorClass,
        code: &str,
        error: String,
        raw_ref: &str,
        origin: Option<&RawValue>,
    ) -> FailureEnvelope {
        let origin = origin.map(|o| o.to_owned()).unwrap_or_else(|| {
            serde_json::value::to_raw_value(&serde_json::json!({"kind": "raw", "ref": raw_ref}))
                .unwrap_or_default()
        });
        let mut env = FailureEnvelope::new(
            Step::Transform,
            class,
            code,
            error,
            (raw_ref, ""),
            origin,
            self.now_ms,
        );
        env.raw_ref = Some(raw_ref.to_owned());
        env.retry_count = self.retry_count;
        env
    }

    fn quarantine(
        &mut self,
        env: FailureEnvelope,
        table: Option<&str>,
        stats: &mut TransformStats,
    ) {
        *stats
            .quarantined
            .entry(env.error_class.as_str())
            .or_default() += 1;
        if let Some(t) = table {
            stats.tables.entry(t.to_owned()).or_default().quarantined += 1;
        }
        self.dead.push(env);
    }

    /// Types one raw line into rows, or dead-letters it, as [`decide`] says.
    fn line(&mut self, text: &str, raw_ref: &str, stats: &mut TransformStats) {
        let limits = Limits {
            max_record_bytes: self.deps.config.max_line_bytes,
            max_depth: self.deps.config.max_depth,
        };
        let cx = DecideContext {
            contracts: self.contracts,
            limits: &limits,
            tombstone_expires_at: self.now_ms / 1000
                + i64::try_from(self.deps.config.tombstone_ttl_days).unwrap_or(35) * 86_400,
        };
        match decide(text, raw_ref, &cx) {
            LineOutcome::NotARawLine(err) => {
                let env = self
                    .envelope(err.class(), err.code(), err.to_string(), raw_ref, None)
                    .with_original(text.to_owned());
                self.quarantine(env, None, stats);
            }
            LineOutcome::Undecodable { line, error, .. } => {
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (error.class(), error.code()),
                    error.to_string(),
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::Control { .. } => stats.control += 1,
            LineOutcome::Truncate { line, change, .. } => {
                // Never silent, never automatic: a typed table may merge several sources and
                // outlive a truncate-and-reload, so a person decides what it means for it.
                let error = format!(
                    "source table {:?} was truncated at seq {}; typed rows from it were not removed. \
                     To follow the source, delete the typed rows whose `_seq` is below that seq, \
                     then delete this dead letter; to keep them, just delete this dead letter",
                    change.route.table, change.route.seq
                );
                tracing::warn!(table = %change.route.table, raw_ref, "A source truncate was received; sent to the dead-letter queue for a person to act on.");
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (ErrorClass::SourceTruncated, "source_truncated"),
                    error,
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::NoContract { line, change } => {
                let error = format!(
                    "no contract takes table {:?} in format {}",
                    change.route.table,
                    change.route.format.as_str()
                );
                let env = self.line_envelope(
                    &line,
                    text,
                    raw_ref,
                    (ErrorClass::NoContract, "no_contract"),
                    error,
                );
                self.quarantine(env, Some(&line.table), stats);
            }
            LineOutcome::Typed { line, results, .. } => {
                let source_ts = (line.ts_source == TsSource::Source).then_some(line.ts_ms);
                for ContractResult { contract, rows } in results {
                    match rows {
                        Ok(rows) if rows.is_empty() => stats.control += 1,
                        Ok(rows) => {
                            for row in rows {
                                self.keep(row, source_ts, stats);
                            }
                        }
                        Err(v) => {
                            let code = violation_code(&v);
                            let mut env = self.line_envelope(
                                &line,
                                text,
                                raw_ref,
                                (ErrorClass::ContractViolation, code),
                                format!("contract {} v{}: {v}", contract.name, contract.version),
                            );
                            // Two contracts on one line fail with distinct ids.
                            env.failure_id = sluice_core::envelope::failure_id(
                                Step::Transform,
                                raw_ref,
                                &contract.name,
                                code,
                            );
                            self.quarantine(env, Some(&contract.name), stats);
                        }
                    }
                }
            }
        }
    }

    /// The dead letter of a raw line: its origin, table and format, and the line verbatim.
    fn line_envelope(
        &self,
        line: &OwnedRawLine,
        text: &str,
        raw_ref: &str,
        (class, code): (ErrorClass, &str),
        error: String,
    ) -> FailureEnvelope {
        let mut env = self
            .envelope(class, code, error, raw_ref, Some(&line.origin))
            .with_original(text.to_owned());
        env.table = Some(line.table.clone());
        env.format = Some(line.format);
        env
    }

    /// Keeps the row among the changes of its key in this batch; only the newest is written.
    fn keep(&mut self, row: TypedRow, source_ts: Option<i64>, stats: &mut TransformStats) {
        let id = (row.table.clone(), row.key_id());
        let group = self.rows.entry(id).or_default();
        if !group.is_empty() {
            stats.tables.entry(row.table.clone()).or_default().stale += 1;
        }
        group.push((row, source_ts));
    }

    /// Writes the winners and sends the dead letters. Fails if anything is not durable.
    async fn flush(self, stats: &mut TransformStats) -> Result<(), Retry> {
        let deps = self.deps;
        let now_ms = self.now_ms;
        let winners = self
            .rows
            .into_values()
            .filter_map(sluice_core::row::newest_of);
        let writes = stream::iter(winners)
            .map(|(row, ts)| async move {
                let result = deps.tables.put_row(&row).await;
                (row, ts, result)
            })
            .buffer_unordered(deps.config.write_concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut retry = None;
        let mut dead = self.dead;
        for (row, ts, result) in writes {
            let table = stats.tables.entry(row.table.clone()).or_default();
            match result {
                Ok(WriteOutcome::Written) => {
                    table.written += 1;
                    if let (Some(ts), true) = (ts, table.latency_ms.len() < 100) {
                        table.latency_ms.push((now_ms - ts).max(0) as f64);
                    }
                }
                Ok(WriteOutcome::AlreadyWritten) => table.already_written += 1,
                Ok(WriteOutcome::Stale) => table.stale += 1,
                Err(e) if e.is_retriable() => retry = Some(Retry::Aws(e)),
                Err(e) => {
                    table.quarantined += 1;
                    let raw_ref = match row.item.get(sluice_core::row::RAW_ATTR) {
                        Some(serde_dynamo::AttributeValue::S(s)) => s.clone(),
                        _ => String::new(),
                    };
                    let origin = serde_json::value::to_raw_value(
                        &serde_json::json!({"kind": "raw", "ref": raw_ref}),
                    )
                    .unwrap_or_default();
                    let mut env = FailureEnvelope::new(
                        Step::Transform,
                        ErrorClass::ContractViolation,
                        "write_rejected",
                        format!("DynamoDB refused the row for {}: {e}", row.table),
                        (&raw_ref, &row.table),
                        origin,
                        now_ms,
                    );
                    env.raw_ref = Some(raw_ref.clone());
                    env.original_ref = Some(raw_ref);
                    *stats.quarantined.entry("contract_violation").or_default() += 1;
                    dead.push(env);
                }
            }
        }
        let sent = stream::iter(dead)
            .map(|env| async move { deps.dead_letters.send(env).await })
            .buffer_unordered(deps.config.write_concurrency)
            .collect::<Vec<Result<(), AwsError>>>()
            .await;
        for r in sent {
            if let Err(e) = r {
                tracing::error!(error = %e, "Dead letter not sent; the message will be retried.");
                retry = Some(Retry::DeadLetter(e));
            }
        }
        match retry {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }
}

fn violation_code(v: &Violation) -> &'static str {
    match v {
        Violation::Type { .. } => "type_mismatch",
        Violation::Missing { .. } => "missing_field",
        Violation::EmptyKey { .. } => "empty_key",
        Violation::NoImage { .. } => "no_image",
        Violation::Unreadable { .. } => "unreadable_value",
        Violation::KeyKind { .. } => "key_type_mismatch",
    }
}

pub use sluice_core::decide::decode_record;

enum LineRead {
    Line,
    TooLong(usize),
    Eof,
}

/// Reads up to the next `\n` into `buf`, keeping at most `max` bytes; a longer line is skipped
/// to its end and reported with its length.
async fn read_line_capped(
    reader: &mut ObjectReader,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<LineRead> {
    let mut total = 0usize;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(match (any, total > max) {
                (false, _) => LineRead::Eof,
                (true, true) => LineRead::TooLong(total),
                (true, false) => LineRead::Line,
            });
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if total + take <= max {
            buf.extend_from_slice(&chunk[..take]);
        }
        total += take;
        let consumed = if done { take + 1 } else { take };
        reader.consume(consumed);
        if done {
            return Ok(if total > max {
                LineRead::TooLong(total)
            } else {
                LineRead::Line
            });
        }
    }
}

fn emit_metrics(
    stats: &TransformStats,
    started: Instant,
    failed_messages: usize,
    sink: &Sink,
    now_ms: i64,
) {
    let mut m = MetricSet::new(FUNCTION);
    m.put("LinesIn", Unit::Count, stats.lines as f64)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_capped_and_long_ones_skipped_whole() {
        let data = b"short\nthis line is too long\n\nlast".to_vec();
        let mut reader: ObjectReader = Box::pin(std::io::Cursor::new(data));
        let mut buf = Vec::new();
        let mut got = Vec::new();
        loop {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf, 10).await.unwrap() {
                LineRead::Eof => break,
                LineRead::TooLong(n) => got.push(format!("too long {n}")),
                LineRead::Line => got.push(String::from_utf8(buf.clone()).unwrap()),
            }
        }
        assert_eq!(got, ["short", "too long 21", "", "last"]);
    }
}

#[cfg(test)]
mod orchestration_tests {
    //! Orchestration with in-memory ports: hostile objects and failing dependencies. Behaviour
    //! against AWS is tested end to end in the `sluice-tests` crate.
    use std::io::Write;

    use sluice_aws::memory::{Faults, Memory};

    use super::*;

    /// Raw staging holding these objects.
    fn objects(objects: &[(&str, Vec<u8>)]) -> Memory {
        let m = Memory::new();
        for (key, bytes) in objects {
            m.put_object(*key, bytes.clone());
        }
        m
    }

    fn failing(faults: Faults) -> Memory {
        Memory::new().with_faults(faults)
    }

    const CONTRACT: &str = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n";

    fn deps(objects: Memory, tables: Memory, dlq: Memory) -> Transform<Memory, Memory, Memory> {
        let dir = std::env::temp_dir().join(format!(
            "sluice-contracts-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("people.yaml"), CONTRACT).unwrap();
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::Config::builder()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(aws_sdk_s3::config::Region::new("us-east-1"))
                .build(),
        );
        let config = TransformConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" => Some("raw".into()),
            "SLUICE_DLQ_URL" => Some("dlq".into()),
            "SLUICE_CONTRACTS" => Some(dir.display().to_string()),
            "SLUICE_MAX_LINE_BYTES" => Some("2000".into()),
            _ => None,
        })
        .unwrap();
        Transform {
            contracts: ContractCache::new(
                ContractSource::parse(&config.contracts),
                Duration::from_secs(60),
                s3,
            ),
            config,
            objects,
            tables,
            dead_letters: dlq,
            metrics: Sink::Discard,
        }
    }

    fn line(table: &str, id: u64, seq: u64, after: &str) -> String {
        line_keyed(table, &id.to_string(), id, seq, after)
    }

    /// A raw line whose event names its key as `key` (JSON text).
    fn line_keyed(table: &str, key: &str, id: u64, seq: u64, after: &str) -> String {
        let record = format!(
            r#"{{"table":"{table}","op":"insert","key":{{"id":{key}}},"after":{after},"seq":{seq}}}"#
        );
        format!(
            r#"{{"v":1,"format":"app","table":"{table}","op":"insert","seq":"{}","ts_ms":1795590000000,"ts_source":"source","ingested_ms":1795590000001,"origin":{{"kind":"sqs","arn":"a","id":"m{id}"}},"record":{record}}}"#,
            sluice_core::Seq::decimal(&seq.to_string(), "").unwrap()
        )
    }

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text).unwrap();
        gz.finish().unwrap()
    }

    fn notification(keys: &[&str]) -> String {
        let records: Vec<serde_json::Value> = keys
            .iter()
            .map(|k| serde_json::json!({"eventSource": "aws:s3", "eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "raw"}, "object": {"key": k}}}))
            .collect();
        let body = serde_json::json!({ "Records": records }).to_string();
        serde_json::json!({"Records": [{"messageId": "m1", "body": body, "attributes": {"ApproximateReceiveCount": "1"}, "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:1:t"}]}).to_string()
    }

    #[tokio::test]
    async fn every_bad_line_is_a_precise_dead_letter_and_the_rest_goes_through() {
        let mut text = Vec::new();
        let lines: Vec<Vec<u8>> = vec![
            line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#).into_bytes(),
            b"not json at all".to_vec(),
            br#"{"hello":"world"}"#.to_vec(),
            line("strangers", 2, 1, r#"{"id":2}"#).into_bytes(),
            line("people", 3, 1, r#"{"id":3}"#).into_bytes(),
            line_keyed(
                "people",
                r#""four""#,
                4,
                1,
                r#"{"id":"four","email":"d@x"}"#,
            )
            .into_bytes(),
            format!(r#"{{"pad":"{}"}}"#, "x".repeat(3000)).into_bytes(),
            b"{\"bad\":\"\xff\"}".to_vec(),
            Vec::new(),
            line("people", 1, 2, r#"{"id":1,"email":"a2@x"}"#).into_bytes(),
            line("people", 5, 1, r#"{"id":6,"email":"e@x"}"#).into_bytes(),
        ];
        for l in &lines {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        let objects = objects(&[("raw/people/o.ndjson.gz", gzip(&text))]);
        let d = deps(objects, Memory::new(), Memory::new());
        let (response, stats) = handle(&notification(&["raw/people/o.ndjson.gz"]), &d)
            .await
            .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let codes: Vec<(String, String)> = d
            .dead_letters
            .dead_letters()
            .iter()
            .map(|e| {
                (
                    e.raw_ref
                        .clone()
                        .unwrap()
                        .rsplit('#')
                        .next()
                        .unwrap()
                        .to_owned(),
                    e.error_code.clone().unwrap(),
                )
            })
            .collect();
        let expect = [
            // The event's key says 5, its image 6.
            ("L11", "key_mismatch"),
            ("L2", "not_json"),
            ("L3", "unknown_shape"),
            ("L4", "no_contract"),
            ("L5", "missing_field"),
            ("L6", "key_type_mismatch"),
            ("L7", "too_large"),
            ("L8", "invalid_utf8"),
        ];
        let mut codes_sorted = codes.clone();
        codes_sorted.sort();
        assert_eq!(
            codes_sorted,
            expect.map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        let rows = d.tables.rows();
        assert_eq!(rows.len(), 1, "one good key");
        let row = rows.values().next().unwrap();
        assert_eq!(
            row["email"],
            serde_dynamo::AttributeValue::S("a2@x".into()),
            "the later seq won in the object"
        );
        assert_eq!(stats.tables["people"].stale, 1);
        assert_eq!(stats.lines, 10, "every line is counted but the blank one");
    }

    #[tokio::test]
    async fn a_corrupt_or_missing_object_is_dead_lettered_not_retried() {
        let objects = objects(&[("raw/p/bad.ndjson.gz", b"this is not gzip".to_vec())]);
        let d = deps(objects, Memory::new(), Memory::new());
        let (response, _) = handle(
            &notification(&["raw/p/bad.ndjson.gz", "raw/p/missing.ndjson.gz"]),
            &d,
        )
        .await
        .unwrap();
        assert!(response.batch_item_failures.is_empty());
        let sent = d.dead_letters.dead_letters();
        let codes: Vec<&str> = sent
            .iter()
            .map(|e| e.error_code.as_deref().unwrap())
            .collect();
        assert_eq!(codes, ["object_corrupt", "object_unreadable"]);
        assert_eq!(
            sent[0].original_ref.as_deref(),
            Some("s3://raw/raw/p/bad.ndjson.gz")
        );
    }

    #[tokio::test]
    async fn retriable_write_failures_and_unsent_dead_letters_retry_the_message() {
        let text = format!(
            "{}\nnot json\n",
            line("people", 1, 1, r#"{"id":1,"email":"a@x"}"#)
        );
        let raw = || objects(&[("raw/p/o.ndjson", text.clone().into_bytes())]);
        let throttled = deps(
            raw(),
            failing(Faults {
                writes_failing: true,
                ..Faults::default()
            }),
            Memory::new(),
        );
        let (response, _) = handle(&notification(&["raw/p/o.ndjson"]), &throttled)
            .await
            .unwrap();
        assert_eq!(response.batch_item_failures.len(), 1);
        let dlq_down = deps(
            raw(),
            Memory::new(),
            failing(Faults {
                dead_letters_failing: true,
                ..Faults::default()
            }),
        );
        let (response, _) = handle(&notification(&["raw/p/o.ndjson"]), &dlq_down)
            .await
            .unwrap();
        assert_eq!(response.batch_item_failures.len(), 1);
    }

    #[tokio::test]
    async fn test_events_and_unknown_messages() {
        let d = deps(Memory::new(), Memory::new(), Memory::new());
        let event = |body: &str| {
            serde_json::json!({"Records": [{"messageId": "m", "body": body, "eventSource": "aws:sqs", "eventSourceARN": "q"}]}).to_string()
        };
        let (r, _) = handle(
            &event(r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#),
            &d,
        )
        .await
        .unwrap();
        assert!(r.batch_item_failures.is_empty());
        assert!(
            d.dead_letters.dead_letters().is_empty(),
            "a test event is ignored"
        );
        let (r, _) = handle(&event("garbage"), &d).await.unwrap();
        assert!(r.batch_item_failures.is_empty());
        assert_eq!(
            d.dead_letters.dead_letters()[0].error_code.as_deref(),
            Some("not_json")
        );
        assert!(handle("[]", &d).await.is_err());
    }
}
