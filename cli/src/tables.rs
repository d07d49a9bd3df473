//! `sluice tables`: the typed tables of a deployed pipeline.
//!
//! `apply PATH... --table-prefix P` checks every contract first, as `contracts validate` does (files,
//! directories of them, or `s3://bucket/prefix/`), and touches no table unless all of them check
//! and no two define the same contract. Then, for each contract, the table `<P><contract name>`
//! (transform's `SLUICE_TYPED_TABLE_PREFIX` and the contract's `name`):
//!
//! - missing: created with the contract's key (partition key first), on-demand capacity,
//!   encryption with the AWS managed key and deletion protection, then point-in-time recovery
//!   and TTL on `_expires_at` turned on;
//! - there: its key is compared with the contract's, and whatever of TTL, point-in-time recovery
//!   and deletion protection is off is turned on. Capacity mode and encryption are left as they
//!   are. A table whose key differs, or whose TTL is on another attribute, is reported and left
//!   as it is: nothing is ever deleted or recreated.
//!
//! `--dry-run` only describes. Exit 1 when a file does not check, a contract is defined twice, a
//! table name is not one DynamoDB takes, or a table differs from its contract; 2 when it could
//! not run. `--output json` prints:
//!
//! ```json
//! {"prefix": "prod-", "dry_run": false, "valid": 2, "invalid": 0, "rejected": [], "conflicts": [],
//!  "tables": [{"contract": "orders", "version": 1, "file": "infra/contracts/orders.yaml",
//!              "table": "prod-orders", "key": [{"attribute": "order_id", "type": "S"}],
//!              "table_key": null, "action": "created",
//!              "changes": ["encryption with the AWS managed key", "deletion protection",
//!                          "point-in-time recovery", "TTL on _expires_at"],
//!              "differences": []}],
//!  "by_action": {"created": 1}, "mismatched": 0}
//! ```
//!
//! `rejected` and `conflicts` are as in `contracts publish`, and `tables` is empty unless both
//! are. `action` is `created`, `updated`, `unchanged`, `key mismatch`, `ttl mismatch`, or with
//! `--dry-run` `would create` and `would update`; `changes` are the settings turned on (or that
//! would be); `table_key` is the table's own key when it differs from `key`, the contract's, and
//! `differences` says what differs, in words.

use std::collections::BTreeMap;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use sluice_local::provision::{apply_typed_table, TableAction, TableSettings};

use crate::aws_opts::AwsOpts;
use crate::contracts::{self, Conflict, FileReport};
use crate::error::{InvalidInput, Outcome};
use crate::output::{self, Output};

/// Arguments of `sluice tables`.
#[derive(Debug, Args)]
pub struct TablesArgs {
    #[command(subcommand)]
    command: TablesCommand,
}

#[derive(Debug, Subcommand)]
enum TablesCommand {
    /// Create each contract's typed table, or turn on what is off (point-in-time recovery, TTL,
    /// deletion protection); a table whose key differs is reported, never recreated.
    Apply {
        /// Contract files, directories of them, or `s3://bucket/prefix/`.
        #[arg(required = true)]
        paths: Vec<String>,
        /// Prefix of the typed tables' names, the deploy's SLUICE_TYPED_TABLE_PREFIX: contract
        /// orders is table <P>orders (pass --table-prefix "" for none).
        #[arg(long = "table-prefix", value_name = "P")]
        prefix: String,
        /// Describe only: say what would be created or turned on, change nothing.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        aws: AwsOpts,
    },
}

impl TablesArgs {
    /// Runs the subcommand.
    pub async fn run(self, out: Output) -> anyhow::Result<Outcome> {
        match self.command {
            TablesCommand::Apply {
                paths,
                prefix,
                dry_run,
                aws,
            } => apply(&paths, &prefix, dry_run, &aws, out).await,
        }
    }
}

/// One attribute of a key, for JSON.
#[derive(Debug, Serialize)]
struct KeyAttribute {
    attribute: String,
    #[serde(rename = "type")]
    ty: String,
}

fn key_json(key: &[(String, String)]) -> Vec<KeyAttribute> {
    key.iter()
        .map(|(attribute, ty)| KeyAttribute {
            attribute: attribute.clone(),
            ty: ty.clone(),
        })
        .collect()
}

/// `order_id (S)`, or `customer_id (S), order_id (N)`.
fn key_text(key: &[KeyAttribute]) -> String {
    key.iter()
        .map(|k| format!("{} ({})", k.attribute, k.ty))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One table's outcome, for JSON.
#[derive(Debug, Serialize)]
struct TableReport {
    contract: String,
    version: u64,
    file: String,
    table: String,
    key: Vec<KeyAttribute>,
    table_key: Option<Vec<KeyAttribute>>,
    action: &'static str,
    changes: Vec<&'static str>,
    differences: Vec<String>,
}

/// What `apply` did, for JSON.
#[derive(Debug, Serialize)]
struct ApplyReport {
    prefix: String,
    dry_run: bool,
    valid: usize,
    invalid: usize,
    rejected: Vec<FileReport>,
    conflicts: Vec<Conflict>,
    tables: Vec<TableReport>,
    by_action: BTreeMap<&'static str, usize>,
    mismatched: usize,
}

fn action_name(action: TableAction) -> &'static str {
    match action {
        TableAction::Created => "created",
        TableAction::WouldCreate => "would create",
        TableAction::Updated => "updated",
        TableAction::WouldUpdate => "would update",
        TableAction::Unchanged => "unchanged",
        TableAction::KeyMismatch => "key mismatch",
        TableAction::TtlMismatch => "ttl mismatch",
    }
}

/// Whether DynamoDB takes `name` as a table name: 3 to 255 of `[A-Za-z0-9_.-]`.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

impl ApplyReport {
    fn print(&self, out: Output) -> anyhow::Result<()> {
        if out.json() {
            return output::print_json(self);
        }
        if !self.rejected.is_empty() || !self.conflicts.is_empty() {
            contracts::print_problems(&self.rejected);
            contracts::print_conflicts(&self.conflicts);
            outln!(
                "no table touched: {}",
                contracts::what_stops(&self.rejected, &self.conflicts)
            );
            return Ok(());
        }
        let mut t = output::table(&["contract", "table", "key", "action", "detail"]);
        for r in &self.tables {
            let detail = if r.differences.is_empty() {
                r.changes.join(", ")
            } else {
                r.differences.join("; ")
            };
            t.add_row(vec![
                r.contract.clone(),
                r.table.clone(),
                key_text(&r.key),
                r.action.to_owned(),
                detail,
            ]);
        }
        outln!("{t}");
        let counts: Vec<String> = self
            .by_action
            .iter()
            .map(|(action, n)| format!("{n} {action}"))
            .collect();
        outln!(
            "{} table(s): {}{}",
            self.tables.len(),
            counts.join(", "),
            if self.dry_run {
                "; dry run, nothing was changed"
            } else {
                ""
            }
        );
        if self.mismatched > 0 {
            outln!(
                "{} table(s) differ from their contract and were left as they are: a table's key \
                 cannot change in place; give the contract a new name (a new table) and move the \
                 rows, or fix the contract",
                self.mismatched
            );
        }
        Ok(())
    }
}

async fn apply(
    paths: &[String],
    prefix: &str,
    dry_run: bool,
    aws: &AwsOpts,
    out: Output,
) -> anyhow::Result<Outcome> {
    let checked = contracts::check(paths, aws).await?;
    let mut report = ApplyReport {
        prefix: prefix.to_owned(),
        dry_run,
        valid: checked.iter().filter(|c| c.result.is_ok()).count(),
        invalid: checked.iter().filter(|c| c.result.is_err()).count(),
        rejected: contracts::rejected(&checked),
        conflicts: Vec::new(),
        tables: Vec::new(),
        by_action: BTreeMap::new(),
        mismatched: 0,
    };
    let valid: Vec<_> = checked
        .iter()
        .filter_map(|c| c.result.as_ref().ok().map(|contract| (c, contract)))
        .collect();
    report.conflicts = contracts::duplicate_names(
        valid
            .iter()
            .map(|(c, k)| (c.file.as_str(), k.name.as_str())),
    );
    if !report.rejected.is_empty() || !report.conflicts.is_empty() {
        report.print(out)?;
        return Ok(Outcome::Found);
    }
    let bad: Vec<String> = valid
        .iter()
        .map(|(_, k)| format!("{prefix}{}", k.name))
        .filter(|t| !valid_table_name(t))
        .collect();
    if !bad.is_empty() {
        return Err(anyhow::Error::new(InvalidInput(format!(
            "--table-prefix {prefix:?} makes table names DynamoDB refuses ({}): a table name is 3 to \
             255 letters, digits, _, - and .",
            bad.join(", ")
        ))));
    }
    let sdk = aws.sdk_config().await?;
    let ddb = aws_sdk_dynamodb::Client::new(&sdk);
    for (c, contract) in valid {
        let table = format!("{prefix}{}", contract.name);
        let spinner = output::spinner(&format!("table {table}"));
        let outcome = apply_typed_table(
            &ddb,
            &table,
            &contract.key_schema(),
            TableSettings::Deployed,
            dry_run,
        )
        .await;
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        let outcome = outcome.with_context(|| {
            format!(
                "could not create or update the typed table {table} (contract {}); the tables \
                 before it are done, and running again is safe",
                contract.name
            )
        })?;
        let key: Vec<(String, String)> = contract
            .key_schema()
            .into_iter()
            .map(|(a, t)| (a, t.to_owned()))
            .collect();
        let action = action_name(outcome.action);
        *report.by_action.entry(action).or_default() += 1;
        if !outcome.differences.is_empty() {
            report.mismatched += 1;
        }
        report.tables.push(TableReport {
            contract: contract.name.clone(),
            version: contract.version,
            file: c.file.clone(),
            table,
            table_key: (outcome.key != key).then(|| key_json(&outcome.key)),
            key: key_json(&key),
            action,
            changes: outcome.changes.iter().map(|s| s.describe()).collect(),
            differences: outcome.differences,
        });
    }
    report.print(out)?;
    Ok(if report.mismatched > 0 {
        Outcome::Found
    } else {
        Outcome::Ok
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_what_dynamodb_takes() {
        assert!(valid_table_name("prod-orders"));
        assert!(valid_table_name("a.b_c-1"));
        assert!(!valid_table_name("ab"));
        assert!(!valid_table_name("prod/orders"));
        assert!(!valid_table_name(&"x".repeat(256)));
    }

    #[test]
    fn keys_read_partition_key_first() {
        let key = key_json(&[
            ("customer_id".to_owned(), "S".to_owned()),
            ("order_id".to_owned(), "N".to_owned()),
        ]);
        assert_eq!(key_text(&key), "customer_id (S), order_id (N)");
    }
}
