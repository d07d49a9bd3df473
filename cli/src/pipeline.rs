//! The local pipeline: its resources by name, its handlers' configuration, and a run of its
//! event source mappings with metrics published to CloudWatch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_aws::metrics::{Collector, MetricSet, Sink};
use sluice_local::cloudwatch::put_metric_data;
use sluice_local::mappings::{
    checkpoints_path, mappings_path, Backoff, LocalFunctions, Mappings, RunOptions, RunReport,
    Runner, ScalingOptions,
};
use sluice_local::provision::{queue_url, Names};
use sluice_pipeline::ingest::Ingest;
use sluice_pipeline::transform::Transform;
use sluice_pipeline::{IngestConfig, TransformConfig};
use tokio::sync::watch;

/// A local pipeline's resources.
#[derive(Debug, Clone)]
pub struct LocalPipeline {
    /// Names derived from the prefix.
    pub names: Names,
    /// The prefix.
    pub prefix: String,
    /// The DLQ's URL.
    pub dlq_url: String,
    /// The ingest queue's URL.
    pub ingest_url: String,
    /// The transform queue's URL.
    pub transform_url: String,
    /// The FIFO ingest queue's URL, when `sluice local up --fifo` made one.
    pub ingest_fifo_url: Option<String>,
    /// Its dead-letter queue's URL (where its redrive policy moves messages).
    pub dlq_fifo_url: Option<String>,
    /// The contracts directory, if any.
    pub contracts: Option<PathBuf>,
    /// Where mappings and checkpoints are kept.
    pub state_dir: PathBuf,
}

impl LocalPipeline {
    /// Looks up the resources `sluice local up` created for `prefix`.
    pub async fn resolve(
        sqs: &aws_sdk_sqs::Client,
        prefix: &str,
        contracts: Option<PathBuf>,
        state_dir: &Path,
    ) -> anyhow::Result<Self> {
        let names = Names::new(prefix);
        // Only a queue that is really missing means the pipeline was never set up; any other
        // failure (an endpoint that cannot be reached, access denied) is told as it is.
        let url = |name: String| async move {
            queue_url(sqs, &name).await.map_err(|e| {
                if e.is_not_found() {
                    anyhow::Error::new(e).context(format!(
                        "the local pipeline {prefix:?} does not exist on this endpoint (no queue \
                         {name}); create it with `sluice local up --prefix {prefix}`"
                    ))
                } else {
                    anyhow::Error::new(e)
                }
            })
        };
        // The FIFO path is optional: a missing queue means it was not asked for.
        let optional = |name: String| async move {
            match queue_url(sqs, &name).await {
                Ok(u) => Ok(Some(u)),
                Err(e) if e.is_not_found() => Ok(None),
                Err(e) => Err(anyhow::Error::new(e)),
            }
        };
        Ok(Self {
            dlq_url: url(names.dlq.clone()).await?,
            ingest_url: url(names.ingest_queue.clone()).await?,
            transform_url: url(names.transform_queue.clone()).await?,
            ingest_fifo_url: optional(names.ingest_fifo_queue.clone()).await?,
            dlq_fifo_url: optional(names.dlq_fifo.clone()).await?,
            prefix: prefix.to_owned(),
            names,
            contracts,
            state_dir: state_dir.to_owned(),
        })
    }

    /// The mappings file.
    pub fn mappings_path(&self) -> PathBuf {
        mappings_path(&self.state_dir, &self.prefix)
    }

    /// The checkpoints file.
    pub fn checkpoints_path(&self) -> PathBuf {
        checkpoints_path(&self.state_dir, &self.prefix)
    }

    /// The variables the functions would get, as `local env` prints them.
    pub fn variables(&self) -> BTreeMap<&'static str, String> {
        let mut v = BTreeMap::from([
            ("SLUICE_RAW_BUCKET", self.names.raw_bucket.clone()),
            ("SLUICE_DLQ_URL", self.dlq_url.clone()),
            ("SLUICE_INGEST_QUEUE_URL", self.ingest_url.clone()),
            ("SLUICE_TRANSFORM_QUEUE_URL", self.transform_url.clone()),
            (
                "SLUICE_TYPED_TABLE_PREFIX",
                self.names.typed_table_prefix.clone(),
            ),
        ]);
        if let Some(c) = &self.contracts {
            v.insert("SLUICE_CONTRACTS", c.display().to_string());
        }
        if let Some(u) = &self.ingest_fifo_url {
            v.insert("SLUICE_INGEST_FIFO_QUEUE_URL", u.clone());
        }
        if let Some(u) = &self.dlq_fifo_url {
            v.insert("SLUICE_DLQ_FIFO_URL", u.clone());
        }
        v
    }

    /// Every dead-letter queue: the DLQ, and the FIFO path's when there is one.
    pub fn dlq_urls(&self) -> Vec<String> {
        std::iter::once(self.dlq_url.clone())
            .chain(self.dlq_fifo_url.clone())
            .collect()
    }

    /// The queues a run drains, by name: ingest (and its FIFO twin) and transform.
    pub fn work_queues(&self) -> Vec<(String, String)> {
        let mut q = vec![("ingest".to_owned(), self.ingest_url.clone())];
        if let Some(u) = &self.ingest_fifo_url {
            q.push(("ingest-fifo".to_owned(), u.clone()));
        }
        q.push(("transform".to_owned(), self.transform_url.clone()));
        q
    }

    /// Looks a variable up: the pipeline's own resources first, then the environment, for tuning.
    fn lookup(&self, name: &str) -> Option<String> {
        self.variables()
            .get(name)
            .cloned()
            .or_else(|| std::env::var(name).ok())
    }

    /// The ingest handler's configuration.
    pub fn ingest_config(&self) -> anyhow::Result<IngestConfig> {
        Ok(IngestConfig::from_lookup(|n| self.lookup(n))?)
    }

    /// The transform handler's configuration.
    pub fn transform_config(&self) -> anyhow::Result<TransformConfig> {
        TransformConfig::from_lookup(|n| self.lookup(n))
            .context("no contracts: pass --contracts DIR (or keep them in infra/contracts)")
    }
}

/// Sums of metrics over a run, for summaries.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    /// (function, table, metric) → sum of values.
    pub sums: BTreeMap<(String, String, &'static str), f64>,
    /// End-to-end latencies of written rows, ms.
    pub latencies: Vec<f64>,
}

impl Totals {
    fn add(&mut self, set: &MetricSet) {
        let dims = set.dimensions();
        let function = dims
            .iter()
            .find(|(k, _)| *k == "Function")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let table = dims
            .iter()
            .find(|(k, _)| *k == "Table")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        for (name, _, values) in set.values() {
            if name == "EndToEndLatency" {
                self.latencies.extend_from_slice(values);
            }
            *self
                .sums
                .entry((function.clone(), table.clone(), name))
                .or_default() += values.iter().fold(0.0, |a, b| a + b);
        }
    }

    /// The sum of a metric over every table of a function.
    pub fn sum(&self, function: &str, metric: &str) -> f64 {
        self.sums
            .iter()
            .filter(|((f, _, m), _)| f == function && *m == metric)
            .map(|(_, v)| v)
            // From +0.0: an empty float `sum()` is -0.0, which prints as "-0".
            .fold(0.0, |a, b| a + b)
    }
}

/// Runs the local mappings of `p` until shut down or drained, publishing metrics to CloudWatch
/// every few seconds. Returns the run's report and the metric totals.
pub async fn run(
    sdk: &SdkConfig,
    p: &LocalPipeline,
    until_idle: bool,
    shutdown: watch::Receiver<bool>,
    backoff: Backoff,
    progress: Option<Progress>,
    scaling: Option<ScalingOptions>,
) -> anyhow::Result<(RunReport, Totals)> {
    let mappings = Mappings::load(&p.mappings_path())
        .with_context(|| format!("could not read {}", p.mappings_path().display()))?;
    if mappings.mappings.is_empty() {
        anyhow::bail!(
            "no local mappings for {:?}; run `sluice local up` first",
            p.prefix
        );
    }
    let collector = Collector::default();
    let sink = Sink::Collect(collector.clone());
    let s3 = s3_client(sdk);
    let sqs = sqs_client(sdk);
    let functions = LocalFunctions {
        ingest: Ingest::on_aws(
            p.ingest_config()?,
            s3.clone(),
            s3.clone(),
            sqs.clone(),
            sink.clone(),
        ),
        transform: Transform::from_sdk(p.transform_config()?, sdk, sink),
    };
    let runner = Runner {
        functions: Arc::new(functions),
        mappings: mappings.mappings.into_values().collect(),
        streams: aws_sdk_dynamodbstreams::Client::new(sdk),
        kinesis: aws_sdk_kinesis::Client::new(sdk),
        sqs,
        region: sdk
            .region()
            .map_or_else(|| "us-east-1".to_owned(), ToString::to_string),
        checkpoints_path: p.checkpoints_path(),
    };
    let totals = Arc::new(Mutex::new(Totals::default()));
    let cw = aws_sdk_cloudwatch::Client::new(sdk);
    // Stopped, not aborted, when the run ends: an abort in the middle of a PutMetricData would
    // lose the metrics it had drained.
    let (stop_publishing, mut publishing) = watch::channel(false);
    // Often enough for the progress lines, which read what was published.
    let every = progress.map_or(Duration::from_secs(5), |p| {
        p.interval.min(Duration::from_secs(5))
    });
    let publisher = {
        let (collector, totals, cw) = (collector.clone(), totals.clone(), cw.clone());
        let prefix = p.prefix.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = publishing.changed() => break,
                    () = tokio::time::sleep(every) => {}
                }
                publish(&cw, &collector, &totals, &prefix).await;
            }
        })
    };
    let reporter = progress.map(|every| {
        let (totals, sqs, p) = (totals.clone(), sqs_client(sdk), p.clone());
        let mut stop = stop_publishing.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    () = tokio::time::sleep(every.interval) => {}
                }
                let line = ProgressLine::read(&sqs, &p, &totals).await;
                line.print(every.json);
            }
        })
    });
    let report = runner
        .run(RunOptions {
            until_idle,
            shutdown,
            backoff,
            poll_interval: Duration::from_millis(250),
            scaling,
        })
        .await;
    let _ = stop_publishing.send(true);
    let _ = publisher.await;
    if let Some(r) = reporter {
        let _ = r.await;
    }
    publish(&cw, &collector, &totals, &p.prefix).await;
    let report = report?;
    let totals = totals.lock().map(|t| t.clone()).unwrap_or_default();
    Ok((report, totals))
}

/// How often `local run` says where it is, and how.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Between two lines.
    pub interval: Duration,
    /// A JSON line on stdout rather than a line for people on stderr.
    pub json: bool,
}

/// One progress line of `local run`: work done so far, and what is waiting.
#[derive(Debug, serde::Serialize)]
pub struct ProgressLine {
    /// Records ingest took.
    pub records_in: f64,
    /// Records landed in raw staging.
    pub landed: f64,
    /// Row writes applied.
    pub rows_written: f64,
    /// Row writes skipped as stale.
    pub rows_stale: f64,
    /// Dead letters sent (ingest and transform).
    pub quarantined: f64,
    /// Messages on the ingest queues (visible, in flight, delayed).
    pub ingest_backlog: Option<u64>,
    /// Messages on the transform queue.
    pub transform_backlog: Option<u64>,
    /// Messages on the dead-letter queues.
    pub dlq_depth: Option<u64>,
}

impl ProgressLine {
    async fn read(sqs: &aws_sdk_sqs::Client, p: &LocalPipeline, totals: &Mutex<Totals>) -> Self {
        // The sum over `urls`; unknown when one cannot be read.
        let depth = |urls: Vec<String>| async move {
            let mut total = 0;
            for url in urls {
                total += sluice_aws::listing::queue_depth(sqs, &url).await.ok()?;
            }
            Some(total)
        };
        let t = totals.lock().map(|t| t.clone()).unwrap_or_default();
        Self {
            records_in: t.sum("ingest", "RecordsIn"),
            landed: t.sum("ingest", "RecordsLanded"),
            rows_written: t.sum("transform", "RowsWritten"),
            rows_stale: t.sum("transform", "RowsStale"),
            quarantined: t.sum("ingest", "RecordsQuarantined")
                + t.sum("transform", "RecordsQuarantined"),
            ingest_backlog: depth(
                std::iter::once(p.ingest_url.clone())
                    .chain(p.ingest_fifo_url.clone())
                    .collect(),
            )
            .await,
            transform_backlog: depth(vec![p.transform_url.clone()]).await,
            dlq_depth: depth(p.dlq_urls()).await,
        }
    }

    fn print(&self, json: bool) {
        if json {
            if let Ok(line) = serde_json::to_string(self) {
                outln!("{line}");
            }
            return;
        }
        let n = |v: Option<u64>| v.map_or_else(|| "?".to_owned(), |n| n.to_string());
        eprintln!(
            "local run: {} records in, {} landed, {} rows written, {} stale, {} quarantined; backlog ingest {}, transform {}; DLQ {}",
            self.records_in,
            self.landed,
            self.rows_written,
            self.rows_stale,
            self.quarantined,
            n(self.ingest_backlog),
            n(self.transform_backlog),
            n(self.dlq_depth)
        );
    }
}

async fn publish(
    cw: &aws_sdk_cloudwatch::Client,
    collector: &Collector,
    totals: &Mutex<Totals>,
    pipeline: &str,
) {
    let sets = collector.drain();
    if sets.is_empty() {
        return;
    }
    if let Ok(mut t) = totals.lock() {
        for (_, set) in &sets {
            t.add(set);
        }
    }
    if let Err(e) = put_metric_data(cw, &sets, pipeline).await {
        tracing::warn!(error = %e, "Could not publish metrics to CloudWatch.");
    }
}

/// A shutdown signal that turns `true` on the first Ctrl-C (or SIGTERM); a second one exits at
/// once, acknowledging nothing more.
pub fn shutdown_on_signals() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut first = true;
        loop {
            wait_for_signal().await;
            if first {
                eprintln!("Stopping: in-flight batches finish and nothing new starts (Ctrl-C again to quit at once).");
                let _ = tx.send(true);
                first = false;
            } else {
                std::process::exit(130);
            }
        }
    });
    rx
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_metric_with_no_values_sums_to_zero_not_minus_zero() {
        assert_eq!(
            Totals::default().sum("ingest", "RecordsIn").to_string(),
            "0"
        );
    }
}
