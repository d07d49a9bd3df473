//! What every mapping task shares: the handlers to invoke, the clients, the checkpoints, the
//! counters and the backoff; and how a task sleeps without missing a stop.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use super::backoff::Backoff;
use super::state::{Checkpoints, FunctionKind};

/// The handlers a runner invokes.
pub trait Functions: Send + Sync + 'static {
    /// Invokes `function` on `event`; returns its response, or the function error (the whole
    /// batch is then retried, as Lambda retries a function error).
    fn invoke(
        &self,
        function: FunctionKind,
        event: String,
    ) -> impl Future<Output = Result<serde_json::Value, InvokeError>> + Send;
}

/// An invocation that failed whole: what Lambda reports as a function error.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The ingest handler refused the event.
    #[error(transparent)]
    Ingest(#[from] sluice_pipeline::ingest::IngestError),
    /// The transform handler refused the event.
    #[error(transparent)]
    Transform(#[from] sluice_pipeline::transform::TransformError),
    /// The handler's response could not be written as JSON. Nothing is acknowledged.
    #[error("the {function:?} handler's response could not be written as JSON: {source}")]
    Response {
        /// The handler.
        function: FunctionKind,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// Any other handler's failure (test doubles, other functions).
    #[error(transparent)]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

impl InvokeError {
    /// Whether invoking again may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Ingest(e) => e.is_retriable(),
            Self::Transform(e) => e.is_retriable(),
            Self::Response { .. } => false,
            Self::Other(_) => true,
        }
    }
}

/// Counters shared by the mapping tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub invocations: AtomicU64,
    pub records: AtomicU64,
    pub failed_invocations: AtomicU64,
    pub on_failure_records: AtomicU64,
}

/// What every mapping task shares.
pub(crate) struct Ctx<F> {
    pub functions: Arc<F>,
    pub streams: aws_sdk_dynamodbstreams::Client,
    pub kinesis: aws_sdk_kinesis::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub region: String,
    pub checkpoints: Mutex<Checkpoints>,
    pub checkpoints_path: PathBuf,
    pub counters: Counters,
    pub backoff: Backoff,
    pub poll_interval: Duration,
    /// The scaling policy queue mappings follow, when on.
    pub scaling: Option<super::runner::ScalingOptions>,
    /// What each queue mapping's scaler did, by mapping name.
    pub scaling_report:
        std::sync::Mutex<std::collections::BTreeMap<String, super::runner::MappingScaling>>,
}

impl<F> Ctx<F> {
    /// Records a shard's progress and saves every checkpoint.
    pub async fn checkpoint(&self, key: &str, sequence_number: Option<String>, finished: bool) {
        let mut c = self.checkpoints.lock().await;
        let entry = c.shards.entry(key.to_owned()).or_default();
        if sequence_number.is_some() {
            entry.sequence_number = sequence_number;
        }
        entry.finished |= finished;
        if let Err(e) = c.save(&self.checkpoints_path) {
            tracing::error!(error = %e, path = %self.checkpoints_path.display(), "Could not save checkpoints; records may be read again after a restart.");
        }
    }
}

/// Sleeps for `d`, or less if a stop is requested. Returns whether a stop was requested.
pub(crate) async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    if *stop.borrow() {
        return true;
    }
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(d) => *stop.borrow(),
    }
}
