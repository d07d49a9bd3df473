//! The local event source mappings' semantics, on a real stream and real queues, with handler
//! doubles that fail on purpose: retries, bisection, on-failure records, checkpoints, partial
//! deletes and the queue's redrive policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue as A;
use sluice_local::mappings::{
    Backoff, Checkpoints, FunctionKind, Functions, InvokeError, Mapping, RunOptions, Runner,
};
use sluice_tests::*;

/// A handler that records the batch sizes it sees, and fails as told.
#[derive(Default)]
struct Double {
    sizes: Mutex<Vec<usize>>,
    calls: AtomicU64,
    /// Fail whole invocations (a function error).
    fail_all: bool,
    /// Report this SQS body as a batch item failure, always.
    poison_body: Option<String>,
}

impl Functions for Double {
    async fn invoke(
        &self,
        _function: FunctionKind,
        event: String,
    ) -> Result<serde_json::Value, InvokeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let event: serde_json::Value = serde_json::from_str(&event).unwrap();
        let records = event["Records"].as_array().unwrap();
        self.sizes.lock().unwrap().push(records.len());
        if self.fail_all {
            return Err(InvokeError::Other("boom".into()));
        }
        let failures: Vec<serde_json::Value> = records
            .iter()
            .filter(|r| self.poison_body.as_deref().is_some_and(|p| r["body"] == p))
            .map(|r| serde_json::json!({"itemIdentifier": r["messageId"]}))
            .collect();
        Ok(serde_json::json!({ "batchItemFailures": failures }))
    }
}

fn options(until_idle: bool) -> RunOptions {
    RunOptions {
        until_idle,
        shutdown: tokio::sync::watch::channel(false).1,
        backoff: Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
        },
        poll_interval: Duration::from_millis(100),
        scaling: None,
    }
}

/// GIVEN a stream whose handler always fails
/// WHEN the mapping retries twice, bisecting on each function error
/// THEN the batches are given up with on-failure records (DDBStreamBatchInfo) on the DLQ that
/// cover every record, the checkpoint moves past them, and a new run reads nothing again.
#[tokio::test]
async fn a_failing_stream_batch_is_bisected_then_sent_to_the_on_failure_destination() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let table = unique("failing-src");
    let stream_arn = source_table(&env, &table).await;
    for i in 0..6 {
        env.ddb
            .put_item()
            .table_name(&table)
            .set_item(Some(HashMap::from([(
                "pk".to_owned(),
                A::S(format!("k{i}")),
            )])))
            .send()
            .await
            .unwrap();
    }
    let mut mapping = Mapping::stream(&table, &stream_arn, &res.dlq_url);
    mapping.max_retry_attempts = 2;
    let checkpoints = std::env::temp_dir()
        .join(unique("cp"))
        .join("checkpoints.json");
    let double = Arc::new(Double {
        fail_all: true,
        ..Double::default()
    });
    let runner = Runner {
        functions: double.clone(),
        mappings: vec![mapping.clone()],
        streams: env.streams.clone(),
        kinesis: env.kinesis.clone(),
        sqs: env.sqs.clone(),
        region: "us-east-1".into(),
        checkpoints_path: checkpoints.clone(),
    };
    let report = runner.run(options(true)).await.unwrap();
    assert!(report.on_failure_records >= 1, "{report:?}");
    let sizes = double.sizes.lock().unwrap().clone();
    assert_eq!(sizes[0], 6, "the first attempt has the whole batch");
    assert!(
        sizes.iter().any(|&s| s < 6),
        "function errors bisect the batch: {sizes:?}"
    );

    let letters = receive(&env, &res.dlq_url, 6).await;
    let mut covered = 0;
    for m in &letters {
        let body: serde_json::Value = serde_json::from_str(m.body().unwrap()).unwrap();
        let info = &body["DDBStreamBatchInfo"];
        assert_eq!(info["streamArn"], stream_arn.as_str());
        assert_eq!(
            body["requestContext"]["condition"],
            "RetryAttemptsExhausted"
        );
        assert!(info["startSequenceNumber"].is_string() && info["endSequenceNumber"].is_string());
        covered += info["batchSize"].as_u64().unwrap();
    }
    assert_eq!(covered, 6, "the on-failure records cover every record");

    let saved = Checkpoints::load(&checkpoints).unwrap();
    assert_eq!(saved.shards.len(), 1);
    assert!(saved.shards.values().all(|c| c.sequence_number.is_some()));
    // A new run starts after the checkpoint: nothing is read again.
    let again = Arc::new(Double::default());
    let runner = Runner {
        functions: again.clone(),
        mappings: vec![mapping],
        streams: env.streams.clone(),
        kinesis: env.kinesis.clone(),
        sqs: env.sqs.clone(),
        region: "us-east-1".into(),
        checkpoints_path: checkpoints,
    };
    runner.run(options(true)).await.unwrap();
    assert_eq!(again.calls.load(Ordering::SeqCst), 0);
}

/// GIVEN a queue batch where one message always fails
/// WHEN the mapping runs
/// THEN the others are deleted at once, the failing one is delivered again, and the queue's
/// redrive policy moves it to the DLQ after maxReceiveCount, unchanged.
#[tokio::test]
async fn a_failing_message_is_left_to_the_redrive_policy_and_the_rest_are_deleted() {
    let env = env().await;
    let res = ingest_resources(&env, false).await;
    let poison = r#"{"poison":true}"#.to_owned();
    for body in ["a", "b", poison.as_str(), "c"] {
        env.sqs
            .send_message()
            .queue_url(&res.ingest_queue_url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }
    let arn = queue_arn(&env, &res.ingest_queue_url).await;
    let double = Arc::new(Double {
        poison_body: Some(poison.clone()),
        ..Double::default()
    });
    let runner = Runner {
        functions: double.clone(),
        mappings: vec![Mapping::queue(
            "q",
            FunctionKind::Ingest,
            &res.ingest_queue_url,
            &arn,
        )],
        streams: env.streams.clone(),
        kinesis: env.kinesis.clone(),
        sqs: env.sqs.clone(),
        region: "us-east-1".into(),
        checkpoints_path: std::env::temp_dir().join(unique("cp")).join("c.json"),
    };
    let report = runner.run(options(true)).await.unwrap();
    assert!(report.drained);
    let calls = double.calls.load(Ordering::SeqCst);
    assert!(
        calls >= u64::from(sluice_local::provision::MAX_RECEIVE_COUNT),
        "delivered {calls} times"
    );
    let letters = receive(&env, &res.dlq_url, 2).await;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        letters[0].body(),
        Some(poison.as_str()),
        "the source message, unchanged"
    );
    assert!(
        receive(&env, &res.ingest_queue_url, 1).await.is_empty(),
        "the others were deleted"
    );
}
