//! The ingest handler: lands each source record, unchanged, in S3 raw staging.
//!
//! One invocation takes a DynamoDB Streams, Kinesis or SQS event. Each record is checked against the
//! limits and routed (format, table, op, seq, commit time). Records that cannot be read go to
//! the dead-letter queue at once and are not retried. The rest are grouped by table and commit
//! hour and written as one gzip NDJSON object per group.
//!
//! Nothing is acknowledged before it is durable: a record is reported done only after its raw
//! object was written or its dead letter was sent. Everything else is reported back to the
//! event source as a batch item failure (DESIGN §4):
//! - SQS standard: each failed message;
//! - SQS FIFO: each failed message and every later message of the same message group;
//! - DynamoDB Streams: the sequence number of the first failed record;
//! - Kinesis: the Kinesis sequence number of the first failed record.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::time::Instant;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse};
use aws_lambda_events::event::streams::{
    DynamoDbBatchItemFailure, DynamoDbEventResponse, KinesisEventResponse,
};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::raw_store::S3RawStore;
use sluice_aws::{AwsError, DeadLetters, RawStore};
use sluice_core::envelope::{FailureEnvelope, Step};
use sluice_core::json::read_str;
use sluice_core::raw::{
    batch_id, check_table, Landable, ObjectWriter, Origin, OriginKind, Partition,
};
use sluice_core::{body, ddb, kinesis, DecodeError, ErrorClass, Format};

use crate::config::IngestConfig;
use crate::sqs::SqsRecordView;

/// The version written into every envelope.
pub const PIPELINE_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The function name used in metrics.
pub const FUNCTION: &str = "ingest";

/// An invocation that cannot be handled record by record.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The event is not a DynamoDB Streams, Kinesis or SQS event.
    #[error("unsupported event: {0}")]
    UnsupportedEvent(String),
    /// A record failed but has no identifier to report it by, so the whole batch must be retried.
    #[error("record {index} failed and has no {what} to report it by; failing the whole batch")]
    Unreportable {
        /// The record's position in the batch.
        index: usize,
        /// The identifier it lacks.
        what: &'static str,
    },
}

impl IngestError {
    /// An unsupported event is a wiring mistake; an unreportable record is worth a retry.
    pub fn is_retriable(&self) -> bool {
        matches!(self, Self::Unreportable { .. })
    }

    /// The error type the Lambda runtime reports (`errorType`), with its retriable class.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::UnsupportedEvent(_) => "NotRetriable.UnsupportedEvent",
            Self::Unreportable { .. } => "Retriable.UnreportableRecord",
        }
    }
}

/// What the ingest handler needs: its configuration and its two ports.
pub struct Ingest<R, D> {
    /// Settings read at cold start.
    pub config: IngestConfig,
    /// Raw staging.
    pub store: R,
    /// The dead-letter queue.
    pub dead_letters: D,
    /// Where metrics go.
    pub metrics: Sink,
}

impl Ingest<S3RawStore, SqsDeadLetters> {
    /// The AWS adapters: raw objects through `raw_s3`, dead letters through `sqs`, and
    /// claim-checked originals through `s3`.
    pub fn on_aws(
        config: IngestConfig,
        s3: aws_sdk_s3::Client,
        raw_s3: aws_sdk_s3::Client,
        sqs: aws_sdk_sqs::Client,
        metrics: Sink,
    ) -> Self {
        Self {
            store: S3RawStore::new(raw_s3, config.raw_bucket.clone()),
            dead_letters: SqsDeadLetters::new(
                sqs,
                config.dlq_url.clone(),
                s3,
                config.quarantine_bucket.clone(),
            ),
            config,
            metrics,
        }
    }

    /// The AWS adapters, with clients built from `sdk`.
    pub fn from_sdk(config: IngestConfig, sdk: &SdkConfig, metrics: Sink) -> Self {
        let s3 = s3_client(sdk);
        Self::on_aws(config, s3.clone(), s3, sqs_client(sdk), metrics)
    }
}

/// The handler's answer, in the shape the event source expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestResponse {
    /// For SQS event source mappings.
    Sqs(SqsBatchResponse),
    /// For DynamoDB Streams event source mappings.
    Streams(DynamoDbEventResponse),
    /// For DynamoDB Streams mappings with a tumbling window: the window's state goes back to
    /// the runtime unchanged beside the failures (sluice aggregates nothing across invocations).
    StreamsWindow(DynamoDbEventResponse, serde_json::Value),
    /// For Kinesis event source mappings.
    Kinesis(KinesisEventResponse),
    /// For Kinesis mappings with a tumbling window, the window's state returned unchanged.
    KinesisWindow(KinesisEventResponse, serde_json::Value),
}

impl IngestResponse {
    /// The response as JSON. There is no fallback: a response that cannot be written fails the
    /// invocation, so the event source delivers the whole batch again rather than taking a
    /// default as "nothing failed".
    pub fn to_json(&self) -> Result<serde_json::Value, serde_json::Error> {
        let with_state = |v: serde_json::Value, state: &serde_json::Value| {
            let mut v = v;
            if let Some(o) = v.as_object_mut() {
                o.insert("state".into(), state.clone());
            }
            v
        };
        match self {
            Self::Sqs(r) => serde_json::to_value(r),
            Self::Streams(r) => serde_json::to_value(r),
            Self::StreamsWindow(r, state) => serde_json::to_value(r).map(|v| with_state(v, state)),
            Self::Kinesis(r) => serde_json::to_value(r),
            Self::KinesisWindow(r, state) => serde_json::to_value(r).map(|v| with_state(v, state)),
        }
    }

    /// The identifiers reported as failed.
    pub fn failed_ids(&self) -> Vec<String> {
        match self {
            Self::Sqs(r) => r
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect(),
            Self::Streams(r) | Self::StreamsWindow(r, _) => r
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .collect(),
            Self::Kinesis(r) | Self::KinesisWindow(r, _) => r
                .batch_item_failures
                .iter()
                .filter_map(|f| f.item_identifier.clone())
                .collect(),
        }
    }
}

/// Counts of one invocation, also emitted as metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Records in the event.
    pub records_in: usize,
    /// Records written to raw staging.
    pub landed: usize,
    /// Records sent to the dead-letter queue.
    pub quarantined: usize,
    /// Records reported back for retry.
    pub retriable_failures: usize,
    /// Raw objects written.
    pub objects: usize,
    /// Compressed bytes written.
    pub bytes: usize,
}

#[derive(Deserialize)]
struct EventView<'a> {
    #[serde(rename = "Records", borrow)]
    records: Option<Vec<&'a RawValue>>,
    /// Set on tumbling-window invocations.
    #[serde(borrow, default)]
    window: Option<&'a RawValue>,
    /// The window's state so far.
    #[serde(borrow, default)]
    state: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct SourcePeek<'a> {
    #[serde(rename = "eventSource", alias = "EventSource", borrow, default)]
    event_source: Option<Cow<'a, str>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Sqs,
    DynamoDb,
    Kinesis,
}

/// One record's identity and fate.
struct Slot<'a> {
    /// The id to report a failure by: the messageId, or the stream or Kinesis sequence number.
    report_id: Option<String>,
    /// The FIFO message group.
    group: Option<String>,
    /// How often the record was delivered before (SQS's receive count less one).
    retry_count: u32,
    outcome: Outcome<'a>,
}

enum Outcome<'a> {
    Land(Box<Landable<'a>>),
    Dead(Box<FailureEnvelope>),
}

/// Handles one event: lands what can be landed, dead-letters what cannot be read, and reports
/// the rest for retry.
pub async fn handle<R: RawStore, D: DeadLetters>(
    event: &str,
    deps: &Ingest<R, D>,
) -> Result<IngestResponse, IngestError> {
    let started = Instant::now();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let view: EventView<'_> = serde_json::from_str(event).map_err(|e| {
        IngestError::UnsupportedEvent(format!("expected an object with Records: {e}"))
    })?;
    let records = view
        .records
        .ok_or_else(|| IngestError::UnsupportedEvent("the event has no Records array".into()))?;
    let source = match records.first() {
        None => None,
        Some(first) => Some(detect_source(first)?),
    };
    let slots: Vec<Slot<'_>> = records
        .iter()
        .enumerate()
        .map(|(i, r)| match source {
            Some(Source::DynamoDb) => stream_slot(i, r, deps, now_ms),
            Some(Source::Kinesis) => kinesis_slot(i, r, deps, now_ms),
            _ => sqs_slot(i, r, deps, now_ms),
        })
        .collect();

    let mut stats = IngestStats {
        records_in: slots.len(),
        ..IngestStats::default()
    };
    let failed = deliver(&slots, deps, now_ms, &mut stats).await;
    stats.retriable_failures = failed.len();

    let window_state = || {
        view.state
            .and_then(|s| serde_json::from_str(s.get()).ok())
            .unwrap_or_else(|| serde_json::json!({}))
    };
    let response = match (source, view.window) {
        (Some(Source::DynamoDb) | None, Some(_)) => {
            IngestResponse::StreamsWindow(stream_response(&slots, &failed)?, window_state())
        }
        (Some(Source::DynamoDb), None) => {
            IngestResponse::Streams(stream_response(&slots, &failed)?)
        }
        (Some(Source::Kinesis), Some(_)) => {
            IngestResponse::KinesisWindow(kinesis_response(&slots, &failed)?, window_state())
        }
        (Some(Source::Kinesis), None) => {
            IngestResponse::Kinesis(kinesis_response(&slots, &failed)?)
        }
        _ => IngestResponse::Sqs(sqs_response(&slots, &failed)),
    };
    emit_metrics(&stats, started, &deps.metrics, now_ms);
    tracing::info!(
        records_in = stats.records_in,
        landed = stats.landed,
        quarantined = stats.quarantined,
        retriable_failures = stats.retriable_failures,
        objects = stats.objects,
        "Ingest batch handled."
    );
    Ok(response)
}

fn detect_source(first: &RawValue) -> Result<Source, IngestError> {
    let peek: SourcePeek<'_> = serde_json::from_str(first.get())
        .map_err(|e| IngestError::UnsupportedEvent(format!("unreadable first record: {e}")))?;
    match peek.event_source.as_deref() {
        Some("aws:sqs") => Ok(Source::Sqs),
        Some("aws:dynamodb") => Ok(Source::DynamoDb),
        Some(kinesis::EVENT_SOURCE) => Ok(Source::Kinesis),
        Some(other) => Err(IngestError::UnsupportedEvent(format!(
            "records from {other:?}; ingest takes aws:sqs, aws:dynamodb and aws:kinesis events"
        ))),
        None => Err(IngestError::UnsupportedEvent(
            "the first record has no eventSource".into(),
        )),
    }
}

/// Writes every landable group and sends every dead letter. Returns the indices of the records
/// that are not durable anywhere and must be retried.
async fn deliver<R: RawStore, D: DeadLetters>(
    slots: &[Slot<'_>],
    deps: &Ingest<R, D>,
    now_ms: i64,
    stats: &mut IngestStats,
) -> HashSet<usize> {
    let mut groups: BTreeMap<Partition, Vec<usize>> = BTreeMap::new();
    for (i, slot) in slots.iter().enumerate() {
        if let Outcome::Land(l) = &slot.outcome {
            groups.entry(l.partition(now_ms)).or_default().push(i);
        }
    }
    let concurrency = deps.config.put_concurrency;
    let puts = stream::iter(groups)
        .map(|(partition, members)| async move {
            let result = write_group(&partition, &members, slots, deps, now_ms).await;
            (members, result)
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    // Owned items: closures over borrowed items would make the handler's future lose `Send`.
    let envelopes: Vec<(usize, FailureEnvelope)> = slots
        .iter()
        .enumerate()
        .filter_map(|(i, s)| match &s.outcome {
            Outcome::Dead(env) => Some((i, env.as_ref().clone())),
            Outcome::Land(_) => None,
        })
        .collect();
    let dead = stream::iter(envelopes)
        .map(|(i, env)| async move { (i, deps.dead_letters.send(env).await) })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    let (puts, dead) = tokio::join!(puts, dead);

    let mut failed = HashSet::new();
    let mut rejected = Vec::new();
    for (members, result) in puts {
        match result {
            Ok(bytes) => {
                stats.landed += members.len();
                stats.objects += 1;
                stats.bytes += bytes;
            }
            Err(e) if e.is_retriable() => {
                tracing::warn!(error = %e, records = members.len(), "Raw object not written; its records will be retried.");
                failed.extend(members);
            }
            Err(e) => {
                // S3 will refuse it again (access denied, no such bucket…): retrying would only
                // move the records to the DLQ bare after the queue's retries. Each becomes a
                // dead letter that says why, to redrive once the cause is fixed.
                tracing::error!(error = %e, records = members.len(), "Raw object refused by S3; its records are dead-lettered.");
                for i in members {
                    if let Outcome::Land(l) = &slots[i].outcome {
                        rejected.push((i, rejected_envelope(l, slots[i].retry_count, &e, now_ms)));
                    }
                }
            }
        }
    }
    for (i, result) in dead {
        match result {
            Ok(()) => stats.quarantined += 1,
            Err(e) => {
                tracing::error!(error = %e, index = i, "Dead letter not sent; the record will be retried.");
                failed.insert(i);
            }
        }
    }
    let sent = stream::iter(rejected)
        .map(|(i, env)| async move { (i, deps.dead_letters.send(env).await) })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    for (i, result) in sent {
        match result {
            Ok(()) => stats.quarantined += 1,
            Err(e) => {
                tracing::error!(error = %e, index = i, "Dead letter not sent; the record will be retried.");
                failed.insert(i);
            }
        }
    }
    failed
}

/// The dead letter of a record whose raw object S3 refused for good.
fn rejected_envelope(
    l: &Landable<'_>,
    retry_count: u32,
    err: &AwsError,
    now_ms: i64,
) -> FailureEnvelope {
    let origin = serde_json::value::to_raw_value(&l.origin).unwrap_or_default();
    let mut env = FailureEnvelope::new(
        Step::Ingest,
        ErrorClass::Internal,
        "raw_write_rejected",
        format!(
            "the raw object for this record was refused and would be refused again: {err}; \
             fix the cause (the bucket, its policy, the function's role), then redrive this \
             dead letter"
        ),
        (&l.origin.arn, &l.origin.id),
        origin,
        now_ms,
    )
    .with_original(l.record.get().to_owned());
    env.table = Some(l.route.table.clone());
    env.format = Some(l.route.format);
    env.retry_count = retry_count;
    env
}

async fn write_group<R: RawStore, D: DeadLetters>(
    partition: &Partition,
    members: &[usize],
    slots: &[Slot<'_>],
    deps: &Ingest<R, D>,
    now_ms: i64,
) -> Result<usize, AwsError> {
    let landables: Vec<&Landable<'_>> = members
        .iter()
        .filter_map(|&i| match &slots[i].outcome {
            Outcome::Land(l) => Some(l.as_ref()),
            Outcome::Dead(_) => None,
        })
        .collect();
    let id = batch_id(landables.iter().map(|l| &l.origin));
    let key = partition.key(&id);
    let mut writer = ObjectWriter::new();
    for l in &landables {
        writer
            .push(&l.line(now_ms))
            .map_err(|e| AwsError::local("PutObject", key.clone(), e))?;
    }
    let lines = writer.lines();
    let body = writer
        .finish()
        .map_err(|e| AwsError::local("PutObject", key.clone(), e))?;
    let bytes = body.len();
    deps.store.put_raw(&key, body, lines).await?;
    Ok(bytes)
}

fn emit_metrics(stats: &IngestStats, started: Instant, sink: &Sink, now_ms: i64) {
    let mut m = MetricSet::new(FUNCTION);
    m.put("RecordsIn", Unit::Count, stats.records_in as f64)
        .put("RecordsLanded", Unit::Count, stats.landed as f64)
        .put("RecordsQuarantined", Unit::Count, stats.quarantined as f64)
        .put(
            "RetriableFailures",
            Unit::Count,
            stats.retriable_failures as f64,
        )
        .put("ObjectsWritten", Unit::Count, stats.objects as f64)
        .put("BytesWritten", Unit::Bytes, stats.bytes as f64)
        .put(
            "BatchDuration",
            Unit::Milliseconds,
            started.elapsed().as_secs_f64() * 1000.0,
        );
    m.emit(sink, now_ms);
}

// ---------------------------------------------------------------------------------------------
// SQS

fn sqs_slot<'a, R, D>(
    index: usize,
    raw: &'a RawValue,
    deps: &Ingest<R, D>,
    now_ms: i64,
) -> Slot<'a> {
    let view: SqsRecordView<'a> = match serde_json::from_str(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            let err = DecodeError::UnknownShape {
                detail: format!("not an SQS record: {e}"),
            };
            let origin = fallback_origin(OriginKind::Sqs, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(err, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    let retry_count = view.retry_count();
    let group = view.attributes().message_group_id.map(Cow::into_owned);
    let origin = Origin {
        kind: OriginKind::Sqs,
        arn: view.event_source_arn.clone().unwrap_or(Cow::Borrowed("")),
        id: view
            .message_id
            .clone()
            .unwrap_or_else(|| Cow::Owned(format!("record-{index}"))),
        attributes: view.attributes.map(compact_raw),
        message_attributes: view.message_attributes.map(compact_raw),
        kinesis: None,
    };
    let report_id = view.message_id.as_deref().map(str::to_owned);
    let outcome = match sqs_body(&view, &deps.config) {
        Ok((route, record)) => Outcome::Land(Box::new(Landable {
            route,
            origin,
            record: Cow::Owned(record),
        })),
        Err((err, format, original)) => dead(err, format, &origin, original, retry_count, now_ms),
    };
    Slot {
        report_id,
        group,
        retry_count,
        outcome,
    }
}

type BodyFailure = (DecodeError, Option<Format>, String);

/// Reads, bounds, validates and routes one SQS body.
fn sqs_body(
    view: &SqsRecordView<'_>,
    config: &IngestConfig,
) -> Result<(sluice_core::Route, Box<RawValue>), BodyFailure> {
    let Some(raw_body) = view.body else {
        return Err((
            DecodeError::MissingField {
                path: "body".into(),
            },
            None,
            String::new(),
        ));
    };
    let text: Cow<'_, str> = serde_json::from_str(raw_body.get()).map_err(|e| {
        let err = if raw_body.get().starts_with('"') {
            DecodeError::InvalidUtf8 {
                detail: e.to_string(),
            }
        } else {
            DecodeError::InvalidField {
                path: "body".into(),
                detail: "expected a string".into(),
            }
        };
        (err, None, raw_body.get().to_owned())
    })?;
    let compact = read_str(&text, &config.limits).map_err(|e| (e, None, text.to_string()))?;
    let route = body::route(&compact, &config.limits).map_err(|e| (e, None, text.to_string()))?;
    check_table(&route.table).map_err(|e| (e, Some(route.format), text.to_string()))?;
    let record = RawValue::from_string(compact.into_owned()).map_err(|e| {
        (
            DecodeError::NotJson {
                detail: e.to_string(),
            },
            Some(route.format),
            text.to_string(),
        )
    })?;
    Ok((route, record))
}

fn sqs_response(slots: &[Slot<'_>], failed: &HashSet<usize>) -> SqsBatchResponse {
    let mut failed_groups: HashSet<&str> = HashSet::new();
    let mut response = SqsBatchResponse::default();
    for (i, slot) in slots.iter().enumerate() {
        let group_failed = slot
            .group
            .as_deref()
            .is_some_and(|g| failed_groups.contains(g));
        if failed.contains(&i) || group_failed {
            if let Some(g) = slot.group.as_deref() {
                failed_groups.insert(g);
            }
            let mut f = BatchItemFailure::default();
            f.item_identifier = slot
                .report_id
                .clone()
                .unwrap_or_else(|| format!("record-{i}"));
            response.batch_item_failures.push(f);
        }
    }
    response
}

// ---------------------------------------------------------------------------------------------
// DynamoDB Streams

fn stream_slot<'a, R, D>(
    index: usize,
    raw: &'a RawValue,
    deps: &Ingest<R, D>,
    now_ms: i64,
) -> Slot<'a> {
    let limits = &deps.config.limits;
    let text = match read_str(raw.get(), limits) {
        Ok(t) => t,
        Err(e) => {
            let origin = fallback_origin(OriginKind::Ddb, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(e, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    let parsed = ddb::StreamRecord::parse(raw.get());
    let (report_id, origin) = match &parsed {
        Ok(r) => (
            r.sequence_number().map(str::to_owned),
            Origin {
                kind: OriginKind::Ddb,
                arn: r.event_source_arn.clone().unwrap_or(Cow::Borrowed("")),
                id: r
                    .event_id
                    .clone()
                    .or_else(|| r.sequence_number().map(|s| Cow::Owned(s.to_owned())))
                    .unwrap_or_else(|| Cow::Owned(format!("record-{index}"))),
                attributes: None,
                message_attributes: None,
                kinesis: None,
            },
        ),
        Err(_) => (None, fallback_origin(OriginKind::Ddb, index)),
    };
    let routed = parsed
        .and_then(|r| r.route())
        .and_then(|route| check_table(&route.table).map(|()| route));
    let outcome = match routed {
        Ok(route) => {
            let record = match text {
                Cow::Borrowed(_) => Ok(Cow::Borrowed(raw)),
                Cow::Owned(s) => RawValue::from_string(s).map(Cow::Owned),
            };
            match record {
                Ok(record) => Outcome::Land(Box::new(Landable {
                    route,
                    origin,
                    record,
                })),
                Err(e) => dead(
                    DecodeError::NotJson {
                        detail: e.to_string(),
                    },
                    Some(Format::DdbStream),
                    &origin,
                    raw.get().to_owned(),
                    0,
                    now_ms,
                ),
            }
        }
        Err(e) => dead(
            e,
            Some(Format::DdbStream),
            &origin,
            raw.get().to_owned(),
            0,
            now_ms,
        ),
    };
    Slot {
        report_id,
        group: None,
        retry_count: 0,
        outcome,
    }
}

fn stream_response(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
) -> Result<DynamoDbEventResponse, IngestError> {
    let mut response = DynamoDbEventResponse::default();
    if let Some(seq) = first_failed(slots, failed, "SequenceNumber")? {
        let mut f = DynamoDbBatchItemFailure::default();
        f.item_identifier = Some(seq);
        response.batch_item_failures.push(f);
    }
    Ok(response)
}

/// The sequence number of the first failed record of a stream or shard batch: it is retried from
/// that record on, so only that one is reported. `what` names the field, for the error when the
/// record has none.
fn first_failed(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
    what: &'static str,
) -> Result<Option<String>, IngestError> {
    let Some(first) = (0..slots.len()).find(|i| failed.contains(i)) else {
        return Ok(None);
    };
    slots[first]
        .report_id
        .clone()
        .map(Some)
        .ok_or(IngestError::Unreportable { index: first, what })
}

// ---------------------------------------------------------------------------------------------
// DynamoDB changes through Kinesis Data Streams

fn kinesis_slot<'a, R, D>(
    index: usize,
    raw: &'a RawValue,
    deps: &Ingest<R, D>,
    now_ms: i64,
) -> Slot<'a> {
    let view = match kinesis::LambdaRecord::parse(raw.get()) {
        Ok(v) => v,
        Err(e) => {
            let origin = fallback_origin(OriginKind::Kinesis, index);
            return Slot {
                report_id: None,
                group: None,
                retry_count: 0,
                outcome: dead(e, None, &origin, raw.get().to_owned(), 0, now_ms),
            };
        }
    };
    let origin = view.origin(index);
    let outcome = match kinesis_change(&view, &deps.config.limits) {
        Ok((route, record)) => Outcome::Land(Box::new(Landable {
            route,
            origin,
            record: Cow::Owned(record),
        })),
        // The original is the whole Lambda record: its data may not even be text.
        Err((err, format)) => dead(err, format, &origin, raw.get().to_owned(), 0, now_ms),
    };
    Slot {
        report_id: view.sequence_number().map(str::to_owned),
        group: None,
        retry_count: 0,
        outcome,
    }
}

/// Decodes, bounds, validates and routes the change record in one Kinesis record's data.
fn kinesis_change(
    view: &kinesis::LambdaRecord<'_>,
    limits: &sluice_core::json::Limits,
) -> Result<(sluice_core::Route, Box<RawValue>), (DecodeError, Option<Format>)> {
    let data = view.data(limits).map_err(|e| (e, None))?;
    let change = kinesis::ChangeRecord::parse(&data).map_err(|e| (e, None))?;
    let format = Some(Format::DdbKinesis);
    let seq = view.sequence_number().ok_or_else(|| {
        (
            DecodeError::MissingSeq {
                path: "kinesis.sequenceNumber".into(),
            },
            format,
        )
    })?;
    let route = change.route(seq).map_err(|e| (e, format))?;
    check_table(&route.table).map_err(|e| (e, format))?;
    let record = RawValue::from_string(data).map_err(|e| {
        (
            DecodeError::NotJson {
                detail: e.to_string(),
            },
            format,
        )
    })?;
    Ok((route, record))
}

fn kinesis_response(
    slots: &[Slot<'_>],
    failed: &HashSet<usize>,
) -> Result<KinesisEventResponse, IngestError> {
    let mut response = KinesisEventResponse::default();
    if let Some(seq) = first_failed(slots, failed, "sequenceNumber")? {
        response.add_failure(seq);
    }
    Ok(response)
}

fn compact_raw(raw: &RawValue) -> Cow<'_, RawValue> {
    match sluice_core::json::compact_raw(raw) {
        Cow::Borrowed(_) => Cow::Borrowed(raw),
        Cow::Owned(s) => RawValue::from_string(s).map_or(Cow::Borrowed(raw), Cow::Owned),
    }
}

fn fallback_origin(kind: OriginKind, index: usize) -> Origin<'static> {
    Origin {
        kind,
        arn: Cow::Borrowed(""),
        id: Cow::Owned(format!("record-{index}")),
        attributes: None,
        message_attributes: None,
        kinesis: None,
    }
}

fn dead<'a>(
    err: DecodeError,
    format: Option<Format>,
    origin: &Origin<'_>,
    original: String,
    retry_count: u32,
    now_ms: i64,
) -> Outcome<'a> {
    let origin_json = serde_json::value::to_raw_value(origin).unwrap_or_default();
    let mut envelope = FailureEnvelope::new(
        Step::Ingest,
        err.class(),
        err.code(),
        err.to_string(),
        (&origin.arn, &origin.id),
        origin_json,
        now_ms,
    )
    .with_original(original);
    envelope.format = format;
    envelope.retry_count = retry_count;
    Outcome::Dead(Box::new(envelope))
}

#[cfg(test)]
mod tests {
    //! Orchestration only: the ports are in-memory doubles. Behaviour against AWS is tested end
    //! to end in the `sluice-tests` crate.
    use sluice_aws::memory::{Faults, Memory};

    use super::*;

    fn deps(store: Memory, dlq: Memory) -> Ingest<Memory, Memory> {
        Ingest {
            config: IngestConfig::from_lookup(|n| match n {
                "SLUICE_RAW_BUCKET" => Some("mem".into()),
                "SLUICE_DLQ_URL" => Some("q".into()),
                _ => None,
            })
            .unwrap(),
            store,
            dead_letters: dlq,
            metrics: Sink::Discard,
        }
    }

    fn stream_record(seq: &str, table: &str) -> String {
        format!(
            r#"{{"eventID":"e{seq}","eventName":"INSERT","eventSource":"aws:dynamodb","eventSourceARN":"arn:aws:dynamodb:us-east-1:1:table/{table}/stream/x","dynamodb":{{"ApproximateCreationDateTime":1795520000,"Keys":{{"pk":{{"S":"{seq}"}}}},"NewImage":{{"pk":{{"S":"{seq}"}}}},"SequenceNumber":"{seq}","StreamViewType":"NEW_IMAGE"}}}}"#
        )
    }

    fn sqs_record(id: &str, body: &str) -> String {
        format!(
            r#"{{"messageId":"{id}","receiptHandle":"r","body":{},"attributes":{{"ApproximateReceiveCount":"3"}},"messageAttributes":{{}},"eventSource":"aws:sqs","eventSourceARN":"arn:aws:sqs:us-east-1:1:q"}}"#,
            serde_json::to_string(body).unwrap()
        )
    }

    /// A Kinesis Lambda record whose data is a DynamoDB change record of `table`.
    fn kinesis_record(seq: &str, table: &str, created_us: u64) -> String {
        let change = format!(
            r#"{{"awsRegion":"us-east-1","eventID":"c{seq}","eventName":"MODIFY","userIdentity":null,"recordFormat":"application/json","tableName":"{table}","dynamodb":{{"ApproximateCreationDateTime":{created_us},"ApproximateCreationDateTimePrecision":"MICROSECOND","Keys":{{"pk":{{"S":"{seq}"}}}},"NewImage":{{"pk":{{"S":"{seq}"}}}},"SizeBytes":12}},"eventSource":"aws:dynamodb"}}"#
        );
        kinesis_with_data(seq, &base64_of(change.as_bytes()))
    }

    fn kinesis_with_data(seq: &str, data: &str) -> String {
        format!(
            r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"p","sequenceNumber":"{seq}","data":"{data}","approximateArrivalTimestamp":1795520000.5}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:{seq}","eventName":"aws:kinesis:record","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s"}}"#
        )
    }

    fn base64_of(bytes: &[u8]) -> String {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn event(records: &[String]) -> String {
        format!(r#"{{"Records":[{}]}}"#, records.join(","))
    }

    #[tokio::test]
    async fn stream_reports_the_first_failed_sequence_number() {
        let d = deps(
            Memory::new().with_faults(Faults {
                raw_puts_failing: Some("/bad/".into()),
                ..Faults::default()
            }),
            Memory::new(),
        );
        let e = event(&[
            stream_record("100", "good"),
            stream_record("9000000000000000003", "bad"),
            stream_record("100000000000000000004", "good"),
            stream_record("100000000000000000005", "bad"),
        ]);
        let r = handle(&e, &d).await.unwrap();
        assert_eq!(r.failed_ids(), vec!["9000000000000000003".to_owned()]);
        assert_eq!(
            d.store.object_lines().len(),
            1,
            "the good table's object is written"
        );
    }

    #[tokio::test]
    async fn a_raw_object_refused_for_good_dead_letters_its_records_instead_of_retrying() {
        let d = deps(
            Memory::new().with_faults(Faults {
                raw_puts_refused: Some("/bad/".into()),
                ..Faults::default()
            }),
            Memory::new(),
        );
        let e = event(&[
            stream_record("100", "good"),
            stream_record("101", "bad"),
            stream_record("102", "bad"),
        ]);
        let r = handle(&e, &d).await.unwrap();
        assert!(r.failed_ids().is_empty(), "nothing is retried: {r:?}");
        let sent = d.dead_letters.dead_letters();
        assert_eq!(sent.len(), 2);
        for env in sent.iter() {
            assert_eq!(env.error_code.as_deref(), Some("raw_write_rejected"));
            assert_eq!(env.error_class, ErrorClass::Internal);
            assert_eq!(env.table.as_deref(), Some("bad"));
            assert!(env.error.contains("injected refusal"), "{}", env.error);
            let original: serde_json::Value =
                serde_json::from_str(env.original.as_deref().unwrap()).unwrap();
            assert_eq!(
                original["eventSourceARN"], "arn:aws:dynamodb:us-east-1:1:table/bad/stream/x",
                "the record, whole"
            );
        }
        assert_eq!(d.store.object_lines().len(), 1);
    }

    #[tokio::test]
    async fn stream_record_without_sequence_number_is_dead_lettered_not_retried() {
        let d = deps(Memory::new(), Memory::new());
        let no_seq = stream_record("1", "t").replace(r#","SequenceNumber":"1""#, "");
        let r = handle(&event(&[no_seq, stream_record("2", "t")]), &d)
            .await
            .unwrap();
        assert!(r.failed_ids().is_empty());
        let sent = d.dead_letters.dead_letters();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].error_code.as_deref(), Some("missing_seq"));
    }

    #[tokio::test]
    async fn a_dead_letter_that_cannot_be_sent_is_retried() {
        let d = deps(
            Memory::new(),
            Memory::new().with_faults(Faults {
                dead_letters_failing: true,
                ..Faults::default()
            }),
        );
        let app = r#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#;
        let r = handle(
            &event(&[sqs_record("ok", app), sqs_record("poison", "nope")]),
            &d,
        )
        .await
        .unwrap();
        assert_eq!(r.failed_ids(), vec!["poison".to_owned()]);
    }

    #[tokio::test]
    async fn envelope_carries_the_retry_count_and_the_body_verbatim() {
        let d = deps(Memory::new(), Memory::new());
        let body = "  not json at all\n";
        handle(&event(&[sqs_record("m1", body)]), &d).await.unwrap();
        let sent = d.dead_letters.dead_letters();
        assert_eq!(sent[0].original.as_deref(), Some(body));
        assert_eq!(
            sent[0].retry_count, 2,
            "ApproximateReceiveCount 3 means two retries"
        );
        assert_eq!(sent[0].error_class, sluice_core::ErrorClass::BadFormat);
    }

    #[tokio::test]
    async fn a_record_that_is_not_an_sqs_message_is_dead_lettered() {
        let d = deps(Memory::new(), Memory::new());
        let odd = r#"{"eventSource":"aws:sqs","messageId":42}"#.to_owned();
        let r = handle(&event(&[odd]), &d).await.unwrap();
        assert_eq!(r.failed_ids(), Vec::<String>::new());
        assert_eq!(
            d.dead_letters.dead_letters()[0].error_code.as_deref(),
            Some("unknown_shape")
        );
    }

    #[tokio::test]
    async fn a_tumbling_window_invocation_gets_its_state_back_with_the_failures() {
        let d = deps(Memory::new(), Memory::new());
        let event = format!(
            r#"{{"Records":[{}],"window":{{"start":"2026-11-25T07:00:00Z","end":"2026-11-25T07:05:00Z"}},"state":{{"count":3}},"shardId":"s-1","eventSourceARN":"stream-ARN","isFinalInvokeForWindow":false,"isWindowTerminatedEarly":false}}"#,
            stream_record("7", "t")
        );
        let r = handle(&event, &d).await.unwrap();
        assert_eq!(
            r.to_json().unwrap(),
            serde_json::json!({"batchItemFailures": [], "state": {"count": 3}})
        );
        let empty = handle(r#"{"Records":[],"window":{"start":"a","end":"b"},"state":{},"isFinalInvokeForWindow":true}"#, &d).await.unwrap();
        assert_eq!(
            empty.to_json().unwrap(),
            serde_json::json!({"batchItemFailures": [], "state": {}})
        );
    }

    const LONG_A: &str = "49657828409187701520019995242508390119953358325192589314";
    const LONG_B: &str = "49657828409187701520019995242509599045772972954367295490";
    const LONG_C: &str = "49657828409187701520019995242510807971592587583541999618";

    #[tokio::test]
    async fn kinesis_lands_each_change_under_its_table() {
        let d = deps(Memory::new(), Memory::new());
        let e = event(&[
            kinesis_record(LONG_A, "orders", 1_795_520_000_000_001),
            kinesis_record(LONG_B, "orders", 1_795_520_000_000_002),
            kinesis_record(LONG_C, "customers", 1_795_520_000_000_003),
        ]);
        let r = handle(&e, &d).await.unwrap();
        assert!(matches!(r, IngestResponse::Kinesis(_)));
        assert_eq!(
            r.to_json().unwrap(),
            serde_json::json!({"batchItemFailures": []})
        );
        let mut objects = d.store.object_lines();
        objects.sort();
        assert_eq!(objects.len(), 2);
        assert!(objects[0]
            .0
            .starts_with("raw/customers/dt=2026-11-24/hr=11/"));
        assert_eq!(objects[1].1, 2, "both orders changes in one object");
        assert!(d.dead_letters.dead_letters().is_empty());
    }

    #[tokio::test]
    async fn kinesis_reports_the_first_failed_sequence_number() {
        let d = deps(
            Memory::new().with_faults(Faults {
                raw_puts_failing: Some("/bad/".into()),
                ..Faults::default()
            }),
            Memory::new(),
        );
        let e = event(&[
            kinesis_record(LONG_A, "good", 1),
            kinesis_record(LONG_B, "bad", 2),
            kinesis_record(LONG_C, "good", 3),
        ]);
        let r = handle(&e, &d).await.unwrap();
        assert_eq!(r.failed_ids(), vec![LONG_B.to_owned()]);
        assert_eq!(
            r.to_json().unwrap(),
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": LONG_B}]})
        );
        assert_eq!(d.store.object_lines().len(), 1);
    }

    #[tokio::test]
    async fn malformed_kinesis_records_are_dead_lettered_with_their_code_and_kept_whole() {
        let d = deps(Memory::new(), Memory::new());
        let not_a_change = base64_of(br#"{"device":"foo","temperature":42.42}"#);
        let no_table = base64_of(
            br#"{"eventName":"INSERT","eventSource":"aws:dynamodb","dynamodb":{"ApproximateCreationDateTime":1,"Keys":{"pk":{"S":"a"}}}}"#,
        );
        let cases = [
            (kinesis_with_data("11", "%%% not base64"), "invalid_base64"),
            (
                kinesis_with_data("12", &base64_of(b"\xff\xfe\xfd")),
                "invalid_utf8",
            ),
            (
                kinesis_with_data("13", &base64_of(b"INSERT INTO orders")),
                "not_json",
            ),
            (kinesis_with_data("14", &not_a_change), "unknown_shape"),
            (kinesis_with_data("15", &no_table), "missing_field"),
            (
                r#"{"eventSource":"aws:kinesis","kinesis":{"sequenceNumber":"16"}}"#.to_owned(),
                "missing_field",
            ),
            (
                r#"{"eventSource":"aws:kinesis","kinesis":"INSERT"}"#.to_owned(),
                "unknown_shape",
            ),
        ];
        let records: Vec<String> = cases.iter().map(|(r, _)| r.clone()).collect();
        let r = handle(&event(&records), &d).await.unwrap();
        assert!(r.failed_ids().is_empty(), "dead letters are not retried");
        assert!(d.store.object_lines().is_empty());
        let sent = d.dead_letters.dead_letters();
        assert_eq!(sent.len(), cases.len());
        for (record, code) in &cases {
            let env = sent
                .iter()
                .find(|e| e.original.as_deref() == Some(record.as_str()))
                .unwrap_or_else(|| panic!("no dead letter keeps {record}"));
            assert_eq!(env.error_code.as_deref(), Some(*code), "{record}");
            assert_eq!(env.step, Step::Ingest);
        }
        let kinesis_origin = sent
            .iter()
            .find(|e| e.error_code.as_deref() == Some("unknown_shape") && e.format.is_none())
            .map(|e| serde_json::from_str::<serde_json::Value>(e.origin.get()).unwrap())
            .unwrap();
        assert_eq!(kinesis_origin["kind"], "kinesis");
        let with_table = sent
            .iter()
            .find(|e| e.original.as_deref() == Some(records[4].as_str()))
            .unwrap();
        assert_eq!(with_table.format, Some(Format::DdbKinesis));
        let origin: serde_json::Value = serde_json::from_str(with_table.origin.get()).unwrap();
        assert_eq!(origin["kinesis"]["sequence_number"], "15");
        assert_eq!(origin["kinesis"]["shard_id"], "shardId-000000000000");
        assert_eq!(origin["arn"], "arn:aws:kinesis:us-east-1:1:stream/s");
    }

    #[tokio::test]
    async fn a_kinesis_dead_letter_that_cannot_be_sent_is_retried_from_there() {
        let d = deps(
            Memory::new(),
            Memory::new().with_faults(Faults {
                dead_letters_failing: true,
                ..Faults::default()
            }),
        );
        let e = event(&[
            kinesis_record("1", "t", 1),
            kinesis_with_data("2", "!!"),
            kinesis_record("3", "t", 3),
        ]);
        let r = handle(&e, &d).await.unwrap();
        assert_eq!(r.failed_ids(), vec!["2".to_owned()]);
        // Without a sequence number to name it, the whole batch is retried.
        let e = event(&[
            kinesis_record("1", "t", 1),
            r#"{"eventSource":"aws:kinesis","kinesis":{}}"#.to_owned(),
        ]);
        let err = handle(&e, &d).await.unwrap_err();
        assert!(err.is_retriable(), "{err}");
    }

    #[tokio::test]
    async fn a_kinesis_tumbling_window_gets_its_state_back() {
        let d = deps(Memory::new(), Memory::new());
        let e = format!(
            r#"{{"Records":[{}],"window":{{"start":"a","end":"b"}},"state":{{"n":1}},"shardId":"shardId-000000000000","eventSourceARN":"arn:aws:kinesis:us-east-1:1:stream/s","isFinalInvokeForWindow":false,"isWindowTerminatedEarly":false}}"#,
            kinesis_record("9", "t", 9)
        );
        let r = handle(&e, &d).await.unwrap();
        assert!(matches!(r, IngestResponse::KinesisWindow(..)));
        assert_eq!(
            r.to_json().unwrap(),
            serde_json::json!({"batchItemFailures": [], "state": {"n": 1}})
        );
    }

    #[tokio::test]
    async fn events_that_are_not_batches_are_refused_whole() {
        let d = deps(Memory::new(), Memory::new());
        for bad in [
            r#"{"foo":1}"#,
            "[]",
            r#"{"Records":[{"eventSource":"aws:s3"}]}"#,
        ] {
            let err = handle(bad, &d).await.unwrap_err();
            assert!(
                matches!(err, IngestError::UnsupportedEvent(_)),
                "{bad}: {err}"
            );
            assert!(!err.is_retriable());
        }
        let empty = handle(r#"{"Records":[]}"#, &d).await.unwrap();
        assert!(empty.failed_ids().is_empty());
    }
}
