//! AWS adapters of sluice: client construction, the S3 raw store, the SQS dead-letter queue
//! with S3 claim-checks, and EMF metrics. Each adapter implements a narrow port from [`ports`],
//! and every error says whether a retry can help ([`AwsError::is_retriable`]).

pub mod clients;
pub mod dead_letters;
pub mod error;
pub mod listing;
#[cfg(feature = "test-util")]
pub mod memory;
pub mod metrics;
pub mod ports;
pub mod raw_objects;
pub mod raw_store;
pub mod typed_tables;

pub use error::AwsError;
pub use ports::{DeadLetters, ObjectReader, RawObjects, RawStore, TypedTables};
