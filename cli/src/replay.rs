//! `sluice replay`: transform run again over raw staging, for a table and a range of source
//! commit times, after a contract change or a decoder fix.
//!
//! By default each raw object of the range goes to the transform queue as a replay message, and
//! the transform function (or `sluice local run`) takes them, as many at once as its mapping
//! allows. `--local` runs transform here instead, `--concurrency` objects at a time. `--dry-run`
//! writes nothing: it decides every line of the range under the current contracts and compares
//! the newest row of each key with the stored one.
//!
//! Exit codes: 0 done (a dry run in which no line would fail); 1 a dry run in which some line
//! would fail, or invalid input; 2 could not run.
//!
//! `--output json` prints `{"table", "since", "until", "objects", "bytes", "mode"}` and, for
//! `queue`: `"queued"`; for `local`: `"lines", "rows_written", "rows_already_written",
//! "rows_stale", "quarantined", "seconds"`; for `dry_run`: `"preview": {"lines", "tables":
//! {"<contract>": {"change", "same_fields", "equal", "newer_stands"}}, "fails": {"<code>": n},
//! "first_failures": [...]}`.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use futures::stream::{self, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sluice_aws::clients::{s3_client, sqs_client};
use sluice_aws::metrics::Sink;
use sluice_aws::raw_objects::S3RawObjects;
use sluice_core::json::Limits;
use sluice_pipeline::recovery::replay::{self, Preview, StoredRows};
use sluice_pipeline::recovery::select::parse_time;
use sluice_pipeline::transform::{self, Transform, TransformStats};
use sluice_pipeline::TransformConfig;

use crate::error::{InvalidInput, Outcome};
use crate::local::LocalOpts;
use crate::output::{self, Output};

/// Arguments of `sluice replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The source table whose raw staging is replayed.
    #[arg(long)]
    table: String,
    /// Lines whose source commit time is at or after this (RFC 3339, a date, or an age: 2h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Lines whose source commit time is before this (RFC 3339, a date, or an age).
    #[arg(long)]
    until: Option<String>,
    /// Write nothing: say how many rows would change, stay equal, or fail.
    #[arg(long)]
    dry_run: bool,
    /// Run transform here instead of sending the objects to the transform queue.
    #[arg(long)]
    local: bool,
    /// With --local, objects transformed at once.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Take the bucket, queues, contracts and tables from the SLUICE_* variables (as the
    /// functions get them) instead of the local pipeline of --prefix.
    #[arg(long)]
    from_env: bool,
    #[command(flatten)]
    local_opts: LocalOpts,
}

#[derive(Serialize)]
struct Report<'a> {
    table: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<String>,
    objects: usize,
    bytes: i64,
    mode: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    queued: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lines: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_written: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_already_written: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows_stale: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quarantined: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<Preview>,
}

impl ReplayArgs {
    /// Runs the replay.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let now = chrono::Utc::now().timestamp_millis();
        let time = |t: &Option<String>| -> anyhow::Result<Option<i64>> {
            t.as_deref()
                .map(|t| parse_time(t, now).map_err(|e| anyhow::Error::new(InvalidInput(e))))
                .transpose()
        };
        let (since_ms, until_ms) = (time(&self.since)?, time(&self.until)?);
        if let (Some(s), Some(u)) = (since_ms, until_ms) {
            if s >= u {
                return Err(anyhow::Error::new(InvalidInput(
                    "--since is not before --until: the range is empty".into(),
                )));
            }
        }
        let sdk = self.local_opts.aws.sdk_config().await?;
        let vars = if self.from_env {
            None
        } else {
            Some(self.local_opts.pipeline(&sdk).await?.variables())
        };
        let lookup = |name: &str| {
            vars.as_ref()
                .and_then(|v| v.get(name).cloned())
                .or_else(|| std::env::var(name).ok())
        };
        let config = TransformConfig::from_lookup(lookup).map_err(|e| {
            anyhow::Error::new(InvalidInput(format!(
                "{e}; {}",
                if self.from_env {
                    "with --from-env, set the variables the functions get"
                } else {
                    "pass --contracts DIR"
                }
            )))
        })?;
        let s3 = s3_client(&sdk);
        let objects = replay::objects(&s3, &config.raw_bucket, &self.table, since_ms, until_ms)
            .await
            .with_context(|| format!("could not list the raw staging of {}", self.table))?;
        let bytes = objects.iter().map(|o| o.bytes).sum();
        let at = |ms: Option<i64>| ms.map(sluice_core::time::ms_to_rfc3339);
        let mut report = Report {
            table: &self.table,
            since: at(since_ms),
            until: at(until_ms),
            objects: objects.len(),
            bytes,
            mode: if self.dry_run {
                "dry_run"
            } else if self.local {
                "local"
            } else {
                "queue"
            },
            queued: None,
            lines: None,
            rows_written: None,
            rows_already_written: None,
            rows_stale: None,
            quarantined: None,
            seconds: None,
            preview: None,
        };
        if objects.is_empty() {
            eprintln!(
                "note: no raw objects of table {:?} in the range under s3://{}/raw/",
                self.table, config.raw_bucket
            );
        }
        let started = Instant::now();
        let bar = |what: &str| {
            output::stderr_is_terminal().then(|| {
                let b = ProgressBar::new(objects.len() as u64);
                b.set_style(
                    ProgressStyle::with_template(&format!(
                        "{{spinner}} {what} [{{bar:30}}] {{pos}}/{{len}} objects ({{per_sec}})"
                    ))
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                b
            })
        };
        let mut outcome = Outcome::Ok;
        if self.dry_run {
            let contracts = sluice_pipeline::contracts::load(
                &sluice_pipeline::contracts::ContractSource::parse(&config.contracts),
                &s3,
            )
            .await
            .with_context(|| format!("could not read the contracts from {}", config.contracts))?;
            let ddb = aws_sdk_dynamodb::Client::new(&sdk);
            let spinner = bar("dry run");
            let preview = replay::preview(
                &S3RawObjects::new(s3.clone()),
                &config.raw_bucket,
                &objects,
                replay::Range { since_ms, until_ms },
                &contracts,
                &Limits {
                    max_record_bytes: config.max_line_bytes,
                    max_depth: config.max_depth,
                },
                &StoredRows {
                    ddb: &ddb,
                    prefix: &config.typed_table_prefix,
                },
            )
            .await?;
            if let Some(b) = spinner {
                b.finish_and_clear();
            }
            if !preview.fails.is_empty() {
                outcome = Outcome::Found;
            }
            report.preview = Some(preview);
        } else if self.local {
            let deps = Arc::new(Transform::from_sdk(config.clone(), &sdk, Sink::Discard));
            let progress = bar("replay");
            let messages = replay::messages(&config.raw_bucket, &objects, since_ms, until_ms);
            let results: Vec<_> = stream::iter(messages)
                .map(|body| {
                    let deps = Arc::clone(&deps);
                    let progress = progress.clone();
                    async move {
                        let event = serde_json::json!({"Records": [{
                            "messageId": "replay", "body": body,
                            "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                            "eventSource": "aws:sqs", "eventSourceARN": "replay",
                        }]})
                        .to_string();
                        let r = transform::handle(&event, deps.as_ref()).await;
                        if let Some(b) = &progress {
                            b.inc(1);
                        }
                        r
                    }
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
            if let Some(b) = progress {
                b.finish_and_clear();
            }
            let mut total = TransformStats::default();
            let mut retried = 0;
            for r in results {
                let (response, stats) = r?;
                retried += response.batch_item_failures.len();
                total.lines += stats.lines;
                total.objects += stats.objects;
                for (k, v) in stats.quarantined {
                    *total.quarantined.entry(k).or_default() += v;
                }
                for (t, s) in stats.tables {
                    let e = total.tables.entry(t).or_default();
                    e.written += s.written;
                    e.already_written += s.already_written;
                    e.stale += s.stale;
                }
            }
            if retried > 0 {
                anyhow::bail!(
                    "{retried} object(s) could not be replayed for now (a retriable failure; see \
                     the log with RUST_LOG=info); run the replay again, it is idempotent"
                );
            }
            let sum = |f: fn(&transform::TableStats) -> usize| total.tables.values().map(f).sum();
            report.lines = Some(total.lines);
            report.rows_written = Some(sum(|t| t.written));
            report.rows_already_written = Some(sum(|t| t.already_written));
            report.rows_stale = Some(sum(|t| t.stale));
            report.quarantined = Some(total.quarantined.values().sum());
            report.seconds = Some(started.elapsed().as_secs_f64());
        } else {
            let url = lookup("SLUICE_TRANSFORM_QUEUE_URL").ok_or_else(|| {
                anyhow::Error::new(InvalidInput(
                    "no transform queue: set SLUICE_TRANSFORM_QUEUE_URL, or pass --local".into(),
                ))
            })?;
            let progress = bar("queueing");
            let messages = replay::messages(&config.raw_bucket, &objects, since_ms, until_ms);
            let sent = replay::queue(&sqs_client(&sdk), &url, &messages, &|n| {
                if let Some(b) = &progress {
                    b.set_position(n as u64);
                }
            })
            .await?;
            if let Some(b) = progress {
                b.finish_and_clear();
            }
            report.queued = Some(sent);
            report.seconds = Some(started.elapsed().as_secs_f64());
        }
        if out.json() {
            output::print_json(&report)?;
        } else {
            print(&report);
        }
        Ok(outcome)
    }
}

fn print(r: &Report<'_>) {
    let range = match (&r.since, &r.until) {
        (None, None) => "all of raw staging".to_owned(),
        (Some(s), None) => format!("from {s}"),
        (None, Some(u)) => format!("before {u}"),
        (Some(s), Some(u)) => format!("from {s} to {u}"),
    };
    outln!(
        "replay of {} ({range}): {} raw object(s), {:.1} MiB",
        r.table,
        r.objects,
        r.bytes as f64 / (1024.0 * 1024.0)
    );
    if let Some(q) = r.queued {
        outln!(
            "queued {q} replay message(s) on the transform queue in {:.1} s; transform takes them \
             as fast as its mapping allows (`sluice status` shows the backlog)",
            r.seconds.unwrap_or_default()
        );
    }
    if let Some(lines) = r.lines {
        outln!(
            "{lines} line(s) in {:.1} s: {} row(s) rewritten, {} already written, {} stale (a newer \
             change stands), {} dead-lettered",
            r.seconds.unwrap_or_default(),
            r.rows_written.unwrap_or_default(),
            r.rows_already_written.unwrap_or_default(),
            r.rows_stale.unwrap_or_default(),
            r.quarantined.unwrap_or_default()
        );
    }
    if let Some(p) = &r.preview {
        let mut t = output::table(&[
            "typed table",
            "would change",
            "same fields, new version",
            "stay equal",
            "newer change stands",
        ]);
        for (table, c) in &p.tables {
            t.add_row(vec![
                table.clone(),
                c.change.to_string(),
                c.same_fields.to_string(),
                c.equal.to_string(),
                c.newer_stands.to_string(),
            ]);
        }
        outln!("{t}");
        let fails: usize = p.fails.values().sum();
        outln!(
            "dry run: {} line(s) in the range; {fails} would fail{}",
            p.lines,
            if fails > 0 {
                let codes: Vec<String> = p.fails.iter().map(|(c, n)| format!("{c} {n}")).collect();
                format!(" ({})", codes.join(", "))
            } else {
                String::new()
            }
        );
        for f in &p.first_failures {
            outln!("  - {f}");
        }
    }
}
