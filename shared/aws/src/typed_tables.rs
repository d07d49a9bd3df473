//! Typed tables in DynamoDB: conditional writes guarded by `seq` and the contract version.
//!
//! A whole row is a `PutItem` under its [`Guard`]
//! (`attribute_not_exists(<partition key>) OR _seq < :seq OR (_seq = :seq AND _contract_version < :v)`),
//! the condition the in-memory model evaluates too. A failed condition means the write was
//! stale, or already done (the stored row came from this very line: an earlier try whose
//! answer was lost, or the object processed again); each is counted, not an error. Throttling
//! is retried with exponential backoff beyond the SDK's own retries.
//!
//! A row that leaves fields unchanged (Debezium's TOAST placeholder, [`TypedRow::unchanged`]) is
//! read, merged over the stored item ([`sluice_core::row::merge_partial`]) and put back on the
//! condition that the stored item has not changed meanwhile ([`Guard::Unchanged`]; else it is
//! read again). Unchanged
//! fields keep their stored values, with a `_vseq:` attribute naming the change each came from.
//!
//! A stale row still fills what it can: the failed condition returns the stored item
//! (`ReturnValuesOnConditionCheckFailure`), and every field whose `_vseq:` is older than the
//! change the stale row carries it from is set by an `UpdateItem` under the fill's guard
//! ([`Guard::OlderValue`], [`sluice_core::row::fills`]). So any order of
//! delivery ends in the same row.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use sluice_core::row::{fills, is_stored, merge_partial, stored_guard, Guard, Item, TypedRow};

use crate::error::AwsError;

pub use crate::ports::TypedTables;
pub use sluice_core::row::WriteOutcome;

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

/// Converts a typed item to the SDK's attribute values: its names and values move, nothing is
/// copied.
pub fn into_sdk(
    item: std::collections::HashMap<String, serde_dynamo::AttributeValue>,
) -> std::collections::HashMap<String, AttributeValue> {
    item.into_iter()
        .map(|(k, v)| (k, AttributeValue::from(v)))
        .collect()
}

/// Sets a guard's condition expression, names and values on a request.
macro_rules! conditioned {
    ($req:expr, $expression:expr) => {{
        let mut req = $req.condition_expression($expression.condition);
        for (placeholder, name) in &$expression.names {
            req = req.expression_attribute_names(*placeholder, name);
        }
        for (placeholder, value) in &$expression.values {
            req =
                req.expression_attribute_values(*placeholder, AttributeValue::from(value.clone()));
        }
        req
    }};
}

/// Converts an SDK item to a typed item.
fn from_sdk(item: &HashMap<String, AttributeValue>) -> Item {
    item.iter()
        .map(|(k, v)| (k.clone(), serde_dynamo::AttributeValue::from(v.clone())))
        .collect()
}

/// A row's key as SDK attribute values.
fn sdk_key(row: &TypedRow) -> HashMap<String, AttributeValue> {
    row.key
        .iter()
        .map(|(k, v)| (k.clone(), AttributeValue::from(v.clone())))
        .collect()
}

/// What a conditional `PutItem` did.
enum Put {
    Written,
    /// The condition failed; the stored item, when there is one.
    Refused(Option<Item>),
}

impl DynamoTypedTables {
    /// Runs a request, retrying throttling and other retriable failures with backoff.
    async fn with_retries<T, F, Fut>(&self, mut send: F) -> Result<T, AwsError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match send().await {
                Ok(v) => return Ok(v),
                Err(err) => {
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

    /// A conditional `PutItem` of the item `build` makes. Each attempt builds it afresh and
    /// moves it into its request, so the first attempt copies nothing.
    async fn put(
        &self,
        table: &str,
        partition_key: &str,
        build: impl Fn() -> Item,
        guard: Guard<'_>,
    ) -> Result<Put, AwsError> {
        let expression = guard.expression(partition_key);
        self.with_retries(|| {
            let req = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(into_sdk(build())))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                );
            let req = conditioned!(req, expression);
            async move {
                match req.send().await {
                    Ok(_) => Ok(Put::Written),
                    Err(e) => match e.as_service_error() {
                        Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c)) => {
                            Ok(Put::Refused(c.item().map(from_sdk)))
                        }
                        _ => Err(AwsError::from_sdk("PutItem", table.to_owned(), e)),
                    },
                }
            }
        })
        .await
    }

    /// Reads the stored item of a row's key, strongly consistent.
    async fn get(&self, table: &str, row: &TypedRow) -> Result<Option<Item>, AwsError> {
        let key = sdk_key(row);
        self.with_retries(|| {
            let req = self
                .client
                .get_item()
                .table_name(table)
                .set_key(Some(key.clone()))
                .consistent_read(true);
            async move {
                req.send()
                    .await
                    .map(|out| out.item().map(from_sdk))
                    .map_err(|e| AwsError::from_sdk("GetItem", table.to_owned(), e))
            }
        })
        .await
    }

    /// Fills, from a stale row, the stored fields whose values come from older changes.
    async fn fill(&self, table: &str, stored: &Item, row: &TypedRow) -> Result<(), AwsError> {
        let key = sdk_key(row);
        for fill in fills(stored, row) {
            let update = match &fill.value {
                Some(_) => "SET #f = :v, #vf = :s",
                None => "REMOVE #f SET #vf = :s",
            };
            let result = self
                .with_retries(|| {
                    let mut req = self
                        .client
                        .update_item()
                        .table_name(table)
                        .set_key(Some(key.clone()))
                        .update_expression(update)
                        .expression_attribute_names("#f", &fill.field);
                    if let Some(v) = &fill.value {
                        req =
                            req.expression_attribute_values(":v", AttributeValue::from(v.clone()));
                    }
                    let expression = fill.guard().expression("");
                    let req = conditioned!(req, expression);
                    async move {
                        match req.send().await {
                            Ok(_) => Ok(true),
                            Err(e)
                                if e.as_service_error()
                                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
                            {
                                Ok(false)
                            }
                            Err(e) => Err(AwsError::from_sdk("UpdateItem", table.to_owned(), e)),
                        }
                    }
                })
                .await?;
            tracing::debug!(table, field = %fill.field, seq = %fill.seq, applied = result, "Filled an unchanged field from a late older change.");
        }
        Ok(())
    }
}

impl TypedTables for DynamoTypedTables {
    async fn put_row(&self, row: &TypedRow) -> Result<WriteOutcome, AwsError> {
        let table = self.table_name(&row.table);
        let Some((partition_key, _)) = row.key.first() else {
            return Err(AwsError::local("PutItem", table, "the row has no key"));
        };
        if !row.is_partial() {
            return match self
                .put(&table, partition_key, || row.write_item(), Guard::of(row))
                .await?
            {
                Put::Written => Ok(WriteOutcome::Written),
                Put::Refused(None) => Ok(WriteOutcome::Stale),
                // The same line may come again with more fills (coalesced with other changes
                // of its key in another delivery): fills apply either way.
                Put::Refused(Some(stored)) => {
                    self.fill(&table, &stored, row).await?;
                    Ok(if is_stored(&stored, row) {
                        WriteOutcome::AlreadyWritten
                    } else {
                        WriteOutcome::Stale
                    })
                }
            };
        }
        // Read, merge, and put back if nothing changed meanwhile.
        for _ in 0..self.max_attempts {
            let stored = self.get(&table, row).await?;
            if !Guard::of(row).holds(stored.as_ref()) {
                let Some(stored) = &stored else {
                    return Ok(WriteOutcome::Stale);
                };
                self.fill(&table, stored, row).await?;
                return Ok(if is_stored(stored, row) {
                    WriteOutcome::AlreadyWritten
                } else {
                    WriteOutcome::Stale
                });
            }
            let item = || merge_partial(stored.as_ref(), row);
            // Put back only if nothing changed the stored row since it was read.
            let read = stored.as_ref().and_then(stored_guard);
            let condition = match &read {
                Some((seq, version)) => Guard::Unchanged {
                    seq,
                    version: *version,
                },
                None => Guard::Absent,
            };
            if let Put::Written = self.put(&table, partition_key, item, condition).await? {
                return Ok(WriteOutcome::Written);
            }
        }
        let mut err = AwsError::local(
            "PutItem",
            table,
            "the stored row kept changing while a partial update was merged over it",
        );
        err.retriable = true;
        Err(err)
    }
}
