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

use aws_lambda_events::event::sqs::SqsBatchResponse;
use aws_lambda_events::event::streams::{DynamoDbEventResponse, KinesisEventResponse};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::{MetricSet, Sink, Unit};
use sluice_aws::raw_store::S3RawStore;
use sluice_aws::{AwsError, DeadLetters, RawStore};
use sluice_core::envelope::{FailureEnvelope, Step};
use sluice_core::raw::{batch_id, Landable, ObjectWriter, Origin, OriginKind, Partition};
use sluice_core::{kinesis, DecodeError, ErrorClass, Format};

use crate::config::IngestConfig;

mod kinesis_records;
mod sqs_records;
mod stream_records;
#[cfg(test)]
mod tests;

use kinesis_records::{kinesis_response, kinesis_slot};
use sqs_records::{sqs_response, sqs_slot};
use stream_records::{stream_response, stream_slot};

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
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    /// Dead letters sent, by error code.
    pub dead_letters: BTreeMap<String, usize>,
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
pub(super) struct Slot<'a> {
    /// The id to report a failure by: the messageId, or the stream or Kinesis sequence number.
    pub(super) report_id: Option<String>,
    /// The FIFO message group.
    pub(super) group: Option<String>,
    /// How often the record was delivered before (SQS's receive count less one).
    pub(super) retry_count: u32,
    pub(super) outcome: Outcome<'a>,
}

pub(super) enum Outcome<'a> {
    Land(Box<Landable<'a>>),
    Dead(Box<FailureEnvelope>),
}

/// Handles one event: lands what can be landed, dead-letters what cannot be read, and reports
/// the rest for retry.
pub async fn handle<R: RawStore, D: DeadLetters>(
    event: &str,
    deps: &Ingest<R, D>,
) -> Result<IngestResponse, IngestError> {
    handle_counted(event, deps)
        .await
        .map(|(response, _)| response)
}

/// [`handle`], with the invocation's counts.
pub async fn handle_counted<R: RawStore, D: DeadLetters>(
    event: &str,
    deps: &Ingest<R, D>,
) -> Result<(IngestResponse, IngestStats), IngestError> {
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
            Some(Source::DynamoDb) => stream_slot(i, r, &deps.config, now_ms),
            Some(Source::Kinesis) => kinesis_slot(i, r, &deps.config, now_ms),
            _ => sqs_slot(i, r, &deps.config, now_ms),
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
    crate::failpoint::hit("ingest.before_response");
    Ok((response, stats))
}

/// What ingest would do with each record of `event`, without landing anything: `Ok` for a
/// record it would land, or the dead letter it would send. For dry runs of a redrive, which
/// judge a letter by the decoder as it is now.
pub fn check(
    event: &str,
    config: &IngestConfig,
) -> Result<Vec<Result<(), Box<FailureEnvelope>>>, IngestError> {
    let view: EventView<'_> = serde_json::from_str(event).map_err(|e| {
        IngestError::UnsupportedEvent(format!("expected an object with Records: {e}"))
    })?;
    let records = view
        .records
        .ok_or_else(|| IngestError::UnsupportedEvent("the event has no Records array".into()))?;
    let source = match records.first() {
        None => return Ok(Vec::new()),
        Some(first) => detect_source(first)?,
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    Ok(records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let slot = match source {
                Source::DynamoDb => stream_slot(i, r, config, now_ms),
                Source::Kinesis => kinesis_slot(i, r, config, now_ms),
                Source::Sqs => sqs_slot(i, r, config, now_ms),
            };
            match slot.outcome {
                Outcome::Land(_) => Ok(()),
                Outcome::Dead(env) => Err(env),
            }
        })
        .collect())
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
            if result.is_ok() {
                crate::failpoint::hit("ingest.after_raw_put");
            }
            (members, result)
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>();
    // Owned items: closures over borrowed items would make the handler's future lose `Send`.
    let envelopes = |skip: &HashSet<usize>| -> Vec<(usize, FailureEnvelope)> {
        slots
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .filter_map(|(i, s)| match &s.outcome {
                Outcome::Dead(env) => Some((i, env.as_ref().clone())),
                Outcome::Land(_) => None,
            })
            .collect()
    };
    let dead = |envelopes: Vec<(usize, FailureEnvelope)>| {
        stream::iter(envelopes)
            .map(|(i, env)| async move {
                let code = env.error_code.clone().unwrap_or_default();
                let sent = deps.dead_letters.send(env).await;
                if sent.is_ok() {
                    crate::failpoint::hit("ingest.after_dead_letter");
                }
                (i, code, sent)
            })
            .buffer_unordered(concurrency)
            .collect::<Vec<_>>()
    };
    let mut blocked = HashSet::new();
    let (puts, dead) = if slots.iter().any(|s| s.group.is_some()) {
        // A FIFO batch: a record behind a failed record of its message group is not decided in
        // this delivery, as Lambda stops a group at its first failure. Its dead letter waits for
        // the delivery in which it is its group's head: sent now, it would be sent again each
        // time the group is retried and, should the queue's redrive policy move the record
        // meanwhile, stand on the DLQ beside the record itself.
        let puts = puts.await;
        let retriable: HashSet<usize> = puts
            .iter()
            .filter(|(_, r)| r.as_ref().is_err_and(|e| e.is_retriable()))
            .flat_map(|(members, _)| members.iter().copied())
            .collect();
        // Reported for retry by the response, which stops each group at its first failure.
        blocked = behind_failures(slots, &retriable);
        let dead = dead(envelopes(&blocked)).await;
        (puts, dead)
    } else {
        tokio::join!(puts, dead(envelopes(&HashSet::new())))
    };

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
                for i in members.into_iter().filter(|i| !blocked.contains(i)) {
                    if let Outcome::Land(l) = &slots[i].outcome {
                        rejected.push((i, rejected_envelope(l, slots[i].retry_count, &e, now_ms)));
                    }
                }
            }
        }
    }
    let sent = stream::iter(rejected)
        .map(|(i, env)| async move {
            let code = env.error_code.clone().unwrap_or_default();
            (i, code, deps.dead_letters.send(env).await)
        })
        .buffer_unordered(concurrency)
        .collect::<Vec<_>>()
        .await;
    for (i, code, result) in dead.into_iter().chain(sent) {
        match result {
            Ok(()) => {
                stats.quarantined += 1;
                *stats.dead_letters.entry(code).or_default() += 1;
            }
            Err(e) => {
                tracing::error!(error = %e, index = i, "Dead letter not sent; the record will be retried.");
                failed.insert(i);
            }
        }
    }
    failed
}

/// The records of a FIFO batch that come after a failed record of their message group, the
/// failed ones not included.
fn behind_failures(slots: &[Slot<'_>], failed: &HashSet<usize>) -> HashSet<usize> {
    let mut stopped: HashSet<&str> = HashSet::new();
    let mut behind = HashSet::new();
    for (i, slot) in slots.iter().enumerate() {
        let Some(group) = slot.group.as_deref() else {
            continue;
        };
        if stopped.contains(group) {
            behind.insert(i);
        } else if failed.contains(&i) {
            stopped.insert(group);
        }
    }
    behind
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
    .with_original(l.record.clone().into_owned());
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

pub(super) fn compact_raw(raw: &RawValue) -> Cow<'_, RawValue> {
    match sluice_core::json::compact_raw(raw) {
        Cow::Borrowed(_) => Cow::Borrowed(raw),
        Cow::Owned(s) => RawValue::from_string(s).map_or(Cow::Borrowed(raw), Cow::Owned),
    }
}

pub(super) fn fallback_origin(kind: OriginKind, index: usize) -> Origin<'static> {
    Origin {
        kind,
        arn: Cow::Borrowed(""),
        id: Cow::Owned(format!("record-{index}")),
        attributes: None,
        message_attributes: None,
        kinesis: None,
    }
}

pub(super) fn dead<'a>(
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
