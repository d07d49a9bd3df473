//! `sluice status`: queue depths, dead letters by class, the oldest dead letter's age, the latest
//! metrics and the alarms of the local pipeline; `--watch` refreshes it with per-minute
//! sparklines of the last hour. Metrics are this pipeline's own (its `Pipeline` dimension).
//!
//! `--output json` prints:
//!
//! ```json
//! {"queues": [{"name": "ingest", "visible": 0, "in_flight": 0, "delayed": 0}],
//!  "dead_letters": {"by_class": {"ingest bad_format": 7}, "unprocessed": 0, "other": 0,
//!                   "duplicates": 0, "oldest_age_secs": 12, "read_complete": true},
//!  "metrics": {"minutes": 15, "sums": [{"function": "ingest", "metric": "RecordsIn", "sum": 3000.0}]},
//!  "alarms": {"evaluated": [{"name": "dead letters visible > 0", "alarm": true, "value": 7.0}],
//!             "stored": [{"name": "sluice-local-dlq-visible", "state": "OK"}]},
//!  "concurrency": {"<mapping>": {"setting": 2, "highest": 8, "changes": 3,
//!                  "last_reason": "...", "last_change_at": "..."}}}
//! ```
//!
//! `concurrency` is what the last `local run --max-concurrency` set for each queue mapping (empty
//! when none ran with it).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use serde::Serialize;
use sluice_aws::clients::sqs_client;
use sluice_pipeline::dlq::DlqSnapshot;

use crate::error::Outcome;
use crate::local::LocalOpts;
use crate::output::{self, Output};
use crate::pipeline::LocalPipeline;

/// Arguments of `sluice status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    local: LocalOpts,
    /// Minutes of metrics to sum.
    #[arg(long, default_value_t = 15)]
    minutes: i64,
    /// Refresh every few seconds until Ctrl-C, with sparklines of the last hour.
    #[arg(long)]
    watch: bool,
    /// Seconds between refreshes with --watch.
    #[arg(long, default_value_t = 5)]
    interval_secs: u64,
}

/// The metrics summed.
const METRICS: [(&str, &str); 8] = [
    ("ingest", "RecordsIn"),
    ("ingest", "RecordsLanded"),
    ("ingest", "RecordsQuarantined"),
    ("ingest", "RetriableFailures"),
    ("transform", "LinesIn"),
    ("transform", "RowsWritten"),
    ("transform", "RecordsQuarantined"),
    ("transform", "RetriableFailures"),
];

/// One queue's depth.
#[derive(Debug, Serialize)]
pub struct QueueDepth {
    name: String,
    visible: u64,
    in_flight: u64,
    delayed: u64,
}

/// The dead letters, counted.
#[derive(Debug, Serialize)]
pub struct DeadLetters {
    by_class: BTreeMap<String, usize>,
    unprocessed: usize,
    other: usize,
    duplicates: usize,
    oldest_age_secs: Option<i64>,
    read_complete: bool,
}

/// A metric's sum over the window.
#[derive(Debug, Serialize)]
pub struct MetricSum {
    function: &'static str,
    metric: &'static str,
    sum: f64,
}

/// The metrics.
#[derive(Debug, Serialize)]
pub struct Metrics {
    minutes: i64,
    sums: Vec<MetricSum>,
}

/// An alarm evaluated here.
#[derive(Debug, Serialize)]
pub struct Evaluated {
    name: &'static str,
    alarm: bool,
    value: f64,
}

/// An alarm as stored on the endpoint.
#[derive(Debug, Serialize)]
pub struct Stored {
    name: String,
    state: String,
}

/// The alarms.
#[derive(Debug, Serialize)]
pub struct Alarms {
    evaluated: Vec<Evaluated>,
    stored: Vec<Stored>,
}

/// Everything `status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    queues: Vec<QueueDepth>,
    dead_letters: DeadLetters,
    metrics: Metrics,
    alarms: Alarms,
    concurrency: BTreeMap<String, sluice_local::mappings::MappingScaling>,
}

impl StatusArgs {
    /// Prints the status (or watches it).
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let sdk = self.local.aws.sdk_config().await?;
        let p = self.local.pipeline(&sdk).await?;
        let cw = aws_sdk_cloudwatch::Client::new(&sdk);
        let sqs = sqs_client(&sdk);
        if !self.watch {
            let status = gather(&sqs, &cw, &p, self.minutes).await?;
            if out.json() {
                output::print_json(&status)?;
            } else {
                print(&status);
            }
            return Ok(Outcome::Ok);
        }
        let stop = crate::pipeline::shutdown_on_signals();
        loop {
            let status = gather(&sqs, &cw, &p, self.minutes).await?;
            if out.json() {
                outln!("{}", serde_json::to_string(&status)?);
            } else {
                let lines =
                    sparklines(&cw, &p.prefix, chrono::Utc::now().timestamp_millis()).await?;
                // Clear the screen and go home, as `watch` does.
                out!("\x1b[2J\x1b[H");
                outln!(
                    "sluice status {} (every {} s; Ctrl-C stops)",
                    p.prefix,
                    self.interval_secs
                );
                print(&status);
                outln!("last hour, a mark a minute:");
                for l in lines {
                    outln!("  {l}");
                }
            }
            let mut stop = stop.clone();
            tokio::select! {
                _ = stop.changed() => break,
                () = tokio::time::sleep(Duration::from_secs(self.interval_secs.max(1))) => {}
            }
        }
        Ok(Outcome::Ok)
    }
}

async fn gather(
    sqs: &aws_sdk_sqs::Client,
    cw: &aws_sdk_cloudwatch::Client,
    p: &LocalPipeline,
    minutes: i64,
) -> anyhow::Result<Status> {
    let mut queues = Vec::new();
    let mut named: Vec<(String, String)> = p.work_queues();
    named.push(("dead letters".to_owned(), p.dlq_url.clone()));
    if let Some(u) = &p.dlq_fifo_url {
        named.push(("dead letters (fifo)".to_owned(), u.clone()));
    }
    for (name, url) in named {
        let out = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .map_err(|e| sluice_aws::AwsError::from_sdk("GetQueueAttributes", url.clone(), e))
            .with_context(|| format!("could not read the {name} queue"))?;
        let a = out.attributes().cloned().unwrap_or_default();
        let get = |k: QueueAttributeName| a.get(&k).and_then(|v| v.parse().ok()).unwrap_or(0);
        queues.push(QueueDepth {
            name,
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        });
    }
    let dlq = DlqSnapshot::read_all(sqs, &p.dlq_urls(), sluice_pipeline::dlq::READ_BUDGET).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let dead_letters = DeadLetters {
        by_class: dlq.by_class(),
        unprocessed: dlq.unprocessed().len(),
        other: dlq.other(),
        duplicates: dlq.duplicates(),
        oldest_age_secs: dlq.oldest_sent_ms().map(|o| (now - o) / 1000),
        read_complete: dlq.complete,
    };
    let mut sums = Vec::new();
    for (function, metric) in METRICS {
        let sum = metric_sum(cw, &p.prefix, function, metric, now - minutes * 60_000, now).await?;
        sums.push(MetricSum {
            function,
            metric,
            sum,
        });
    }
    let total = |f: &str, m: &str| {
        sums.iter()
            .find(|s| s.function == f && s.metric == m)
            .map_or(0.0, |s| s.sum)
    };
    let rate = |q: f64, all: f64| if all > 0.0 { 100.0 * q / all } else { 0.0 };
    let ingest_rate = rate(
        total("ingest", "RecordsQuarantined"),
        total("ingest", "RecordsIn"),
    );
    let transform_rate = rate(
        total("transform", "RecordsQuarantined"),
        total("transform", "LinesIn"),
    );
    let visible = dlq.entries.len() as f64;
    let stored = cw
        .describe_alarms()
        .alarm_name_prefix(&p.prefix)
        .send()
        .await
        .context("could not read the alarms")?
        .metric_alarms()
        .iter()
        .map(|a| Stored {
            name: a.alarm_name().unwrap_or_default().to_owned(),
            state: a
                .state_value()
                .map_or_else(|| "?".to_owned(), |s| s.as_str().to_owned()),
        })
        .collect();
    // What the last run's scalers set, if any ran.
    let concurrency = std::fs::read(sluice_local::mappings::scaling_path(
        &p.state_dir,
        &p.prefix,
    ))
    .ok()
    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
    .unwrap_or_default();
    Ok(Status {
        concurrency,
        queues,
        dead_letters,
        metrics: Metrics { minutes, sums },
        alarms: Alarms {
            evaluated: vec![
                Evaluated {
                    name: "dead letters visible > 0",
                    alarm: visible > 0.0,
                    value: visible,
                },
                Evaluated {
                    name: "ingest quarantined > 0.1 %",
                    alarm: ingest_rate > 0.1,
                    value: ingest_rate,
                },
                Evaluated {
                    name: "transform quarantined > 0.1 %",
                    alarm: transform_rate > 0.1,
                    value: transform_rate,
                },
            ],
            stored,
        },
    })
}

/// A metric's sum from `start` to `end` (epoch ms), in one period.
async fn metric_sum(
    cw: &aws_sdk_cloudwatch::Client,
    pipeline: &str,
    function: &str,
    metric: &str,
    start: i64,
    end: i64,
) -> anyhow::Result<f64> {
    let buckets = per_minute(cw, pipeline, function, metric, start, end).await?;
    // Folded from +0.0: an empty `sum()` of floats is -0.0, which prints as "-0".
    Ok(buckets.values().fold(0.0, |a, b| a + b))
}

/// A metric's sums a minute, by the minute's start (epoch ms).
async fn per_minute(
    cw: &aws_sdk_cloudwatch::Client,
    pipeline: &str,
    function: &str,
    metric: &str,
    start: i64,
    end: i64,
) -> anyhow::Result<BTreeMap<i64, f64>> {
    // Whole minutes, the last one reaching past `end`, so no data point falls outside a bucket.
    let first = start - start.rem_euclid(60_000);
    let last = end - end.rem_euclid(60_000) + 60_000;
    let out = cw
        .get_metric_statistics()
        .namespace(sluice_aws::metrics::NAMESPACE)
        .metric_name(metric)
        .dimensions(
            Dimension::builder()
                .name("Function")
                .value(function)
                .build(),
        )
        .dimensions(
            Dimension::builder()
                .name(sluice_local::cloudwatch::PIPELINE_DIMENSION)
                .value(pipeline)
                .build(),
        )
        .start_time(aws_smithy_types::DateTime::from_millis(first))
        .end_time(aws_smithy_types::DateTime::from_millis(last))
        .period(60)
        .statistics(Statistic::Sum)
        .send()
        .await
        .map_err(|e| sluice_aws::AwsError::from_sdk("GetMetricStatistics", metric, e))
        .context("could not read metrics from CloudWatch")?;
    Ok(out
        .datapoints()
        .iter()
        .filter_map(|d| Some((d.timestamp()?.to_millis().ok()?, d.sum()?)))
        .fold(BTreeMap::new(), |mut m, (t, v)| {
            *m.entry(t).or_default() += v;
            m
        }))
}

/// Sparklines of the last hour, a mark a minute.
async fn sparklines(
    cw: &aws_sdk_cloudwatch::Client,
    pipeline: &str,
    now: i64,
) -> anyhow::Result<Vec<String>> {
    let start = now - 60 * 60_000;
    let mut lines = Vec::new();
    for (label, function, metric) in [
        ("records in ", "ingest", "RecordsIn"),
        ("rows typed ", "transform", "RowsWritten"),
        ("quarantined", "transform", "RecordsQuarantined"),
    ] {
        let buckets = per_minute(cw, pipeline, function, metric, start, now).await?;
        let first = start - start.rem_euclid(60_000);
        let values: Vec<f64> = (0..60)
            .map(|i| buckets.get(&(first + i * 60_000)).copied().unwrap_or(0.0))
            .collect();
        let total: f64 = values.iter().sum();
        lines.push(format!("{label} {} {total:>8}", spark(&values)));
    }
    Ok(lines)
}

/// One mark per value, scaled to the largest.
fn spark(values: &[f64]) -> String {
    const MARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| {
            if *v <= 0.0 || max <= 0.0 {
                ' '
            } else {
                let i = ((v / max) * 7.0).round() as usize;
                MARKS[i.min(7)]
            }
        })
        .collect()
}

fn print(s: &Status) {
    let mut t = output::table(&["queue", "visible", "in flight", "delayed"]);
    for q in &s.queues {
        t.add_row(vec![
            q.name.to_owned(),
            q.visible.to_string(),
            q.in_flight.to_string(),
            q.delayed.to_string(),
        ]);
    }
    outln!("{t}");
    if !s.concurrency.is_empty() {
        let mut t = output::table(&[
            "mapping",
            "concurrency",
            "highest",
            "changes",
            "last change",
        ]);
        for (name, c) in &s.concurrency {
            t.add_row(vec![
                name.clone(),
                c.setting.to_string(),
                c.highest.to_string(),
                c.changes.to_string(),
                match (&c.last_change_at, &c.last_reason) {
                    (Some(at), Some(why)) => format!("{at}: {why}"),
                    _ => "-".to_owned(),
                },
            ]);
        }
        outln!("{t}");
    }
    let d = &s.dead_letters;
    let mut t = output::table(&["dead letters (each failure_id once)", "count"]);
    for (k, v) in &d.by_class {
        t.add_row(vec![k.clone(), v.to_string()]);
    }
    if d.unprocessed > 0 {
        t.add_row(vec![
            "unprocessed (redrive policy or on-failure record)".to_owned(),
            d.unprocessed.to_string(),
        ]);
    }
    if d.other > 0 {
        t.add_row(vec![
            "other (no change in it)".to_owned(),
            d.other.to_string(),
        ]);
    }
    if d.duplicates > 0 {
        t.add_row(vec![
            "duplicate copies (not counted)".to_owned(),
            d.duplicates.to_string(),
        ]);
    }
    if d.by_class.is_empty() && d.unprocessed == 0 && d.other == 0 {
        t.add_row(vec!["(none)".to_owned(), "0".to_owned()]);
    }
    outln!("{t}");
    if let Some(age) = d.oldest_age_secs {
        outln!("oldest dead letter: {age} s old");
    }
    if !d.read_complete {
        outln!("the dead-letter queue was read only in part");
    }
    let mut t = output::table(&[
        &format!("metric (sum over the last {} min)", s.metrics.minutes),
        "sum",
    ]);
    for m in &s.metrics.sums {
        t.add_row(vec![
            format!("{} {}", m.function, m.metric),
            m.sum.to_string(),
        ]);
    }
    outln!("{t}");
    let mut t = output::table(&["alarm (evaluated here)", "state", "value"]);
    for a in &s.alarms.evaluated {
        t.add_row(vec![
            a.name.to_owned(),
            if a.alarm { "ALARM" } else { "OK" }.to_owned(),
            format!("{:.2}", a.value),
        ]);
    }
    outln!("{t}");
    if !s.alarms.stored.is_empty() {
        outln!(
            "alarms stored on the endpoint (the local endpoint never evaluates them): {}",
            s.alarms
                .stored
                .iter()
                .map(|a| format!("{} {}", a.name, a.state))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_scale_to_the_largest_value() {
        assert_eq!(spark(&[0.0, 1.0, 2.0, 4.0]), " ▃▅█");
        assert_eq!(spark(&[0.0, 0.0]), "  ");
    }
}
