//! `sluice local`: provision and describe sluice's resources on a local endpoint.

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_aws::clients::{s3_client, sqs_client};
use sluice_aws::provision::{ensure_ingest, queue_url, Names};

use crate::aws_opts::AwsOpts;

/// Arguments of `sluice local`.
#[derive(Debug, Args)]
pub struct LocalArgs {
    #[command(subcommand)]
    command: LocalCommand,
    /// Prefix of every resource name.
    #[arg(
        long,
        global = true,
        default_value = "sluice-local",
        env = "SLUICE_LOCAL_PREFIX"
    )]
    prefix: String,
    #[command(flatten)]
    aws: AwsOpts,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Create the raw bucket, the DLQ and the ingest queue with its redrive policy (idempotent).
    Up,
    /// Print the environment the functions need, as `export NAME=value` lines.
    Env,
}

impl LocalArgs {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        let sdk = self.aws.sdk_config().await;
        let (s3, sqs) = (s3_client(&sdk), sqs_client(&sdk));
        let names = Names::new(&self.prefix);
        match self.command {
            LocalCommand::Up => {
                let r = ensure_ingest(&s3, &sqs, &names, false).await.with_context(|| {
                    format!(
                        "could not create the local resources at {}; is the emulator running (`make emulator`)?",
                        self.aws.endpoint_url.as_deref().unwrap_or("the default AWS endpoint")
                    )
                })?;
                eprintln!("raw bucket    s3://{}", r.raw_bucket);
                eprintln!("dead letters  {}", r.dlq_url);
                eprintln!("ingest queue  {}", r.ingest_queue_url);
                eprintln!("Ready. Next: eval \"$(sluice local env)\"");
            }
            LocalCommand::Env => {
                let dlq = queue_url(&sqs, &names.dlq)
                    .await
                    .context("the DLQ does not exist; run `sluice local up` first")?;
                let ingest = queue_url(&sqs, &names.ingest_queue)
                    .await
                    .context("the ingest queue does not exist; run `sluice local up` first")?;
                if let Some(url) = &self.aws.endpoint_url {
                    println!("export AWS_ENDPOINT_URL={}", shell_quote(url));
                }
                if let Some(region) = sdk.region() {
                    println!("export AWS_REGION={}", shell_quote(region.as_ref()));
                }
                println!(
                    "export SLUICE_RAW_BUCKET={}",
                    shell_quote(&names.raw_bucket)
                );
                println!("export SLUICE_DLQ_URL={}", shell_quote(&dlq));
                println!("export SLUICE_INGEST_QUEUE_URL={}", shell_quote(&ingest));
            }
        }
        Ok(())
    }
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
