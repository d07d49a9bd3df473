//! `sluice local`: provision, describe, run and remove a pipeline on a local endpoint.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_aws::clients::{s3_client, sqs_client, SdkConfig};
use sluice_local::mappings::{
    mappings_path, Backoff, FunctionKind, Mapping, Mappings, ScalingOptions,
};
use sluice_local::provision::{
    ensure_ingest, ensure_transform, ensure_typed_table, queue_arn, Names,
};
use sluice_pipeline::contracts::{load, ContractSource};

use crate::aws_opts::AwsOpts;
use crate::error::{InvalidInput, Outcome};
use crate::output::{self, Output};
use crate::pipeline::{self, LocalPipeline, Progress};

/// Arguments of `sluice local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    command: LocalCommand,
    #[command(flatten)]
    pub common: LocalOpts,
}

/// What every `local` subcommand (and `demo`, `audit`, `status`) takes.
#[derive(Debug, Clone, Args)]
pub struct LocalOpts {
    /// Prefix of every resource name.
    #[arg(
        long,
        global = true,
        default_value = "sluice-local",
        env = "SLUICE_LOCAL_PREFIX"
    )]
    pub prefix: String,
    /// Directory of the contracts [default: infra/contracts, when it exists].
    #[arg(long, global = true, env = "SLUICE_LOCAL_CONTRACTS")]
    pub contracts: Option<PathBuf>,
    /// Where local mappings and checkpoints are kept.
    #[arg(
        long,
        global = true,
        default_value = ".sluice",
        env = "SLUICE_LOCAL_STATE"
    )]
    pub state_dir: PathBuf,
    #[command(flatten)]
    pub aws: AwsOpts,
}

impl LocalOpts {
    /// The contracts directory, made absolute.
    pub fn contracts_dir(&self) -> anyhow::Result<Option<PathBuf>> {
        match &self.contracts {
            Some(dir) => Ok(Some(std::fs::canonicalize(dir).map_err(|e| {
                anyhow::Error::new(InvalidInput(format!(
                    "the contracts directory {} does not exist ({e}); pass --contracts DIR",
                    dir.display()
                )))
            })?)),
            None => Ok(std::fs::canonicalize("infra/contracts").ok()),
        }
    }

    /// The local pipeline of this prefix, which must exist.
    pub async fn pipeline(&self, sdk: &SdkConfig) -> anyhow::Result<LocalPipeline> {
        LocalPipeline::resolve(
            &sqs_client(sdk),
            &self.prefix,
            self.contracts_dir()?,
            &self.state_dir,
        )
        .await
    }
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Create the raw bucket, the DLQ, the ingest and transform queues (with redrive policies),
    /// the raw bucket's notification to the transform queue, a typed table per contract, and the
    /// local event source mappings. Running it again is harmless.
    Up {
        /// A DynamoDB table (with a stream) whose changes ingest takes; repeatable.
        #[arg(long = "source-table")]
        source_tables: Vec<String>,
        /// A Kinesis data stream (name or ARN) a DynamoDB table streams its changes to, which
        /// ingest takes as `ddb-kinesis`; repeatable
        #[arg(long = "kinesis-stream")]
        kinesis_streams: Vec<String>,
        /// Also create the FIFO path, as the stack's EnableFifo does: a FIFO ingest queue
        /// (`<prefix>-ingest.fifo`, for changes whose order per message group matters) with its
        /// own FIFO dead-letter queue (`<prefix>-dlq.fifo`)
        #[arg(long)]
        fifo: bool,
    },
    /// Print the environment the functions need, as `export NAME=value` lines.
    Env,
    /// Run the local event source mappings: poll the streams and queues and call the handlers.
    Run {
        /// Exit once every stream and queue is drained.
        #[arg(long)]
        until_idle: bool,
        /// Seconds before a failed message or stream batch is tried again the first time; each
        /// further failure waits four times longer, up to --max-retry-delay-secs
        #[arg(long, default_value_t = 2)]
        retry_delay_secs: u64,
        /// The longest wait between two tries. With the defaults, the five receives a local
        /// queue allows ride out an outage of over two minutes
        #[arg(long, default_value_t = 120)]
        max_retry_delay_secs: u64,
        /// Seconds between progress lines (on a terminal, or as JSON lines with --output json);
        /// 0 for none
        #[arg(long, default_value_t = 10)]
        progress_secs: u64,
        /// Let the scaling policy set each queue mapping's concurrency, from 2 up to this (as the
        /// scaler function does on AWS); without it, each mapping keeps its own fixed concurrency
        #[arg(long)]
        max_concurrency: Option<u32>,
        /// With --max-concurrency: the seconds a backlog should drain in
        #[arg(long, default_value_t = 120.0, requires = "max_concurrency")]
        scale_target_secs: f64,
        /// With --max-concurrency: seconds between two decisions of the policy
        #[arg(long, default_value_t = 10, requires = "max_concurrency")]
        scale_interval_secs: u64,
        /// With --max-concurrency: seconds every recommendation must have been lower before the
        /// concurrency is lowered
        #[arg(long, default_value_t = 60, requires = "max_concurrency")]
        scale_down_window_secs: u64,
    },
    /// Delete the local pipeline: queues, bucket, typed tables and local state.
    Down {
        /// Also delete these source tables.
        #[arg(long = "source-table")]
        source_tables: Vec<String>,
    },
}

impl LocalArgs {
    /// Runs the subcommand.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        let sdk = self.common.aws.sdk_config().await?;
        match self.command {
            LocalCommand::Up {
                source_tables,
                kinesis_streams,
                fifo,
            } => {
                let sources = Sources {
                    tables: source_tables,
                    kinesis: kinesis_streams,
                    fifo,
                };
                let p = up(&sdk, &self.common, &sources, !out.json()).await?;
                if out.json() {
                    output::print_json(&serde_json::json!({
                        "prefix": p.prefix,
                        "variables": p.variables(),
                    }))?;
                }
            }
            LocalCommand::Env => {
                let p = self.common.pipeline(&sdk).await?;
                let mut vars: Vec<(String, String)> = Vec::new();
                if let Some(url) = &self.common.aws.endpoint_url {
                    vars.push(("AWS_ENDPOINT_URL".into(), url.clone()));
                }
                if let Some(region) = sdk.region() {
                    vars.push(("AWS_REGION".into(), region.to_string()));
                    vars.push(("AWS_DEFAULT_REGION".into(), region.to_string()));
                }
                for (k, v) in p.variables() {
                    vars.push((k.to_owned(), v));
                }
                if out.json() {
                    output::print_json(
                        &vars
                            .into_iter()
                            .collect::<std::collections::BTreeMap<_, _>>(),
                    )?;
                } else {
                    for (k, v) in vars {
                        outln!("export {k}={}", shell_quote(&v));
                    }
                }
            }
            LocalCommand::Run {
                until_idle,
                retry_delay_secs,
                max_retry_delay_secs,
                progress_secs,
                max_concurrency,
                scale_target_secs,
                scale_interval_secs,
                scale_down_window_secs,
            } => {
                let scaling = match max_concurrency {
                    None => None,
                    Some(max) => {
                        let config = sluice_core::scaling::ScalingConfig {
                            max,
                            backlog_target_secs: scale_target_secs,
                            scale_down_window_secs,
                            // Local batches start at once: no cold start to allow for.
                            cold_start_secs: 0.0,
                            ..sluice_core::scaling::ScalingConfig::default()
                        };
                        config.validate().map_err(|e| {
                            anyhow::Error::new(crate::error::InvalidInput(format!(
                                "--max-concurrency and the scaling settings: {e}"
                            )))
                        })?;
                        Some(ScalingOptions {
                            config,
                            interval: Duration::from_secs(scale_interval_secs.max(1)),
                        })
                    }
                };
                let p = self.common.pipeline(&sdk).await?;
                let shutdown = pipeline::shutdown_on_signals();
                // Progress goes to a terminal (a line a while) or, with --output json, to
                // stdout as JSON lines; a script that reads stderr sees only the summary.
                let progress = (progress_secs > 0 && (out.json() || output::stderr_is_terminal()))
                    .then(|| Progress {
                        interval: Duration::from_secs(progress_secs),
                        json: out.json(),
                    });
                let (report, totals) = pipeline::run(
                    &sdk,
                    &p,
                    until_idle,
                    shutdown,
                    Backoff {
                        base: Duration::from_secs(retry_delay_secs),
                        cap: Duration::from_secs(max_retry_delay_secs.max(retry_delay_secs)),
                    },
                    progress,
                    scaling,
                )
                .await?;
                for (mapping, s) in &report.scaling {
                    if !out.json() {
                        eprintln!(
                            "{mapping}: concurrency {} now, {} at most, {} change(s){}",
                            s.setting,
                            s.highest,
                            s.changes,
                            s.last_reason
                                .as_deref()
                                .map(|r| format!("; last: {r}"))
                                .unwrap_or_default()
                        );
                    }
                }
                let summary = serde_json::json!({
                    "invocations": report.invocations,
                    "records": report.records,
                    "failed_invocations": report.failed_invocations,
                    "on_failure_records": report.on_failure_records,
                    "drained": report.drained,
                    "scaling": report.scaling,
                    "landed": totals.sum("ingest", "RecordsLanded"),
                    "rows_written": totals.sum("transform", "RowsWritten"),
                    "rows_already_written": totals.sum("transform", "RowsAlreadyWritten"),
                    "rows_stale": totals.sum("transform", "RowsStale"),
                    "quarantined": totals.sum("ingest", "RecordsQuarantined") + totals.sum("transform", "RecordsQuarantined"),
                });
                if out.json() {
                    outln!("{}", serde_json::to_string(&summary)?);
                } else {
                    eprintln!(
                        "{} invocations, {} records, {} failed invocations, {} on-failure records; landed {}, rows written {} (and {} found already written), stale {}, quarantined {}{}",
                        report.invocations,
                        report.records,
                        report.failed_invocations,
                        report.on_failure_records,
                        totals.sum("ingest", "RecordsLanded"),
                        totals.sum("transform", "RowsWritten"),
                        totals.sum("transform", "RowsAlreadyWritten"),
                        totals.sum("transform", "RowsStale"),
                        totals.sum("ingest", "RecordsQuarantined")
                            + totals.sum("transform", "RecordsQuarantined"),
                        if report.drained { "; drained" } else { "" }
                    );
                }
            }
            LocalCommand::Down { source_tables } => {
                down(&sdk, &self.common, &source_tables).await?
            }
        }
        Ok(Outcome::Ok)
    }
}

/// What a local pipeline takes changes from, besides its ingest queue.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// DynamoDB tables whose streams ingest reads.
    pub tables: Vec<String>,
    /// Kinesis data streams (names or ARNs) of DynamoDB changes.
    pub kinesis: Vec<String>,
    /// Whether to create the FIFO ingest queue and its dead-letter queue.
    pub fifo: bool,
}

/// Creates the local pipeline (idempotent) and registers a mapping per source.
pub async fn up(
    sdk: &SdkConfig,
    opts: &LocalOpts,
    sources: &Sources,
    verbose: bool,
) -> anyhow::Result<LocalPipeline> {
    let (s3, sqs) = (s3_client(sdk), sqs_client(sdk));
    let names = Names::new(&opts.prefix);
    // Inputs first: nothing is created for contracts that do not check.
    let contracts = opts.contracts_dir()?;
    let set = match &contracts {
        Some(dir) => load(&ContractSource::Dir(dir.clone()), &s3).await?,
        None => Default::default(),
    };
    if !set.rejected.is_empty() {
        let problems: Vec<String> = set.rejected.iter().map(ToString::to_string).collect();
        return Err(anyhow::Error::new(InvalidInput(problems.join("\n"))).context(
            "some contracts do not check (`sluice contracts validate DIR` lists every problem); \
             nothing was created",
        ));
    }
    let hint = || format!("could not create the local pipeline {:?}", opts.prefix);
    let r = ensure_ingest(&s3, &sqs, &names, false)
        .await
        .with_context(hint)?;
    let fifo = match sources.fifo {
        true => Some(
            ensure_ingest(&s3, &sqs, &names, true)
                .await
                .with_context(hint)?,
        ),
        false => None,
    };
    let transform_url = ensure_transform(&s3, &sqs, &names, &r.dlq_url)
        .await
        .with_context(hint)?;
    sluice_local::provision::ensure_alarms(
        &aws_sdk_cloudwatch::Client::new(sdk),
        &names,
        &opts.prefix,
    )
    .await
    .with_context(hint)?;
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let say = |line: String| {
        if verbose {
            eprintln!("{line}");
        }
    };
    say(format!("raw bucket       s3://{}", r.raw_bucket));
    say(format!("dead letters     {}", r.dlq_url));
    say(format!("ingest queue     {}", r.ingest_queue_url));
    if let Some(f) = &fifo {
        say(format!("fifo ingest      {}", f.ingest_queue_url));
        say(format!("fifo dead letters {}", f.dlq_url));
    }
    say(format!("transform queue  {transform_url}"));
    if contracts.is_none() {
        say("No contracts directory (--contracts): no typed tables created.".into());
    }
    for c in set.all() {
        let table = format!("{}{}", names.typed_table_prefix, c.name);
        ensure_typed_table(&ddb, &table, &c.key_schema())
            .await
            .with_context(hint)?;
        say(format!(
            "typed table      {table} (contract {} v{})",
            c.name, c.version
        ));
    }
    let path = mappings_path(&opts.state_dir, &opts.prefix);
    let mut mappings =
        Mappings::load(&path).with_context(|| format!("could not read {}", path.display()))?;
    mappings.put(Mapping::queue(
        "ingest-queue",
        FunctionKind::Ingest,
        &r.ingest_queue_url,
        &queue_arn(&sqs, &r.ingest_queue_url).await?,
    ));
    if let Some(f) = &fifo {
        mappings.put(Mapping::fifo_queue(
            "ingest-fifo-queue",
            FunctionKind::Ingest,
            &f.ingest_queue_url,
            &queue_arn(&sqs, &f.ingest_queue_url).await?,
        ));
    }
    mappings.put(Mapping::queue(
        "transform-queue",
        FunctionKind::Transform,
        &transform_url,
        &queue_arn(&sqs, &transform_url).await?,
    ));
    for table in &sources.tables {
        let stream_arn = ddb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .with_context(|| format!("the source table {table} does not exist"))?
            .table
            .and_then(|t| t.latest_stream_arn)
            .with_context(|| {
                format!("the source table {table} has no stream; enable NEW_AND_OLD_IMAGES")
            })?;
        mappings.put(Mapping::stream(table, &stream_arn, &r.dlq_url));
        say(format!("stream mapping   {table} → ingest"));
    }
    let kinesis = aws_sdk_kinesis::Client::new(sdk);
    for stream in &sources.kinesis {
        let summary = if stream.starts_with("arn:") {
            kinesis.describe_stream_summary().stream_arn(stream)
        } else {
            kinesis.describe_stream_summary().stream_name(stream)
        }
        .send()
        .await
        .with_context(|| format!("the Kinesis stream {stream} does not exist; create it first"))?;
        let Some(d) = summary.stream_description_summary else {
            anyhow::bail!("the Kinesis stream {stream} was not described");
        };
        mappings.put(Mapping::kinesis(&d.stream_name, &d.stream_arn, &r.dlq_url));
        say(format!("kinesis mapping  {} → ingest", d.stream_name));
    }
    mappings
        .save(&path)
        .with_context(|| format!("could not write {}", path.display()))?;
    say(format!("mappings         {}", path.display()));
    say("Ready. Next: `sluice local run`, or eval \"$(sluice local env)\" to invoke handlers yourself".into());
    LocalPipeline::resolve(&sqs, &opts.prefix, contracts, &opts.state_dir).await
}

/// Deletes the local pipeline of `opts.prefix`, and the named source tables.
pub async fn down(
    sdk: &SdkConfig,
    opts: &LocalOpts,
    source_tables: &[String],
) -> anyhow::Result<()> {
    let (s3, sqs) = (s3_client(sdk), sqs_client(sdk));
    let ddb = aws_sdk_dynamodb::Client::new(sdk);
    let names = Names::new(&opts.prefix);
    for q in [
        &names.ingest_queue,
        &names.transform_queue,
        &names.dlq,
        &names.ingest_fifo_queue,
        &names.dlq_fifo,
    ] {
        if let Ok(url) = sluice_local::provision::queue_url(&sqs, q).await {
            sqs.delete_queue()
                .queue_url(url)
                .send()
                .await
                .with_context(|| format!("could not delete queue {q}"))?;
        }
    }
    if s3
        .head_bucket()
        .bucket(&names.raw_bucket)
        .send()
        .await
        .is_ok()
    {
        let keys = sluice_aws::listing::list_keys(&s3, &names.raw_bucket, "")
            .await
            .context("could not list the raw bucket")?;
        for key in keys {
            s3.delete_object()
                .bucket(&names.raw_bucket)
                .key(&key)
                .send()
                .await
                .context("could not empty the raw bucket")?;
        }
        s3.delete_bucket()
            .bucket(&names.raw_bucket)
            .send()
            .await
            .context("could not delete the raw bucket")?;
    }
    let mut tables: Vec<String> = source_tables.to_vec();
    let mut start = None;
    loop {
        let out = ddb
            .list_tables()
            .set_exclusive_start_table_name(start)
            .send()
            .await
            .context("could not list tables")?;
        tables.extend(
            out.table_names()
                .iter()
                .filter(|t| t.starts_with(&names.typed_table_prefix))
                .cloned(),
        );
        match out.last_evaluated_table_name() {
            Some(t) => start = Some(t.to_owned()),
            None => break,
        }
    }
    for t in tables {
        match ddb.delete_table().table_name(&t).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) => {}
            Err(e) => return Err(e).with_context(|| format!("could not delete table {t}")),
        }
    }
    let state = opts.state_dir.join(&opts.prefix);
    if state.exists() {
        std::fs::remove_dir_all(&state)
            .with_context(|| format!("could not remove {}", state.display()))?;
    }
    Ok(())
}

/// Quotes a value for a POSIX shell when it holds anything but safe characters.
fn shell_quote(v: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c);
    if !v.is_empty() && v.chars().all(safe) {
        v.to_owned()
    } else {
        format!("'{}'", v.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn quotes_only_when_needed() {
        assert_eq!(
            shell_quote("http://127.0.0.1:4566"),
            "http://127.0.0.1:4566"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
