//! The narrow ports the pipeline uses for I/O, all in one place. Each has one AWS adapter in
//! this crate ([`crate::raw_store`], [`crate::raw_objects`], [`crate::typed_tables`],
//! [`crate::dead_letters`]) and one in-memory adapter for tests ([`crate::memory`], behind the
//! `test-util` feature). A reference to a port is a port too, so one in-memory store can serve
//! several.

use std::future::Future;
use std::pin::Pin;

use sluice_core::envelope::FailureEnvelope;
use sluice_core::row::{TypedRow, WriteOutcome};
use tokio::io::AsyncBufRead;

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

/// Where typed rows are written, each under the ordering guard
/// ([`sluice_core::row::Guard`]).
pub trait TypedTables: Send + Sync {
    /// Writes a row if it supersedes what is stored.
    fn put_row(
        &self,
        row: &TypedRow,
    ) -> impl Future<Output = Result<WriteOutcome, AwsError>> + Send;
}

/// Where dead letters are sent.
pub trait DeadLetters: Send + Sync {
    /// Sends one failure envelope, claim-checking the original in S3 when the message would be
    /// too large for the queue. Returns only once the dead letter is durable.
    fn send(&self, envelope: FailureEnvelope) -> impl Future<Output = Result<(), AwsError>> + Send;
}

impl<T: RawStore + ?Sized> RawStore for &T {
    fn bucket(&self) -> &str {
        (**self).bucket()
    }

    fn put_raw(
        &self,
        key: &str,
        body: Vec<u8>,
        lines: usize,
    ) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).put_raw(key, body, lines)
    }
}

impl<T: RawObjects + ?Sized> RawObjects for &T {
    fn open(
        &self,
        bucket: &str,
        key: &str,
    ) -> impl Future<Output = Result<ObjectReader, AwsError>> + Send {
        (**self).open(bucket, key)
    }
}

impl<T: TypedTables + ?Sized> TypedTables for &T {
    fn put_row(
        &self,
        row: &TypedRow,
    ) -> impl Future<Output = Result<WriteOutcome, AwsError>> + Send {
        (**self).put_row(row)
    }
}

impl<T: DeadLetters + ?Sized> DeadLetters for &T {
    fn send(&self, envelope: FailureEnvelope) -> impl Future<Output = Result<(), AwsError>> + Send {
        (**self).send(envelope)
    }
}
