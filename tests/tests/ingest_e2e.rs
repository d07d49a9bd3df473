//! End to end: the ingest handler against a real AWS-compatible endpoint.
//!
//! Sources are real: a DynamoDB table with a stream, read through the DynamoDB Streams API, and
//! SQS queues, read with ReceiveMessage. Their output is turned into Lambda events the way an
//! event source mapping does, and the handler's effects are checked in S3 and on the DLQ.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};

use aws_sdk_dynamodb::types::AttributeValue as A;
use sluice_core::json::{compact, read_str, Limits};
use sluice_core::ErrorClass;
use sluice_local::events::{sqs_event, stream_event, stream_record_json};
use sluice_pipeline::ingest::{handle, IngestResponse};
use sluice_tests::*;

/// Item number `i` with every attribute type, and numbers that an f64 would round.
fn item(i: usize, version: usize) -> HashMap<String, A> {
    let blob = aws_sdk_dynamodb::primitives::Blob::new(vec![i as u8, 0, 255, version as u8]);
    HashMap::from([
        ("pk".to_owned(), A::S(format!("item-{i:04}"))),
        (
            "s".to_owned(),
            A::S(format!("text ✓ \"quoted\" {i} v{version}")),
        ),
        (
            "n_big".to_owned(),
            A::N(format!("1234567890123456789012345678901234567.{version}")),
        ),
        (
            "n_neg".to_owned(),
            A::N(format!("-0.000000000000000000000000000000000{i}")),
        ),
        ("n_int".to_owned(), A::N(format!("{}", i * 1000 + version))),
        ("b".to_owned(), A::B(blob.clone())),
        (
            "ss".to_owned(),
            A::Ss(vec![format!("a{i}"), format!("b{version}")]),
        ),
        (
            "ns".to_owned(),
            A::Ns(vec!["1".into(), format!("{version}.25")]),
        ),
        (
            "bs".to_owned(),
            A::Bs(vec![blob, aws_sdk_dynamodb::primitives::Blob::new(vec![7])]),
        ),
        (
            "m".to_owned(),
            A::M(HashMap::from([
                (
                    "nested".to_owned(),
                    A::L(vec![A::S("x".into()), A::N("3.14".into()), A::Null(true)]),
                ),
                ("flag".to_owned(), A::Bool(version.is_multiple_of(2))),
            ])),
        ),
        (
            "l".to_owned(),
            A::L(vec![A::Bool(true), A::M(HashMap::new()), A::L(vec![])]),
        ),
        ("nul".to_owned(), A::Null(true)),
        ("flag".to_owned(), A::Bool(i.is_multiple_of(2))),
    ])
}

/// GIVEN a DynamoDB table with a stream and over 300 mutations of every attribute type
/// WHEN its stream is read through the Streams API and ingested in batches of 100
/// THEN the raw objects hold every change exactly once, each `record` equal to its stream record.
#[tokio::test]
async fn dynamodb_stream_changes_land_exactly_once_and_verbatim() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let deps = ingest_deps(&env, &res);
    let table = unique("orders");
    let stream_arn = source_table(&env, &table).await;

    // 140 inserts, 120 updates (two per item for 60 items), 60 deletes: 320 mutations.
    for i in 0..140 {
        env.ddb
            .put_item()
            .table_name(&table)
            .set_item(Some(item(i, 0)))
            .send()
            .await
            .unwrap();
    }
    for v in 1..=2 {
        for i in 0..60 {
            env.ddb
                .put_item()
                .table_name(&table)
                .set_item(Some(item(i, v)))
                .send()
                .await
                .unwrap();
        }
    }
    for i in 80..140 {
        env.ddb
            .delete_item()
            .table_name(&table)
            .key("pk", A::S(format!("item-{i:04}")))
            .send()
            .await
            .unwrap();
    }

    let records = stream_records(&env, &stream_arn).await;
    assert!(
        records.len() >= 320,
        "the stream holds {} records",
        records.len()
    );
    let counts = records.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.event_name().unwrap().as_str().to_owned())
            .or_insert(0) += 1;
        m
    });
    assert!(
        counts["INSERT"] >= 140 && counts["MODIFY"] >= 120 && counts["REMOVE"] >= 60,
        "{counts:?}"
    );

    for batch in records.chunks(100) {
        let event = stream_event(&stream_arn, "us-east-1", batch);
        let response = handle(&event, &deps).await.unwrap();
        assert!(matches!(response, IngestResponse::Streams(_)));
        assert!(
            response.failed_ids().is_empty(),
            "{:?}",
            response.failed_ids()
        );
    }

    let lines = raw_lines(&env, &res.raw_bucket).await;
    assert_eq!(
        lines.len(),
        records.len(),
        "every change lands exactly once"
    );
    let by_id: HashMap<String, &sluice_core::raw::OwnedRawLine> =
        lines.iter().map(|(_, l)| (origin_id(l), l)).collect();
    assert_eq!(by_id.len(), records.len(), "no change lands twice");
    for r in &records {
        let line = by_id[r.event_id().unwrap()];
        // JSON-equal: nested maps of the event may be in any order; every value is exact, since
        // `N` values are decimal strings and the creation time is compared as the same text.
        let expected: serde_json::Value =
            serde_json::from_str(&stream_record_json(&stream_arn, "us-east-1", r).unwrap())
                .unwrap();
        let got: serde_json::Value = serde_json::from_str(line.record.get()).unwrap();
        assert_eq!(got, expected, "the record is the stream record");
        assert!(!line.record.get().contains('\n'), "one line");
        assert_eq!(line.table, table);
        assert_eq!(line.format, sluice_core::Format::DdbStream);
    }
    // Keys follow the layout, and every line sits in the partition of its commit hour.
    for (key, line) in &lines {
        let (dt, hr) = sluice_core::time::partition(line.ts_ms);
        assert!(
            key.starts_with(&format!("raw/{table}/dt={dt}/hr={hr}/")),
            "{key}"
        );
        assert!(key.ends_with(".ndjson.gz"), "{key}");
    }
    // Decimal text survives: the 37-digit numbers are in the raw text exactly as DynamoDB gave them.
    assert!(lines.iter().any(|(_, l)| l
        .record
        .get()
        .contains("1234567890123456789012345678901234567.2")));
}

/// The bodies of the mixed batch: every supported kind, and poison.
fn mixed_bodies() -> (Vec<String>, Vec<(String, &'static str)>) {
    let good: serde_json::Value = serde_json::from_str(&fixture("ingest/sqs-good.json")).unwrap();
    let good: Vec<String> = good["Records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["body"].as_str().unwrap().to_owned())
        .collect();
    let poison = vec![
        ("order o-9 was paid".to_owned(), "not_json"),
        (r#"{"table":"orders","op":"insert","key":{"order_id":"o-9""#.to_owned(), "truncated"),
        ("   \n ".to_owned(), "whitespace_only"),
        (r#"{"message": "foo1"}"#.to_owned(), "unknown_shape"),
        (r#"[1, 2, 3]"#.to_owned(), "unknown_shape"),
        (r#"{"table":"orders","op":"insert","key":{"order_id":"o-9"},"after":{"order_id":"o-9"}}"#.to_owned(), "missing_seq"),
        (format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)), "too_deep"),
        (r#"{"a":1}{"b":2}"#.to_owned(), "trailing_content"),
        (
            r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-11-25T07:00:00.000Z","Bucket":"b","RequestId":"r","HostId":"h"}"#.to_owned(),
            "misrouted",
        ),
    ];
    (good, poison)
}

async fn send_all(env: &TestEnv, queue_url: &str, bodies: &[String]) -> HashMap<String, String> {
    let mut ids = HashMap::new();
    for body in bodies {
        let out = env
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
        ids.insert(out.message_id.unwrap(), body.clone());
    }
    ids
}

/// GIVEN one SQS batch with every supported kind of body plus poison bodies
/// WHEN ingest handles it
/// THEN the good bodies are landed verbatim, the poison ones are on the DLQ with full context,
/// and `batchItemFailures` is empty.
/// AND WHEN the same batch is delivered a second time
/// THEN the same objects are written and no line is duplicated.
#[tokio::test]
async fn mixed_sqs_batch_lands_good_bodies_and_dead_letters_poison_once() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let deps = ingest_deps(&env, &res);
    let (good, poison) = mixed_bodies();
    let poison_bodies: Vec<String> = poison.iter().map(|(b, _)| b.clone()).collect();
    let all: Vec<String> = good.iter().chain(&poison_bodies).cloned().collect();
    let sent = send_all(&env, &res.ingest_queue_url, &all).await;
    let messages = receive(&env, &res.ingest_queue_url, all.len()).await;
    assert_eq!(messages.len(), all.len());
    let arn = queue_arn(&env, &res.ingest_queue_url).await;
    let event = sqs_event(&arn, "us-east-1", &messages);

    let response = handle(&event, &deps).await.unwrap();
    assert!(matches!(response, IngestResponse::Sqs(_)));
    assert!(
        response.failed_ids().is_empty(),
        "{:?}",
        response.failed_ids()
    );

    // Good bodies: one line each, the body compacted but otherwise exactly as sent.
    let lines = raw_lines(&env, &res.raw_bucket).await;
    assert_eq!(lines.len(), good.len());
    let limits = Limits::default();
    for (_, line) in &lines {
        let body = &sent[&origin_id(line)];
        assert_eq!(
            line.record.get(),
            read_str(body, &limits).unwrap(),
            "verbatim record"
        );
        assert_eq!(line.record.get(), compact(body));
    }
    let formats: HashSet<&str> = lines.iter().map(|(_, l)| l.format.as_str()).collect();
    assert_eq!(formats, HashSet::from(["app", "debezium", "dms"]));

    // Poison: each on the DLQ once, with the original, the step, the class, the exact cause.
    let letters = dead_letters(&env, &res.dlq_url, poison.len()).await;
    assert_eq!(letters.len(), poison.len());
    let expected: HashMap<&str, &str> = poison.iter().map(|(b, c)| (b.as_str(), *c)).collect();
    for (envelope, attrs) in &letters {
        let original = envelope.original.as_deref().unwrap();
        assert_eq!(
            envelope.error_code.as_deref(),
            Some(expected[original]),
            "{}",
            envelope.error
        );
        assert_eq!(envelope.error_class, ErrorClass::BadFormat);
        assert_eq!(envelope.step, sluice_core::envelope::Step::Ingest);
        assert_eq!(envelope.retry_count, 0);
        assert_eq!(envelope.original_bytes, original.len());
        assert!(!envelope.failed_at.is_empty() && !envelope.error.is_empty());
        let origin: serde_json::Value = serde_json::from_str(envelope.origin.get()).unwrap();
        assert_eq!(sent[origin["id"].as_str().unwrap()], original);
        assert_eq!(origin["arn"], arn.as_str());
        assert_eq!(attrs["step"], "ingest");
        assert_eq!(attrs["error_class"], "bad_format");
        assert_eq!(attrs["error_code"], expected[original]);
    }

    // Delivered twice: the same keys, no duplicate lines.
    let keys_before = list_keys(&env, &res.raw_bucket, "raw/").await;
    let response = handle(&event, &deps).await.unwrap();
    assert!(response.failed_ids().is_empty());
    assert_eq!(list_keys(&env, &res.raw_bucket, "raw/").await, keys_before);
    let lines = raw_lines(&env, &res.raw_bucket).await;
    assert_eq!(
        lines.len(),
        good.len(),
        "no duplicate lines after a second delivery"
    );
}

/// GIVEN S3 refusing every connection
/// WHEN ingest handles a batch of good bodies
/// THEN every record is a batch item failure, nothing is on the DLQ and nothing is landed.
#[tokio::test]
async fn s3_failure_fails_every_record_and_acknowledges_nothing() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let deps = ingest_deps_with_s3(&env, &res, s3_refusing(&env));
    let (good, _) = mixed_bodies();
    send_all(&env, &res.ingest_queue_url, &good).await;
    let messages = receive(&env, &res.ingest_queue_url, good.len()).await;
    let arn = queue_arn(&env, &res.ingest_queue_url).await;
    let response = handle(&sqs_event(&arn, "us-east-1", &messages), &deps)
        .await
        .unwrap();

    let failed: HashSet<String> = response.failed_ids().into_iter().collect();
    let all: HashSet<String> = messages
        .iter()
        .map(|m| m.message_id().unwrap().to_owned())
        .collect();
    assert_eq!(failed, all, "every record is reported for retry");
    assert!(
        dead_letters(&env, &res.dlq_url, 1).await.is_empty(),
        "nothing on the DLQ"
    );
    assert!(
        list_keys(&env, &res.raw_bucket, "").await.is_empty(),
        "nothing landed"
    );
}

/// GIVEN a FIFO batch of two message groups, where the third message (group a) cannot be landed
/// WHEN ingest handles it
/// THEN that message and every later message of group a fail; group b and earlier messages do not.
#[tokio::test]
async fn fifo_failure_fails_the_rest_of_its_message_group() {
    let env = env().await;
    let res = ingest_resources(&env, true).await;
    let doomed = unique("doomed");
    let deps = ingest_deps_with_s3(&env, &res, s3_failing_for(&env, &format!("/raw/{doomed}/")));
    let body = |table: &str, id: usize| {
        format!(
            r#"{{"table":"{table}","op":"insert","key":{{"id":{id}}},"after":{{"id":{id}}},"seq":{id}}}"#
        )
    };
    let plan = [
        ("a", "fine"),
        ("b", "fine"),
        ("a", doomed.as_str()),
        ("b", "fine"),
        ("a", "fine"),
    ];
    for (i, (group, table)) in plan.iter().enumerate() {
        env.sqs
            .send_message()
            .queue_url(&res.ingest_queue_url)
            .message_body(body(table, i))
            .message_group_id(*group)
            .message_deduplication_id(format!("d{i}"))
            .send()
            .await
            .unwrap();
    }
    // FIFO queues release one group's messages in order; receive until all five are in hand.
    let mut messages = receive(&env, &res.ingest_queue_url, plan.len()).await;
    messages.sort_by_key(|m| {
        let b: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
        b["seq"].as_u64().unwrap()
    });
    assert_eq!(messages.len(), plan.len());
    let arn = queue_arn(&env, &res.ingest_queue_url).await;
    let response = handle(&sqs_event(&arn, "us-east-1", &messages), &deps)
        .await
        .unwrap();

    let id = |i: usize| messages[i].message_id().unwrap().to_owned();
    let failed: HashSet<String> = response.failed_ids().into_iter().collect();
    assert_eq!(failed, HashSet::from([id(2), id(4)]));
    let landed: HashSet<String> = raw_lines(&env, &res.raw_bucket)
        .await
        .iter()
        .map(|(_, l)| origin_id(l))
        .collect();
    for i in [0, 1, 3] {
        assert!(landed.contains(&id(i)), "message {i} landed");
    }
    assert!(!landed.contains(&id(2)));
    assert!(dead_letters(&env, &res.dlq_url, 1).await.is_empty());
}

/// GIVEN a DLQ whose maximum message size is smaller than a poison body
/// WHEN ingest dead-letters it
/// THEN the original is claim-checked in S3 and the envelope references it.
#[tokio::test]
async fn oversized_original_is_claim_checked_in_s3() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    env.sqs
        .set_queue_attributes()
        .queue_url(&res.dlq_url)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::MaximumMessageSize,
            "1024",
        )
        .send()
        .await
        .unwrap();
    let deps = ingest_deps(&env, &res);
    let poison = format!("not json: {}", "x".repeat(20_000));
    send_all(&env, &res.ingest_queue_url, std::slice::from_ref(&poison)).await;
    let messages = receive(&env, &res.ingest_queue_url, 1).await;
    let arn = queue_arn(&env, &res.ingest_queue_url).await;
    let response = handle(&sqs_event(&arn, "us-east-1", &messages), &deps)
        .await
        .unwrap();
    assert!(response.failed_ids().is_empty());

    let letters = dead_letters(&env, &res.dlq_url, 1).await;
    assert_eq!(letters.len(), 1);
    let (envelope, _) = &letters[0];
    assert!(envelope.original.is_none());
    assert_eq!(envelope.original_bytes, poison.len());
    let reference = envelope.original_ref.as_deref().unwrap();
    let key = format!("quarantine/{}.json", envelope.failure_id);
    assert_eq!(reference, format!("s3://{}/{key}", res.raw_bucket));
    assert_eq!(
        get_object(&env, &res.raw_bucket, &key).await,
        poison.as_bytes()
    );
}

/// GIVEN the ingest fixture events
/// WHEN ingest handles them
/// THEN each record lands or becomes a precise dead letter, and none is lost.
#[tokio::test]
async fn fixture_events_land_or_dead_letter_every_record() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let deps = ingest_deps(&env, &res);
    let mut total_in = 0;
    for name in [
        "ingest/sqs-mixed.json",
        "ingest/ddb-stream.json",
        "ingest/ddb-kinesis.json",
        "ingest/sqs-fifo.json",
    ] {
        let event = fixture(name);
        let records: serde_json::Value = serde_json::from_str(&event).unwrap();
        total_in += records["Records"].as_array().unwrap().len();
        let response = handle(&event, &deps).await.unwrap();
        assert!(response.failed_ids().is_empty(), "{name}");
    }
    let landed = raw_lines(&env, &res.raw_bucket).await.len();
    let dead = dead_letters(&env, &res.dlq_url, total_in).await.len();
    assert_eq!(landed + dead, total_in, "landed {landed} + dead {dead}");
    assert_eq!(dead, 6, "the six poison bodies of sqs-mixed.json");
}

/// GIVEN the ingest resources were created
/// WHEN they are created again with the same names
/// THEN nothing fails, the same queues are returned, and the redrive policy points at the DLQ.
#[tokio::test]
async fn creating_the_ingest_resources_twice_is_harmless() {
    let env = env().await;
    let names = sluice_local::provision::Names::new(&unique("twice"));
    let first = sluice_local::provision::ensure_ingest(&env.s3, &env.sqs, &names, false)
        .await
        .unwrap();
    let second = sluice_local::provision::ensure_ingest(&env.s3, &env.sqs, &names, false)
        .await
        .unwrap();
    assert_eq!(first, second);
    let attrs = env
        .sqs
        .get_queue_attributes()
        .queue_url(&second.ingest_queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy)
        .send()
        .await
        .unwrap();
    let policy: serde_json::Value = serde_json::from_str(
        attrs.attributes().unwrap()[&aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy]
            .as_str(),
    )
    .unwrap();
    assert_eq!(
        policy["deadLetterTargetArn"],
        queue_arn(&env, &second.dlq_url).await.as_str()
    );
    assert_eq!(policy["maxReceiveCount"].to_string().trim_matches('"'), "5");
    env.s3
        .head_bucket()
        .bucket(&second.raw_bucket)
        .send()
        .await
        .unwrap();
}
