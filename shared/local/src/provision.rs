//! Creating sluice's resources on an endpoint, idempotently: running it twice is harmless.
//!
//! Used by `sluice local up` and by the end-to-end tests; a deployed pipeline's typed tables by
//! `sluice tables apply` too ([`apply_typed_table`]). Deployed stacks get the other resources
//! from `template.yaml`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;

use sluice_aws::AwsError;

/// How often the ingest queue delivers a message before its redrive policy moves it to the DLQ.
pub const MAX_RECEIVE_COUNT: u32 = 5;

/// The visibility timeout of local queues. The local runner extends it while a batch runs, so
/// it can be short: after a crash, unfinished messages come back quickly.
pub const LOCAL_VISIBILITY_TIMEOUT_SECS: &str = "15";

/// The resources ingest needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestResources {
    /// The raw staging bucket.
    pub raw_bucket: String,
    /// The dead-letter queue's URL.
    pub dlq_url: String,
    /// The ingest queue's URL.
    pub ingest_queue_url: String,
}

/// Names derived from a prefix: `<prefix>-raw`, `<prefix>-dlq`, `<prefix>-ingest`,
/// `<prefix>-transform`, typed tables `<prefix>-<contract name>`, and for the FIFO path
/// `<prefix>-ingest.fifo` with its own `<prefix>-dlq.fifo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The raw bucket.
    pub raw_bucket: String,
    /// The DLQ.
    pub dlq: String,
    /// The ingest queue.
    pub ingest_queue: String,
    /// The transform queue.
    pub transform_queue: String,
    /// The prefix of typed table names.
    pub typed_table_prefix: String,
    /// The FIFO ingest queue, for changes whose order per message group matters.
    pub ingest_fifo_queue: String,
    /// The FIFO ingest queue's dead-letter queue: a FIFO queue's redrive policy can only move
    /// messages to a FIFO queue. Failure envelopes still go to [`Names::dlq`].
    pub dlq_fifo: String,
}

impl Names {
    /// The names for `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self {
            raw_bucket: format!("{prefix}-raw"),
            dlq: format!("{prefix}-dlq"),
            ingest_queue: format!("{prefix}-ingest"),
            transform_queue: format!("{prefix}-transform"),
            typed_table_prefix: format!("{prefix}-"),
            ingest_fifo_queue: format!("{prefix}-ingest.fifo"),
            dlq_fifo: format!("{prefix}-dlq.fifo"),
        }
    }
}

/// Creates the bucket unless it exists.
pub async fn ensure_bucket(s3: &aws_sdk_s3::Client, bucket: &str) -> Result<(), AwsError> {
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    match s3.create_bucket().bucket(bucket).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let svc = e.as_service_error();
            if svc.is_some_and(|s| s.is_bucket_already_owned_by_you()) {
                Ok(())
            } else {
                Err(AwsError::from_sdk("CreateBucket", bucket, e))
            }
        }
    }
}

/// Creates the queue with `attributes` unless it exists, and returns its URL.
pub async fn ensure_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, AwsError> {
    if let Ok(out) = sqs.get_queue_url().queue_name(name).send().await {
        if let Some(url) = out.queue_url {
            sqs.set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(attributes))
                .send()
                .await
                .map_err(|e| AwsError::from_sdk("SetQueueAttributes", name, e))?;
            return Ok(url);
        }
    }
    let out = sqs
        .create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("CreateQueue", name, e))?;
    out.queue_url
        .ok_or_else(|| AwsError::local("CreateQueue", name, "the response has no QueueUrl"))
}

/// The ARN of a queue.
pub async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, AwsError> {
    let out = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueAttributes", url, e))?;
    out.attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| AwsError::local("GetQueueAttributes", url, "the queue has no QueueArn"))
}

/// Looks up the URL of an existing queue.
pub async fn queue_url(sqs: &aws_sdk_sqs::Client, name: &str) -> Result<String, AwsError> {
    sqs.get_queue_url()
        .queue_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("GetQueueUrl", name, e))?
        .queue_url
        .ok_or_else(|| AwsError::local("GetQueueUrl", name, "the response has no QueueUrl"))
}

/// Creates the raw bucket, the DLQ and the ingest queue (with its redrive policy to the DLQ).
/// With `fifo`, the FIFO pair instead: [`Names::ingest_fifo_queue`] redriving to
/// [`Names::dlq_fifo`] (the bucket is the same).
pub async fn ensure_ingest(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    names: &Names,
    fifo: bool,
) -> Result<IngestResources, AwsError> {
    ensure_bucket(s3, &names.raw_bucket).await?;
    let (dlq, ingest) = if fifo {
        (&names.dlq_fifo, &names.ingest_fifo_queue)
    } else {
        (&names.dlq, &names.ingest_queue)
    };
    let mut dlq_attrs = HashMap::from([(
        QueueAttributeName::MessageRetentionPeriod,
        "1209600".to_owned(),
    )]);
    if fifo {
        dlq_attrs.insert(QueueAttributeName::FifoQueue, "true".into());
        dlq_attrs.insert(QueueAttributeName::ContentBasedDeduplication, "true".into());
    }
    let dlq_url = ensure_queue(sqs, dlq, dlq_attrs).await?;
    let dlq_arn = queue_arn(sqs, &dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#);
    let mut attrs = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive),
        (
            QueueAttributeName::VisibilityTimeout,
            LOCAL_VISIBILITY_TIMEOUT_SECS.to_owned(),
        ),
    ]);
    if fifo {
        // As the deployed stack's: producers may omit MessageDeduplicationId.
        attrs.insert(QueueAttributeName::FifoQueue, "true".into());
        attrs.insert(QueueAttributeName::ContentBasedDeduplication, "true".into());
    }
    let ingest_queue_url = ensure_queue(sqs, ingest, attrs).await?;
    Ok(IngestResources {
        raw_bucket: names.raw_bucket.clone(),
        dlq_url,
        ingest_queue_url,
    })
}

/// How long a table may take to become `ACTIVE` (after it is created, or while another change
/// to it is under way) before [`apply_typed_table`] gives up.
const ACTIVE_WAIT: Duration = Duration::from_secs(600);

/// How long DynamoDB may refuse to turn on point-in-time recovery right after a table was
/// created (`ContinuousBackupsUnavailableException`: "backups are being enabled").
const BACKUPS_WAIT: Duration = Duration::from_secs(300);

/// What a typed table gets besides its key, on-demand capacity and TTL on `_expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSettings {
    /// A local pipeline's table: nothing more, since `sluice local down` deletes it.
    Local,
    /// A deployed pipeline's table: point-in-time recovery, encryption with the AWS managed KMS
    /// key (at creation) and deletion protection as well.
    Deployed,
}

/// A setting [`apply_typed_table`] turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableSetting {
    /// Encryption at rest with the AWS managed key (`alias/aws/dynamodb`); set at creation only.
    ManagedKeyEncryption,
    /// Deletion protection.
    DeletionProtection,
    /// Point-in-time recovery (continuous backups).
    PointInTimeRecovery,
    /// TTL on `_expires_at`, which expires delete tombstones.
    Ttl,
}

impl TableSetting {
    /// The setting in words, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::ManagedKeyEncryption => "encryption with the AWS managed key",
            Self::DeletionProtection => "deletion protection",
            Self::PointInTimeRecovery => "point-in-time recovery",
            Self::Ttl => "TTL on _expires_at",
        }
    }
}

/// What [`apply_typed_table`] did to a table, or would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableAction {
    /// It did not exist and was created.
    Created,
    /// It does not exist and would be created (dry run).
    WouldCreate,
    /// It existed, and settings that were off were turned on.
    Updated,
    /// It exists, and settings that are off would be turned on (dry run).
    WouldUpdate,
    /// It exists with every setting on.
    Unchanged,
    /// It exists with another key than the contract's: left as it is.
    KeyMismatch,
    /// Its TTL is on another attribute than `_expires_at`: left as it is.
    TtlMismatch,
}

/// A typed table's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedTable {
    /// What was done.
    pub action: TableAction,
    /// The settings turned on (or, in a dry run, that would be).
    pub changes: Vec<TableSetting>,
    /// The table's key, partition key first: (attribute, `S`/`N`/`B`). The contract's for a
    /// table that is (or would be) created.
    pub key: Vec<(String, String)>,
    /// What differs from the contract, in words (with a mismatch).
    pub differences: Vec<String>,
}

/// Creates a typed table (on-demand capacity, TTL on `_expires_at`) unless it exists.
/// `keys` is the key schema, partition key first, with attribute types `S`, `N` or `B`.
///
/// For a local pipeline: no deletion protection, so `sluice local down` can delete it. A table
/// that exists with another key is left as it is, with a warning; an endpoint that cannot set
/// TTL only warns too.
pub async fn ensure_typed_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(String, &'static str)],
) -> Result<(), AwsError> {
    match apply_typed_table(ddb, name, keys, TableSettings::Local, false).await {
        Ok(t) => {
            if !t.differences.is_empty() {
                tracing::warn!(table = name, differences = ?t.differences, "The typed table differs from its contract; it is left as it is.");
            }
            Ok(())
        }
        Err(e) if matches!(e.operation, "DescribeTimeToLive" | "UpdateTimeToLive") => {
            tracing::warn!(error = %e, "Could not enable TTL on the typed table.");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Creates a typed table named `name` with the key schema `keys` (partition key first, with
/// attribute types `S`, `N` or `B`), or brings an existing one up to `settings`, idempotently.
///
/// A new table gets on-demand capacity, TTL on `_expires_at`, and under
/// [`TableSettings::Deployed`] encryption with the AWS managed key, deletion protection and
/// point-in-time recovery; it is waited for until `ACTIVE`. An existing table gets whatever of
/// TTL, point-in-time recovery and deletion protection is off; its capacity mode and encryption
/// are left as they are. An existing table whose key differs from `keys`, or whose TTL is on
/// another attribute, is only reported: nothing is changed, deleted or recreated. With
/// `dry_run`, only `Describe*` calls are made.
pub async fn apply_typed_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(String, &'static str)],
    settings: TableSettings,
    dry_run: bool,
) -> Result<TypedTable, AwsError> {
    let wanted: Vec<(String, String)> = keys
        .iter()
        .map(|(a, t)| (a.clone(), (*t).to_owned()))
        .collect();
    let mut on_create = vec![TableSetting::Ttl];
    if settings == TableSettings::Deployed {
        on_create = vec![
            TableSetting::ManagedKeyEncryption,
            TableSetting::DeletionProtection,
            TableSetting::PointInTimeRecovery,
            TableSetting::Ttl,
        ];
    }
    let mut table = match describe_table(ddb, name).await? {
        Some(table) => table,
        None if dry_run => {
            return Ok(TypedTable {
                action: TableAction::WouldCreate,
                changes: on_create,
                key: wanted,
                differences: Vec::new(),
            });
        }
        None => {
            if create_table(ddb, name, keys, settings).await? {
                wait_active(ddb, name).await?;
                // Encryption and deletion protection came with CreateTable.
                for setting in [TableSetting::PointInTimeRecovery, TableSetting::Ttl] {
                    if on_create.contains(&setting) {
                        turn_on(ddb, name, setting).await?;
                    }
                }
                return Ok(TypedTable {
                    action: TableAction::Created,
                    changes: on_create,
                    key: wanted,
                    differences: Vec::new(),
                });
            }
            // Created meanwhile by someone else: an existing table, then.
            describe_table(ddb, name).await?.ok_or_else(|| {
                AwsError::local(
                    "CreateTable",
                    name,
                    "the table is said to exist, and then not to; run again",
                )
            })?
        }
    };
    let key = key_of(&table);
    let mut differences = Vec::new();
    if key != wanted {
        differences.push(format!(
            "the table's key is {}; the contract's is {}",
            describe_key(&key),
            describe_key(&wanted)
        ));
    }
    if !dry_run
        && differences.is_empty()
        && table.table_status() != Some(&aws_sdk_dynamodb::types::TableStatus::Active)
    {
        table = wait_active(ddb, name).await?;
    }
    let mut changes = Vec::new();
    match ttl_attribute(ddb, name).await? {
        Some(attr) if attr == sluice_core::row::EXPIRES_ATTR => {}
        Some(attr) => differences.push(format!(
            "TTL is on {attr:?}, not {:?}, so delete tombstones would never expire; turn TTL off \
             on the table and run again (DynamoDB may take up to an hour before TTL can be set \
             again)",
            sluice_core::row::EXPIRES_ATTR
        )),
        None => changes.push(TableSetting::Ttl),
    }
    if settings == TableSettings::Deployed {
        if !point_in_time_recovery(ddb, name).await? {
            changes.push(TableSetting::PointInTimeRecovery);
        }
        if table.deletion_protection_enabled() != Some(true) {
            changes.push(TableSetting::DeletionProtection);
        }
    }
    let action = if key != wanted {
        TableAction::KeyMismatch
    } else if !differences.is_empty() {
        TableAction::TtlMismatch
    } else if changes.is_empty() {
        TableAction::Unchanged
    } else if dry_run {
        TableAction::WouldUpdate
    } else {
        TableAction::Updated
    };
    if action == TableAction::Updated {
        // In this order: deletion protection (UpdateTable) last.
        for setting in &changes {
            turn_on(ddb, name, *setting).await?;
        }
    }
    if !differences.is_empty() {
        changes.clear();
    }
    Ok(TypedTable {
        action,
        changes,
        key,
        differences,
    })
}

/// `id (S)`, or `customer_id (S), order_id (N)`.
fn describe_key(key: &[(String, String)]) -> String {
    key.iter()
        .map(|(a, t)| format!("{a} ({t})"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The table, or `None` when it does not exist.
async fn describe_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<aws_sdk_dynamodb::types::TableDescription>, AwsError> {
    match ddb.describe_table().table_name(name).send().await {
        Ok(out) => out
            .table
            .map(Some)
            .ok_or_else(|| AwsError::local("DescribeTable", name, "the response has no Table")),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_not_found_exception()) =>
        {
            Ok(None)
        }
        Err(e) => Err(AwsError::from_sdk("DescribeTable", name, e)),
    }
}

/// A table's key schema, partition key first: (attribute, `S`/`N`/`B`).
fn key_of(table: &aws_sdk_dynamodb::types::TableDescription) -> Vec<(String, String)> {
    use aws_sdk_dynamodb::types::KeyType;
    let type_of = |attr: &str| {
        table
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == attr)
            .map_or_else(
                || "?".to_owned(),
                |d| d.attribute_type().as_str().to_owned(),
            )
    };
    let mut key: Vec<(String, String)> = table
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), type_of(k.attribute_name())))
        .collect();
    key.sort_by_key(|(attr, _)| {
        table
            .key_schema()
            .iter()
            .find(|k| k.attribute_name() == attr)
            .is_some_and(|k| *k.key_type() != KeyType::Hash)
    });
    key
}

/// Creates the table; `false` when it already exists (created meanwhile).
async fn create_table(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    keys: &[(String, &'static str)],
    settings: TableSettings,
) -> Result<bool, AwsError> {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        SseSpecification, SseType,
    };
    let mut req = ddb
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    if settings == TableSettings::Deployed {
        // Enabled with no key named: the AWS managed key, alias/aws/dynamodb.
        req = req
            .sse_specification(
                SseSpecification::builder()
                    .enabled(true)
                    .sse_type(SseType::Kms)
                    .build(),
            )
            .deletion_protection_enabled(true);
    }
    for (i, (attr, ty)) in keys.iter().enumerate() {
        let scalar = match *ty {
            "N" => ScalarAttributeType::N,
            "B" => ScalarAttributeType::B,
            _ => ScalarAttributeType::S,
        };
        let kind = if i == 0 {
            KeyType::Hash
        } else {
            KeyType::Range
        };
        req = req
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(scalar)
                    .build()
                    .map_err(|e| AwsError::local("CreateTable", name, e))?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kind)
                    .build()
                    .map_err(|e| AwsError::local("CreateTable", name, e))?,
            );
    }
    match req.send().await {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_resource_in_use_exception()) =>
        {
            Ok(false)
        }
        Err(e) => Err(AwsError::from_sdk("CreateTable", name, e)),
    }
}

/// Waits until the table is `ACTIVE` (a new table is `CREATING` for a while on AWS).
async fn wait_active(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<aws_sdk_dynamodb::types::TableDescription, AwsError> {
    use aws_sdk_dynamodb::types::TableStatus;
    let started = Instant::now();
    loop {
        let table = describe_table(ddb, name)
            .await?
            .ok_or_else(|| AwsError::local("DescribeTable", name, "the table is gone"))?;
        match table.table_status() {
            Some(TableStatus::Active) | None => return Ok(table),
            Some(TableStatus::Creating | TableStatus::Updating)
                if started.elapsed() < ACTIVE_WAIT =>
            {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Some(status) => {
                return Err(AwsError::local(
                    "DescribeTable",
                    name,
                    format!(
                        "the table is {} (not ACTIVE{}), so its settings cannot be changed; run \
                         again once it is ACTIVE",
                        status.as_str(),
                        if started.elapsed() >= ACTIVE_WAIT {
                            " after 10 minutes"
                        } else {
                            ""
                        }
                    ),
                ))
            }
        }
    }
}

/// The attribute the table's TTL is on, when TTL is enabled (or being enabled).
async fn ttl_attribute(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<Option<String>, AwsError> {
    use aws_sdk_dynamodb::types::TimeToLiveStatus;
    let out = ddb
        .describe_time_to_live()
        .table_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeTimeToLive", name, e))?;
    let ttl = out.time_to_live_description();
    let on = ttl
        .and_then(|t| t.time_to_live_status())
        .is_some_and(|s| matches!(s, TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling));
    Ok(ttl
        .and_then(|t| t.attribute_name())
        .filter(|_| on)
        .map(str::to_owned))
}

/// Whether point-in-time recovery is on.
async fn point_in_time_recovery(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
) -> Result<bool, AwsError> {
    use aws_sdk_dynamodb::types::PointInTimeRecoveryStatus;
    let out = ddb
        .describe_continuous_backups()
        .table_name(name)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeContinuousBackups", name, e))?;
    Ok(out
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        == Some(&PointInTimeRecoveryStatus::Enabled))
}

/// Turns one setting on. Encryption is only set at creation: nothing to do here.
async fn turn_on(
    ddb: &aws_sdk_dynamodb::Client,
    name: &str,
    setting: TableSetting,
) -> Result<(), AwsError> {
    use aws_sdk_dynamodb::types::{PointInTimeRecoverySpecification, TimeToLiveSpecification};
    match setting {
        TableSetting::ManagedKeyEncryption => Ok(()),
        TableSetting::DeletionProtection => ddb
            .update_table()
            .table_name(name)
            .deletion_protection_enabled(true)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::from_sdk("UpdateTable", name, e)),
        TableSetting::Ttl => {
            let ttl = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(sluice_core::row::EXPIRES_ATTR)
                .build()
                .map_err(|e| AwsError::local("UpdateTimeToLive", name, e))?;
            ddb.update_time_to_live()
                .table_name(name)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| AwsError::from_sdk("UpdateTimeToLive", name, e))
        }
        TableSetting::PointInTimeRecovery => {
            let spec = PointInTimeRecoverySpecification::builder()
                .point_in_time_recovery_enabled(true)
                .build()
                .map_err(|e| AwsError::local("UpdateContinuousBackups", name, e))?;
            let started = Instant::now();
            loop {
                match ddb
                    .update_continuous_backups()
                    .table_name(name)
                    .point_in_time_recovery_specification(spec.clone())
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Right after CreateTable, AWS refuses for a while: "backups are being
                    // enabled for the table".
                    Err(e)
                        if started.elapsed() < BACKUPS_WAIT
                            && e.as_service_error().is_some_and(|s| {
                                s.is_continuous_backups_unavailable_exception()
                            }) =>
                    {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                    Err(e) => return Err(AwsError::from_sdk("UpdateContinuousBackups", name, e)),
                }
            }
        }
    }
}

/// Creates the transform queue (redriving to the DLQ, and allowing the raw bucket to send to
/// it) and points the raw bucket's `ObjectCreated` notifications under `raw/` at it.
/// Returns the queue's URL.
pub async fn ensure_transform(
    s3: &aws_sdk_s3::Client,
    sqs: &aws_sdk_sqs::Client,
    names: &Names,
    dlq_url: &str,
) -> Result<String, AwsError> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let dlq_arn = queue_arn(sqs, dlq_url).await?;
    let redrive =
        format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"{MAX_RECEIVE_COUNT}"}}"#);
    let url = ensure_queue(
        sqs,
        &names.transform_queue,
        HashMap::from([
            (QueueAttributeName::RedrivePolicy, redrive),
            (
                QueueAttributeName::VisibilityTimeout,
                LOCAL_VISIBILITY_TIMEOUT_SECS.to_owned(),
            ),
        ]),
    )
    .await?;
    let arn = queue_arn(sqs, &url).await?;
    let policy = format!(
        r#"{{"Version":"2012-10-17","Statement":[{{"Effect":"Allow","Principal":{{"Service":"s3.amazonaws.com"}},"Action":"sqs:SendMessage","Resource":"{arn}","Condition":{{"ArnLike":{{"aws:SourceArn":"arn:aws:s3:::{}"}}}}}}]}}"#,
        names.raw_bucket
    );
    sqs.set_queue_attributes()
        .queue_url(&url)
        .attributes(QueueAttributeName::Policy, policy)
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("SetQueueAttributes", url.clone(), e))?;
    let local = |e: aws_sdk_s3::error::BuildError| {
        AwsError::local(
            "PutBucketNotificationConfiguration",
            names.raw_bucket.clone(),
            e,
        )
    };
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value(sluice_core::raw::RAW_PREFIX)
                        .build(),
                )
                .build(),
        )
        .build();
    let queue = QueueConfiguration::builder()
        .id("sluice-transform")
        .queue_arn(&arn)
        .events(Event::from("s3:ObjectCreated:*"))
        .filter(filter)
        .build()
        .map_err(local)?;
    s3.put_bucket_notification_configuration()
        .bucket(&names.raw_bucket)
        .notification_configuration(
            NotificationConfiguration::builder()
                .queue_configurations(queue)
                .build(),
        )
        .send()
        .await
        .map_err(|e| {
            AwsError::from_sdk(
                "PutBucketNotificationConfiguration",
                names.raw_bucket.clone(),
                e,
            )
        })?;
    Ok(url)
}

/// Creates the pipeline's alarms, as `template.yaml` defines them: dead letters visible, and
/// the share of quarantined records above 0.1 % for ingest and transform. Putting an alarm
/// again replaces it.
pub async fn ensure_alarms(
    cw: &aws_sdk_cloudwatch::Client,
    names: &Names,
    prefix: &str,
) -> Result<(), AwsError> {
    use aws_sdk_cloudwatch::types::{
        ComparisonOperator, Dimension, Metric, MetricDataQuery, MetricStat, Statistic,
    };
    let dlq_alarm = format!("{prefix}-dlq-depth");
    cw.put_metric_alarm()
        .alarm_name(&dlq_alarm)
        .alarm_description("Dead letters are waiting: inspect them with `sluice status`.")
        .namespace("AWS/SQS")
        .metric_name("ApproximateNumberOfMessagesVisible")
        .dimensions(
            Dimension::builder()
                .name("QueueName")
                .value(&names.dlq)
                .build(),
        )
        .statistic(Statistic::Maximum)
        .period(60)
        .evaluation_periods(1)
        .threshold(0.0)
        .comparison_operator(ComparisonOperator::GreaterThanThreshold)
        .treat_missing_data("notBreaching")
        .send()
        .await
        .map_err(|e| AwsError::from_sdk("PutMetricAlarm", dlq_alarm.clone(), e))?;
    for (function, total) in [("ingest", "RecordsIn"), ("transform", "LinesIn")] {
        let name = format!("{prefix}-{function}-quarantine-rate");
        let stat = |id: &str, metric: &str| {
            MetricDataQuery::builder()
                .id(id)
                .return_data(false)
                .metric_stat(
                    MetricStat::builder()
                        .metric(
                            Metric::builder()
                                .namespace(sluice_aws::metrics::NAMESPACE)
                                .metric_name(metric)
                                .dimensions(
                                    Dimension::builder()
                                        .name("Function")
                                        .value(function)
                                        .build(),
                                )
                                .dimensions(
                                    Dimension::builder()
                                        .name(crate::cloudwatch::PIPELINE_DIMENSION)
                                        .value(prefix)
                                        .build(),
                                )
                                .build(),
                        )
                        .period(300)
                        .stat("Sum")
                        .build(),
                )
                .build()
        };
        cw.put_metric_alarm()
            .alarm_name(&name)
            .alarm_description(format!(
                "More than 0.1 % of {function}'s records were quarantined in 5 minutes."
            ))
            .metrics(stat("q", "RecordsQuarantined"))
            .metrics(stat("n", total))
            .metrics(
                MetricDataQuery::builder()
                    .id("rate")
                    .expression("IF(n > 0, 100 * q / n, 0)")
                    .label("quarantined %")
                    .return_data(true)
                    .build(),
            )
            .evaluation_periods(1)
            .threshold(0.1)
            .comparison_operator(ComparisonOperator::GreaterThanThreshold)
            .treat_missing_data("notBreaching")
            .send()
            .await
            .map_err(|e| AwsError::from_sdk("PutMetricAlarm", name.clone(), e))?;
    }
    Ok(())
}
