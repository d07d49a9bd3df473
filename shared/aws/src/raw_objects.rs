//! Reading raw objects back from S3, streamed: nothing holds a whole object in memory.

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::BufReader;

use crate::error::AwsError;

pub use crate::ports::{ObjectReader, RawObjects};

/// Raw objects in S3.
#[derive(Debug, Clone)]
pub struct S3RawObjects {
    client: aws_sdk_s3::Client,
}

impl S3RawObjects {
    /// Reads through `client`.
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

impl RawObjects for S3RawObjects {
    async fn open(&self, bucket: &str, key: &str) -> Result<ObjectReader, AwsError> {
        let out = self
            .client
            .get_object()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("GetObject", format!("s3://{bucket}/{key}"), e))?;
        let body = BufReader::new(out.body.into_async_read());
        Ok(if key.ends_with(".gz") {
            Box::pin(BufReader::new(GzipDecoder::new(body)))
        } else {
            Box::pin(body)
        })
    }
}
