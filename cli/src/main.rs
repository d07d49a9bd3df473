//! `sluice`: run handlers locally, provision local resources, and operate the pipeline.

mod audit;
mod aws_opts;
mod contracts;
mod demo;
mod invoke;
mod local;
mod pipeline;
mod status;

use clap::{Parser, Subcommand};

/// sluice: a change-data-capture pipeline for AWS.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a handler in-process on a Lambda event file, against the configured endpoint.
    Invoke(invoke::InvokeArgs),
    /// Provision and describe local resources on an AWS-compatible endpoint.
    Local(local::LocalArgs),
    /// Check table contracts.
    Contracts(contracts::ContractsArgs),
    /// Provision a local pipeline, run a realistic workload through it, summarise, and audit.
    Demo(demo::DemoArgs),
    /// Reconcile sources, raw staging, typed tables and dead letters; exit 1 on any loss.
    Audit(audit::AuditArgs),
    /// Show queue depths, dead letters, metrics and alarms of the local pipeline.
    Status(status::StatusArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match Cli::parse().command {
        Command::Invoke(args) => args.run().await,
        Command::Local(args) => args.run().await,
        Command::Contracts(args) => args.run().await,
        Command::Demo(args) => args.run().await,
        Command::Audit(args) => args.run().await,
        Command::Status(args) => args.run().await,
    }
}
