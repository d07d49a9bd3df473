//! `sluice contracts`: check contract files before they are deployed, and publish them where
//! transform reads them.
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
//!
//! `publish PATH... --to s3://bucket/prefix/` checks every file first, as `validate` does, and
//! uploads nothing unless all of them check and no two define the same contract (nor would land
//! on the same key, nor define one that another file under the prefix already defines:
//! transform would load both). Each file goes to `<prefix><file name>`, the way
//! `SLUICE_CONTRACTS` lists them (every `.yaml`, `.yml` or `.toml` key under the prefix), with
//! the content type of its extension; a file whose bytes are already there is left alone. Exit 1
//! when it published nothing for those reasons, 2 when it could not run. `--output json` prints:
//!
//! ```json
//! {"to": "s3://bucket/contracts/", "dry_run": false, "valid": 2, "invalid": 0,
//!  "rejected": [],
//!  "conflicts": [],
//!  "files": [{"file": "infra/contracts/orders.yaml", "contract": "orders", "version": 1,
//!             "key": "contracts/orders.yaml", "content_type": "application/yaml",
//!             "action": "uploaded", "published_version": null, "note": null}],
//!  "uploaded": 1, "unchanged": 0}
//! ```
//!
//! `rejected` holds `validate`'s entries (`file`, `ok`, `problems`) of the files that do not
//! check; `conflicts` holds `{"contract": "orders" or null, "files": [...], "message": "…"}`;
//! `files` is empty unless both are. `action` is `uploaded`, `unchanged` or `would upload`
//! (`--dry-run`); `published_version` is the version of the object it replaces, and `note` warns
//! when a changed contract's version is not above it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_core::contract::{is_contract_file, parse, Contract, ContractError, ContractErrors};

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
    /// Check contract files, then upload them where transform reads them (SLUICE_CONTRACTS),
    /// skipping files already there: nothing is uploaded unless every file checks.
    Publish {
        /// Contract files, or directories of them.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Where to publish: s3://bucket/prefix/, as the deploy's SLUICE_CONTRACTS names it
        /// (s3://<raw bucket>/contracts/).
        #[arg(long, value_name = "s3://B/P/")]
        to: String,
        /// Check and compare only: say what would be uploaded, upload nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        aws: AwsOpts,
    },
}

impl ContractsArgs {
    /// Runs the subcommand.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        match self.command {
            ContractsCommand::Validate { paths, aws } => validate(&paths, &aws, out).await,
            ContractsCommand::Publish {
                paths,
                to,
                dry_run,
                aws,
            } => publish(&paths, &to, dry_run, &aws, out).await,
        }
    }
}

/// One problem, for JSON.
#[derive(Debug, Serialize)]
pub(crate) struct Problem {
    line: Option<usize>,
    path: String,
    message: String,
}

/// One file's verdict, for JSON.
#[derive(Debug, Serialize)]
pub(crate) struct FileReport {
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

/// A contract file read and checked, as `validate` reports it.
pub(crate) struct Checked {
    /// The file: its path, or, for a contract read from S3, the prefix and the contract's name.
    pub(crate) file: String,
    /// A local file's bytes, exactly as read (what `publish` uploads).
    pub(crate) bytes: Option<Vec<u8>>,
    /// The contract, or every problem of the file.
    pub(crate) result: Result<Contract, ContractErrors>,
}

/// Reads and checks every contract of `paths` (files, directories of them, `s3://` prefixes
/// read as transform reads them). A path that does not exist or holds no contract file is an
/// error (exit 1); a file that does not check is a [`Checked`] with its problems.
pub(crate) async fn check(paths: &[String], aws: &AwsOpts) -> anyhow::Result<Vec<Checked>> {
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
                files.push(Checked {
                    file: format!("{p}{}", c.name),
                    bytes: None,
                    result: Ok(Contract::clone(c)),
                });
            }
            for rejected in &set.rejected {
                let file = rejected
                    .0
                    .first()
                    .map_or_else(|| p.clone(), |e| e.file.clone());
                files.push(Checked {
                    file,
                    bytes: None,
                    result: Err(rejected.clone()),
                });
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
            let bytes = std::fs::read(&file).with_context(|| format!("could not read {name}"))?;
            let result = match std::str::from_utf8(&bytes) {
                Ok(text) => parse(&name, text),
                Err(e) => Err(ContractErrors(vec![ContractError {
                    file: name.clone(),
                    line: None,
                    field: String::new(),
                    message: format!("the file is not UTF-8 text ({e})"),
                }])),
            };
            files.push(Checked {
                file: name,
                bytes: Some(bytes),
                result,
            });
        }
    }
    Ok(files)
}

/// The verdicts of the files that do not check.
pub(crate) fn rejected(checked: &[Checked]) -> Vec<FileReport> {
    checked
        .iter()
        .filter(|c| c.result.is_err())
        .map(|c| verdict(c.file.clone(), c.result.as_ref()))
        .collect()
}

/// The problems of these verdicts, all told.
pub(crate) fn problem_count(files: &[FileReport]) -> usize {
    files.iter().map(|f| f.problems.len()).sum()
}

/// Prints every problem of these verdicts, one line each, as `validate` does.
pub(crate) fn print_problems(files: &[FileReport]) {
    for f in files {
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
}

/// Two or more files that cannot all be deployed, and why.
#[derive(Debug, Serialize)]
pub(crate) struct Conflict {
    /// The contract they both define, if that is the conflict.
    pub(crate) contract: Option<String>,
    /// The files.
    pub(crate) files: Vec<String>,
    /// What is wrong, and what to do.
    pub(crate) message: String,
}

/// Contracts defined by more than one file: transform would load them all, and they would
/// write the same typed table.
pub(crate) fn duplicate_names<'a>(
    contracts: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<Conflict> {
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (file, name) in contracts {
        by_name.entry(name).or_default().push(file.to_owned());
    }
    by_name
        .into_iter()
        .filter(|(_, files)| files.len() > 1)
        .map(|(name, files)| {
            let mut distinct: Vec<String> = Vec::new();
            for f in &files {
                if !distinct.contains(f) {
                    distinct.push(f.clone());
                }
            }
            let where_ = if distinct.len() == 1 {
                format!("{} files under {}", files.len(), distinct.join(""))
            } else {
                distinct.join(" and ")
            };
            Conflict {
                contract: Some(name.to_owned()),
                message: format!(
                    "contract {name:?} is defined by {where_}; keep one file per contract \
                     (transform would load them all, into one table)"
                ),
                files,
            }
        })
        .collect()
}

/// `2 problem(s) in 1 file(s)`, `1 conflict(s)`, or both.
pub(crate) fn what_stops(rejected: &[FileReport], conflicts: &[Conflict]) -> String {
    let mut parts = Vec::new();
    if !rejected.is_empty() {
        parts.push(format!(
            "{} problem(s) in {} file(s)",
            problem_count(rejected),
            rejected.len()
        ));
    }
    if !conflicts.is_empty() {
        parts.push(format!("{} conflict(s)", conflicts.len()));
    }
    parts.join(", ")
}

/// Prints conflicts, one line each.
pub(crate) fn print_conflicts(conflicts: &[Conflict]) {
    for c in conflicts {
        outln!("error   {}", c.message);
    }
}

async fn validate(paths: &[String], aws: &AwsOpts, out: Output) -> anyhow::Result<Outcome> {
    let files: Vec<FileReport> = check(paths, aws)
        .await?
        .into_iter()
        .map(|c| verdict(c.file, c.result.as_ref()))
        .collect();
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
            print_problems(std::slice::from_ref(f));
        }
        let problems = problem_count(&report.files);
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

/// `s3://bucket/prefix/` as (bucket, prefix): a bucket, and a prefix that is not empty, ends in
/// `/` and has no empty segment, so that transform's listing of it holds exactly what is
/// published there.
fn parse_to(to: &str) -> anyhow::Result<(String, String)> {
    let refuse = |why: String| {
        anyhow::Error::new(InvalidInput(format!(
            "--to {to:?} {why}; pass --to s3://bucket/prefix/, the deploy's SLUICE_CONTRACTS \
             (s3://<raw bucket>/contracts/)"
        )))
    };
    let Some(rest) = to.strip_prefix("s3://") else {
        return Err(refuse("is not an S3 prefix".into()));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() || bucket.contains(char::is_whitespace) {
        return Err(refuse("does not name a bucket".into()));
    }
    if prefix.is_empty() {
        return Err(refuse(
            "has no prefix (transform would list the whole bucket)".into(),
        ));
    }
    if !prefix.ends_with('/') {
        return Err(refuse(format!(
            "does not end in / (transform lists every key that starts with {prefix:?}, \
             {prefix}-old/ too; did you mean s3://{bucket}/{prefix}/?)"
        )));
    }
    if prefix.split('/').rev().skip(1).any(str::is_empty) {
        return Err(refuse("has an empty path segment (//)".into()));
    }
    Ok((bucket.to_owned(), prefix.to_owned()))
}

/// The content type of a contract file, by its extension.
fn content_type(file_name: &str) -> &'static str {
    if file_name.ends_with(".toml") {
        "application/toml"
    } else {
        "application/yaml"
    }
}

/// A contract file already under the prefix, as transform reads it.
struct Published {
    key: String,
    bytes: Vec<u8>,
    contract: Option<Contract>,
}

/// Every contract file under `s3://bucket/prefix`, read as `sluice_pipeline::contracts::load`
/// reads them: each key it lists that ends in `.yaml`, `.yml` or `.toml`, as (lossy) UTF-8.
async fn published(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
) -> anyhow::Result<Vec<Published>> {
    let keys = sluice_aws::listing::list_keys(s3, bucket, prefix)
        .await
        .map_err(|e| {
            let missing = e.code.as_deref() == Some("NoSuchBucket");
            anyhow::Error::new(e).context(if missing {
                format!(
                    "the bucket {bucket} does not exist: pass the deploy's raw bucket \
                     (--to s3://<raw bucket>/contracts/), or create it first"
                )
            } else {
                format!("could not list s3://{bucket}/{prefix}")
            })
        })?;
    let mut found = Vec::new();
    for key in keys.into_iter().filter(|k| is_contract_file(k)) {
        let (bytes, _) = sluice_aws::listing::get_bytes(s3, bucket, &key)
            .await
            .with_context(|| format!("could not read s3://{bucket}/{key}"))?;
        let contract = parse(
            &format!("s3://{bucket}/{key}"),
            &String::from_utf8_lossy(&bytes),
        )
        .ok();
        found.push(Published {
            key,
            bytes,
            contract,
        });
    }
    Ok(found)
}

/// One file's publication, for JSON.
#[derive(Debug, Serialize)]
struct PublishedFile {
    file: String,
    contract: String,
    version: u64,
    key: String,
    content_type: &'static str,
    action: &'static str,
    published_version: Option<u64>,
    note: Option<String>,
}

/// What `publish` did, for JSON.
#[derive(Debug, Serialize)]
struct PublishReport {
    to: String,
    dry_run: bool,
    valid: usize,
    invalid: usize,
    rejected: Vec<FileReport>,
    conflicts: Vec<Conflict>,
    files: Vec<PublishedFile>,
    uploaded: usize,
    unchanged: usize,
}

impl PublishReport {
    fn print(&self, out: Output) -> anyhow::Result<()> {
        if out.json() {
            return output::print_json(self);
        }
        if !self.rejected.is_empty() || !self.conflicts.is_empty() {
            print_problems(&self.rejected);
            print_conflicts(&self.conflicts);
            outln!(
                "nothing published: {}",
                what_stops(&self.rejected, &self.conflicts)
            );
            return Ok(());
        }
        let mut t = output::table(&["contract", "version", "key", "action"]);
        for f in &self.files {
            t.add_row(vec![
                f.contract.clone(),
                f.version.to_string(),
                f.key.clone(),
                f.action.to_owned(),
            ]);
        }
        outln!("{t}");
        for f in &self.files {
            if let Some(note) = &f.note {
                outln!("note    {}: {note}", f.file);
            }
        }
        if self.dry_run {
            outln!(
                "dry run: {} file(s) would be uploaded to {}, {} unchanged; nothing was uploaded",
                self.files.len() - self.unchanged,
                self.to,
                self.unchanged
            );
        } else {
            outln!(
                "{} uploaded to {}, {} unchanged; transform reads them within \
                 SLUICE_CONTRACTS_TTL_SECS (60 s by default)",
                self.uploaded,
                self.to,
                self.unchanged
            );
        }
        Ok(())
    }
}

async fn publish(
    paths: &[String],
    to: &str,
    dry_run: bool,
    aws: &AwsOpts,
    out: Output,
) -> anyhow::Result<Outcome> {
    let (bucket, prefix) = parse_to(to)?;
    if let Some(p) = paths.iter().find(|p| p.starts_with("s3://")) {
        return Err(anyhow::Error::new(InvalidInput(format!(
            "{p} is in S3 already; publish uploads local contract files or directories of them"
        ))));
    }
    let checked = check(paths, aws).await?;
    let mut report = PublishReport {
        to: format!("s3://{bucket}/{prefix}"),
        dry_run,
        valid: checked.iter().filter(|c| c.result.is_ok()).count(),
        invalid: checked.iter().filter(|c| c.result.is_err()).count(),
        rejected: rejected(&checked),
        conflicts: Vec::new(),
        files: Vec::new(),
        uploaded: 0,
        unchanged: 0,
    };
    if !report.rejected.is_empty() {
        report.print(out)?;
        return Ok(Outcome::Found);
    }
    // Every file checks: each one's key, and what is there already.
    let mut plan: Vec<(&Checked, &Contract, String, &[u8])> = Vec::new();
    for c in &checked {
        if let (Ok(contract), Some(bytes)) = (&c.result, &c.bytes) {
            let file_name = Path::new(&c.file)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            plan.push((c, contract, format!("{prefix}{file_name}"), bytes));
        }
    }
    let sdk = aws.sdk_config().await?;
    let s3 = sluice_aws::clients::s3_client(&sdk);
    let spinner = output::spinner(&format!("reading {}", report.to));
    let there = published(&s3, &bucket, &prefix).await;
    if let Some(s) = &spinner {
        s.finish_and_clear();
    }
    let there = there?;
    // What transform would load once these are published: these files, and the other contract
    // files under the prefix.
    let mut defined: Vec<(String, &str)> = plan
        .iter()
        .map(|(c, contract, _, _)| (c.file.clone(), contract.name.as_str()))
        .collect();
    for p in &there {
        if let Some(contract) = &p.contract {
            if !plan.iter().any(|(_, _, key, _)| *key == p.key) {
                defined.push((format!("s3://{bucket}/{}", p.key), contract.name.as_str()));
            }
        }
    }
    report.conflicts = duplicate_names(defined.iter().map(|(f, n)| (f.as_str(), *n)));
    let mut by_key: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (c, _, key, _) in &plan {
        by_key.entry(key).or_default().push(&c.file);
    }
    for (key, files) in by_key.into_iter().filter(|(_, f)| f.len() > 1) {
        report.conflicts.push(Conflict {
            contract: None,
            message: format!(
                "{} would all be published as s3://{bucket}/{key}; rename all but one",
                files.join(" and ")
            ),
            files: files.into_iter().map(str::to_owned).collect(),
        });
    }
    if !report.conflicts.is_empty() {
        report.print(out)?;
        return Ok(Outcome::Found);
    }
    let bar = output::spinner("uploading contracts");
    for (c, contract, key, bytes) in &plan {
        let before = there.iter().find(|p| p.key == *key);
        let published_version = before.and_then(|p| p.contract.as_ref()).map(|p| p.version);
        let same = before.is_some_and(|p| p.bytes == *bytes);
        let note = published_version
            .filter(|v| !same && contract.version <= *v)
            .map(|v| {
                format!(
                    "the contract changed but its version {} is not above the published {v}: \
                     raise it, or a replay keeps the rows already written under {v}",
                    contract.version
                )
            });
        let action = if same {
            report.unchanged += 1;
            "unchanged"
        } else if dry_run {
            "would upload"
        } else {
            if let Some(b) = &bar {
                b.set_message(format!("uploading {key}"));
            }
            s3.put_object()
                .bucket(&bucket)
                .key(key)
                .content_type(content_type(key))
                .body(bytes.to_vec().into())
                .send()
                .await
                .map_err(|e| {
                    sluice_aws::AwsError::from_sdk("PutObject", format!("s3://{bucket}/{key}"), e)
                })
                .with_context(|| {
                    format!(
                        "could not upload {} to s3://{bucket}/{key}; {} file(s) were uploaded \
                         before it, and running again skips them",
                        c.file, report.uploaded
                    )
                })?;
            report.uploaded += 1;
            "uploaded"
        };
        report.files.push(PublishedFile {
            file: c.file.clone(),
            contract: contract.name.clone(),
            version: contract.version,
            key: key.clone(),
            content_type: content_type(key),
            action,
            published_version,
            note,
        });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    report.print(out)?;
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_must_be_a_bucket_and_a_prefix_ending_in_a_slash() {
        assert_eq!(
            parse_to("s3://my-bucket/contracts/").unwrap(),
            ("my-bucket".to_owned(), "contracts/".to_owned())
        );
        assert_eq!(
            parse_to("s3://b.example-1/a/b/").unwrap(),
            ("b.example-1".to_owned(), "a/b/".to_owned())
        );
        for bad in [
            "contracts/",
            "my-bucket/contracts/",
            "s3://",
            "s3://my-bucket",
            "s3://my-bucket/",
            "s3://my-bucket/contracts",
            "s3://my-bucket//",
            "s3://my-bucket/a//b/",
            "s3://my bucket/contracts/",
            "s3:///contracts/",
        ] {
            let e = parse_to(bad).unwrap_err();
            assert!(e.is::<InvalidInput>(), "{bad}");
            assert!(e.to_string().contains("s3://bucket/prefix/"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_contract_defined_twice_is_a_conflict_naming_both_files() {
        let c = duplicate_names([("a.yaml", "orders"), ("b.yml", "orders"), ("c.yaml", "x")]);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].contract.as_deref(), Some("orders"));
        assert!(
            c[0].message.contains("a.yaml and b.yml"),
            "{}",
            c[0].message
        );
    }

    #[test]
    fn content_types_follow_the_extension() {
        assert_eq!(content_type("contracts/a.toml"), "application/toml");
        assert_eq!(content_type("contracts/a.yml"), "application/yaml");
        assert_eq!(content_type("contracts/a.yaml"), "application/yaml");
    }
}
