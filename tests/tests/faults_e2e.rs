//! End to end with faults: a fault-injecting proxy ([`sluice_tests::faults`]) between the
//! handlers and the endpoint gives the answers AWS gives under trouble, and the tests check
//! that every change still ends as a typed row or as a dead letter that says why.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sluice_core::ErrorClass;
use sluice_local::events::sqs_event;
use sluice_pipeline::ingest::handle;
use sluice_tests::faults::{Fault, FaultProxy, Rule};
use sluice_tests::*;

fn app_body(table: &str, id: u64) -> String {
    serde_json::json!({"table": table, "op": "insert", "key": {"id": id},
                       "after": {"id": id, "name": format!("n{id}")}, "seq": 1})
    .to_string()
}

/// Sends `bodies` to the ingest queue and receives them as one SQS event.
async fn sqs_batch(env: &TestEnv, queue_url: &str, bodies: &[String]) -> String {
    for body in bodies {
        env.sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let messages = receive(env, queue_url, bodies.len()).await;
    assert_eq!(messages.len(), bodies.len());
    sqs_event(&queue_arn(env, queue_url).await, "us-east-1", &messages)
}

/// GIVEN S3 answering a raw write with AWS's `KeyTooLongError` (400)
/// WHEN ingest lands a batch
/// THEN the write is tried once, not retried, and every record of it becomes a dead letter
/// that names the refusal; the batch reports nothing for retry.
#[tokio::test]
async fn a_permanent_s3_error_is_a_dead_letter_and_never_retried() {
    let env = env().await;
    let resources = ingest_resources(&env, false).await;
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(
        Rule::new("s3", "PutObject", Fault::key_too_long())
            .path(format!("/{}/raw/", resources.raw_bucket)),
    );
    let via = env_at(&proxy.url).await;
    let deps = ingest_deps_with_s3(&env, &resources, via.s3.clone());
    let bodies: Vec<String> = (1..=3).map(|i| app_body("orders", i)).collect();
    let event = sqs_batch(&env, &resources.ingest_queue_url, &bodies).await;

    let response = handle(&event, &deps).await.unwrap();

    assert!(response.failed_ids().is_empty(), "{response:?}");
    assert_eq!(proxy.count("s3", "PutObject"), 1, "{:?}", proxy.calls());
    let letters = dead_letters(&env, &resources.dlq_url, 3).await;
    assert_eq!(letters.len(), 3);
    for (env, attrs) in &letters {
        assert_eq!(env.error_code.as_deref(), Some("raw_write_rejected"));
        assert_eq!(env.error_class, ErrorClass::Internal);
        assert_eq!(env.table.as_deref(), Some("orders"));
        assert!(
            env.error.contains("KeyTooLongError") && env.error.contains("not retriable"),
            "{}",
            env.error
        );
        assert!(bodies.contains(env.original.as_ref().unwrap()));
        assert_eq!(attrs["error_code"], "raw_write_rejected");
    }
    assert!(list_keys(&env, &resources.raw_bucket, "raw/")
        .await
        .is_empty());
}

/// GIVEN an application event whose table name, percent-encoded, cannot fit an S3 key
/// WHEN ingest takes it
/// THEN it is refused before any write, as a dead letter naming the table; the other record
/// of the batch lands.
#[tokio::test]
async fn a_table_name_too_long_for_a_raw_key_is_refused_before_any_write() {
    let env = env().await;
    let resources = ingest_resources(&env, false).await;
    let proxy = FaultProxy::start(&env.endpoint);
    let via = env_at(&proxy.url).await;
    let deps = ingest_deps_with_s3(&env, &resources, via.s3.clone());
    // 400 two-byte letters: 800 bytes, 2,400 once percent-encoded.
    let long = "é".repeat(400);
    let bodies = [app_body(&long, 1), app_body("orders", 2)];
    let event = sqs_batch(&env, &resources.ingest_queue_url, &bodies).await;

    let response = handle(&event, &deps).await.unwrap();

    assert!(response.failed_ids().is_empty(), "{response:?}");
    let puts: Vec<String> = proxy
        .calls()
        .into_iter()
        .filter(|c| c.operation == "PutObject")
        .map(|c| c.path)
        .collect();
    assert_eq!(puts.len(), 1, "only the good record's object: {puts:?}");
    assert!(puts[0].contains("/raw/orders/"), "{puts:?}");
    let letters = dead_letters(&env, &resources.dlq_url, 1).await;
    assert_eq!(letters.len(), 1);
    let (letter, _) = &letters[0];
    assert_eq!(letter.error_code.as_deref(), Some("table_name_too_long"));
    assert_eq!(letter.error_class, ErrorClass::BadFormat);
    assert!(
        letter.error.contains("éééé") && letter.error.contains("2400 bytes"),
        "{}",
        letter.error
    );
    assert_eq!(letter.original.as_deref(), Some(bodies[0].as_str()));
}

/// GIVEN S3 throttling raw writes (503 SlowDown)
/// WHEN ingest lands a batch
/// THEN the records are reported for retry, never dead-lettered; once S3 recovers, the same
/// batch delivered again lands.
#[tokio::test]
async fn s3_throttling_is_retried_not_dead_lettered() {
    let env = env().await;
    let resources = ingest_resources(&env, false).await;
    let proxy = FaultProxy::start(&env.endpoint);
    let rule = Rule::new("s3", "PutObject", Fault::slow_down())
        .path(format!("/{}/raw/", resources.raw_bucket));
    let throttling = rule.active.clone();
    proxy.add(rule);
    let via = env_at(&proxy.url).await;
    let deps = ingest_deps_with_s3(&env, &resources, via.s3.clone());
    let bodies: Vec<String> = (1..=2).map(|i| app_body("orders", i)).collect();
    let event = sqs_batch(&env, &resources.ingest_queue_url, &bodies).await;

    let response = handle(&event, &deps).await.unwrap();
    assert_eq!(response.failed_ids().len(), 2, "{response:?}");
    assert!(
        proxy.count("s3", "PutObject") > 1,
        "the SDK retried the throttled write"
    );
    assert!(dead_letters(&env, &resources.dlq_url, 1).await.is_empty());

    throttling.store(false, std::sync::atomic::Ordering::SeqCst);
    let response = handle(&event, &deps).await.unwrap();
    assert!(response.failed_ids().is_empty(), "{response:?}");
    assert_eq!(raw_lines(&env, &resources.raw_bucket).await.len(), 2);
}

/// GIVEN a DLQ of 200 messages that is slow to read (every receive delayed)
/// WHEN it is read with a budget too short to read it all, and then with enough
/// THEN the first read stops at its budget and says so; the second reads every message once,
/// ends, and leaves them all on the queue.
#[tokio::test]
async fn reading_a_slow_dlq_ends_in_bounded_time_and_says_what_it_missed() {
    use sluice_pipeline::dlq::DlqSnapshot;
    use std::time::{Duration, Instant};

    let env = env().await;
    let resources = ingest_resources(&env, false).await;
    // More than four parallel receives of ten can read in the short budget below.
    for batch in 0..20 {
        let entries = (0..10)
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{i}"))
                    .message_body(app_body("orders", batch * 10 + i))
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        env.sqs
            .send_message_batch()
            .queue_url(&resources.dlq_url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new(
        "sqs",
        "ReceiveMessage",
        Fault::Delay(Duration::from_millis(400)),
    ));
    let via = env_at(&proxy.url).await;

    let started = Instant::now();
    let partial = DlqSnapshot::read(&via.sqs, &resources.dlq_url, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(10), "bounded");
    assert!(!partial.complete);
    assert!(partial.entries.len() < 200, "{}", partial.entries.len());
    let note = partial.incomplete_note().unwrap();
    assert!(
        note.contains("of about 200") && note.contains("time budget (1 s) ran out"),
        "{note}"
    );

    let whole = DlqSnapshot::read(&via.sqs, &resources.dlq_url, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(whole.complete);
    assert_eq!(whole.entries.len(), 200);
    assert_eq!(
        whole.unprocessed().len(),
        200,
        "bare changes are unprocessed"
    );
    let again = DlqSnapshot::read(&env.sqs, &resources.dlq_url, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(again.entries.len(), 200, "peeked, not consumed");
}

/// GIVEN an endpoint that answers a Scan with HTTP 200 and an item the SDK cannot read (as the
/// local emulator does for a map with an empty attribute name)
/// WHEN the audit scans the table
/// THEN the error says that the answer could not be read, and why, and is not retriable.
#[tokio::test]
async fn an_unreadable_answer_is_an_error_a_person_can_act_on() {
    let env = env().await;
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new(
        "dynamodb",
        "Scan",
        Fault::Respond {
            status: 200,
            body: r#"{"Items":[{"pk":{"S":"a"},"_extra":{"M":{"S":"x"}}}],"Count":1,"ScannedCount":1}"#,
        },
    ));
    let via = env_at(&proxy.url).await;
    let err = sluice_local::audit::scan(&via.ddb, "any-table")
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(!err.is_retriable(), "{text}");
    assert!(
        text.contains("HTTP 200, but the answer could not be read as a Scan response"),
        "{text}"
    );
    assert!(!text.contains("no message"), "{text}");
    println!("{text}");
}

/// GIVEN typed writes whose answers are lost 25 % of the time (DynamoDB applied the write, the
/// caller cannot tell, and writes again)
/// WHEN transform types 20 changes to 20 keys
/// THEN every row is written once, and the counts say so: each row is written or found already
/// written from the same line, and none is called stale.
#[tokio::test]
async fn a_write_whose_answer_was_lost_is_counted_as_already_written_not_stale() {
    let env = env().await;
    let p = pipeline(
        &env,
        &[(
            "people.yaml",
            "name: people\nversion: 1\nsources: [{table: people}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: name, type: string}\n".to_owned(),
        )],
    )
    .await;
    let bodies: Vec<String> = (1..=20).map(|i| app_body("people", i)).collect();
    ingest_bodies(&env, &p, &ingest_deps(&env, &p.ingest), &bodies, 10).await;
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new("dynamodb", "PutItem", Fault::Ambiguous).probability(0.25));
    let via = env_at(&proxy.url).await;

    let (stats, failed) = drain_transform(&env, &p, &transform_deps_via(&via, &p)).await;

    assert_eq!(failed, 0);
    let lost = proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "PutItem" && c.fault.is_some())
        .count();
    assert!(lost > 0, "some answers were lost");
    let t = &stats.tables["people"];
    assert_eq!(t.stale, 0, "{t:?}");
    assert_eq!(t.written + t.already_written, 20, "{t:?}");
    assert!(t.already_written > 0, "{t:?}");
    assert_eq!(scan(&env, &p.typed_table("people")).await.len(), 20);
}

/// The faults each of `n` HEAD requests for a missing object met, one after another, through a
/// proxy seeded with `seed` that fails half of them.
async fn draws(env: &TestEnv, bucket: &str, seed: u64, n: usize) -> Vec<bool> {
    let proxy = FaultProxy::start_seeded(&env.endpoint, seed);
    proxy.add(
        Rule::new(
            "s3",
            "HeadObject",
            Fault::Respond {
                status: 404,
                body: "",
            },
        )
        .probability(0.5),
    );
    let via = env_at(&proxy.url).await;
    for i in 0..n {
        let _ = via
            .s3
            .head_object()
            .bucket(bucket)
            .key(format!("k{i}"))
            .send()
            .await;
    }
    proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "HeadObject")
        .map(|c| c.fault.is_some())
        .collect()
}

/// GIVEN two proxies with the same seed, and one with another
/// WHEN the same requests go through each, one after another
/// THEN the first two inject the same faults into the same requests, and the third does not.
#[tokio::test]
async fn a_seed_replays_the_same_faults() {
    let env = env().await;
    let bucket = unique("seeded");
    env.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let first = draws(&env, &bucket, 42, 40).await;
    let again = draws(&env, &bucket, 42, 40).await;
    let other = draws(&env, &bucket, 43, 40).await;
    assert_eq!(first.len(), 40);
    assert!(
        first.iter().any(|f| *f) && first.iter().any(|f| !*f),
        "{first:?}"
    );
    assert_eq!(first, again);
    assert_ne!(first, other);
}

/// GIVEN an S3 outage that starts now and lasts 1.5 s
/// WHEN a listing is made at once, and another after the window
/// THEN the first attempt is refused, and the listing after the window goes through at its
/// first attempt, with no rule removed by the test.
#[tokio::test]
async fn an_outage_window_ends_by_itself() {
    let env = env().await;
    let bucket = unique("window");
    env.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new("s3", "ListObjectsV2", Fault::Refuse).during(
        std::time::Duration::ZERO,
        std::time::Duration::from_millis(1500),
    ));
    let via = env_at(&proxy.url).await;
    // The SDK retries with backoff, so this may end either way.
    let _ = via.s3.list_objects_v2().bucket(&bucket).send().await;
    let first = proxy.calls();
    assert_eq!(
        first[0].fault.as_deref(),
        Some("Refuse"),
        "seed {}: {first:?}",
        proxy.seed
    );
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    let after = via.s3.list_objects_v2().bucket(&bucket).send().await;
    assert!(after.is_ok(), "seed {}: {after:?}", proxy.seed);
    let calls = proxy.calls();
    assert_eq!(calls.len(), first.len() + 1, "{calls:?}");
    assert_eq!(calls.last().unwrap().fault, None);
}
