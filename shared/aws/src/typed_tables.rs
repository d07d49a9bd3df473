//! Typed tables in DynamoDB: conditional writes guarded by `seq` and the contract version.
//!
//! Every write is a `PutItem` with the condition
//! `attribute_not_exists(<partition key>) OR _seq < :seq OR (_seq = :seq AND _contract_version < :v)`,
//! the same rule as [`sluice_core::row::supersedes`]. A failed condition means the write was
//! stale or a duplicate; it is counted, not an error. Throttling is retried with exponential
//! backoff beyond the SDK's own retries.

use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use sluice_core::row::TypedRow;
use sluice_core::row::{SEQ_ATTR, VERSION_ATTR};

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
        let item = to_sdk(&row.item);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .client
                .put_item()
                .table_name(&table)
                .set_item(Some(item.clone()))
                .condition_expression(
                    "attribute_not_exists(#pk) OR #seq < :seq OR (#seq = :seq AND #v < :v)",
                )
                .expression_attribute_names("#pk", partition_key)
                .expression_attribute_names("#seq", SEQ_ATTR)
                .expression_attribute_names("#v", VERSION_ATTR)
                .expression_attribute_values(":seq", AttributeValue::S(row.seq.as_str().to_owned()))
                .expression_attribute_values(":v", AttributeValue::N(row.version.to_string()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(WriteOutcome::Written),
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                {
                    return Ok(WriteOutcome::Stale)
                }
                Err(e) => {
                    let err = AwsError::from_sdk("PutItem", table.clone(), e);
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
