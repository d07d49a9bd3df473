//! The runner: one task per mapping, a shared checkpoint file, and shutdown.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use super::backoff::Backoff;
use super::ctx::{Counters, Ctx, Functions, InvokeError};
use super::state::{Checkpoints, FunctionKind, Mapping, MappingSource};
use sluice_aws::{DeadLetters, RawObjects, RawStore, TypedTables};
use sluice_pipeline::ingest::{self, Ingest};
use sluice_pipeline::transform::{self, Transform};

/// The ingest and transform handlers, in-process.
pub struct LocalFunctions<R, D, O, T, D2> {
    /// The ingest handler's dependencies.
    pub ingest: Ingest<R, D>,
    /// The transform handler's dependencies.
    pub transform: Transform<O, T, D2>,
}

impl<R, D, O, T, D2> Functions for LocalFunctions<R, D, O, T, D2>
where
    R: RawStore + 'static,
    D: DeadLetters + 'static,
    O: RawObjects + 'static,
    T: TypedTables + 'static,
    D2: DeadLetters + 'static,
{
    async fn invoke(
        &self,
        function: FunctionKind,
        event: String,
    ) -> Result<serde_json::Value, InvokeError> {
        let response = match function {
            FunctionKind::Ingest => ingest::handle(&event, &self.ingest).await?.to_json(),
            FunctionKind::Transform => {
                let (response, _) = Box::pin(transform::handle(&event, &self.transform)).await?;
                serde_json::to_value(response)
            }
        };
        response.map_err(|source| InvokeError::Response { function, source })
    }
}

/// How a run ends.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Stop once every stream and queue is drained and nothing is in flight.
    pub until_idle: bool,
    /// Becomes `true` when the run should stop (Ctrl-C).
    pub shutdown: watch::Receiver<bool>,
    /// How long a failed message or stream batch waits before it is tried again.
    pub backoff: Backoff,
    /// How long an idle stream or queue waits before polling again.
    pub poll_interval: Duration,
    /// The scaling policy each queue mapping's concurrency follows (between the policy's `min`
    /// and `max`), or `None` for each mapping's fixed `max_concurrency`.
    pub scaling: Option<ScalingOptions>,
}

/// How queue mappings scale in a local run.
#[derive(Debug, Clone)]
pub struct ScalingOptions {
    /// The policy's settings.
    pub config: sluice_core::scaling::ScalingConfig,
    /// How often each queue mapping's scaler observes and decides.
    pub interval: Duration,
}

/// What one queue mapping's scaler did in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MappingScaling {
    /// The concurrency at the end.
    pub setting: u32,
    /// The highest it was set to.
    pub highest: u32,
    /// How often it changed.
    pub changes: u32,
    /// The reason of the last change.
    pub last_reason: Option<String>,
    /// When it last changed (RFC 3339).
    pub last_change_at: Option<String>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Handler invocations.
    pub invocations: u64,
    /// Records and messages handed to handlers.
    pub records: u64,
    /// Invocations that failed whole or reported failures.
    pub failed_invocations: u64,
    /// Stream batches given up and sent to the on-failure destination.
    pub on_failure_records: u64,
    /// Whether the run stopped because everything was drained.
    pub drained: bool,
    /// What each queue mapping's scaler did, by mapping name (empty without scaling).
    pub scaling: std::collections::BTreeMap<String, MappingScaling>,
}

/// Runs local event source mappings.
pub struct Runner<F> {
    /// The handlers.
    pub functions: Arc<F>,
    /// The mappings to run.
    pub mappings: Vec<Mapping>,
    /// A DynamoDB Streams client.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// A Kinesis client, for Kinesis stream mappings.
    pub kinesis: aws_sdk_kinesis::Client,
    /// An SQS client.
    pub sqs: aws_sdk_sqs::Client,
    /// The region, for the events' `awsRegion`.
    pub region: String,
    /// Where checkpoints are kept.
    pub checkpoints_path: PathBuf,
}

/// A run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The checkpoint file is unreadable.
    #[error("could not read the checkpoints at {path}: {source}")]
    Checkpoints {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl<F: Functions> Runner<F> {
    /// Runs until shut down, or until drained with `until_idle`.
    pub async fn run(self, opts: RunOptions) -> Result<RunReport, RunError> {
        let checkpoints =
            Checkpoints::load(&self.checkpoints_path).map_err(|source| RunError::Checkpoints {
                path: self.checkpoints_path.display().to_string(),
                source,
            })?;
        let ctx = Arc::new(Ctx {
            functions: self.functions,
            streams: self.streams,
            kinesis: self.kinesis,
            sqs: self.sqs,
            region: self.region,
            checkpoints: Mutex::new(checkpoints),
            checkpoints_path: self.checkpoints_path,
            counters: Counters::default(),
            backoff: opts.backoff,
            poll_interval: opts.poll_interval,
            scaling: opts.scaling,
            scaling_report: std::sync::Mutex::new(std::collections::BTreeMap::new()),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut idles = Vec::new();
        let mut tasks = Vec::new();
        for m in self.mappings {
            let idle = Arc::new(AtomicBool::new(false));
            idles.push(idle.clone());
            let (ctx, stop) = (ctx.clone(), stop_rx.clone());
            tracing::info!(mapping = %m.name, "Starting mapping.");
            tasks.push(tokio::spawn(async move {
                match &m.source {
                    MappingSource::Stream { .. } | MappingSource::Kinesis { .. } => {
                        super::streams::run(ctx, m, stop, idle).await
                    }
                    MappingSource::Queue { .. } => super::queues::run(ctx, m, stop, idle).await,
                }
            }));
        }
        let mut shutdown = opts.shutdown;
        let mut idle_checks = 0;
        let mut drained = false;
        loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    if *shutdown.borrow() {
                        tracing::info!("Shutting down: in-flight batches finish, nothing new starts.");
                        break;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(300)) => {}
            }
            if opts.until_idle {
                if idles.iter().all(|i| i.load(Ordering::SeqCst)) {
                    idle_checks += 1;
                } else {
                    idle_checks = 0;
                }
                // Several consecutive idle checks: what one handler writes (an S3 notification)
                // has reached the next queue by then.
                if idle_checks >= 4 {
                    drained = true;
                    tracing::info!("Every stream and queue is drained.");
                    break;
                }
            }
        }
        let _ = stop_tx.send(true);
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!(error = %e, "A mapping task ended abnormally.");
            }
        }
        let c = &ctx.counters;
        Ok(RunReport {
            invocations: c.invocations.load(Ordering::SeqCst),
            records: c.records.load(Ordering::SeqCst),
            failed_invocations: c.failed_invocations.load(Ordering::SeqCst),
            on_failure_records: c.on_failure_records.load(Ordering::SeqCst),
            drained,
            scaling: ctx
                .scaling_report
                .lock()
                .map(|r| r.clone())
                .unwrap_or_default(),
        })
    }
}
