//! Reading raw objects back from S3, streamed: nothing holds a whole object in memory.

use std::future::Future;
use std::pin::Pin;

use async_compression::tokio::bufread::GzipDecoder;
use tokio::io::{AsyncBufRead, BufReader};

use crate::error::AwsError;

/// A readable, decompressed stream of an object's bytes.
pub type ObjectReader = Pin<Box<dyn AsyncBufRead + Send>>;

/// Where raw objects are read from.
pub trait RawObjects: Send + Sync {
    /// Opens an object for streaming. `.gz` objects are decompressed on the fly.
    fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<ObjectReader, AwsError>> + Send;
}

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
