//! `sluice audit`: reconcile the local pipeline and prove nothing was lost.

use anyhow::Context;
use clap::Args;
use sluice_aws::clients::{s3_client, sqs_client};
use sluice_local::audit::{audit, AuditInput, AuditReport};
use sluice_local::mappings::{MappingSource, Mappings};
use sluice_pipeline::contracts::{load, ContractSource};

use crate::local::LocalOpts;
use crate::pipeline::LocalPipeline;

/// Arguments of `sluice audit`.
#[derive(Debug, Args)]
pub struct AuditArgs {
    #[command(flatten)]
    local: LocalOpts,
    /// Also compare this DynamoDB source table with its typed tables (repeatable): for tables
    /// whose changes arrive another way than a local stream mapping, such as through Kinesis
    #[arg(long = "source-table", value_name = "TABLE")]
    source_tables: Vec<String>,
}

impl AuditArgs {
    /// Runs the audit; fails (exit code 1) on any loss or mismatch.
    pub async fn run(self) -> anyhow::Result<()> {
        let sdk = self.local.aws.sdk_config().await;
        let p = self.local.pipeline(&sdk).await?;
        let report = run_audit(&sdk, &p, &self.source_tables).await?;
        print(&report);
        if !report.is_clean() {
            anyhow::bail!("the audit found {} problem(s)", report.findings());
        }
        Ok(())
    }
}

/// Audits the local pipeline `p`, comparing the source tables of its stream mappings and
/// `extra_sources` with their typed tables.
pub async fn run_audit(
    sdk: &sluice_aws::clients::SdkConfig,
    p: &LocalPipeline,
    extra_sources: &[String],
) -> anyhow::Result<AuditReport> {
    let (s3, sqs) = (s3_client(sdk), sqs_client(sdk));
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let dir = p
        .contracts
        .clone()
        .context("no contracts directory: pass --contracts DIR")?;
    let contracts = load(&ContractSource::Dir(dir), &s3).await?;
    let mappings = Mappings::load(&p.mappings_path())
        .with_context(|| format!("could not read {}", p.mappings_path().display()))?;
    let mut source_tables: Vec<String> = mappings
        .mappings
        .values()
        .filter_map(|m| match &m.source {
            MappingSource::Stream { table, .. } => Some(table.clone()),
            MappingSource::Queue { .. } => None,
        })
        .collect();
    for table in extra_sources {
        if !source_tables.contains(table) {
            source_tables.push(table.clone());
        }
    }
    Ok(audit(&AuditInput {
        s3: &s3,
        sqs: &sqs,
        ddb: &ddb,
        raw_bucket: &p.names.raw_bucket,
        dlq_url: &p.dlq_url,
        contracts: &contracts,
        typed_table_prefix: &p.names.typed_table_prefix,
        source_tables: &source_tables,
        queues: &[
            ("ingest".to_owned(), p.ingest_url.clone()),
            ("transform".to_owned(), p.transform_url.clone()),
        ],
    })
    .await?)
}

/// Prints the accounting table, the dead letters and every problem.
pub fn print(report: &AuditReport) {
    println!(
        "{:<16} {:>9} = {:>7} + {:>7} + {:>11} + {:>7}   {:>6} {:>10}   {:>11}",
        "typed table",
        "raw lines",
        "typed",
        "stale",
        "quarantined",
        "control",
        "rows",
        "tombstones",
        "source keys"
    );
    for t in &report.tables {
        println!(
            "{:<16} {:>9} = {:>7} + {:>7} + {:>11} + {:>7}   {:>6} {:>10}   {:>11}",
            t.contract,
            t.raw_lines,
            t.typed,
            t.stale,
            t.quarantined,
            t.control,
            t.rows,
            t.tombstones,
            t.source_keys
                .map_or_else(|| "-".to_owned(), |n| n.to_string())
        );
    }
    if report.uncontracted_lines > 0 {
        println!(
            "raw lines of tables without a contract: {} (all dead-lettered)",
            report.uncontracted_lines
        );
    }
    if !report.dead_letters.is_empty() {
        let letters: Vec<String> = report
            .dead_letters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        println!("dead letters: {}", letters.join(", "));
    }
    if report.duplicate_dead_letters > 0 {
        println!(
            "duplicate dead letters: {} (copies of a failure_id already counted; harmless)",
            report.duplicate_dead_letters
        );
    }
    if report.is_clean() {
        println!("audit: clean: every change is a typed row, a stale duplicate, or a dead letter");
        return;
    }
    if !report.unprocessed.is_empty() {
        println!(
            "unprocessed: {} change(s) on the dead-letter queue without a failure envelope, moved \
             there by a queue's redrive policy or given up by a stream mapping; nothing says why \
             they failed. Send each back to its source once the cause is gone:",
            report.unprocessed.len()
        );
        for u in &report.unprocessed {
            println!("  - {u}");
        }
    }
    for (queue, n) in &report.in_flight {
        println!(
            "in flight: {n} message(s) still on the {queue} queue: run `sluice local run \
             --until-idle` and audit again"
        );
    }
    for u in &report.unread {
        println!("not checked: {u}");
    }
    if !report.problems.is_empty() {
        println!("audit: {} problem(s):", report.problems.len());
        for p in &report.problems {
            println!("  - {p}");
        }
    }
    println!("audit: not clean: {} finding(s) above", report.findings());
}
