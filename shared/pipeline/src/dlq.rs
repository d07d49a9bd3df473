//! Reading the dead-letter queue: every message once, told apart by kind
//! ([`sluice_core::dead_letter`]), for `sluice status`, `sluice audit` and the demo.
//!
//! A retried batch may send a dead letter twice (it was sent, then the batch failed for
//! another reason and ran again): the copies share a `failure_id`, and every count here takes
//! a `failure_id` once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use sluice_aws::AwsError;
use sluice_core::dead_letter::{classify, DeadLetter};
use sluice_core::envelope::FailureEnvelope;
use sluice_core::json::Limits;

/// How long a read of the DLQ may take before it stops and says what it did not read.
pub const READ_BUDGET: Duration = Duration::from_secs(300);

/// One message on the DLQ.
#[derive(Debug, Clone)]
pub struct DlqEntry {
    /// The queue it was read from.
    pub queue_url: String,
    /// The SQS message id.
    pub message_id: String,
    /// The receipt handle of the receive that read it.
    pub receipt_handle: String,
    /// The body, verbatim.
    pub body: String,
    /// The message's FIFO group, on a FIFO queue.
    pub group_id: Option<String>,
    /// The message attributes, verbatim.
    pub message_attributes: HashMap<String, MessageAttributeValue>,
    /// When it was sent to the queue it was first sent to (epoch ms).
    pub sent_ms: Option<i64>,
    /// How often it has been received, on its source queue and here.
    pub receive_count: Option<u32>,
    /// The queue a redrive policy moved it from, when SQS says so (`DeadLetterQueueSourceArn`).
    pub source_arn: Option<String>,
    /// What it is.
    pub letter: DeadLetter,
}

impl DlqEntry {
    /// Reads and classifies a message received from the queue at `queue_url`.
    pub fn from_message(queue_url: &str, m: &Message, limits: &Limits) -> Self {
        let attr = |k: MessageSystemAttributeName| {
            m.attributes().and_then(|a| a.get(&k)).map(String::as_str)
        };
        let body = m.body().unwrap_or_default();
        Self {
            queue_url: queue_url.to_owned(),
            message_id: m.message_id().unwrap_or_default().to_owned(),
            receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
            body: body.to_owned(),
            group_id: attr(MessageSystemAttributeName::MessageGroupId).map(str::to_owned),
            message_attributes: m.message_attributes().cloned().unwrap_or_default(),
            sent_ms: attr(MessageSystemAttributeName::SentTimestamp).and_then(|v| v.parse().ok()),
            receive_count: attr(MessageSystemAttributeName::ApproximateReceiveCount)
                .and_then(|v| v.parse().ok()),
            source_arn: attr(MessageSystemAttributeName::DeadLetterQueueSourceArn)
                .map(str::to_owned),
            letter: classify(body, limits),
        }
    }

    /// The failure envelope, when the message is one.
    pub fn envelope(&self) -> Option<&FailureEnvelope> {
        match &self.letter {
            DeadLetter::Envelope(e) => Some(e),
            _ => None,
        }
    }

    /// One line for people: which message, where from, and what it holds.
    pub fn describe(&self) -> String {
        let from = match (&self.source_arn, self.receive_count) {
            (Some(arn), Some(n)) => format!(", moved from {arn} after {n} receive(s)"),
            (Some(arn), None) => format!(", moved from {arn}"),
            (None, _) => String::new(),
        };
        match &self.letter {
            DeadLetter::Envelope(e) => format!(
                "message {}: dead letter {} ({} {}): {}",
                self.message_id,
                e.failure_id,
                e.step.as_str(),
                e.error_class,
                e.error
            ),
            DeadLetter::StreamBatch(b) => format!(
                "message {}: on-failure record of a stream mapping: {b}; the records are still \
                 in the stream for its retention and must be read again from it",
                self.message_id
            ),
            DeadLetter::Moved(m) => format!(
                "message {}{from}, without a failure envelope: {}",
                self.message_id, m.holds
            ),
        }
    }
}

/// Everything read from a DLQ.
#[derive(Debug, Clone, Default)]
pub struct DlqSnapshot {
    /// Every message read, once each.
    pub entries: Vec<DlqEntry>,
    /// False when the read stopped at its time budget before the end of the queue.
    pub complete: bool,
    /// The queue's approximate depth before the read.
    pub approximate_total: Option<u64>,
    /// Why the read is not the whole queue (`None` when it is, or not known).
    pub incomplete_reason: Option<String>,
}

impl DlqSnapshot {
    /// Reads every message on the queue at `url` without consuming any, within `budget`.
    pub async fn read(
        sqs: &aws_sdk_sqs::Client,
        url: &str,
        budget: Duration,
    ) -> Result<Self, AwsError> {
        let peeked = sluice_aws::dead_letters::peek_all(sqs, url, budget).await?;
        let mut s =
            Self::from_messages(&peeked.messages, peeked.complete, peeked.approximate_total);
        s.incomplete_reason = peeked.incomplete_reason;
        for e in &mut s.entries {
            e.queue_url = url.to_owned();
        }
        Ok(s)
    }

    /// Reads every queue of `urls` as [`DlqSnapshot::read`] does, within `budget` each, as one
    /// snapshot: complete only when every read was.
    pub async fn read_all(
        sqs: &aws_sdk_sqs::Client,
        urls: &[String],
        budget: Duration,
    ) -> Result<Self, AwsError> {
        let mut all = Self {
            complete: true,
            ..Self::default()
        };
        for url in urls {
            let one = Self::read(sqs, url, budget).await?;
            all.entries.extend(one.entries);
            all.complete &= one.complete;
            all.approximate_total = match (all.approximate_total, one.approximate_total) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            all.incomplete_reason = match (all.incomplete_reason.take(), one.incomplete_reason) {
                (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                (a, b) => a.or(b),
            };
        }
        Ok(all)
    }

    /// Classifies messages already received.
    pub fn from_messages(
        messages: &[Message],
        complete: bool,
        approximate_total: Option<u64>,
    ) -> Self {
        let limits = Limits::default();
        let entries = messages
            .iter()
            .map(|m| DlqEntry::from_message("", m, &limits))
            .collect();
        Self {
            entries,
            complete,
            approximate_total,
            incomplete_reason: None,
        }
    }

    /// The failure envelopes, one per `failure_id` (the first copy read).
    pub fn envelopes(&self) -> Vec<&FailureEnvelope> {
        let mut ids = HashSet::new();
        self.entries
            .iter()
            .filter_map(|e| match &e.letter {
                DeadLetter::Envelope(env) => Some(env.as_ref()),
                _ => None,
            })
            .filter(|env| ids.insert(env.failure_id.as_str()))
            .collect()
    }

    /// Copies of a failure envelope beyond the first: harmless, and never counted.
    pub fn duplicates(&self) -> usize {
        let all = self
            .entries
            .iter()
            .filter(|e| matches!(e.letter, DeadLetter::Envelope(_)))
            .count();
        all - self.envelopes().len()
    }

    /// Dead letters by `"<step> <class>"`, each `failure_id` once.
    pub fn by_class(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for env in self.envelopes() {
            *counts
                .entry(format!("{} {}", env.step.as_str(), env.error_class))
                .or_default() += 1;
        }
        counts
    }

    /// Messages that stand for changes never processed: on-failure records of stream mappings,
    /// and messages moved here by a queue's redrive policy.
    pub fn unprocessed(&self) -> Vec<&DlqEntry> {
        self.entries
            .iter()
            .filter(|e| e.letter.is_unprocessed())
            .collect()
    }

    /// Messages that are neither envelopes nor unprocessed changes (an `s3:TestEvent`).
    pub fn other(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| !matches!(e.letter, DeadLetter::Envelope(_)) && !e.letter.is_unprocessed())
            .count()
    }

    /// When the oldest message was first sent (epoch ms).
    pub fn oldest_sent_ms(&self) -> Option<i64> {
        self.entries.iter().filter_map(|e| e.sent_ms).min()
    }

    /// Why the read is not the whole queue, for people; `None` when it is.
    pub fn incomplete_note(&self) -> Option<String> {
        (!self.complete).then(|| {
            format!(
                "the dead-letter queue was read only in part: {} message(s) of about {} ({}); \
                 the rest was not checked",
                self.entries.len(),
                self.approximate_total
                    .map_or_else(|| "?".to_owned(), |n| n.to_string()),
                self.incomplete_reason
                    .as_deref()
                    .unwrap_or("reading stopped at its time budget")
            )
        })
    }
}

/// Where a stream event source mapping's S3 on-failure destination keeps failed invocations.
pub const S3_FAILURES_PREFIX: &str = "aws/lambda/";

/// Deletes a failed invocation kept in S3 (an entry of [`s3_failures`]: its key is its id).
pub async fn delete_s3_failure(s3: &aws_sdk_s3::Client, e: &DlqEntry) -> Result<(), AwsError> {
    let bucket = e.queue_url.strip_prefix("s3://").unwrap_or(&e.queue_url);
    s3.delete_object()
        .bucket(bucket)
        .key(&e.message_id)
        .send()
        .await
        .map_err(|err| {
            AwsError::from_sdk(
                "DeleteObject",
                format!("{}/{}", e.queue_url, e.message_id),
                err,
            )
        })?;
    Ok(())
}

/// The failed stream invocations kept in S3 under [`S3_FAILURES_PREFIX`] of `bucket`, as
/// letters: each object is one, named by its key (in `message_id`), in a "queue" `s3://bucket`.
/// Each holds the on-failure record and, unlike one sent to SQS, the invocation's records.
pub async fn s3_failures(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    limits: &Limits,
) -> Result<Vec<DlqEntry>, AwsError> {
    let mut out = Vec::new();
    for key in sluice_aws::listing::list_keys(s3, bucket, S3_FAILURES_PREFIX).await? {
        let (bytes, sent_ms) = sluice_aws::listing::get_bytes(s3, bucket, &key).await?;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        out.push(DlqEntry {
            queue_url: format!("s3://{bucket}"),
            message_id: key.clone(),
            receipt_handle: key,
            group_id: None,
            message_attributes: HashMap::new(),
            sent_ms,
            receive_count: None,
            source_arn: None,
            letter: classify(&body, limits),
            body,
        });
    }
    Ok(out)
}

/// Every letter of some dead-letter queues, held (hidden) until [`Held::finish`] deletes the
/// chosen ones and gives the rest back: for commands that act on what they read (`sluice dlq
/// export --drain`, `sluice dlq purge`), so that a receipt handle is still the latest when the
/// letter is deleted.
#[derive(Debug)]
pub struct Held {
    scans: Vec<sluice_aws::dead_letters::Scan>,
    /// Every message read, once each, then the failed invocations kept in S3 (when asked).
    pub entries: Vec<DlqEntry>,
    s3: Option<aws_sdk_s3::Client>,
}

impl Held {
    /// Reads every queue, each within `budget`.
    pub async fn read(
        sqs: &aws_sdk_sqs::Client,
        urls: &[String],
        budget: Duration,
    ) -> Result<Self, AwsError> {
        let limits = Limits::default();
        let mut held = Self {
            scans: Vec::new(),
            entries: Vec::new(),
            s3: None,
        };
        for url in urls {
            let mut scan = sluice_aws::dead_letters::Scan::new(url.clone(), budget);
            let read = async {
                while let Some(page) = scan.next_page(sqs).await? {
                    held.entries
                        .extend(page.iter().map(|m| DlqEntry::from_message(url, m, &limits)));
                }
                Ok::<_, AwsError>(())
            }
            .await;
            held.scans.push(scan);
            if let Err(e) = read {
                held.finish(sqs, &[]).await?;
                return Err(e);
            }
        }
        Ok(held)
    }

    /// Adds the failed stream invocations an S3 on-failure destination keeps in `bucket`
    /// (see [`s3_failures`]); [`Held::finish`] deletes those it is given the ids of too.
    pub async fn add_s3_failures(
        &mut self,
        s3: &aws_sdk_s3::Client,
        bucket: &str,
    ) -> Result<(), AwsError> {
        self.entries
            .extend(s3_failures(s3, bucket, &Limits::default()).await?);
        self.s3 = Some(s3.clone());
        Ok(())
    }

    /// Whether every queue was read to its end.
    pub fn complete(&self) -> bool {
        self.scans
            .iter()
            .all(sluice_aws::dead_letters::Scan::complete)
    }

    /// Why some queue was not read to its end, for people; `None` when every one was.
    pub fn incomplete(&self) -> Option<String> {
        let why: Vec<String> = self
            .scans
            .iter()
            .filter_map(|s| {
                s.incomplete_reason()
                    .map(|r| format!("{}: {r}", s.queue_url()))
            })
            .collect();
        (!why.is_empty()).then(|| why.join("; "))
    }

    /// Deletes the messages with the given ids and gives every other one back. Returns how many
    /// were deleted.
    pub async fn finish(
        self,
        sqs: &aws_sdk_sqs::Client,
        delete: &[String],
    ) -> Result<usize, AwsError> {
        let delete: HashSet<&str> = delete.iter().map(String::as_str).collect();
        let mut deleted = 0;
        let mut first_error = None;
        for scan in &self.scans {
            let mine = self
                .entries
                .iter()
                .filter(|e| e.queue_url == scan.queue_url());
            let (gone, keep): (Vec<&DlqEntry>, Vec<&DlqEntry>) =
                mine.partition(|e| delete.contains(e.message_id.as_str()));
            for chunk in gone.chunks(10) {
                let entries: Vec<_> = chunk
                    .iter()
                    .enumerate()
                    .filter_map(|(i, e)| {
                        aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                            .id(i.to_string())
                            .receipt_handle(&e.receipt_handle)
                            .build()
                            .ok()
                    })
                    .collect();
                match sqs
                    .delete_message_batch()
                    .queue_url(scan.queue_url())
                    .set_entries(Some(entries))
                    .send()
                    .await
                {
                    Ok(out) => deleted += out.successful().len(),
                    Err(e) => {
                        first_error.get_or_insert(AwsError::from_sdk(
                            "DeleteMessageBatch",
                            scan.queue_url(),
                            e,
                        ));
                    }
                }
            }
            let handles: Vec<String> = keep.iter().map(|e| e.receipt_handle.clone()).collect();
            if let Err(e) = scan.release(sqs, &handles).await {
                first_error.get_or_insert(e);
            }
        }
        if let Some(s3) = &self.s3 {
            for e in self.entries.iter().filter(|e| {
                e.queue_url.starts_with("s3://") && delete.contains(e.message_id.as_str())
            }) {
                match delete_s3_failure(s3, e).await {
                    Ok(()) => deleted += 1,
                    Err(err) => {
                        first_error.get_or_insert(err);
                    }
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, body: &str) -> aws_sdk_sqs::types::Message {
        aws_sdk_sqs::types::Message::builder()
            .message_id(id)
            .body(body)
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "6")
            .build()
    }

    fn envelope(failure_id: &str, class: &str) -> String {
        format!(
            r#"{{"sluice_failure":1,"failure_id":"{failure_id}","step":"transform","error_class":"{class}","error":"x","origin":{{}},"original_bytes":0,"first_failed_at":"t","failed_at":"t","retry_count":0,"pipeline_version":"0"}}"#
        )
    }

    #[test]
    fn a_failure_id_counts_once_however_many_copies() {
        let s = DlqSnapshot::from_messages(
            &[
                message("m1", &envelope("a", "contract_violation")),
                message("m2", &envelope("a", "contract_violation")),
                message("m3", &envelope("a", "contract_violation")),
                message("m4", &envelope("b", "no_contract")),
            ],
            true,
            Some(4),
        );
        assert_eq!(s.envelopes().len(), 2);
        assert_eq!(s.duplicates(), 2);
        assert_eq!(
            s.by_class(),
            BTreeMap::from([
                ("transform contract_violation".to_owned(), 1),
                ("transform no_contract".to_owned(), 1)
            ])
        );
        assert!(s.unprocessed().is_empty());
        assert!(s.incomplete_note().is_none());
    }

    #[test]
    fn moved_messages_are_unprocessed_and_described() {
        let s = DlqSnapshot::from_messages(
            &[
                message(
                    "m1",
                    r#"{"table":"customers","op":"update","key":{"id":7},"after":{"id":7},"seq":42}"#,
                ),
                message("m2", r#"{"Service":"Amazon S3","Event":"s3:TestEvent"}"#),
            ],
            false,
            Some(9),
        );
        let u = s.unprocessed();
        assert_eq!(u.len(), 1);
        assert_eq!(s.other(), 1);
        let text = u[0].describe();
        assert!(text.starts_with("message m1, without a failure envelope: a change to table \"customers\" (app update"), "{text}");
        assert!(s
            .incomplete_note()
            .is_some_and(|n| n.contains("2 message(s)") && n.contains("of about 9")));
    }
}
