//! Small helpers over paginated or batched calls, used by several adapters and commands.

use aws_sdk_sqs::types::ChangeMessageVisibilityBatchRequestEntry;

use crate::error::AwsError;

/// Every key in `bucket` under `prefix`, sorted, following continuation tokens.
pub async fn list_keys(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> Result<Vec<String>, AwsError> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let out = s3
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("ListObjectsV2", format!("s3://{bucket}/{prefix}"), e)
            })?;
        keys.extend(
            out.contents()
                .iter()
                .filter_map(|o| o.key().map(str::to_owned)),
        );
        match out.next_continuation_token() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    keys.sort();
    Ok(keys)
}

/// Sets the visibility timeout of received messages, ten at a time.
pub async fn set_visibility(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    receipt_handles: &[String],
    seconds: i32,
) -> Result<(), AwsError> {
    for chunk in receipt_handles.chunks(10) {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(seconds)
                    .build()
                    .ok()
            })
            .collect();
        sqs.change_message_visibility_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("ChangeMessageVisibilityBatch", queue_url, e))?;
    }
    Ok(())
}

/// Messages on a queue: visible, in flight and delayed (each approximate, as SQS counts them).
pub async fn queue_depth(sqs: &aws_sdk_sqs::Client, queue_url: &str) -> Result<u64, AwsError> {
    use aws_sdk_sqs::types::QueueAttributeName as Q;
    let out = sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(Q::ApproximateNumberOfMessages)
        .attribute_names(Q::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(Q::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", queue_url, e))?;
    Ok(out
        .attributes()
        .map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum())
        .unwrap_or(0))
}

/// A whole object read into memory (contracts, kept failures, audit reads: small objects off the
/// hot path), with when it was last modified (epoch ms).
pub async fn get_bytes(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Result<(Vec<u8>, Option<i64>), AwsError> {
    let target = format!("s3://{bucket}/{key}");
    let out = s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetObject", target.clone(), e))?;
    let modified = out.last_modified().and_then(|t| t.to_millis().ok());
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| AwsError::local("GetObject", target, e))?
        .to_vec();
    Ok((bytes, modified))
}
