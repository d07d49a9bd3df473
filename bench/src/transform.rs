//! The transform handler (`sluice_pipeline::transform::handle`) on one raw object, through the
//! in-memory ports: the object is held in memory as raw staging would hold it, the typed rows
//! go to an in-memory table store that applies the same conditional-write model as DynamoDB,
//! and dead letters to an in-memory queue.
//!
//! Only the handler call is timed: it reads the notification, inflates the object, decides every
//! line, coalesces per key and writes the winners. The contracts are loaded before the first
//! timed call, as a warm function has them cached; every run starts from empty tables. The peak
//! RSS reported is the process's after the first run: what one invocation needs, the object held
//! in memory included.
//!
//! With [`Tables::Discard`], each winning row's DynamoDB item is built as the DynamoDB adapter
//! builds it and then dropped: nothing accumulates outside the handler, as DynamoDB holds a
//! table on its side and not in the function. That is how the growth of the per-line cost with
//! the object's size is measured; the result check needs [`Tables::Memory`].

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sluice_aws::memory::Memory;
use sluice_aws::metrics::Sink;
use sluice_aws::ports::TypedTables;
use sluice_aws::AwsError;
use sluice_core::row::{TypedRow, WriteOutcome};
use sluice_pipeline::contracts::{ContractCache, ContractSource};
use sluice_pipeline::transform::{handle, Transform, TransformStats};
use sluice_pipeline::TransformConfig;

use crate::check::Check;
use crate::measure::{current_thread_runtime, median, peak_rss_kib};

/// The bucket the notification names.
pub const BUCKET: &str = "bench-raw";
/// Where the object is held, as ingest would have landed it.
pub const KEY: &str = "raw/orders/dt=2026-11-24/hr=00/bench.ndjson.gz";

/// Where the bench's typed rows go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Tables {
    /// An in-memory store that applies DynamoDB's conditional writes and keeps every item, so
    /// the result can be checked against the peers'.
    Memory,
    /// Each item is built as the DynamoDB adapter builds it, then dropped; every write counts as
    /// written. Nothing grows with the table.
    Discard,
}

/// A table store that builds each row's SDK item and keeps nothing.
#[derive(Debug, Default)]
pub struct Discard;

impl TypedTables for Discard {
    async fn put_row(&self, row: &TypedRow) -> Result<WriteOutcome, AwsError> {
        std::hint::black_box(sluice_aws::typed_tables::into_sdk(row.write_item()));
        Ok(WriteOutcome::Written)
    }
}

/// What one `transform` command measured.
#[derive(Debug, Clone)]
pub struct TransformRun {
    /// Compressed size of the object.
    pub bytes: usize,
    /// Lines the handler read (in the last run).
    pub lines: usize,
    /// Seconds of each run.
    pub seconds: Vec<f64>,
    /// The typed rows of the last run (none kept with [`Tables::Discard`]).
    pub check: Check,
    /// Rows written in the last run, tombstones included.
    pub written: usize,
    /// Where the rows went.
    pub tables: Tables,
    /// Dead letters of the last run, by error code.
    pub dead_letters: std::collections::BTreeMap<String, usize>,
    /// Dead letters of the last run.
    pub quarantined: usize,
    /// Messages the handler asked to retry (always 0 when nothing fails).
    pub retried: usize,
    /// The process's peak RSS after the first run, in KiB: what one invocation needs (later runs
    /// can only raise it, by what the allocator kept of the runs before).
    pub peak_rss_first_run_kib: Option<u64>,
}

impl TransformRun {
    /// The result as one JSON object, with the peak RSS of the process.
    pub fn to_json(&self, file: &Path) -> serde_json::Value {
        let secs = median(&self.seconds).unwrap_or(0.0);
        let rate = if secs > 0.0 {
            self.lines as f64 / secs
        } else {
            0.0
        };
        let per_line_us = if self.lines > 0 {
            secs * 1e6 / self.lines as f64
        } else {
            0.0
        };
        serde_json::json!({
            "command": "transform",
            "file": file.display().to_string(),
            "bytes_gz": self.bytes,
            "lines": self.lines,
            "runs": self.seconds.len(),
            "seconds": secs,
            "seconds_all": self.seconds,
            "lines_per_sec": rate,
            "us_per_line": per_line_us,
            "tables": match self.tables {
                Tables::Memory => "memory",
                Tables::Discard => "discard",
            },
            "written": self.written,
            "rows": self.check.rows,
            "live": self.check.rows - self.check.tombstones,
            "tombstones": self.check.tombstones,
            "quarantined": self.quarantined,
            "dead_letters": self.dead_letters,
            "retried": self.retried,
            "check": self.check.to_json(),
            "peak_rss_kib": self.peak_rss_first_run_kib,
            "peak_rss_kib_all_runs": peak_rss_kib(),
        })
    }
}

/// The SQS event that carries the S3 notification of the object, as the transform queue
/// delivers it.
pub fn notification_event(bucket: &str, key: &str, size: usize) -> String {
    let body = serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "eu-central-1",
        "eventName": "ObjectCreated:Put",
        "s3": {"bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": size}}
    }]});
    serde_json::json!({"Records": [{
        "messageId": "bench-1", "receiptHandle": "r-1", "body": body.to_string(),
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:transform",
        "awsRegion": "eu-central-1"
    }]})
    .to_string()
}

/// The transform's dependencies on in-memory ports, with the contracts of `contracts` (a
/// directory) and `object` held under [`KEY`].
pub fn deps<T: TypedTables>(
    contracts: &Path,
    object: Vec<u8>,
    tables: T,
) -> anyhow::Result<Transform<Memory, T, Memory>> {
    let dir = contracts.display().to_string();
    let config = TransformConfig::from_lookup(|name| match name {
        "SLUICE_RAW_BUCKET" => Some(BUCKET.to_owned()),
        "SLUICE_DLQ_URL" => Some("memory".to_owned()),
        "SLUICE_CONTRACTS" => Some(dir.clone()),
        _ => None,
    })?;
    // Never called: the contracts are a local directory.
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new("eu-central-1"))
            .build(),
    );
    let objects = Memory::new().with_bucket(BUCKET);
    objects.put_object(KEY, object);
    Ok(Transform {
        contracts: ContractCache::new(
            ContractSource::parse(&config.contracts),
            Duration::from_secs(config.contracts_ttl_secs),
            s3,
        ),
        config,
        objects,
        tables,
        dead_letters: Memory::new(),
        metrics: Sink::Discard,
    })
}

/// Runs the transform handler `runs` times on the gzip NDJSON object in `file`, its rows going
/// to `tables`.
pub fn run(
    file: &Path,
    contracts: &Path,
    runs: usize,
    tables: Tables,
) -> anyhow::Result<TransformRun> {
    match tables {
        Tables::Memory => run_with(file, contracts, runs, (tables, Memory::new), |m| {
            Check::of_rows(&m.rows())
        }),
        Tables::Discard => run_with(file, contracts, runs, (tables, || Discard), |_| {
            Check::default()
        }),
    }
}

fn run_with<T: TypedTables>(
    file: &Path,
    contracts: &Path,
    runs: usize,
    (tables, new_tables): (Tables, impl Fn() -> T),
    check: impl Fn(&T) -> Check,
) -> anyhow::Result<TransformRun> {
    let object = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let bytes = object.len();
    let event = notification_event(BUCKET, KEY, bytes);
    let rt = current_thread_runtime()?;
    let mut deps = deps(contracts, object, new_tables())?;
    let set = rt
        .block_on(deps.contracts.get())
        .with_context(|| format!("loading contracts from {}", contracts.display()))?;
    if set.all().is_empty() {
        bail!("no contract in {}", contracts.display());
    }
    let mut seconds = Vec::with_capacity(runs);
    let mut last: Option<TransformStats> = None;
    let mut retried = 0;
    let mut peak_rss_first_run_kib = None;
    for run in 0..runs.max(1) {
        deps.tables = new_tables();
        deps.dead_letters = Memory::new();
        let started = Instant::now();
        let (response, stats) = rt.block_on(handle(&event, &deps))?;
        seconds.push(started.elapsed().as_secs_f64());
        retried = response.batch_item_failures.len();
        last = Some(stats);
        if run == 0 {
            peak_rss_first_run_kib = peak_rss_kib();
        }
    }
    let stats = last.unwrap_or_default();
    Ok(TransformRun {
        bytes,
        lines: stats.lines,
        seconds,
        check: check(&deps.tables),
        written: stats.tables.values().map(|t| t.written).sum(),
        tables,
        dead_letters: stats.dead_letters,
        quarantined: deps.dead_letters.dead_letter_count(),
        retried,
        peak_rss_first_run_kib,
    })
}
