//! `sluice invoke`: run a handler in-process on an event file, like `sam local invoke -e`,
//! without Docker. The handler uses the same configuration variables as the deployed function.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle_counted, Ingest};
use sluice_pipeline::recovery::function::{RedriveError, RedriveFunction};
use sluice_pipeline::recovery::RecoveryConfig;
use sluice_pipeline::scaler::{Scaler, ScalerConfig, ScalerError};
use sluice_pipeline::transform::{self, Transform};
use sluice_pipeline::{IngestConfig, TransformConfig};

use crate::aws_opts::AwsOpts;
use crate::error::{InvalidInput, Outcome};
use crate::output::Output;

/// The handlers that can be invoked.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Function {
    /// The ingest handler (DynamoDB Streams, Kinesis or SQS events).
    Ingest,
    /// The transform handler (SQS events of S3 notifications or raw lines).
    Transform,
    /// The redrive handler (a scheduled event, or a request such as {"dry_run": true}).
    Redrive,
    /// The scaler handler (a scheduled event, {}, or {"dry_run": true}).
    Scaler,
}

/// Arguments of `sluice invoke`.
#[derive(Debug, Args)]
pub struct InvokeArgs {
    /// The handler to run.
    function: Function,
    /// The Lambda event file, or `-` for standard input.
    #[arg(long, short)]
    event: PathBuf,
    /// Print metrics (EMF lines) on standard error.
    #[arg(long)]
    metrics: bool,
    #[command(flatten)]
    aws: AwsOpts,
}

impl InvokeArgs {
    /// Runs the handler and prints its JSON response on standard output, and a one-line summary
    /// of what it did on standard error.
    pub async fn run(self, _output: Output) -> anyhow::Result<Outcome> {
        let event = if self.event.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("could not read the event from standard input")?;
            s
        } else {
            std::fs::read_to_string(&self.event).with_context(|| {
                format!("could not read the event file {}", self.event.display())
            })?
        };
        let sink = if self.metrics {
            Sink::Stderr
        } else {
            Sink::Discard
        };
        match self.function {
            Function::Ingest => {
                let config = IngestConfig::from_env().context(
                    "the ingest handler is not configured; for local resources run \
                     `eval \"$(sluice local env)\"` after `sluice local up`",
                )?;
                let sdk = self.aws.sdk_config().await?;
                let deps = Ingest::from_sdk(config, &sdk, sink);
                let (response, stats) = match handle_counted(&event, &deps).await {
                    Ok(r) => r,
                    Err(e) => return Err(refused(e.to_string(), "ingest", INGEST_TAKES)),
                };
                outln!(
                    "{}",
                    serde_json::to_string_pretty(
                        &response
                            .to_json()
                            .context("the ingest response could not be written as JSON")?
                    )?
                );
                eprintln!(
                    "ingest: {} record(s): {} landed in {} object(s), {} dead-lettered{}, {} to retry",
                    stats.records_in,
                    stats.landed,
                    stats.objects,
                    stats.quarantined,
                    by_code(&stats.dead_letters),
                    stats.retriable_failures
                );
            }
            Function::Transform => {
                let config = TransformConfig::from_env().context(
                    "the transform handler is not configured; for local resources run \
                     `eval \"$(sluice local env)\"` after `sluice local up`",
                )?;
                let sdk = self.aws.sdk_config().await?;
                let deps = Transform::from_sdk(config, &sdk, sink);
                let (response, stats) = match transform::handle(&event, &deps).await {
                    Ok(r) => r,
                    Err(e) => return Err(refused(e.to_string(), "transform", TRANSFORM_TAKES)),
                };
                outln!("{}", serde_json::to_string_pretty(&response)?);
                let rows = |f: fn(&transform::TableStats) -> usize| -> usize {
                    stats.tables.values().map(f).sum()
                };
                eprintln!(
                    "transform: {} line(s) of {} object(s): {} row(s) written, {} already written, {} stale, {} control, {} dead-lettered{}, {} message(s) to retry",
                    stats.lines,
                    stats.objects,
                    rows(|t| t.written),
                    rows(|t| t.already_written),
                    rows(|t| t.stale),
                    stats.control,
                    stats.dead_letters.values().sum::<usize>(),
                    by_code(&stats.dead_letters),
                    response.batch_item_failures.len()
                );
            }
            Function::Redrive => {
                let config = RecoveryConfig::from_env().context(
                    "the redrive handler is not configured; for local resources run \
                     `eval \"$(sluice local env)\"` after `sluice local up`",
                )?;
                let sdk = self.aws.sdk_config().await?;
                let function = RedriveFunction::from_sdk(config, &sdk, sink);
                let summary = match function.handle(&event).await {
                    Ok(s) => s,
                    Err(e @ RedriveError::UnsupportedEvent(_)) => {
                        return Err(refused(e.to_string(), "redrive", REDRIVE_TAKES))
                    }
                    Err(e) => return Err(e.into()),
                };
                outln!("{}", serde_json::to_string_pretty(&summary)?);
                eprintln!(
                    "redrive{}: {} message(s) read, {} letter(s) selected: {} sent back, {} left, {} error(s)",
                    if summary.dry_run { " (dry run)" } else { "" },
                    summary.read,
                    summary.matched,
                    summary.redriven,
                    summary.left,
                    summary.errors
                );
            }
            Function::Scaler => {
                let config = ScalerConfig::from_env().context(
                    "the scaler handler is not configured: set SLUICE_SCALER_MAPPINGS \
                     (function:uuid[:max], comma-separated) and SLUICE_SCALER_STATE \
                     (s3://bucket/key), as the README's configuration table says",
                )?;
                let sdk = self.aws.sdk_config().await?;
                let scaler = Scaler::from_sdk(config, &sdk, sink);
                let report = match scaler.handle(&event).await {
                    Ok(r) => r,
                    Err(e @ ScalerError::UnsupportedEvent(_)) => {
                        return Err(refused(e.to_string(), "scaler", SCALER_TAKES))
                    }
                    Err(e) => return Err(e.into()),
                };
                outln!("{}", serde_json::to_string_pretty(&report)?);
                for m in &report.mappings {
                    match &m.error {
                        Some(e) => {
                            eprintln!("scaler: {} ({}): not scaled: {e}", m.uuid, m.function)
                        }
                        None => eprintln!(
                            "scaler: {} {} {}: {} -> {}{}: {}",
                            m.source,
                            m.setting,
                            m.uuid,
                            m.before.map_or("unset".to_owned(), |v| v.to_string()),
                            m.after.map_or("unset".to_owned(), |v| v.to_string()),
                            if m.changed { "" } else { " (kept)" },
                            m.reason
                        ),
                    }
                }
                eprintln!(
                    "scaler{}: {} mapping(s): {} changed, {} failed",
                    if report.dry_run { " (dry run)" } else { "" },
                    report.mappings.len(),
                    report.changes,
                    report.failed
                );
                if let Some(first) = report.mappings.iter().find_map(|m| m.error.as_deref()) {
                    anyhow::bail!(
                        "{} of {} mapping(s) could not be scaled; the first: {first}",
                        report.failed,
                        report.mappings.len()
                    );
                }
            }
        }
        Ok(Outcome::Ok)
    }
}

const SCALER_TAKES: &str =
    "`sluice invoke scaler` takes an EventBridge scheduled event, {} or {\"dry_run\": true}";

const REDRIVE_TAKES: &str = "`sluice invoke redrive` takes an EventBridge scheduled event, or \
    a request such as {\"dry_run\": true, \"table\": \"orders\"}";

const INGEST_TAKES: &str = "`sluice invoke ingest` takes a Lambda event from DynamoDB Streams, \
    Kinesis or SQS (an object with a `Records` array), not a bare message body";
const TRANSFORM_TAKES: &str = "`sluice invoke transform` takes a Lambda SQS event";

/// An event the handler refused whole: invalid input (exit 1).
fn refused(cause: String, function: &str, takes: &str) -> anyhow::Error {
    anyhow::Error::new(InvalidInput(cause))
        .context(format!("the {function} handler refused the event: {takes}"))
}

/// ` (not_json 2, empty 1)`, or nothing.
fn by_code(codes: &std::collections::BTreeMap<String, usize>) -> String {
    if codes.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
    format!(" ({})", parts.join(", "))
}
