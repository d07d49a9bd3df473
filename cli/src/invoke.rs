//! `sluice invoke`: run a handler in-process on an event file, like `sam local invoke -e`,
//! without Docker. The handler uses the same configuration variables as the deployed function.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::{handle, Ingest};
use sluice_pipeline::transform::{self, Transform};
use sluice_pipeline::{IngestConfig, TransformConfig};

use crate::aws_opts::AwsOpts;

/// The handlers that can be invoked.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Function {
    /// The ingest handler (DynamoDB Streams, Kinesis or SQS events).
    Ingest,
    /// The transform handler (SQS events of S3 notifications or raw lines).
    Transform,
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
    /// Runs the handler and prints its JSON response on standard output.
    pub async fn run(self) -> anyhow::Result<()> {
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
                let sdk = self.aws.sdk_config().await;
                let deps = Ingest::from_sdk(config, &sdk, sink);
                let response = handle(&event, &deps).await.context(
                    "the ingest handler failed the whole invocation; `sluice invoke ingest` takes a \
                     Lambda event from DynamoDB Streams, Kinesis or SQS (an object with a \
                     `Records` array), not a bare message body",
                )?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &response
                            .to_json()
                            .context("the ingest response could not be written as JSON")?
                    )?
                );
            }
            Function::Transform => {
                let config = TransformConfig::from_env().context(
                    "the transform handler is not configured; for local resources run \
                     `eval \"$(sluice local env)\"` after `sluice local up`",
                )?;
                let sdk = self.aws.sdk_config().await;
                let deps = Transform::from_sdk(config, &sdk, sink);
                let (response, _) = transform::handle(&event, &deps).await.context(
                    "the transform handler failed the whole invocation; `sluice invoke transform` \
                     takes a Lambda SQS event",
                )?;
                println!("{}", serde_json::to_string_pretty(&response)?);
            }
        }
        Ok(())
    }
}
