//! The SQS dead-letter queue, with S3 claim-checks for originals too large for a message.
//!
//! SQS message attributes repeat `step`, `table`, `error_class` and `error_code`, so dead letters
//! can be filtered without reading their bodies. The queue's `MaximumMessageSize` is read once and
//! cached; an envelope that would not fit, with headroom for its attributes, has its original
//! stored at `s3://<bucket>/quarantine/<failure_id>.json` and referenced from the body.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::MessageAttributeValue;
use sluice_core::envelope::{quarantine_key, FailureEnvelope};
use tokio::sync::OnceCell;

use crate::error::AwsError;
use crate::ports::DeadLetters;

/// The message size assumed when the queue's own limit cannot be read.
pub const FALLBACK_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Room kept free below the limit for message attributes and SQS's own accounting.
pub const HEADROOM_BYTES: usize = 8 * 1024;

/// Sends failure envelopes to one SQS queue.
#[derive(Debug, Clone)]
pub struct SqsDeadLetters {
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    s3: aws_sdk_s3::Client,
    bucket: String,
    max_bytes: std::sync::Arc<OnceCell<usize>>,
}

impl SqsDeadLetters {
    /// A dead-letter sink on `queue_url`, claim-checking into `bucket`.
    pub fn new(
        sqs: aws_sdk_sqs::Client,
        queue_url: impl Into<String>,
        s3: aws_sdk_s3::Client,
        bucket: impl Into<String>,
    ) -> Self {
        Self {
            sqs,
            queue_url: queue_url.into(),
            s3,
            bucket: bucket.into(),
            max_bytes: std::sync::Arc::default(),
        }
    }

    /// The queue's `MaximumMessageSize`, read once.
    pub async fn max_message_bytes(&self) -> usize {
        *self
            .max_bytes
            .get_or_init(|| async {
                let read = self
                    .sqs
                    .get_queue_attributes()
                    .queue_url(&self.queue_url)
                    .attribute_names(aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize)
                    .send()
                    .await;
                match read {
                    Ok(out) => out
                        .attributes()
                        .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize))
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(FALLBACK_MAX_MESSAGE_BYTES),
                    Err(e) => {
                        let e = AwsError::from_sdk("GetQueueAttributes", self.queue_url.clone(), e);
                        tracing::warn!(error = %e, "Could not read the DLQ's maximum message size; assuming 256 KiB.");
                        FALLBACK_MAX_MESSAGE_BYTES
                    }
                }
            })
            .await
    }

    async fn claim_check(&self, envelope: &mut FailureEnvelope) -> Result<(), AwsError> {
        let Some(original) = envelope.original.take() else {
            return Ok(());
        };
        let key = quarantine_key(&envelope.failure_id);
        let target = format!("s3://{}/{key}", self.bucket);
        self.s3
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/octet-stream")
            .body(ByteStream::from(original.into_bytes()))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutObject", target.clone(), e))?;
        envelope.original_ref = Some(target);
        Ok(())
    }

    async fn send_body(&self, envelope: &FailureEnvelope) -> Result<(), AwsError> {
        let body = serde_json::to_string(envelope)
            .map_err(|e| AwsError::local("SendMessage", self.queue_url.clone(), e))?;
        let attr = |v: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(v)
                .build()
                .map_err(|e| AwsError::local("SendMessage", self.queue_url.clone(), e))
        };
        let mut req = self
            .sqs
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .message_attributes("step", attr(envelope.step.as_str())?)
            .message_attributes("error_class", attr(envelope.error_class.as_str())?);
        if let Some(table) = envelope.table.as_deref().filter(|t| !t.is_empty()) {
            req = req.message_attributes("table", attr(table)?);
        }
        if let Some(code) = envelope.error_code.as_deref() {
            req = req.message_attributes("error_code", attr(code)?);
        }
        req.send()
            .await
            .map_err(|e| AwsError::from_sdk("SendMessage", self.queue_url.clone(), e))?;
        Ok(())
    }
}

impl DeadLetters for SqsDeadLetters {
    async fn send(&self, mut envelope: FailureEnvelope) -> Result<(), AwsError> {
        let limit = self
            .max_message_bytes()
            .await
            .saturating_sub(HEADROOM_BYTES);
        let size = serde_json::to_string(&envelope)
            .map_err(|e| AwsError::local("SendMessage", self.queue_url.clone(), e))?
            .chars()
            .count();
        if size > limit {
            self.claim_check(&mut envelope).await?;
        }
        match self.send_body(&envelope).await {
            // SQS refuses some characters (InvalidMessageContents) that JSON allows. The original
            // is then claim-checked, so the dead letter is never lost to its content.
            Err(e) if !e.is_retriable() && envelope.original.is_some() => {
                tracing::warn!(error = %e, failure_id = %envelope.failure_id, "Dead letter refused by SQS; claim-checking its original.");
                self.claim_check(&mut envelope).await?;
                self.send_body(&envelope).await
            }
            other => other,
        }
    }
}

/// What [`peek_all`] read.
#[derive(Debug, Clone, Default)]
pub struct Peeked {
    /// Every message read, once each.
    pub messages: Vec<aws_sdk_sqs::types::Message>,
    /// False when the time budget ran out before the queue was read to its end.
    pub complete: bool,
    /// The queue's `ApproximateNumberOfMessages` before the read (`None` if unreadable).
    pub approximate_total: Option<u64>,
}

/// How long messages stay hidden beyond the read's budget: they must not come back (and be
/// read again, forever) while the read goes on.
const PEEK_MARGIN_SECS: u64 = 30;

/// SQS's longest visibility timeout, 12 hours.
const MAX_HIDE_SECS: u64 = 43_200;

/// A pass over every message of a queue, in pages, each message once. Every message received
/// stays hidden for the whole pass (its budget and a margin), so none comes back and is read
/// again while the pass goes on; what the caller does not delete it gives back with
/// [`Scan::release`].
///
/// The pass ends in bounded time on any queue: when a long poll finds nothing more, when a
/// receive brings back only messages already read, or when the budget runs out (then
/// [`Scan::complete`] is false and the rest was not read). Used by [`peek_all`] and by the
/// redrive, which deletes what it sent back and releases the rest.
#[derive(Debug)]
pub struct Scan {
    queue_url: String,
    started: std::time::Instant,
    budget: std::time::Duration,
    hide_secs: i32,
    seen: std::collections::HashSet<String>,
    long_poll: bool,
    done: bool,
    complete: bool,
}

impl Scan {
    /// A pass over `queue_url` that reads for at most `budget`.
    pub fn new(queue_url: impl Into<String>, budget: std::time::Duration) -> Self {
        let hide = budget
            .as_secs()
            .saturating_add(PEEK_MARGIN_SECS)
            .min(MAX_HIDE_SECS);
        Self {
            queue_url: queue_url.into(),
            started: std::time::Instant::now(),
            budget,
            hide_secs: i32::try_from(hide).unwrap_or(43_200),
            seen: std::collections::HashSet::new(),
            long_poll: false,
            done: false,
            complete: false,
        }
    }

    /// The queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Whether the pass reached the end of the queue (rather than its budget).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// How many messages were read.
    pub fn read(&self) -> usize {
        self.seen.len()
    }

    /// The next page of messages not read before, or `None` at the end of the pass.
    pub async fn next_page(
        &mut self,
        sqs: &aws_sdk_sqs::Client,
    ) -> Result<Option<Vec<aws_sdk_sqs::types::Message>>, AwsError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        while !self.done {
            if self.started.elapsed() >= self.budget {
                self.done = true;
                break;
            }
            let out = sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(self.hide_secs)
                // A short poll may miss messages on some of the queue's servers: an empty one
                // is confirmed by a long poll, which asks them all.
                .wait_time_seconds(i32::from(self.long_poll))
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ReceiveMessage", self.queue_url.clone(), e))?;
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                if self.long_poll {
                    self.complete = true;
                    self.done = true;
                    break;
                }
                self.long_poll = true;
                continue;
            }
            self.long_poll = false;
            let new: Vec<_> = batch
                .into_iter()
                .filter(|m| {
                    self.seen
                        .insert(m.message_id().unwrap_or_default().to_owned())
                })
                .collect();
            if new.is_empty() {
                // Only messages already read came back: the pass went round the whole queue.
                self.complete = true;
                self.done = true;
                break;
            }
            return Ok(Some(new));
        }
        Ok(None)
    }

    /// Makes received messages visible again at once.
    pub async fn release(
        &self,
        sqs: &aws_sdk_sqs::Client,
        receipt_handles: &[String],
    ) -> Result<(), AwsError> {
        crate::listing::set_visibility(sqs, &self.queue_url, receipt_handles, 0).await
    }
}

/// Reads every message on a queue without consuming it: each is received, kept invisible
/// while the read goes on, and made visible again at the end. For inspection (`sluice status`,
/// `sluice audit`, `sluice dlq list`); not for a queue that consumers are reading at the same
/// time. See [`Scan`] for how the read ends.
pub async fn peek_all(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    budget: std::time::Duration,
) -> Result<Peeked, AwsError> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let approximate_total = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", queue_url, e))?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|v| v.parse().ok());
    let mut scan = Scan::new(queue_url, budget);
    let mut all = Vec::new();
    let read = async {
        while let Some(page) = scan.next_page(sqs).await? {
            all.extend(page);
        }
        Ok::<_, AwsError>(())
    }
    .await;
    let handles: Vec<String> = all
        .iter()
        .filter_map(|m| m.receipt_handle().map(str::to_owned))
        .collect();
    // Given back even when the read failed half way, so nothing stays hidden for long.
    let released = scan.release(sqs, &handles).await;
    read?;
    released?;
    Ok(Peeked {
        messages: all,
        complete: scan.complete(),
        approximate_total,
    })
}
