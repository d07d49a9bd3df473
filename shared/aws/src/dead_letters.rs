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
    /// Why the read is not the whole queue, for people (see [`Scan::incomplete_reason`]).
    pub incomplete_reason: Option<String>,
}

/// How long messages stay hidden beyond the read's budget: they must not come back (and be
/// read again, forever) while the read goes on.
const PEEK_MARGIN_SECS: u64 = 30;

/// SQS's longest visibility timeout, 12 hours.
const MAX_HIDE_SECS: u64 = 43_200;

/// How many receives a pass keeps in flight on a standard queue. Each message received is
/// hidden at once, so parallel receives never return the same message twice, and a pass over
/// 100,000 letters (10,000 receives) takes a few minutes instead of a quarter of an hour.
const PARALLEL_RECEIVES: usize = 4;

/// A pass over every message of a queue, in pages, each message once. Every message received
/// stays hidden for the whole pass (its budget and a margin), so none comes back and is read
/// again while the pass goes on; what the caller does not delete it gives back with
/// [`Scan::release`].
///
/// The pass ends in bounded time on any queue: when a long poll finds nothing more, when a
/// receive brings back only messages already read, when the budget runs out, or when the
/// queue holds as many hidden messages as SQS allows (`OverLimit`, 120,000 on a standard
/// queue). In the last two cases [`Scan::complete`] is false and the rest was not read.
///
/// A FIFO queue shows only the head of each message group while messages of that group are
/// hidden, so a pass that keeps what it read cannot see past it: when such a pass ends with
/// messages still waiting ([`Scan::held_back`]), it is not complete either. A pass that
/// deletes what it read (a redrive) moves on through the group.
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
    fifo: bool,
    held_back: Option<Option<u64>>,
    over_limit: bool,
}

impl Scan {
    /// A pass over `queue_url` that reads for at most `budget`.
    pub fn new(queue_url: impl Into<String>, budget: std::time::Duration) -> Self {
        let queue_url = queue_url.into();
        let hide = budget
            .as_secs()
            .saturating_add(PEEK_MARGIN_SECS)
            .min(MAX_HIDE_SECS);
        Self {
            fifo: queue_url.ends_with(".fifo"),
            queue_url,
            started: std::time::Instant::now(),
            budget,
            hide_secs: i32::try_from(hide).unwrap_or(43_200),
            seen: std::collections::HashSet::new(),
            long_poll: false,
            done: false,
            complete: false,
            held_back: None,
            over_limit: false,
        }
    }

    /// The queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Whether the pass reached the end of the queue (rather than its budget, SQS's limit of
    /// hidden messages, or the head of a FIFO group it holds).
    pub fn complete(&self) -> bool {
        self.complete
    }

    /// How many messages were read.
    pub fn read(&self) -> usize {
        self.seen.len()
    }

    /// Why the pass is not complete, in words, or `None` when it is.
    pub fn incomplete_reason(&self) -> Option<String> {
        if self.complete {
            return None;
        }
        Some(if let Some(waiting) = self.held_back {
            let n = waiting.map_or_else(|| "an unknown number of".to_owned(), |n| n.to_string());
            format!(
                "about {n} more message(s) wait behind the {} read: a FIFO queue shows only the \
                 head of each message group while it is held",
                self.read()
            )
        } else if self.over_limit {
            format!(
                "the queue reached SQS's limit of hidden (in-flight) messages after {} were read",
                self.read()
            )
        } else {
            format!(
                "the time budget ({} s) ran out after {} message(s) were read",
                self.budget.as_secs(),
                self.read()
            )
        })
    }

    /// On a FIFO queue, how many messages were still waiting when the pass ended (behind the
    /// heads of groups it holds); `None` when there were none or the queue is standard.
    pub fn held_back(&self) -> Option<u64> {
        self.held_back.flatten()
    }

    async fn receive(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        hide_secs: i32,
        wait_secs: i32,
    ) -> Result<Vec<aws_sdk_sqs::types::Message>, AwsError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName;
        let out = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(hide_secs)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ReceiveMessage", queue_url, e))?;
        Ok(out.messages.unwrap_or_default())
    }

    /// The next page of messages not read before, or `None` at the end of the pass.
    pub async fn next_page(
        &mut self,
        sqs: &aws_sdk_sqs::Client,
    ) -> Result<Option<Vec<aws_sdk_sqs::types::Message>>, AwsError> {
        while !self.done {
            if self.started.elapsed() >= self.budget {
                self.done = true;
                break;
            }
            // A short poll may miss messages on some of the queue's servers: an empty one is
            // confirmed by a long poll, which asks them all. Several short polls run at once on
            // a standard queue; a FIFO queue gives one group's head to one receive at a time.
            let fan_out = if self.long_poll || self.fifo {
                1
            } else {
                PARALLEL_RECEIVES
            };
            let wait = i32::from(self.long_poll);
            let mut receives = tokio::task::JoinSet::new();
            for _ in 0..fan_out {
                receives.spawn(Self::receive(
                    sqs.clone(),
                    self.queue_url.clone(),
                    self.hide_secs,
                    wait,
                ));
            }
            let mut batch = Vec::new();
            let mut failed = None;
            while let Some(joined) = receives.join_next().await {
                match joined {
                    Ok(Ok(messages)) => batch.extend(messages),
                    Ok(Err(e)) => failed = Some(e),
                    Err(join) => {
                        failed = Some(AwsError::local(
                            "ReceiveMessage",
                            self.queue_url.clone(),
                            join,
                        ))
                    }
                }
            }
            if let Some(e) = failed {
                if e.code.as_deref().is_some_and(|c| c.ends_with("OverLimit")) {
                    // What was received is kept (and given back by the caller); the rest of
                    // the queue cannot be read while this pass holds so much.
                    self.over_limit = true;
                    self.done = true;
                    if batch.is_empty() {
                        break;
                    }
                } else {
                    // The messages this round received stay hidden until the pass's timeout;
                    // the caller's release covers only what it was given.
                    return Err(e);
                }
            }
            if batch.is_empty() {
                if self.long_poll {
                    self.end_of_queue(sqs).await;
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
                self.end_of_queue(sqs).await;
                break;
            }
            return Ok(Some(new));
        }
        Ok(None)
    }

    /// The pass found nothing more to receive. On a FIFO queue, messages may still wait behind
    /// the heads of groups this pass holds: the queue's count of visible messages says so.
    async fn end_of_queue(&mut self, sqs: &aws_sdk_sqs::Client) {
        use aws_sdk_sqs::types::QueueAttributeName;
        self.done = true;
        self.complete = true;
        if !self.fifo {
            return;
        }
        let waiting = sqs
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .send()
            .await
            .ok()
            .and_then(|out| {
                out.attributes()
                    .and_then(|a| a.get(&QueueAttributeName::ApproximateNumberOfMessages))
                    .and_then(|v| v.parse::<u64>().ok())
            });
        // An unknown count is not taken for zero: completeness is claimed only when known.
        if waiting != Some(0) {
            self.held_back = Some(waiting);
            self.complete = false;
        }
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
        incomplete_reason: scan.incomplete_reason(),
    })
}
