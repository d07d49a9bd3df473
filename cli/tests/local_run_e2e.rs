//! End to end through `sluice local run`: the local event source mappings, crashes, interrupts,
//! the demo, and the audit, against a real AWS-compatible endpoint.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue as A;
use sluice_tests::faults::{Fault, FaultProxy, Rule};
use sluice_tests::{env, scan, unique, TestEnv};

/// One isolated local pipeline: its prefix, contracts, state directory and source table.
struct Local {
    prefix: String,
    contracts: PathBuf,
    state: PathBuf,
    source: String,
    endpoint: String,
}

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

impl Local {
    fn command(&self, args: &[&str]) -> Command {
        self.command_via(&self.endpoint, args)
    }

    /// A command whose AWS calls go to `endpoint` (a fault-injecting proxy, say).
    fn command_via(&self, endpoint: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_sluice"));
        c.current_dir(REPO)
            .args(args)
            .args([
                "--prefix",
                &self.prefix,
                "--contracts",
                self.contracts.to_str().unwrap(),
                "--state-dir",
                self.state.to_str().unwrap(),
            ])
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("RUST_LOG", "info")
            .env_remove("RUST_BACKTRACE");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn typed(&self) -> String {
        format!("{}-items", self.prefix)
    }

    fn ingest_queue(&self) -> String {
        format!("{}-ingest", self.prefix)
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Creates a source table and a contract for it, and runs `sluice local up`.
async fn setup(env: &TestEnv) -> Local {
    let source = unique("items-src");
    source_table(env, &source).await;
    let contracts = std::env::temp_dir().join(unique("contracts"));
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(
        contracts.join("items.yaml"),
        format!(
            "name: items\nversion: 1\nsources: [{{table: {source}}}]\nprimary_key: [pk]\nfields:\n  - {{name: pk, type: string}}\n  - {{name: value, type: int}}\n  - {{name: label, type: string, required: true}}\n"
        ),
    )
    .unwrap();
    let local = Local {
        prefix: unique("lr"),
        contracts,
        state: std::env::temp_dir().join(unique("state")),
        source,
        endpoint: env.endpoint.clone(),
    };
    let out = local.run(&["local", "up", "--source-table", &local.source]);
    assert!(out.status.success(), "local up: {}", text(&out));
    local
}

async fn source_table(env: &TestEnv, name: &str) {
    sluice_tests::source_table(env, name).await;
}

fn item(pk: &str, value: u64, label: Option<&str>) -> HashMap<String, A> {
    let mut m = HashMap::from([
        ("pk".to_owned(), A::S(pk.to_owned())),
        ("value".to_owned(), A::N(value.to_string())),
    ]);
    if let Some(l) = label {
        m.insert("label".into(), A::S(l.to_owned()));
    }
    m
}

/// Makes `n` changes: puts, updates and a few deletes in the source table, and application
/// events for the same table over SQS (keys disjoint from the stream's).
async fn workload(env: &TestEnv, local: &Local, n: u64) {
    for i in 0..n {
        let pk = format!("d-{}", i % (n / 3).max(1));
        if i % 11 == 10 {
            env.ddb
                .delete_item()
                .table_name(&local.source)
                .key("pk", A::S(pk))
                .send()
                .await
                .unwrap();
        } else {
            env.ddb
                .put_item()
                .table_name(&local.source)
                .set_item(Some(item(&pk, i, Some("ok"))))
                .send()
                .await
                .unwrap();
        }
    }
    let url = sluice_local::provision::queue_url(&env.sqs, &local.ingest_queue())
        .await
        .unwrap();
    for i in 0..n {
        let id = i % (n / 4).max(1);
        let body = serde_json::json!({"table": local.source, "op": "update", "key": {"pk": format!("s-{id}")}, "seq": i + 1,
            "after": {"pk": format!("s-{id}"), "value": i, "label": "sqs"}});
        env.sqs
            .send_message()
            .queue_url(&url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(
            started.elapsed() < limit,
            "the runner did not stop within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// GIVEN a stream whose tenth record violates the contract
/// WHEN `sluice local run --until-idle` drains it
/// THEN the poison record is quarantined, every record after it is typed, and the audit is clean.
#[tokio::test]
async fn a_poison_record_does_not_block_its_shard() {
    let env = env().await;
    let local = setup(&env).await;
    for i in 0..20u64 {
        let label = if i == 9 { None } else { Some("ok") };
        env.ddb
            .put_item()
            .table_name(&local.source)
            .set_item(Some(item(&format!("k-{i:02}"), i, label)))
            .send()
            .await
            .unwrap();
    }
    let out = local.run(&["local", "run", "--until-idle", "--output", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(summary["drained"], true, "{summary}");
    assert_eq!(summary["rows_written"], 19.0, "{summary}");
    assert_eq!(summary["quarantined"], 1.0, "{summary}");
    let typed = scan(&env, &local.typed()).await;
    assert_eq!(typed.len(), 19, "every record but the poison one is typed");
    assert!(typed.iter().all(|i| i["pk"].as_s().unwrap() != "k-09"));
    assert!(
        typed.iter().any(|i| i["pk"].as_s().unwrap() == "k-19"),
        "records after the poison got through"
    );
    let dlq = sluice_local::provision::queue_url(&env.sqs, &format!("{}-dlq", local.prefix))
        .await
        .unwrap();
    // Peeked, not consumed: the audit reads them too.
    let letters = sluice_aws::dead_letters::peek_all(&env.sqs, &dlq, Duration::from_secs(60))
        .await
        .unwrap()
        .messages;
    assert_eq!(letters.len(), 1);
    let envelope: sluice_core::envelope::FailureEnvelope =
        serde_json::from_str(letters[0].body().unwrap()).unwrap();
    assert_eq!(envelope.error_code.as_deref(), Some("missing_field"));
    assert!(envelope.error.contains("field label"), "{}", envelope.error);
    let audit = local.run(&["audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
}

/// GIVEN S3 failing for raw writes while changes arrive
/// WHEN the runner retries and the outage ends
/// THEN every change is typed and nothing is on the DLQ.
#[tokio::test]
async fn a_retriable_failure_is_retried_until_the_fault_is_gone() {
    use sluice_aws::metrics::Sink;
    use sluice_local::mappings::{
        Backoff, FunctionKind, LocalFunctions, Mapping, RunOptions, Runner,
    };

    let env = env().await;
    let source = unique("outage-src");
    let p = sluice_tests::pipeline(
        &env,
        &[(
            "items.yaml",
            format!("name: items\nversion: 1\nsources: [{{table: {source}}}]\nprimary_key: [pk]\nfields:\n  - {{name: pk, type: string}}\n  - {{name: value, type: int}}\n  - {{name: label, type: string}}\n"),
        )],
    )
    .await;
    let stream_arn = sluice_tests::source_table(&env, &source).await;
    for i in 0..30u64 {
        env.ddb
            .put_item()
            .table_name(&source)
            .set_item(Some(item(&format!("k-{i}"), i, Some("x"))))
            .send()
            .await
            .unwrap();
    }
    let outage = Arc::new(AtomicBool::new(true));
    let failing = sluice_tests::s3_with_outage(
        &env,
        &format!("/{}/raw/", p.ingest.raw_bucket),
        outage.clone(),
    );
    let config = sluice_pipeline::IngestConfig::from_lookup(|n| match n {
        "SLUICE_RAW_BUCKET" => Some(p.ingest.raw_bucket.clone()),
        "SLUICE_DLQ_URL" => Some(p.ingest.dlq_url.clone()),
        _ => None,
    })
    .unwrap();
    let functions = LocalFunctions {
        ingest: sluice_pipeline::ingest::Ingest::on_aws(
            config,
            env.s3.clone(),
            failing,
            env.sqs.clone(),
            Sink::Discard,
        ),
        transform: sluice_tests::transform_deps(&env, &p),
    };
    let transform_arn = sluice_tests::queue_arn(&env, &p.transform_queue_url).await;
    let runner = Runner {
        functions: Arc::new(functions),
        mappings: vec![
            Mapping::stream(&source, &stream_arn, &p.ingest.dlq_url),
            Mapping::queue(
                "transform",
                FunctionKind::Transform,
                &p.transform_queue_url,
                &transform_arn,
            ),
        ],
        streams: env.streams.clone(),
        kinesis: env.kinesis.clone(),
        sqs: env.sqs.clone(),
        region: "us-east-1".into(),
        checkpoints_path: std::env::temp_dir()
            .join(unique("checkpoints"))
            .join("c.json"),
    };
    let (_tx, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(runner.run(RunOptions {
        until_idle: true,
        shutdown: rx,
        backoff: Backoff {
            base: Duration::from_millis(200),
            cap: Duration::from_secs(2),
        },
        poll_interval: Duration::from_millis(100),
        scaling: None,
    }));
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        sluice_tests::list_keys(&env, &p.ingest.raw_bucket, "raw/")
            .await
            .is_empty(),
        "nothing lands during the outage"
    );
    outage.store(false, std::sync::atomic::Ordering::SeqCst);
    let report = run.await.unwrap().unwrap();
    assert!(report.drained);
    assert!(
        report.failed_invocations > 0,
        "the outage made invocations fail: {report:?}"
    );
    assert_eq!(report.on_failure_records, 0);
    assert_eq!(scan(&env, &p.typed_table("items")).await.len(), 30);
    assert!(sluice_tests::dead_letters(&env, &p.ingest.dlq_url, 1)
        .await
        .is_empty());
}

/// GIVEN a runner killed with SIGKILL in the middle of a run
/// WHEN it is started again and drains
/// THEN the audit is clean: nothing lost, and no typed row with a wrong value.
#[tokio::test]
async fn killing_the_runner_and_starting_again_loses_nothing() {
    let env = env().await;
    let local = setup(&env).await;
    let mut runner = local.spawn(&["local", "run"]);
    workload(&env, &local, 240).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    runner.kill().unwrap();
    runner.wait().unwrap();
    let out = local.run(&["local", "run", "--until-idle"]);
    assert!(out.status.success(), "{}", text(&out));
    let audit = local.run(&["audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
    assert!(!scan(&env, &local.typed()).await.is_empty());
}

/// GIVEN a runner at work
/// WHEN it gets SIGINT
/// THEN it stops promptly with exit code 0, having acknowledged nothing unfinished: a later
/// run drains the rest and the audit is clean.
#[tokio::test]
async fn sigint_stops_gracefully_and_acknowledges_nothing_unfinished() {
    let env = env().await;
    let local = setup(&env).await;
    workload(&env, &local, 240).await;
    let mut runner = local.spawn(&["local", "run"]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let kill = Command::new("kill")
        .args(["-INT", &runner.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = wait_with_timeout(&mut runner, Duration::from_secs(60));
    let mut stderr = String::new();
    std::io::Read::read_to_string(runner.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "exit {status:?}: {stderr}");
    assert!(stderr.contains("Stopping"), "{stderr}");
    assert!(
        local
            .state
            .join(&local.prefix)
            .join("checkpoints.json")
            .exists(),
        "checkpoints are saved"
    );
    let out = local.run(&["local", "run", "--until-idle"]);
    assert!(out.status.success(), "{}", text(&out));
    let audit = local.run(&["audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
}

/// GIVEN a clean audit
/// WHEN a typed row, and then a raw object, is deleted by hand
/// THEN the audit fails and names what is missing.
#[tokio::test]
async fn the_audit_detects_a_lost_row_and_a_lost_raw_object() {
    let env = env().await;
    let local = setup(&env).await;
    workload(&env, &local, 60).await;
    assert!(local
        .run(&["local", "run", "--until-idle"])
        .status
        .success());
    let clean = local.run(&["audit"]);
    assert!(clean.status.success(), "{}", text(&clean));

    let rows = scan(&env, &local.typed()).await;
    let victim = rows.iter().find(|r| !r.contains_key("_deleted")).unwrap();
    let pk = victim["pk"].as_s().unwrap().clone();
    env.ddb
        .delete_item()
        .table_name(local.typed())
        .key("pk", A::S(pk.clone()))
        .send()
        .await
        .unwrap();
    let audit = local.run(&["audit"]);
    assert_eq!(
        audit.status.code(),
        Some(1),
        "a deleted typed row fails the audit"
    );
    assert!(text(&audit).contains("no typed row"), "{}", text(&audit));
    assert!(text(&audit).contains(&pk), "{}", text(&audit));
    let json = local.run(&["audit", "--output", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["clean"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(
        report["findings"].as_u64().unwrap() as usize,
        problems.len()
    );
    assert!(
        problems
            .iter()
            .any(|p| p.as_str().unwrap().contains(&pk)
                && p.as_str().unwrap().contains("no typed row")),
        "{report:#}"
    );
    assert!(report["tables"][0]["raw_lines"].as_u64().unwrap() > 0);

    let bucket = format!("{}-raw", local.prefix);
    let survivor = rows
        .iter()
        .find(|r| r["pk"].as_s().unwrap() != &pk)
        .unwrap();
    let raw = survivor["_raw"].as_s().unwrap();
    let key = raw
        .trim_start_matches(&format!("s3://{bucket}/"))
        .split('#')
        .next()
        .unwrap()
        .to_owned();
    env.s3
        .delete_object()
        .bucket(&bucket)
        .key(&key)
        .send()
        .await
        .unwrap();
    let audit = local.run(&["audit"]);
    assert!(!audit.status.success());
    assert!(text(&audit).contains("is missing"), "{}", text(&audit));
}

/// A local pipeline fed only over SQS: a `customers` contract for application events.
async fn sqs_only(env: &TestEnv) -> (Local, String) {
    let contracts = std::env::temp_dir().join(unique("contracts"));
    std::fs::create_dir_all(&contracts).unwrap();
    std::fs::write(
        contracts.join("customers.yaml"),
        "name: customers\nversion: 1\nsources: [{table: customers, formats: [app]}]\nprimary_key: [id]\nfields:\n  - {name: id, type: int}\n  - {name: name, type: string}\n",
    )
    .unwrap();
    let local = Local {
        prefix: unique("out"),
        contracts,
        state: std::env::temp_dir().join(unique("state")),
        source: String::new(),
        endpoint: env.endpoint.clone(),
    };
    let out = local.run(&["local", "up"]);
    assert!(out.status.success(), "local up: {}", text(&out));
    let url = sluice_local::provision::queue_url(&env.sqs, &local.ingest_queue())
        .await
        .unwrap();
    (local, url)
}

async fn send_customer(env: &TestEnv, url: &str, id: u64, name: &str, seq: u64) -> String {
    let body = serde_json::json!({"table": "customers", "op": "update", "key": {"id": id},
        "after": {"id": id, "name": name}, "seq": seq});
    env.sqs
        .send_message()
        .queue_url(url)
        .message_body(body.to_string())
        .send()
        .await
        .unwrap()
        .message_id
        .unwrap()
}

/// GIVEN an S3 outage longer than the local queue's retries ride out
/// WHEN `sluice local run` retries a valid change until the ingest queue's redrive policy moves
/// it to the DLQ as a bare message
/// THEN `sluice audit` exits 1 and names the stranded change as unprocessed, although every raw
/// line it knows of is accounted for.
#[tokio::test]
async fn a_change_stranded_on_the_dlq_by_an_outage_fails_the_audit() {
    let env = env().await;
    let (local, url) = sqs_only(&env).await;
    send_customer(&env, &url, 1, "before", 1).await;
    assert!(local
        .run(&["local", "run", "--until-idle"])
        .status
        .success());
    assert!(local.run(&["audit"]).status.success());

    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(
        Rule::new("s3", "PutObject", Fault::Refuse).path(format!("/{}-raw/raw/", local.prefix)),
    );
    let stranded = send_customer(&env, &url, 1, "after", 2).await;
    let out = local
        .command_via(
            &proxy.url,
            &[
                "local",
                "run",
                "--until-idle",
                "--retry-delay-secs",
                "1",
                "--max-retry-delay-secs",
                "1",
            ],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        proxy.count("s3", "PutObject") >= 5,
        "every receive was tried: {}",
        proxy.count("s3", "PutObject")
    );

    let audit = local.run(&["audit"]);
    let t = text(&audit);
    assert_eq!(audit.status.code(), Some(1), "{t}");
    assert!(
        t.contains("unprocessed: 1 change(s) on the dead-letter queue without a failure envelope"),
        "{t}"
    );
    assert!(t.contains(&format!("message {stranded}")), "{t}");
    assert!(
        t.contains("a change to table \"customers\" (app update, seq 0000000000000000000000000000000000000002)"),
        "{t}"
    );
    assert!(!t.contains("audit: clean"), "{t}");
    let row = &scan(&env, &format!("{}-customers", local.prefix)).await[0];
    assert_eq!(
        row["name"].as_s().unwrap(),
        "before",
        "the change never reached the table"
    );
    println!("{t}");
}

/// GIVEN an S3 outage shorter than what the local queue's retries ride out
/// WHEN `sluice local run` backs off and retries
/// THEN nothing is stranded: the change is typed and the audit is clean.
#[tokio::test]
async fn a_short_outage_is_ridden_out_by_backing_off() {
    let env = env().await;
    let (local, url) = sqs_only(&env).await;
    let proxy = FaultProxy::start(&env.endpoint);
    let rule =
        Rule::new("s3", "PutObject", Fault::Refuse).path(format!("/{}-raw/raw/", local.prefix));
    let outage = rule.active.clone();
    proxy.add(rule);
    send_customer(&env, &url, 7, "kept", 1).await;
    // Waits of about 1, 4, 4 and 4 s between the five receives: about 12 s ridden out.
    let mut runner = local
        .command_via(
            &proxy.url,
            &[
                "local",
                "run",
                "--until-idle",
                "--retry-delay-secs",
                "1",
                "--max-retry-delay-secs",
                "4",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(proxy.count("s3", "PutObject") >= 2, "the outage was met");
    outage.store(false, std::sync::atomic::Ordering::SeqCst);
    let status = wait_with_timeout(&mut runner, Duration::from_secs(60));
    assert!(status.success());
    let audit = local.run(&["audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
    let rows = scan(&env, &format!("{}-customers", local.prefix)).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"].as_s().unwrap(), "kept");
}

/// GIVEN dead-letter sends whose responses are lost 30 % of the time (the message is sent, the
/// sender cannot tell, and sends it again), so the DLQ holds copies of dead letters
/// WHEN the pipeline drains
/// THEN `sluice audit` and `sluice status` count each failure_id once: exactly one dead letter
/// per bad record, and the audit is clean.
#[tokio::test]
async fn duplicate_dead_letters_are_counted_once() {
    let env = env().await;
    let (local, url) = sqs_only(&env).await;
    for i in 0..40u64 {
        // Every other change names a customer with a number: a contract violation.
        let body = if i % 2 == 0 {
            serde_json::json!({"table": "customers", "op": "insert", "key": {"id": i},
                "after": {"id": i, "name": 5}, "seq": 1})
        } else {
            serde_json::json!({"table": "customers", "op": "insert", "key": {"id": i},
                "after": {"id": i, "name": "ok"}, "seq": 1})
        };
        env.sqs
            .send_message()
            .queue_url(&url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    let proxy = FaultProxy::start(&env.endpoint);
    proxy.add(Rule::new("sqs", "SendMessage", Fault::Ambiguous).probability(0.3));
    let out = local
        .command_via(
            &proxy.url,
            &["local", "run", "--until-idle", "--retry-delay-secs", "1"],
        )
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let lost = proxy
        .calls()
        .iter()
        .filter(|c| c.operation == "SendMessage" && c.fault.is_some())
        .count();
    assert!(lost > 0, "some responses were lost");

    let audit = local.run(&["audit"]);
    let t = text(&audit);
    assert!(audit.status.success(), "{t}");
    assert!(
        t.contains("dead letters: transform contract_violation 20"),
        "{t}"
    );
    assert!(t.contains("duplicate dead letters: "), "{t}");
    let status = local.run(&["status", "--output", "json"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(
        status["dead_letters"]["by_class"]["transform contract_violation"], 20,
        "{status:#}"
    );
    assert!(status["dead_letters"]["duplicates"].as_u64().unwrap() > 0);
}

/// GIVEN a local pipeline
/// WHEN `sluice status --watch --output json` runs for some seconds
/// THEN it prints one JSON document a refresh, each with the queues, dead letters, metrics and
/// alarms.
#[tokio::test]
async fn status_watch_prints_a_json_line_a_refresh() {
    let env = env().await;
    let (local, _) = sqs_only(&env).await;
    let mut watch = local
        .command(&[
            "status",
            "--watch",
            "--interval-secs",
            "1",
            "--output",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    watch.kill().unwrap();
    let out = watch.wait_with_output().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 2, "{lines:?}");
    for v in &lines {
        assert_eq!(v["queues"].as_array().unwrap().len(), 3);
        assert!(v["dead_letters"]["by_class"].is_object());
        assert_eq!(v["metrics"]["sums"].as_array().unwrap().len(), 8);
        assert_eq!(v["alarms"]["evaluated"].as_array().unwrap().len(), 3);
    }
}

/// GIVEN a contracts directory that does not exist
/// WHEN `sluice local up` is run
/// THEN it fails with exit 1, naming the directory, and creates nothing.
#[tokio::test]
async fn local_up_checks_its_inputs_before_creating_anything() {
    let env = env().await;
    let prefix = unique("nothing");
    let local = Local {
        prefix: prefix.clone(),
        contracts: PathBuf::from("/nope/contracts"),
        state: std::env::temp_dir().join(unique("state")),
        source: String::new(),
        endpoint: env.endpoint.clone(),
    };
    let out = local.run(&["local", "up"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("error: the contracts directory /nope/contracts does not exist"),
        "{}",
        text(&out)
    );
    let queues = env
        .sqs
        .list_queues()
        .queue_name_prefix(&prefix)
        .send()
        .await
        .unwrap();
    assert!(queues.queue_urls().is_empty(), "nothing was created");
}

/// GIVEN a fresh endpoint
/// WHEN `sluice demo --count N --output json` runs
/// THEN it prints one JSON document with the summary and the audit.
#[tokio::test]
async fn a_demo_prints_its_summary_and_audit_as_json() {
    let env = env().await;
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(REPO)
        .args([
            "demo",
            "--count",
            "60",
            "--output",
            "json",
            "--prefix",
            &unique("demojson"),
            "--state-dir",
            std::env::temp_dir().join(unique("state")).to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changes"]["total"], 60, "{v:#}");
    for field in ["raw_objects", "row_writes", "dead_letters", "latency_ms"] {
        assert!(v[field].is_object(), "{field}: {v:#}");
    }
    assert!(v["throughput_per_sec"].is_number());
    assert_eq!(v["audit"]["clean"], true, "{v:#}");
    assert!(v["audit"]["tables"].as_array().unwrap().len() == 2);
}

/// GIVEN a fresh endpoint
/// WHEN `sluice demo --count N` runs
/// THEN it prints its summary, its audit is clean, and it exits 0.
#[tokio::test]
async fn a_small_demo_ends_with_a_clean_audit() {
    let env = env().await;
    let prefix = unique("demo");
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(REPO)
        .args([
            "demo",
            "--count",
            "300",
            "--prefix",
            &prefix,
            "--state-dir",
            std::env::temp_dir().join(unique("state")).to_str().unwrap(),
        ])
        .env("AWS_ENDPOINT_URL", &env.endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "changes in",
        "raw objects",
        "row writes",
        "dead letters",
        "throughput",
        "latency (e2e)",
        "audit: clean",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in:\n{t}");
    }
}

/// GIVEN a burst of 600 changes on the ingest queue, and `local run` with the scaling policy
/// (up to 8 concurrent batches, a 2 s backlog target, a decision a second, a 3 s window)
/// WHEN it drains
/// THEN the ingest mapping's concurrency was raised above its baseline, came back to it after
/// the window once the queue was drained (the run ends only then), and the audit is clean.
#[tokio::test]
async fn a_burst_raises_the_concurrency_and_the_drained_queue_lowers_it() {
    let env = env().await;
    let (local, url) = sqs_only(&env).await;
    for chunk in (0..600u64).collect::<Vec<_>>().chunks(10) {
        let entries = chunk
            .iter()
            .map(|id| {
                let body = serde_json::json!({"table": "customers", "op": "insert",
                    "key": {"id": id}, "after": {"id": id, "name": format!("c{id}")}, "seq": 1});
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(format!("m{id}"))
                    .message_body(body.to_string())
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        env.sqs
            .send_message_batch()
            .queue_url(&url)
            .set_entries(Some(entries))
            .send()
            .await
            .unwrap();
    }
    let out = local.run(&[
        "local",
        "run",
        "--until-idle",
        "--retry-delay-secs",
        "1",
        "--max-concurrency",
        "8",
        "--scale-target-secs",
        "2",
        "--scale-interval-secs",
        "1",
        "--scale-down-window-secs",
        "3",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let summary: serde_json::Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("scaling").is_some())
        .unwrap_or_else(|| panic!("no summary: {}", text(&out)));
    let scaling = summary["scaling"].as_object().unwrap();
    let ingest = scaling
        .iter()
        .find(|(name, _)| name.contains("ingest"))
        .map(|(_, s)| s)
        .unwrap_or_else(|| panic!("{summary}"));
    assert!(ingest["highest"].as_u64().unwrap() > 2, "{summary}");
    assert_eq!(ingest["setting"], 2, "back at the baseline: {summary}");
    assert!(ingest["changes"].as_u64().unwrap() >= 2, "{summary}");
    assert!(
        text(&out).contains("Concurrency changed."),
        "each change is logged with its reason"
    );
    let audit = local.run(&["audit"]);
    assert!(audit.status.success(), "{}", text(&audit));
    assert_eq!(
        scan(&env, &format!("{}-customers", local.prefix))
            .await
            .len(),
        600
    );
}
