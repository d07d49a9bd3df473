//! End to end: the `sluice` binary against a real AWS-compatible endpoint, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;

use sluice_tests::{env, list_keys, queue_arn, raw_lines, receive, unique};

fn sluice(args: &[&str], vars: &HashMap<String, String>, endpoint: &str) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .args(args)
        .envs(vars)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// GIVEN a fresh prefix on the endpoint
/// WHEN a user runs `sluice local up` twice, `eval`s `sluice local env`, and invokes ingest on
/// the DynamoDB Streams, DynamoDB-through-Kinesis and mixed SQS fixtures, then invokes transform
/// on the raw bucket's notifications
/// THEN both `up`s succeed, the handlers answer with no failures, the objects are in S3, and each
/// invoke's one-line summary on stderr counts every record, dead letters by code.
#[tokio::test]
async fn local_up_env_and_invoke_ingest_as_a_user_runs_them() {
    let env = env().await;
    let prefix = unique("cli");
    let none = HashMap::new();
    for _ in 0..2 {
        let (ok, _, err) = sluice(&["local", "up", "--prefix", &prefix], &none, &env.endpoint);
        assert!(ok, "local up: {err}");
    }
    let (ok, out, err) = sluice(&["local", "env", "--prefix", &prefix], &none, &env.endpoint);
    assert!(ok, "local env: {err}");
    let vars: HashMap<String, String> = out
        .lines()
        .map(|l| {
            let (k, v) = l.strip_prefix("export ").unwrap().split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('\'').to_owned())
        })
        .collect();
    assert_eq!(vars["SLUICE_RAW_BUCKET"], format!("{prefix}-raw"));
    assert!(vars["SLUICE_DLQ_URL"].ends_with(&format!("{prefix}-dlq")));

    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ingest");
    for (file, landed) in [
        ("ddb-stream.json", 4),
        ("ddb-kinesis.json", 3),
        ("sqs-mixed.json", 7),
    ] {
        let before = raw_lines(&env, &vars["SLUICE_RAW_BUCKET"]).await.len();
        let path = format!("{fixtures}/{file}");
        let (ok, out, err) = sluice(
            &["invoke", "ingest", "--event", &path],
            &vars,
            &env.endpoint,
        );
        assert!(ok, "invoke {file}: {err}");
        let response: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": []}),
            "{file}"
        );
        let after = raw_lines(&env, &vars["SLUICE_RAW_BUCKET"]).await.len();
        assert_eq!(after - before, landed, "{file}");
        if file == "sqs-mixed.json" {
            // The summary on stderr names every dead letter by code.
            assert_eq!(
                err.trim(),
                "ingest: 13 record(s): 7 landed in 2 object(s), 6 dead-lettered (empty 1, \
                 missing_seq 1, not_json 1, too_deep 1, truncated 1, unknown_shape 1), 0 to retry"
            );
        }
    }

    // The raw bucket told the transform queue about each object: hand those notifications to
    // `invoke transform` as Lambda would, and read its summary.
    let queue_url = &vars["SLUICE_TRANSFORM_QUEUE_URL"];
    let messages = receive(&env, queue_url, 6).await;
    let arn = queue_arn(&env, queue_url).await;
    let event = sluice_local::events::sqs_event(&arn, "us-east-1", &messages);
    let path = std::env::temp_dir().join(format!("{prefix}-transform.json"));
    std::fs::write(&path, event).unwrap();
    let (ok, out, err) = sluice(
        &["invoke", "transform", "--event", path.to_str().unwrap()],
        &vars,
        &env.endpoint,
    );
    assert!(ok, "invoke transform: {err}");
    let response: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(response, serde_json::json!({"batchItemFailures": []}));
    // 14 lines = 4 written + 2 stale + 1 control + 7 dead letters, each named by code.
    assert_eq!(
        err.trim(),
        "transform: 14 line(s) of 6 object(s): 4 row(s) written, 0 already written, 2 stale, \
         1 control, 7 dead-lettered (missing_field 5, no_contract 1, unreadable_value 1), \
         0 message(s) to retry"
    );
    assert!(!list_keys(&env, &vars["SLUICE_RAW_BUCKET"], "raw/")
        .await
        .is_empty());
}

/// GIVEN no configuration
/// WHEN a user invokes ingest
/// THEN the error names the missing variable and says what to do.
#[test]
fn invoke_without_configuration_says_what_is_missing_and_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["invoke", "ingest", "--event", "-"])
        .env_remove("SLUICE_RAW_BUCKET")
        .env_remove("SLUICE_DLQ_URL")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("SLUICE_RAW_BUCKET is required"), "{err}");
    assert!(err.contains("sluice local env"), "{err}");
}

/// GIVEN a file that is a bare message body, not a Lambda event
/// WHEN a user invokes ingest on it
/// THEN the error says what kind of file is expected.
#[tokio::test]
async fn invoke_on_a_bare_body_explains_the_expected_event() {
    let env = env().await;
    let prefix = unique("cli");
    let none = HashMap::new();
    assert!(sluice(&["local", "up", "--prefix", &prefix], &none, &env.endpoint).0);
    let vars = HashMap::from([
        ("SLUICE_RAW_BUCKET".to_owned(), format!("{prefix}-raw")),
        ("SLUICE_DLQ_URL".to_owned(), "http://unused".to_owned()),
    ]);
    let dir = std::env::temp_dir().join(unique("body"));
    std::fs::write(
        &dir,
        r#"{"table":"t","op":"insert","key":{"id":1},"after":{"id":1},"seq":1}"#,
    )
    .unwrap();
    let (ok, _, err) = sluice(
        &["invoke", "ingest", "--event", dir.to_str().unwrap()],
        &vars,
        &env.endpoint,
    );
    assert!(!ok);
    assert!(err.contains("not a bare message body"), "{err}");
    assert!(err.contains("no Records array"), "{err}");
}
