//! Stream polling with the semantics of a Lambda event source mapping, for a DynamoDB stream and
//! for a Kinesis data stream: shards read parents first, a checkpoint per shard, retries with
//! backoff, bisection on a function error, and an on-failure record once a batch is given up.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use sluice_aws::AwsError;
use tokio::sync::{watch, Mutex};

use super::ctx::{sleep_or_stop, Ctx, Functions};
use super::state::{Checkpoints, FunctionKind, Mapping, MappingSource, StartingPosition};

/// A shard, and the shards it came from (one on a split, two on a merge).
#[derive(Debug, Clone)]
struct ShardInfo {
    id: String,
    parents: Vec<String>,
}

/// One page of a shard.
struct Page<R> {
    records: Vec<R>,
    /// `None` once a closed shard is read to its end.
    next: Option<String>,
}

/// Why a page could not be read.
enum ReadError {
    /// The iterator expired or points at trimmed data: renew it from the checkpoint.
    Expired,
    /// Anything else: retry later.
    Other(AwsError),
}

/// What a stream mapping reads: the calls it makes and what it needs of a record.
trait Source: Send + Sync {
    /// A record as the API returns it.
    type Record: Send + Sync;
    /// The on-failure record's key for the batch (`DDBStreamBatchInfo`, `KinesisBatchInfo`).
    const BATCH_INFO: &'static str;

    /// The stream's ARN.
    fn arn(&self) -> &str;
    /// Every shard, closed ones included.
    fn shards(&self) -> impl Future<Output = Result<Vec<ShardInfo>, AwsError>> + Send;
    /// An iterator after `after`, or at the starting position without one.
    fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> impl Future<Output = Result<Option<String>, AwsError>> + Send;
    /// A page of up to `limit` records.
    fn read(
        &self,
        iterator: &str,
        limit: i32,
    ) -> impl Future<Output = Result<Page<Self::Record>, ReadError>> + Send;
    /// A record's sequence number.
    fn sequence(r: &Self::Record) -> Option<String>;
    /// When a record was written to the stream, in epoch seconds.
    fn written_secs(r: &Self::Record) -> Option<i64>;
    /// The Lambda event of a batch of one shard.
    fn event(&self, region: &str, shard: &str, batch: &[Self::Record]) -> String;
}

/// A DynamoDB stream.
struct DynamoDbStream<'a> {
    client: &'a aws_sdk_dynamodbstreams::Client,
    arn: &'a str,
}

impl Source for DynamoDbStream<'_> {
    type Record = aws_sdk_dynamodbstreams::types::Record;
    const BATCH_INFO: &'static str = "DDBStreamBatchInfo";

    fn arn(&self) -> &str {
        self.arn
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, AwsError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_stream()
                .stream_arn(self.arn)
                .set_exclusive_start_shard_id(start.clone())
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("DescribeStream", self.arn, e))?;
            let Some(desc) = out.stream_description else {
                break;
            };
            shards.extend(
                desc.shards
                    .unwrap_or_default()
                    .into_iter()
                    .map(|s| ShardInfo {
                        id: s.shard_id.unwrap_or_default(),
                        parents: s.parent_shard_id.into_iter().collect(),
                    }),
            );
            match desc.last_evaluated_shard_id {
                Some(last) if Some(&last) != start.as_ref() => start = Some(last),
                _ => break,
            }
        }
        Ok(shards)
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> Result<Option<String>, AwsError> {
        use aws_sdk_dynamodbstreams::types::ShardIteratorType as T;
        let req = self
            .client
            .get_shard_iterator()
            .stream_arn(self.arn)
            .shard_id(shard);
        let req = match after {
            Some(seq) => req
                .shard_iterator_type(T::AfterSequenceNumber)
                .sequence_number(seq),
            None => req.shard_iterator_type(match start {
                StartingPosition::TrimHorizon => T::TrimHorizon,
                StartingPosition::Latest => T::Latest,
            }),
        };
        Ok(req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetShardIterator", self.arn, e))?
            .shard_iterator)
    }

    async fn read(&self, iterator: &str, limit: i32) -> Result<Page<Self::Record>, ReadError> {
        match self
            .client
            .get_records()
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
        {
            Ok(out) => Ok(Page {
                records: out.records.unwrap_or_default(),
                next: out.next_shard_iterator,
            }),
            Err(e)
                if e.as_service_error().is_some_and(|se| {
                    se.is_expired_iterator_exception() || se.is_trimmed_data_access_exception()
                }) =>
            {
                Err(ReadError::Expired)
            }
            Err(e) => Err(ReadError::Other(AwsError::from_sdk(
                "GetRecords",
                self.arn,
                e,
            ))),
        }
    }

    fn sequence(r: &Self::Record) -> Option<String> {
        r.dynamodb()
            .and_then(|d| d.sequence_number())
            .map(str::to_owned)
    }

    fn written_secs(r: &Self::Record) -> Option<i64> {
        r.dynamodb()
            .and_then(|d| d.approximate_creation_date_time())
            .map(|t| t.secs())
    }

    fn event(&self, region: &str, _shard: &str, batch: &[Self::Record]) -> String {
        crate::events::stream_event(self.arn, region, batch)
    }
}

/// A Kinesis data stream.
struct KinesisStream<'a> {
    client: &'a aws_sdk_kinesis::Client,
    arn: &'a str,
}

impl Source for KinesisStream<'_> {
    type Record = aws_sdk_kinesis::types::Record;
    const BATCH_INFO: &'static str = "KinesisBatchInfo";

    fn arn(&self) -> &str {
        self.arn
    }

    async fn shards(&self) -> Result<Vec<ShardInfo>, AwsError> {
        let mut shards = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let req = self.client.list_shards();
            // A continuation token goes alone: the stream is named by the first call only.
            let req = match &next {
                Some(token) => req.next_token(token),
                None => req.stream_arn(self.arn),
            };
            let out = req
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("ListShards", self.arn, e))?;
            shards.extend(out.shards().iter().map(|s| {
                ShardInfo {
                    id: s.shard_id().to_owned(),
                    parents: s
                        .parent_shard_id()
                        .into_iter()
                        .chain(s.adjacent_parent_shard_id())
                        .map(str::to_owned)
                        .collect(),
                }
            }));
            match out.next_token() {
                Some(token) if !token.is_empty() => next = Some(token.to_owned()),
                _ => break,
            }
        }
        Ok(shards)
    }

    async fn iterator(
        &self,
        shard: &str,
        after: Option<&str>,
        start: StartingPosition,
    ) -> Result<Option<String>, AwsError> {
        use aws_sdk_kinesis::types::ShardIteratorType as T;
        let req = self
            .client
            .get_shard_iterator()
            .stream_arn(self.arn)
            .shard_id(shard);
        let req = match after {
            Some(seq) => req
                .shard_iterator_type(T::AfterSequenceNumber)
                .starting_sequence_number(seq),
            None => req.shard_iterator_type(match start {
                StartingPosition::TrimHorizon => T::TrimHorizon,
                StartingPosition::Latest => T::Latest,
            }),
        };
        Ok(req
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetShardIterator", self.arn, e))?
            .shard_iterator)
    }

    async fn read(&self, iterator: &str, limit: i32) -> Result<Page<Self::Record>, ReadError> {
        match self
            .client
            .get_records()
            .stream_arn(self.arn)
            .shard_iterator(iterator)
            .limit(limit)
            .send()
            .await
        {
            Ok(out) => Ok(Page {
                records: out.records,
                next: out.next_shard_iterator,
            }),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|se| se.is_expired_iterator_exception()) =>
            {
                Err(ReadError::Expired)
            }
            Err(e) => Err(ReadError::Other(AwsError::from_sdk(
                "GetRecords",
                self.arn,
                e,
            ))),
        }
    }

    fn sequence(r: &Self::Record) -> Option<String> {
        Some(r.sequence_number().to_owned())
    }

    fn written_secs(r: &Self::Record) -> Option<i64> {
        r.approximate_arrival_timestamp().map(|t| t.secs())
    }

    fn event(&self, region: &str, shard: &str, batch: &[Self::Record]) -> String {
        sluice_pipeline::stream_events::kinesis_event(self.arn, region, shard, batch)
    }
}

/// A stream mapping's reading state.
struct Stream<S> {
    source: S,
    start: StartingPosition,
    /// Open iterators by shard id.
    iterators: Mutex<HashMap<String, String>>,
}

pub(crate) async fn run<F: Functions>(
    ctx: Arc<Ctx<F>>,
    m: Mapping,
    stop: watch::Receiver<bool>,
    idle: Arc<AtomicBool>,
) {
    match &m.source {
        MappingSource::Stream {
            stream_arn,
            starting_position,
            ..
        } => {
            let source = DynamoDbStream {
                client: &ctx.streams,
                arn: stream_arn,
            };
            poll(&ctx, &m, source, *starting_position, stop, idle).await;
        }
        MappingSource::Kinesis {
            stream_arn,
            starting_position,
        } => {
            let source = KinesisStream {
                client: &ctx.kinesis,
                arn: stream_arn,
            };
            poll(&ctx, &m, source, *starting_position, stop, idle).await;
        }
        MappingSource::Queue { .. } => {}
    }
}

async fn poll<F: Functions, S: Source>(
    ctx: &Ctx<F>,
    m: &Mapping,
    source: S,
    start: StartingPosition,
    mut stop: watch::Receiver<bool>,
    idle: Arc<AtomicBool>,
) {
    let s = Stream {
        source,
        start,
        iterators: Mutex::new(HashMap::new()),
    };
    loop {
        if *stop.borrow() {
            break;
        }
        let shards = match s.source.shards().await {
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
        let eligible = eligible_shards(ctx, s.source.arn(), &shards).await;
        let s_ref = &s;
        let results: Vec<bool> = stream::iter(eligible)
            .map(|shard| {
                let stop = stop.clone();
                async move { poll_shard(ctx, m, s_ref, &shard, stop).await }
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

/// Shards to read now: not finished, and whose parents (those still in the stream) are
/// finished, so a key's changes are read in order across a split or a merge.
async fn eligible_shards<F>(ctx: &Ctx<F>, arn: &str, shards: &[ShardInfo]) -> Vec<String> {
    let c = ctx.checkpoints.lock().await;
    let finished: HashSet<String> = shards
        .iter()
        .flat_map(|s| std::iter::once(&s.id).chain(&s.parents))
        .filter(|id| {
            c.shards
                .get(&Checkpoints::key(arn, id))
                .is_some_and(|s| s.finished)
        })
        .cloned()
        .collect();
    let lineage: Vec<(&str, Vec<&str>)> = shards
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.parents.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    eligible(&lineage, &finished)
        .into_iter()
        .map(str::to_owned)
        .collect()
}

/// The shards of `lineage` (id, parents) that may be read now: not finished, and whose every
/// parent is finished or no longer in the stream (trimmed after the retention period).
fn eligible<'a>(lineage: &[(&'a str, Vec<&'a str>)], finished: &HashSet<String>) -> Vec<&'a str> {
    let present: HashSet<&str> = lineage.iter().map(|(id, _)| *id).collect();
    lineage
        .iter()
        .filter(|(id, parents)| {
            !finished.contains(*id)
                && parents
                    .iter()
                    .all(|p| finished.contains(*p) || !present.contains(p))
        })
        .map(|(id, _)| *id)
        .collect()
}

/// Reads one batch from a shard and delivers it. Returns whether there were records.
async fn poll_shard<F: Functions, S: Source>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<S>,
    shard_id: &str,
    stop: watch::Receiver<bool>,
) -> bool {
    let arn = s.source.arn();
    let key = Checkpoints::key(arn, shard_id);
    // Bound first: a guard in a match scrutinee would live through the arms and deadlock.
    let open = s.iterators.lock().await.get(shard_id).cloned();
    let iterator = match open {
        Some(it) => it,
        None => match new_iterator(ctx, s, shard_id, &key).await {
            Ok(Some(it)) => it,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(error = %e, shard = %shard_id, "Could not get a shard iterator; retrying.");
                return false;
            }
        },
    };
    let page = match s
        .source
        .read(&iterator, i32::try_from(m.batch_size).unwrap_or(100))
        .await
    {
        Ok(page) => page,
        Err(e) => {
            s.iterators.lock().await.remove(shard_id);
            match e {
                ReadError::Expired => {
                    tracing::info!(shard = %shard_id, "Shard iterator expired; renewing it from the checkpoint.");
                }
                ReadError::Other(e) => {
                    tracing::warn!(error = %e, shard = %shard_id, "Could not read the shard; retrying.");
                }
            }
            return false;
        }
    };
    let (records, next) = (page.records, page.next);
    if records.is_empty() {
        match next {
            Some(n) => {
                s.iterators.lock().await.insert(shard_id.to_owned(), n);
            }
            None => {
                // A closed shard read to its end: its children may start.
                tracing::info!(shard = %shard_id, "Closed shard finished.");
                s.iterators.lock().await.remove(shard_id);
                ctx.checkpoint(&key, None, true).await;
            }
        }
        return false;
    }
    let delivered = deliver(ctx, m, s, shard_id, &key, records, stop).await;
    let mut iterators = s.iterators.lock().await;
    match (delivered, next) {
        (true, Some(n)) => {
            iterators.insert(shard_id.to_owned(), n);
        }
        (true, None) => {
            iterators.remove(shard_id);
            drop(iterators);
            ctx.checkpoint(&key, None, true).await;
        }
        // Stopped before the batch was done: read it again from the checkpoint next time.
        (false, _) => {
            iterators.remove(shard_id);
        }
    }
    true
}

async fn new_iterator<F, S: Source>(
    ctx: &Ctx<F>,
    s: &Stream<S>,
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
    let it = s
        .source
        .iterator(shard_id, checkpoint.as_deref(), s.start)
        .await?;
    if let Some(it) = &it {
        s.iterators
            .lock()
            .await
            .insert(shard_id.to_owned(), it.clone());
    }
    Ok(it)
}

fn age_secs<S: Source>(r: &S::Record) -> i64 {
    let now = chrono::Utc::now().timestamp();
    S::written_secs(r).map_or(0, |t| now - t)
}

/// Delivers records in order, with retries, bisection and the on-failure destination.
/// Returns `false` only when a stop came before the batch was done.
async fn deliver<F: Functions, S: Source>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<S>,
    shard_id: &str,
    key: &str,
    records: Vec<S::Record>,
    mut stop: watch::Receiver<bool>,
) -> bool {
    let mut pending: VecDeque<Vec<S::Record>> = VecDeque::from([records]);
    while let Some(mut batch) = pending.pop_front() {
        let mut attempts: i64 = 0;
        loop {
            let event = s.source.event(&ctx.region, shard_id, &batch);
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
                            ctx.checkpoint(key, batch.last().and_then(S::sequence), false)
                                .await;
                            break;
                        }
                        Some(seq) => {
                            let idx = batch
                                .iter()
                                .position(|r| S::sequence(r).as_deref() == Some(&seq))
                                .unwrap_or(0);
                            if idx > 0 {
                                ctx.checkpoint(key, S::sequence(&batch[idx - 1]), false)
                                    .await;
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
                    .is_some_and(|r| age_secs::<S>(r) > m.max_record_age_secs);
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
                ctx.checkpoint(key, batch.last().and_then(S::sequence), false)
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

/// Sends the on-failure record of a batch that was given up: the `DDBStreamBatchInfo` or
/// `KinesisBatchInfo` shape Lambda sends.
async fn on_failure<F, S: Source>(
    ctx: &Ctx<F>,
    m: &Mapping,
    s: &Stream<S>,
    shard_id: &str,
    batch: &[S::Record],
    attempts: i64,
    condition: &str,
) {
    let Some(url) = &m.on_failure_queue_url else {
        tracing::error!(shard = %shard_id, records = batch.len(), "Batch given up and no on-failure destination is set: these records are skipped.");
        return;
    };
    let arrival = |r: Option<&S::Record>| {
        r.and_then(S::written_secs)
            .map(|t| sluice_core::time::ms_to_rfc3339(t * 1000))
    };
    let first = batch.first().and_then(S::sequence);
    let body = serde_json::json!({
        "requestContext": {"requestId": format!("{shard_id}-{}", first.clone().unwrap_or_default()),
                           "functionArn": format!("local:{}", m.name),
                           "condition": condition, "approximateInvokeCount": attempts},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": sluice_core::time::ms_to_rfc3339(chrono::Utc::now().timestamp_millis()),
        S::BATCH_INFO: {
            "shardId": shard_id,
            "startSequenceNumber": first,
            "endSequenceNumber": batch.last().and_then(S::sequence),
            "approximateArrivalOfFirstRecord": arrival(batch.first()),
            "approximateArrivalOfLastRecord": arrival(batch.last()),
            "batchSize": batch.len(),
            "streamArn": s.source.arn(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_wait_for_their_parents_across_splits() {
        // A split: shard a closed into b and c; c split again into d and e.
        let lineage = [
            ("a", vec![]),
            ("b", vec!["a"]),
            ("c", vec!["a"]),
            ("d", vec!["c"]),
            ("e", vec!["c"]),
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
        let lineage = [("b", vec!["a"]), ("c", vec!["a"])];
        assert_eq!(eligible(&lineage, &HashSet::new()), ["b", "c"]);
    }

    #[test]
    fn a_merged_shard_waits_for_both_parents() {
        // Kinesis: b and c merged into d.
        let lineage = [("b", vec![]), ("c", vec![]), ("d", vec!["b", "c"])];
        let done = |ids: &[&str]| {
            ids.iter()
                .map(|s| (*s).to_owned())
                .collect::<HashSet<String>>()
        };
        assert_eq!(eligible(&lineage, &done(&[])), ["b", "c"]);
        assert_eq!(eligible(&lineage, &done(&["b"])), ["c"]);
        assert_eq!(eligible(&lineage, &done(&["b", "c"])), ["d"]);
    }
}
