//! The redrive library against a real AWS-compatible endpoint, for the letters the CLI tests do
//! not make: a FIFO ingest letter, a stream mapping's on-failure record (in retention and past
//! it), and a claim-checked original over 256 KiB.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, StreamSpecification, StreamViewType,
};
use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use sluice_aws::metrics::Sink;
use sluice_aws::raw_objects::S3RawObjects;
use sluice_core::contract_set::ContractSet;
use sluice_core::envelope::{RedriveMark, REDRIVE_ATTRIBUTE};
use sluice_local::provision::{ensure_queue, queue_arn};
use sluice_pipeline::dlq::DlqSnapshot;
use sluice_pipeline::ingest::{handle, Ingest};
use sluice_pipeline::recovery::streams::StreamReaders;
use sluice_pipeline::recovery::{RecoveryConfig, Redrive, RedriveOptions, RedriveSummary};
use sluice_tests::faults::{Fault, FaultProxy, Rule};
use sluice_tests::{
    drain_transform, env, env_at, ingest_deps, ingest_deps_with_s3, ingest_resources, pipeline,
    raw_lines, receive, scan, transform_deps, unique, TestEnv,
};

/// The queues and bucket a redrive works with.
struct Queues {
    raw_bucket: String,
    dlq: String,
    transform: String,
    ingest: Option<String>,
    ingest_fifo: Option<String>,
    contracts: String,
}

fn config(q: &Queues) -> RecoveryConfig {
    RecoveryConfig::from_lookup(|name| match name {
        "SLUICE_RAW_BUCKET" => Some(q.raw_bucket.clone()),
        "SLUICE_DLQ_URL" => Some(q.dlq.clone()),
        "SLUICE_TRANSFORM_QUEUE_URL" => Some(q.transform.clone()),
        "SLUICE_INGEST_QUEUE_URL" => q.ingest.clone(),
        "SLUICE_INGEST_FIFO_QUEUE_URL" => q.ingest_fifo.clone(),
        "SLUICE_CONTRACTS" => Some(q.contracts.clone()),
        _ => None,
    })
    .unwrap()
}

async fn redrive(env: &TestEnv, q: &Queues, contracts: &ContractSet, all: bool) -> RedriveSummary {
    let config = config(q);
    let ingest = Ingest::from_sdk(config.ingest.clone(), &env.sdk, Sink::Discard);
    let objects = S3RawObjects::new(env.s3.clone());
    let streams = StreamReaders::from_sdk(&env.sdk);
    Redrive {
        config: &config,
        sqs: &env.sqs,
        objects: &objects,
        ingest: &ingest,
        contracts,
        max_line_bytes: config.max_line_bytes,
        s3: Some(&env.s3),
        streams: Some(&streams),
    }
    .run(
        &RedriveOptions {
            all,
            budget: Duration::from_secs(60),
            ..RedriveOptions::default()
        },
        None,
    )
    .await
    .unwrap()
}

async fn letters(env: &TestEnv, dlq: &str) -> DlqSnapshot {
    DlqSnapshot::read(&env.sqs, dlq, Duration::from_secs(60))
        .await
        .unwrap()
}

async fn plain_queue(env: &TestEnv, name: &str) -> String {
    ensure_queue(&env.sqs, name, HashMap::new()).await.unwrap()
}

/// GIVEN a message of a FIFO ingest queue, with a group and an attribute, that S3 refused to
/// land (access denied: a `raw_write_rejected` letter)
/// WHEN the cause is gone and the letter is redriven
/// THEN it goes back to the FIFO queue with its group, its attributes and its history, and then
/// lands.
#[tokio::test]
async fn a_fifo_ingest_letter_goes_back_with_its_group() {
    let env = env().await;
    let r = ingest_resources(&env, false).await;
    let fifo = ensure_queue(
        &env.sqs,
        &format!("{}.fifo", unique("in")),
        HashMap::from([
            (QueueAttributeName::FifoQueue, "true".to_owned()),
            (
                QueueAttributeName::ContentBasedDeduplication,
                "true".to_owned(),
            ),
        ]),
    )
    .await
    .unwrap();
    let body = r#"{"table":"people","op":"insert","key":{"id":1},"after":{"id":1},"seq":3}"#;
    env.sqs
        .send_message()
        .queue_url(&fifo)
        .message_body(body)
        .message_group_id("people-1")
        .message_attributes(
            "tenant",
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value("acme")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let got = receive(&env, &fifo, 1).await;
    let event = sluice_local::events::sqs_event(
        &queue_arn(&env.sqs, &fifo).await.unwrap(),
        "us-east-1",
        &got,
    );
    // S3 refuses the raw object for good: the record becomes a letter.
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new(
        "s3",
        "PutObject",
        Fault::Error {
            status: 403,
            code: "AccessDenied",
            message: "Access Denied",
        },
    ));
    let via = env_at(&proxy.url).await;
    handle(&event, &ingest_deps_with_s3(&env, &r, via.s3.clone()))
        .await
        .unwrap();
    env.sqs
        .delete_message()
        .queue_url(&fifo)
        .receipt_handle(got[0].receipt_handle().unwrap())
        .send()
        .await
        .unwrap();
    let before = letters(&env, &r.dlq_url).await;
    let env_letter = before.envelopes()[0].clone();
    assert_eq!(env_letter.error_code.as_deref(), Some("raw_write_rejected"));

    let q = Queues {
        raw_bucket: r.raw_bucket.clone(),
        dlq: r.dlq_url.clone(),
        transform: plain_queue(&env, &unique("t")).await,
        ingest: Some(r.ingest_queue_url.clone()),
        ingest_fifo: Some(fifo.clone()),
        contracts: "unused".into(),
    };
    let s = redrive(&env, &q, &ContractSet::from_files([]), false).await;
    assert_eq!((s.redriven, s.left), (1, 0), "{s:?}");
    assert!(letters(&env, &r.dlq_url).await.entries.is_empty());

    let back = receive(&env, &fifo, 1).await;
    assert_eq!(back.len(), 1);
    let m = &back[0];
    assert_eq!(m.body(), Some(body));
    assert_eq!(
        m.attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .map(String::as_str),
        Some("people-1")
    );
    let attrs = m.message_attributes().unwrap();
    assert_eq!(attrs["tenant"].string_value(), Some("acme"));
    let mark = RedriveMark::parse(attrs[REDRIVE_ATTRIBUTE].string_value().unwrap()).unwrap();
    assert_eq!(mark.retry_count, 1);
    assert_eq!(mark.origin_id.as_deref(), got[0].message_id());
    // Now it lands.
    let event = sluice_local::events::sqs_event(
        &queue_arn(&env.sqs, &fifo).await.unwrap(),
        "us-east-1",
        &back,
    );
    handle(&event, &ingest_deps(&env, &r)).await.unwrap();
    assert_eq!(raw_lines(&env, &r.raw_bucket).await.len(), 1);
}

async fn source_table_with_stream(env: &TestEnv) -> (String, String) {
    let table = unique("src");
    env.ddb
        .create_table()
        .table_name(&table)
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("id")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("id")
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
    let arn = env
        .ddb
        .describe_table()
        .table_name(&table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
        .latest_stream_arn
        .unwrap();
    (table, arn)
}

/// The stream's records: (shard, sequence numbers, event ids).
async fn stream_records(env: &TestEnv, arn: &str) -> (String, Vec<String>, Vec<String>) {
    let shard = env
        .streams
        .describe_stream()
        .stream_arn(arn)
        .send()
        .await
        .unwrap()
        .stream_description
        .unwrap()
        .shards()[0]
        .shard_id()
        .unwrap()
        .to_owned();
    let it = env
        .streams
        .get_shard_iterator()
        .stream_arn(arn)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = env
        .streams
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap()
        .records
        .unwrap_or_default();
    (
        shard,
        records
            .iter()
            .map(|r| r.dynamodb().unwrap().sequence_number().unwrap().to_owned())
            .collect(),
        records
            .iter()
            .map(|r| r.event_id().unwrap().to_owned())
            .collect(),
    )
}

fn on_failure_record(arn: &str, shard: &str, first: &str, last: &str, n: usize) -> String {
    serde_json::json!({
        "requestContext": {"requestId": "r-1", "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:ingest",
            "condition": "RetryAttemptsExhausted", "approximateInvokeCount": 11},
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "version": "1.0",
        "timestamp": "2026-11-30T06:00:00.000Z",
        "DDBStreamBatchInfo": {"shardId": shard, "startSequenceNumber": first, "endSequenceNumber": last,
            "approximateArrivalOfFirstRecord": "2026-11-30T05:59:00Z", "approximateArrivalOfLastRecord": "2026-11-30T05:59:01Z",
            "batchSize": n, "streamArn": arn}
    })
    .to_string()
}

/// GIVEN a DynamoDB stream mapping's on-failure record for the first two of three changes
/// WHEN it is redriven, and when the same range is past the stream's retention
/// THEN the two records are read again from the stream and landed (and the letter deleted); past
/// retention, the letter stays and says to replay raw staging.
#[tokio::test]
async fn a_stream_on_failure_record_is_read_again_from_its_stream() {
    let env = env().await;
    let r = ingest_resources(&env, false).await;
    let (table, arn) = source_table_with_stream(&env).await;
    for id in ["a", "b", "c"] {
        env.ddb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(id.into()))
            .item("n", AttributeValue::N("1".into()))
            .send()
            .await
            .unwrap();
    }
    let (shard, seqs, ids) = stream_records(&env, &arn).await;
    assert_eq!(seqs.len(), 3);
    let body = on_failure_record(&arn, &shard, &seqs[0], &seqs[1], 2);
    let q = Queues {
        raw_bucket: r.raw_bucket.clone(),
        dlq: r.dlq_url.clone(),
        transform: plain_queue(&env, &unique("t")).await,
        ingest: Some(r.ingest_queue_url.clone()),
        ingest_fifo: None,
        contracts: "unused".into(),
    };

    // Past retention: the stream answers as AWS does for a trimmed range.
    env.sqs
        .send_message()
        .queue_url(&r.dlq_url)
        .message_body(&body)
        .send()
        .await
        .unwrap();
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new(
        "dynamodb",
        "GetShardIterator",
        Fault::Error {
            status: 400,
            code: "TrimmedDataAccessException",
            message: "The operation attempted to read past the oldest stream record in a shard.",
        },
    ));
    let via = env_at(&proxy.url).await;
    let s = redrive(&via, &q, &ContractSet::from_files([]), false).await;
    assert_eq!((s.redriven, s.left, s.errors), (0, 1, 1), "{s:?}");
    let note = s.letters[0].note.clone().unwrap_or_default();
    assert!(
        note.contains("past the stream's retention") && note.contains("sluice replay"),
        "{note}"
    );
    assert_eq!(
        letters(&env, &r.dlq_url).await.unprocessed().len(),
        1,
        "the letter stays"
    );
    assert!(raw_lines(&env, &r.raw_bucket).await.is_empty());

    // In retention: read again and landed.
    let s = redrive(&env, &q, &ContractSet::from_files([]), false).await;
    assert_eq!((s.redriven, s.left), (1, 0), "{s:?}");
    assert!(letters(&env, &r.dlq_url).await.entries.is_empty());
    let mut landed: Vec<String> = raw_lines(&env, &r.raw_bucket)
        .await
        .iter()
        .map(|(_, l)| sluice_tests::origin_id(l))
        .collect();
    landed.sort();
    let mut want = ids[..2].to_vec();
    want.sort();
    assert_eq!(landed, want, "exactly the range, from the stream");

    // A range whose last record the shard does not hold: nothing of it is sent, the letter stays.
    let beyond = format!("{}0", seqs[2]);
    env.sqs
        .send_message()
        .queue_url(&r.dlq_url)
        .message_body(on_failure_record(&arn, &shard, &seqs[2], &beyond, 2))
        .send()
        .await
        .unwrap();
    let s = redrive(&env, &q, &ContractSet::from_files([]), false).await;
    assert_eq!((s.redriven, s.left, s.errors), (0, 1, 1), "{s:?}");
    let note = s.letters[0].note.clone().unwrap_or_default();
    assert!(note.contains("was not reached"), "{note}");
    assert_eq!(letters(&env, &r.dlq_url).await.unprocessed().len(), 1);
    assert_eq!(
        raw_lines(&env, &r.raw_bucket).await.len(),
        2,
        "nothing more landed"
    );
}

/// GIVEN a record over 256 KiB that fails its contract, on queues whose messages hold at most
/// 256 KiB, so its letter is claim-checked in S3
/// WHEN the contract is fixed and the letter redriven
/// THEN the original is read back whole, goes back as a reference to its raw line (it does not
/// fit a message), and becomes a row with every byte.
#[tokio::test]
async fn a_claim_checked_original_over_256_kib_is_redriven_whole() {
    let env = env().await;
    let strict = "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string, required: true}\n  - {name: bio, type: string}\n";
    let p = pipeline(&env, &[("people.yaml", strict.to_owned())]).await;
    for url in [&p.ingest.dlq_url, &p.transform_queue_url] {
        env.sqs
            .set_queue_attributes()
            .queue_url(url.as_str())
            .attributes(QueueAttributeName::MaximumMessageSize, "262144")
            .send()
            .await
            .unwrap();
    }
    let bio = format!("ü{}", "x".repeat(300 * 1024));
    let body = format!(
        r#"{{"table":"people","op":"insert","key":{{"id":1}},"after":{{"id":1,"bio":"{bio}"}},"seq":1}}"#
    );
    assert!(body.len() > 256 * 1024);
    // Straight into raw staging, as ingest lands it.
    let r = sluice_local::provision::IngestResources {
        raw_bucket: p.ingest.raw_bucket.clone(),
        dlq_url: p.ingest.dlq_url.clone(),
        ingest_queue_url: p.ingest.ingest_queue_url.clone(),
    };
    let event = serde_json::json!({"Records": [{"messageId": "m-big", "body": body,
        "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
        "eventSource": "aws:sqs", "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:in"}]})
    .to_string();
    handle(&event, &ingest_deps(&env, &r)).await.unwrap();
    let deps = transform_deps(&env, &p);
    drain_transform(&env, &p, &deps).await;
    let before = letters(&env, &p.ingest.dlq_url).await;
    let letter = before.envelopes()[0].clone();
    assert_eq!(letter.error_code.as_deref(), Some("missing_field"));
    assert!(letter.original.is_none(), "claim-checked");
    assert!(letter
        .original_ref
        .as_deref()
        .is_some_and(|r| r.contains("/quarantine/")));

    let fixed = strict
        .replace("version: 1", "version: 2")
        .replace("required: true", "default: none");
    p.put_contract(&env, "people.yaml", &fixed).await;
    let contracts = ContractSet::from_files([("people.yaml".to_owned(), fixed.clone())]);
    let q = Queues {
        raw_bucket: p.ingest.raw_bucket.clone(),
        dlq: p.ingest.dlq_url.clone(),
        transform: p.transform_queue_url.clone(),
        ingest: Some(p.ingest.ingest_queue_url.clone()),
        ingest_fifo: None,
        contracts: p.contracts_dir.display().to_string(),
    };
    let s = redrive(&env, &q, &contracts, false).await;
    assert_eq!((s.redriven, s.left), (1, 0), "{s:?}");
    let sent = receive(&env, &p.transform_queue_url, 1).await;
    assert!(
        sent[0]
            .body()
            .unwrap()
            .starts_with(r#"{"sluice_line_ref":"s3://"#),
        "too large for the queue: sent as a reference"
    );
    // Put it back for the transform drain to take.
    env.sqs
        .change_message_visibility()
        .queue_url(&p.transform_queue_url)
        .receipt_handle(sent[0].receipt_handle().unwrap())
        .visibility_timeout(0)
        .send()
        .await
        .unwrap();
    let deps = transform_deps(&env, &p);
    let (stats, failed) = drain_transform(&env, &p, &deps).await;
    assert_eq!(failed, 0);
    assert_eq!(stats.tables["people"].written, 1, "{stats:?}");
    let rows = scan(&env, &p.typed_table("people")).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["bio"], AttributeValue::S(bio));
    let left = letters(&env, &p.ingest.dlq_url).await;
    let described: Vec<String> = left
        .entries
        .iter()
        .map(|e| e.describe().chars().take(300).collect())
        .collect();
    assert!(left.entries.is_empty(), "{described:?}");
}

/// GIVEN a failed DynamoDB stream invocation kept whole in S3 (the S3 on-failure destination),
/// its records in its `payload`
/// WHEN it is redriven
/// THEN its records land without any stream read, and the object is deleted.
#[tokio::test]
async fn a_failed_invocation_kept_in_s3_is_redriven_from_its_records() {
    let env = env().await;
    let r = ingest_resources(&env, false).await;
    let (table, arn) = source_table_with_stream(&env).await;
    for id in ["a", "b"] {
        env.ddb
            .put_item()
            .table_name(&table)
            .item("id", AttributeValue::S(id.into()))
            .send()
            .await
            .unwrap();
    }
    let (shard, seqs, ids) = stream_records(&env, &arn).await;
    // The records as the mapping delivered them, read here from the stream once.
    let it = env
        .streams
        .get_shard_iterator()
        .stream_arn(&arn)
        .shard_id(&shard)
        .shard_iterator_type(aws_sdk_dynamodbstreams::types::ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap()
        .shard_iterator
        .unwrap();
    let records = env
        .streams
        .get_records()
        .shard_iterator(it)
        .send()
        .await
        .unwrap()
        .records
        .unwrap_or_default();
    let event = sluice_local::events::stream_event(&arn, "us-east-1", &records);
    let mut kept: serde_json::Value =
        serde_json::from_str(&on_failure_record(&arn, &shard, &seqs[0], &seqs[1], 2)).unwrap();
    // AWS keeps the event as JSON text in `payload`.
    kept["payload"] = event.into();
    let key = format!(
        "aws/lambda/{}/{shard}/2026/11/30/2026-11-30T06.00.00-{}",
        unique("esm"),
        unique("x")
    );
    env.s3
        .put_object()
        .bucket(&r.raw_bucket)
        .key(&key)
        .body(kept.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let q = Queues {
        raw_bucket: r.raw_bucket.clone(),
        dlq: r.dlq_url.clone(),
        transform: plain_queue(&env, &unique("t")).await,
        ingest: None,
        ingest_fifo: None,
        contracts: "unused".into(),
    };
    let s = redrive(&env, &q, &ContractSet::from_files([]), false).await;
    assert_eq!((s.redriven, s.left), (1, 0), "{s:?}");
    assert_eq!(s.letters[0].code, "on_failure");
    let mut landed: Vec<String> = raw_lines(&env, &r.raw_bucket)
        .await
        .iter()
        .map(|(_, l)| sluice_tests::origin_id(l))
        .collect();
    landed.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(landed, want);
    assert!(
        sluice_tests::list_keys(&env, &r.raw_bucket, "aws/lambda/")
            .await
            .is_empty(),
        "the kept invocation is deleted once its records landed"
    );
}

async fn send_many(env: &TestEnv, url: &str, n: usize, group: Option<&str>) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|i| {
                let e = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(format!(r#"{{"n":{i}}}"#));
                match group {
                    Some(g) => e
                        .message_group_id(g)
                        .message_deduplication_id(format!("{g}-{i}")),
                    None => e,
                }
                .build()
                .unwrap()
            })
            .collect::<Vec<_>>();
        env.sqs
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
}

/// GIVEN a standard queue of 250 messages
/// WHEN it is read without consuming, with several receives in flight at once
/// THEN every message is read exactly once, the read says it is complete, and a second read
/// finds the same messages (the first gave them all back).
#[tokio::test]
async fn a_parallel_read_sees_each_message_once_and_gives_all_back() {
    let env = env().await;
    let url = ensure_queue(&env.sqs, &unique("peek"), HashMap::new())
        .await
        .unwrap();
    send_many(&env, &url, 250, None).await;
    let read = |env: &TestEnv| {
        let (sqs, url) = (env.sqs.clone(), url.clone());
        async move {
            sluice_aws::dead_letters::peek_all(&sqs, &url, Duration::from_secs(120))
                .await
                .unwrap()
        }
    };
    let first = read(&env).await;
    let ids: std::collections::HashSet<_> = first
        .messages
        .iter()
        .map(|m| m.message_id().unwrap().to_owned())
        .collect();
    assert_eq!((first.messages.len(), ids.len()), (250, 250));
    assert!(first.complete, "{:?}", first.incomplete_reason);
    let second = read(&env).await;
    let again: std::collections::HashSet<_> = second
        .messages
        .iter()
        .map(|m| m.message_id().unwrap().to_owned())
        .collect();
    assert_eq!(again, ids, "the first read gave every message back");
}

/// GIVEN a FIFO dead-letter queue with 25 messages in one group and 3 in another
/// WHEN it is read without consuming
/// THEN the read does not call itself complete (a FIFO queue shows only the head of a group
/// it holds) and says why, and every message is visible again afterwards.
#[tokio::test]
async fn a_read_of_a_fifo_queue_says_what_it_could_not_see() {
    let env = env().await;
    let url = ensure_queue(
        &env.sqs,
        &format!("{}.fifo", unique("dlq")),
        HashMap::from([(QueueAttributeName::FifoQueue, "true".to_owned())]),
    )
    .await
    .unwrap();
    send_many(&env, &url, 25, Some("people-1")).await;
    send_many(&env, &url, 3, Some("people-2")).await;
    let peeked = sluice_aws::dead_letters::peek_all(&env.sqs, &url, Duration::from_secs(60))
        .await
        .unwrap();
    // The head of each group: at most ten of the first (one receive's most), then it is held.
    let read = peeked.messages.len();
    assert!((3..=13).contains(&read), "{read}");
    assert!(!peeked.complete);
    let why = peeked.incomplete_reason.unwrap();
    assert!(
        why.contains(&format!(
            "about {} more message(s) wait behind the {read} read",
            28 - read
        )) && why.contains("FIFO queue shows only the head"),
        "{why}"
    );
    let visible = env
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await
        .unwrap();
    assert_eq!(
        visible
            .attributes()
            .unwrap()
            .get(&QueueAttributeName::ApproximateNumberOfMessages)
            .map(String::as_str),
        Some("28")
    );
}

/// GIVEN a failed stream invocation kept in S3 by an on-failure destination
/// WHEN the letters are held (as `sluice dlq export` and `purge` hold them), given back, then
/// held again and its id deleted
/// THEN it is one of the letters, as unprocessed; giving it back leaves the object, and deleting
/// it removes the object.
#[tokio::test]
async fn export_and_purge_cover_invocations_kept_in_s3() {
    use sluice_pipeline::dlq::Held;
    let env = env().await;
    let r = ingest_resources(&env, false).await;
    let key = format!("aws/lambda/{}/shard-1/2026/11/30/x", unique("esm"));
    env.s3
        .put_object()
        .bucket(&r.raw_bucket)
        .key(&key)
        .body(
            on_failure_record(
                "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/s",
                "shard-1",
                "1",
                "2",
                2,
            )
            .into_bytes()
            .into(),
        )
        .send()
        .await
        .unwrap();
    let hold = || async {
        let mut held = Held::read(
            &env.sqs,
            std::slice::from_ref(&r.dlq_url),
            Duration::from_secs(30),
        )
        .await
        .unwrap();
        held.add_s3_failures(&env.s3, &r.raw_bucket).await.unwrap();
        held
    };
    let held = hold().await;
    let kept: Vec<_> = held
        .entries
        .iter()
        .filter(|e| e.message_id == key)
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].letter.is_unprocessed());
    assert_eq!(held.finish(&env.sqs, &[]).await.unwrap(), 0);
    assert!(env
        .s3
        .head_object()
        .bucket(&r.raw_bucket)
        .key(&key)
        .send()
        .await
        .is_ok());

    let held = hold().await;
    assert_eq!(
        held.finish(&env.sqs, std::slice::from_ref(&key))
            .await
            .unwrap(),
        1
    );
    assert!(env
        .s3
        .head_object()
        .bucket(&r.raw_bucket)
        .key(&key)
        .send()
        .await
        .is_err());
}
