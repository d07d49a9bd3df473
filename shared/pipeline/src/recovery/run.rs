//! A redrive over the dead-letter queues.
//!
//! Every letter is read once ([`sluice_aws::dead_letters::Scan`]) and kept hidden while the
//! run goes on. A letter the filter selects is judged ([`super::judge`]); unless the run is dry,
//! one that would pass (or that only a retry can tell about, or any with `all`) is sent back,
//! and deleted only once the send succeeded. Everything else is given back at the end of the
//! run, untouched. Copies of one failure (the same `failure_id`, sent twice by a retried batch)
//! follow the first copy read: sent once, every copy deleted.
//!
//! A stop between a send and its delete leaves the letter on the queue, hidden until the run's
//! visibility timeout passes: the next run sends it again, and the typed writes, being
//! idempotent, make the duplicate harmless (on a FIFO queue, the deduplication id drops it
//! within five minutes). A letter is never deleted before its record is durable elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde::Serialize;
use sluice_aws::dead_letters::Scan;
use sluice_aws::raw_objects::RawObjects;
use sluice_aws::{AwsError, DeadLetters, RawStore};
use sluice_core::dead_letter::DeadLetter;
use sluice_core::envelope::RedriveMark;
use sluice_core::json::Limits;
use sluice_core::time::rfc3339_to_ms;
use sluice_core::ErrorClass;
use tokio::sync::Mutex;

use super::judge::{Action, Judge, Target, Verdict, VerdictKind};
use super::select::{facets, Filter};
use super::RecoveryConfig;
use crate::contracts::ContractSet;
use crate::dlq::DlqEntry;
use crate::ingest::Ingest;

/// What a redrive does.
#[derive(Debug, Clone)]
pub struct RedriveOptions {
    /// Which letters.
    pub filter: Filter,
    /// At most this many letters (copies of one failure count once).
    pub max: Option<usize>,
    /// Judge and report, send nothing, delete nothing.
    pub dry_run: bool,
    /// Send back letters that would still fail too.
    pub all: bool,
    /// At most this many letters sent back per second.
    pub rate: Option<f64>,
    /// How long the run may read each queue.
    pub budget: Duration,
    /// The redrive function's rules, when it is the function that runs.
    pub auto: Option<Auto>,
}

impl Default for RedriveOptions {
    fn default() -> Self {
        Self {
            filter: Filter::default(),
            max: None,
            dry_run: false,
            all: false,
            rate: None,
            budget: crate::dlq::READ_BUDGET,
            auto: None,
        }
    }
}

/// What the redrive function sends back by itself, unasked: what a retry can fix (messages
/// moved by a redrive policy, stream ranges, `retriable` and `internal` failures) while the
/// record has been retried fewer than `max_retries` times and its backoff has passed; and the
/// contract failures a newer contract now takes. Nothing else: the rest waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Auto {
    /// The most retries of one record.
    pub max_retries: u32,
    /// The wait before the first retry; each later one waits four times longer, up to six
    /// hours.
    pub base_delay: Duration,
}

impl Auto {
    /// The wait after `retries` retries.
    pub fn backoff(&self, retries: u32) -> Duration {
        let factor = 4u64.saturating_pow(retries.min(16));
        Duration::from_secs(
            self.base_delay
                .as_secs()
                .saturating_mul(factor)
                .min(6 * 3600),
        )
    }
}

/// What happened to one letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fate {
    /// Sent back and deleted.
    Redriven,
    /// A dry run: it would be sent back.
    WouldRedrive,
    /// Left on the queue.
    Left,
}

/// One letter's judgement and fate.
#[derive(Debug, Clone, Serialize)]
pub struct LetterReport {
    /// The SQS message id.
    pub message_id: String,
    /// The failure id, for envelopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_id: Option<String>,
    /// The step.
    pub step: String,
    /// The table.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// The error class.
    pub class: String,
    /// The error code.
    pub code: String,
    /// The judgement.
    pub verdict: Verdict,
    /// What became of it.
    pub fate: Fate,
    /// Why it was left, or what failed, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Sent back and left, per `"<step> <class>"`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Tally {
    /// Sent back (or, in a dry run, would be).
    pub redriven: usize,
    /// Left on the queue.
    pub left: usize,
}

/// The outcome of a redrive.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RedriveSummary {
    /// A dry run.
    pub dry_run: bool,
    /// Messages read.
    pub read: usize,
    /// Letters the filter selected (each failure once).
    pub matched: usize,
    /// Letters sent back (in a dry run: that would be).
    pub redriven: usize,
    /// Letters left on the queue.
    pub left: usize,
    /// Copies of sent-back failures deleted.
    pub copies_deleted: usize,
    /// Letters whose send or delete failed (left, or sent and not yet deleted).
    pub errors: usize,
    /// Whether every queue was read to its end (rather than to the budget).
    pub complete: bool,
    /// Why some queue was not read to its end (`None` when every one was).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incomplete: Option<String>,
    /// By `"<step> <class>"`.
    pub by_class: BTreeMap<String, Tally>,
    /// Every selected letter.
    pub letters: Vec<LetterReport>,
}

/// What one run keeps from letter to letter.
struct RunState<'p> {
    summary: RedriveSummary,
    /// The fate of each failure id decided, for its copies.
    decided: HashMap<String, Fate>,
    /// When the next send may go, under `--rate`.
    next_send: Instant,
    /// Queue URLs by ARN.
    urls: Mutex<HashMap<String, String>>,
    /// The transform queue's `MaximumMessageSize`.
    max_message_bytes: usize,
    progress: Option<Progress<'p>>,
}

/// Progress, called after each selected letter.
pub type Progress<'a> = &'a (dyn Fn(&RedriveSummary) + Send + Sync);

/// What a redrive needs.
pub struct Redrive<'a, O, R, D> {
    /// Queues and settings.
    pub config: &'a RecoveryConfig,
    /// SQS.
    pub sqs: &'a aws_sdk_sqs::Client,
    /// Raw staging and claim-checks, read.
    pub objects: &'a O,
    /// Ingest, for records that go through it here.
    pub ingest: &'a Ingest<R, D>,
    /// The contracts as they are now.
    pub contracts: &'a ContractSet,
    /// The longest raw line transform reads.
    pub max_line_bytes: usize,
    /// S3, for the failed stream invocations an S3 on-failure destination keeps under
    /// `aws/lambda/` in the raw bucket; `None` skips them.
    pub s3: Option<&'a aws_sdk_s3::Client>,
    /// Stream readers, for on-failure records.
    #[cfg(feature = "streams")]
    pub streams: Option<&'a super::streams::StreamReaders>,
}

impl<O: RawObjects, R: RawStore, D: DeadLetters> Redrive<'_, O, R, D> {
    /// Runs a redrive over every dead-letter queue, then over the failed stream invocations
    /// kept in S3 (the stream mappings' S3 on-failure destination), when `s3` is given.
    pub async fn run(
        &self,
        options: &RedriveOptions,
        progress: Option<Progress<'_>>,
    ) -> Result<RedriveSummary, AwsError> {
        let mut st = RunState {
            summary: RedriveSummary {
                dry_run: options.dry_run,
                complete: true,
                ..RedriveSummary::default()
            },
            decided: HashMap::new(),
            next_send: Instant::now(),
            urls: Mutex::new(HashMap::new()),
            max_message_bytes: self.transform_max_message_bytes().await,
            progress,
        };
        for dlq in &self.config.dlq_urls {
            let mut scan = Scan::new(dlq.clone(), options.budget);
            let mut keep = Vec::new();
            let result: Result<(), AwsError> = async {
                while let Some(page) = scan.next_page(self.sqs).await? {
                    for m in page {
                        let e = DlqEntry::from_message(dlq, &m, &Limits::default());
                        let handle = e.receipt_handle.clone();
                        if !self.one(e, options, &mut st).await {
                            keep.push(handle);
                        }
                    }
                }
                Ok(())
            }
            .await;
            // Given back even when the run failed half way, so nothing stays hidden for long.
            let released = scan.release(self.sqs, &keep).await;
            result?;
            released?;
            st.summary.complete &= scan.complete();
            if let Some(why) = scan.incomplete_reason() {
                let why = format!("{dlq}: {why}");
                st.summary.incomplete = Some(match st.summary.incomplete.take() {
                    Some(before) => format!("{before}; {why}"),
                    None => why,
                });
            }
        }
        if let Some(s3) = self.s3 {
            let held =
                crate::dlq::s3_failures(s3, &self.config.ingest.raw_bucket, &Limits::default())
                    .await?;
            for e in held {
                self.one(e, options, &mut st).await;
            }
        }
        Ok(st.summary)
    }

    /// Handles one letter; whether it was deleted (else it is to be given back).
    async fn one(&self, e: DlqEntry, options: &RedriveOptions, st: &mut RunState<'_>) -> bool {
        st.summary.read += 1;
        let now_ms = chrono::Utc::now().timestamp_millis();
        let f = facets(&e);
        if !options.filter.matches(&e) {
            return false;
        }
        // A copy follows the first copy read: the same failure, or another failure of the same
        // raw line (a replay under a newer contract letters a line again, with its new cause).
        let keys = copy_keys(&e);
        if let Some(first) = keys.iter().find_map(|k| st.decided.get(k)) {
            if *first == Fate::Redriven && self.delete(&e).await.is_ok() {
                st.summary.copies_deleted += 1;
                return true;
            }
            return false;
        }
        if options.max.is_some_and(|m| st.summary.matched >= m) {
            return false;
        }
        st.summary.matched += 1;
        let judge = Judge {
            contracts: self.contracts,
            ingest: &self.config.ingest,
            max_line_bytes: self.max_line_bytes,
            max_message_bytes: st.max_message_bytes,
            objects: self.objects,
            now_ms,
        };
        let plan = judge.plan(&e).await;
        let mut report = LetterReport {
            message_id: e.message_id.clone(),
            failure_id: f.failure_id.map(str::to_owned),
            step: f.step.to_owned(),
            table: f.table.map(str::to_owned),
            class: f.class.to_owned(),
            code: f.code.to_owned(),
            verdict: plan.verdict.clone(),
            fate: Fate::Left,
            note: None,
        };
        let chosen = match &options.auto {
            Some(auto) => self.auto_allows(auto, &e, &plan.verdict, now_ms),
            None => match plan.verdict.kind {
                VerdictKind::Pass | VerdictKind::Retry => Ok(()),
                VerdictKind::Fails if options.all => Ok(()),
                VerdictKind::Fails => Err("fix its cause first, or pass --all".to_owned()),
                VerdictKind::None => Err(plan.verdict.detail.clone()),
            },
        };
        let mut deleted = false;
        match (chosen, plan.action) {
            (Err(why), _) => report.note = Some(why),
            (Ok(()), None) => report.note = Some(plan.verdict.detail.clone()),
            (Ok(()), Some(_)) if options.dry_run => report.fate = Fate::WouldRedrive,
            (Ok(()), Some(action)) => {
                if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
                    tokio::time::sleep_until(st.next_send.into()).await;
                    st.next_send =
                        Instant::now().max(st.next_send) + Duration::from_secs_f64(1.0 / rate);
                }
                let delay = options
                    .auto
                    .filter(|_| is_retry(&e))
                    .map_or(0, |a| a.backoff(retries(&e)).as_secs().min(900));
                match self.perform(action, &st.urls, delay).await {
                    Err(why) => {
                        st.summary.errors += 1;
                        report.note = Some(why);
                    }
                    Ok(()) => {
                        report.fate = Fate::Redriven;
                        crate::failpoint::hit("redrive.after_send");
                        match self.delete(&e).await {
                            Ok(()) => deleted = true,
                            Err(err) => {
                                // Sent, not deleted: the next run sends it again, which the
                                // idempotent writes make harmless.
                                st.summary.errors += 1;
                                report.note = Some(format!(
                                    "sent back, but not deleted ({err}); a later run sends it \
                                     again"
                                ));
                            }
                        }
                    }
                }
            }
        }
        let tally = st
            .summary
            .by_class
            .entry(format!("{} {}", report.step, report.class))
            .or_default();
        if matches!(report.fate, Fate::Redriven | Fate::WouldRedrive) {
            st.summary.redriven += 1;
            tally.redriven += 1;
        } else {
            st.summary.left += 1;
            tally.left += 1;
        }
        for k in keys {
            st.decided.insert(k, report.fate);
        }
        st.summary.letters.push(report);
        if let Some(p) = st.progress {
            p(&st.summary);
        }
        deleted
    }

    /// Whether the redrive function sends this letter back by itself.
    fn auto_allows(
        &self,
        auto: &Auto,
        e: &DlqEntry,
        verdict: &Verdict,
        now_ms: i64,
    ) -> Result<(), String> {
        if !matches!(verdict.kind, VerdictKind::Pass | VerdictKind::Retry) {
            return Err(format!("left for a person: {}", verdict.describe()));
        }
        let n = retries(e);
        if n >= auto.max_retries {
            return Err(format!(
                "retried {n} time(s), the most the redrive function does \
                 (SLUICE_REDRIVE_MAX_RETRIES); left for a person"
            ));
        }
        let since = match &e.letter {
            DeadLetter::Envelope(env) => {
                match env.error_class {
                    ErrorClass::Retriable | ErrorClass::Internal => {}
                    ErrorClass::ContractViolation | ErrorClass::NoContract => {
                        // Only what a contract changed since the failure now takes.
                        return if verdict.kind == VerdictKind::Pass && self.newer_contract(env) {
                            Ok(())
                        } else {
                            Err("left for a person: no newer contract takes it yet".into())
                        };
                    }
                    other => {
                        return Err(format!("left for a person: a {other} failure"));
                    }
                }
                rfc3339_to_ms(&env.failed_at)
            }
            DeadLetter::Moved(_) => mark(e)
                .and_then(|m| m.redriven_at)
                .and_then(|t| rfc3339_to_ms(&t)),
            DeadLetter::StreamBatch(_) => None,
        };
        let due = since.map_or(0, |at| {
            at + i64::try_from(auto.backoff(n.saturating_sub(1)).as_millis()).unwrap_or(i64::MAX)
        });
        if n > 0 && due > now_ms {
            return Err(format!(
                "its next retry is due in {} s",
                (due - now_ms).max(0) / 1000
            ));
        }
        Ok(())
    }

    /// Whether a contract that takes the letter's table is newer than the one it failed under.
    fn newer_contract(&self, env: &sluice_core::envelope::FailureEnvelope) -> bool {
        let (Some(table), Some(format)) = (env.table.as_deref(), env.format) else {
            return false;
        };
        let now = self.contracts.for_source(table, format);
        match &env.contract {
            Some(old) => now
                .iter()
                .any(|c| c.name == old.name && c.version > old.version),
            // A no_contract failure: any contract for its table is new.
            None => !now.is_empty(),
        }
    }

    async fn perform(
        &self,
        action: Action,
        urls: &Mutex<HashMap<String, String>>,
        delay_secs: u64,
    ) -> Result<(), String> {
        match action {
            Action::Send(resend) => {
                let url = self.url_of(&resend.to, urls).await?;
                let mut req = self
                    .sqs
                    .send_message()
                    .queue_url(&url)
                    .message_body(resend.body)
                    .set_message_attributes(
                        (!resend.attributes.is_empty()).then_some(resend.attributes),
                    );
                if url.ends_with(".fifo") {
                    req = req
                        .message_group_id(
                            resend.group_id.unwrap_or_else(|| "sluice-redrive".into()),
                        )
                        .message_deduplication_id(resend.dedup_id);
                } else if delay_secs > 0 {
                    req = req.delay_seconds(i32::try_from(delay_secs).unwrap_or(900));
                }
                req.send()
                    .await
                    .map_err(|e| AwsError::from_sdk("SendMessage", url.clone(), e).to_string())?;
                Ok(())
            }
            Action::Ingest { event } => self.ingest(&event).await,
            Action::Stream(batch) => self.stream(&batch).await,
        }
    }

    #[cfg(feature = "streams")]
    async fn stream(&self, batch: &sluice_core::dead_letter::StreamBatch) -> Result<(), String> {
        let Some(readers) = self.streams else {
            return Err("this run reads no streams".into());
        };
        let event = readers.read(batch).await.map_err(|e| e.to_string())?;
        self.ingest(&event).await
    }

    #[cfg(not(feature = "streams"))]
    async fn stream(&self, _: &sluice_core::dead_letter::StreamBatch) -> Result<(), String> {
        Err("this build of sluice reads no streams (feature `streams`)".into())
    }

    /// Runs records through ingest here; every one must be landed or dead-lettered.
    async fn ingest(&self, event: &str) -> Result<(), String> {
        let response = crate::ingest::handle(event, self.ingest)
            .await
            .map_err(|e| format!("ingest refused the records: {e}"))?;
        let failed = response.failed_ids();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "ingest could not land {} record(s) (first: {}); the letter stays",
                failed.len(),
                failed[0]
            ))
        }
    }

    async fn url_of(
        &self,
        to: &Target,
        cache: &Mutex<HashMap<String, String>>,
    ) -> Result<String, String> {
        match to {
            Target::Transform => Ok(self.config.transform_queue_url.clone()),
            Target::Ingest { fifo: false } => {
                self.config.ingest_queue_url.clone().ok_or_else(|| {
                    "no ingest queue to send it to: set SLUICE_INGEST_QUEUE_URL".to_owned()
                })
            }
            Target::Ingest { fifo: true } => {
                self.config.ingest_fifo_queue_url.clone().ok_or_else(|| {
                    "a message of a FIFO group, and no FIFO ingest queue to send it to: set \
                     SLUICE_INGEST_FIFO_QUEUE_URL"
                        .to_owned()
                })
            }
            Target::Queue(arn) => {
                if let Some(url) = cache.lock().await.get(arn) {
                    return Ok(url.clone());
                }
                let mut parts = arn.splitn(6, ':');
                let (account, name) = match (
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                    parts.next(),
                ) {
                    (Some("arn"), _, Some("sqs"), _, Some(account), Some(name)) => (account, name),
                    _ => return Err(format!("{arn:?} is not an SQS queue ARN")),
                };
                let url = self
                    .sqs
                    .get_queue_url()
                    .queue_name(name)
                    .queue_owner_aws_account_id(account)
                    .send()
                    .await
                    .map_err(|e| AwsError::from_sdk("GetQueueUrl", arn.clone(), e).to_string())?
                    .queue_url
                    .ok_or_else(|| format!("no URL for {arn}"))?;
                cache.lock().await.insert(arn.clone(), url.clone());
                Ok(url)
            }
        }
    }

    async fn delete(&self, e: &DlqEntry) -> Result<(), AwsError> {
        if let (true, Some(s3)) = (e.queue_url.starts_with("s3://"), self.s3) {
            return crate::dlq::delete_s3_failure(s3, e).await;
        }
        self.sqs
            .delete_message()
            .queue_url(&e.queue_url)
            .receipt_handle(&e.receipt_handle)
            .send()
            .await
            .map_err(|err| AwsError::from_sdk("DeleteMessage", e.queue_url.clone(), err))?;
        Ok(())
    }

    async fn transform_max_message_bytes(&self) -> usize {
        use aws_sdk_sqs::types::QueueAttributeName;
        self.sqs
            .get_queue_attributes()
            .queue_url(&self.config.transform_queue_url)
            .attribute_names(QueueAttributeName::MaximumMessageSize)
            .send()
            .await
            .ok()
            .and_then(|o| {
                o.attributes()
                    .and_then(|a| a.get(&QueueAttributeName::MaximumMessageSize))
                    .and_then(|v| v.parse().ok())
            })
            .unwrap_or(sluice_aws::dead_letters::FALLBACK_MAX_MESSAGE_BYTES)
    }
}

/// The redrive mark a moved message carries.
fn mark(e: &DlqEntry) -> Option<RedriveMark> {
    e.message_attributes
        .get(sluice_core::envelope::REDRIVE_ATTRIBUTE)
        .and_then(|v| v.string_value())
        .and_then(RedriveMark::parse)
}

/// What makes two letters copies of one another: the same `failure_id`, or, for transform, the
/// same raw line (`raw_ref`), whose content never changes, so sending it once is enough.
fn copy_keys(e: &DlqEntry) -> Vec<String> {
    match &e.letter {
        DeadLetter::Envelope(env) => {
            let mut keys = vec![env.failure_id.clone()];
            if env.step == sluice_core::envelope::Step::Transform {
                // A redriven line that fails again keeps its first raw_ref.
                keys.extend(env.raw_ref.as_ref().map(|r| format!("line {r}")));
            }
            keys
        }
        _ => Vec::new(),
    }
}

/// Whether sending the letter back is a retry of something that failed on the way (rather than
/// a record a fix now lets through): retries go back with a delay, as backoff.
fn is_retry(e: &DlqEntry) -> bool {
    match &e.letter {
        DeadLetter::Envelope(env) => {
            matches!(
                env.error_class,
                ErrorClass::Retriable | ErrorClass::Internal
            )
        }
        DeadLetter::Moved(_) | DeadLetter::StreamBatch(_) => true,
    }
}

/// How often the letter's record was retried already.
fn retries(e: &DlqEntry) -> u32 {
    match &e.letter {
        DeadLetter::Envelope(env) => env.retry_count,
        DeadLetter::Moved(_) => mark(e).map_or(0, |m| m.retry_count),
        DeadLetter::StreamBatch(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_four_times_and_stops_at_six_hours() {
        let a = Auto {
            max_retries: 5,
            base_delay: Duration::from_secs(60),
        };
        assert_eq!(a.backoff(0), Duration::from_secs(60));
        assert_eq!(a.backoff(1), Duration::from_secs(240));
        assert_eq!(a.backoff(2), Duration::from_secs(960));
        assert_eq!(a.backoff(9), Duration::from_secs(6 * 3600));
        assert_eq!(a.backoff(u32::MAX), Duration::from_secs(6 * 3600));
    }
}
