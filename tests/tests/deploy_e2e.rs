//! The template deployed: to the emulator's CloudFormation, with every resource it keeps checked
//! through that resource's own API (`infra/deploy_emulator.py`); and IAM proved by enforcement,
//! not by reading: each function's real operations run under exactly the policy `template.yaml`
//! gives its role, on an endpoint that enforces IAM.
//!
//! The test starts an emulator of its own (the shared one must stay open to every other test),
//! deploys the template to its CloudFormation (`infra/deploy_emulator.py`, after the SAM
//! transform), reads each role's policy back as the emulator stored it, and gives it to an IAM
//! user of the test (the emulator cannot assume a role whose principal is a service). Then it
//! turns enforcement on, and runs ingest, transform and redrive with those users' keys on a
//! Debezium stream that takes every path their policies must allow: landing raw objects, a dead
//! letter, the typed writes of a TOAST merge (GetItem) and of a late change (UpdateItem), and a
//! redrive pass over the dead-letter queue. Every call must be allowed. A negative case takes one
//! action out of the transform policy and shows the run fails on it.
//!
//! What the emulator checks, and what this test therefore proves (measured; infra/EMULATOR.md):
//! - actions, for every service; resources, for S3 and SQS only. Statements of other services
//!   are checked by action with their resources widened to `*`, because the emulator matches
//!   those only against `*` (the resources of those statements are the template's to get right;
//!   the CloudFormation deploy check compares them with the stack's resources);
//! - CloudWatch actions under the `monitoring:` prefix the emulator signs them with;
//! - SQS batch calls: AWS authorises `SendMessageBatch` by `sqs:SendMessage` (and so on), the
//!   emulator by the batch action, which is added next to the single one;
//! - conditions are not evaluated (a `s3:prefix` condition allows as if it were not there);
//! - an `!If` statement whose condition is false is kept as null by the emulator's
//!   CloudFormation (AWS leaves it out): nulls are dropped;
//! - the scaler is not run: the emulator refuses every Lambda GET request once IAM is enforced,
//!   whatever the policy.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use sluice_aws::metrics::Sink;
use sluice_pipeline::ingest::Ingest;
use sluice_pipeline::recovery::function::RedriveFunction;
use sluice_pipeline::recovery::RecoveryConfig;
use sluice_pipeline::transform::{Transform, TransformStats};
use sluice_pipeline::{IngestConfig, TransformConfig};
use sluice_tests::{env_as, env_at, unique, TestEnv};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// An emulator of the test's own, stopped when dropped.
struct Emulator {
    child: Child,
    endpoint: String,
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn venv_bin(variable: &str, default: &str, bin: &str) -> PathBuf {
    let venv = std::env::var(variable)
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(REPO).join(default));
    let path = venv.join("bin").join(bin);
    assert!(
        path.exists(),
        "{} is missing: run `make test`, which installs {default} ({variable} overrides it)",
        path.display()
    );
    path
}

async fn start_emulator() -> Emulator {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let emulator = Emulator {
        child: Command::new(venv_bin("SLUICE_VENV", ".venv", "moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        endpoint: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return emulator;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the emulator did not start on port {port}");
}

/// Sets how many more requests the emulator lets through unchecked (`0`: enforce from now on).
fn set_unchecked_requests(endpoint: &str, count: &str) {
    let out = Command::new(venv_bin("SLUICE_VENV", ".venv", "python"))
        .args([
            "-c",
            "import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset-auth', data=sys.argv[2].encode(), method='POST', headers={'Content-Type': 'text/plain'})).read()",
            endpoint,
            count,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Deploys the template to the emulator's CloudFormation; the deploy check's report.
fn deploy(endpoint: &str, stack: &str) -> Value {
    let out = Command::new(venv_bin("SLUICE_TOOLS_VENV", ".venv-tools", "python"))
        .current_dir(REPO)
        .args([
            "infra/deploy_emulator.py",
            "--endpoint",
            endpoint,
            "--stack",
            stack,
            "--param",
            "EnableFifo=true",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "deploy: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Services whose resources the emulator matches only against `*`.
const CHECKED_BY_ACTION_ONLY: &[&str] = &[
    "dynamodb",
    "kinesis",
    "lambda",
    "monitoring",
    "logs",
    "xray",
];

/// SQS actions whose batch calls AWS authorises by the single action.
const SQS_BATCHED: &[&str] = &[
    "sqs:SendMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
];

/// The template's policy, as the emulator can enforce it (see the module documentation).
fn as_enforced(doc: &Value) -> Value {
    let mut statements = Vec::new();
    // The emulator keeps an `!If [..., ..., !Ref AWS::NoValue]` as null where AWS leaves the
    // element out.
    for s in doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| !s.is_null())
    {
        let mut s = s.clone();
        if let Some(resources) = s["Resource"].as_array_mut() {
            resources.retain(|r| !r.is_null());
        }
        let actions: Vec<String> = match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
            other => panic!("unexpected Action {other}"),
        };
        let actions: Vec<String> = actions
            .into_iter()
            .flat_map(|a| match a.strip_prefix("cloudwatch:") {
                Some(rest) => vec![format!("monitoring:{rest}")],
                // AWS authorises SendMessageBatch, DeleteMessageBatch and
                // ChangeMessageVisibilityBatch by the single action; the emulator asks for the
                // batch action itself.
                None if SQS_BATCHED.contains(&a.as_str()) => vec![format!("{a}Batch"), a],
                None => vec![a],
            })
            .collect();
        let service = |a: &str| a.split(':').next().unwrap_or_default().to_owned();
        if actions
            .iter()
            .all(|a| CHECKED_BY_ACTION_ONLY.contains(&service(a).as_str()))
        {
            s["Resource"] = json!("*");
        }
        if actions.iter().any(|a| a == "sqs:GetQueueUrl") {
            statements
                .push(json!({"Effect": "Allow", "Action": "sqs:GetQueueUrl", "Resource": "*"}));
        }
        s["Action"] = json!(actions);
        statements.push(s);
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// The role's policies, merged into one document.
fn role_policy(report: &Value, role: &str) -> Value {
    let policies = report["roles"][role]["policies"]
        .as_object()
        .unwrap_or_else(|| panic!("no policies of {role} in the report"));
    assert!(!policies.is_empty(), "{role} has no inline policy");
    let statements: Vec<Value> = policies
        .values()
        .flat_map(|d| d["Statement"].as_array().unwrap().clone())
        .collect();
    json!({"Version": "2012-10-17", "Statement": statements})
}

/// An IAM user holding `policy`; its keys.
async fn user_with(admin: &TestEnv, name: &str, policy: &Value) -> (String, String) {
    let iam = aws_sdk_iam::Client::new(&admin.sdk);
    iam.create_user().user_name(name).send().await.unwrap();
    iam.put_user_policy()
        .user_name(name)
        .policy_name("template")
        .policy_document(policy.to_string())
        .send()
        .await
        .unwrap();
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .unwrap()
        .access_key
        .unwrap();
    (key.access_key_id, key.secret_access_key)
}

/// A function's environment as the stack configured it. Read as plain JSON: the emulator
/// answers with numbers where AWS answers with strings, which the SDK refuses to read.
fn function_env(endpoint: &str, function: &str) -> BTreeMap<String, String> {
    let out = Command::new(venv_bin("SLUICE_VENV", ".venv", "python"))
        .args([
            "-c",
            "import json, sys, boto3\n\
             c = boto3.client('lambda', endpoint_url=sys.argv[1], region_name='us-east-1', \
             aws_access_key_id='test', aws_secret_access_key='test')\n\
             v = c.get_function_configuration(FunctionName=sys.argv[2])['Environment']['Variables']\n\
             print(json.dumps({k: str(x) for k, x in v.items()}))",
            endpoint,
            function,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

const CONTRACT: &str = "name: accounts\nversion: 1\nsources: [{table: accounts, formats: [debezium]}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: email, type: string}\n  - {name: bio, type: string}\n";

fn debezium(op: &str, lsn: u64, after: Value) -> String {
    json!({
        "before": null,
        "after": after,
        "source": {"connector": "postgresql", "name": "pg", "ts_ms": 1_795_500_000_000u64 + lsn,
                   "db": "bank", "schema": "public", "table": "accounts", "lsn": lsn},
        "op": op,
        "ts_ms": 1_795_500_000_000u64 + lsn
    })
    .to_string()
}

/// Everything a test run needs of the deployed stack.
struct Stack {
    admin: TestEnv,
    outputs: Value,
    ingest: BTreeMap<String, String>,
    transform: BTreeMap<String, String>,
    redrive: BTreeMap<String, String>,
}

impl Stack {
    fn out(&self, key: &str) -> String {
        self.outputs[key]
            .as_str()
            .unwrap_or_else(|| panic!("no output {key}: {}", self.outputs))
            .to_owned()
    }
}

/// Sends bodies to a queue as a producer (the admin user) would.
async fn produce(admin: &TestEnv, queue_url: &str, bodies: &[String]) {
    for b in bodies {
        admin
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(b)
            .send()
            .await
            .unwrap();
    }
}

/// Receives every message of a queue with the function's own keys, as its event source mapping
/// does (the mapping polls with the function's role), and runs `handle` on each batch; deletes
/// what succeeded. Returns the ids of messages that failed.
async fn consume<F, Fut>(as_function: &TestEnv, queue_url: &str, handle: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let arn = as_function
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let mut failed = Vec::new();
    loop {
        let messages = as_function
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let event = sluice_local::events::sqs_event(&arn, "us-east-1", &messages);
        let bad = handle(event).await;
        for m in &messages {
            if bad.iter().any(|b| Some(b.as_str()) == m.message_id()) {
                continue;
            }
            as_function
                .sqs
                .delete_message()
                .queue_url(queue_url)
                .receipt_handle(m.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
        }
        failed.extend(bad);
    }
    failed
}

/// S3's notification of new raw objects, as the bucket sends it to the transform queue (the
/// emulator's CloudFormation does not configure bucket notifications).
async fn announce_raw_objects(
    admin: &TestEnv,
    bucket: &str,
    queue_url: &str,
    seen: &mut Vec<String>,
) {
    let keys = sluice_tests::list_keys(admin, bucket, "raw/").await;
    let fresh: Vec<String> = keys.into_iter().filter(|k| !seen.contains(k)).collect();
    for key in &fresh {
        let body = json!({"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
            "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}]});
        produce(admin, queue_url, &[body.to_string()]).await;
    }
    seen.extend(fresh);
}

/// Deploys the stack on a fresh emulator, publishes the contract and creates its typed table,
/// and makes a user per function holding its role's policy as `edit` leaves it; then turns
/// enforcement on.
async fn setup(
    emulator: &Emulator,
    edit: impl Fn(&str, Value) -> Value,
) -> (Stack, BTreeMap<&'static str, TestEnv>) {
    let stack_name = unique("iam");
    let report = deploy(&emulator.endpoint, &stack_name);
    let admin = env_at(&emulator.endpoint).await;
    let outputs = report["outputs"].clone();
    let physical = &report["physical"];
    let name = |logical: &str| physical[logical].as_str().unwrap().to_owned();
    let stack = Stack {
        ingest: function_env(&emulator.endpoint, &name("IngestFunction")),
        transform: function_env(&emulator.endpoint, &name("TransformFunction")),
        redrive: function_env(&emulator.endpoint, &name("RedriveFunction")),
        outputs,
        admin,
    };
    // A user of the test's own with every right, for the producers' side after enforcement.
    let (ak, sk) = user_with(
        &stack.admin,
        "admin",
        &json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}),
    )
    .await;
    let raw = stack.out("RawBucketName");
    stack
        .admin
        .s3
        .put_object()
        .bucket(&raw)
        .key("contracts/accounts.yaml")
        .body(CONTRACT.as_bytes().to_vec().into())
        .send()
        .await
        .unwrap();
    let contract = sluice_core::contract::parse("accounts.yaml", CONTRACT).unwrap();
    sluice_local::provision::ensure_typed_table(
        &stack.admin.ddb,
        &format!("{}accounts", stack.out("TypedTablePrefix")),
        &contract.key_schema(),
    )
    .await
    .unwrap();
    let mut users = BTreeMap::new();
    for (function, role) in [
        ("ingest", "IngestRole"),
        ("transform", "TransformRole"),
        ("redrive", "RedriveRole"),
    ] {
        let policy = edit(role, as_enforced(&role_policy(&report, role)));
        let (k, s) = user_with(&stack.admin, function, &policy).await;
        users.insert(function, env_as(&emulator.endpoint, &k, &s).await);
    }
    set_unchecked_requests(&emulator.endpoint, "0");
    let admin = env_as(&emulator.endpoint, &ak, &sk).await;
    (Stack { admin, ..stack }, users)
}

fn lookup(env: &BTreeMap<String, String>) -> impl Fn(&str) -> Option<String> + '_ {
    |name| env.get(name).cloned()
}

/// Ingest, then transform, of `bodies`; the transform stats and the messages that failed.
async fn round(
    stack: &Stack,
    users: &BTreeMap<&'static str, TestEnv>,
    bodies: &[String],
    seen: &mut Vec<String>,
) -> (TransformStats, Vec<String>) {
    let ingest = Ingest::from_sdk(
        IngestConfig::from_lookup(lookup(&stack.ingest)).unwrap(),
        &users["ingest"].sdk,
        Sink::Discard,
    );
    produce(&stack.admin, &stack.out("IngestQueueUrl"), bodies).await;
    let failed = consume(&users["ingest"], &stack.out("IngestQueueUrl"), |event| {
        let ingest = &ingest;
        async move {
            let response = sluice_pipeline::ingest::handle(&event, ingest)
                .await
                .unwrap();
            response.failed_ids()
        }
    })
    .await;
    assert!(failed.is_empty(), "ingest failed messages {failed:?}");
    announce_raw_objects(
        &stack.admin,
        &stack.out("RawBucketName"),
        &stack.out("TransformQueueUrl"),
        seen,
    )
    .await;
    let transform: Transform<_, _, _> = Transform::from_sdk(
        TransformConfig::from_lookup(lookup(&stack.transform)).unwrap(),
        &users["transform"].sdk,
        Sink::Discard,
    );
    let stats = std::sync::Mutex::new(TransformStats::default());
    let failed = consume(
        &users["transform"],
        &stack.out("TransformQueueUrl"),
        |event| {
            let (transform, stats) = (&transform, &stats);
            async move {
                let (response, s) = sluice_pipeline::transform::handle(&event, transform)
                    .await
                    .unwrap();
                let mut total = stats.lock().unwrap();
                total.lines += s.lines;
                for (k, v) in s.quarantined {
                    *total.quarantined.entry(k).or_default() += v;
                }
                for (k, v) in s.dead_letters {
                    *total.dead_letters.entry(k).or_default() += v;
                }
                for (k, v) in s.tables {
                    let t = total.tables.entry(k).or_default();
                    t.written += v.written;
                    t.quarantined += v.quarantined;
                }
                response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.clone())
                    .collect()
            }
        },
    )
    .await;
    (stats.into_inner().unwrap(), failed)
}

fn first_round() -> Vec<String> {
    let bio = "A long biography. ".repeat(50);
    vec![
        debezium(
            "c",
            1000,
            json!({"id": 1, "email": "ann@example.com", "bio": bio}),
        ),
        // Row 3 out of order: its TOAST update first, its insert in the second round.
        debezium(
            "u",
            1500,
            json!({"id": 3, "email": "cy@new.example.com", "bio": "__debezium_unavailable_value"}),
        ),
        // Not JSON: an ingest dead letter.
        "{not json".to_owned(),
    ]
}

fn second_round() -> Vec<String> {
    vec![
        // The stored bio is merged in (GetItem).
        debezium(
            "u",
            2000,
            json!({"id": 1, "email": "ann@new.example.com", "bio": "__debezium_unavailable_value"}),
        ),
        // Late: fills the bio the update could not carry (UpdateItem).
        debezium(
            "c",
            1002,
            json!({"id": 3, "email": "cy@example.com", "bio": "Cy's biography."}),
        ),
    ]
}

#[tokio::test]
async fn each_function_runs_under_exactly_its_template_policy() {
    let emulator = start_emulator().await;
    let (stack, users) = setup(&emulator, |_, policy| policy).await;
    let mut seen = Vec::new();
    let (first, failed) = round(&stack, &users, &first_round(), &mut seen).await;
    assert!(failed.is_empty(), "transform failed {failed:?}: {first:?}");
    assert!(first.quarantined.is_empty(), "{first:?}");
    let (second, failed) = round(&stack, &users, &second_round(), &mut seen).await;
    assert!(failed.is_empty(), "transform failed {failed:?}: {second:?}");
    assert!(second.quarantined.is_empty(), "{second:?}");

    // The rows, read with the admin's keys.
    let table = format!("{}accounts", stack.out("TypedTablePrefix"));
    let rows = sluice_tests::scan(&stack.admin, &table).await;
    let bio = |id: &str| {
        rows.iter()
            .find(|r| r["id"].as_n().ok().map(String::as_str) == Some(id))
            .and_then(|r| r.get("bio").and_then(|b| b.as_s().ok()).cloned())
    };
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        bio("1").as_deref(),
        Some("A long biography. ".repeat(50).as_str())
    );
    assert_eq!(bio("3").as_deref(), Some("Cy's biography."));

    // The redrive function's own pass over the dead letters: the letter that is still invalid is
    // read, judged and left.
    let redrive = RedriveFunction::from_sdk(
        RecoveryConfig::from_lookup(lookup(&stack.redrive)).unwrap(),
        &users["redrive"].sdk,
        Sink::Discard,
    );
    let summary = redrive
        .handle(r#"{"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}}"#)
        .await
        .unwrap();
    assert_eq!(summary.errors, 0, "{summary:?}");
    assert!(summary.read >= 1, "{summary:?}");
}

#[tokio::test]
async fn a_missing_action_is_caught() {
    let emulator = start_emulator().await;
    // The transform policy as it was before GetItem and UpdateItem were granted.
    let (stack, users) = setup(&emulator, |role, mut policy| {
        if role == "TransformRole" {
            for s in policy["Statement"].as_array_mut().unwrap() {
                if let Some(actions) = s["Action"].as_array_mut() {
                    actions.retain(|a| a != "dynamodb:GetItem" && a != "dynamodb:UpdateItem");
                }
            }
        }
        policy
    })
    .await;
    let mut seen = Vec::new();
    let (first, _) = round(&stack, &users, &first_round(), &mut seen).await;
    let (second, failed) = round(&stack, &users, &second_round(), &mut seen).await;
    // Both rounds wrote rows (PutItem is granted): what failed is only the reads and fills.
    assert!(first.tables["accounts"].written + second.tables["accounts"].written > 0);
    let rejected = |s: &TransformStats| s.dead_letters.get("write_rejected").copied();
    let rejected = rejected(&first).unwrap_or(0) + rejected(&second).unwrap_or(0);
    assert!(
        rejected >= 2 && failed.is_empty(),
        "a transform without GetItem and UpdateItem must fail its TOAST merge and its late fill: {first:?} {second:?}"
    );
}

/// Resource types the emulator's CloudFormation does not create (infra/EMULATOR.md); the deploy
/// check confirms each is absent and reports it as not kept, never as passed.
const NOT_KEPT_BY_THE_EMULATOR: &[&str] = &[
    "AWS::CloudWatch::Alarm",
    "AWS::SQS::QueuePolicy",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::Subscription",
];

#[tokio::test]
async fn the_template_deploys_with_its_defaults_and_every_kept_resource_is_as_declared() {
    let env = sluice_tests::env().await;
    let stack = unique("deploy");
    let out = Command::new(venv_bin("SLUICE_TOOLS_VENV", ".venv-tools", "python"))
        .current_dir(REPO)
        .args([
            "infra/deploy_emulator.py",
            "--endpoint",
            &env.endpoint,
            "--stack",
            &stack,
            "--delete",
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "deploy check failed:\n{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["status"], "CREATE_COMPLETE");
    assert_eq!(report["summary"]["problems"], 0, "{stderr}");
    let resources = report["resources"].as_array().unwrap();
    let checked: Vec<&str> = resources
        .iter()
        .filter(|r| r["result"] == "checked")
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    for kind in [
        "AWS::S3::Bucket",
        "AWS::SQS::Queue",
        "AWS::IAM::Role",
        "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping",
        "AWS::CloudWatch::Dashboard",
        "AWS::Events::Rule",
    ] {
        assert!(checked.contains(&kind), "no {kind} was checked: {stderr}");
    }
    for r in resources.iter().filter(|r| r["result"] != "checked") {
        assert_eq!(r["result"], "not kept by the emulator", "{r}");
        assert!(
            NOT_KEPT_BY_THE_EMULATOR.contains(&r["type"].as_str().unwrap()),
            "{r}: the emulator was expected to keep it"
        );
    }
}
