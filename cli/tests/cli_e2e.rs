//! End to end: the `sluice` binary against a real AWS-compatible endpoint, as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::process::Command;

use sluice_tests::{env, list_keys, raw_lines, unique};

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
/// the DynamoDB Streams, DynamoDB-through-Kinesis and mixed SQS fixtures
/// THEN both `up`s succeed, the handler answers with no failures, and the objects are in S3.
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
    }
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
