//! What a letter would become if it were sent back now, and how it would be sent.
//!
//! A letter is judged by the code as it is now: a transform letter's raw line goes through
//! [`decide`] under the current contracts, exactly as transform would take it; an ingest
//! letter's record goes through [`crate::ingest::check`], the current decoder. The judgement
//! says `pass`, `fails` (with the error it would fail with), `retry` (a failure a retry may fix,
//! which only the retry can tell: an outage, a change never processed, a stream range), or
//! `none` (nothing to send). With it comes the [`Action`] that sends the letter back.

use std::collections::HashMap;

use aws_sdk_sqs::types::MessageAttributeValue;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use sluice_aws::raw_objects::RawObjects;
use sluice_core::dead_letter::{DeadLetter, Holds, StreamBatch};
use sluice_core::decide::{decide, DecideContext, LineOutcome};
use sluice_core::envelope::{FailureEnvelope, RedriveMark, Step, REDRIVE_ATTRIBUTE};
use sluice_core::json::Limits;
use sluice_core::notification::parse_line_ref;
use sluice_core::ErrorClass;
use tokio::io::AsyncReadExt;

use crate::config::IngestConfig;
use crate::contracts::ContractSet;
use crate::dlq::DlqEntry;
use crate::lines::{read_line_capped, LineRead};

/// SQS allows at most ten message attributes on a message.
const MAX_MESSAGE_ATTRIBUTES: usize = 10;

/// Room kept below a queue's `MaximumMessageSize` for the message attributes.
const ATTRIBUTE_HEADROOM: usize = 4 * 1024;

/// The largest claim-checked original read back whole.
const MAX_ORIGINAL_BYTES: u64 = 64 * 1024 * 1024;

/// What sending a letter back would come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerdictKind {
    /// The current code takes it.
    Pass,
    /// Only sending it again can tell (an outage, a change never processed, a stream range).
    Retry,
    /// The current code refuses it again.
    Fails,
    /// There is nothing to send (an `s3:TestEvent`), or what to send could not be read.
    None,
}

/// The judgement on one letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Pass, retry, fails or none.
    pub kind: VerdictKind,
    /// For `fails`: the error code it would fail with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// For people: why.
    pub detail: String,
}

impl Verdict {
    fn pass(detail: impl Into<String>) -> Self {
        Self {
            kind: VerdictKind::Pass,
            code: None,
            detail: detail.into(),
        }
    }

    fn retry(detail: impl Into<String>) -> Self {
        Self {
            kind: VerdictKind::Retry,
            code: None,
            detail: detail.into(),
        }
    }

    fn fails(code: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            kind: VerdictKind::Fails,
            code: Some(code.into()),
            detail: detail.into(),
        }
    }

    fn none(detail: impl Into<String>) -> Self {
        Self {
            kind: VerdictKind::None,
            code: None,
            detail: detail.into(),
        }
    }

    /// The verdict as people read it: `would pass`, `still fails: …`.
    pub fn describe(&self) -> String {
        match self.kind {
            VerdictKind::Pass => format!("would pass ({})", self.detail),
            VerdictKind::Retry => format!("would be retried ({})", self.detail),
            VerdictKind::Fails => format!(
                "still fails: {}: {}",
                self.code.as_deref().unwrap_or_default(),
                self.detail
            ),
            VerdictKind::None => format!("nothing to redrive ({})", self.detail),
        }
    }
}

/// Where a message goes back to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// The queue with this ARN (where the message came from).
    Queue(String),
    /// The pipeline's ingest queue (its FIFO queue for a message of a group).
    Ingest {
        /// Whether the FIFO ingest queue is meant.
        fifo: bool,
    },
    /// The pipeline's transform queue.
    Transform,
}

/// A message to send.
#[derive(Debug, Clone)]
pub struct Resend {
    /// Where.
    pub to: Target,
    /// The body.
    pub body: String,
    /// The message attributes, the redrive mark among them.
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// The FIFO message group.
    pub group_id: Option<String>,
    /// The FIFO deduplication id: the same for every try to send this letter back, so a
    /// redrive that stopped between sending and deleting sends no second copy (within SQS's
    /// five-minute window), and different for each later redrive of the record.
    pub dedup_id: String,
}

/// How a letter goes back.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send a message to a queue.
    Send(Box<Resend>),
    /// Run these records through ingest (the records of an ingest letter from a stream, which
    /// cannot be put back on the stream).
    Ingest {
        /// A Lambda event holding the records.
        event: String,
    },
    /// Read a shard's range from its stream again and run it through ingest.
    Stream(StreamBatch),
}

/// A letter's judgement and, unless there is nothing to send, how it goes back.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The judgement.
    pub verdict: Verdict,
    /// How it goes back.
    pub action: Option<Action>,
}

/// What judging needs.
pub struct Judge<'a, O> {
    /// The contracts as they are now.
    pub contracts: &'a ContractSet,
    /// The ingest settings (the decoder's limits).
    pub ingest: &'a IngestConfig,
    /// The longest raw line transform reads.
    pub max_line_bytes: usize,
    /// The transform queue's `MaximumMessageSize`: a longer line goes back as a reference.
    pub max_message_bytes: usize,
    /// Where claim-checked originals and raw lines are read from.
    pub objects: &'a O,
    /// Now, epoch ms (the redrive mark's time).
    pub now_ms: i64,
}

impl<O: RawObjects> Judge<'_, O> {
    /// Judges a letter and plans its way back.
    pub async fn plan(&self, e: &DlqEntry) -> Plan {
        match &e.letter {
            DeadLetter::Envelope(env) => match env.step {
                Step::Transform => self.transform_letter(env).await,
                Step::Ingest | Step::Redrive => self.ingest_letter(env).await,
            },
            DeadLetter::StreamBatch(b) => match invocation_payload(&e.body) {
                // A failed invocation kept in S3 holds its records: no stream to read.
                Some(event) => Plan {
                    verdict: self.check_ingest(&event),
                    action: Some(Action::Ingest { event }),
                },
                None => Plan {
                    verdict: Verdict::retry(format!("read again from the stream: {b}")),
                    action: Some(Action::Stream(b.clone())),
                },
            },
            DeadLetter::Moved(m) => self.moved(e, &m.holds),
        }
    }

    async fn transform_letter(&self, env: &FailureEnvelope) -> Plan {
        let text = match self.original(env).await {
            Ok(t) => t,
            Err(why) => {
                return Plan {
                    verdict: Verdict::none(why),
                    action: None,
                }
            }
        };
        let mark = RedriveMark {
            retry_count: env.retry_count.saturating_add(1),
            first_failed_at: Some(env.first_failed_at.clone()),
            origin_id: None,
            raw_ref: env.raw_ref.clone(),
            redriven_at: Some(sluice_core::time::ms_to_rfc3339(self.now_ms)),
        };
        let send = |body: String| {
            Some(Action::Send(Box::new(Resend {
                to: Target::Transform,
                body,
                attributes: with_mark(HashMap::new(), &mark),
                group_id: None,
                dedup_id: dedup_id(&env.failure_id, env.retry_count),
            })))
        };
        let Some(text) = text else {
            // An object-level failure: the object goes back whole.
            let Some(object) = env.original_ref.as_deref().or(env.raw_ref.as_deref()) else {
                return Plan {
                    verdict: Verdict::none("the letter names no original and no raw object"),
                    action: None,
                };
            };
            return match object_notification(object) {
                Some(body) => Plan {
                    verdict: Verdict::retry(format!("transform reads {object} again")),
                    action: send(body),
                },
                None => Plan {
                    verdict: Verdict::none(format!("{object} is not an s3:// object")),
                    action: None,
                },
            };
        };
        if env.raw_ref.is_none() {
            // A transform message transform could not read (a line always has its place in
            // raw staging): it goes back as it was.
            let verdict = match sluice_core::notification::parse(&text, "") {
                Ok(_) => Verdict::pass("a transform message transform now reads"),
                Err(e) => Verdict::fails(e.code(), e.to_string()),
            };
            return Plan {
                verdict,
                action: send(text),
            };
        }
        let raw_ref = env.raw_ref.clone().unwrap_or_default();
        let mut verdict = self.judge_line(&text, &raw_ref, env);
        if env.error_code.as_deref() == Some("write_rejected") && verdict.kind == VerdictKind::Pass
        {
            verdict = Verdict::retry(format!(
                "the contract takes it; DynamoDB refused the row before ({})",
                env.error
            ));
        }
        let body = if text.len() + ATTRIBUTE_HEADROOM <= self.max_message_bytes {
            text
        } else if parse_line_ref(&raw_ref).is_some() {
            sluice_core::notification::line_ref_message(&raw_ref)
        } else {
            return Plan {
                verdict: Verdict::none(format!(
                    "the line ({} bytes) is too large for the transform queue and has no place \
                     in raw staging to be read from",
                    text.len()
                )),
                action: None,
            };
        };
        Plan {
            verdict,
            action: send(body),
        }
    }

    /// A raw line under the current contracts, as transform would decide it.
    fn judge_line(&self, text: &str, raw_ref: &str, env: &FailureEnvelope) -> Verdict {
        let limits = Limits {
            max_record_bytes: self.max_line_bytes,
            max_depth: self.ingest.limits.max_depth,
        };
        let cx = DecideContext {
            contracts: self.contracts,
            limits: &limits,
            tombstone_expires_at: 0,
        };
        match decide(text, raw_ref, &cx) {
            LineOutcome::NotARawLine(e) | LineOutcome::Undecodable { error: e, .. } => {
                Verdict::fails(e.code(), e.to_string())
            }
            LineOutcome::Control { .. } => {
                Verdict::pass("a control record: counted, and writes no row")
            }
            LineOutcome::Truncate { .. } => Verdict::fails(
                "source_truncated",
                "a source truncate is for a person to act on (README, Truncates); delete the \
                 letter once done",
            ),
            LineOutcome::NoContract { change, .. } => Verdict::fails(
                "no_contract",
                format!(
                    "no contract takes table {:?} in format {}",
                    change.route.table,
                    change.route.format.as_str()
                ),
            ),
            LineOutcome::Typed { results, .. } => {
                // The letter's own contract decides; a letter from before contracts were named
                // in letters is judged under every contract of its table.
                let own = env.contract.as_ref().map(|c| c.name.as_str());
                let mut passed = Vec::new();
                for r in &results {
                    if own.is_some_and(|n| n != r.contract.name) {
                        continue;
                    }
                    match &r.rows {
                        Ok(rows) => passed.push(format!(
                            "{} row(s) under {} v{}",
                            rows.len(),
                            r.contract.name,
                            r.contract.version
                        )),
                        Err(v) => {
                            return Verdict::fails(
                                v.code(),
                                format!(
                                    "contract {} v{}: {v}",
                                    r.contract.name, r.contract.version
                                ),
                            )
                        }
                    }
                }
                if passed.is_empty() {
                    Verdict::fails(
                        "no_contract",
                        format!(
                            "contract {} no longer takes this table",
                            own.unwrap_or_default()
                        ),
                    )
                } else {
                    Verdict::pass(passed.join(", "))
                }
            }
        }
    }

    async fn ingest_letter(&self, env: &FailureEnvelope) -> Plan {
        let text = match self.original(env).await {
            Ok(Some(t)) => t,
            Ok(None) => {
                return Plan {
                    verdict: Verdict::none("the letter holds no original"),
                    action: None,
                }
            }
            Err(why) => {
                return Plan {
                    verdict: Verdict::none(why),
                    action: None,
                }
            }
        };
        let origin: OriginView = serde_json::from_str(env.origin.get()).unwrap_or_default();
        if origin.kind.as_deref() != Some("sqs") {
            // A stream record (DynamoDB or Kinesis) as the Lambda event held it: it cannot go
            // back onto its stream, so it goes through ingest here.
            let event = format!(r#"{{"Records":[{text}]}}"#);
            return Plan {
                verdict: self.check_ingest(&event),
                action: Some(Action::Ingest { event }),
            };
        }
        let previous = origin
            .message_attributes
            .as_deref()
            .and_then(|a| lambda_attributes(a.get()).remove(REDRIVE_ATTRIBUTE))
            .and_then(|v| v.string_value().and_then(RedriveMark::parse));
        let mark = RedriveMark {
            retry_count: env.retry_count.saturating_add(1),
            first_failed_at: Some(env.first_failed_at.clone()),
            origin_id: previous
                .and_then(|m| m.origin_id)
                .or_else(|| origin.id.clone()),
            raw_ref: None,
            redriven_at: Some(sluice_core::time::ms_to_rfc3339(self.now_ms)),
        };
        let group_id = origin
            .attributes
            .as_deref()
            .and_then(|a| serde_json::from_str::<SqsAttributes>(a.get()).ok())
            .and_then(|a| a.message_group_id);
        let attributes = origin
            .message_attributes
            .as_deref()
            .map(|a| lambda_attributes(a.get()))
            .unwrap_or_default();
        let event = sqs_event(&text, &origin, &attributes);
        let to = match origin.arn.as_deref().filter(|a| !a.is_empty()) {
            Some(arn) => Target::Queue(arn.to_owned()),
            None => Target::Ingest {
                fifo: group_id.is_some(),
            },
        };
        let mut verdict = self.check_ingest(&event);
        if matches!(
            env.error_class,
            ErrorClass::Retriable | ErrorClass::Internal
        ) && verdict.kind == VerdictKind::Pass
        {
            verdict = Verdict::retry(format!("it failed on {}", env.error));
        }
        Plan {
            verdict,
            action: Some(Action::Send(Box::new(Resend {
                to,
                body: text,
                attributes: with_mark(attributes, &mark),
                group_id,
                dedup_id: dedup_id(&env.failure_id, env.retry_count),
            }))),
        }
    }

    fn check_ingest(&self, event: &str) -> Verdict {
        match crate::ingest::check(event, self.ingest) {
            Ok(results) => match results.into_iter().find_map(Result::err) {
                None => Verdict::pass("the decoder reads it"),
                Some(env) => Verdict::fails(
                    env.error_code.clone().unwrap_or_default(),
                    env.error.clone(),
                ),
            },
            Err(e) => Verdict::fails("unsupported_event", e.to_string()),
        }
    }

    fn moved(&self, e: &DlqEntry, holds: &Holds) -> Plan {
        let to_step = match holds {
            Holds::Nothing { what } => {
                return Plan {
                    verdict: Verdict::none(what.clone()),
                    action: None,
                }
            }
            Holds::Objects { .. } | Holds::RawLine { .. } => Target::Transform,
            Holds::Change { .. } | Holds::Unreadable { .. } => Target::Ingest {
                fifo: e.group_id.is_some(),
            },
        };
        let verdict = match holds {
            Holds::Objects { .. } | Holds::RawLine { .. } => {
                Verdict::retry(format!("transform takes {holds} again"))
            }
            _ => {
                let origin = OriginView::default();
                let verdict =
                    self.check_ingest(&sqs_event(&e.body, &origin, &e.message_attributes));
                // A queue's redrive policy moved it before ingest could say why it fails (on a
                // FIFO queue, an earlier message of its group kept failing). Sent back, ingest
                // dead-letters it with its reason: a letter a person can act on, once.
                match verdict.kind {
                    VerdictKind::Fails => Verdict::retry(format!(
                        "moved by the queue's redrive policy before ingest judged it; ingest \
                         will dead-letter it with its reason: {}: {}",
                        verdict.code.as_deref().unwrap_or_default(),
                        verdict.detail
                    )),
                    _ => verdict,
                }
            }
        };
        let mut attributes = e.message_attributes.clone();
        let previous = attributes
            .remove(REDRIVE_ATTRIBUTE)
            .and_then(|v| v.string_value().and_then(RedriveMark::parse))
            .unwrap_or_default();
        let mark = RedriveMark {
            retry_count: previous.retry_count.saturating_add(1),
            redriven_at: Some(sluice_core::time::ms_to_rfc3339(self.now_ms)),
            ..previous
        };
        Plan {
            verdict,
            action: Some(Action::Send(Box::new(Resend {
                to: e.source_arn.clone().map_or(to_step, Target::Queue),
                body: e.body.clone(),
                attributes: with_mark(attributes, &mark),
                group_id: e.group_id.clone(),
                dedup_id: dedup_id(&e.message_id, 0),
            }))),
        }
    }

    /// The letter's original: inline, or read back from its claim-check or its raw line.
    /// `Ok(None)` when the letter names a whole object rather than a record.
    async fn original(&self, env: &FailureEnvelope) -> Result<Option<String>, String> {
        if let Some(o) = &env.original {
            return Ok(Some(o.clone()));
        }
        let Some(r) = env.original_ref.as_deref() else {
            return Ok(None);
        };
        if let Some((bucket, key, n)) = parse_line_ref(r) {
            return self.line_of(&bucket, &key, n).await.map(Some);
        }
        let Some((bucket, key)) = r.strip_prefix("s3://").and_then(|p| p.split_once('/')) else {
            return Err(format!(
                "the original's reference {r:?} is not an s3:// URI"
            ));
        };
        if !key.starts_with("quarantine/") {
            return Ok(None);
        }
        let reader = self
            .objects
            .open(bucket, key)
            .await
            .map_err(|e| format!("could not read the original {r}: {e}"))?;
        let mut bytes = Vec::new();
        reader
            .take(MAX_ORIGINAL_BYTES)
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| format!("could not read the original {r}: {e}"))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| format!("the original {r} is not UTF-8 text"))
    }

    /// Line `n` (from 1) of a raw object.
    async fn line_of(&self, bucket: &str, key: &str, n: usize) -> Result<String, String> {
        let at = format!("s3://{bucket}/{key}#L{n}");
        let mut reader = self
            .objects
            .open(bucket, key)
            .await
            .map_err(|e| format!("could not read {at}: {e}"))?;
        let mut buf = Vec::new();
        for i in 1..=n {
            buf.clear();
            match read_line_capped(&mut reader, &mut buf, self.max_line_bytes).await {
                Ok(LineRead::Line) if i == n => {
                    return String::from_utf8(std::mem::take(&mut buf))
                        .map_err(|_| format!("{at} is not UTF-8 text"))
                }
                Ok(LineRead::Line) => {}
                Ok(LineRead::TooLong(size)) if i == n => {
                    return Err(format!(
                        "{at} is {size} bytes, over the longest line transform reads ({})",
                        self.max_line_bytes
                    ))
                }
                Ok(LineRead::TooLong(_)) => {}
                Ok(LineRead::Eof) => return Err(format!("{at}: the object has {} line(s)", i - 1)),
                Err(e) => return Err(format!("could not read {at}: {e}")),
            }
        }
        Err(format!("{at} does not exist"))
    }
}

/// The records of a failed invocation as an S3 on-failure destination keeps it: its `payload`
/// (the event, as an object or as JSON text) when that holds a `Records` array.
pub fn invocation_payload(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Kept {
        payload: Option<Box<RawValue>>,
    }
    let payload = serde_json::from_str::<Kept>(body).ok()?.payload?;
    let text = match serde_json::from_str::<String>(payload.get()) {
        Ok(inner) => inner,
        Err(_) => payload.get().to_owned(),
    };
    #[derive(Deserialize)]
    struct Event<'a> {
        #[serde(rename = "Records", borrow)]
        records: Vec<&'a RawValue>,
    }
    serde_json::from_str::<Event<'_>>(&text)
        .ok()
        .filter(|e| !e.records.is_empty())?;
    Some(text)
}

/// The parts of an envelope's `origin` a redrive needs.
#[derive(Debug, Default, Deserialize)]
struct OriginView {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    arn: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    attributes: Option<Box<RawValue>>,
    #[serde(default)]
    message_attributes: Option<Box<RawValue>>,
}

#[derive(Debug, Deserialize)]
struct SqsAttributes {
    #[serde(rename = "MessageGroupId", default)]
    message_group_id: Option<String>,
}

/// One message attribute as a Lambda event holds it.
#[derive(Debug, Deserialize)]
struct LambdaAttribute {
    #[serde(rename = "dataType", default)]
    data_type: Option<String>,
    #[serde(rename = "stringValue", default)]
    string_value: Option<String>,
    #[serde(rename = "binaryValue", default)]
    binary_value: Option<String>,
}

/// Message attributes as a Lambda event holds them, as the SDK sends them. An attribute that
/// cannot be read is left out.
fn lambda_attributes(json: &str) -> HashMap<String, MessageAttributeValue> {
    let read: HashMap<String, LambdaAttribute> = serde_json::from_str(json).unwrap_or_default();
    read.into_iter()
        .filter_map(|(name, a)| {
            let binary = match a.binary_value {
                Some(b) => Some(aws_smithy_types::Blob::new(
                    aws_smithy_types::base64::decode(b).ok()?,
                )),
                None => None,
            };
            let v = MessageAttributeValue::builder()
                .data_type(a.data_type.unwrap_or_else(|| "String".into()))
                .set_string_value(a.string_value)
                .set_binary_value(binary)
                .build()
                .ok()?;
            Some((name, v))
        })
        .collect()
}

/// Message attributes in the Lambda event's shape.
fn attributes_json(attributes: &HashMap<String, MessageAttributeValue>) -> serde_json::Value {
    attributes
        .iter()
        .map(|(k, v)| {
            let mut a = serde_json::json!({ "dataType": v.data_type() });
            if let Some(s) = v.string_value() {
                a["stringValue"] = s.into();
            }
            if let Some(b) = v.binary_value() {
                a["binaryValue"] = aws_smithy_types::base64::encode(b.as_ref()).into();
            }
            (k.clone(), a)
        })
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// A one-message SQS event, as Lambda would deliver the body.
fn sqs_event(
    body: &str,
    origin: &OriginView,
    attributes: &HashMap<String, MessageAttributeValue>,
) -> String {
    let system: serde_json::Value = origin
        .attributes
        .as_deref()
        .and_then(|a| serde_json::from_str(a.get()).ok())
        .unwrap_or_else(|| serde_json::json!({}));
    serde_json::json!({"Records": [{
        "messageId": origin.id.clone().unwrap_or_else(|| "redrive".into()),
        "receiptHandle": "",
        "body": body,
        "attributes": system,
        "messageAttributes": attributes_json(attributes),
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": origin.arn.clone().unwrap_or_default(),
        "awsRegion": "",
    }]})
    .to_string()
}

/// The attributes with the redrive mark set, unless SQS's ten would be exceeded: then the
/// record goes back without its history rather than not at all.
fn with_mark(
    mut attributes: HashMap<String, MessageAttributeValue>,
    mark: &RedriveMark,
) -> HashMap<String, MessageAttributeValue> {
    attributes.remove(REDRIVE_ATTRIBUTE);
    if attributes.len() >= MAX_MESSAGE_ATTRIBUTES {
        tracing::warn!(
            "The message already has {} attributes; it goes back without its redrive mark.",
            attributes.len()
        );
        return attributes;
    }
    if let Ok(v) = MessageAttributeValue::builder()
        .data_type("String")
        .string_value(mark.to_json())
        .build()
    {
        attributes.insert(REDRIVE_ATTRIBUTE.to_owned(), v);
    }
    attributes
}

/// A FIFO deduplication id for one try to send a letter back.
fn dedup_id(id: &str, retry_count: u32) -> String {
    let mut h = Sha256::new();
    h.update(id.as_bytes());
    h.update(retry_count.to_be_bytes());
    sluice_core::raw::hex(&h.finalize()[..16])
}

/// An S3 notification naming one object, as the raw bucket sends it.
pub fn object_notification(object: &str) -> Option<String> {
    let (bucket, key) = object.strip_prefix("s3://")?.split_once('/')?;
    let key = key.split_once("#L").map_or(key, |(k, _)| k);
    (!bucket.is_empty() && !key.is_empty()).then(|| {
        serde_json::json!({"Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": encode_key(key)}},
        }]})
        .to_string()
    })
}

/// Encodes a key as S3 notifications do (form encoding, `/` kept).
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'=' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
    use sluice_aws::memory::Memory;

    const CONTRACT_V1: &str = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n";
    const CONTRACT_V2: &str = "name: people\nversion: 2\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, default: unknown}\n  - {name: age, type: int}\n";

    fn line(after: &str) -> String {
        format!(
            r#"{{"v":1,"format":"app","table":"people","op":"insert","seq":"0000000000000000000000000000000000000001","ts_ms":1,"ts_source":"source","ingested_ms":1,"origin":{{"kind":"sqs","arn":"a","id":"m"}},"record":{{"table":"people","op":"insert","key":{{"id":1}},"after":{after},"seq":1}}}}"#
        )
    }

    fn letter(body: serde_json::Value, attrs: &[(MessageSystemAttributeName, &str)]) -> DlqEntry {
        letter_with_body(&body.to_string(), attrs)
    }

    fn letter_with_body(body: &str, attrs: &[(MessageSystemAttributeName, &str)]) -> DlqEntry {
        let mut m = Message::builder()
            .message_id("dlq-1")
            .receipt_handle("h")
            .body(body);
        for (k, v) in attrs {
            m = m.attributes(k.clone(), *v);
        }
        DlqEntry::from_message("http://q/dlq", &m.build(), &Limits::default())
    }

    fn transform_letter(text: &str) -> DlqEntry {
        letter(
            serde_json::json!({"sluice_failure":1,"failure_id":"f1","step":"transform",
                "error_class":"contract_violation","error_code":"missing_field",
                "error":"contract people v1: field email is required","table":"people","format":"app",
                "origin":{"kind":"sqs","arn":"a","id":"m"},"raw_ref":"s3://raw/raw/people/x.ndjson.gz#L3",
                "original":text,"original_bytes":text.len(),"contract":{"name":"people","version":1},
                "first_failed_at":"2026-11-30T10:00:00.000Z","failed_at":"2026-11-30T10:00:00.000Z",
                "retry_count":2,"pipeline_version":"0"}),
            &[],
        )
    }

    async fn plan(contract: &str, e: &DlqEntry, objects: &Memory) -> Plan {
        let contracts = ContractSet::from_files([("people.yaml".to_owned(), contract.to_owned())]);
        let ingest = IngestConfig::from_lookup(|n| match n {
            "SLUICE_RAW_BUCKET" | "SLUICE_DLQ_URL" => Some("x".into()),
            _ => None,
        })
        .unwrap();
        Judge {
            contracts: &contracts,
            ingest: &ingest,
            max_line_bytes: 1 << 20,
            max_message_bytes: 256 * 1024,
            objects,
            now_ms: 1_796_000_000_000,
        }
        .plan(e)
        .await
    }

    fn resend(p: &Plan) -> &Resend {
        match &p.action {
            Some(Action::Send(r)) => r,
            other => panic!("{other:?}"),
        }
    }

    fn mark_of(r: &Resend) -> RedriveMark {
        RedriveMark::parse(r.attributes[REDRIVE_ATTRIBUTE].string_value().unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_transform_letter_is_judged_by_the_contract_as_it_is_now() {
        let missing = line(r#"{"id":1}"#);
        let e = transform_letter(&missing);
        let store = Memory::new();
        let before = plan(CONTRACT_V1, &e, &store).await;
        assert_eq!(
            before.verdict.kind,
            VerdictKind::Fails,
            "{:?}",
            before.verdict
        );
        assert_eq!(before.verdict.code.as_deref(), Some("missing_field"));
        let after = plan(CONTRACT_V2, &e, &store).await;
        assert_eq!(after.verdict.kind, VerdictKind::Pass, "{:?}", after.verdict);
        assert!(
            after.verdict.detail.contains("people v2"),
            "{:?}",
            after.verdict
        );
        // It goes back inline to the transform queue, with its history.
        let r = resend(&after);
        assert_eq!(r.to, Target::Transform);
        assert_eq!(r.body, missing);
        let m = mark_of(r);
        assert_eq!(m.retry_count, 3);
        assert_eq!(
            m.raw_ref.as_deref(),
            Some("s3://raw/raw/people/x.ndjson.gz#L3")
        );
        assert_eq!(
            m.first_failed_at.as_deref(),
            Some("2026-11-30T10:00:00.000Z")
        );
        // A wrong value still fails under the new version.
        let wrong = transform_letter(&line(r#"{"id":1,"age":"old"}"#));
        let p = plan(CONTRACT_V2, &wrong, &store).await;
        assert_eq!(
            p.verdict.code.as_deref(),
            Some("type_mismatch"),
            "{:?}",
            p.verdict
        );
        assert!(p
            .verdict
            .describe()
            .starts_with("still fails: type_mismatch: contract people v2"));
    }

    #[tokio::test]
    async fn claim_checked_and_too_large_lines_are_read_back_or_referenced() {
        let big = line(&format!(
            r#"{{"id":1,"email":"{}"}}"#,
            "x".repeat(300 * 1024)
        ));
        let store = Memory::new();
        store.put_object("quarantine/f1.json", big.clone().into_bytes());
        let mut body: serde_json::Value = serde_json::from_str(&transform_letter("").body).unwrap();
        body.as_object_mut().unwrap().remove("original");
        body["original_ref"] = "s3://raw/quarantine/f1.json".into();
        let e = letter(body, &[]);
        let p = plan(CONTRACT_V1, &e, &store).await;
        assert_eq!(p.verdict.kind, VerdictKind::Pass, "{:?}", p.verdict);
        // Over the queue's 256 KiB: it goes back as a reference to its raw line.
        assert_eq!(
            resend(&p).body,
            r#"{"sluice_line_ref":"s3://raw/raw/people/x.ndjson.gz#L3"}"#
        );
        // A missing claim-check is nothing to send, and says why.
        let none = plan(CONTRACT_V1, &e, &Memory::new()).await;
        assert_eq!(none.verdict.kind, VerdictKind::None);
        assert!(
            none.verdict.detail.contains("quarantine/f1.json"),
            "{:?}",
            none.verdict
        );
        assert!(none.action.is_none());
    }

    #[tokio::test]
    async fn an_ingest_letter_goes_back_to_its_queue_with_its_group_and_attributes() {
        let body = r#"{"table":"people","op":"insert","key":{"id":1},"after":{"id":1},"seq":7}"#;
        let e = letter(
            serde_json::json!({"sluice_failure":1,"failure_id":"f2","step":"ingest",
                "error_class":"retriable","error_code":"raw_write_failed","error":"S3 was down",
                "origin":{"kind":"sqs","arn":"arn:aws:sqs:us-east-1:123456789012:in.fifo","id":"m-1",
                    "attributes":{"MessageGroupId":"people-1","ApproximateReceiveCount":"1"},
                    "message_attributes":{"tenant":{"dataType":"String","stringValue":"acme"},
                        "blob":{"dataType":"Binary","binaryValue":"AAEC"}}},
                "original":body,"original_bytes":body.len(),
                "first_failed_at":"2026-11-30T10:00:00.000Z","failed_at":"2026-11-30T10:00:00.000Z",
                "retry_count":0,"pipeline_version":"0"}),
            &[],
        );
        let p = plan(CONTRACT_V1, &e, &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::Retry, "{:?}", p.verdict);
        let r = resend(&p);
        assert_eq!(
            r.to,
            Target::Queue("arn:aws:sqs:us-east-1:123456789012:in.fifo".into())
        );
        assert_eq!(r.body, body);
        assert_eq!(r.group_id.as_deref(), Some("people-1"));
        assert_eq!(r.attributes["tenant"].string_value(), Some("acme"));
        assert_eq!(
            r.attributes["blob"]
                .binary_value()
                .map(|b| b.as_ref().to_vec()),
            Some(vec![0, 1, 2])
        );
        assert_eq!(mark_of(r).origin_id.as_deref(), Some("m-1"));
        assert_eq!(r.dedup_id, dedup_id("f2", 0));
        assert_ne!(r.dedup_id, dedup_id("f2", 1));
        // An unreadable body still fails, by the current decoder.
        let mut bad: serde_json::Value = serde_json::from_str(&e.body).unwrap();
        bad["original"] = "{\"table\":\"people\"}".into();
        bad["error_class"] = "bad_format".into();
        let p = plan(CONTRACT_V1, &letter(bad, &[]), &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::Fails, "{:?}", p.verdict);
    }

    #[tokio::test]
    async fn a_moved_message_ingest_rejects_goes_back_to_get_its_reason() {
        let e = letter_with_body(
            "not json",
            &[(
                MessageSystemAttributeName::DeadLetterQueueSourceArn,
                "arn:aws:sqs:us-east-1:1:ingest.fifo",
            )],
        );
        let p = plan(CONTRACT_V1, &e, &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::Retry, "{:?}", p.verdict);
        assert!(p.verdict.detail.contains("not_json"), "{:?}", p.verdict);
        assert_eq!(
            resend(&p).to,
            Target::Queue("arn:aws:sqs:us-east-1:1:ingest.fifo".into())
        );
    }

    #[tokio::test]
    async fn moved_messages_go_back_where_they_came_from() {
        let body = serde_json::json!({"table":"people","op":"insert","key":{"id":1},"after":{"id":1},"seq":7});
        let e = letter(
            body.clone(),
            &[
                (MessageSystemAttributeName::MessageGroupId, "g-9"),
                (
                    MessageSystemAttributeName::DeadLetterQueueSourceArn,
                    "arn:aws:sqs:us-east-1:1:ingest.fifo",
                ),
            ],
        );
        let p = plan(CONTRACT_V1, &e, &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::Pass, "{:?}", p.verdict);
        let r = resend(&p);
        assert_eq!(
            r.to,
            Target::Queue("arn:aws:sqs:us-east-1:1:ingest.fifo".into())
        );
        assert_eq!(r.group_id.as_deref(), Some("g-9"));
        assert_eq!(r.body, body.to_string());
        assert_eq!(mark_of(r).retry_count, 1);
        // Without the source ARN (the emulator omits it): by what it holds.
        let e = letter(body, &[(MessageSystemAttributeName::MessageGroupId, "g-9")]);
        assert_eq!(
            resend(&plan(CONTRACT_V1, &e, &Memory::new()).await).to,
            Target::Ingest { fifo: true }
        );
        let note = letter(
            serde_json::json!({"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"raw/people/x.ndjson.gz"}}}]}),
            &[],
        );
        let p = plan(CONTRACT_V1, &note, &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::Retry);
        assert_eq!(resend(&p).to, Target::Transform);
        let test_event = letter(
            serde_json::json!({"Service":"Amazon S3","Event":"s3:TestEvent"}),
            &[],
        );
        let p = plan(CONTRACT_V1, &test_event, &Memory::new()).await;
        assert_eq!(p.verdict.kind, VerdictKind::None);
        assert!(p.action.is_none());
    }

    #[test]
    fn a_kept_invocation_gives_its_records_as_text_or_object() {
        let event = r#"{"Records":[{"eventSource":"aws:dynamodb","eventID":"1"}]}"#;
        let as_text = serde_json::json!({"DDBStreamBatchInfo": {}, "payload": event}).to_string();
        assert_eq!(invocation_payload(&as_text).as_deref(), Some(event));
        let as_object = format!(r#"{{"DDBStreamBatchInfo":{{}},"payload":{event}}}"#);
        assert_eq!(invocation_payload(&as_object).as_deref(), Some(event));
        for none in [
            r#"{"DDBStreamBatchInfo":{}}"#,
            r#"{"payload":"{\"Records\":[]}"}"#,
            r#"{"payload":"not json"}"#,
        ] {
            assert_eq!(invocation_payload(none), None, "{none}");
        }
    }

    #[test]
    fn object_notifications_encode_keys_as_s3_does() {
        let n = object_notification("s3://b/raw/my table/dt=2026-11-30/x+y.ndjson.gz#L4").unwrap();
        let work = sluice_core::notification::parse(&n, "").unwrap();
        assert_eq!(
            work,
            [sluice_core::notification::Work::Object {
                bucket: "b".into(),
                key: "raw/my table/dt=2026-11-30/x+y.ndjson.gz".into()
            }]
        );
        assert!(object_notification("b/k").is_none());
    }
}
