//! The narrow ports the pipeline uses for I/O. Each has one AWS adapter in this crate; unit
//! tests of orchestration may implement them with doubles.

use std::future::Future;

use sluice_core::envelope::FailureEnvelope;

use crate::error::AwsError;

/// Where raw objects are written.
pub trait RawStore: Send + Sync {
    /// The bucket, for `s3://` references.
    fn bucket(&self) -> &str;

    /// Writes one raw object. Returns only once the object is durable.
    fn put_raw(
        &self,
        key: &str,
        body: Vec<u8>,
        lines: usize,
    ) -> impl Future<Output = Result<(), AwsError>> + Send;
}

/// Where dead letters are sent.
pub trait DeadLetters: Send + Sync {
    /// Sends one failure envelope, claim-checking the original in S3 when the message would be
    /// too large for the queue. Returns only once the dead letter is durable.
    fn send(&self, envelope: FailureEnvelope) -> impl Future<Output = Result<(), AwsError>> + Send;
}
