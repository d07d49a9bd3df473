//! End to end: `sluice contracts publish` and `sluice tables apply`, the real binary against an
//! AWS-compatible endpoint, as someone deploying contracts runs them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use sluice_tests::{env, get_object, list_keys, unique, TestEnv};

const REPO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// A contract with a partition and a sort key.
const ORDERS: &str = "name: orders\nversion: 1\nsources: [{table: orders}]\nprimary_key: [customer_id, order_id]\nfields:\n  - {name: customer_id, type: string}\n  - {name: order_id, type: int}\n  - {name: total, type: decimal}\n";
/// A contract keyed by a number, in TOML.
const PEOPLE: &str = "name = \"people\"\nversion = 1\nprimary_key = [\"id\"]\n\n[[sources]]\ntable = \"people\"\n\n[[fields]]\nname = \"id\"\ntype = \"int\"\n";

/// Runs `sluice`: its exit code, stdout and stderr.
fn sluice(endpoint: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .current_dir(REPO)
        .args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("RUST_BACKTRACE")
        .env_remove("SLUICE_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// Runs `sluice -o json …`: its exit code and its one JSON document.
fn json(endpoint: &str, args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["-o", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = sluice(endpoint, &all);
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}{err}"));
    (code, v)
}

/// A fresh directory holding these files.
fn dir_with(files: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("contracts"));
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

async fn fresh_bucket(env: &TestEnv) -> String {
    let bucket = unique("pub");
    env.s3.create_bucket().bucket(&bucket).send().await.unwrap();
    bucket
}

/// The `action` of every entry of a JSON list, by `field`.
fn actions(list: &serde_json::Value, field: &str) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f[field].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// GIVEN the demo's contracts and a fresh bucket
/// WHEN they are published, validated from S3, loaded as transform loads them, and published again
/// THEN the first run uploads both with their content types, what transform loads is exactly
/// them, the second says unchanged and uploads nothing, and a changed file whose version was not
/// raised is reported (in a dry run, which uploads nothing).
#[tokio::test]
async fn publish_uploads_what_transform_loads_and_skips_what_is_there() {
    let env = env().await;
    let bucket = fresh_bucket(&env).await;
    let to = format!("s3://{bucket}/contracts/");

    let (code, v) = json(
        &env.endpoint,
        &["contracts", "publish", "infra/contracts", "--to", &to],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["to"], to.as_str());
    assert_eq!(
        (v["uploaded"].as_u64(), v["unchanged"].as_u64()),
        (Some(2), Some(0))
    );
    assert_eq!(
        actions(&v["files"], "key"),
        [
            ("contracts/customers.toml".into(), "uploaded".into()),
            ("contracts/orders.yaml".into(), "uploaded".into())
        ]
    );
    assert_eq!(v["files"][0]["contract"], "customers");
    assert_eq!(v["files"][0]["version"], 1);
    assert_eq!(v["files"][0]["content_type"], "application/toml");
    assert_eq!(v["files"][1]["content_type"], "application/yaml");
    assert_eq!(v["rejected"], serde_json::json!([]));
    assert_eq!(v["conflicts"], serde_json::json!([]));
    for file in ["customers.toml", "orders.yaml"] {
        let local = std::fs::read(format!("{REPO}/infra/contracts/{file}")).unwrap();
        assert_eq!(
            get_object(&env, &bucket, &format!("contracts/{file}")).await,
            local,
            "{file} is published byte for byte"
        );
    }
    let head = env
        .s3
        .head_object()
        .bucket(&bucket)
        .key("contracts/orders.yaml")
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/yaml"));

    // What validate reads from S3, and what transform loads, is what was published.
    let (code, out, err) = sluice(&env.endpoint, &["contracts", "validate", &to]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 contract(s) valid"), "{out}");
    let set = sluice_pipeline::contracts::load(
        &sluice_pipeline::contracts::ContractSource::parse(&to),
        &env.s3,
    )
    .await
    .unwrap();
    let loaded: Vec<(&str, u64)> = set
        .all()
        .iter()
        .map(|c| (c.name.as_str(), c.version))
        .collect();
    assert_eq!(loaded, [("customers", 1), ("orders", 1)]);
    assert!(set.rejected.is_empty());

    // Again: nothing to upload.
    let (code, out, err) = sluice(
        &env.endpoint,
        &["contracts", "publish", "infra/contracts", "--to", &to],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("unchanged"), "{out}");
    assert!(out.contains("0 uploaded"), "{out}");

    // A changed orders.yaml with the same version: a dry run says it would upload and warns.
    let changed = std::fs::read_to_string(format!("{REPO}/infra/contracts/orders.yaml")).unwrap()
        + "# a comment\n";
    let dir = dir_with(&[("orders.yaml", &changed)]);
    let (code, v) = json(
        &env.endpoint,
        &["contracts", "publish", s(&dir), "--to", &to, "--dry-run"],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["dry_run"], true);
    assert_eq!(
        actions(&v["files"], "key"),
        [("contracts/orders.yaml".into(), "would upload".into())]
    );
    assert_eq!(v["files"][0]["published_version"], 1);
    assert!(
        v["files"][0]["note"].as_str().unwrap().contains("raise it"),
        "{v}"
    );
    assert_ne!(
        get_object(&env, &bucket, "contracts/orders.yaml").await,
        changed.as_bytes(),
        "a dry run uploads nothing"
    );
}

/// GIVEN a directory with a good contract and a broken one
/// WHEN it is published
/// THEN the problems are printed as validate prints them, nothing is uploaded, and it exits 1.
#[tokio::test]
async fn an_invalid_contract_publishes_nothing() {
    let env = env().await;
    let bucket = fresh_bucket(&env).await;
    let to = format!("s3://{bucket}/contracts/");
    let dir = dir_with(&[
        ("orders.yaml", ORDERS),
        (
            "bad.yaml",
            "name: bad\nversion: 1\nsources: [{table: b}]\nprimary_key: [missing]\nfields:\n  - {name: id, type: money}\n",
        ),
    ]);
    let (code, out, err) = sluice(
        &env.endpoint,
        &["contracts", "publish", s(&dir), "--to", &to],
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("bad.yaml:5: fields[0] (id).type: unknown type \"money\""),
        "{out}"
    );
    assert!(out.contains("\"missing\" is not a field"), "{out}");
    assert!(out.contains("nothing published"), "{out}");
    let (code, v) = json(
        &env.endpoint,
        &["contracts", "publish", s(&dir), "--to", &to],
    );
    assert_eq!(code, 1);
    assert_eq!(v["invalid"], 1);
    assert_eq!(v["rejected"][0]["ok"], false);
    assert!(v["rejected"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("bad.yaml"));
    assert_eq!(v["files"], serde_json::json!([]));
    assert!(list_keys(&env, &bucket, "").await.is_empty());
}

/// GIVEN two files that define the same contract, and then a contract already published under
/// another file name
/// WHEN they are published
/// THEN it exits 1 naming both files each time, and uploads nothing.
#[tokio::test]
async fn a_contract_defined_twice_is_refused() {
    let env = env().await;
    let bucket = fresh_bucket(&env).await;
    let to = format!("s3://{bucket}/contracts/");
    let dir = dir_with(&[("orders.yaml", ORDERS), ("orders-copy.yml", ORDERS)]);
    let (code, out, err) = sluice(
        &env.endpoint,
        &["contracts", "publish", s(&dir), "--to", &to],
    );
    assert_eq!(code, 1, "{out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("\"orders\" is defined by"))
        .unwrap();
    assert!(
        line.contains("orders-copy.yml") && line.contains("orders.yaml"),
        "{line}"
    );
    assert!(list_keys(&env, &bucket, "").await.is_empty());

    // One of them published; the other, under another name, would be loaded next to it.
    let one = dir_with(&[("orders.yaml", ORDERS)]);
    let (code, _, err) = sluice(
        &env.endpoint,
        &["contracts", "publish", s(&one), "--to", &to],
    );
    assert_eq!(code, 0, "{err}");
    let other = dir_with(&[(
        "orders-v2.yaml",
        &ORDERS.replace("version: 1", "version: 2"),
    )]);
    let (code, v) = json(
        &env.endpoint,
        &["contracts", "publish", s(&other), "--to", &to],
    );
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["conflicts"][0]["contract"], "orders");
    let files = v["conflicts"][0]["files"].to_string();
    assert!(
        files.contains(&format!("s3://{bucket}/contracts/orders.yaml")),
        "{files}"
    );
    assert!(files.contains("orders-v2.yaml"), "{files}");
    assert_eq!(
        list_keys(&env, &bucket, "").await,
        ["contracts/orders.yaml"]
    );
}

/// GIVEN a `--to` that is not `s3://bucket/prefix/`, or an S3 source
/// WHEN publish runs
/// THEN its first line says what is wrong and what to pass, and it exits 1 with nothing on stdout.
#[tokio::test]
async fn a_bad_destination_is_refused_with_what_to_pass() {
    let env = env().await;
    for to in [
        "contracts/",
        "s3://bucket-only",
        "s3://bucket/",
        "s3://bucket/contracts",
        "s3://bucket//",
    ] {
        let (code, out, err) = sluice(
            &env.endpoint,
            &["contracts", "publish", "infra/contracts", "--to", to],
        );
        assert_eq!(code, 1, "{to}: {err}");
        assert!(out.is_empty(), "{to}: {out}");
        let first = err.lines().next().unwrap();
        assert!(first.starts_with(&format!("error: --to {to:?}")), "{first}");
        assert!(first.contains("pass --to s3://bucket/prefix/"), "{first}");
    }
    let (code, _, err) = sluice(
        &env.endpoint,
        &["contracts", "publish", "s3://a/b/", "--to", "s3://a/c/"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("publish uploads local contract files"),
        "{err}"
    );
    // A bucket that does not exist: could not run, and says so first.
    let (code, _, err) = sluice(
        &env.endpoint,
        &[
            "contracts",
            "publish",
            "infra/contracts",
            "--to",
            &format!("s3://{}/c/", unique("none")),
        ],
    );
    assert_eq!(code, 2);
    assert!(
        err.lines().next().unwrap().contains("does not exist"),
        "{err}"
    );
}

async fn describe(env: &TestEnv, table: &str) -> aws_sdk_dynamodb::types::TableDescription {
    env.ddb
        .describe_table()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .table
        .unwrap()
}

async fn pitr(env: &TestEnv, table: &str) -> bool {
    env.ddb
        .describe_continuous_backups()
        .table_name(table)
        .send()
        .await
        .unwrap()
        .continuous_backups_description()
        .and_then(|d| d.point_in_time_recovery_description())
        .and_then(|p| p.point_in_time_recovery_status())
        .map(|s| s.as_str().to_owned())
        == Some("ENABLED".to_owned())
}

async fn ttl(env: &TestEnv, table: &str) -> (String, Option<String>) {
    let out = env
        .ddb
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .unwrap();
    let d = out.time_to_live_description().unwrap();
    (
        d.time_to_live_status().unwrap().as_str().to_owned(),
        d.attribute_name().map(str::to_owned),
    )
}

/// Deletes tables this test made (their deletion protection off first).
async fn drop_tables(env: &TestEnv, tables: &[String]) {
    for t in tables {
        let _ = env
            .ddb
            .update_table()
            .table_name(t)
            .deletion_protection_enabled(false)
            .send()
            .await;
        let _ = env.ddb.delete_table().table_name(t).send().await;
    }
}

/// GIVEN two contracts and a fresh prefix
/// WHEN tables apply runs in a dry run, then for real, then again
/// THEN the dry run creates nothing; the run creates each table with the contract's key,
/// on-demand capacity, the AWS managed key, deletion protection, point-in-time recovery and TTL
/// on `_expires_at`; the second run says unchanged.
#[tokio::test]
async fn tables_apply_creates_each_table_as_a_deploy_wants_it() {
    let env = env().await;
    let prefix = format!("{}-", unique("ta"));
    let dir = dir_with(&[("orders.yaml", ORDERS), ("people.toml", PEOPLE)]);
    let (orders, people) = (format!("{prefix}orders"), format!("{prefix}people"));

    let (code, v) = json(
        &env.endpoint,
        &[
            "tables",
            "apply",
            s(&dir),
            "--table-prefix",
            &prefix,
            "--dry-run",
        ],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        actions(&v["tables"], "table"),
        [
            (orders.clone(), "would create".into()),
            (people.clone(), "would create".into())
        ]
    );
    assert!(env
        .ddb
        .describe_table()
        .table_name(&orders)
        .send()
        .await
        .is_err());

    let (code, v) = json(
        &env.endpoint,
        &["tables", "apply", s(&dir), "--table-prefix", &prefix],
    );
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["prefix"], prefix.as_str());
    assert_eq!(v["dry_run"], false);
    assert_eq!(v["by_action"], serde_json::json!({"created": 2}));
    assert_eq!(v["mismatched"], 0);
    let t = &v["tables"][0];
    assert_eq!(t["contract"], "orders");
    assert_eq!(t["version"], 1);
    assert!(t["file"].as_str().unwrap().ends_with("orders.yaml"));
    assert_eq!(
        t["key"],
        serde_json::json!([{"attribute": "customer_id", "type": "S"}, {"attribute": "order_id", "type": "N"}])
    );
    assert_eq!(t["table_key"], serde_json::Value::Null);
    assert_eq!(
        t["changes"],
        serde_json::json!([
            "encryption with the AWS managed key",
            "deletion protection",
            "point-in-time recovery",
            "TTL on _expires_at"
        ])
    );
    assert_eq!(t["differences"], serde_json::json!([]));

    let d = describe(&env, &orders).await;
    let key: Vec<(String, String)> = d
        .key_schema()
        .iter()
        .map(|k| {
            (
                k.attribute_name().to_owned(),
                k.key_type().as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        key,
        [
            ("customer_id".to_owned(), "HASH".to_owned()),
            ("order_id".to_owned(), "RANGE".to_owned())
        ]
    );
    let types: Vec<(String, String)> = d
        .attribute_definitions()
        .iter()
        .map(|a| {
            (
                a.attribute_name().to_owned(),
                a.attribute_type().as_str().to_owned(),
            )
        })
        .collect();
    assert!(
        types.contains(&("order_id".to_owned(), "N".to_owned())),
        "{types:?}"
    );
    assert_eq!(
        d.billing_mode_summary().and_then(|b| b.billing_mode()),
        Some(&BillingMode::PayPerRequest)
    );
    assert_eq!(d.deletion_protection_enabled(), Some(true));
    let sse = d.sse_description().unwrap();
    assert_eq!(sse.status().map(|s| s.as_str()), Some("ENABLED"));
    assert_eq!(sse.sse_type().map(|s| s.as_str()), Some("KMS"));
    assert!(pitr(&env, &orders).await);
    assert_eq!(
        ttl(&env, &orders).await,
        ("ENABLED".to_owned(), Some("_expires_at".to_owned()))
    );
    assert_eq!(
        describe(&env, &people).await.key_schema()[0].attribute_name(),
        "id"
    );

    let (code, out, err) = sluice(
        &env.endpoint,
        &["tables", "apply", s(&dir), "--table-prefix", &prefix],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("2 table(s): 2 unchanged"), "{out}");
    drop_tables(&env, &[orders, people]).await;
}

/// GIVEN a table as `sluice local up` makes it (no backups, no deletion protection), and one
/// whose key differs from its contract
/// WHEN tables apply runs, in a dry run and then for real
/// THEN the dry run changes nothing; the first table gets point-in-time recovery and deletion
/// protection, then is unchanged; the other is reported with both keys, exits 1, and is left
/// exactly as it was.
#[tokio::test]
async fn tables_apply_turns_on_what_is_off_and_never_touches_a_table_whose_key_differs() {
    let env = env().await;
    let prefix = format!("{}-", unique("tb"));
    let (orders, people) = (format!("{prefix}orders"), format!("{prefix}people"));
    sluice_local::provision::ensure_typed_table(
        &env.ddb,
        &orders,
        &[
            ("customer_id".to_owned(), "S"),
            ("order_id".to_owned(), "N"),
        ],
    )
    .await
    .unwrap();
    // people's contract says `id` is a number; this table has it as a string.
    env.ddb
        .create_table()
        .table_name(&people)
        .billing_mode(BillingMode::PayPerRequest)
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
        .send()
        .await
        .unwrap();
    let dir = dir_with(&[("orders.yaml", ORDERS), ("people.toml", PEOPLE)]);

    let (code, v) = json(
        &env.endpoint,
        &[
            "tables",
            "apply",
            s(&dir),
            "--table-prefix",
            &prefix,
            "--dry-run",
        ],
    );
    assert_eq!(code, 1, "{v}");
    assert_eq!(
        actions(&v["tables"], "table"),
        [
            (orders.clone(), "would update".into()),
            (people.clone(), "key mismatch".into())
        ]
    );
    assert_eq!(
        v["tables"][0]["changes"],
        serde_json::json!(["point-in-time recovery", "deletion protection"])
    );
    assert!(!pitr(&env, &orders).await, "a dry run changes nothing");
    assert_ne!(
        describe(&env, &orders).await.deletion_protection_enabled(),
        Some(true)
    );

    let (code, out, err) = sluice(
        &env.endpoint,
        &["tables", "apply", s(&dir), "--table-prefix", &prefix],
    );
    assert_eq!(code, 1, "{out}{err}");
    let row = |name: &str| out.lines().find(|l| l.contains(name)).unwrap().to_owned();
    assert!(row(&orders).contains("updated"), "{out}");
    assert!(row(&people).contains("key mismatch"), "{out}");
    assert!(
        out.contains("the table's key is id (S); the contract's is id (N)"),
        "{out}"
    );
    assert!(out.contains("left as they are"), "{out}");
    assert!(pitr(&env, &orders).await);
    assert_eq!(
        describe(&env, &orders).await.deletion_protection_enabled(),
        Some(true)
    );
    // The mismatched table is exactly as it was.
    let p = describe(&env, &people).await;
    assert_eq!(
        p.attribute_definitions()[0].attribute_type(),
        &ScalarAttributeType::S
    );
    assert_ne!(p.deletion_protection_enabled(), Some(true));
    assert!(!pitr(&env, &people).await);
    assert_eq!(ttl(&env, &people).await.0, "DISABLED");

    let (code, v) = json(
        &env.endpoint,
        &["tables", "apply", s(&dir), "--table-prefix", &prefix],
    );
    assert_eq!(code, 1);
    assert_eq!(
        v["by_action"],
        serde_json::json!({"key mismatch": 1, "unchanged": 1})
    );
    assert_eq!(v["mismatched"], 1);
    let mismatch = &v["tables"][1];
    assert_eq!(
        mismatch["key"],
        serde_json::json!([{"attribute": "id", "type": "N"}])
    );
    assert_eq!(
        mismatch["table_key"],
        serde_json::json!([{"attribute": "id", "type": "S"}])
    );
    assert_eq!(mismatch["changes"], serde_json::json!([]));
    drop_tables(&env, &[orders, people]).await;
}

/// GIVEN a broken contract, or two files defining one contract
/// WHEN tables apply runs
/// THEN it exits 1, prints the problems and touches no table.
#[tokio::test]
async fn tables_apply_touches_nothing_unless_every_contract_checks() {
    let env = env().await;
    let prefix = format!("{}-", unique("tc"));
    let broken = dir_with(&[("orders.yaml", ORDERS), ("bad.yaml", "name: [")]);
    let (code, out, _) = sluice(
        &env.endpoint,
        &["tables", "apply", s(&broken), "--table-prefix", &prefix],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("bad.yaml"), "{out}");
    assert!(out.contains("no table touched"), "{out}");
    let twice = dir_with(&[("a.yaml", ORDERS), ("b.yaml", ORDERS)]);
    let (code, v) = json(
        &env.endpoint,
        &["tables", "apply", s(&twice), "--table-prefix", &prefix],
    );
    assert_eq!(code, 1);
    assert_eq!(v["conflicts"][0]["contract"], "orders");
    assert_eq!(v["tables"], serde_json::json!([]));
    assert!(env
        .ddb
        .describe_table()
        .table_name(format!("{prefix}orders"))
        .send()
        .await
        .is_err());
    let (code, _, err) = sluice(
        &env.endpoint,
        &[
            "tables",
            "apply",
            "infra/contracts",
            "--table-prefix",
            "bad/",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        err.lines()
            .next()
            .unwrap()
            .contains("table names DynamoDB refuses"),
        "{err}"
    );
}
