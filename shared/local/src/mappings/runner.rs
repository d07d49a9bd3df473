//! The runner: one task per mapping, a shared checkpoint file, and shutdown.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};

use super::state::{Checkpoints, FunctionKind, Mapping, MappingSource};
use sluice_aws::raw_objects::RawObjects;
use sluice_aws::typed_tables::TypedTables;
use sluice_aws::{DeadLetters, RawStore};
use sluice_pipeline::ingest::{self, Ingest};
use sluice_pipeline::transform::{self, Transform};

/// The handlers a runner invokes.
pub trait Functions: Send + Sync + 'static {
    /// Invokes `function` on `event`; returns its response, or the function error.
    fn invoke(
        &self,
        function: FunctionKind,
        event: String,
    ) -> impl Future<Output = Result<serde_json::Value, String>> + Send;
}

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
    ) -> Result<serde_json::Value, String> {
        match function {
            FunctionKind::Ingest => ingest::handle(&event, &self.ingest)
                .await
                .map(|r| r.to_json())
                .map_err(|e| e.to_string()),
            FunctionKind::Transform => Box::pin(transform::handle(&event, &self.transform))
                .await
                .map(|(r, _)| serde_json::to_value(r).unwrap_or_default())
                .map_err(|e| e.to_string()),
        }
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
}

/// How long a failed message or stream batch waits before its next try: `base` after the first
/// failure, four times longer after each further one, up to `cap`, each ±10 % at random so
/// retries of many messages spread out.
///
/// Lambda makes a failed SQS message visible again only after the queue's whole visibility
/// timeout (360 s deployed), so five receives ride out about 24 minutes of outage. Locally the
/// queues' visibility timeout is kept short (a killed runner's messages come back fast), so the
/// runner backs off by itself: with the defaults (2 s, up to 120 s) the five receives of a local
/// queue ride out an outage of over two minutes before its redrive policy moves the message to
/// the dead-letter queue ([`Backoff::rides_out`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The wait after the first failure.
    pub base: Duration,
    /// The longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(120),
        }
    }
}

impl Backoff {
    /// How much longer each wait is than the one before.
    pub const FACTOR: u32 = 4;

    /// The wait after failure number `failures` (1 for the first), jittered.
    pub fn delay(&self, failures: u32) -> Duration {
        self.delay_with(failures, fastrand::f64())
    }

    /// The wait after failure number `failures`, with `unit` in `[0, 1)` choosing the jitter:
    /// 0 is 10 % shorter than the plain wait, 1 is 10 % longer. Never more than `cap`.
    pub fn delay_with(&self, failures: u32, unit: f64) -> Duration {
        let growth = Self::FACTOR.saturating_pow(failures.saturating_sub(1).min(30));
        let plain = self.base.saturating_mul(growth).min(self.cap);
        plain
            .mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0))
            .min(self.cap)
    }

    /// The longest outage that `tries` tries are sure to ride out: the waits between them at
    /// their shortest. A message that its queue's redrive policy moves after `maxReceiveCount`
    /// receives has `maxReceiveCount` tries.
    pub fn rides_out(&self, tries: u32) -> Duration {
        (1..tries).map(|f| self.delay_with(f, 0.0)).sum()
    }
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
    pub sqs: aws_sdk_sqs::Client,
    pub region: String,
    pub checkpoints: Mutex<Checkpoints>,
    pub checkpoints_path: PathBuf,
    pub counters: Counters,
    pub backoff: Backoff,
    pub poll_interval: Duration,
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

/// Runs local event source mappings.
pub struct Runner<F> {
    /// The handlers.
    pub functions: Arc<F>,
    /// The mappings to run.
    pub mappings: Vec<Mapping>,
    /// A DynamoDB Streams client.
    pub streams: aws_sdk_dynamodbstreams::Client,
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
            sqs: self.sqs,
            region: self.region,
            checkpoints: Mutex::new(checkpoints),
            checkpoints_path: self.checkpoints_path,
            counters: Counters::default(),
            backoff: opts.backoff,
            poll_interval: opts.poll_interval,
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
                    MappingSource::Stream { .. } => super::streams::run(ctx, m, stop, idle).await,
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
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_fourfold_up_to_its_cap_with_bounded_jitter() {
        let b = Backoff::default();
        let secs = |f, u| b.delay_with(f, u).as_secs_f64();
        assert!((secs(1, 0.5) - 2.0).abs() < 1e-9);
        assert!((secs(2, 0.5) - 8.0).abs() < 1e-9);
        assert!((secs(3, 0.5) - 32.0).abs() < 1e-9);
        assert!((secs(4, 0.5) - 120.0).abs() < 1e-9, "capped");
        assert!((secs(1, 0.0) - 1.8).abs() < 1e-9 && (secs(1, 1.0) - 2.2).abs() < 1e-9);
        assert!(
            (secs(9, 1.0) - 120.0).abs() < 1e-9,
            "jitter never passes the cap"
        );
        assert_eq!(b.delay_with(u32::MAX, 1.0), b.cap, "no overflow");
        for f in 1..10 {
            let d = b.delay(f);
            assert!(d >= b.delay_with(f, 0.0) && d <= b.delay_with(f, 1.0));
        }
    }

    #[test]
    fn five_receives_ride_out_a_two_minute_outage_with_the_defaults() {
        // A local queue's redrive policy moves a message after five receives: the four waits
        // between them, at their shortest, outlast two minutes of outage.
        let ride = Backoff::default().rides_out(5);
        assert!(ride > Duration::from_secs(120), "{ride:?}");
        assert!(ride < Duration::from_secs(180), "{ride:?}");
        assert_eq!(Backoff::default().rides_out(1), Duration::ZERO);
    }
}
