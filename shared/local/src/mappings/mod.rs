//! Local event source mappings: what `sluice local run` does where no Lambda service runs.
//!
//! The emulator stores event source mappings but does not run them, so the runner polls the
//! DynamoDB streams and SQS queues itself and calls the same handler code in-process, with the
//! semantics of Lambda's event source mappings (ESMs):
//!
//! - **Streams:** every shard, parents before children, closed shards to their end; iterators
//!   renewed when they expire; TRIM_HORIZON or LATEST; a checkpoint per shard; on failure, retry
//!   with backoff, bisect the batch on a function error, and respect the maximum retry attempts
//!   and record age; once exhausted, an on-failure record (`DDBStreamBatchInfo`) goes to the DLQ.
//! - **Queues:** batch size and batching window; the visibility timeout is extended while a batch
//!   runs; on a partial failure only the successes are deleted; the queue's redrive policy moves a
//!   message to the DLQ after `maxReceiveCount`. Unlike Lambda, a failed message is made visible
//!   again after an exponential backoff ([`Backoff`]) instead of the whole visibility timeout, so
//!   local retries are quick after a blip and still ride out an outage of minutes.
//! - **Concurrency:** at most `max_concurrency` batches of a mapping run at once; with
//!   [`ScalingOptions`], a queue mapping's concurrency follows the scaling policy
//!   ([`sluice_core::scaling`]) instead, observed every interval, and an `until_idle` run ends only
//!   once each has come back to the policy's baseline.
//! - **Shutdown:** on Ctrl-C, no new batch starts, in-flight batches finish, checkpoints are saved,
//!   and nothing unfinished is acknowledged. `until_idle` stops once every source is drained.

mod backoff;
mod ctx;
mod queues;
mod runner;
mod state;
mod streams;

pub use backoff::Backoff;
pub use ctx::{Functions, InvokeError};
pub use runner::{LocalFunctions, MappingScaling, RunOptions, RunReport, Runner, ScalingOptions};
pub use state::{
    checkpoints_path, mappings_path, scaling_path, Checkpoints, FunctionKind, Mapping,
    MappingSource, Mappings, StartingPosition,
};
