//! Creating sluice's resources on an endpoint, idempotently: running it twice is harmless.
//!
//! Used by `sluice local up` and by the end-to-end tests. Deployed stacks get the same
//! resources from `template.yaml`.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;

use sluice_aws::AwsError;

/// How often the ingest queue delivers a message before its redrive policy moves it to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The visibility timeout of local queues. The local runner extends it while a batch runs, so
/// it can be short: after a crash, unfinished messages come back quickly.
pub const LOCAL_VISIBILITY_TIMEOUT_SECS: &str = "15";

/// The resources ingest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResources {
    /// The raw staging bucket.
    pub raw_bucket: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
    /// The ingest queue's URL.
    pub ingest_queue_url: String,
}

/// Names derived from a prefix: `<prefix>-raw`, `<prefix>-dlq`, `<prefix>-ingest`,
/// `<prefix>-transform`, and typed tables `<prefix>-<contract name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The raw bucket.
    pub raw_bucket: String,
    /// The DLQ.
    pub dlq: String,
    /// The ingest queue.
    pub ingest_queue: String,
    /// The transform queue.
    pub transform_queue: String,
    /// The prefix of typed table names.
    pub typed_table_prefix: String,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            raw_bucket: format!("{prefix}-raw"),
            dlq: format!("{prefix}-dlq"),
            ingest_queue: format!("{prefix}-ingest"),
            transform_queue: format!("{prefix}-transform"),
            typed_table_prefix: format!("{prefix}-"),
        }
    }
}

/// Creates the bucket unless it exists.
pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), AwsError> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let svc = e.as_service_error();
            if svc.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                Ok(())
            } else {
                Err(AwsError::from_sdk("CreateBucket", bucket, e))
            }
        }
    }
}

/// Creates the queue with `attributes` unless it exists, and returns its URL.
pub async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, AwsError> {
    if let Ok(out) = sqs.get_queue_url().queue_name(name).send().await {
        if let Some(url) = out.queue_url {
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("SetQueueAttributes", name, e))?;
            return Ok(url);
        }
    }
    let out = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateQueue", name, e))?;
    out.queue_url
        .ok_or_else(|| AwsError::local("CreateQueue", name, "the response has no QueueUrl"))
}

/// The ARN of a queue.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, AwsError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", url, e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| AwsError::local("GetQueueAttributes", url, "the queue has no QueueArn"))
}

/// Looks up the URL of an existing queue.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, AwsError> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueUrl", name, e))?
        .queue_url
        .ok_or_else(|| AwsError::local("GetQueueUrl", name, "the response has no QueueUrl"))
}

/// Creates the raw bucket, the DLQ and the ingest queue (with its redrive policy to the DLQ).
/// With `fifo`, both queues are FIFO queues (names get the `.fifo` suffix).
pub async fn ensure_ingest(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    names: &Names,
    fifo: bool,
) -> Result<IngestResources, AwsError> {
    ensure_bucket(s3, &names.raw_bucket).await?;
    let suffix = if fifo { ".fifo" } else { "" };
    let mut dlq_attrs = HashMap::from([(
        QueueAttributeName::MessageRetentionPeriod,
        "1209600".to_owned(),
    )]);
    if fifo {
        dlq_attrs.insert(QueueAttributeName::FifoQueue, "true".into());
        dlq_attrs.insert(QueueAttributeName::ContentBasedDeduplication, "true".into());
    }
    let dlq_url = ensure_queue(sqs, &format!("{}{suffix}", names.dlq), dlq_attrs).await?;
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#);
    let mut attrs = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive),
        (
            QueueAttributeName::VisibilityTimeout,
            LOCAL_VISIBILITY_TIMEOUT_SECS.to_owned(),
        ),
    ]);
    if fifo {
        attrs.insert(QueueAttributeName::FifoQueue, "true".into());
    }
    let ingest_queue_url =
        ensure_queue(sqs, &format!("{}{suffix}", names.ingest_queue), attrs).await?;
    Ok(IngestResources {
        raw_bucket: names.raw_bucket.clone(),
        dlq_url,
        ingest_queue_url,
    })
}

/// Creates a typed table (on-demand capacity, TTL on `_expires_at`) unless it exists.
/// `keys` is the key schema, partition key first, with attribute types `S`, `N` or `B`.
pub async fn ensure_typed_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(String, &'static str)],
) -> Result<(), AwsError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        TimeToLiveSpecification,
    };
    let exists = match ddb.describe_table().table_name(name).send().await {
        Ok(_) => true,
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            false
        }
        Err(e) => return Err(AwsError::from_sdk("DescribeTable", name, e)),
    };
    if !exists {
        let mut req = ddb
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest);
        for (i, (attr, ty)) in keys.iter().enumerate() {
            let scalar = match *ty {
                "N" => ScalarAttributeType::N,
                "B" => ScalarAttributeType::B,
                _ => ScalarAttributeType::S,
            };
            let kind = if i == 0 {
                KeyType::Hash
            } else {
                KeyType::Range
            };
            req = req
                .attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(attr)
                        .attribute_type(scalar)
                        .build()
                        .map_err(|e| AwsError::local("CreateTable", name, e))?,
                )
                .key_schema(
                    KeySchemaElement::builder()
                        .attribute_name(attr)
                        .key_type(kind)
                        .build()
                        .map_err(|e| AwsError::local("CreateTable", name, e))?,
                );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) => {}
            Err(e) => return Err(AwsError::from_sdk("CreateTable", name, e)),
        }
    }
    let ttl = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(sluice_core::row::EXPIRES_ATTR)
        .build()
        .map_err(|e| AwsError::local("UpdateTimeToLive", name, e))?;
    if let Err(e) = ddb
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(ttl)
        .send()
        .await
    {
        // Enabling TTL twice is refused; that is the idempotent case.
        let err = AwsError::from_sdk("UpdateTimeToLive", name, e);
        if !err.message.contains("already enabled") {
            tracing::warn!(error = %err, "Could not enable TTL on the typed table.");
        }
    }
    Ok(())
}

/// Creates the transform queue (redriving to the DLQ, and allowing the raw bucket to send to
/// it) and points the raw bucket's `ObjectCreated` notifications under `raw/` at it.
/// Returns the queue's URL.
pub async fn ensure_transform(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    names: &Names,
    dlq_url: &str,
) -> Result<String, AwsError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let dlq_arn = queue_arn(sqs, dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#);
    let url = ensure_queue(
        sqs,
        &names.transform_queue,
        HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive),
            (
                QueueAttributeName::VisibilityTimeout,
                LOCAL_VISIBILITY_TIMEOUT_SECS.to_owned(),
            ),
        ]),
    )
    .await?;
    let arn = queue_arn(sqs, &url).await?;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"s3.amazonaws.com"}},"Action":"sqs:SendMessage","Resource":"{arn}","Condition":{{"ArnLike":{{"aws:SourceArn":"arn:aws:s3:::{}"}}}}}}]}}"#,
        names.raw_bucket
    );
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SetQueueAttributes", url.clone(), e))?;
    let local = |e: aws_sdk_s3::error::BuildError| {
        AwsError::local(
            "PutBucketNotificationConfiguration",
            names.raw_bucket.clone(),
            e,
        )
    };
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(sluice_core::raw::RAW_PREFIX)
                        .build(),
                )
                .build(),
        )
        .build();
    let queue = QueueConfiguration::builder()
        .id("sluice-transform")
        .queue_arn(&arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(filter)
        .build()
        .map_err(local)?;
    s3.put_bucket_notification_configuration()
        .bucket(&names.raw_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            AwsError::from_sdk(
                "PutBucketNotificationConfiguration",
                names.raw_bucket.clone(),
                e,
            )
        })?;
    Ok(url)
}

/// Creates the pipeline's alarms, as `template.yaml` defines them: dead letters visible, and
/// the share of quarantined records above 0.1 % for ingest and transform. Putting an alarm
/// again replaces it.
pub async fn ensure_alarms(
    cw: &aws_sdk_cloudwatch::Client,
    names: &Names,
    prefix: &str,
) -> Result<(), AwsError> {
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
    };
    let dlq_alarm = format!("{prefix}-dlq-depth");
    cw.put_metric_alarm()
        .alarm_name(&dlq_alarm)
        .alarm_description("Dead letters are waiting: inspect them with `sluice status`.")
        .namespace("AWS/SQS")
        .metric_name("ApproximateNumberOfMessagesVisible")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(&names.dlq)
                .build(),
        )
        .statistic(Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(0.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutMetricAlarm", dlq_alarm.clone(), e))?;
    for (function, total) in [("ingest", "RecordsIn"), ("transform", "LinesIn")] {
        let name = format!("{prefix}-{function}-quarantine-rate");
        let stat = |id: &str, metric: &str| {
            MetricDataQuery::builder()
                .id(id)
                .return_data(false)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(sluice_aws::metrics::NAMESPACE)
                                .metric_name(metric)
                                .dimensions(
                                    Dimension::builder()
                                        .name("Function")
                                        .value(function)
                                        .build(),
                                )
                                .dimensions(
                                    Dimension::builder()
                                        .name(crate::cloudwatch::PIPELINE_DIMENSION)
                                        .value(prefix)
                                        .build(),
                                )
                                .build(),
                        )
                        .period(300)
                        .stat("Sum")
                        .build(),
                )
                .build()
        };
        cw.put_metric_alarm()
            .alarm_name(&name)
            .alarm_description(format!(
                "More than 0.1 % of {function}'s records were quarantined in 5 minutes."
            ))
            .metrics(stat("q", "RecordsQuarantined"))
            .metrics(stat("n", total))
            .metrics(
                MetricDataQuery::builder()
                    .id("rate")
                    .expression("IF(n > 0, 100 * q / n, 0)")
                    .label("quarantined %")
                    .return_data(true)
                    .build(),
            )
            .evaluation_periods(1)
            .threshold(0.1)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutMetricAlarm", name.clone(), e))?;
    }
    Ok(())
}
