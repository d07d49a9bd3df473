//! The ingest handler (`sluice_pipeline::ingest::handle_counted`) on DynamoDB Streams events,
//! through the in-memory ports: every event file of a directory is read into memory first, then
//! each is handed to the handler as Lambda would hand it one invocation's payload.
//!
//! Only the handler calls are timed: reading each record, routing it, writing each group as one
//! gzip NDJSON object to a raw store that counts it and keeps nothing (as the Python peer keeps
//! only the compressed size), and sending dead letters.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use sluice_aws::memory::Memory;
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle_counted, Ingest};
use sluice_pipeline::IngestConfig;

use crate::measure::{current_thread_runtime, median, peak_rss_kib};

/// What one `ingest` command measured.
#[derive(Debug, Clone, Default)]
pub struct IngestRun {
    /// Event files read.
    pub files: usize,
    /// Records in them (in the last run).
    pub records: usize,
    /// Seconds of each run, over all files.
    pub seconds: Vec<f64>,
    /// Records landed in raw staging (in the last run).
    pub landed: usize,
    /// Records dead-lettered (in the last run).
    pub quarantined: usize,
    /// Records reported back for retry (in the last run).
    pub retried: usize,
    /// Raw objects written (in the last run).
    pub objects: usize,
    /// Compressed bytes written (in the last run).
    pub bytes: usize,
    /// The process's peak RSS after the first run, in KiB.
    pub peak_rss_first_run_kib: Option<u64>,
}

impl IngestRun {
    /// The result as one JSON object, with the peak RSS of the process.
    pub fn to_json(&self, dir: &Path) -> serde_json::Value {
        let secs = median(&self.seconds).unwrap_or(0.0);
        let rate = if secs > 0.0 {
            self.records as f64 / secs
        } else {
            0.0
        };
        serde_json::json!({
            "command": "ingest",
            "dir": dir.display().to_string(),
            "files": self.files,
            "records": self.records,
            "runs": self.seconds.len(),
            "seconds": secs,
            "seconds_all": self.seconds,
            "records_per_sec": rate,
            "landed": self.landed,
            "quarantined": self.quarantined,
            "retried": self.retried,
            "objects": self.objects,
            "bytes_gz": self.bytes,
            "peak_rss_kib": self.peak_rss_first_run_kib,
            "peak_rss_kib_all_runs": peak_rss_kib(),
        })
    }
}

/// The event files of `dir` (`*.json`), in name order.
pub fn event_files(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Ok(files)
}

/// The ingest dependencies on in-memory ports: a raw store that keeps nothing.
pub fn deps() -> anyhow::Result<Ingest<Memory, Memory>> {
    let config = IngestConfig::from_lookup(|name| match name {
        "SLUICE_RAW_BUCKET" => Some("bench-raw".to_owned()),
        "SLUICE_DLQ_URL" => Some("memory".to_owned()),
        _ => None,
    })?;
    Ok(Ingest {
        config,
        store: Memory::discarding().with_bucket("bench-raw"),
        dead_letters: Memory::new(),
        metrics: Sink::Discard,
    })
}

/// Runs the ingest handler `runs` times over every event file in `dir`.
pub fn run(dir: &Path, runs: usize) -> anyhow::Result<IngestRun> {
    let files = event_files(dir)?;
    if files.is_empty() {
        anyhow::bail!("no *.json event file in {}", dir.display());
    }
    let events = files
        .iter()
        .map(|f| std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display())))
        .collect::<anyhow::Result<Vec<String>>>()?;
    let rt = current_thread_runtime()?;
    let mut seconds = Vec::with_capacity(runs);
    let mut last = IngestRun::default();
    let mut peak_rss_first_run_kib = None;
    for run in 0..runs.max(1) {
        let deps = deps()?;
        last = IngestRun {
            files: files.len(),
            ..IngestRun::default()
        };
        let started = Instant::now();
        for event in &events {
            let (_, stats) = rt
                .block_on(handle_counted(event, &deps))
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            last.records += stats.records_in;
            last.landed += stats.landed;
            last.quarantined += stats.quarantined;
            last.retried += stats.retriable_failures;
            last.objects += stats.objects;
            last.bytes += stats.bytes;
        }
        seconds.push(started.elapsed().as_secs_f64());
        if run == 0 {
            peak_rss_first_run_kib = peak_rss_kib();
        }
    }
    last.seconds = seconds;
    last.peak_rss_first_run_kib = peak_rss_first_run_kib;
    Ok(last)
}
