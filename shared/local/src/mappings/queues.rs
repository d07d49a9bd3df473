//! SQS queue polling with the semantics of a Lambda event source mapping.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::events::sqs_event;
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName, QueueAttributeName,
};
use sluice_aws::AwsError;
use tokio::sync::{watch, Semaphore};

use super::ctx::{sleep_or_stop, Ctx, Functions};
use super::state::{Mapping, MappingSource};

pub(crate) async fn run<F: Functions>(
    ctx: Arc<Ctx<F>>,
    m: Mapping,
    mut stop: watch::Receiver<bool>,
    idle: Arc<AtomicBool>,
) {
    let MappingSource::Queue {
        queue_url,
        queue_arn,
    } = m.source.clone()
    else {
        return;
    };
    let (visibility, max_receives) = queue_settings(&ctx, &queue_url).await;
    if let Some(n) = max_receives {
        tracing::info!(
            mapping = %m.name,
            max_receive_count = n,
            rides_out_secs = ctx.backoff.rides_out(n).as_secs(),
            "A failing message is retried with backoff; the queue's redrive policy moves it to the dead-letter queue after an outage longer than this."
        );
    }
    // Without scaling, the mapping's own concurrency; with it, the policy's setting between its
    // baseline and its maximum.
    let (floor, cap) = match &ctx.scaling {
        Some(s) => (s.config.min.max(1) as usize, s.config.max.max(1) as usize),
        None => (m.max_concurrency.max(1), m.max_concurrency.max(1)),
    };
    let permits = Arc::new(Semaphore::new(cap));
    let limit = Arc::new(AtomicUsize::new(floor));
    let meter = Arc::new(Meter::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let groups = GroupLock::for_queue(&queue_url);
    let m = Arc::new(m);
    let scaler = ctx.scaling.clone().map(|opts| {
        let (ctx, m, url) = (ctx.clone(), m.clone(), queue_url.clone());
        let (limit, meter, stop) = (limit.clone(), meter.clone(), stop.clone());
        tokio::spawn(async move { scale(&ctx, &m, &url, &opts, &limit, &meter, stop).await })
    });
    loop {
        if *stop.borrow() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.changed() => break,
        };
        if in_flight.load(Ordering::SeqCst) >= limit.load(Ordering::SeqCst) {
            // The setting is lower than what runs: wait for a batch to end.
            drop(permit);
            if sleep_or_stop(Duration::from_millis(50), &mut stop).await {
                break;
            }
            continue;
        }
        let batch = match gather(&ctx, &m, &queue_url, &groups, &mut stop).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(error = %e, queue = %queue_url, "Could not receive messages; retrying.");
                drop(permit);
                idle.store(false, Ordering::SeqCst);
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        if batch.is_empty() {
            drop(permit);
            // Idle once drained and, when scaling, back at the baseline.
            let empty = in_flight.load(Ordering::SeqCst) == 0
                && limit.load(Ordering::SeqCst) <= floor
                && queue_is_empty(&ctx, &queue_url).await;
            idle.store(empty, Ordering::SeqCst);
            if sleep_or_stop(ctx.poll_interval, &mut stop).await {
                break;
            }
            continue;
        }
        idle.store(false, Ordering::SeqCst);
        in_flight.fetch_add(1, Ordering::SeqCst);
        let (ctx, m, in_flight) = (ctx.clone(), m.clone(), in_flight.clone());
        let (url, arn, meter) = (queue_url.clone(), queue_arn.clone(), meter.clone());
        let groups = groups.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let (done, failed) = process(&ctx, &m, &url, &arn, &groups, batch, visibility).await;
            meter.add(done, failed, started.elapsed());
            in_flight.fetch_sub(1, Ordering::SeqCst);
            drop(permit);
        });
    }
    if let Some(s) = scaler {
        s.abort();
    }
    // In-flight batches finish before the run ends; nothing new is received.
    let _ = permits.acquire_many(u32::try_from(cap).unwrap_or(1)).await;
}

/// Keeps a FIFO queue's message groups still while a receive runs: a receive, and the deletes
/// and visibility changes that end a batch, never overlap.
///
/// SQS decides a receive against the groups as they are when it is served, atomically. The
/// emulator does not: it checks which groups are locked message by message as it goes, and
/// reads that again part-way, so a batch whose end unlocks a group while a receive is under
/// way can have it deliver a later message of the group and skip the one before it (seen in
/// the fault battery). With the two kept apart, every receive sees the groups as one state, as
/// on SQS; on SQS it only makes the local runner's calls to one FIFO queue take turns. A
/// standard queue has no groups and no lock.
#[derive(Debug, Clone, Default)]
struct GroupLock(Option<Arc<tokio::sync::Mutex<()>>>);

impl GroupLock {
    fn for_queue(url: &str) -> Self {
        Self(url.ends_with(".fifo").then(Default::default))
    }

    /// Holds the queue's groups still until the guard is dropped (at once for a standard
    /// queue).
    async fn hold(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match &self.0 {
            Some(lock) => Some(lock.lock().await),
            None => None,
        }
    }
}

/// What a queue mapping's batches did since the scaler last looked.
#[derive(Debug, Default)]
struct Meter {
    done: AtomicU64,
    failed: AtomicU64,
    busy_ms: AtomicU64,
}

impl Meter {
    fn add(&self, done: usize, failed: usize, took: Duration) {
        self.done.fetch_add(done as u64, Ordering::SeqCst);
        self.failed.fetch_add(failed as u64, Ordering::SeqCst);
        self.busy_ms.fetch_add(
            u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }

    /// Messages done, failed, and batch-milliseconds, since the last call.
    fn take(&self) -> (u64, u64, u64) {
        (
            self.done.swap(0, Ordering::SeqCst),
            self.failed.swap(0, Ordering::SeqCst),
            self.busy_ms.swap(0, Ordering::SeqCst),
        )
    }
}

/// A queue mapping's scaler: every interval it observes the queue and what the batches did,
/// asks the policy, and sets the mapping's concurrency.
async fn scale<F>(
    ctx: &Ctx<F>,
    m: &Mapping,
    url: &str,
    opts: &super::runner::ScalingOptions,
    limit: &AtomicUsize,
    meter: &Meter,
    mut stop: watch::Receiver<bool>,
) {
    use sluice_core::scaling::{decide, Observation, ScalerState};
    let started = Instant::now();
    let mut state = ScalerState::default();
    let mut before: Option<u64> = None;
    let floor = u32::try_from(limit.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
    let mut report = super::runner::MappingScaling {
        setting: floor,
        highest: floor,
        ..Default::default()
    };
    // Kept in the run's report, and in a file next to the checkpoints for `sluice status`.
    let path = ctx.checkpoints_path.with_file_name("scaling.json");
    let save = |report: &super::runner::MappingScaling| {
        let all = match ctx.scaling_report.lock() {
            Ok(mut r) => {
                r.insert(m.name.clone(), report.clone());
                r.clone()
            }
            Err(_) => return,
        };
        let written = serde_json::to_vec_pretty(&all)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&path, json));
        if let Err(e) = written {
            tracing::debug!(error = %e, path = %path.display(), "Could not save the scaling state.");
        }
    };
    save(&report);
    loop {
        if sleep_or_stop(opts.interval, &mut stop).await {
            break;
        }
        let Ok(attrs) = ctx
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
        else {
            continue;
        };
        let count = |name: &QueueAttributeName| {
            attrs
                .attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let visible = count(&QueueAttributeName::ApproximateNumberOfMessages);
        let hidden = count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible);
        let (done, failed, busy_ms) = meter.take();
        let secs = opts.interval.as_secs_f64().max(0.001);
        // What arrived: what the queue holds more than before, plus what was done meanwhile.
        let arrivals = before.map_or(0.0, |b| {
            ((visible + hidden) as f64 - b as f64 + done as f64).max(0.0) / secs
        });
        before = Some(visible + hidden);
        let current = u32::try_from(limit.load(Ordering::SeqCst)).unwrap_or(u32::MAX);
        let obs = Observation {
            now_secs: started.elapsed().as_secs(),
            visible,
            in_flight: hidden,
            oldest_age_secs: 0.0,
            arrivals_per_sec: arrivals,
            completions_per_sec: done as f64 / secs,
            rate_per_batch: (busy_ms > 0)
                .then(|| (done + failed) as f64 / (busy_ms as f64 / 1000.0)),
            batch_size: u32::try_from(m.batch_size).unwrap_or(u32::MAX),
            throttles_per_sec: failed as f64 / secs,
            current,
        };
        let (decision, next) = decide(&opts.config, &obs, &state);
        state = next;
        if let Some(set) = decision.set {
            limit.store(set as usize, Ordering::SeqCst);
            tracing::info!(mapping = %m.name, from = current, to = set, reason = %decision.reason, "Concurrency changed.");
            report.changes += 1;
            report.highest = report.highest.max(set);
            report.setting = set;
            report.last_reason = Some(decision.reason.to_string());
            report.last_change_at =
                Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            save(&report);
        }
    }
}

/// The queue's visibility timeout, and the `maxReceiveCount` of its redrive policy.
async fn queue_settings<F>(ctx: &Ctx<F>, url: &str) -> (Duration, Option<u32>) {
    let attrs = ctx
        .sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::VisibilityTimeout)
        .attribute_names(QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .ok()
        .and_then(|o| o.attributes().cloned())
        .unwrap_or_default();
    let secs = attrs
        .get(&QueueAttributeName::VisibilityTimeout)
        .and_then(|v| v.parse().ok())
        .unwrap_or(30u64);
    let max_receives = attrs
        .get(&QueueAttributeName::RedrivePolicy)
        .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
        .and_then(|p| match &p["maxReceiveCount"] {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        })
        .and_then(|n| u32::try_from(n).ok());
    (Duration::from_secs(secs.max(1)), max_receives)
}

/// Receives up to `batch_size` messages within the batching window.
async fn gather<F>(
    ctx: &Ctx<F>,
    m: &Mapping,
    url: &str,
    groups: &GroupLock,
    stop: &mut watch::Receiver<bool>,
) -> Result<Vec<Message>, AwsError> {
    let started = Instant::now();
    let window = Duration::from_millis(m.batching_window_ms);
    let mut batch: Vec<Message> = Vec::new();
    let mut seen = HashSet::new();
    while batch.len() < m.batch_size && !*stop.borrow() {
        let want = i32::try_from((m.batch_size - batch.len()).min(10)).unwrap_or(10);
        let held = groups.hold().await;
        let out = ctx
            .sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(want)
            .wait_time_seconds(if batch.is_empty() { 1 } else { 0 })
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ReceiveMessage", url, e))?;
        drop(held);
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for msg in messages {
            if seen.insert(msg.message_id().unwrap_or_default().to_owned()) {
                batch.push(msg);
            }
        }
        if started.elapsed() >= window {
            break;
        }
    }
    Ok(batch)
}

async fn queue_is_empty<F>(ctx: &Ctx<F>, url: &str) -> bool {
    sluice_aws::listing::queue_depth(&ctx.sqs, url)
        .await
        .is_ok_and(|n| n == 0)
}

/// Invokes the handler on a batch, keeps the batch invisible while it runs, deletes the
/// successes, and makes the failures visible again after the retry delay.
async fn process<F: Functions>(
    ctx: &Ctx<F>,
    m: &Mapping,
    url: &str,
    arn: &str,
    groups: &GroupLock,
    batch: Vec<Message>,
    visibility: Duration,
) -> (usize, usize) {
    if tracing::enabled!(tracing::Level::DEBUG) {
        let received: Vec<String> = batch.iter().map(describe).collect();
        tracing::debug!(mapping = %m.name, ?received, "Batch received.");
    }
    let event = sqs_event(arn, &ctx.region, &batch);
    ctx.counters.invocations.fetch_add(1, Ordering::Relaxed);
    ctx.counters
        .records
        .fetch_add(batch.len() as u64, Ordering::Relaxed);
    // The heartbeat extends the batch's visibility while it runs. It holds `beating` while it
    // sends, so once the batch is done no extension can land after the retry delays are set
    // (one would hide every failed message of a FIFO group for the same time again).
    let beating = Arc::new(tokio::sync::Mutex::new(true));
    let heartbeat = {
        let (sqs, url, beating) = (ctx.sqs.clone(), url.to_owned(), beating.clone());
        let handles: Vec<String> = batch
            .iter()
            .filter_map(|m| m.receipt_handle().map(str::to_owned))
            .collect();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(visibility / 2).await;
                let alive = beating.lock().await;
                if !*alive {
                    break;
                }
                change_visibility(&sqs, &url, &handles, visibility).await;
            }
        })
    };
    let result = ctx.functions.invoke(m.function, event).await;
    // Waits for an extension under way to be answered.
    *beating.lock().await = false;
    heartbeat.abort();
    let failed: HashSet<String> = match &result {
        Ok(response) => response["batchItemFailures"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|x| x["itemIdentifier"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        Err(e) => {
            tracing::warn!(error = %e, mapping = %m.name, "Function error; the whole batch will be retried.");
            batch
                .iter()
                .filter_map(|m| m.message_id().map(str::to_owned))
                .collect()
        }
    };
    if !failed.is_empty() {
        ctx.counters
            .failed_invocations
            .fetch_add(1, Ordering::Relaxed);
        tracing::warn!(mapping = %m.name, failed = failed.len(), "Messages failed; they will be delivered again.");
    }
    let (done, retry): (Vec<&Message>, Vec<&Message>) = batch
        .iter()
        .partition(|msg| !failed.contains(msg.message_id().unwrap_or_default()));
    // The deletes and the retry delays that unlock the batch's groups, as one step between
    // receives.
    let held = groups.hold().await;
    delete(&ctx.sqs, url, &done).await;
    let failed_count = retry.len();
    let waits = if url.ends_with(".fifo") {
        fifo_waits(&retry, |receives| ctx.backoff.delay(receives).as_secs())
    } else {
        standard_waits(&retry, |receives| ctx.backoff.delay(receives).as_secs())
    };
    if !retry.is_empty() && tracing::enabled!(tracing::Level::DEBUG) {
        let retried: Vec<String> = retry.iter().map(|m| describe(m)).collect();
        tracing::debug!(mapping = %m.name, ?retried, "Failed messages to retry.");
    }
    // Longest first: a FIFO group's head is hidden again before the rest of it shows.
    for (secs, handles) in waits.into_iter().rev() {
        change_visibility(&ctx.sqs, url, &handles, Duration::from_secs(secs)).await;
    }
    drop(held);
    (done.len(), failed_count)
}

/// A message as the debug log names it: its id, and for a FIFO queue its group and sequence
/// number, then its receive count.
fn describe(msg: &Message) -> String {
    let attr = |name| {
        msg.attributes()
            .and_then(|a| a.get(&name))
            .map_or("-", String::as_str)
    };
    format!(
        "{} {}/{} x{}",
        msg.message_id().unwrap_or_default(),
        attr(MessageSystemAttributeName::MessageGroupId),
        attr(MessageSystemAttributeName::SequenceNumber),
        receives(msg)
    )
}

/// How often a message has been received, its own failures included.
fn receives(msg: &Message) -> u32 {
    msg.attributes()
        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(1)
}

/// The seconds each failed message of a standard queue stays hidden, with the receipt handles
/// of each: it waits according to how often it has failed so far (`wait` of its receive count).
fn standard_waits(retry: &[&Message], wait: impl Fn(u32) -> u64) -> BTreeMap<u64, Vec<String>> {
    let mut waits: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for msg in retry {
        if let Some(h) = msg.receipt_handle() {
            waits
                .entry(wait(receives(msg)))
                .or_default()
                .push(h.to_owned());
        }
    }
    waits
}

/// The same for a FIFO queue, one message group at a time: the group's first failed message
/// (its head, which has failed most often) waits as long as the longest wait of the group, and
/// the rest of the group's failed messages are made visible at once.
///
/// The head stays in flight, so the group stays locked and none of the rest can be received
/// before it; once it shows, the group is received from the head on, in order. This holds on
/// an emulator that releases a group's lock message by message, as moto does: when several
/// hidden messages of one group become visible together, it skips the group's first message
/// and delivers a later one. A staggered wait (the head a second after the rest) is not enough
/// there, since no receive may happen in that second; a message made visible by the call
/// itself is released at once. On SQS, which locks the group as a whole, it is the same order.
fn fifo_waits(retry: &[&Message], wait: impl Fn(u32) -> u64) -> BTreeMap<u64, Vec<String>> {
    let mut groups: Vec<(Option<&str>, Vec<&Message>)> = Vec::new();
    for msg in retry {
        let group = msg
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .map(String::as_str);
        match groups.iter_mut().find(|(g, _)| *g == group) {
            Some((_, members)) => members.push(msg),
            None => groups.push((group, vec![msg])),
        }
    }
    let mut waits: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (_, members) in groups {
        let head = members
            .iter()
            .map(|m| wait(receives(m)))
            .max()
            .unwrap_or(1)
            .max(1);
        for (i, msg) in members.iter().enumerate() {
            if let Some(h) = msg.receipt_handle() {
                let secs = if i == 0 { head } else { 0 };
                waits.entry(secs).or_default().push(h.to_owned());
            }
        }
    }
    waits
}

async fn delete(sqs: &aws_sdk_sqs::Client, url: &str, done: &[&Message]) {
    for chunk in done.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        match sqs
            .delete_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) if !out.failed().is_empty() => {
                tracing::warn!(failed = out.failed().len(), "Some processed messages could not be deleted; they will be processed again, harmlessly.");
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %AwsError::from_sdk("DeleteMessageBatch", url, e), "Processed messages not deleted; they will be processed again, harmlessly.")
            }
        }
    }
}

async fn change_visibility(sqs: &aws_sdk_sqs::Client, url: &str, handles: &[String], to: Duration) {
    let secs = i32::try_from(to.as_secs()).unwrap_or(30);
    if let Err(e) = sluice_aws::listing::set_visibility(sqs, url, handles, secs).await {
        tracing::debug!(error = %e, "Could not change visibility.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(handle: &str, group: &str, receives: u32) -> Message {
        Message::builder()
            .receipt_handle(handle)
            .attributes(MessageSystemAttributeName::MessageGroupId, group)
            .attributes(
                MessageSystemAttributeName::ApproximateReceiveCount,
                receives.to_string(),
            )
            .build()
    }

    #[test]
    fn a_fifo_groups_head_stays_hidden_and_the_rest_shows_behind_it() {
        let batch = [
            msg("a0", "a", 3),
            msg("b0", "b", 1),
            msg("a1", "a", 1),
            msg("a2", "a", 1),
        ];
        let retry: Vec<&Message> = batch.iter().collect();
        // The wait grows with the receive count, as the backoff's does: each group's head waits
        // the longest wait of its group, the rest of the group shows at once.
        let waits = fifo_waits(&retry, |n| u64::from(n) * 2);
        assert_eq!(
            waits,
            BTreeMap::from([
                (0, vec!["a1".to_owned(), "a2".to_owned()]),
                (2, vec!["b0".to_owned()]),
                (6, vec!["a0".to_owned()]),
            ])
        );
        // A wait that rounds down to nothing still hides the group's head.
        let waits = fifo_waits(&retry[1..], |_| 0);
        assert_eq!(waits[&1], vec!["b0".to_owned(), "a1".to_owned()]);
        assert_eq!(waits[&0], vec!["a2".to_owned()]);
    }

    #[tokio::test]
    async fn a_fifo_queues_receive_waits_for_the_end_of_a_batch() {
        assert!(GroupLock::for_queue("https://q/ingest")
            .hold()
            .await
            .is_none());
        let lock = GroupLock::for_queue("https://q/ingest.fifo");
        let ending = lock.hold().await;
        assert!(ending.is_some());
        let receive = {
            let lock = lock.clone();
            tokio::spawn(async move { lock.hold().await.is_some() })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!receive.is_finished(), "a receive overlapped a batch's end");
        drop(ending);
        assert!(receive.await.unwrap());
    }

    #[test]
    fn a_standard_queues_messages_each_wait_their_own_time() {
        let batch = [msg("x", "", 1), msg("y", "", 2)];
        let retry: Vec<&Message> = batch.iter().collect();
        let waits = standard_waits(&retry, u64::from);
        assert_eq!(
            waits,
            BTreeMap::from([(1, vec!["x".to_owned()]), (2, vec!["y".to_owned()])])
        );
    }
}
