//! The pure domain of sluice: source formats, decoding, ordering tokens, raw lines and failure
//! envelopes. Nothing here does I/O or knows the AWS SDK, so every function can be tested and
//! fuzzed in isolation.
//!
//! - [`json`] reads untrusted JSON within [`json::Limits`], compacting it losslessly.
//! - [`ddb`] reads DynamoDB Streams records; [`body`] reads SQS message bodies (application
//!   events, Debezium, DMS, bare or wrapped by SNS or EventBridge).
//! - [`kinesis`] reads DynamoDB change records delivered through Kinesis Data Streams.
//! - [`seq`] normalises ordering tokens; [`time`] reads commit times without floating point.
//! - [`decide`] is the per-line decision: what one raw line becomes under the contracts.
//! - [`raw`] writes raw lines and objects; [`envelope`] describes dead letters.
//! - [`dead_letter`] tells apart what reaches the dead-letter queue.
//! - [`notification`] reads transform messages (S3 notifications and inline raw lines).
//! - [`scaling`] is the queue-depth scaling policy.

pub mod body;
pub mod change;
pub mod contract;
pub mod contract_set;
pub mod ddb;
pub mod dead_letter;
pub mod decide;
pub mod decimal;
pub mod envelope;
pub mod error;
pub mod field_type;
pub mod json;
pub mod kinesis;
pub mod logical;
pub mod notification;
pub mod raw;
pub mod row;
pub mod scaling;
pub mod seq;
pub mod time;
pub mod typing;
pub mod value;

pub use change::{Change, Format, Image, Op, Route};
pub use error::{DecodeError, ErrorClass};
pub use seq::Seq;
