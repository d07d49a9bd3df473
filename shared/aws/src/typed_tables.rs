//! Typed tables in DynamoDB: conditional writes guarded by `seq` and the contract version.
//!
//! Every write is conditional on
//! `attribute_not_exists(<partition key>) OR _seq < :seq OR (_seq = :seq AND _contract_version < :v)`,
//! the same rule as [`sluice_core::row::supersedes`]. A failed condition means the write was
//! stale or a duplicate; it is counted, not an error. Throttling is retried with exponential
//! backoff beyond the SDK's own retries.
//!
//! A whole row is a `PutItem`. A row that leaves some fields unchanged (Debezium's unavailable
//! TOAST values, [`TypedRow::unchanged`]) is an `UpdateItem` that sets every attribute it has,
//! removes the contract's other fields and the tombstone marks, and leaves the unchanged fields
//! as stored.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::row::TypedRow;
use sluice_core::row::{DELETED_ATTR, EXPIRES_ATTR, EXTRA_ATTR, SEQ_ATTR, VERSION_ATTR};
use std::collections::HashMap;

use crate::error::AwsError;

/// What a conditional write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The row was written.
    Written,
    /// A row with a higher `seq` (or the same `seq` and contract version) was already there.
    Stale,
}

/// Where typed rows are written.
pub trait TypedTables: Send + Sync {
    /// Writes a row if it supersedes what is stored.
    fn put_row(
        &self,
        row: &TypedRow,
    ) -> impl Future<Output = Result<WriteOutcome, AwsError>> + Send;
}

/// Typed tables in DynamoDB, named `<prefix><contract name>`.
#[derive(Debug, Clone)]
pub struct DynamoTypedTables {
    client: aws_sdk_dynamodb::Client,
    prefix: String,
    max_attempts: u32,
}

impl DynamoTypedTables {
    /// Tables named `<prefix><contract name>`.
    pub fn new(client: aws_sdk_dynamodb::Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            max_attempts: 6,
        }
    }

    /// The physical table name of a contract.
    pub fn table_name(&self, contract: &str) -> String {
        format!("{}{contract}", self.prefix)
    }
}

/// Converts a typed item to the SDK's attribute values.
pub fn to_sdk(
    item: &std::collections::HashMap<String, serde_dynamo::AttributeValue>,
) -> std::collections::HashMap<String, AttributeValue> {
    item.iter()
        .map(|(k, v)| (k.clone(), AttributeValue::from(v.clone())))
        .collect()
}

impl TypedTables for DynamoTypedTables {
    async fn put_row(&self, row: &TypedRow) -> Result<WriteOutcome, AwsError> {
        let table = self.table_name(&row.table);
        let Some((partition_key, _)) = row.key.first() else {
            return Err(AwsError::local("PutItem", table, "the row has no key"));
        };
        let operation = if row.unchanged.is_empty() {
            "PutItem"
        } else {
            "UpdateItem"
        };
        let item = to_sdk(&row.item);
        let condition = "attribute_not_exists(#pk) OR #seq < :seq OR (#seq = :seq AND #v < :v)";
        let seq = AttributeValue::S(row.seq.as_str().to_owned());
        let version = AttributeValue::N(row.version.to_string());
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = if row.unchanged.is_empty() {
                self.client
                    .put_item()
                    .table_name(&table)
                    .set_item(Some(item.clone()))
                    .condition_expression(condition)
                    .expression_attribute_names("#pk", partition_key)
                    .expression_attribute_names("#seq", SEQ_ATTR)
                    .expression_attribute_names("#v", VERSION_ATTR)
                    .expression_attribute_values(":seq", seq.clone())
                    .expression_attribute_values(":v", version.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let stale = e
                            .as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception());
                        (stale, AwsError::from_sdk(operation, table.clone(), e))
                    })
            } else {
                let update = partial_update(row, &item);
                self.client
                    .update_item()
                    .table_name(&table)
                    .set_key(Some(update.key))
                    .update_expression(update.expression)
                    .condition_expression(condition)
                    .set_expression_attribute_names(Some(update.names))
                    .expression_attribute_names("#pk", partition_key)
                    .expression_attribute_names("#seq", SEQ_ATTR)
                    .expression_attribute_names("#v", VERSION_ATTR)
                    .set_expression_attribute_values(Some(update.values))
                    .expression_attribute_values(":seq", seq.clone())
                    .expression_attribute_values(":v", version.clone())
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        let stale = e
                            .as_service_error()
                            .is_some_and(|s| s.is_conditional_check_failed_exception());
                        (stale, AwsError::from_sdk(operation, table.clone(), e))
                    })
            };
            match result {
                Ok(()) => return Ok(WriteOutcome::Written),
                Err((true, _)) => return Ok(WriteOutcome::Stale),
                Err((false, err)) => {
                    if !err.is_retriable() || attempt >= self.max_attempts {
                        return Err(err);
                    }
                    let backoff = Duration::from_millis(50u64 << attempt.min(6));
                    tracing::debug!(error = %err, attempt, ?backoff, "Typed write throttled or failed; retrying.");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

/// The parts of an `UpdateItem` for a row that leaves some fields unchanged.
struct PartialUpdate {
    key: HashMap<String, AttributeValue>,
    expression: String,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

/// `SET` every non-key attribute the row has; `REMOVE` the bookkeeping attributes it lacks (a
/// tombstone's marks, `_extra`) and the fields it knows are missing. Unchanged fields are in
/// neither list, so they keep their stored values. Names and values are placeholders
/// (`#a0`, `:a0`), so any attribute name is safe.
fn partial_update(row: &TypedRow, item: &HashMap<String, AttributeValue>) -> PartialUpdate {
    let key: HashMap<String, AttributeValue> = row
        .key
        .iter()
        .filter_map(|(k, _)| item.get(k).map(|v| (k.clone(), v.clone())))
        .collect();
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::new();
    let mut attrs: Vec<&String> = item.keys().filter(|k| !key.contains_key(*k)).collect();
    attrs.sort();
    for (i, name) in attrs.into_iter().enumerate() {
        names.insert(format!("#a{i}"), name.clone());
        if let Some(v) = item.get(name) {
            values.insert(format!(":a{i}"), v.clone());
        }
        sets.push(format!("#a{i} = :a{i}"));
    }
    let mut removes = Vec::new();
    let mut missing: Vec<&str> = row
        .missing
        .iter()
        .map(String::as_str)
        .chain([DELETED_ATTR, EXPIRES_ATTR, EXTRA_ATTR])
        .filter(|f| !item.contains_key(*f) && !row.unchanged.iter().any(|u| u == f))
        .collect();
    missing.sort_unstable();
    missing.dedup();
    for (i, name) in missing.into_iter().enumerate() {
        names.insert(format!("#r{i}"), name.to_owned());
        removes.push(format!("#r{i}"));
    }
    let mut expression = format!("SET {}", sets.join(", "));
    if !removes.is_empty() {
        expression.push_str(&format!(" REMOVE {}", removes.join(", ")));
    }
    PartialUpdate {
        key,
        expression,
        names,
        values,
    }
}
