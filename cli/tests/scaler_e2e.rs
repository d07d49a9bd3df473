//! End to end through `sluice invoke scaler` against a real AWS-compatible endpoint: a queue
//! with a backlog, a stream that lags, their event source mappings (disabled, so nothing but the
//! scaler touches them), and the functions' metrics in CloudWatch. Each invocation is a new
//! process, so the window it keeps in S3 is read back as a cold start reads it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Output};

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};
use aws_smithy_types::DateTime;
use sluice_tests::{env, unique, TestEnv};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

struct Setup {
    bucket: String,
    function: String,
    queue_url: String,
    queue_mapping: String,
    stream_mapping: String,
}

async fn setup(env: &TestEnv) -> Setup {
    let name = unique("sc");
    let iam = aws_sdk_iam::Client::new(&env.sdk);
    let lambda = aws_sdk_lambda::Client::new(&env.sdk);
    let kinesis = aws_sdk_kinesis::Client::new(&env.sdk);
    let role = iam
        .create_role()
        .role_name(&name)
        .assume_role_policy_document(
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
        )
        .send()
        .await
        .unwrap();
    let role_arn = role.role().unwrap().arn().to_owned();
    // The function is never run: the mappings are disabled and the emulator runs no code.
    lambda
        .create_function()
        .function_name(&name)
        .runtime(aws_sdk_lambda::types::Runtime::Providedal2023)
        .handler("bootstrap")
        .role(&role_arn)
        .code(
            aws_sdk_lambda::types::FunctionCode::builder()
                .zip_file(aws_smithy_types::Blob::new(b"PK\x05\x06".to_vec()))
                .build(),
        )
        .send()
        .await
        .unwrap();
    env.s3.create_bucket().bucket(&name).send().await.unwrap();
    let queue_url = env
        .sqs
        .create_queue()
        .queue_name(&name)
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let queue_arn = sluice_tests::queue_arn(env, &queue_url).await;
    let queue_mapping = lambda
        .create_event_source_mapping()
        .function_name(&name)
        .event_source_arn(&queue_arn)
        .batch_size(10)
        .enabled(false)
        .scaling_config(
            aws_sdk_lambda::types::ScalingConfig::builder()
                .maximum_concurrency(2)
                .build(),
        )
        .send()
        .await
        .unwrap()
        .uuid()
        .unwrap()
        .to_owned();
    kinesis
        .create_stream()
        .stream_name(&name)
        .shard_count(1)
        .send()
        .await
        .unwrap();
    let stream_arn = kinesis
        .describe_stream_summary()
        .stream_name(&name)
        .send()
        .await
        .unwrap()
        .stream_description_summary()
        .unwrap()
        .stream_arn()
        .to_owned();
    let stream_mapping = lambda
        .create_event_source_mapping()
        .function_name(&name)
        .event_source_arn(&stream_arn)
        .starting_position(aws_sdk_lambda::types::EventSourcePosition::TrimHorizon)
        .batch_size(100)
        .parallelization_factor(1)
        .enabled(false)
        .send()
        .await
        .unwrap()
        .uuid()
        .unwrap()
        .to_owned();
    Setup {
        bucket: name.clone(),
        function: name,
        queue_url,
        queue_mapping,
        stream_mapping,
    }
}

async fn put_metric(env: &TestEnv, namespace: &str, metric: &str, dim: (&str, &str), value: f64) {
    let cw = aws_sdk_cloudwatch::Client::new(&env.sdk);
    let now = std::time::SystemTime::now();
    cw.put_metric_data()
        .namespace(namespace)
        .metric_data(
            MetricDatum::builder()
                .metric_name(metric)
                .dimensions(Dimension::builder().name(dim.0).value(dim.1).build())
                .value(value)
                .unit(if metric.ends_with("Age") || metric == "BatchDuration" {
                    StandardUnit::Milliseconds
                } else {
                    StandardUnit::Count
                })
                .timestamp(DateTime::from(now))
                .build(),
        )
        .send()
        .await
        .unwrap();
}

async fn setting(env: &TestEnv, uuid: &str) -> (Option<i32>, Option<i32>) {
    let m = aws_sdk_lambda::Client::new(&env.sdk)
        .get_event_source_mapping()
        .uuid(uuid)
        .send()
        .await
        .unwrap();
    (
        m.scaling_config().and_then(|s| s.maximum_concurrency()),
        m.parallelization_factor(),
    )
}

fn invoke(env: &TestEnv, s: &Setup, mappings: &str, event: &str) -> (Output, serde_json::Value) {
    let o = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(REPO)
        .args(["invoke", "scaler", "--event", "-", "--metrics"])
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SLUICE_SCALER_MAPPINGS", mappings)
        .env(
            "SLUICE_SCALER_STATE",
            format!("s3://{}/scaler/state.json", s.bucket),
        )
        .env("SLUICE_SCALE_MAX", "50")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(event.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    (o, v)
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

async fn state(env: &TestEnv, s: &Setup) -> serde_json::Value {
    let bytes = sluice_tests::get_object(env, &s.bucket, "scaler/state.json").await;
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn the_scaler_raises_a_backlogged_queue_and_a_lagging_stream_then_backs_off_a_throttling_downstream(
) {
    let env = env().await;
    let s = setup(&env).await;
    // 1,100 messages wait.
    for chunk in 0..110 {
        let mut batch = env.sqs.send_message_batch().queue_url(&s.queue_url);
        for i in 0..10 {
            batch = batch.entries(
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(format!("{{\"n\":{}}}", chunk * 10 + i))
                    .build()
                    .unwrap(),
            );
        }
        batch.send().await.unwrap();
    }
    // The ingest function's own metrics: 60 records in 60 s of batch time, 1 msg/s a batch.
    put_metric(&env, "Sluice", "RecordsIn", ("Function", "ingest"), 60.0).await;
    put_metric(
        &env,
        "Sluice",
        "BatchDuration",
        ("Function", "ingest"),
        60_000.0,
    )
    .await;
    // The stream lags by 10 minutes.
    put_metric(
        &env,
        "AWS/Lambda",
        "IteratorAge",
        ("FunctionName", &s.function),
        600_000.0,
    )
    .await;
    let mappings = format!("ingest:{}:50,ingest:{}", s.queue_mapping, s.stream_mapping);

    // A dry run decides and changes nothing.
    let (o, dry) = invoke(&env, &s, &mappings, r#"{"dry_run": true}"#);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(dry["dry_run"], true);
    assert!(dry["mappings"][0]["changed"].as_bool().unwrap(), "{dry:#}");
    assert_eq!(setting(&env, &s.queue_mapping).await.0, Some(2));
    assert_eq!(setting(&env, &s.stream_mapping).await.1, Some(1));

    // A scheduled run: the queue's need from its backlog and the measured rate, the stream's
    // factor doubled.
    let schedule =
        r#"{"version":"0","detail-type":"Scheduled Event","source":"aws.events","detail":{}}"#;
    let (o, report) = invoke(&env, &s, &mappings, schedule);
    assert!(o.status.success(), "{}", text(&o));
    let queue = &report["mappings"][0];
    let raised = queue["after"].as_i64().unwrap();
    assert_eq!(queue["source"], s.bucket.as_str());
    assert_eq!(queue["before"], 2);
    assert!((10..=50).contains(&raised), "{queue:#}");
    assert_eq!(
        queue["rate_per_batch"], 1.0,
        "calibrated from RecordsIn ÷ BatchDuration"
    );
    assert!(
        queue["reason"]
            .as_str()
            .unwrap()
            .starts_with("1100 waiting at 1.0 msg/s per batch need"),
        "{queue:#}"
    );
    assert_eq!(setting(&env, &s.queue_mapping).await.0, Some(raised as i32));
    let stream = &report["mappings"][1];
    assert_eq!(stream["setting"], "ParallelizationFactor");
    assert_eq!(
        (stream["before"].clone(), stream["after"].clone()),
        (1.into(), 2.into())
    );
    assert_eq!(setting(&env, &s.stream_mapping).await.1, Some(2));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains(&format!(
            "MaximumConcurrency {}: 2 -> {raised}: 1100 waiting",
            s.queue_mapping
        )),
        "each change is said with its reason: {stderr}"
    );
    assert!(
        stderr.contains("\"CapacityExhausted\":0") && stderr.contains("\"Function\":\"scaler\""),
        "the decisions go out as metrics: {stderr}"
    );
    let kept = state(&env, &s).await;
    assert_eq!(
        kept["mappings"][&s.queue_mapping]["backlog"], 1100,
        "{kept:#}"
    );

    // The downstream throttles: the next run (a new process, reading the state back) halves
    // the queue's setting at once, and the stream's too.
    put_metric(
        &env,
        "Sluice",
        "RetriableFailures",
        ("Function", "ingest"),
        90.0,
    )
    .await;
    let (o, report) = invoke(&env, &s, &mappings, "{}");
    assert!(o.status.success(), "{}", text(&o));
    let queue = &report["mappings"][0];
    assert_eq!(queue["after"], raised / 2, "{queue:#}");
    assert!(queue["reason"]
        .as_str()
        .unwrap()
        .starts_with("downstream throttles"));
    assert_eq!(
        setting(&env, &s.queue_mapping).await.0,
        Some((raised / 2) as i32)
    );
    assert_eq!(setting(&env, &s.stream_mapping).await.1, Some(1));
    let kept = state(&env, &s).await;
    let window = kept["mappings"][&s.queue_mapping]["policy"]["recent"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        window, 2,
        "the second process kept the first one's window: {kept:#}"
    );
    assert!(kept["mappings"][&s.queue_mapping]["policy"]["ceiling"].is_array());

    // A mapping that does not exist is reported and fails the run (exit 2); the others are
    // still set.
    let missing = "00000000-0000-4000-8000-000000000000";
    let (o, report) = invoke(&env, &s, &format!("{mappings},transform:{missing}"), "{}");
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(report["failed"], 1, "{report:#}");
    assert!(report["mappings"][2]["error"]
        .as_str()
        .unwrap()
        .contains("GetEventSourceMapping"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("could not be scaled"), "{stderr}");

    // Not a scaler event: invalid input (exit 1), named.
    let (o, _) = invoke(&env, &s, &mappings, r#"{"Records": []}"#);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("takes an EventBridge scheduled event"));
}
