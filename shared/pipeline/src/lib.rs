//! Orchestration of sluice's handlers over the adapters of `sluice-aws`. The Lambda functions
//! and the `sluice` CLI both call into this crate, so a handler behaves the same deployed and
//! invoked locally.

pub mod config;
pub mod contracts;
pub mod dlq;
pub mod failpoint;
pub mod ingest;
pub mod lambda;
mod lines;
pub mod recovery;
#[cfg(feature = "scaler")]
pub mod scaler;
mod sqs;
#[cfg(feature = "streams")]
pub mod stream_events;
pub mod transform;

pub use config::{ConfigError, IngestConfig, TransformConfig};
