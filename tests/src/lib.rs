//! Helpers for sluice's end-to-end tests, which run against a real AWS-compatible endpoint.
//!
//! The endpoint is `AWS_ENDPOINT_URL` (set by `make test`, which starts the local emulator).
//! With the `localstack` feature, LocalStack is started in Docker through testcontainers
//! instead. Every test names its resources uniquely, so tests run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod battery;
pub mod checker;
pub mod faults;

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_config::SdkConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use sluice_aws::clients::{load_sdk_config_with, s3_client, sqs_client, Overrides};
use sluice_aws::dead_letters::SqsDeadLetters;
use sluice_aws::metrics::Sink;
use sluice_aws::raw_store::S3RawStore;
use sluice_core::envelope::FailureEnvelope;
use sluice_core::raw::OwnedRawLine;
use sluice_local::provision::{ensure_ingest, IngestResources, Names};
use sluice_pipeline::ingest::Ingest;
use sluice_pipeline::transform::{Transform, TransformStats};
use sluice_pipeline::{IngestConfig, TransformConfig};

/// Clients on the test endpoint.
pub struct TestEnv {
    /// The endpoint URL.
    pub endpoint: String,
    /// The shared SDK configuration.
    pub sdk: SdkConfig,
    /// S3, path-style.
    pub s3: aws_sdk_s3::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// DynamoDB.
    pub ddb: aws_sdk_dynamodb::Client,
    /// DynamoDB Streams.
    pub streams: aws_sdk_dynamodbstreams::Client,
    /// Kinesis Data Streams.
    pub kinesis: aws_sdk_kinesis::Client,
}

#[cfg(feature = "localstack")]
async fn endpoint() -> String {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{ContainerAsync, GenericImage};
    use tokio::sync::OnceCell;
    static CONTAINER: OnceCell<(ContainerAsync<GenericImage>, String)> = OnceCell::const_new();
    let (_, url) = CONTAINER
        .get_or_init(|| async {
            let container = GenericImage::new("localstack/localstack", "4")
                .with_exposed_port(4566.tcp())
                .with_wait_for(WaitFor::message_on_stdout("Ready."))
                .start()
                .await
                .expect("LocalStack should start in Docker");
            let port = container
                .get_host_port_ipv4(4566)
                .await
                .expect("port 4566 is mapped");
            (container, format!("http://127.0.0.1:{port}"))
        })
        .await;
    url.clone()
}

#[cfg(not(feature = "localstack"))]
async fn endpoint() -> String {
    match std::env::var("AWS_ENDPOINT_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "AWS_ENDPOINT_URL is not set. End-to-end tests need an AWS-compatible endpoint: \
             run them with `make test`, which starts the local emulator, or build with \
             `--features localstack` on a machine with Docker."
        ),
    }
}

/// Clients on the test endpoint, with test credentials unless some are configured.
pub async fn env() -> TestEnv {
    let endpoint = endpoint().await;
    env_at(&endpoint).await
}

/// Clients on `endpoint`: the test endpoint, or a [`faults::FaultProxy`] in front of it.
pub async fn env_at(endpoint: &str) -> TestEnv {
    if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
        // The emulator accepts any credentials; tests must not pick up a real profile.
        std::env::set_var("AWS_ACCESS_KEY_ID", "test");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "test");
    }
    let sdk = load_sdk_config_with(&Overrides {
        endpoint_url: Some(endpoint.to_owned()),
        region: Some("us-east-1".into()),
        profile: None,
    })
    .await;
    TestEnv {
        s3: s3_client(&sdk),
        sqs: sqs_client(&sdk),
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        sdk,
        endpoint: endpoint.to_owned(),
    }
}

/// Clients on `endpoint` with these credentials (an IAM user's access key, say) instead of the
/// test ones.
pub async fn env_as(endpoint: &str, access_key_id: &str, secret_access_key: &str) -> TestEnv {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "sluice-tests",
        ))
        .load()
        .await;
    TestEnv {
        s3: s3_client(&sdk),
        sqs: sqs_client(&sdk),
        ddb: aws_sdk_dynamodb::Client::new(&sdk),
        streams: aws_sdk_dynamodbstreams::Client::new(&sdk),
        kinesis: aws_sdk_kinesis::Client::new(&sdk),
        sdk,
        endpoint: endpoint.to_owned(),
    }
}

/// A name no other test uses: `prefix-<pid>-<time>-<counter>`, lowercase.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh raw bucket, DLQ and ingest queue.
pub async fn ingest_resources(env: &TestEnv, fifo: bool) -> IngestResources {
    ensure_ingest(&env.s3, &env.sqs, &Names::new(&unique("t")), fifo)
        .await
        .unwrap()
}

/// The ingest handler's dependencies on `resources`, with a given S3 client for raw writes.
pub fn ingest_deps_with_s3(
    env: &TestEnv,
    resources: &IngestResources,
    raw_s3: aws_sdk_s3::Client,
) -> Ingest<S3RawStore, SqsDeadLetters> {
    let config = IngestConfig::from_lookup(|name| match name {
        "SLUICE_RAW_BUCKET" => Some(resources.raw_bucket.clone()),
        "SLUICE_DLQ_URL" => Some(resources.dlq_url.clone()),
        _ => None,
    })
    .unwrap();
    Ingest::on_aws(
        config,
        env.s3.clone(),
        raw_s3,
        env.sqs.clone(),
        Sink::Discard,
    )
}

/// The ingest handler's dependencies on `resources`.
pub fn ingest_deps(
    env: &TestEnv,
    resources: &IngestResources,
) -> Ingest<S3RawStore, SqsDeadLetters> {
    ingest_deps_with_s3(env, resources, env.s3.clone())
}

/// Every key in the bucket under `prefix`.
pub async fn list_keys(env: &TestEnv, bucket: &str, prefix: &str) -> Vec<String> {
    sluice_aws::listing::list_keys(&env.s3, bucket, prefix)
        .await
        .unwrap()
}

/// An object's bytes.
pub async fn get_object(env: &TestEnv, bucket: &str, key: &str) -> Vec<u8> {
    let out = env
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

/// Every raw line in the bucket, with the key of its object.
pub async fn raw_lines(env: &TestEnv, bucket: &str) -> Vec<(String, OwnedRawLine)> {
    let mut lines = Vec::new();
    for key in list_keys(env, bucket, "raw/").await {
        let gz = get_object(env, bucket, &key).await;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut text)
            .unwrap();
        for line in text.lines() {
            lines.push((key.clone(), serde_json::from_str(line).unwrap()));
        }
    }
    lines
}

/// The `origin.id` of a raw line.
pub fn origin_id(line: &OwnedRawLine) -> String {
    let origin: serde_json::Value = serde_json::from_str(line.origin.get()).unwrap();
    origin["id"].as_str().unwrap().to_owned()
}

/// Receives messages until `expected` have arrived or the queue stays empty for a while.
pub async fn receive(
    env: &TestEnv,
    queue_url: &str,
    expected: usize,
) -> Vec<aws_sdk_sqs::types::Message> {
    let mut got = Vec::new();
    let mut empty_polls = 0;
    while got.len() < expected && empty_polls < 3 {
        let out = env
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let batch = out.messages.unwrap_or_default();
        if batch.is_empty() {
            empty_polls += 1;
        }
        got.extend(batch);
    }
    got
}

/// Dead letters on the queue, with their message attributes.
pub async fn dead_letters(
    env: &TestEnv,
    dlq_url: &str,
    expected: usize,
) -> Vec<(FailureEnvelope, HashMap<String, String>)> {
    receive(env, dlq_url, expected)
        .await
        .into_iter()
        .map(|m| {
            let attrs = m
                .message_attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            (serde_json::from_str(m.body().unwrap()).unwrap(), attrs)
        })
        .collect()
}

/// The ARN of a queue.
pub async fn queue_arn(env: &TestEnv, url: &str) -> String {
    sluice_local::provision::queue_arn(&env.sqs, url)
        .await
        .unwrap()
}

/// An S3 client whose requests fail when their URI contains `needle`.
pub fn s3_failing_for(env: &TestEnv, needle: &str) -> aws_sdk_s3::Client {
    s3_with_outage(
        env,
        needle,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
    )
}

/// An S3 client on an endpoint that refuses every connection.
pub fn s3_refusing(env: &TestEnv) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&env.sdk)
        .endpoint_url("http://127.0.0.1:1")
        .force_path_style(true)
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Reads a fixture under `tests/fixtures/`.
pub fn fixture(path: &str) -> String {
    let full = format!("{}/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("fixture {full}: {e}"))
}

/// A whole local pipeline on the endpoint: ingest and transform resources, contracts in a
/// directory of their own, and a typed table per contract.
pub struct Pipeline {
    /// The resource names.
    pub names: Names,
    /// Raw bucket, DLQ, ingest queue.
    pub ingest: IngestResources,
    /// The transform queue, fed by the raw bucket's notifications.
    pub transform_queue_url: String,
    /// Where the contracts are.
    pub contracts_dir: std::path::PathBuf,
}

impl Pipeline {
    /// The physical name of a contract's typed table.
    pub fn typed_table(&self, contract: &str) -> String {
        format!("{}{contract}", self.names.typed_table_prefix)
    }

    /// Writes (or rewrites) a contract file and makes sure its typed table exists.
    pub async fn put_contract(&self, env: &TestEnv, file: &str, text: &str) {
        std::fs::write(self.contracts_dir.join(file), text).unwrap();
        let contract = sluice_core::contract::parse(file, text).unwrap();
        sluice_local::provision::ensure_typed_table(
            &env.ddb,
            &self.typed_table(&contract.name),
            &contract.key_schema(),
        )
        .await
        .unwrap();
    }
}

/// Creates a fresh pipeline with these contracts (file name, text).
pub async fn pipeline(env: &TestEnv, contracts: &[(&str, String)]) -> Pipeline {
    let names = Names::new(&unique("p"));
    let ingest = ensure_ingest(&env.s3, &env.sqs, &names, false)
        .await
        .unwrap();
    let transform_queue_url =
        sluice_local::provision::ensure_transform(&env.s3, &env.sqs, &names, &ingest.dlq_url)
            .await
            .unwrap();
    let contracts_dir = std::env::temp_dir().join(unique("contracts"));
    std::fs::create_dir_all(&contracts_dir).unwrap();
    let p = Pipeline {
        names,
        ingest,
        transform_queue_url,
        contracts_dir,
    };
    for (file, text) in contracts {
        p.put_contract(env, file, text).await;
    }
    p
}

/// The transform handler's dependencies for `p`; contracts are reloaded on every use.
pub fn transform_deps(env: &TestEnv, p: &Pipeline) -> TransformOnAws {
    transform_deps_with(env, p, &p.contracts_dir.display().to_string())
}

/// The transform handler on the AWS adapters.
pub type TransformOnAws = Transform<
    sluice_aws::raw_objects::S3RawObjects,
    sluice_aws::typed_tables::DynamoTypedTables,
    SqsDeadLetters,
>;

/// The transform handler's dependencies for `p`, with every call made through `via` (a
/// [`faults::FaultProxy`] in front of the endpoint, say).
pub fn transform_deps_via(via: &TestEnv, p: &Pipeline) -> TransformOnAws {
    transform_deps_with(via, p, &p.contracts_dir.display().to_string())
}

/// The transform handler's dependencies for `p`, reading contracts from `contracts`.
pub fn transform_deps_with(env: &TestEnv, p: &Pipeline, contracts: &str) -> TransformOnAws {
    let config = TransformConfig::from_lookup(|name| match name {
        "SLUICE_RAW_BUCKET" => Some(p.ingest.raw_bucket.clone()),
        "SLUICE_DLQ_URL" => Some(p.ingest.dlq_url.clone()),
        "SLUICE_CONTRACTS" => Some(contracts.to_owned()),
        "SLUICE_CONTRACTS_TTL_SECS" => Some("0".into()),
        "SLUICE_TYPED_TABLE_PREFIX" => Some(p.names.typed_table_prefix.clone()),
        _ => None,
    })
    .unwrap();
    Transform::from_sdk(config, &env.sdk, Sink::Discard)
}

/// Runs the transform handler on everything on the transform queue, as an event source mapping
/// would: batches of up to 10, deleting only the messages that succeeded. Returns the summed
/// stats and the number of messages left for retry.
pub async fn drain_transform<O, T, D>(
    env: &TestEnv,
    p: &Pipeline,
    deps: &Transform<O, T, D>,
) -> (TransformStats, usize)
where
    O: sluice_aws::raw_objects::RawObjects,
    T: sluice_aws::typed_tables::TypedTables,
    D: sluice_aws::DeadLetters,
{
    let arn = queue_arn(env, &p.transform_queue_url).await;
    let mut total = TransformStats::default();
    let mut failed = 0;
    loop {
        let batch = receive(env, &p.transform_queue_url, 10).await;
        if batch.is_empty() {
            break;
        }
        let event = sluice_local::events::sqs_event(&arn, "us-east-1", &batch);
        let (response, stats) = sluice_pipeline::transform::handle(&event, deps)
            .await
            .unwrap();
        let failed_ids: std::collections::HashSet<String> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        failed += failed_ids.len();
        for m in &batch {
            if !failed_ids.contains(m.message_id().unwrap()) {
                env.sqs
                    .delete_message()
                    .queue_url(&p.transform_queue_url)
                    .receipt_handle(m.receipt_handle().unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
        merge(&mut total, stats);
        if failed > 0 {
            break;
        }
    }
    (total, failed)
}

fn merge(total: &mut TransformStats, s: TransformStats) {
    total.lines += s.lines;
    total.objects += s.objects;
    total.control += s.control;
    for (k, v) in s.quarantined {
        *total.quarantined.entry(k).or_default() += v;
    }
    for (k, v) in s.tables {
        let t = total.tables.entry(k).or_default();
        t.written += v.written;
        t.already_written += v.already_written;
        t.stale += v.stale;
        t.quarantined += v.quarantined;
    }
}

/// Every item of a DynamoDB table.
pub async fn scan(
    env: &TestEnv,
    table: &str,
) -> Vec<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    let mut items = Vec::new();
    let mut start = None;
    loop {
        let out = env
            .ddb
            .scan()
            .table_name(table)
            .consistent_read(true)
            .set_exclusive_start_key(start)
            .send()
            .await
            .unwrap();
        items.extend(out.items().iter().cloned());
        match out.last_evaluated_key() {
            Some(k) if !k.is_empty() => start = Some(k.clone()),
            _ => break,
        }
    }
    items
}

/// Every item of a table, by the string value of its `key` attribute.
pub async fn scan_by(
    env: &TestEnv,
    table: &str,
    key: &str,
) -> std::collections::BTreeMap<String, HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    scan(env, table)
        .await
        .into_iter()
        .map(|i| (i[key].as_s().unwrap().clone(), i))
        .collect()
}

/// The live keys and the tombstoned keys of typed rows.
pub fn live_and_tombstones(
    typed: &std::collections::BTreeMap<
        String,
        HashMap<String, aws_sdk_dynamodb::types::AttributeValue>,
    >,
) -> (
    std::collections::BTreeSet<String>,
    std::collections::BTreeSet<String>,
) {
    let tombstone = |i: &HashMap<String, aws_sdk_dynamodb::types::AttributeValue>| {
        i.get(sluice_core::row::DELETED_ATTR)
            == Some(&aws_sdk_dynamodb::types::AttributeValue::Bool(true))
    };
    let live = typed
        .iter()
        .filter(|(_, i)| !tombstone(i))
        .map(|(k, _)| k.clone())
        .collect();
    let dead = typed
        .iter()
        .filter(|(_, i)| tombstone(i))
        .map(|(k, _)| k.clone())
        .collect();
    (live, dead)
}

/// Drains the transform queue and checks that every one of `lines` raw lines was read, nothing
/// was retried and nothing quarantined (else it panics with the dead letters' errors).
pub async fn drain_transform_clean(env: &TestEnv, p: &Pipeline, lines: usize) -> TransformStats {
    let (stats, failed) = drain_transform(env, p, &transform_deps(env, p)).await;
    assert_eq!(failed, 0);
    assert_eq!(stats.lines, lines, "every raw line was read");
    if !stats.quarantined.is_empty() {
        let letters = dead_letters(env, &p.ingest.dlq_url, 3).await;
        let errors: Vec<&str> = letters.iter().map(|(e, _)| e.error.as_str()).collect();
        panic!("{:?}: {errors:#?}", stats.quarantined);
    }
    stats
}

/// Sends bodies to the ingest queue, receives them all, and runs ingest on them as one event
/// per `batch` messages. Returns the message ids in send order.
pub async fn ingest_bodies<R, D>(
    env: &TestEnv,
    p: &Pipeline,
    deps: &Ingest<R, D>,
    bodies: &[String],
    batch: usize,
) -> Vec<String>
where
    R: sluice_aws::RawStore,
    D: sluice_aws::DeadLetters,
{
    let mut ids = Vec::new();
    for body in bodies {
        let out = env
            .sqs
            .send_message()
            .queue_url(&p.ingest.ingest_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        ids.push(out.message_id.unwrap());
    }
    let arn = queue_arn(env, &p.ingest.ingest_queue_url).await;
    let mut got = 0;
    while got < bodies.len() {
        let messages = receive(
            env,
            &p.ingest.ingest_queue_url,
            batch.min(bodies.len() - got),
        )
        .await;
        assert!(!messages.is_empty(), "every message sent is received");
        got += messages.len();
        for chunk in messages.chunks(batch) {
            let response = sluice_pipeline::ingest::handle(
                &sluice_local::events::sqs_event(&arn, "us-east-1", chunk),
                deps,
            )
            .await
            .unwrap();
            assert!(response.failed_ids().is_empty());
        }
    }
    ids
}

/// An SDK interceptor that fails every request whose URI contains `needle` while `active` is
/// set: an outage that can be ended.
#[derive(Debug, Clone)]
pub struct FailWhile {
    /// Whether the outage is on.
    pub active: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The substring of the URI that is affected.
    pub needle: String,
}

impl Intercept for FailWhile {
    fn name(&self) -> &'static str {
        "FailWhile"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.active.load(Ordering::SeqCst) && context.request().uri().contains(&self.needle) {
            return Err(format!("injected outage for {}", self.needle).into());
        }
        Ok(())
    }
}

/// An S3 client whose requests fail (for URIs containing `needle`) while `active` is set.
pub fn s3_with_outage(
    env: &TestEnv,
    needle: &str,
    active: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&env.sdk)
        .force_path_style(true)
        .interceptor(FailWhile {
            active,
            needle: needle.to_owned(),
        })
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

/// Creates a DynamoDB table keyed by `pk` (S) with a NEW_AND_OLD_IMAGES stream; returns the
/// stream's ARN.
pub async fn source_table(env: &TestEnv, name: &str) -> String {
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
        StreamSpecification, StreamViewType,
    };
    env.ddb
        .create_table()
        .table_name(name)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::NewAndOldImages)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    env.ddb
        .describe_table()
        .table_name(name)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .latest_stream_arn
        .unwrap()
}

/// Every record of a stream, from the trim horizon, through the DynamoDB Streams API.
pub async fn stream_records(
    env: &TestEnv,
    stream_arn: &str,
) -> Vec<aws_sdk_dynamodbstreams::types::Record> {
    use aws_sdk_dynamodbstreams::types::ShardIteratorType;
    let shards = env
        .streams
        .describe_stream()
        .stream_arn(stream_arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards
        .unwrap_or_default();
    let mut records = Vec::new();
    for shard in shards {
        let mut it = env
            .streams
            .get_shard_iterator()
            .stream_arn(stream_arn)
            .shard_id(shard.shard_id().unwrap())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator;
        while let Some(i) = it {
            let out = env
                .streams
                .get_records()
                .shard_iterator(i)
                .limit(1000)
                .send()
                .await
                .unwrap();
            if out.records().is_empty() {
                break;
            }
            records.extend(out.records().iter().cloned());
            it = out.next_shard_iterator;
        }
    }
    records
}
