//! `sluice`: run sluice's change-data-capture pipeline locally, check it, and operate it.
//!
//! `main` only dispatches: every subcommand is an `Args` struct with `run`. Exit codes are 0 ok,
//! 1 differences or invalid input found, 2 could not run; a failure's first line names the real
//! cause ([`error::report`]).

#[macro_use]
mod output;

mod audit;
mod aws_opts;
mod completions;
mod contracts;
mod demo;
mod dlq;
mod error;
mod invoke;
mod local;
mod pipeline;
mod plot;
mod replay;
mod scale;
mod status;
mod tables;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::error::Outcome;
use crate::output::Output;

/// sluice lands change events from DynamoDB Streams and SQS (application events, Debezium, DMS)
/// unchanged in S3, types them through table contracts into DynamoDB tables, and puts every
/// record it cannot process on a dead-letter queue with the reason. This tool runs the whole
/// pipeline locally on an AWS-compatible endpoint, proves nothing was lost (`audit`), and runs a
/// handler on an event file (`invoke`).
#[derive(Debug, Parser)]
#[command(name = "sluice", version, propagate_version = true)]
struct Cli {
    /// How to print results: a table for people, or JSON for scripts.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a handler in-process on a Lambda event file, against the configured endpoint.
    Invoke(invoke::InvokeArgs),
    /// Provision, run and remove a pipeline on a local AWS-compatible endpoint.
    Local(local::LocalArgs),
    /// Check table contracts, and publish them where transform reads them.
    Contracts(contracts::ContractsArgs),
    /// Create or update the typed tables of a deployed pipeline from its contracts.
    Tables(tables::TablesArgs),
    /// Provision a local pipeline, run a realistic workload through it, summarise, and audit.
    Demo(demo::DemoArgs),
    /// Reconcile sources, raw staging, typed tables and dead letters; exit 1 on any difference.
    Audit(audit::AuditArgs),
    /// Show queue depths, dead letters, metrics and alarms of the local pipeline.
    Status(status::StatusArgs),
    /// Inspect dead letters, send them back after a fix, export or purge them.
    Dlq(dlq::DlqArgs),
    /// Run transform again over raw staging for a table and a time range (after a contract
    /// change or a decoder fix).
    Replay(replay::ReplayArgs),
    /// Queue-depth scaling: compare policies in a model of a mapping and its downstream.
    Scale(scale::ScaleArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(completions::CompletionsArgs),
}

impl Command {
    async fn run(self, output: Output) -> anyhow::Result<Outcome> {
        match self {
            Self::Invoke(args) => args.run(output).await,
            Self::Local(args) => args.run(output).await,
            Self::Contracts(args) => args.run(output).await,
            Self::Tables(args) => args.run(output).await,
            Self::Demo(args) => args.run(output).await,
            Self::Audit(args) => args.run(output).await,
            Self::Status(args) => args.run(output).await,
            Self::Dlq(args) => args.run(output).await,
            Self::Replay(args) => args.run(output).await,
            Self::Scale(args) => args.run(output).await,
            Self::Completions(args) => args.run::<Cli>(),
        }
    }
}

/// Logs go to stderr at `warn` (or `RUST_LOG`). The AWS SDK's own warnings (the credential
/// chain probing instance metadata, say) are kept to errors, and the contract loader's reports
/// are left to the commands: the command names the real cause.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "warn,aws_config=error,aws_smithy_runtime=error,aws_smithy_http_client=error,\
             sluice_pipeline::contracts=off",
        )
    });
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(output::colour(std::io::stderr().is_terminal()))
        .with_env_filter(filter)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(cli.command.run(cli.output)) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::Found) => ExitCode::from(1),
        Err(e) => {
            let (code, text) = error::report(&e);
            eprintln!("{text}");
            ExitCode::from(code)
        }
    }
}
