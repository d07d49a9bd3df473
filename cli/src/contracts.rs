//! `sluice contracts`: check contract files before they are deployed.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use sluice_core::contract::{is_contract_file, parse};

use crate::aws_opts::AwsOpts;

/// Arguments of `sluice contracts`.
#[derive(Debug, Args)]
pub struct ContractsArgs {
    #[command(subcommand)]
    command: ContractsCommand,
}

#[derive(Debug, Subcommand)]
enum ContractsCommand {
    /// Check contract files (YAML or TOML): every problem is printed with its file and field.
    Validate {
        /// Contract files, directories of them, or `s3://bucket/prefix/`.
        #[arg(required = true)]
        paths: Vec<String>,
        #[command(flatten)]
        aws: AwsOpts,
    },
}

impl ContractsArgs {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            ContractsCommand::Validate { paths, aws } => validate(&paths, &aws).await,
        }
    }
}

fn files_under(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("could not list {}", path.display()))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| is_contract_file(&n.to_string_lossy()))
            })
            .collect();
        files.sort();
        Ok(files)
    } else {
        Ok(vec![path.to_owned()])
    }
}

async fn validate(paths: &[String], aws: &AwsOpts) -> anyhow::Result<()> {
    let mut ok = 0usize;
    let mut problems = 0usize;
    for p in paths {
        if p.starts_with("s3://") {
            let sdk = aws.sdk_config().await;
            let source = sluice_pipeline::contracts::ContractSource::parse(p);
            let set =
                sluice_pipeline::contracts::load(&source, &sluice_aws::clients::s3_client(&sdk))
                    .await
                    .with_context(|| format!("could not read contracts from {p}"))?;
            for c in set.all() {
                println!("ok      {p} {} v{}", c.name, c.version);
            }
            ok += set.all().len();
            for rejected in &set.rejected {
                for e in &rejected.0 {
                    println!("error   {e}");
                    problems += 1;
                }
            }
            continue;
        }
        let files = files_under(Path::new(p))?;
        if files.is_empty() {
            anyhow::bail!("{p} holds no contract files (*.yaml, *.yml, *.toml)");
        }
        for file in files {
            let name = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("could not read {name}"))?;
            match parse(&name, &text) {
                Ok(c) => {
                    ok += 1;
                    println!(
                        "ok      {name}: {} v{}, {} fields",
                        c.name,
                        c.version,
                        c.fields.len()
                    );
                }
                Err(errors) => {
                    for e in &errors.0 {
                        println!("error   {e}");
                        problems += 1;
                    }
                }
            }
        }
    }
    if problems > 0 {
        anyhow::bail!("{problems} problem(s) found; {ok} contract(s) are valid");
    }
    println!("{ok} contract(s) valid");
    Ok(())
}
