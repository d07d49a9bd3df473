//! `sluice audit`: reconcile the local pipeline and prove nothing was lost.
//!
//! Exit 0 when clean, 1 on any finding (a difference, a change unprocessed or in flight, or
//! something that could not be read), 2 when the audit could not run. `--output json` prints the
//! whole report:
//!
//! ```json
//! {"clean": false, "findings": 1,
//!  "tables": [{"contract": "customers", "raw_lines": 1, "typed": 1, "stale": 0, "quarantined": 0,
//!              "control": 0, "rows": 1, "tombstones": 0, "source_keys": null}],
//!  "uncontracted_lines": 0, "dead_letters": {"transform contract_violation": 2},
//!  "duplicate_dead_letters": 0, "unprocessed": ["message …: a change to table …"],
//!  "in_flight": [["ingest", 3]], "unread": [], "problems": ["…"]}
//! ```

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sluice_aws::clients::{s3_client, sqs_client};
use sluice_local::audit::{audit, AuditInput, AuditReport};
use sluice_local::mappings::{MappingSource, Mappings};
use sluice_pipeline::contracts::{load, ContractSource};

use crate::error::Outcome;
use crate::local::LocalOpts;
use crate::output::{self, Output};
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
    /// Runs the audit; exit 1 on any finding.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let sdk = self.local.aws.sdk_config().await?;
        let p = self.local.pipeline(&sdk).await?;
        let report = run_audit(&sdk, &p, &self.source_tables).await?;
        show(&report, out)?;
        Ok(if report.is_clean() {
            Outcome::Ok
        } else {
            Outcome::Found
        })
    }
}

/// Audits the local pipeline `p`, comparing the source tables of its stream mappings and
/// `extra_sources` with their typed tables. On a terminal, a spinner says what it reads.
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
            MappingSource::Queue { .. } | MappingSource::Kinesis { .. } => None,
        })
        .collect();
    for table in extra_sources {
        if !source_tables.contains(table) {
            source_tables.push(table.clone());
        }
    }
    let spinner = output::stderr_is_terminal().then(|| {
        let s = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} audit: {msg} ({elapsed})")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        s.enable_steady_tick(std::time::Duration::from_millis(120));
        s
    });
    let progress = |what: &str| {
        if let Some(s) = &spinner {
            s.set_message(what.to_owned());
        }
    };
    let report = audit(&AuditInput {
        s3: &s3,
        sqs: &sqs,
        ddb: &ddb,
        raw_bucket: &p.names.raw_bucket,
        dlq_urls: &p.dlq_urls(),
        contracts: &contracts,
        typed_table_prefix: &p.names.typed_table_prefix,
        source_tables: &source_tables,
        queues: &p.work_queues(),
        progress: Some(&progress),
    })
    .await;
    if let Some(s) = spinner {
        s.finish_and_clear();
    }
    Ok(report?)
}

/// The report as JSON: every field of the report, and the verdict.
pub fn to_json(report: &AuditReport) -> serde_json::Value {
    let mut v = serde_json::to_value(report).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("clean".into(), report.is_clean().into());
        o.insert("findings".into(), report.findings().into());
    }
    v
}

/// Prints the report as a table and lines for people, or as JSON.
pub fn show(report: &AuditReport, out: Output) -> anyhow::Result<()> {
    if out.json() {
        return output::print_json(&to_json(report));
    }
    let mut t = output::table(&[
        "typed table",
        "raw lines",
        "typed",
        "stale",
        "quarantined",
        "control",
        "rows",
        "tombstones",
        "source keys",
    ]);
    for r in &report.tables {
        t.add_row(vec![
            r.contract.clone(),
            r.raw_lines.to_string(),
            r.typed.to_string(),
            r.stale.to_string(),
            r.quarantined.to_string(),
            r.control.to_string(),
            r.rows.to_string(),
            r.tombstones.to_string(),
            r.source_keys
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
        ]);
    }
    outln!("{t}");
    outln!(
        "raw lines = typed (the row stored came from it) + stale (a newer change of its key \
         is stored) + quarantined (its dead letter is on the DLQ) + control"
    );
    if report.uncontracted_lines > 0 {
        outln!(
            "raw lines of tables without a contract: {} (each with a no_contract dead letter)",
            report.uncontracted_lines
        );
    }
    if !report.dead_letters.is_empty() {
        let letters: Vec<String> = report
            .dead_letters
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        outln!("dead letters: {}", letters.join(", "));
    }
    if report.duplicate_dead_letters > 0 {
        outln!(
            "duplicate dead letters: {} (copies of a failure_id already counted; harmless)",
            report.duplicate_dead_letters
        );
    }
    if report.is_clean() {
        outln!("audit: clean: every change is a typed row, a stale duplicate, or a dead letter");
        return Ok(());
    }
    if !report.unprocessed.is_empty() {
        outln!(
            "unprocessed: {} change(s) on the dead-letter queue without a failure envelope, moved \
             there by a queue's redrive policy or given up by a stream mapping; nothing says why \
             they failed. Send each back to its source once the cause is gone:",
            report.unprocessed.len()
        );
        for u in &report.unprocessed {
            outln!("  - {u}");
        }
    }
    for (queue, n) in &report.in_flight {
        outln!(
            "in flight: {n} message(s) still on the {queue} queue: run `sluice local run \
             --until-idle` and audit again"
        );
    }
    for u in &report.unread {
        outln!("not checked: {u}");
    }
    if !report.problems.is_empty() {
        outln!("audit: {} problem(s):", report.problems.len());
        for p in &report.problems {
            outln!("  - {p}");
        }
    }
    outln!("audit: not clean: {} finding(s) above", report.findings());
    Ok(())
}
