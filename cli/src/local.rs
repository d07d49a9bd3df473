//! `sluice local`: provision and describe sluice's resources on a local endpoint.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_aws::clients::{s3_client, sqs_client};
use sluice_aws::provision::{
    ensure_ingest, ensure_transform, ensure_typed_table, queue_url, Names,
};
use sluice_pipeline::contracts::{load, ContractSource};

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
    /// Directory of the contracts whose typed tables to create [default: infra/contracts, when
    /// it exists].
    #[arg(long, global = true, env = "SLUICE_LOCAL_CONTRACTS")]
    contracts: Option<PathBuf>,
    #[command(flatten)]
    aws: AwsOpts,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Create the raw bucket, the DLQ, the ingest and transform queues (with redrive policies),
    /// the raw bucket's notification to the transform queue, and a typed table per contract.
    /// Running it again is harmless.
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
        let contracts = match &self.contracts {
            Some(dir) => Some(std::fs::canonicalize(dir).with_context(|| {
                format!("the contracts directory {} does not exist", dir.display())
            })?),
            None => std::fs::canonicalize("infra/contracts").ok(),
        };
        match self.command {
            LocalCommand::Up => {
                let endpoint = self
                    .aws
                    .endpoint_url
                    .as_deref()
                    .unwrap_or("the default AWS endpoint");
                let hint = || {
                    format!("could not create the local resources at {endpoint}; is the emulator running (`make emulator`)?")
                };
                let r = ensure_ingest(&s3, &sqs, &names, false)
                    .await
                    .with_context(hint)?;
                let transform_url = ensure_transform(&s3, &sqs, &names, &r.dlq_url)
                    .await
                    .with_context(hint)?;
                let set = match &contracts {
                    Some(dir) => load(&ContractSource::Dir(dir.clone()), &s3).await?,
                    None => {
                        eprintln!("No contracts directory (--contracts): no typed tables created.");
                        Default::default()
                    }
                };
                if !set.rejected.is_empty() {
                    let problems: Vec<String> =
                        set.rejected.iter().map(ToString::to_string).collect();
                    anyhow::bail!("some contracts do not check:\n{}", problems.join("\n"));
                }
                let ddb = aws_sdk_dynamodb::Client::new(&sdk);
                eprintln!("raw bucket       s3://{}", r.raw_bucket);
                eprintln!("dead letters     {}", r.dlq_url);
                eprintln!("ingest queue     {}", r.ingest_queue_url);
                eprintln!("transform queue  {transform_url}");
                for c in set.all() {
                    let table = format!("{}{}", names.typed_table_prefix, c.name);
                    ensure_typed_table(&ddb, &table, &c.key_schema())
                        .await
                        .with_context(hint)?;
                    eprintln!(
                        "typed table      {table} (contract {} v{})",
                        c.name, c.version
                    );
                }
                eprintln!("Ready. Next: eval \"$(sluice local env)\"");
            }
            LocalCommand::Env => {
                let missing = || "the local resources do not exist; run `sluice local up` first";
                let dlq = queue_url(&sqs, &names.dlq).await.context(missing())?;
                let ingest = queue_url(&sqs, &names.ingest_queue)
                    .await
                    .context(missing())?;
                let transform = queue_url(&sqs, &names.transform_queue)
                    .await
                    .context(missing())?;
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
                println!(
                    "export SLUICE_TRANSFORM_QUEUE_URL={}",
                    shell_quote(&transform)
                );
                if let Some(dir) = &contracts {
                    println!(
                        "export SLUICE_CONTRACTS={}",
                        shell_quote(&dir.display().to_string())
                    );
                }
                println!(
                    "export SLUICE_TYPED_TABLE_PREFIX={}",
                    shell_quote(&names.typed_table_prefix)
                );
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
