//! `sluice contracts`: check contract files before they are deployed.
//!
//! `validate` reports every problem of every file in one run, each with its file, line and path,
//! and exits 1 when any file has one. `--output json` prints:
//!
//! ```json
//! {"valid": 1, "invalid": 1,
//!  "files": [{"file": "infra/contracts/orders.yaml", "ok": true, "contract": "orders", "version": 1,
//!             "fields": 9, "problems": []},
//!            {"file": "bad.yaml", "ok": false, "problems": [{"line": 3, "path": "colour",
//!              "message": "unknown key; expected one of …"}]}]}
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_core::contract::{is_contract_file, parse, Contract, ContractErrors};

use crate::aws_opts::AwsOpts;
use crate::error::{InvalidInput, Outcome};
use crate::output::{self, Output};

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
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        match self.command {
            ContractsCommand::Validate { paths, aws } => validate(&paths, &aws, out).await,
        }
    }
}

/// One problem, for JSON.
#[derive(Debug, Serialize)]
struct Problem {
    line: Option<usize>,
    path: String,
    message: String,
}

/// One file's verdict, for JSON.
#[derive(Debug, Serialize)]
struct FileReport {
    file: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    contract: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fields: Option<usize>,
    problems: Vec<Problem>,
}

/// Every file's verdict, for JSON.
#[derive(Debug, Serialize)]
struct Report {
    valid: usize,
    invalid: usize,
    files: Vec<FileReport>,
}

fn problems(errors: &ContractErrors) -> Vec<Problem> {
    errors
        .0
        .iter()
        .map(|e| Problem {
            line: e.line,
            path: e.field.clone(),
            message: e.message.clone(),
        })
        .collect()
}

fn verdict(file: String, result: Result<&Contract, &ContractErrors>) -> FileReport {
    match result {
        Ok(c) => FileReport {
            file,
            ok: true,
            contract: Some(c.name.clone()),
            version: Some(c.version),
            fields: Some(c.fields.len()),
            problems: Vec::new(),
        },
        Err(e) => FileReport {
            file,
            ok: false,
            contract: None,
            version: None,
            fields: None,
            problems: problems(e),
        },
    }
}

fn files_under(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    if !path.exists() {
        return Err(anyhow::Error::new(InvalidInput(format!(
            "{} does not exist; pass contract files, directories of them, or s3://bucket/prefix/",
            path.display()
        ))));
    }
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

async fn validate(paths: &[String], aws: &AwsOpts, out: Output) -> anyhow::Result<Outcome> {
    let mut files = Vec::new();
    for p in paths {
        if p.starts_with("s3://") {
            let sdk = aws.sdk_config().await?;
            let source = sluice_pipeline::contracts::ContractSource::parse(p);
            let set =
                sluice_pipeline::contracts::load(&source, &sluice_aws::clients::s3_client(&sdk))
                    .await
                    .with_context(|| format!("could not read contracts from {p}"))?;
            for c in set.all() {
                files.push(verdict(format!("{p}{}", c.name), Ok(c)));
            }
            for rejected in &set.rejected {
                let file = rejected
                    .0
                    .first()
                    .map_or_else(|| p.clone(), |e| e.file.clone());
                files.push(verdict(file, Err(rejected)));
            }
            continue;
        }
        let found = files_under(Path::new(p))?;
        if found.is_empty() {
            return Err(anyhow::Error::new(InvalidInput(format!(
                "{p} holds no contract files (*.yaml, *.yml, *.toml)"
            ))));
        }
        for file in found {
            let name = file.display().to_string();
            let text =
                std::fs::read_to_string(&file).with_context(|| format!("could not read {name}"))?;
            let parsed = parse(&name, &text);
            files.push(verdict(name, parsed.as_ref()));
        }
    }
    let invalid = files.iter().filter(|f| !f.ok).count();
    let report = Report {
        valid: files.len() - invalid,
        invalid,
        files,
    };
    if out.json() {
        output::print_json(&report)?;
    } else {
        for f in &report.files {
            if f.ok {
                outln!(
                    "ok      {}: {} v{}, {} fields",
                    f.file,
                    f.contract.as_deref().unwrap_or_default(),
                    f.version.unwrap_or_default(),
                    f.fields.unwrap_or_default()
                );
            }
            for p in &f.problems {
                let line = p.line.map_or_else(String::new, |l| format!(":{l}"));
                let path = if p.path.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", p.path)
                };
                outln!("error   {}{line}: {path}{}", f.file, p.message);
            }
        }
        let problems: usize = report.files.iter().map(|f| f.problems.len()).sum();
        if problems > 0 {
            outln!(
                "{problems} problem(s) in {} file(s); {} contract(s) valid",
                report.invalid,
                report.valid
            );
        } else {
            outln!("{} contract(s) valid", report.valid);
        }
    }
    Ok(if report.invalid > 0 {
        Outcome::Found
    } else {
        Outcome::Ok
    })
}
