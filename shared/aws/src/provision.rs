//! Creating sluice's resources on an endpoint, idempotently: running it twice is harmless.
//!
//! Used by `sluice local up` and by the end-to-end tests. Deployed stacks get the same
//! resources from `template.yaml`.

use std::collections::HashMap;

use aws_sdk_sqs::types::QueueAttributeName;

use crate::error::AwsError;

/// How often the ingest queue delivers a message before its redrive policy moves it to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

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

/// Names derived from a prefix: `<prefix>-raw`, `<prefix>-dlq`, `<prefix>-ingest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The raw bucket.
    pub raw_bucket: String,
    /// The DLQ.
    pub dlq: String,
    /// The ingest queue.
    pub ingest_queue: String,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            raw_bucket: format!("{prefix}-raw"),
            dlq: format!("{prefix}-dlq"),
            ingest_queue: format!("{prefix}-ingest"),
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
        (QueueAttributeName::VisibilityTimeout, "60".to_owned()),
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
