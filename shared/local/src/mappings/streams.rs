//! DynamoDB stream polling with the semantics of a Lambda event source mapping.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::events::stream_event;
use aws_sdk_dynamodbstreams::types::{Record, Shard, ShardIteratorType};
use futures::stream::{self, StreamExt};
use sluice_aws::AwsError;
use tokio::sync::{watch, Mutex};

use super::ctx::{sleep_or_stop, Ctx, Functions};
use super::state::{Checkpoints, FunctionKind, Mapping, MappingSource, StartingPosition};

struct Stream<'a> {
    arn: &'a str,
    start: StartingPosition,
    /// Open iterators by shard id.
    iterators: Mutex<HashMap<String, String>>,
}

pub(crate) async fn run<F: Functions>(
    ctx: Arc<Ctx<F>>,
    m: Mapping,
    mut stop: watch::Receiver<bool>,
    idle: Arc<AtomicBool>,
) {
    let MappingSource::Stream {
        stream_arn,
        starting_position,
        ..
    } = &m.source
    else {
        return;
    };
    let s = Stream {
        arn: stream_arn,
        start: *starting_position,
        iterators: Mutex::new(HashMap::new()),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let shards = match describe(&ctx, s.arn).await {
            Ok(shards) => shards,
            Err(e) => {
                tracing::warn!(error = %e, mapping = %m.name, "Could not describe the stream; retrying.");
                idle.store(false, Ordering::SeqCst);
                if sleep_or_stop(Duration::from_secs(1), &mut stop).await {
                    break;
                }
                continue;
            }
        };
        let eligible = eligible_shards(&ctx, s.arn, &shards).await;
        let (ctx_ref, m_ref, s_ref) = (&ctx, &m, &s);
        let results: Vec<bool> = stream::iter(eligible)
            .map(|shard| {
                let stop = stop.clone();
                async move { poll_shard(ctx_ref, m_ref, s_ref, &shard, stop).await }
            })
            .buffer_unordered(m.max_concurrency.max(1))
            .collect()
            .await;
        let busy = results.iter().any(|had_records| *had_records);
        idle.store(!busy, Ordering::SeqCst);
        if !busy && sleep_or_stop(ctx.poll_interval, &mut stop).await {
            break;
        }
    }
}

async fn describe<F>(ctx: &Ctx<F>, arn: &str) -> Result<Vec<Shard>, AwsError> {
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let out = ctx
            .streams
            .describe_stream()
            .stream_arn(arn)
            .set_exclusive_start_shard_id(start.clone())
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("DescribeStream", arn, e))?;
        let Some(desc) = out.stream_description else {
            break;
        };
        shards.extend(desc.shards.unwrap_or_default());
        match desc.last_evaluated_shard_id {
            Some(last) if Some(&last) != start.as_ref() => start = Some(last),
            _ => break,
        }
    }
    Ok(shards)
}

/// Shards to read now: not finished, and whose parent (if still in the stream) is finished, so
/// a key's changes are read in order across a shard split.
async fn eligible_shards<F>(ctx: &Ctx<F>, arn: &str, shards: &[Shard]) -> Vec<Shard> {
    let c = ctx.checkpoints.lock().await;
    let finished: HashSet<String> = shards
        .iter()
        .filter_map(Shard::shard_id)
        .chain(shards.iter().filter_map(Shard::parent_shard_id))
        .filter(|id| {
            c.shards
                .get(&Checkpoints::key(arn, id))
                .is_some_and(|s| s.finished)
        })
        .map(str::to_owned)
        .collect();
    let lineage: Vec<(&str, Option<&str>)> = shards
        .iter()
        .map(|s| (s.shard_id().unwrap_or_default(), s.parent_shard_id()))
        .collect();
    let ready: HashSet<&str> = eligible(&lineage, &finished).into_iter().collect();
    shards
        .iter()
        .filter(|s| ready.contains(s.shard_id().unwrap_or_default()))
        .cloned()
        .collect()
}

/// The shards of `lineage` (id, parent) that may be read now: not finished, and whose parent is
/// finished or no longer in the stream (trimmed after 24 hours).
fn eligible<'a>(
    lineage: &[(&'a str, Option<&'a str>)],
    finished: &HashSet<String>,
) -> Vec<&'a str> {
    let present: HashSet<&str> = lineage.iter().map(|(id, _)| *id).collect();
    lineage
        .iter()
        .filter(|(id, parent)| {
            !finished.contains(*id)
                && parent.is_none_or(|p| finished.contains(p) || !present.contains(p))
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Reads one batch from a shard and delivers it. Returns whether there were records.
async fn poll_shard<F: Functions>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<'_>,
    shard: &Shard,
    stop: watch::Receiver<bool>,
) -> bool {
    let shard_id = shard.shard_id().unwrap_or_default().to_owned();
    let key = Checkpoints::key(s.arn, &shard_id);
    // Bound first: a guard in a match scrutinee would live through the arms and deadlock.
    let open = s.iterators.lock().await.get(&shard_id).cloned();
    let iterator = match open {
        Some(it) => it,
        None => match new_iterator(ctx, s, &shard_id, &key).await {
            Ok(Some(it)) => it,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, shard = %shard_id, "Could not get a shard iterator; retrying.");
                return false;
            }
        },
    };
    let out = match ctx
        .streams
        .get_records()
        .shard_iterator(&iterator)
        .limit(i32::try_from(m.batch_size).unwrap_or(100))
        .send()
        .await
    {
        Ok(out) => out,
        Err(e) => {
            let expired = e.as_service_error().is_some_and(|se| {
                se.is_expired_iterator_exception() || se.is_trimmed_data_access_exception()
            });
            s.iterators.lock().await.remove(&shard_id);
            if expired {
                tracing::info!(shard = %shard_id, "Shard iterator expired; renewing it from the checkpoint.");
            } else {
                tracing::warn!(error = %AwsError::from_sdk("GetRecords", s.arn, e), shard = %shard_id, "Could not read the shard; retrying.");
            }
            return false;
        }
    };
    let records = out.records.unwrap_or_default();
    let next = out.next_shard_iterator;
    if records.is_empty() {
        match next {
            Some(n) => {
                s.iterators.lock().await.insert(shard_id, n);
            }
            None => {
                // A closed shard read to its end: its children may start.
                tracing::info!(shard = %shard_id, "Closed shard finished.");
                s.iterators.lock().await.remove(&shard_id);
                ctx.checkpoint(&key, None, true).await;
            }
        }
        return false;
    }
    let delivered = deliver(ctx, m, s, &shard_id, &key, records, stop).await;
    let mut iterators = s.iterators.lock().await;
    match (delivered, next) {
        (true, Some(n)) => {
            iterators.insert(shard_id, n);
        }
        (true, None) => {
            iterators.remove(&shard_id);
            drop(iterators);
            ctx.checkpoint(&key, None, true).await;
        }
        // Stopped before the batch was done: read it again from the checkpoint next time.
        (false, _) => {
            iterators.remove(&shard_id);
        }
    }
    true
}

async fn new_iterator<F>(
    ctx: &Ctx<F>,
    s: &Stream<'_>,
    shard_id: &str,
    key: &str,
) -> Result<Option<String>, AwsError> {
    let checkpoint = ctx
        .checkpoints
        .lock()
        .await
        .shards
        .get(key)
        .and_then(|c| c.sequence_number.clone());
    let mut req = ctx
        .streams
        .get_shard_iterator()
        .stream_arn(s.arn)
        .shard_id(shard_id);
    req = match &checkpoint {
        Some(seq) => req
            .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
            .sequence_number(seq),
        None => req.shard_iterator_type(match s.start {
            StartingPosition::TrimHorizon => ShardIteratorType::TrimHorizon,
            StartingPosition::Latest => ShardIteratorType::Latest,
        }),
    };
    let out = req
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetShardIterator", s.arn, e))?;
    if let Some(it) = &out.shard_iterator {
        s.iterators
            .lock()
            .await
            .insert(shard_id.to_owned(), it.clone());
    }
    Ok(out.shard_iterator)
}

fn sequence(r: &Record) -> Option<String> {
    r.dynamodb()
        .and_then(|d| d.sequence_number())
        .map(str::to_owned)
}

fn age_secs(r: &Record) -> i64 {
    let now = chrono::Utc::now().timestamp();
    r.dynamodb()
        .and_then(|d| d.approximate_creation_date_time())
        .map_or(0, |t| now - t.secs())
}

/// Delivers records in order, with retries, bisection and the on-failure destination.
/// Returns `false` only when a stop came before the batch was done.
async fn deliver<F: Functions>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<'_>,
    shard_id: &str,
    key: &str,
    records: Vec<Record>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut pending: VecDeque<Vec<Record>> = VecDeque::from([records]);
    while let Some(mut batch) = pending.pop_front() {
        let mut attempts: i64 = 0;
        loop {
            let event = stream_event(s.arn, &ctx.region, &batch);
            ctx.counters.invocations.fetch_add(1, Ordering::Relaxed);
            ctx.counters
                .records
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            match ctx.functions.invoke(FunctionKind::Ingest, event).await {
                Ok(response) => {
                    let first_failed = response["batchItemFailures"]
                        .as_array()
                        .and_then(|f| f.first())
                        .and_then(|f| f["itemIdentifier"].as_str())
                        .map(str::to_owned);
                    match first_failed {
                        None => {
                            ctx.checkpoint(key, batch.last().and_then(sequence), false)
                                .await;
                            break;
                        }
                        Some(seq) => {
                            let idx = batch
                                .iter()
                                .position(|r| sequence(r).as_deref() == Some(&seq))
                                .unwrap_or(0);
                            if idx > 0 {
                                ctx.checkpoint(key, sequence(&batch[idx - 1]), false).await;
                                batch.drain(..idx);
                            }
                            tracing::warn!(shard = %shard_id, sequence_number = %seq, "Batch partly failed; retrying from the first failed record.");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, shard = %shard_id, records = batch.len(), "Function error; retrying the batch.");
                    if m.bisect_on_error && batch.len() > 1 {
                        let second = batch.split_off(batch.len() / 2);
                        pending.push_front(second);
                    }
                }
            }
            ctx.counters
                .failed_invocations
                .fetch_add(1, Ordering::Relaxed);
            attempts += 1;
            let too_many = m.max_retry_attempts >= 0 && attempts > m.max_retry_attempts;
            let too_old = m.max_record_age_secs >= 0
                && batch
                    .first()
                    .is_some_and(|r| age_secs(r) > m.max_record_age_secs);
            if too_many || too_old {
                on_failure(
                    ctx,
                    m,
                    s,
                    shard_id,
                    &batch,
                    attempts,
                    if too_many {
                        "RetryAttemptsExhausted"
                    } else {
                        "RecordAgeExceeded"
                    },
                )
                .await;
                ctx.checkpoint(key, batch.last().and_then(sequence), false)
                    .await;
                break;
            }
            let backoff = ctx
                .backoff
                .delay(u32::try_from(attempts).unwrap_or(u32::MAX));
            if sleep_or_stop(backoff, &mut stop).await {
                return false;
            }
        }
    }
    true
}

/// Sends the on-failure record of a batch that was given up: the `DDBStreamBatchInfo` shape.
async fn on_failure<F>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<'_>,
    shard_id: &str,
    batch: &[Record],
    attempts: i64,
    condition: &str,
) {
    let Some(url) = &m.on_failure_queue_url else {
        tracing::error!(shard = %shard_id, records = batch.len(), "Batch given up and no on-failure destination is set: these records are skipped.");
        return;
    };
    let arrival = |r: Option<&Record>| {
        r.and_then(|r| r.dynamodb())
            .and_then(|d| d.approximate_creation_date_time())
            .map(|t| sluice_core::time::ms_to_rfc3339(t.secs() * 1000))
    };
    let body = serde_json::json!({
        "requestContext": {"requestId": uuid_like(shard_id, batch), "functionArn": format!("local:{}", m.name),
                           "condition": condition, "approximateInvokeCount": attempts},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": sluice_core::time::ms_to_rfc3339(chrono::Utc::now().timestamp_millis()),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": batch.first().and_then(sequence),
            "endSequenceNumber": batch.last().and_then(sequence),
            "approximateArrivalOfFirstRecord": arrival(batch.first()),
            "approximateArrivalOfLastRecord": arrival(batch.last()),
            "batchSize": batch.len(),
            "streamArn": s.arn,
        }
    });
    ctx.counters
        .on_failure_records
        .fetch_add(1, Ordering::Relaxed);
    if let Err(e) = ctx
        .sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
    {
        tracing::error!(error = %AwsError::from_sdk("SendMessage", url.clone(), e), "Could not send the on-failure record.");
    } else {
        tracing::error!(shard = %shard_id, records = batch.len(), condition, "Batch given up after retries; its on-failure record is on the DLQ.");
    }
}

fn uuid_like(shard_id: &str, batch: &[Record]) -> String {
    let ids: Vec<String> = batch.iter().filter_map(sequence).collect();
    format!("{shard_id}-{}", ids.first().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_wait_for_their_parents_across_splits() {
        // A split: shard a closed into b and c; c split again into d and e.
        let lineage = [
            ("a", None),
            ("b", Some("a")),
            ("c", Some("a")),
            ("d", Some("c")),
            ("e", Some("c")),
        ];
        let done = |ids: &[&str]| {
            ids.iter()
                .map(|s| (*s).to_owned())
                .collect::<HashSet<String>>()
        };
        assert_eq!(eligible(&lineage, &done(&[])), ["a"]);
        assert_eq!(eligible(&lineage, &done(&["a"])), ["b", "c"]);
        assert_eq!(eligible(&lineage, &done(&["a", "c"])), ["b", "d", "e"]);
        assert!(eligible(&lineage, &done(&["a", "b", "c", "d", "e"])).is_empty());
    }

    #[test]
    fn a_trimmed_parent_does_not_block_its_children() {
        // After 24 hours the closed parent is trimmed from the stream: its children start.
        let lineage = [("b", Some("a")), ("c", Some("a"))];
        assert_eq!(eligible(&lineage, &HashSet::new()), ["b", "c"]);
    }
}
