//! The S3 raw store: gzip NDJSON objects under `raw/`.

use aws_sdk_s3::primitives::ByteStream;

use crate::error::AwsError;
use crate::ports::RawStore;

/// Writes raw objects to one S3 bucket.
#[derive(Debug, Clone)]
pub struct S3RawStore {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3RawStore {
    /// A store over `bucket`.
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl RawStore for S3RawStore {
    fn bucket(&self) -> &str {
        &self.bucket
    }

    async fn put_raw(&self, key: &str, body: Vec<u8>, lines: usize) -> Result<(), AwsError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/gzip")
            .metadata("sluice-lines", lines.to_string())
            .body(ByteStream::from(body))
            .send()
            .await
            .map_err(|e| {
                AwsError::from_sdk("PutObject", format!("s3://{}/{key}", self.bucket), e)
            })?;
        Ok(())
    }
}
