//! `sluice status`: queue depths, dead letters by class, the oldest message's age, the latest
//! metrics and the alarms of the local pipeline.

use std::collections::BTreeMap;

use anyhow::Context;
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_sqs::types::QueueAttributeName;
use clap::Args;
use sluice_aws::clients::sqs_client;
use sluice_pipeline::dlq::DlqSnapshot;

use crate::local::LocalOpts;

/// Arguments of `sluice status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    local: LocalOpts,
    /// Minutes of metrics to sum.
    #[arg(long, default_value_t = 15)]
    minutes: i64,
}

impl StatusArgs {
    /// Prints the status.
    pub async fn run(self) -> anyhow::Result<()> {
        let sdk = self.local.aws.sdk_config().await;
        let p = self.local.pipeline(&sdk).await?;
        let sqs = sqs_client(&sdk);
        println!("queues                visible  in flight  delayed");
        for (name, url) in [
            ("ingest", &p.ingest_url),
            ("transform", &p.transform_url),
            ("dead letters", &p.dlq_url),
        ] {
            let out = sqs
                .get_queue_attributes()
                .queue_url(url)
                .attribute_names(QueueAttributeName::All)
                .send()
                .await
                .with_context(|| format!("could not read the {name} queue"))?;
            let a = out.attributes().cloned().unwrap_or_default();
            let get = |k: QueueAttributeName| a.get(&k).cloned().unwrap_or_else(|| "?".into());
            println!(
                "  {:<18} {:>8} {:>10} {:>8}",
                name,
                get(QueueAttributeName::ApproximateNumberOfMessages),
                get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
                get(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            );
        }
        let dlq = DlqSnapshot::read(&sqs, &p.dlq_url, sluice_pipeline::dlq::READ_BUDGET).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let mut by_class = dlq.by_class();
        let unprocessed = dlq.unprocessed().len();
        if unprocessed > 0 {
            by_class.insert(
                "unprocessed (redrive policy or on-failure record)".into(),
                unprocessed,
            );
        }
        if dlq.other() > 0 {
            by_class.insert("other (no change in it)".into(), dlq.other());
        }
        println!("dead letters by class (each failure_id once)");
        if by_class.is_empty() {
            println!("  (none)");
        }
        for (k, v) in &by_class {
            println!("  {k:<50} {v:>6}");
        }
        if dlq.duplicates() > 0 {
            println!(
                "  duplicate copies (not counted)                     {:>6}",
                dlq.duplicates()
            );
        }
        if let Some(note) = dlq.incomplete_note() {
            println!("  {note}");
        }
        if let Some(o) = dlq.oldest_sent_ms() {
            println!("  oldest dead letter: {} s old", (now - o) / 1000);
        }

        let cw = aws_sdk_cloudwatch::Client::new(&sdk);
        let end = aws_smithy_types::DateTime::from_millis(now);
        let start = aws_smithy_types::DateTime::from_millis(now - self.minutes * 60_000);
        println!("metrics (sum over the last {} min)", self.minutes);
        let metrics = [
            ("ingest", "RecordsIn"),
            ("ingest", "RecordsLanded"),
            ("ingest", "RecordsQuarantined"),
            ("ingest", "RetriableFailures"),
            ("transform", "LinesIn"),
            ("transform", "RecordsQuarantined"),
            ("transform", "RetriableFailures"),
        ];
        let mut sums = BTreeMap::new();
        for (function, metric) in metrics {
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
                .start_time(start)
                .end_time(end)
                .period(60)
                .statistics(Statistic::Sum)
                .send()
                .await
                .context("could not read metrics from CloudWatch")?;
            // Folded from +0.0: an empty `sum()` of floats is -0.0, which prints as "-0".
            let sum: f64 = out
                .datapoints()
                .iter()
                .filter_map(|d| d.sum())
                .fold(0.0, |a, b| a + b);
            sums.insert((function, metric), sum);
            println!("  {function:<10} {metric:<20} {sum:>10}");
        }
        let rate = |q: f64, total: f64| if total > 0.0 { 100.0 * q / total } else { 0.0 };
        let ingest_rate = rate(
            sums[&("ingest", "RecordsQuarantined")],
            sums[&("ingest", "RecordsIn")],
        );
        let transform_rate = rate(
            sums[&("transform", "RecordsQuarantined")],
            sums[&("transform", "LinesIn")],
        );
        println!("alarms (evaluated here; the local endpoint does not evaluate alarms)");
        let verdict = |bad: bool| if bad { "ALARM" } else { "OK" };
        println!(
            "  dead letters visible > 0          {}",
            verdict(!dlq.entries.is_empty())
        );
        println!(
            "  ingest quarantined > 0.1 %        {} ({ingest_rate:.2} %)",
            verdict(ingest_rate > 0.1)
        );
        println!(
            "  transform quarantined > 0.1 %     {} ({transform_rate:.2} %)",
            verdict(transform_rate > 0.1)
        );
        let alarms = cw
            .describe_alarms()
            .alarm_name_prefix(&p.prefix)
            .send()
            .await
            .context("could not read alarms")?;
        for a in alarms.metric_alarms() {
            println!(
                "  {} (stored state {})",
                a.alarm_name().unwrap_or_default(),
                a.state_value().map(|s| s.as_str()).unwrap_or("?")
            );
        }
        Ok(())
    }
}
