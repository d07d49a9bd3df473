//! What the scaler reads and writes on AWS: the mappings, the queues, the metrics and its state.

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricStat};
use aws_smithy_types::DateTime;
use sluice_aws::listing::{get_bytes, list_keys};
use sluice_aws::metrics::NAMESPACE;
use sluice_aws::AwsError;

use super::{MappingSpec, StateFile};

/// The clients a run uses.
pub(super) struct Clients {
    pub lambda: aws_sdk_lambda::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    pub s3: aws_sdk_s3::Client,
}

/// A mapping's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An SQS queue.
    Queue {
        /// Its ARN.
        arn: String,
        /// Its name.
        name: String,
    },
    /// A DynamoDB stream or a Kinesis stream.
    Stream {
        /// Its ARN.
        arn: String,
        /// A name for it: the table's (`orders/stream`) or the Kinesis stream's.
        name: String,
    },
}

impl Source {
    /// Reads a source ARN; `None` for a source the scaler does not set (Kafka, MQ, DocumentDB).
    pub fn from_arn(arn: &str) -> Option<Self> {
        let mut parts = arn.splitn(6, ':');
        let (Some("arn"), Some(_partition), Some(service), Some(_region), Some(_account)) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let resource = parts.next()?;
        match service {
            "sqs" if !resource.is_empty() => Some(Self::Queue {
                arn: arn.to_owned(),
                name: resource.to_owned(),
            }),
            "dynamodb" => {
                let (table, _) = resource.strip_prefix("table/")?.split_once("/stream/")?;
                Some(Self::Stream {
                    arn: arn.to_owned(),
                    name: format!("{table}/stream"),
                })
            }
            "kinesis" => Some(Self::Stream {
                arn: arn.to_owned(),
                name: resource.strip_prefix("stream/")?.to_owned(),
            }),
            _ => None,
        }
    }

    /// Its name, for logs and the `Source` metric dimension.
    pub fn name(&self) -> &str {
        match self {
            Self::Queue { name, .. } | Self::Stream { name, .. } => name,
        }
    }
}

/// What `GetEventSourceMapping` says of a mapping.
pub(super) struct Mapping {
    pub source: Source,
    pub function_name: String,
    pub batch_size: u32,
    pub current: Option<u32>,
    pub parallelization: Option<u32>,
    pub provisioned: bool,
}

pub(super) async fn mapping(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
) -> Result<Mapping, AwsError> {
    let out = lambda
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetEventSourceMapping", uuid, e))?;
    let arn = out.event_source_arn().unwrap_or_default();
    let source = Source::from_arn(arn).ok_or_else(|| {
        AwsError::local(
            "GetEventSourceMapping",
            uuid,
            format!(
                "its source {arn:?} is neither an SQS queue nor a DynamoDB or Kinesis stream: \
                 remove it from SLUICE_SCALER_MAPPINGS"
            ),
        )
    })?;
    let function_name = out
        .function_arn()
        .and_then(|a| a.split(':').nth(6))
        .unwrap_or_default()
        .to_owned();
    let positive = |v: Option<i32>| v.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
    Ok(Mapping {
        source,
        function_name,
        batch_size: positive(out.batch_size()).unwrap_or(10),
        current: positive(out.scaling_config().and_then(|s| s.maximum_concurrency())),
        parallelization: positive(out.parallelization_factor()),
        provisioned: out.provisioned_poller_config().is_some(),
    })
}

pub(super) async fn set_concurrency(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    to: u32,
) -> Result<(), AwsError> {
    let n = i32::try_from(to).unwrap_or(1000);
    lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .scaling_config(
            aws_sdk_lambda::types::ScalingConfig::builder()
                .maximum_concurrency(n)
                .build(),
        )
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("UpdateEventSourceMapping", uuid, e))?;
    Ok(())
}

pub(super) async fn set_parallelization(
    lambda: &aws_sdk_lambda::Client,
    uuid: &str,
    to: u32,
) -> Result<(), AwsError> {
    lambda
        .update_event_source_mapping()
        .uuid(uuid)
        .parallelization_factor(i32::try_from(to).unwrap_or(1))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("UpdateEventSourceMapping", uuid, e))?;
    Ok(())
}

pub(super) async fn queue_url(
    sqs: &aws_sdk_sqs::Client,
    arn: &str,
    name: &str,
) -> Result<String, AwsError> {
    let account = arn.split(':').nth(4).filter(|a| !a.is_empty());
    let out = sqs
        .get_queue_url()
        .queue_name(name)
        .set_queue_owner_aws_account_id(account.map(str::to_owned))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueUrl", arn, e))?;
    out.queue_url()
        .map(str::to_owned)
        .ok_or_else(|| AwsError::local("GetQueueUrl", arn, "no URL in the answer"))
}

/// Visible and in-flight messages.
pub(super) async fn queue_counts(
    sqs: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<(u64, u64), AwsError> {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(Q::ApproximateNumberOfMessages)
        .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", url, e))?;
    let get = |q: Q| {
        out.attributes()
            .and_then(|a| a.get(&q))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok((
        get(Q::ApproximateNumberOfMessages),
        get(Q::ApproximateNumberOfMessagesNotVisible),
    ))
}

/// What the metrics say of one mapping.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Calibration {
    /// Messages one concurrent batch processes per second: the function's messages over its
    /// `BatchDuration`, over the calibration window.
    pub rate_per_batch: Option<f64>,
    /// Messages completed per second over the last five minutes.
    pub completions_per_sec: f64,
    /// `RetriableFailures` per second over the last three minutes.
    pub throttles_per_sec: f64,
    /// The queue's `ApproximateAgeOfOldestMessage`, its highest in the last three minutes.
    pub oldest_age_secs: Option<f64>,
    /// The function's `IteratorAge`, its highest in the last three minutes, seconds.
    pub iterator_age_secs: Option<f64>,
}

/// Datapoints of one metric: (epoch seconds, value).
pub type Series = Vec<(i64, f64)>;

impl Calibration {
    /// Reads the series of one mapping's metrics, as of `now`.
    pub fn from_series(
        now: u64,
        messages: &Series,
        duration_ms: &Series,
        failures: &Series,
        oldest: &Series,
        iterator_ms: &Series,
    ) -> Self {
        let now = i64::try_from(now).unwrap_or(i64::MAX);
        let since = |s: &Series, secs: i64| -> Vec<f64> {
            s.iter()
                .filter(|(t, v)| *t >= now - secs && v.is_finite())
                .map(|(_, v)| *v)
                .collect()
        };
        let sum = |s: &Series| {
            s.iter()
                .map(|(_, v)| v)
                .filter(|v| v.is_finite())
                .sum::<f64>()
        };
        let (done, busy_secs) = (sum(messages), sum(duration_ms) / 1000.0);
        let highest = |v: Vec<f64>| v.into_iter().reduce(f64::max);
        Self {
            rate_per_batch: (done > 0.0 && busy_secs > 0.0).then(|| done / busy_secs),
            completions_per_sec: since(messages, 300).iter().sum::<f64>() / 300.0,
            throttles_per_sec: since(failures, 180).iter().sum::<f64>() / 180.0,
            oldest_age_secs: highest(since(oldest, 180)),
            iterator_age_secs: highest(since(iterator_ms, 180)).map(|ms| ms / 1000.0),
        }
    }
}

/// Messages arriving per second: the backlog's growth since the last run plus what was
/// completed; on a first run, what is completed (a steady state).
pub fn arrivals(
    before: Option<u64>,
    before_at: Option<u64>,
    backlog: u64,
    now: u64,
    completions_per_sec: f64,
) -> f64 {
    match (before, before_at) {
        (Some(b), Some(at)) if now > at => {
            let growth = (backlog as f64 - b as f64) / (now - at) as f64;
            (growth + completions_per_sec).max(0.0)
        }
        _ => completions_per_sec,
    }
}

/// Reads the metrics of one mapping from CloudWatch: the function's EMF metrics, the queue's
/// oldest-message age, and for a stream the function's `IteratorAge`.
pub(super) async fn calibration(
    cw: &aws_sdk_cloudwatch::Client,
    spec: &MappingSpec,
    queue: &str,
    stream_function: Option<&str>,
    now: u64,
    window_secs: u64,
) -> Result<Calibration, AwsError> {
    let metric = |id: &str, namespace: &str, name: &str, dim: (&str, &str), stat: &str| {
        MetricDataQuery::builder()
            .id(id)
            .return_data(true)
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(namespace)
                            .metric_name(name)
                            .dimensions(Dimension::builder().name(dim.0).value(dim.1).build())
                            .build(),
                    )
                    .period(60)
                    .stat(stat)
                    .build(),
            )
            .build()
    };
    let function = ("Function", spec.function.as_str());
    let mut queries = vec![
        metric("m", NAMESPACE, spec.messages_metric(), function, "Sum"),
        metric("d", NAMESPACE, "BatchDuration", function, "Sum"),
        metric("f", NAMESPACE, "RetriableFailures", function, "Sum"),
    ];
    match stream_function {
        None => queries.push(metric(
            "o",
            "AWS/SQS",
            "ApproximateAgeOfOldestMessage",
            ("QueueName", queue),
            "Maximum",
        )),
        Some(f) => queries.push(metric(
            "i",
            "AWS/Lambda",
            "IteratorAge",
            ("FunctionName", f),
            "Maximum",
        )),
    }
    let start = i64::try_from(now.saturating_sub(window_secs)).unwrap_or(0);
    let end = i64::try_from(now + 60).unwrap_or(i64::MAX);
    let mut series: std::collections::HashMap<String, Series> = Default::default();
    let mut token = None;
    loop {
        let out = cw
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(DateTime::from_secs(start))
            .end_time(DateTime::from_secs(end))
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetMetricData", spec.function.clone(), e))?;
        for r in out.metric_data_results() {
            let s = series
                .entry(r.id().unwrap_or_default().to_owned())
                .or_default();
            s.extend(
                r.timestamps()
                    .iter()
                    .map(DateTime::secs)
                    .zip(r.values().iter().copied()),
            );
        }
        match out.next_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    let get = |id: &str| series.get(id).cloned().unwrap_or_default();
    Ok(Calibration::from_series(
        now,
        &get("m"),
        &get("d"),
        &get("f"),
        &get("o"),
        &get("i"),
    ))
}

/// Reads the state object; an absent one is an empty state, and an unreadable one is logged and
/// started afresh (it holds a window, not data: the worst is a decrease made a window later).
pub(super) async fn load_state(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<StateFile, AwsError> {
    if !list_keys(s3, bucket, key).await?.iter().any(|k| k == key) {
        return Ok(StateFile::default());
    }
    let (bytes, _) = get_bytes(s3, bucket, key).await?;
    Ok(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        tracing::warn!(object = %format!("s3://{bucket}/{key}"), error = %e, "The scaler's state is unreadable; starting afresh.");
        StateFile::default()
    }))
}

pub(super) async fn save_state(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
    state: &StateFile,
) -> Result<(), AwsError> {
    let target = format!("s3://{bucket}/{key}");
    let body =
        serde_json::to_vec(state).map_err(|e| AwsError::local("PutObject", target.clone(), e))?;
    s3.put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(body.into())
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutObject", target, e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn sources_are_read_from_their_arns() {
        assert_eq!(
            Source::from_arn("arn:aws:sqs:eu-west-1:123456789012:sluice-ingest"),
            Some(Source::Queue {
                arn: "arn:aws:sqs:eu-west-1:123456789012:sluice-ingest".into(),
                name: "sluice-ingest".into()
            })
        );
        let ddb =
            "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T07:55:20.123";
        assert_eq!(Source::from_arn(ddb).unwrap().name(), "orders/stream");
        let kinesis = "arn:aws-cn:kinesis:cn-north-1:123456789012:stream/changes";
        assert_eq!(Source::from_arn(kinesis).unwrap().name(), "changes");
        assert_eq!(
            Source::from_arn("arn:aws:kafka:eu-west-1:1:cluster/x/y"),
            None
        );
        assert_eq!(Source::from_arn("not an arn"), None);
        assert_eq!(Source::from_arn(""), None);
    }

    #[test]
    fn the_rate_is_messages_over_batch_time_and_recent_windows_are_kept_apart() {
        let now = 10_000;
        let t = |ago: i64| 10_000 - ago;
        // Three minutes of 600 messages in 30 s of batch time each: 20 msg/s per batch. Eight
        // minutes ago, 100 more in 5 s: still 20.
        let messages = vec![
            (t(480), 100.0),
            (t(120), 600.0),
            (t(60), 600.0),
            (t(0), 600.0),
        ];
        let duration = vec![
            (t(480), 5_000.0),
            (t(120), 30_000.0),
            (t(60), 30_000.0),
            (t(0), 30_000.0),
        ];
        let failures = vec![(t(600), 50.0), (t(60), 9.0)];
        let oldest = vec![(t(400), 900.0), (t(60), 42.0)];
        let c = Calibration::from_series(now, &messages, &duration, &failures, &oldest, &vec![]);
        assert_eq!(c.rate_per_batch, Some(20.0));
        assert_eq!(c.completions_per_sec, 1800.0 / 300.0);
        assert_eq!(c.throttles_per_sec, 9.0 / 180.0);
        assert_eq!(c.oldest_age_secs, Some(42.0));
        assert_eq!(c.iterator_age_secs, None);
        let none = Calibration::from_series(
            now,
            &vec![],
            &vec![],
            &vec![],
            &vec![],
            &vec![(t(30), 250_000.0)],
        );
        assert_eq!(none.rate_per_batch, None);
        assert_eq!(none.iterator_age_secs, Some(250.0));
    }

    #[test]
    fn arrivals_are_growth_plus_completions() {
        assert_eq!(arrivals(Some(1_000), Some(0), 7_000, 60, 50.0), 150.0);
        assert_eq!(arrivals(Some(7_000), Some(0), 1_000, 60, 50.0), 0.0);
        assert_eq!(arrivals(None, None, 7_000, 60, 50.0), 50.0);
        assert_eq!(arrivals(Some(1), Some(60), 7_000, 60, 5.0), 5.0);
    }
}
